import Foundation

/// A failure of the test machinery itself (a tool that cannot be found or run).
public struct TestDataError: Error, CustomStringConvertible {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}

/// Runs the project's Python tools (NumPy only) from the tests.
public enum Python {
    /// The package root (the directory holding Package.swift).
    public static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url.path }
        }
        return FileManager.default.currentDirectoryPath
    }()

    /// Runs python3 with `args` from the package root, with Pipelines/models,
    /// Pipelines/tools and Tests/Reference importable; throws with its stderr on failure.
    @discardableResult
    public static func run(_ args: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3"] + args
        p.currentDirectoryURL = URL(fileURLWithPath: root)
        var env = ProcessInfo.processInfo.environment
        env["PYTHONPATH"] = [root + "/Pipelines/models", root + "/Pipelines/tools", root + "/Tests/Reference"]
            .joined(separator: ":")
        p.environment = env
        let (o, e) = try runCollecting(p)
        guard p.terminationStatus == 0 else {
            let what = args.first == "-c" ? "-c SCRIPT" : args.prefix(2).joined(separator: " ")
            throw TestDataError(message: "python3 \(what) failed (NumPy missing? make setup): \(String(decoding: e, as: UTF8.self))")
        }
        return String(decoding: o, as: UTF8.self)
    }
}

extension Python {
    /// Calls `function` of Tests/Reference/test_data.py with string arguments (the tests'
    /// data generators and schema checks live there as functions); returns what it prints.
    @discardableResult
    public static func call(_ function: String, _ args: String...) throws -> String {
        try run(["Tests/Reference/test_data.py", function] + args)
    }
}

/// Runs a built executable of the package (`toolPath`) with no standard input.
/// - Parameters:
///   - timeout: run it under `timeout(1)`, so that a tool that blocks (on a FIFO, say)
///     fails the test with status 124 instead of hanging it.
///   - directory: the working directory (default: the test's).
///   - environment: replaces the test's environment when given.
public func runTool(_ name: String, _ args: [String], timeout: Int? = nil, in directory: String? = nil,
                    environment: [String: String]? = nil) throws -> (status: Int32, stdout: String, stderr: String) {
    let path = name.contains("/") ? name : try toolPath(name)
    return try runProcess(timeout.map { _ in "/usr/bin/timeout" } ?? path,
                          (timeout.map { ["-k", "5", String($0), path] } ?? []) + args, in: directory, environment: environment)
}

/// Runs a command found on the PATH (`ffmpeg`, `ffprobe`, ...) with no standard input,
/// whatever its exit status.
public func runCommand(_ tool: String, _ args: [String], in directory: String? = nil,
                       environment: [String: String]? = nil) throws -> (status: Int32, stdout: String, stderr: String) {
    try runProcess("/usr/bin/env", [tool] + args, in: directory, environment: environment)
}

/// Runs ffmpeg quietly (`-hide_banner -loglevel error -nostdin -y`) to make a test clip;
/// throws with its standard error when it fails.
public func ffmpeg(_ args: [String]) throws {
    let r = try runCommand("ffmpeg", ["-hide_banner", "-loglevel", "error", "-nostdin", "-y"] + args)
    guard r.status == 0 else { throw TestDataError(message: "ffmpeg \(args.joined(separator: " ")) failed: \(r.stderr)") }
}

func runProcess(_ executable: String, _ args: [String], in directory: String?,
                environment: [String: String]?) throws -> (status: Int32, stdout: String, stderr: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = args
    p.standardInput = FileHandle.nullDevice
    if let directory { p.currentDirectoryURL = URL(fileURLWithPath: directory) }
    if let environment { p.environment = environment }
    let (o, e) = try runCollecting(p)
    return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}

/// The path of a built executable of the package: next to the test bundle, or in .build/debug.
public func toolPath(_ name: String) throws -> String {
    var candidates: [String] = []
    if let dir = ProcessInfo.processInfo.environment["VIDX_BIN_DIR"] { candidates.append(dir + "/" + name) }
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for _ in 0..<4 {
        candidates.append(dir.appendingPathComponent(name).path)
        dir.deleteLastPathComponent()
    }
    candidates.append(Python.root + "/.build/debug/" + name)
    guard let path = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
        throw TestDataError(message: "cannot find \(name) in \(candidates)")
    }
    return path
}

