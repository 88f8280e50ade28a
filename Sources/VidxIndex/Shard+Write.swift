import Foundation
import VidxCore

/// One video of a shard: its id, external id, content hash and codes.
public struct ShardEntry: Sendable, Equatable {
    /// `VideoID.of(externalID)`; the writer checks it.
    public var id: UInt64
    /// The video's name in the caller's system, any Unicode.
    public var externalID: String
    /// SHA-256 of the video file, 32 raw bytes; empty when unknown (written as zeros).
    public var contentHash: [UInt8]
    /// L * M codes, level 0 first, then levels 1..L-1, each M bytes; every one below K.
    public var codes: [UInt8]

    public init(id: UInt64, externalID: String, contentHash: [UInt8], codes: [UInt8]) {
        self.id = id
        self.externalID = externalID
        self.contentHash = contentHash
        self.codes = codes
    }
}

/// Everything a shard file holds, in the caller's order; the writer sorts.
public struct ShardContents: Sendable {
    /// L, M, K and D (Schemas/index-shard.md, Header).
    public var levels: UInt32, subspaces: UInt32, codewords: UInt32, dimension: UInt32
    /// The model bundle's SHA-256, 32 raw bytes.
    public var bundleFingerprint: [UInt8]
    /// s and S: every entry's id must have `id % shardCount == shardIndex`.
    public var shardIndex: UInt32, shardCount: UInt32
    /// The videos, in any order, ids unique.
    public var entries: [ShardEntry]
    /// Ids hidden in every older shard of the generation, in any order, unique.
    public var tombstones: [UInt64]
    /// (N, D) float16 bit patterns, row-major, row i belonging to `entries[i]` (the writer
    /// reorders the rows with the entries); nil to write no `coarse_embeddings_f16` section.
    public var coarseEmbeddingsF16: [UInt16]?
    /// More sections, written as given after the writer's own (for tests and future kinds):
    /// no kind the writer writes itself, no kind twice. Their bytes are not checked.
    public var extraSections: [(kind: UInt32, required: Bool, bytes: [UInt8])]

    public init(levels: UInt32, subspaces: UInt32, codewords: UInt32, dimension: UInt32, bundleFingerprint: [UInt8],
                shardIndex: UInt32, shardCount: UInt32, entries: [ShardEntry], tombstones: [UInt64] = [],
                coarseEmbeddingsF16: [UInt16]? = nil,
                extraSections: [(kind: UInt32, required: Bool, bytes: [UInt8])] = []) {
        self.levels = levels
        self.subspaces = subspaces
        self.codewords = codewords
        self.dimension = dimension
        self.bundleFingerprint = bundleFingerprint
        self.shardIndex = shardIndex
        self.shardCount = shardCount
        self.entries = entries
        self.tombstones = tombstones
        self.coarseEmbeddingsF16 = coarseEmbeddingsF16
        self.extraSections = extraSections
    }
}

/// Writes index shard files (Schemas/index-shard.md, format version 1).
///
/// Layout: header, table, then the sections in kind order (ids, external_ids,
/// content_hashes, coarse_codes, fine_codes, tombstones, coarse_embeddings_f16 if any, then
/// the extra sections by kind), each at the next multiple of 64 with zero bytes before it,
/// then the trailer right after the last section. Rows are sorted by id, tombstones
/// ascending, so the bytes depend on the contents only, not on the order they were given in.
public enum ShardWriter {
    /// The bytes of the shard file holding `contents`.
    /// - Throws: `ShardError` (`badHeader` for the shape, `badContent` naming the section)
    ///   when the contents break the format: duplicate ids or tombstones, an id that is not
    ///   its external id's hash or belongs in another shard, codes of the wrong count or
    ///   not below K, a content hash not 32 bytes, embeddings not N x D, a bad extra section.
    public static func bytes(_ contents: ShardContents) throws -> [UInt8] {
        try bytes(contents, path: "<shard contents>")
    }

    /// Writes the shard file holding `contents` to `path` atomically (temporary file in the
    /// same directory, fsync, rename, directory fsync).
    /// - Throws: `ShardError` as `bytes(_:)`, naming `path`; `FileWriteError` when the file
    ///   cannot be written (the destination is then untouched).
    public static func write(_ contents: ShardContents, to path: String) throws {
        let file = try bytes(contents, path: path)
        try file.withUnsafeBytes { try AtomicFile.write($0, to: path) }
    }

    // MARK: Layout

