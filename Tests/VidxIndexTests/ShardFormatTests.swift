import Foundation
import Testing
import VidxCore
import VidxTestSupport
@testable import VidxIndex

// MARK: - CRC-32C and ids

@Suite("CRC-32C")
struct CRC32CTests {
    @Test("standard vectors (the spec's check value, RFC 3720 B.4)")
    func vectors() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([]) == 0)
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(CRC32C.checksum((0..<32).map { UInt8($0) }) == 0x46DD_794E)
        #expect(CRC32C.checksum((0..<32).reversed().map { UInt8($0) }) == 0x113F_DB5C)
    }

    @Test("equals the bitwise definition at every length and alignment")
    func matchesBitwise() {
        var rng = SeededGenerator(seed: 1)
        let data = (0..<300).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        for start in 0..<9 {
            for length in [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 200] {
                let slice = Array(data[start..<(start + length)])
                let fast = data.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[start..<(start + length)])) }
                #expect(fast == bitwiseCRC32C(slice), "start \(start), length \(length)")
            }
        }
    }

    @Test("chunked computation equals one pass; combine joins CRCs without the bytes")
    func chunkedAndCombined() {
        var rng = SeededGenerator(seed: 2)
        let data = (0..<100_003).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let whole = CRC32C.checksum(data)
        for _ in 0..<20 {
            var cuts = (0..<5).map { _ in Int(rng.next() % UInt64(data.count + 1)) }.sorted()
            cuts = [0] + cuts + [data.count]
            var running: UInt32 = 0, combined: UInt32 = 0
            for (a, b) in zip(cuts, cuts.dropFirst()) {
                let part = Array(data[a..<b])
                running = CRC32C.checksum(part, continuing: running)
                combined = CRC32C.combine(combined, CRC32C.checksum(part), lengthB: UInt64(part.count))
            }
            #expect(running == whole)
            #expect(combined == whole)
        }
        #expect(CRC32C.combine(0x1234_5678, 0, lengthB: 0) == 0x1234_5678)
        // A zero-length second part, and a very long (virtual) run of zero bytes, stay exact.
        let zeros = [UInt8](repeating: 0, count: 4096)
        #expect(CRC32C.combine(whole, CRC32C.checksum(zeros), lengthB: 4096) == CRC32C.checksum(data + zeros))
    }
}

@Suite("Video ids")
struct VideoIDTests {
    /// Values from `python3 -c "import hashlib,struct;print(struct.unpack('<Q',hashlib.sha256(b'video-1').digest()[:8])[0])"`.
    @Test("first 8 bytes of SHA-256, little-endian, as Python computes them")
    func pinned() {
        #expect(VideoID.of("video-1") == 15_913_544_214_960_058_740)
        #expect(VideoID.of("vidéo-ü") == 17_458_379_511_797_153_861)
        #expect(VideoID.of("") == 1_449_310_910_991_872_227)
    }
}

// MARK: - Round trips

