import Foundation
import Testing
import VidxCore
import VidxTestSupport

/// Runs `executable` (a tool name or a path) under `timeout(1)`, so that a tool that
/// blocks (on a FIFO, say) fails the test with status 124 instead of hanging it.
/// - Parameters:
///   - directory: the working directory (default: the test's).
///   - environment: replaces the test's environment when given.
func runBounded(_ executable: String, _ args: [String], seconds: Int = 120, in directory: String? = nil,
                environment: [String: String]? = nil) throws -> (status: Int32, stdout: String, stderr: String) {
    let path = executable.contains("/") ? executable : try toolPath(executable)
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
    p.arguments = ["-k", "5", String(seconds), path] + args
    p.standardInput = FileHandle.nullDevice
    if let directory { p.currentDirectoryURL = URL(fileURLWithPath: directory) }
    if let environment { p.environment = environment }
    let (o, e) = try runCollecting(p)
    return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}

/// Makes a FIFO at `path`.
func makeFIFO(_ path: String) throws {
    guard mkfifo(path, 0o644) == 0 else { throw TestDataError(message: "mkfifo \(path) failed: errno \(errno)") }
}

/// Small generated clips (160 x 120, 10 fps): cheap to decode.
enum Clips {
    /// A moving test pattern with a 1 kHz tone.
    static func tone(_ path: String, seconds: Int = 2) throws {
        try ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10:duration=\(seconds)", "-f", "lavfi",
                    "-i", "sine=frequency=1000:duration=\(seconds)", "-c:v", "libx264", "-preset", "veryfast",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", path])
    }

    /// A moving test pattern without an audio stream.
    static func silent(_ path: String, seconds: Int = 2) throws {
        try ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10:duration=\(seconds)", "-c:v", "libx264",
                    "-preset", "veryfast", "-pix_fmt", "yuv420p", path])
    }
}

/// A one-layer bundle with seeded weights: the starter's built-in experts `builtin` (by
/// name: appearance, audio, motion) and imported experts (name, width), windowed.
@discardableResult
func makeBundle(_ dir: String, builtin: [String], imported: [(name: String, width: Int)] = []) throws -> String {
    let extra = imported.map { "[\"\($0.name)\", \($0.width)]" }.joined(separator: ",")
    try Python.run(["-c", """
        import copy, json, sys, bundle_tools, make_starter
        d, builtin, imported = sys.argv[1], sys.argv[2].split(","), json.loads(sys.argv[3])
        config = copy.deepcopy(make_starter.STARTER_CONFIG)
        config["name"] = "test"
        config["layers"] = 1
        config["experts"] = [e for e in config["experts"] if e["name"] in builtin]
        for name, width in imported:
            config["experts"].append({"name": name, "width": width, "type_id": 7, "timing": "windowed",
                                      "extractor": "imported:" + name})
        config["experts"].sort(key=lambda e: e["name"])
        bundle_tools.write_bundle(d, config, bundle_tools.random_bundle(config, 1))
        """, dir, builtin.joined(separator: ","), "[\(extra)]"])
    return dir
}

/// Saves seeded (rows, width) float32 features as .npy (and times [k, k+1) as `times`).
func saveNPY(_ path: String, rows: Int, width: Int, seed: Int, times: String? = nil) throws {
    try Python.run(["-c", """
        import sys, numpy as np
        rows, width, seed = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
        np.save(sys.argv[1], np.random.default_rng(seed).standard_normal((rows, width)).astype(np.float32))
        if len(sys.argv) > 5:
            np.save(sys.argv[5], np.stack([np.arange(rows), np.arange(rows) + 1], 1).astype(np.float32))
        """, path, String(rows), String(width), String(seed)] + (times.map { [$0] } ?? []))
}

/// The names in `dir` that `AtomicFile` uses for files not yet committed.
func temporaryNames(in dir: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter(AtomicFile.isTemporaryName)
}
