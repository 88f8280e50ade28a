// The constants and plain types of the index shard format (Schemas/index-shard.md).

/// Constants of the index shard file, format version 1 (Schemas/index-shard.md).
///
/// Layout: header (128 bytes) at 0, section table (32 bytes an entry) at 128, sections at
/// 64-aligned offsets with zero bytes between them, trailer (16 bytes) at `file_size - 16`.
/// Every integer is little-endian.
public enum ShardFormat {
    /// ASCII `VIDXSHRD`, the first 8 bytes of every shard.
    public static let magic: [UInt8] = Array("VIDXSHRD".utf8)
    /// ASCII `VIDXEND` and one zero byte, the last 8 bytes of every shard.
    public static let endMagic: [UInt8] = Array("VIDXEND".utf8) + [0]
    /// The version this code writes, and the newest it reads.
    public static let version: UInt16 = 1
    /// The oldest version this code still reads.
    public static let oldestReadableVersion: UInt16 = 1
    /// Bytes in the header (version 1 readers require exactly this `header_size`).
    public static let headerSize = 128
    /// Bytes in one section table entry.
    public static let tableEntrySize = 32
    /// Bytes in the trailer.
    public static let trailerSize = 16
    /// Every section starts on a multiple of this.
    public static let alignment = 64
    /// The most entries a section table may have.
    public static let maxSections = 64
    /// Bit 0 of a table entry's flags: a reader that does not know the kind must refuse the file.
    public static let requiredFlag: UInt32 = 1
    /// The bytes of `bundle_fingerprint` (a raw SHA-256).
    public static let fingerprintSize = 32
    /// The bytes of one content hash (a raw SHA-256).
    public static let contentHashSize = 32

    /// Byte offsets of the header's fields.
    enum Header {
        static let magic = 0, formatVersion = 8, headerSizeField = 10, flags = 12, videoCount = 16
        static let levels = 24, subspaces = 28, codewords = 32, dimension = 36, bundleFingerprint = 40
        static let shardIndex = 72, shardCount = 76, sectionCount = 80, reserved0 = 84, fileSize = 88
        static let reserved = 96, reservedSize = 28, headerCRC = 124
    }

    /// Byte offsets of a section table entry's fields.
    enum Entry {
        static let kind = 0, flags = 4, offset = 8, length = 16, crc = 24, reserved = 28
    }

    /// Byte offsets of the trailer's fields.
    enum Trailer {
        static let fileCRC = 0, reserved = 4, endMagic = 8
    }
}

/// The section kinds this code knows. Kinds 1 to 6 are in every file with the required
/// flag; 16 to 18 are optional. Values are never reused.
public enum SectionKind: UInt32, Sendable, CaseIterable {
    /// N x u64, strictly ascending.
    case ids = 1
    /// N + 1 u64 offsets, then the UTF-8 bytes of every external id.
    case externalIDs = 2
    /// N x 32 bytes: SHA-256 of the video file, zero when unknown.
    case contentHashes = 3
    /// (N, M) u8: the level-0 codes.
    case coarseCodes = 4
    /// (N, L - 1, M) u8: the fine levels' codes.
    case fineCodes = 5
    /// T x u64 ids, strictly ascending: entries hidden in every older shard.
    case tombstones = 6
    /// (N, D) f16: the coarse embeddings, for exact re-ranking.
    case coarseEmbeddingsF16 = 16
    /// Per-segment time windows and codes, for moment retrieval.
    case segments = 17
    /// u32 bits, u32 0, then (N, ceil(bits / 8)) u8 binary codes.
    case hashCodes = 18

    /// The name the spec gives the kind (`fine_codes`), used in error messages.
    public var name: String {
        switch self {
        case .ids: "ids"
        case .externalIDs: "external_ids"
        case .contentHashes: "content_hashes"
        case .coarseCodes: "coarse_codes"
        case .fineCodes: "fine_codes"
        case .tombstones: "tombstones"
        case .coarseEmbeddingsF16: "coarse_embeddings_f16"
        case .segments: "segments"
        case .hashCodes: "hash_codes"
        }
    }

    /// Whether every file must hold this kind, with the required flag set (kinds 1 to 6).
    public var isMandatory: Bool { rawValue <= 6 }

    /// The spec's name of any kind: `ids`, or `section kind 99` for a kind not known here.
    public static func name(of kind: UInt32) -> String {
        SectionKind(rawValue: kind)?.name ?? "section kind \(kind)"
    }
}

/// The fields of a shard's header that describe its contents (the rest is structure:
/// magic, version, sizes, the table's count, checksums).
public struct ShardHeader: Sendable, Equatable {
    /// N, the entries in the shard.
    public var videoCount: UInt64
    /// L, quantizers per video (level 0 coarse, then L - 1 fine levels).
    public var levels: UInt32
    /// M, sub-spaces per level.
    public var subspaces: UInt32
    /// K, codewords per sub-codebook (1 to 256).
    public var codewords: UInt32
    /// D, the embedding width, a multiple of M.
    public var dimension: UInt32
    /// The model bundle's SHA-256, 32 raw bytes.
    public var bundleFingerprint: [UInt8]
    /// s, this shard's index among the S shards of its kind: every id has `id % S == s`.
    public var shardIndex: UInt32
    /// S, the number of shards of its kind (at least 1).
    public var shardCount: UInt32

    public init(videoCount: UInt64, levels: UInt32, subspaces: UInt32, codewords: UInt32, dimension: UInt32,
                bundleFingerprint: [UInt8], shardIndex: UInt32, shardCount: UInt32) {
        self.videoCount = videoCount
        self.levels = levels
        self.subspaces = subspaces
        self.codewords = codewords
        self.dimension = dimension
        self.bundleFingerprint = bundleFingerprint
        self.shardIndex = shardIndex
        self.shardCount = shardCount
    }
}

/// One entry of the section table, as stored.
public struct SectionEntry: Sendable, Equatable {
    /// The section kind (`SectionKind` raw values, or one this code does not know).
    public var kind: UInt32
    /// Bit 0: required (see `isRequired`); other bits are zero in a valid file.
    public var flags: UInt32
    /// Where the section starts in the file: a multiple of 64, after the table.
    public var offset: UInt64
    /// The section's length in bytes (may be 0).
    public var length: UInt64
    /// CRC-32C of the section's bytes.
    public var crc: UInt32

    public init(kind: UInt32, flags: UInt32, offset: UInt64, length: UInt64, crc: UInt32) {
        self.kind = kind
        self.flags = flags
        self.offset = offset
        self.length = length
        self.crc = crc
    }

    /// Whether a reader that does not know `kind` must refuse the file (flag bit 0).
    public var isRequired: Bool { flags & ShardFormat.requiredFlag != 0 }

    /// The kind's name in the spec, or `section kind N` for an unknown kind.
    public var name: String { SectionKind.name(of: kind) }
}