@Suite("Shard files: write and read")
struct ShardRoundTripTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var n: Int
        var shape = TestShape()
        var tombstones = 0
        var embeddings = false
        var extra = false
        var testDescription: String {
            "N \(n), L \(shape.levels) M \(shape.subspaces) K \(shape.codewords) D \(shape.dimension), shard \(shape.shardIndex)/\(shape.shardCount), \(tombstones) tombstones\(embeddings ? ", embeddings" : "")\(extra ? ", unknown optional section" : "")"
        }
    }

    static let cases: [Case] = [
        Case(n: 0),
        Case(n: 0, tombstones: 4),
        Case(n: 1),
        Case(n: 2, tombstones: 1, embeddings: true),
        Case(n: 17, tombstones: 5, embeddings: true, extra: true),
        Case(n: 300, shape: TestShape(levels: 8, subspaces: 32, codewords: 256, dimension: 64, shardIndex: 2, shardCount: 3),
             tombstones: 40, embeddings: true, extra: true),
        Case(n: 9, shape: TestShape(levels: 1, subspaces: 2, codewords: 3, dimension: 2, shardIndex: 0, shardCount: 1)),
    ]

    @Test("every field and view comes back as written", arguments: cases)
    func roundTrip(_ c: Case) throws {
        let extra: [(kind: UInt32, required: Bool, bytes: [UInt8])] = c.extra ? [(200, false, Array("future".utf8))] : []
        let contents = randomContents(n: c.n, seed: UInt64(c.n) + 11, shape: c.shape, tombstones: c.tombstones,
                                      embeddings: c.embeddings, extraSections: extra)
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/s.vidx"
        try ShardWriter.write(contents, to: path)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["s.vidx"])  // no temporary left
        let onDisk = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(onDisk == (try ShardWriter.bytes(contents)))

        let shard = try Shard(path: path)
        let s = c.shape
        #expect(shard.header == ShardHeader(videoCount: UInt64(c.n), levels: s.levels, subspaces: s.subspaces,
                                            codewords: s.codewords, dimension: s.dimension,
                                            bundleFingerprint: (0..<32).map { UInt8($0) },
                                            shardIndex: s.shardIndex, shardCount: s.shardCount))
        #expect(shard.count == c.n)
        let sorted = contents.entries.sorted { $0.id < $1.id }
        #expect(Array(shard.ids) == sorted.map(\.id))
        let m = Int(s.subspaces), fine = (Int(s.levels) - 1) * m, d = Int(s.dimension)
        #expect(shard.coarseCodes.count == c.n * m)
        #expect(shard.fineCodes.count == c.n * fine)
        #expect(shard.contentHashes.count == c.n * 32)
        for (i, e) in sorted.enumerated() {
            #expect(shard.externalID(at: i) == e.externalID)
            #expect(shard.contentHash(at: i) == (e.contentHash.isEmpty ? [UInt8](repeating: 0, count: 32) : e.contentHash))
            #expect(shard.codes(at: i) == e.codes)
            #expect(Array(shard.coarseCodes[(i * m)..<((i + 1) * m)]) == Array(e.codes[0..<m]))
            #expect(Array(shard.fineCodes[(i * fine)..<((i + 1) * fine)]) == Array(e.codes[m...]))
            #expect(shard.index(of: e.id) == i)
        }
        #expect(shard.index(of: 1) == nil || shard.ids.contains(1))
        #expect(Array(shard.tombstones) == contents.tombstones.sorted())
        if let vectors = contents.coarseEmbeddingsF16 {
            let view = try #require(shard.coarseEmbeddingsF16)
            // Rows follow the entries given, and are reordered with them.
            for (row, e) in sorted.enumerated() {
                let source = try #require(contents.entries.firstIndex(of: e))
                #expect(Array(view[(row * d)..<((row + 1) * d)]) == Array(vectors[(source * d)..<((source + 1) * d)]))
            }
        } else {
            #expect(shard.coarseEmbeddingsF16 == nil)
        }
        // Kinds 1 to 6 first, required; optional ones after; the unknown one skipped but listed.
        let kinds = shard.sections.map(\.kind)
        #expect(Array(kinds.prefix(6)) == [1, 2, 3, 4, 5, 6])
        #expect(shard.sections.prefix(6).allSatisfy { $0.isRequired })
        #expect(shard.sections.dropFirst(6).allSatisfy { !$0.isRequired })
        #expect(shard.sections.allSatisfy { $0.offset % 64 == 0 })
        if c.extra {
            #expect(shard.unknownSections.map(\.kind) == [200])
            #expect(shard.section(kind: 200).map { Array($0) } == Array("future".utf8))
        } else {
            #expect(shard.unknownSections.isEmpty)
            #expect(shard.section(kind: 200) == nil)
        }
        #expect(shard.fileCRC == CRC32C.checksum(Array(onDisk.dropLast(16))))
        shard.releaseResidentPages()
        #expect(Array(shard.ids) == sorted.map(\.id))  // still readable: pages fault back in
        // The unverified open sees the same structure.
        #expect(try Shard(path: path, verifyChecksums: false).parsed == shard.parsed)
    }

    @Test("the bytes depend on the contents only, not on the order of entries and tombstones")
    func deterministic() throws {
        let contents = randomContents(n: 40, seed: 5, tombstones: 9, embeddings: true,
                                      extraSections: [(300, false, [9, 9]), (250, false, [1])])
        var shuffled = contents
        var rng = SeededGenerator(seed: 99)
        let permutation = Array(contents.entries.indices).shuffled(using: &rng)
        let d = Int(contents.dimension)
        shuffled.entries = permutation.map { contents.entries[$0] }
        shuffled.coarseEmbeddingsF16 = permutation.flatMap { contents.coarseEmbeddingsF16![($0 * d)..<(($0 + 1) * d)] }
        shuffled.tombstones = contents.tombstones.shuffled(using: &rng)
        shuffled.extraSections = contents.extraSections.reversed()
        #expect(try ShardWriter.bytes(shuffled) == (try ShardWriter.bytes(contents)))
        #expect(try ShardWriter.bytes(contents) == (try ShardWriter.bytes(contents)))
    }

    /// A tiny shard, checked field by field at the spec's offsets with explicit little-endian
    /// loads, and against the bytes of the independent test writer
    /// `Tests/Python/shard_writer_mimic.py`:
    ///
    ///     cd Tests/Python && python3 -c "import hashlib, numpy as np, shard_writer_mimic as sw;
    ///       d = sw.build_shard(['video-1', 'vidéo-2'], np.array([[[1,2],[3,0]],[[0,1],[2,3]]], np.uint8),
    ///         codewords=4, dimension=4, fingerprint=bytes(range(32)), shard_index=0, shard_count=1,
    ///         content_hashes=[bytes([0xAA]*32), bytes(32)], tombstones=['video-9']);
    ///       print(len(d), hashlib.sha256(d).hexdigest())"
    @Test("golden: header, table and trailer at the spec's offsets; same bytes as the Python test writer")
    func golden() throws {
        let entries = [
            ShardEntry(id: VideoID.of("vidéo-2"), externalID: "vidéo-2", contentHash: [], codes: [0, 1, 2, 3]),
            ShardEntry(id: VideoID.of("video-1"), externalID: "video-1", contentHash: [UInt8](repeating: 0xAA, count: 32),
                       codes: [1, 2, 3, 0]),
        ]
        let contents = ShardContents(levels: 2, subspaces: 2, codewords: 4, dimension: 4,
                                     bundleFingerprint: (0..<32).map { UInt8($0) }, shardIndex: 0, shardCount: 1,
                                     entries: entries, tombstones: [VideoID.of("video-9")])
        let b = ShardBytes(bytes: try ShardWriter.bytes(contents))
        #expect(b.bytes.count == 664)
        #expect(SHA256Digest.hex(b.bytes) == "4e9d0b925bd7298297630c0a6a9fde8329e121cfedd0cb79052dfb23e1cd0926")

        #expect(Array(b.bytes[0..<8]) == [0x56, 0x49, 0x44, 0x58, 0x53, 0x48, 0x52, 0x44])  // VIDXSHRD
        #expect(b.u16(8) == 1)          // format_version
        #expect(b.u16(10) == 128)       // header_size
        #expect(b.u32(12) == 0)         // flags
        #expect(b.u64(16) == 2)         // video_count
        #expect(b.u32(24) == 2)         // levels
        #expect(b.u32(28) == 2)         // subspaces
        #expect(b.u32(32) == 4)         // codewords
        #expect(b.u32(36) == 4)         // dimension
        #expect(Array(b.bytes[40..<72]) == (0..<32).map { UInt8($0) })
        #expect(b.u32(72) == 0)         // shard_index
        #expect(b.u32(76) == 1)         // shard_count
        #expect(b.u32(80) == 6)         // section_count
        #expect(b.u32(84) == 0)         // reserved0
        #expect(b.u64(88) == 664)       // file_size
        #expect(b.bytes[96..<124].allSatisfy { $0 == 0 })
        #expect(b.u32(124) == bitwiseCRC32C(Array(b.bytes[0..<124])))
        // Table: kinds 1..6, required, 64-aligned, in order; ids first after the table.
        let ids = [VideoID.of("vidéo-2"), VideoID.of("video-1")].sorted()
        #expect(b.u64(128 + 8) == 320)  // the table ends at 128 + 6 * 32 = 320
        for i in 0..<6 {
            #expect(b.u32(128 + 32 * i) == UInt32(i + 1))
            #expect(b.u32(128 + 32 * i + 4) == 1)
            #expect(b.u64(128 + 32 * i + 8) % 64 == 0)
            #expect(b.u32(128 + 32 * i + 28) == 0)
        }
        #expect(b.u64(320) == ids[0] && b.u64(328) == ids[1])
        // Trailer.
        #expect(b.u32(648) == 0x713C_F66F)  // file_crc, as the Python writer computes it
        #expect(b.u32(648) == bitwiseCRC32C(Array(b.bytes[0..<648])))
        #expect(b.u32(652) == 0)
        #expect(Array(b.bytes[656..<664]) == Array("VIDXEND".utf8) + [0])
    }

    @Test("known optional sections (segments, hash codes) written as extras are validated and readable")
    func optionalKnownSections() throws {
        let contents = randomContents(n: 5, seed: 3, extraSections: [(17, false, segmentsPayload()), (18, false, hashCodesPayload())])
        let bytes = try ShardWriter.bytes(contents)
        let shard = try bytes.withUnsafeBytes { try Shard(copying: $0) }
        #expect(shard.unknownSections.isEmpty)
        #expect(shard.section(kind: 17).map { Array($0) } == segmentsPayload())
        #expect(shard.section(kind: 18).map { Array($0) } == hashCodesPayload())
    }

    @Test("file errors: missing file, directory, empty file")
    func fileErrors() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: ShardError.self) { try Shard(path: dir + "/missing.vidx") }
        do { _ = try Shard(path: dir + "/missing.vidx") } catch let e as ShardError {
            #expect(e.kind == .unreadable)
            #expect(e.description.hasPrefix(dir + "/missing.vidx: unreadable: open failed"))
        }
        do { _ = try Shard(path: dir) } catch let e as ShardError {
            #expect(e.kind == .unreadable && e.message == "not a regular file")
        }
        #expect(FileManager.default.createFile(atPath: dir + "/empty.vidx", contents: Data()))
        do { _ = try Shard(path: dir + "/empty.vidx") } catch let e as ShardError { #expect(e.kind == .truncated) }
    }

    @Test("errors read as PATH: section NAME: problem: details")
    func description() throws {
        var b = ShardBytes(bytes: try ShardWriter.bytes(randomContents(n: 5, seed: 1)))
        b.setEntry(.fineCodes, field: 24, b.u32(b.entry(b.index(of: .fineCodes)) + 24) ^ 1)
        b.refreshFileCRC()
        let e = try #require(validationError(b.bytes))
        #expect(e.description.hasPrefix("test.vidx: section fine_codes: bad checksum: stored 0x"))
        #expect(e.description.contains(", computed 0x"))
    }

    @Test("the writer refuses contents that break the format")
    func writerRefuses() throws {
        let good = randomContents(n: 4, seed: 8)
        func refusal(_ edit: (inout ShardContents) -> Void) -> ShardError? {
            var c = good
            edit(&c)
            do { _ = try ShardWriter.bytes(c); return nil } catch let e as ShardError { return e } catch { return nil }
        }
        #expect(refusal { _ in } == nil)
        #expect(refusal { $0.entries.append($0.entries[0]) }?.section == "ids")                      // duplicate id
        #expect(refusal { $0.shardIndex = 1 }?.message.contains("belongs in shard") == true)          // wrong shard
        #expect(refusal { $0.entries[0].id ^= 2 }?.message.contains("not the hash") == true)          // id != hash
        #expect(refusal { $0.entries[1].codes.removeLast() }?.section == "coarse_codes")               // wrong count
        #expect(refusal { $0.entries[1].codes[5] = 16 }?.section == "fine_codes")                     // code >= K
        #expect(refusal { $0.entries[1].contentHash = [1, 2] }?.section == "content_hashes")
        #expect(refusal { $0.tombstones = [7, 3, 7] }?.section == "tombstones")
        #expect(refusal { $0.coarseEmbeddingsF16 = [1, 2, 3] }?.section == "coarse_embeddings_f16")
        #expect(refusal { $0.extraSections = [(2, false, [])] }?.kind == .badSectionTable)            // writer's own kind
        #expect(refusal { $0.extraSections = [(40, false, []), (40, true, [])] }?.kind == .badSectionTable)
        #expect(refusal { $0.codewords = 257 }?.kind == .badHeader)
        #expect(refusal { $0.shardCount = 1; $0.entries[0].externalID = ""; $0.entries[0].id = VideoID.of("") }?
                    .section == "external_ids")                                                         // empty id
        #expect(refusal { $0.dimension = 6 }?.kind == .badHeader)
        #expect(refusal { $0.bundleFingerprint = [1] }?.kind == .badHeader)
        #expect(refusal { $0.shardCount = 0 }?.kind == .badHeader)
    }
}

