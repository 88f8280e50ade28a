import Foundation
import VidxCore
import VidxTestSupport
@testable import VidxIndex

/// The shape of test shards.
struct TestShape {
    var levels: UInt32 = 3, subspaces: UInt32 = 4, codewords: UInt32 = 16, dimension: UInt32 = 8
    var shardIndex: UInt32 = 0, shardCount: UInt32 = 2
}

/// Seeded random shard contents: `n` videos whose ids fall in the shape's shard (external ids
/// mix ASCII and non-ASCII), random codes below K, some content hashes unknown, `tombstones`
/// random ids, optionally embeddings and extra sections.
func randomContents(n: Int, seed: UInt64, shape: TestShape = TestShape(), tombstones: Int = 0,
                    embeddings: Bool = false,
                    extraSections: [(kind: UInt32, required: Bool, bytes: [UInt8])] = []) -> ShardContents {
    var rng = SeededGenerator(seed: seed)
    var entries: [ShardEntry] = []
    var k = 0
    while entries.count < n {
        let name = k % 3 == 2 ? "vidéo-\(seed)-\(k)-ü" : "video-\(seed)-\(k)"
        k += 1
        let id = VideoID.of(name)
        guard id % UInt64(shape.shardCount) == UInt64(shape.shardIndex) else { continue }
        let codes = (0..<Int(shape.levels * shape.subspaces)).map { _ in UInt8(rng.next() % UInt64(shape.codewords)) }
        let hash: [UInt8] = rng.next() % 4 == 0 ? [] : (0..<32).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        entries.append(ShardEntry(id: id, externalID: name, contentHash: hash, codes: codes))
    }
    let stones = (0..<tombstones).map { _ in rng.next() }
    let vectors: [UInt16]? = embeddings
        ? (0..<(n * Int(shape.dimension))).map { _ in UInt16(truncatingIfNeeded: rng.next()) } : nil
    return ShardContents(levels: shape.levels, subspaces: shape.subspaces, codewords: shape.codewords,
                         dimension: shape.dimension, bundleFingerprint: (0..<32).map { UInt8($0) },
                         shardIndex: shape.shardIndex, shardCount: shape.shardCount, entries: entries,
                         tombstones: stones, coarseEmbeddingsF16: vectors, extraSections: extraSections)
}

/// A shard file's bytes, with little-endian field access and checksum repair, for making
/// files with exactly one defect. Offsets are the spec's (Schemas/index-shard.md), written
/// out here rather than taken from the code under test.
struct ShardBytes {
    var bytes: [UInt8]

    func u16(_ at: Int) -> UInt16 { UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8 }
    func u32(_ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(bytes[at + $1]) << (8 * UInt32($1)) } }
    func u64(_ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(bytes[at + $1]) << (8 * UInt64($1)) } }

    mutating func set<T: FixedWidthInteger>(_ value: T, at: Int) {
        for i in 0..<(T.bitWidth / 8) { bytes[at + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
    }

    var sectionCount: Int { Int(u32(80)) }
    /// The byte offset of table entry `i`.
    func entry(_ i: Int) -> Int { 128 + 32 * i }
    /// The table index of the entry of `kind`.
    func index(of kind: SectionKind) -> Int { index(ofRaw: kind.rawValue) }
    func index(ofRaw kind: UInt32) -> Int {
        guard let i = (0..<sectionCount).first(where: { u32(entry($0)) == kind }) else {
            fatalError("no section of kind \(kind)")
        }
        return i
    }
    /// Where the section of `kind` starts.
    func start(of kind: SectionKind) -> Int { Int(u64(entry(index(of: kind)) + 8)) }
    func length(of kind: SectionKind) -> Int { Int(u64(entry(index(of: kind)) + 16)) }

    /// Sets a table entry's field (`field`: 0 kind, 4 flags, 8 offset, 16 length, 24 crc, 28 reserved).
    mutating func setEntry<T: FixedWidthInteger>(_ kind: SectionKind, field: Int, _ value: T) {
        set(value, at: entry(index(of: kind)) + field)
    }

    /// Recomputes every in-bounds section CRC, the header CRC and the file CRC (after an edit
    /// that must be caught by something other than a checksum).
    mutating func refreshChecksums() {
        let count = min(sectionCount, (bytes.count - 128) / 32)
        for i in 0..<max(count, 0) {
            let offset = u64(entry(i) + 8), length = u64(entry(i) + 16)
            let (end, overflow) = offset.addingReportingOverflow(length)
            if !overflow && end <= UInt64(bytes.count) {
                set(CRC32C.checksum(Array(bytes[Int(offset)..<Int(end)])), at: entry(i) + 24)
            }
        }
        refreshHeaderAndFileCRC()
    }

    /// Recomputes the header CRC and the file CRC only.
    mutating func refreshHeaderAndFileCRC() {
        set(CRC32C.checksum(Array(bytes[0..<124])), at: 124)
        refreshFileCRC()
    }

    mutating func refreshFileCRC() {
        let trailer = bytes.count - 16
        set(CRC32C.checksum(Array(bytes[0..<trailer])), at: trailer)
    }
}

/// The error `Shard.validate` throws for `bytes`, or nil if it accepts them. Also checks
/// that `Shard(copying:)` agrees.
func validationError(_ bytes: [UInt8], verifyChecksums: Bool = true) -> ShardError? {
    let viaValidate: ShardError?
    do {
        _ = try bytes.withUnsafeBytes { try Shard.validate($0, path: "test.vidx", verifyChecksums: verifyChecksums) }
        viaValidate = nil
    } catch let e as ShardError {
        viaValidate = e
    } catch {
        fatalError("validate threw a non-ShardError: \(error)")
    }
    let viaShard: ShardError?
    do {
        _ = try bytes.withUnsafeBytes { try Shard(copying: $0, path: "test.vidx", verifyChecksums: verifyChecksums) }
        viaShard = nil
    } catch let e as ShardError {
        viaShard = e
    } catch {
        fatalError("Shard(copying:) threw a non-ShardError: \(error)")
    }
    precondition(viaValidate == viaShard, "validate and Shard(copying:) disagree")
    return viaValidate
}

/// A fresh temporary directory, removed when the test process exits.
func temporaryDirectory() -> String { makeTestDirectory("index") }

/// CRC-32C one bit at a time, straight from the definition: the reference for the fast one.
func bitwiseCRC32C(_ bytes: [UInt8]) -> UInt32 {
    var c: UInt32 = 0xFFFF_FFFF
    for b in bytes {
        c ^= UInt32(b)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
    }
    return c ^ 0xFFFF_FFFF
}