/// Runs `p` to its end, draining its standard output and standard error at the same time
/// (reading one to its end first deadlocks once the other fills its pipe).
public func runCollecting(_ p: Process) throws -> (stdout: Data, stderr: Data) {
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    nonisolated(unsafe) var e = Data()
    let group = DispatchGroup()
    group.enter()
    let reader = Thread {
        e = err.fileHandleForReading.readDataToEndOfFile()
        group.leave()
    }
    reader.start()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    p.waitUntilExit()
    return (o, e)
}

/// A fresh directory for one test process, removed when the process exits.
public func makeTestDirectory(_ label: String) -> String {
    let d = NSTemporaryDirectory() + "vidx-\(label)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    TestDirectories.register(d)
    return d
}

enum TestDirectories {
    nonisolated(unsafe) static var all: [String] = []
    static let lock = NSLock()
    static func register(_ d: String) {
        lock.lock()
        defer { lock.unlock() }
        if all.isEmpty { atexit { for d in TestDirectories.all { try? FileManager.default.removeItem(atPath: d) } } }
        all.append(d)
    }
}

/// Fault injection: runs the built executable `name` under strace, which kills it
/// (SIGKILL) at its `k`-th call of `syscall` (counted per thread, strace's rule).
/// - Returns: the exit status (9, the signal, when it was killed).
public func runKilled(_ name: String, _ args: [String], at k: Int, of syscall: String) throws -> Int32 {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/strace")
    p.arguments = ["-f", "-qq", "-o", "/dev/null", "-e", "inject=\(syscall):signal=SIGKILL:when=\(k)", try toolPath(name)] + args
    p.standardInput = FileHandle.nullDevice
    _ = try runCollecting(p)
    return p.terminationStatus
}

/// How many times a run of the built executable `name` calls `syscall`, and its status.
public func syscallCount(_ name: String, _ args: [String], of syscall: String) throws -> (status: Int32, calls: Int) {
    let log = makeTestDirectory("strace") + "/trace"
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/strace")
    p.arguments = ["-f", "-qq", "-o", log, "-e", "trace=\(syscall)", try toolPath(name)] + args
    p.standardInput = FileHandle.nullDevice
    _ = try runCollecting(p)
    let trace = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
    return (p.terminationStatus, trace.split(separator: "\n").filter { $0.contains(syscall + "(") }.count)
}

/// Whether strace (installed by `make setup`) is there for the fault-injection tests.
public var straceMissing: String? {
    FileManager.default.isExecutableFile(atPath: "/usr/bin/strace") ? nil
        : "the fault-injection tests need strace, which `make setup` installs (apt-get install strace)"
}

/// The string enum at `path` in the JSON Schema `name` under Schemas/: object keys, and
/// "*" for the object branch of a `oneOf` array.
public func schemaEnum(_ name: String, _ path: [String]) throws -> [String] {
    let data = try Data(contentsOf: URL(fileURLWithPath: Python.root + "/Schemas/" + name))
    var node: Any = try JSONSerialization.jsonObject(with: data)
    for key in path {
        if key == "*" {
            guard let branch = (node as? [Any])?.first(where: { ($0 as? [String: Any])?["type"] as? String == "object" }) else {
                throw TestDataError(message: "\(name): no object branch at \(path)")
            }
            node = branch
        } else {
            guard let next = (node as? [String: Any])?[key] else { throw TestDataError(message: "\(name): no '\(key)' in \(path)") }
            node = next
        }
    }
    guard let values = (node as? [String: Any])?["enum"] as? [String] else {
        throw TestDataError(message: "\(name): no string enum at \(path)")
    }
    return values
}

/// SeededGenerator: the one seeded generator of the tests, so random contents are the same on
/// every run and machine.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [-1, 1), 24 random bits.
    public mutating func uniform() -> Float { Float(next() >> 40) / Float(1 << 23) - 1 }

    /// Uniform in 0..<n.
    public mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}