/// G = 3 segments for N = 5 videos (2, 1, 0, 0, 0), L = 3, M = 4 codes below 16.
func segmentsPayload(g: UInt64 = 3, offsets: [UInt64] = [0, 2, 3, 3, 3, 3], code: UInt8 = 5) -> [UInt8] {
    var b = ShardBytes(bytes: [UInt8](repeating: 0, count: 8 + 8 * 6 + 8 * 3 + 3 * 3 * 4))
    b.set(g, at: 0)
    for (i, o) in offsets.enumerated() { b.set(o, at: 8 + 8 * i) }
    for s in 0..<3 {
        b.set(Float(s).bitPattern, at: 56 + 8 * s)
        b.set(Float(s + 1).bitPattern, at: 60 + 8 * s)
    }
    for i in 0..<36 { b.bytes[80 + i] = i == 35 ? code : UInt8(i % 16) }
    return b.bytes
}

/// 12-bit hash codes for N = 5 videos: 8 + 5 x 2 bytes.
func hashCodesPayload(reserved: UInt32 = 0) -> [UInt8] {
    var b = ShardBytes(bytes: [UInt8](repeating: 0xA5, count: 18))
    b.set(UInt32(12), at: 0)
    b.set(reserved, at: 4)
    return b.bytes
}

// MARK: - Defects

