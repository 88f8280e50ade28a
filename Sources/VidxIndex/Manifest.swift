import Foundation
import VidxCore

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
        public var kind: String
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

    public struct Config: Codable, Sendable, Equatable {
        public var mode: String
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

    /// Reads and checks `MANIFEST.json` in a generation directory.
    /// - Throws: `IndexError` naming the file and the problem.
    public static func read(generationDirectory dir: String) throws -> IndexManifest {
        let path = dir + "/" + fileName
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw IndexError(path: path, "cannot read the manifest: \(error.localizedDescription)")
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
        guard manifest.formatVersion >= 1 else {
            throw IndexError(path: path, "format_version \(manifest.formatVersion) is not a known version")
        }
        return manifest
    }

    /// The manifest's bytes: pretty-printed JSON with sorted keys and a final newline.
    public func encoded() throws -> Data {
        var data = try makeJSONEncoder(pretty: true).encode(self)
        data.append(0x0A)
        return data
    }
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