    static func bytes(_ c: ShardContents, path: String) throws -> [UInt8] {
        func fail(_ kind: ShardError.Kind, _ section: SectionKind?, _ message: String) -> ShardError {
            ShardError(kind, path: path, section: section?.name, message)
        }
        // Shape.
        guard c.levels >= 1, c.subspaces >= 1, c.dimension >= 1, c.codewords >= 1, c.codewords <= 256,
              c.dimension % c.subspaces == 0 else {
            throw fail(.badHeader, nil, "shape L \(c.levels) M \(c.subspaces) K \(c.codewords) D \(c.dimension): needs L, M >= 1, 1 <= K <= 256 and D a positive multiple of M")
        }
        guard c.shardCount >= 1, c.shardIndex < c.shardCount else {
            throw fail(.badHeader, nil, "shard_index \(c.shardIndex) of shard_count \(c.shardCount): needs shard_count >= 1 and shard_index < shard_count")
        }
        guard c.bundleFingerprint.count == ShardFormat.fingerprintSize else {
            throw fail(.badHeader, nil, "the bundle fingerprint is \(c.bundleFingerprint.count) bytes, not \(ShardFormat.fingerprintSize)")
        }
        let n = c.entries.count
        let l = Int(c.levels), m = Int(c.subspaces), d = Int(c.dimension)
        let codesPerEntry = l * m

        // Rows, by id.
        let order = c.entries.indices.sorted { c.entries[$0].id < c.entries[$1].id }
        let entries = order.map { c.entries[$0] }
        for (i, e) in entries.enumerated() {
            if i > 0 && entries[i - 1].id == e.id {
                throw fail(.badContent, .ids, "id \(e.id) appears twice (external ids '\(entries[i - 1].externalID)' and '\(e.externalID)')")
            }
            guard e.id % UInt64(c.shardCount) == UInt64(c.shardIndex) else {
                throw fail(.badContent, .ids, "video '\(e.externalID)': id \(e.id) belongs in shard \(e.id % UInt64(c.shardCount)) of \(c.shardCount), not \(c.shardIndex)")
            }
            guard !e.externalID.isEmpty else {
                throw fail(.badContent, .externalIDs, "id \(e.id): the external id is empty (every external id is a non-empty string)")
            }
            let expected = VideoID.of(e.externalID)
            guard e.id == expected else {
                throw fail(.badContent, .ids, "video '\(e.externalID)': id \(e.id) is not the hash of its external id (\(expected))")
            }
            guard e.codes.count == codesPerEntry else {
                throw fail(.badContent, .coarseCodes, "video '\(e.externalID)' has \(e.codes.count) codes, expected L x M = \(codesPerEntry)")
            }
            if c.codewords < 256, let bad = e.codes.firstIndex(where: { UInt32($0) >= c.codewords }) {
                throw fail(.badContent, bad < m ? .coarseCodes : .fineCodes, "video '\(e.externalID)': code \(e.codes[bad]) at level \(bad / m), sub-space \(bad % m) is not below codewords K = \(c.codewords)")
            }
            guard e.contentHash.isEmpty || e.contentHash.count == ShardFormat.contentHashSize else {
                throw fail(.badContent, .contentHashes, "video '\(e.externalID)': content hash is \(e.contentHash.count) bytes, not 32 (or empty when unknown)")
            }
        }
        let tombstones = c.tombstones.sorted()
        for i in tombstones.indices.dropFirst() where tombstones[i] == tombstones[i - 1] {
            throw fail(.badContent, .tombstones, "id \(tombstones[i]) is listed twice")
        }
        if let embeddings = c.coarseEmbeddingsF16, embeddings.count != n * d {
            throw fail(.badContent, .coarseEmbeddingsF16, "\(embeddings.count) values, expected N x D = \(n) x \(d)")
        }

        // Section payload writers, in kind order.
        typealias Fill = (UnsafeMutableRawBufferPointer) -> Void
        var sections: [(kind: UInt32, required: Bool, length: Int, fill: Fill)] = []
        func add(_ kind: SectionKind, _ length: Int, _ fill: @escaping Fill) {
            sections.append((kind.rawValue, kind.isMandatory, length, fill))
        }
        add(.ids, 8 * n) { out in
            for (i, e) in entries.enumerated() { store(e.id, out, 8 * i) }
        }
        let names = entries.map { Array($0.externalID.utf8) }
        let blobBytes = names.reduce(0) { $0 + $1.count }
        add(.externalIDs, 8 * (n + 1) + blobBytes) { out in
            var offset = 0, at = 8 * (n + 1)
            store(UInt64(0), out, 0)
            for (i, name) in names.enumerated() {
                name.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: out[at..<(at + name.count)]).copyMemory(from: $0) }
                at += name.count
                offset += name.count
                store(UInt64(offset), out, 8 * (i + 1))
            }
        }
        add(.contentHashes, 32 * n) { out in
            for (i, e) in entries.enumerated() where !e.contentHash.isEmpty {
                e.contentHash.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: out[(32 * i)..<(32 * i + 32)]).copyMemory(from: $0) }
            }
        }
        add(.coarseCodes, n * m) { out in
            for (i, e) in entries.enumerated() {
                e.codes.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: out[(i * m)..<((i + 1) * m)]).copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<m])) }
            }
        }
        let fine = (l - 1) * m
        add(.fineCodes, n * fine) { out in
            guard fine > 0 else { return }
            for (i, e) in entries.enumerated() {
                e.codes.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: out[(i * fine)..<((i + 1) * fine)]).copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[m...])) }
            }
        }
        add(.tombstones, 8 * tombstones.count) { out in
            for (i, t) in tombstones.enumerated() { store(t, out, 8 * i) }
        }
        if let embeddings = c.coarseEmbeddingsF16 {
            add(.coarseEmbeddingsF16, 2 * n * d) { out in
                for (row, source) in order.enumerated() {
                    for j in 0..<d { store(embeddings[source * d + j], out, 2 * (row * d + j)) }
                }
            }
        }
        let extras = c.extraSections.sorted { $0.kind < $1.kind }
        for (i, extra) in extras.enumerated() {
            if sections.contains(where: { $0.kind == extra.kind }) || (i > 0 && extras[i - 1].kind == extra.kind) {
                throw ShardError(.badSectionTable, path: path, section: SectionKind.name(of: extra.kind),
                                 "kind \(extra.kind) is given twice, or as an extra section although the writer writes it")
            }
            let payload = extra.bytes
            sections.append((extra.kind, extra.required, payload.count, { out in
                payload.withUnsafeBytes { out.copyMemory(from: $0) }
            }))
        }
        guard sections.count <= ShardFormat.maxSections else {
            throw ShardError(.badSectionTable, path: path, "\(sections.count) sections, at most \(ShardFormat.maxSections)")
        }

        // Place the sections, then fill header, table, sections and trailer.
        let tableEnd = ShardFormat.headerSize + ShardFormat.tableEntrySize * sections.count
        var offsets: [Int] = []
        var position = tableEnd
        for s in sections {
            let offset = (position + ShardFormat.alignment - 1) / ShardFormat.alignment * ShardFormat.alignment
            offsets.append(offset)
            position = offset + s.length
        }
        let fileSize = position + ShardFormat.trailerSize
        var file = [UInt8](repeating: 0, count: fileSize)
        file.withUnsafeMutableBytes { out in
            typealias H = ShardFormat.Header
            typealias E = ShardFormat.Entry
            typealias T = ShardFormat.Trailer
            var crcs: [UInt32] = []
            for (i, s) in sections.enumerated() {
                let body = UnsafeMutableRawBufferPointer(rebasing: out[offsets[i]..<(offsets[i] + s.length)])
                s.fill(body)
                crcs.append(CRC32C.checksum(UnsafeRawBufferPointer(body)))
                let at = ShardFormat.headerSize + ShardFormat.tableEntrySize * i
                store(s.kind, out, at + E.kind)
                store(s.required ? ShardFormat.requiredFlag : 0, out, at + E.flags)
                store(UInt64(offsets[i]), out, at + E.offset)
                store(UInt64(s.length), out, at + E.length)
                store(crcs[i], out, at + E.crc)
            }
            UnsafeMutableRawBufferPointer(rebasing: out[H.magic..<(H.magic + 8)]).copyBytes(from: ShardFormat.magic)
            store(ShardFormat.version, out, H.formatVersion)
            store(UInt16(ShardFormat.headerSize), out, H.headerSizeField)
            store(UInt64(n), out, H.videoCount)
            store(c.levels, out, H.levels)
            store(c.subspaces, out, H.subspaces)
            store(c.codewords, out, H.codewords)
            store(c.dimension, out, H.dimension)
            UnsafeMutableRawBufferPointer(rebasing: out[H.bundleFingerprint..<(H.bundleFingerprint + 32)])
                .copyBytes(from: c.bundleFingerprint)
            store(c.shardIndex, out, H.shardIndex)
            store(c.shardCount, out, H.shardCount)
            store(UInt32(sections.count), out, H.sectionCount)
            store(UInt64(fileSize), out, H.fileSize)
            store(CRC32C.checksum(UnsafeRawBufferPointer(rebasing: out[0..<H.headerCRC])), out, H.headerCRC)
            // The file CRC from the section CRCs and the bytes between: every byte is read once.
            let trailer = fileSize - ShardFormat.trailerSize
            var fileCRC: UInt32 = 0, position = 0
            for (i, s) in sections.enumerated() {
                fileCRC = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: out[position..<offsets[i]]), continuing: fileCRC)
                fileCRC = CRC32C.combine(fileCRC, crcs[i], lengthB: UInt64(s.length))
                position = offsets[i] + s.length
            }
            fileCRC = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: out[position..<trailer]), continuing: fileCRC)
            store(fileCRC, out, trailer + T.fileCRC)
            UnsafeMutableRawBufferPointer(rebasing: out[(trailer + T.endMagic)..<fileSize]).copyBytes(from: ShardFormat.endMagic)
        }
        return file
    }
}

/// Stores `value` little-endian at byte `offset` of `out` (any alignment).
private func store<T: FixedWidthInteger>(_ value: T, _ out: UnsafeMutableRawBufferPointer, _ offset: Int) {
    out.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
}