/// One defect applied to a valid file, and the error it must cause.
struct Defect: Sendable, CustomTestStringConvertible {
    var name: String
    var kind: ShardError.Kind
    var section: String?
    var apply: @Sendable (inout ShardBytes) -> Void
    var testDescription: String { name }

    init(_ name: String, _ kind: ShardError.Kind, _ section: String? = nil, _ apply: @escaping @Sendable (inout ShardBytes) -> Void) {
        self.name = name
        self.kind = kind
        self.section = section
        self.apply = apply
    }
}

/// The valid file every defect starts from: N = 5 (ids: 40 bytes, so 24 bytes of padding
/// follow), shard 0 of 2, L 3, M 4, K 16, D 8, 3 tombstones, embeddings, an unknown optional
/// section of kind 100, and segments and hash codes.
let baseShard: [UInt8] = {
    let contents = randomContents(n: 5, seed: 7, tombstones: 3, embeddings: true,
                                  extraSections: [(17, false, segmentsPayload()), (18, false, hashCodesPayload()),
                                                  (100, false, [1, 2, 3, 4, 5])])
    guard let bytes = try? ShardWriter.bytes(contents) else { fatalError("the base shard must be writable") }
    return bytes
}()

/// Edits a section's bytes through `edit`, then repairs every checksum.
func editSection(_ kind: SectionKind, _ edit: @escaping @Sendable (inout ShardBytes, Int) -> Void) -> @Sendable (inout ShardBytes) -> Void {
    { b in
        edit(&b, b.start(of: kind))
        b.refreshChecksums()
    }
}

