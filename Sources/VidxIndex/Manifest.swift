import Foundation
import VidxCore
import VidxQuantization

/// A generation's `MANIFEST.json` (Schemas/index-manifest.schema.json).
///
/// Encoded with sorted keys and no timestamps, so the same generation always has the
/// same bytes.
public struct IndexManifest: Codable, Sendable, Equatable {
    public static let format = "vidx-index-manifest"
    public static let version = 1
    public static let fileName = "MANIFEST.json"

    public struct Codebooks: Codable, Sendable, Equatable {
        public var file: String
        public var sha256: String
        public var bytes: Int
    }

    public struct ShardRecord: Codable, Sendable, Equatable {
        public var file: String
        public var kind: ShardKind
        public var sequence: Int
        public var shardIndex: Int
        public var shardCount: Int
        public var videos: Int
        public var tombstones: Int
        public var bytes: Int
        public var crc32c: String
        public var sha256: String

        enum CodingKeys: String, CodingKey {
            case file, kind, sequence, shardIndex = "shard_index", shardCount = "shard_count", videos, tombstones,
                 bytes, crc32c, sha256
        }
    }

    public struct Counts: Codable, Sendable, Equatable {
        public var entries: Int
        public var live: Int
        public var superseded: Int
        public var deleted: Int
    }

    public struct Tool: Codable, Sendable, Equatable {
        public var name: String
        public var version: String
        public init(name: String, version: String) {
            self.name = name
            self.version = version
        }
    }

    public struct Input: Codable, Sendable, Equatable {
        public var sha256: String
        public var videos: Int
        public init(sha256: String, videos: Int) {
            self.sha256 = sha256
            self.videos = videos
        }
    }

    /// How a generation was made (`config.mode`).
    public enum Mode: String, Codable, Sendable, CaseIterable {
        /// A fresh set of base shards from codes files.
        case build
        /// The parent's shards kept, delta shards and tombstones added.
        case append
        /// The parent's live entries rewritten into fresh base shards.
        case compact
    }

    public struct Config: Codable, Sendable, Equatable {
        public var mode: Mode
        public var shards: Int
        public var inputs: [Input]?
        public var deletedIDs: Int?

        enum CodingKeys: String, CodingKey { case mode, shards, inputs, deletedIDs = "deleted_ids" }
    }

    public var format = IndexManifest.format
    public var formatVersion = IndexManifest.version
    public var generation: String
    public var parent: String?
    public var bundleFingerprint: String
    public var levels: Int
    public var subspaces: Int
    public var codewords: Int
    public var dimension: Int
    public var codebooks: Codebooks
    public var shards: [ShardRecord]
    public var counts: Counts
    public var tool: Tool
    public var config: Config

    enum CodingKeys: String, CodingKey {
        case format, formatVersion = "format_version", generation, parent, bundleFingerprint = "bundle_fingerprint",
             levels, subspaces, codewords, dimension, codebooks, shards, counts, tool, config
    }

    // `parent` is written as null, not omitted, as the schema requires.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(format, forKey: .format)
        try c.encode(formatVersion, forKey: .formatVersion)
        try c.encode(generation, forKey: .generation)
        try c.encode(parent, forKey: .parent)
        try c.encode(bundleFingerprint, forKey: .bundleFingerprint)
        try c.encode(levels, forKey: .levels)
        try c.encode(subspaces, forKey: .subspaces)
        try c.encode(codewords, forKey: .codewords)
        try c.encode(dimension, forKey: .dimension)
        try c.encode(codebooks, forKey: .codebooks)
        try c.encode(shards, forKey: .shards)
        try c.encode(counts, forKey: .counts)
        try c.encode(tool, forKey: .tool)
        try c.encode(config, forKey: .config)
    }

    /// Reads and checks `MANIFEST.json` in a generation directory: JSON types, every rule
    /// of Schemas/index-manifest.schema.json (`validate`), and that it names the directory
    /// it is in.
    /// - Throws: `IndexError` naming the file and the problem.
    public static func read(generationDirectory dir: String) throws -> IndexManifest {
        let path = dir + "/" + fileName
        let data: Data
        do { data = try InputFiles.read(path, maxBytes: 64 << 20) } catch {
            throw IndexError(path: path, "cannot read the manifest: \(error)")
        }
        let manifest = try parse(data, path: path)
        let directoryName = (dir as NSString).lastPathComponent
        if IndexGeneration.isGenerationName(directoryName), manifest.generation != directoryName {
            throw IndexError(path: path, "names generation '\(manifest.generation)' but lives in '\(directoryName)'")
        }
        return manifest
    }

    /// Parses and validates a manifest's bytes (`validate`).
    /// - Throws: `IndexError` naming `path` and the first rule broken.
    public static func parse(_ data: Data, path: String) throws -> IndexManifest {
        // Keys first: JSONDecoder ignores unknown keys and cannot tell a missing `parent`
        // from a null one; the schema forbids the first and requires the key.
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: data) } catch {
            throw IndexError(path: path, "not valid JSON: \(error.localizedDescription)")
        }
        if let problem = keyProblem(object) {
            throw IndexError(path: path, "does not follow Schemas/index-manifest.schema.json: \(problem)")
        }
        let manifest: IndexManifest
        do { manifest = try JSONDecoder().decode(IndexManifest.self, from: data) } catch {
            throw IndexError(path: path, "not a valid manifest (Schemas/index-manifest.schema.json): \(error)")
        }
        guard manifest.format == format else {
            throw IndexError(path: path, "format is '\(manifest.format)', expected '\(format)'")
        }
        guard manifest.formatVersion <= version else {
            throw IndexError(path: path, "format_version \(manifest.formatVersion) is newer than this build reads (\(version)): upgrade vidx")
        }
        if let problem = manifest.validate() {
            throw IndexError(path: path, "does not follow Schemas/index-manifest.schema.json: \(problem)")
        }
        return manifest
    }

    /// The first rule of Schemas/index-manifest.schema.json that the manifest's values
    /// break, or nil. (Key presence and JSON types are checked when parsing.)
    public func validate() -> String? {
        let hex = StrictDecoding.isLowercaseHex
        func digits(_ s: Substring) -> Bool { s.utf8.allSatisfy { (48...57).contains($0) } }
        if formatVersion != IndexManifest.version { return "format_version is \(formatVersion), not \(IndexManifest.version)" }
        if !IndexGeneration.isGenerationName(generation) { return "generation '\(generation)' is not g followed by 6 digits" }
        if let parent, !IndexGeneration.isGenerationName(parent) { return "parent '\(parent)' is not g followed by 6 digits" }
        if !hex(bundleFingerprint, 64) { return "bundle_fingerprint is not 64 lowercase hex digits" }
        if levels < 1 || subspaces < 1 || dimension < 1 { return "levels, subspaces and dimension must be at least 1" }
        if codewords < 1 || codewords > 256 { return "codewords \(codewords) is not between 1 and 256" }
        let cb = codebooks.file
        if !(cb.hasPrefix("codebooks-") && cb.hasSuffix(".safetensors")
             && hex(String(cb.dropFirst(10).dropLast(12)), 16)) {
            return "codebooks.file '\(cb)' is not codebooks-<16 hex digits>.safetensors"
        }
        if !hex(codebooks.sha256, 64) { return "codebooks.sha256 is not 64 lowercase hex digits" }
        if codebooks.bytes < 0 { return "codebooks.bytes is negative" }
        for (i, r) in shards.enumerated() {
            let name = r.file.utf8.count <= 64 ? r.file : String(r.file.prefix(64)) + "..."
            let stem = r.file.hasSuffix(".vidx") ? r.file.dropLast(5) : ""
            let parts = stem.split(separator: "-", omittingEmptySubsequences: false)
            let fileOK = (parts.count == 2 && parts[0] == "base" && parts[1].count == 4 && digits(parts[1]))
                || (parts.count == 3 && parts[0] == "delta" && parts[1].count == 4 && digits(parts[1])
                    && parts[2].count == 4 && digits(parts[2]))
            if !fileOK { return "shards[\(i)].file '\(name)' is not base-NNNN.vidx or delta-NNNN-NNNN.vidx" }
            if r.sequence < 0 || r.shardIndex < 0 || r.videos < 0 || r.tombstones < 0 || r.bytes < 0 {
                return "shards[\(i)] has a negative count"
            }
            if r.shardCount < 1 { return "shards[\(i)].shard_count must be at least 1" }
            if !hex(r.crc32c, 8) { return "shards[\(i)].crc32c is not 8 lowercase hex digits" }
            if !hex(r.sha256, 64) { return "shards[\(i)].sha256 is not 64 lowercase hex digits" }
        }
        if counts.entries < 0 || counts.live < 0 || counts.superseded < 0 || counts.deleted < 0 { return "counts are negative" }
        if config.shards < 1 { return "config.shards must be at least 1" }
        if let d = config.deletedIDs, d < 0 { return "config.deleted_ids is negative" }
        for (i, input) in (config.inputs ?? []).enumerated() {
            if !hex(input.sha256, 64) { return "config.inputs[\(i)].sha256 is not 64 lowercase hex digits" }
            if input.videos < 0 { return "config.inputs[\(i)].videos is negative" }
        }
        return nil
    }

    /// Keys the schema forbids (`additionalProperties: false`) or requires, or nil.
    static func keyProblem(_ object: Any) -> String? {
        func check(_ value: Any?, _ where_: String, allowed: Set<String>, required: Set<String>) -> String? {
            guard let dict = value as? [String: Any] else { return "\(where_) is not an object" }
            if let extra = dict.keys.sorted().first(where: { !allowed.contains($0) }) { return "\(where_) has an unknown key '\(extra)'" }
            if let missing = required.sorted().first(where: { dict[$0] == nil }) { return "\(where_) has no '\(missing)'" }
            return nil
        }
        let top: Set<String> = ["format", "format_version", "generation", "parent", "bundle_fingerprint", "levels",
                                "subspaces", "codewords", "dimension", "codebooks", "shards", "counts", "tool", "config"]
        if let p = check(object, "the manifest", allowed: top, required: top) { return p }
        let dict = object as! [String: Any]
        let cb: Set<String> = ["file", "sha256", "bytes"]
        if let p = check(dict["codebooks"], "codebooks", allowed: cb, required: cb) { return p }
        let shard: Set<String> = ["file", "kind", "sequence", "shard_index", "shard_count", "videos", "tombstones",
                                  "bytes", "crc32c", "sha256"]
        guard let shards = dict["shards"] as? [Any] else { return "shards is not an array" }
        for (i, s) in shards.enumerated() {
            if let p = check(s, "shards[\(i)]", allowed: shard, required: shard) { return p }
        }
        let counts: Set<String> = ["entries", "live", "superseded", "deleted"]
        if let p = check(dict["counts"], "counts", allowed: counts, required: counts) { return p }
        guard dict["tool"] is [String: Any] else { return "tool is not an object" }
        guard let config = dict["config"] as? [String: Any] else { return "config is not an object" }
        if let inputs = config["inputs"] {
            guard let list = inputs as? [Any] else { return "config.inputs is not an array" }
            for (i, item) in list.enumerated() {
                guard let o = item as? [String: Any], o["sha256"] is String, o["videos"] is NSNumber else {
                    return "config.inputs[\(i)] is not an object with sha256 and videos"
                }
            }
        }
        return nil
    }

    /// The product quantizer's layout the generation's codes follow.
    /// - Throws: `QuantizerError` when the sizes break its rules.
    public func layout() throws -> ProductQuantizer.Layout {
        try ProductQuantizer.Layout(levels: levels, subspaces: subspaces, codewords: codewords, dimension: dimension)
    }

    /// The manifest's bytes: pretty-printed JSON with sorted keys and a final newline.
    public func encoded() throws -> Data {
        var data = try makeJSONEncoder(pretty: true).encode(self)
        data.append(0x0A)
        return data
    }
}

/// What a shard holds in its generation (Schemas/index-manifest.schema.json).
public enum ShardKind: String, Codable, Sendable, CaseIterable {
    /// One of the S base shards (sequence 0), written by a build or a compaction.
    case base
    /// A shard of a delta round (sequence k >= 1), written by an append.
    case delta
}

/// A problem with an index directory, a generation or one of its files.
public struct IndexError: Error, CustomStringConvertible, Sendable, Equatable {
    public let path: String
    public let message: String
    public init(path: String, _ message: String) {
        self.path = path
        self.message = message
    }
    public var description: String { "\(path): \(message)" }
}