/// Sets a table entry field, then repairs every checksum.
func entryField<T: FixedWidthInteger & Sendable>(_ kind: SectionKind, _ field: Int, _ value: @escaping @Sendable (ShardBytes) -> T) -> @Sendable (inout ShardBytes) -> Void {
    { b in
        b.setEntry(kind, field: field, value(b))
        b.refreshChecksums()
    }
}

/// Sets a header field, then repairs every checksum.
func headerField<T: FixedWidthInteger & Sendable>(_ at: Int, _ value: @escaping @Sendable (ShardBytes) -> T) -> @Sendable (inout ShardBytes) -> Void {
    { b in
        b.set(value(b), at: at)
        b.refreshChecksums()
    }
}

let defects: [Defect] = [
    // Magic, version, sizes.
    Defect("bad magic", .badMagic) { $0.bytes[0] = 0x58 },
    Defect("a PNG file", .badMagic) { $0.bytes = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + $0.bytes.dropFirst(8) },
    Defect("future version (too new)", .tooNew, nil, headerField(8) { _ in UInt16(2) }),
    Defect("version 0 (too old)", .tooOld, nil, headerField(8) { _ in UInt16(0) }),
    Defect("empty file", .truncated) { $0.bytes = [] },
    Defect("magic only", .truncated) { $0.bytes = Array($0.bytes.prefix(8)) },
    Defect("truncated header (100 bytes)", .truncated) { $0.bytes = Array($0.bytes.prefix(100)) },
    Defect("truncated file (cut in the middle)", .truncated) { $0.bytes = Array($0.bytes.prefix($0.bytes.count / 2)) },
    Defect("last byte missing", .truncated) { $0.bytes.removeLast() },
    Defect("bytes appended", .badHeader) { $0.bytes += [UInt8](repeating: 0, count: 64) },
    // Header.
    Defect("header CRC wrong", .badHeaderChecksum) { $0.bytes[50] ^= 1 },
    Defect("header_size 256", .badHeader, nil, headerField(10) { _ in UInt16(256) }),
    Defect("non-zero header flags", .badHeader, nil, headerField(12) { _ in UInt32(1) }),
    Defect("non-zero reserved0", .badHeader, nil, headerField(84) { _ in UInt32(1) }),
    Defect("non-zero reserved header byte", .badHeader, nil, headerField(100) { _ in UInt8(1) }),
    Defect("file_size larger than the file", .truncated, nil, headerField(88) { $0.u64(88) + 64 }),
    Defect("file_size smaller than the file", .badHeader, nil, headerField(88) { $0.u64(88) - 64 }),
    Defect("huge video_count (2^60)", .badSectionLength, "ids", headerField(16) { _ in UInt64(1) << 60 }),
    Defect("video_count 2^64 - 1 (8 N overflows)", .badSectionLength, "ids", headerField(16) { _ in UInt64.max }),
    Defect("video_count one too many", .badSectionLength, "ids", headerField(16) { $0.u64(16) + 1 }),
    Defect("huge section_count", .badSectionTable, nil, headerField(80) { _ in UInt32.max }),
    Defect("65 sections", .badSectionTable, nil, headerField(80) { _ in UInt32(65) }),
    Defect("shard_index not below shard_count", .badHeader, nil, headerField(72) { _ in UInt32(2) }),
    Defect("shard_count 0", .badHeader, nil, headerField(76) { _ in UInt32(0) }),
    Defect("levels 0", .badHeader, nil, headerField(24) { _ in UInt32(0) }),
    Defect("codewords 0", .badHeader, nil, headerField(32) { _ in UInt32(0) }),
    Defect("codewords 257", .badHeader, nil, headerField(32) { _ in UInt32(257) }),
    Defect("dimension not a multiple of subspaces", .badHeader, nil, headerField(36) { _ in UInt32(10) }),
    // Trailer.
    Defect("file CRC wrong", .badChecksum) { $0.set($0.u32($0.bytes.count - 16) ^ 1, at: $0.bytes.count - 16) },
    Defect("bad end magic", .badMagic) { $0.bytes[$0.bytes.count - 1] = 1 },
    Defect("non-zero trailer reserved field", .badHeader) { $0.set(UInt32(1), at: $0.bytes.count - 12) },
    // Table.
    Defect("section offset misaligned", .badSectionTable, "ids", entryField(.ids, 8) { UInt64($0.start(of: .ids) + 8) }),
    Defect("section inside the table", .badSectionTable, "ids", entryField(.ids, 8) { _ in UInt64(128) }),
    Defect("overlapping sections", .badSectionTable, "external_ids", entryField(.externalIDs, 8) { UInt64($0.start(of: .ids)) }),
    Defect("section past the end of the file", .badSectionTable, "tombstones", entryField(.tombstones, 16) { _ in UInt64(1) << 20 }),
    Defect("offset + length overflows", .badSectionTable, "fine_codes", entryField(.fineCodes, 16) { _ in UInt64.max }),
    Defect("non-zero entry flag bit 1", .badSectionTable, "ids", entryField(.ids, 4) { _ in UInt32(3) }),
    Defect("non-zero entry reserved field", .badSectionTable, "ids", entryField(.ids, 28) { _ in UInt32(1) }),
    Defect("duplicate kind", .badSectionTable, "fine_codes", entryField(.tombstones, 0) { _ in UInt32(5) }),
    Defect("mandatory section without the required flag", .badSectionTable, "ids", entryField(.ids, 4) { _ in UInt32(0) }),
    Defect("mandatory section missing", .badSectionTable, "tombstones") { b in
        b.setEntry(.tombstones, field: 0, UInt32(7))   // now an unknown kind...
        b.set(UInt32(0), at: b.entry(b.index(ofRaw: 7)) + 4)  // ...and optional: skipped
        b.refreshChecksums()
    },
    Defect("unknown required kind", .unknownRequiredSection, "section kind 100") { b in
        b.set(UInt32(1), at: b.entry(b.index(ofRaw: 100)) + 4)
        b.refreshChecksums()
    },
    // Lengths.
    Defect("wrong length for ids", .badSectionLength, "ids", entryField(.ids, 16) { UInt64($0.length(of: .ids) + 8) }),
    Defect("wrong length for fine_codes", .badSectionLength, "fine_codes", entryField(.fineCodes, 16) { UInt64($0.length(of: .fineCodes) - 1) }),
    Defect("wrong length for coarse embeddings", .badSectionLength, "coarse_embeddings_f16", entryField(.coarseEmbeddingsF16, 16) { UInt64($0.length(of: .coarseEmbeddingsF16) - 2) }),
    Defect("tombstones not a multiple of 8", .badSectionLength, "tombstones", entryField(.tombstones, 16) { UInt64($0.length(of: .tombstones) - 1) }),
    Defect("external_ids o[N] not the text length", .badSectionLength, "external_ids", editSection(.externalIDs) { b, at in b.set(b.u64(at + 40) - 1, at: at + 40) }),
    Defect("segments count G wrong", .badSectionLength, "segments", editSection(.segments) { b, at in b.set(UInt64(4), at: at) }),
    Defect("segments count G huge", .badSectionLength, "segments", editSection(.segments) { b, at in b.set(UInt64(1) << 62, at: at) }),
    Defect("hash_codes bit count wrong", .badSectionLength, "hash_codes", editSection(.hashCodes) { b, at in b.set(UInt32(17), at: at) }),
    // Padding and checksums.
    Defect("non-zero padding", .badContent, nil, editSection(.ids) { b, at in b.bytes[at + 40] = 1 }),
    Defect("section CRC wrong", .badChecksum, "fine_codes") { b in
        b.setEntry(.fineCodes, field: 24, b.u32(b.entry(b.index(of: .fineCodes)) + 24) ^ 1)
        b.refreshFileCRC()
    },
    Defect("section bytes damaged", .badChecksum, "fine_codes") { b in
        let at = b.start(of: .fineCodes)
        b.bytes[at] = (b.bytes[at] + 1) % 16   // still a valid code: only the CRC can tell
        b.refreshFileCRC()
    },
    // Contents.
    Defect("ids not ascending", .badContent, "ids", editSection(.ids) { b, at in
        let (a, c) = (b.u64(at), b.u64(at + 8))
        b.set(c, at: at)
        b.set(a, at: at + 8)
    }),
    Defect("id in the wrong shard", .badContent, "ids", editSection(.ids) { b, at in b.set(b.u64(at + 32) + 1, at: at + 32) }),
    Defect("external id offsets decreasing", .badContent, "external_ids", editSection(.externalIDs) { b, at in b.set(b.u64(at + 16) + 1, at: at + 8) }),
    Defect("external id o[0] not zero", .badContent, "external_ids", editSection(.externalIDs) { b, at in b.set(UInt64(1), at: at) }),
    Defect("an empty external id (o[1] = o[0])", .badContent, "external_ids", editSection(.externalIDs) { b, at in b.set(UInt64(0), at: at + 8) }),
    Defect("invalid UTF-8", .badContent, "external_ids", editSection(.externalIDs) { b, at in b.bytes[at + 48] = 0xFF }),
    Defect("coarse code byte >= K", .badContent, "coarse_codes", editSection(.coarseCodes) { b, at in b.bytes[at + 3] = 200 }),
    Defect("fine code byte >= K", .badContent, "fine_codes", editSection(.fineCodes) { b, at in b.bytes[at + 7] = 16 }),
    Defect("tombstones not ascending", .badContent, "tombstones", editSection(.tombstones) { b, at in b.set(b.u64(at), at: at + 8) }),
    Defect("segment offsets decreasing", .badContent, "segments", editSection(.segments) { b, at in b.set(UInt64(1), at: at + 24) }),
    Defect("segment code byte >= K", .badContent, "segments", editSection(.segments) { b, at in b.bytes[at + 115] = 16 }),
    Defect("hash_codes reserved u32 not zero", .badContent, "hash_codes", editSection(.hashCodes) { b, at in b.set(UInt32(1), at: at + 4) }),
]

@Suite("Shard files: one defect at a time")
struct ShardDefectTests {
    @Test("the base file is valid, and its unknown optional section is skipped but listed")
    func baseIsValid() throws {
        #expect(validationError(baseShard) == nil)
        let shard = try baseShard.withUnsafeBytes { try Shard(copying: $0) }
        #expect(shard.unknownSections.map(\.kind) == [100])
        #expect(shard.section(kind: 100).map { Array($0) } == [1, 2, 3, 4, 5])
        #expect(shard.count == 5 && shard.tombstones.count == 3)
        #expect(shard.externalID(at: 0).hasPrefix("vid"))
    }

    @Test("each defect causes its own error", arguments: defects)
    func defect(_ d: Defect) throws {
        var b = ShardBytes(bytes: baseShard)
        d.apply(&b)
        #expect(b.bytes != baseShard)
        let error = try #require(validationError(b.bytes), "\(d.name): accepted")
        #expect(error.kind == d.kind, "\(d.name): \(error)")
        #expect(error.section == d.section, "\(d.name): \(error)")
        #expect(error.path == "test.vidx")
    }

    @Test("without checksum verification, damaged bytes that break no rule are accepted")
    func skipChecksums() throws {
        var b = ShardBytes(bytes: baseShard)
        let at = b.start(of: .fineCodes)
        b.bytes[at] = (b.bytes[at] + 1) % 16
        #expect(validationError(b.bytes, verifyChecksums: true)?.kind == .badChecksum)
        #expect(validationError(b.bytes, verifyChecksums: false) == nil)
        // The header CRC is checked all the same.
        b.bytes[50] ^= 1
        #expect(validationError(b.bytes, verifyChecksums: false)?.kind == .badHeaderChecksum)
    }

    @Test("an offset that splits a UTF-8 character is refused")
    func splitCharacter() throws {
        let names = ["é", "éé"]
        let contents = ShardContents(levels: 1, subspaces: 1, codewords: 2, dimension: 1,
                                     bundleFingerprint: [UInt8](repeating: 0, count: 32), shardIndex: 0, shardCount: 1,
                                     entries: names.map { ShardEntry(id: VideoID.of($0), externalID: $0, contentHash: [], codes: [1]) })
        var b = ShardBytes(bytes: try ShardWriter.bytes(contents))
        let at = b.start(of: .externalIDs)
        #expect(b.u64(at + 8) == 2 || b.u64(at + 8) == 4)
        b.set(b.u64(at + 8) - 1, at: at + 8)   // o[1] inside the first "é"
        b.refreshChecksums()
        let e = try #require(validationError(b.bytes))
        #expect(e.kind == .badContent && e.section == "external_ids")
    }

    @Test("every truncation of a valid file is refused without a crash")
    func everyTruncation() {
        for length in 0..<baseShard.count {
            let e = validationError(Array(baseShard.prefix(length)))
            #expect(e != nil, "accepted \(length) of \(baseShard.count) bytes")
        }
    }

    @Test("every single-bit flip is refused or harmless, never a crash", arguments: [true, false])
    func everyBitFlip(verify: Bool) {
        var refused = 0
        for i in 0..<baseShard.count {
            var bytes = baseShard
            bytes[i] ^= UInt8(1) << UInt8(i % 8)
            if validationError(bytes, verifyChecksums: verify) != nil { refused += 1 }
        }
        if verify { #expect(refused == baseShard.count) }  // the CRCs cover every byte
    }
}

@Suite("Index vocabulary: the manifest schema's enums equal the Swift enums")
struct IndexVocabularyTests {
    @Test("shard kinds and generation modes")
    func enums() throws {
        #expect(try schemaEnum("index-manifest.schema.json", ["properties", "shards", "items", "properties", "kind"])
                == ShardKind.allCases.map(\.rawValue))
        #expect(try schemaEnum("index-manifest.schema.json", ["properties", "config", "properties", "mode"])
                == IndexManifest.Mode.allCases.map(\.rawValue))
    }
}
