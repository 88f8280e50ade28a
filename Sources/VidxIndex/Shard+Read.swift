import Foundation
import VidxCore

/// A memory-mapped (`MappedFile`), fully validated index shard (Schemas/index-shard.md).
/// Views stay valid while the object lives.
///
/// `init` checks everything before it returns (see `validate`): header, table, bounds,
/// lengths, checksums and contents, so the views need no further checks. Views are
/// zero-copy over the mapping; sections start on 64-byte boundaries of a page-aligned
/// mapping, so the typed views are aligned. They hold the file's little-endian values as
/// they are, so this type requires a little-endian host (it stops on a big-endian one;
/// `validate` and the writer work on any host).
///
/// The mapping is private and read-only; the file must not be truncated or rewritten in
/// place while the object lives (replacing it by rename, as `AtomicFile` does, is safe).
/// Immutable after `init`, hence `Sendable`.
public final class Shard: @unchecked Sendable {
    /// The path given to `init`, as used in error messages.
    public let path: String
    /// What `validate` found: header, table, section ranges.
    public let parsed: ParsedShard
    /// The header's description of the contents.
    public var header: ShardHeader { parsed.header }
    /// N, the entries in the shard.
    public var count: Int { parsed.count }
    /// The section table, in file order, unknown optional kinds included.
    public var sections: [SectionEntry] { parsed.sections }
    /// The table entries of optional kinds this code does not know (skipped, not read).
    public var unknownSections: [SectionEntry] { parsed.unknownSections }
    /// The trailer's `file_crc` (CRC-32C of every byte before the trailer), as stored;
    /// checked against the bytes when the shard was opened with `verifyChecksums`.
    public var fileCRC: UInt32 { parsed.fileCRC }

    /// N ids, strictly ascending, every one `id % shardCount == shardIndex`.
    public let ids: UnsafeBufferPointer<UInt64>
    /// (N, M) level-0 codes, row-major: video i, sub-space m at `i * M + m`.
    public let coarseCodes: UnsafeBufferPointer<UInt8>
    /// (N, L - 1, M) fine codes, row-major: video i, level l (1..L-1), sub-space m at
    /// `(i * (L - 1) + (l - 1)) * M + m`. Empty when L is 1.
    public let fineCodes: UnsafeBufferPointer<UInt8>
    /// (N, 32) content hashes, raw SHA-256, row-major; zero when unknown.
    public let contentHashes: UnsafeBufferPointer<UInt8>
    /// T ids, strictly ascending: entries this shard hides in every older shard of its generation.
    public let tombstones: UnsafeBufferPointer<UInt64>
    /// (N, D) float16 bit patterns, row-major, or nil when the shard has none.
    public let coarseEmbeddingsF16: UnsafeBufferPointer<UInt16>?

    /// N + 1 offsets into `externalIDBlob`.
    private let externalIDOffsets: UnsafeBufferPointer<UInt64>
    private let externalIDBlob: UnsafeRawBufferPointer
    /// The whole file, mapped (or copied); owns the bytes every view points into.
    private let file: MappedFile

    /// Maps the file at `path` (PROT_READ, MAP_PRIVATE) and validates it whole before returning.
    /// - Parameters:
    ///   - path: the shard file; must be a regular file.
    ///   - verifyChecksums: also check every section's CRC-32C and the file's (reads every
    ///     byte once). The header CRC, the table, bounds, lengths and contents are always checked.
    /// - Throws: `ShardError` naming the file, the section and the problem (`unreadable` when
    ///   the file cannot be opened or mapped, or is not a regular file).
    public convenience init(path: String, verifyChecksums: Bool = true) throws {
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch {
            throw ShardError(.unreadable, path: path, Shard.unreadableMessage(error))
        }
        try self.init(file: file, path: path, verifyChecksums: verifyChecksums)
    }

    /// Copies `bytes` into a 64-byte-aligned buffer of its own and validates it like a file.
    /// For tests and fuzzing; `path` only names the bytes in errors.
    /// - Throws: `ShardError` as `init(path:verifyChecksums:)`.
    public convenience init(copying bytes: UnsafeRawBufferPointer, path: String = "<memory>", verifyChecksums: Bool = true) throws {
        try self.init(file: MappedFile(copying: bytes, alignment: ShardFormat.alignment), path: path,
                      verifyChecksums: verifyChecksums)
    }

    private init(file: MappedFile, path: String, verifyChecksums: Bool) throws {
        Shard.requireLittleEndianHost()
        let parsed = try Shard.validate(file.bytes, path: path, verifyChecksums: verifyChecksums)
        self.path = path
        self.parsed = parsed
        self.file = file
        (ids, coarseCodes, fineCodes, contentHashes, tombstones, coarseEmbeddingsF16, externalIDOffsets,
         externalIDBlob) = Shard.views(of: file.bytes, parsed)
    }

    // MARK: Per-video access

    /// Video `i`'s external id (`i` in `0..<count`).
    public func externalID(at i: Int) -> String {
        precondition(i >= 0 && i < count, "row \(i) out of range 0..<\(count)")
        // Offsets were checked: o[0] = 0, non-decreasing, o[N] = the blob's length.
        let start = Int(truncatingIfNeeded: externalIDOffsets[i])
        let end = Int(truncatingIfNeeded: externalIDOffsets[i + 1])
        return String(decoding: UnsafeRawBufferPointer(rebasing: externalIDBlob[start..<end]), as: UTF8.self)
    }

    /// Video `i`'s content hash: 32 raw bytes, zero when unknown.
    public func contentHash(at i: Int) -> [UInt8] {
        precondition(i >= 0 && i < count, "row \(i) out of range 0..<\(count)")
        let size = ShardFormat.contentHashSize
        return Array(contentHashes[(i * size)..<((i + 1) * size)])
    }

    /// Video `i`'s codes: L * M bytes, level 0 first, then levels 1..L-1, each M bytes.
    public func codes(at i: Int) -> [UInt8] {
        precondition(i >= 0 && i < count, "row \(i) out of range 0..<\(count)")
        let m = Int(header.subspaces), fine = (Int(header.levels) - 1) * m
        var out = [UInt8]()
        out.reserveCapacity(m + fine)
        out.append(contentsOf: coarseCodes[(i * m)..<((i + 1) * m)])
        if fine > 0 { out.append(contentsOf: fineCodes[(i * fine)..<((i + 1) * fine)]) }
        return out
    }

    /// The row holding `id`, or nil (binary search over the ascending ids).
    public func index(of id: UInt64) -> Int? {
        var low = 0, high = ids.count
        while low < high {
            let mid = low + (high - low) / 2
            if ids[mid] < id { low = mid + 1 } else { high = mid }
        }
        return low < ids.count && ids[low] == id ? low : nil
    }

    /// The raw bytes of the section of `kind` (known or not), or nil when the file has none.
    /// Known optional kinds (`segments`, `hash_codes`) were validated; unknown ones were not.
    public func section(kind: UInt32) -> UnsafeRawBufferPointer? {
        guard let range = parsed.range(of: kind) else { return nil }
        return UnsafeRawBufferPointer(rebasing: file.bytes[range])
    }

    /// Drops the file's pages from this process's resident set
    /// (`MappedFile.releaseResidentPages`, `madvise(MADV_DONTNEED)`).
    ///
    /// The mapping is read-only and private, so nothing is lost: a later read faults the
    /// pages back in from the page cache. Views handed out earlier stay valid. Does nothing
    /// for a shard made with `init(copying:)`.
    public func releaseResidentPages() {
        file.releaseResidentPages()
    }

    // MARK: Mapping and views

    private static func requireLittleEndianHost() {
        #if _endian(big)
        fatalError("VidxIndex.Shard hands out views of little-endian values and needs a little-endian host")
        #endif
    }

    /// The `unreadable` message for a file that cannot be opened or mapped: "open failed:
    /// No such file or directory", "not a regular file" (a FIFO is refused, not waited on).
    private static func unreadableMessage(_ error: FileAccessError) -> String {
        switch error.reason {
        case .open(let e): return "open failed: \(FileAccessError.text(errno: e))"
        case .stat(let e): return "fstat failed: \(FileAccessError.text(errno: e))"
        case .notRegular: return "not a regular file"
        case .notAddressable(let size): return "file size \(size) is not addressable"
        case .map(let e): return "mmap failed: \(FileAccessError.text(errno: e))"
        case .tooLarge: return error.message
        }
    }

    private typealias Views = (ids: UnsafeBufferPointer<UInt64>, coarse: UnsafeBufferPointer<UInt8>,
                               fine: UnsafeBufferPointer<UInt8>, hashes: UnsafeBufferPointer<UInt8>,
                               tombstones: UnsafeBufferPointer<UInt64>, embeddings: UnsafeBufferPointer<UInt16>?,
                               externalIDOffsets: UnsafeBufferPointer<UInt64>, externalIDBlob: UnsafeRawBufferPointer)

    /// Typed views of a validated file whose base is 64-aligned (every range was checked by
    /// `validate`, so these are the only reads that trust offsets: the views themselves).
    private static func views(of file: UnsafeRawBufferPointer, _ parsed: ParsedShard) -> Views {
        func view<T>(_ range: Range<Int>, _: T.Type) -> UnsafeBufferPointer<T> {
            let n = range.count / MemoryLayout<T>.stride
            guard n > 0, let base = file.baseAddress else { return UnsafeBufferPointer(start: nil, count: 0) }
            return UnsafeBufferPointer(start: (base + range.lowerBound).bindMemory(to: T.self, capacity: n), count: n)
        }
        // `validate` guarantees the mandatory kinds; the fallbacks are never taken.
        func range(_ kind: SectionKind) -> Range<Int> { parsed.range(of: kind.rawValue) ?? 0..<0 }
        let n = parsed.count
        let external = range(.externalIDs)
        let offsetsEnd = external.lowerBound + 8 * (n + 1)
        return (view(range(.ids), UInt64.self), view(range(.coarseCodes), UInt8.self),
                view(range(.fineCodes), UInt8.self), view(range(.contentHashes), UInt8.self),
                view(range(.tombstones), UInt64.self),
                parsed.range(of: SectionKind.coarseEmbeddingsF16.rawValue).map { view($0, UInt16.self) },
                view(external.lowerBound..<offsetsEnd, UInt64.self),
                UnsafeRawBufferPointer(rebasing: file[offsetsEnd..<external.upperBound]))
    }
}

/// The structure of a shard, as `Shard.validate` found it in a buffer holding the whole file.
public struct ParsedShard: Sendable, Equatable {
    /// The file's `format_version`.
    public var formatVersion: UInt16
    public var header: ShardHeader
    /// N, `header.videoCount` as an `Int` (bounded by the file's size).
    public var count: Int
    /// The file's length in bytes (the header's `file_size`).
    public var fileSize: Int
    /// The section table, in file order.
    public var sections: [SectionEntry]
    /// The entries of optional kinds not known here: skipped.
    public var unknownSections: [SectionEntry]
    /// The trailer's `file_crc`, as stored.
    public var fileCRC: UInt32
    /// Byte ranges in the file, by section kind.
    var ranges: [UInt32: Range<Int>]

    /// The bytes of the section of `kind` in the file, or nil when the file has none.
    public func range(of kind: UInt32) -> Range<Int>? { ranges[kind] }
}

extension Shard {
    /// Validates the bytes of a whole shard file and returns its structure, without keeping
    /// them. `bytes` need not be aligned (every load is an unaligned little-endian load).
    ///
    /// The checks, in order (the first failure throws): magic; version (too new, too old);
    /// the header's size, CRC, flags, reserved bytes, shape (L, M >= 1, 1 <= K <= 256,
    /// D a positive multiple of M) and shard (S >= 1, s < S); `file_size` against the
    /// buffer; the trailer's end magic and reserved field; the table (at most 64 entries,
    /// each 64-aligned, after the table, in offset order without overlap, inside
    /// `file_size - 16`, flags and reserved fields, no kind twice, no unknown required kind,
    /// kinds 1 to 6 present and required); every known kind's exact length, with
    /// overflow-checked arithmetic (so a huge `video_count` is refused, never allocated);
    /// zero padding; with `verifyChecksums`, every section's CRC, then the file's CRC (derived
    /// from the section CRCs and the bytes between, so every byte is read once); contents:
    /// external id offsets and UTF-8, ids strictly ascending and in this shard, tombstones
    /// strictly ascending, every code byte below K, segments' offsets, hash codes' zero field.
    /// Cost: O(file size); nothing is allocated in proportion to the counts.
    /// - Parameters:
    ///   - bytes: the whole file.
    ///   - path: names the file in errors.
    ///   - verifyChecksums: check the section CRCs and the file CRC (the header CRC always is).
    /// - Throws: `ShardError` naming `path`, the section if any, and the problem.
    public static func validate(_ bytes: UnsafeRawBufferPointer, path: String,
                                verifyChecksums: Bool = true) throws -> ParsedShard {
        try ShardValidator(bytes: bytes, path: path).run(verifyChecksums: verifyChecksums)
    }
}

// MARK: - Validation

/// One validation of one buffer; every method throws the first problem it finds.
///
/// Every read goes through a `ByteCursor` over the buffer, or over a slice one handed out:
/// no offset read from the file is used before it is checked against the bytes that
/// remain, and every size computed from the file's counts is overflow-checked (`Checked`).
private struct ShardValidator {
    let bytes: UnsafeRawBufferPointer
    let path: String

    func fail(_ kind: ShardError.Kind, _ section: String? = nil, _ message: String) -> ShardError {
        ShardError(kind, path: path, section: section, message)
    }

    /// The `count` bytes at `start`, as a cursor checks them. Callers have validated the
    /// range against the table; a range outside the file is still refused, never read.
    func slice(_ range: Range<Int>, _ section: String?) throws -> UnsafeRawBufferPointer {
        do { return try ByteCursor(bytes).slice(at: range.lowerBound, count: range.count) } catch {
            throw fail(.truncated, section, "bytes \(range.lowerBound)..<\(range.upperBound) are outside the \(bytes.count)-byte file: \(error)")
        }
    }

    func run(verifyChecksums: Bool) throws -> ParsedShard {
        let (version, header, sectionCount, fileSize) = try checkHeader()
        let dataEnd = fileSize - ShardFormat.trailerSize   // fileSize >= header + trailer: checked
        let fileCRC = try checkTrailer(fileSize: fileSize)
        let (sections, placed) = try readTable(sectionCount: sectionCount, dataEnd: dataEnd)
        var ranges: [UInt32: Range<Int>] = [:]
        for (e, range) in zip(sections, placed) { ranges[e.kind] = range }
        let n = try checkLengths(header, ranges)
        try checkPadding(placed, sections, tableEnd: tableEnd(sectionCount), dataEnd: dataEnd)
        if verifyChecksums {
            try checkChecksums(placed, sections, dataEnd: dataEnd, stored: fileCRC)
        }
        try checkContents(header, n: n, ranges)
        return ParsedShard(formatVersion: version, header: header, count: n, fileSize: fileSize, sections: sections,
                           unknownSections: sections.filter { SectionKind(rawValue: $0.kind) == nil },
                           fileCRC: fileCRC, ranges: ranges)
    }

    /// Where the table of `sectionCount` (at most 64) entries ends.
    func tableEnd(_ sectionCount: Int) -> Int {
        ShardFormat.headerSize + ShardFormat.tableEntrySize * sectionCount
    }

    // MARK: Header and trailer

    func checkHeader() throws -> (UInt16, ShardHeader, Int, Int) {
        typealias H = ShardFormat.Header
        let size = bytes.count
        let magic = ShardFormat.magic
        let shown = Array(bytes.prefix(magic.count))
        guard shown.elementsEqual(magic.prefix(shown.count)) else {
            throw fail(.badMagic, nil, "starts with \(printable(shown)), not \"VIDXSHRD\": not an index shard")
        }
        let short = fail(.truncated, nil, "file is \(size) bytes, shorter than the \(ShardFormat.headerSize)-byte header")
        // The version first: it decides what the rest of the header means.
        var cursor = ByteCursor(bytes)
        guard (try? cursor.skip(H.formatVersion)) != nil, let version = try? cursor.readUInt16LE() else { throw short }
        guard version <= ShardFormat.version else {
            throw fail(.tooNew, nil, "format_version \(version) is newer than the newest this reader knows (\(ShardFormat.version)): upgrade vidx")
        }
        guard version >= ShardFormat.oldestReadableVersion else {
            throw fail(.tooOld, nil, "format_version \(version) is older than the oldest this reader still reads (\(ShardFormat.oldestReadableVersion)): rebuild the index")
        }
        cursor = ByteCursor(bytes)
        guard let headerBytes = try? cursor.take(ShardFormat.headerSize) else { throw short }

        // Every field, in file order (Schemas/index-shard.md, Header): 128 bytes exactly.
        var h = ByteCursor(headerBytes)
        let headerSize: UInt16, flags: UInt32, videoCount: UInt64, levels: UInt32, subspaces: UInt32
        let codewords: UInt32, dimension: UInt32, fingerprint: [UInt8], shardIndex: UInt32, shardCount: UInt32
        let sectionCount: UInt32, reserved0: UInt32, fileSize: UInt64, reserved: UnsafeRawBufferPointer, stored: UInt32
        do {
            try h.skip(H.headerSizeField)   // magic and version, read above
            headerSize = try h.readUInt16LE()
            flags = try h.readUInt32LE()
            videoCount = try h.readUInt64LE()
            levels = try h.readUInt32LE()
            subspaces = try h.readUInt32LE()
            codewords = try h.readUInt32LE()
            dimension = try h.readUInt32LE()
            fingerprint = Array(try h.take(ShardFormat.fingerprintSize))
            shardIndex = try h.readUInt32LE()
            shardCount = try h.readUInt32LE()
            sectionCount = try h.readUInt32LE()
            reserved0 = try h.readUInt32LE()
            fileSize = try h.readUInt64LE()
            reserved = try h.take(H.reservedSize)
            stored = try h.readUInt32LE()
        } catch {
            throw short   // not reached: the fields add up to the 128 bytes taken
        }
        assert(h.isAtEnd && h.offset == ShardFormat.headerSize, "the header's fields do not add up to its size")

        guard headerSize == ShardFormat.headerSize else {
            throw fail(.badHeader, nil, "header_size is \(headerSize), format_version 1 requires \(ShardFormat.headerSize)")
        }
        let computed = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: headerBytes[..<H.headerCRC]))
        guard stored == computed else {
            throw fail(.badHeaderChecksum, nil, "header_crc: stored \(hex32(stored)), computed \(hex32(computed)) from bytes 0..123")
        }
        guard flags == 0 else { throw fail(.badHeader, nil, "flags is \(hex32(flags)); no flags are defined, it must be 0") }
        guard reserved0 == 0 else { throw fail(.badHeader, nil, "reserved0 (bytes 84..87) is not zero") }
        guard reserved.allSatisfy({ $0 == 0 }) else { throw fail(.badHeader, nil, "reserved bytes 96..123 are not zero") }

        let header = ShardHeader(videoCount: videoCount, levels: levels, subspaces: subspaces, codewords: codewords,
                                 dimension: dimension, bundleFingerprint: fingerprint, shardIndex: shardIndex,
                                 shardCount: shardCount)
        guard header.levels >= 1, header.subspaces >= 1, header.dimension >= 1 else {
            throw fail(.badHeader, nil, "levels \(header.levels), subspaces \(header.subspaces), dimension \(header.dimension): each must be at least 1")
        }
        guard header.codewords >= 1 && header.codewords <= 256 else {
            throw fail(.badHeader, nil, "codewords is \(header.codewords); it must be 1 to 256 (a code is one byte)")
        }
        guard header.dimension % header.subspaces == 0 else {
            throw fail(.badHeader, nil, "dimension \(header.dimension) is not a multiple of subspaces \(header.subspaces)")
        }
        guard header.shardCount >= 1, header.shardIndex < header.shardCount else {
            throw fail(.badHeader, nil, "shard_index \(header.shardIndex) of shard_count \(header.shardCount): needs shard_count >= 1 and shard_index < shard_count")
        }
        guard UInt64(size) >= fileSize else {
            throw fail(.truncated, nil, "file is \(size) bytes, but its header says file_size \(fileSize): truncated (an interrupted copy?)")
        }
        guard UInt64(size) == fileSize else {
            throw fail(.badHeader, nil, "file is \(size) bytes, longer than its header's file_size \(fileSize) (bytes appended?)")
        }
        guard size >= ShardFormat.headerSize + ShardFormat.trailerSize else {
            throw fail(.badHeader, nil, "file_size \(fileSize) leaves no room for the \(ShardFormat.trailerSize)-byte trailer after the header")
        }
        guard sectionCount <= ShardFormat.maxSections else {
            throw fail(.badSectionTable, nil, "section_count is \(sectionCount), at most \(ShardFormat.maxSections)")
        }
        return (version, header, Int(sectionCount), size)
    }

    /// The trailer's fields in file order: file_crc, reserved, end magic.
    func checkTrailer(fileSize: Int) throws -> UInt32 {
        var cursor = ByteCursor(bytes)
        let fileCRC: UInt32, reserved: UInt32, endMagic: [UInt8]
        do {
            try cursor.seek(to: fileSize - ShardFormat.trailerSize)
            fileCRC = try cursor.readUInt32LE()
            reserved = try cursor.readUInt32LE()
            endMagic = Array(try cursor.take(ShardFormat.endMagic.count))
        } catch {
            throw fail(.truncated, nil, "file is \(bytes.count) bytes, too short for the trailer at \(fileSize - ShardFormat.trailerSize)")
        }
        guard endMagic == ShardFormat.endMagic else {
            throw fail(.badMagic, nil, "the trailer ends with \(printable(endMagic)), not \"VIDXEND\\0\": damaged, or the last bytes are missing")
        }
        guard reserved == 0 else { throw fail(.badHeader, nil, "the trailer's reserved field is not zero") }
        return fileCRC
    }

    // MARK: Section table

    /// The table's entries in file order, each with its byte range in the file (checked to
    /// lie between the table and the trailer).
    func readTable(sectionCount: Int, dataEnd: Int) throws -> ([SectionEntry], [Range<Int>]) {
        let tableEnd = tableEnd(sectionCount)
        guard tableEnd <= dataEnd else {
            throw fail(.badSectionTable, nil, "the table's \(sectionCount) entries end at \(tableEnd), past the trailer at \(dataEnd)")
        }
        var table = ByteCursor(try slice(ShardFormat.headerSize..<tableEnd, nil))
        var entries: [SectionEntry] = []
        var placed: [Range<Int>] = []
        entries.reserveCapacity(sectionCount)
        placed.reserveCapacity(sectionCount)
        var previousEnd = UInt64(tableEnd)
        for i in 0..<sectionCount {
            // Fields in file order (Schemas/index-shard.md, Section table): 32 bytes.
            let e: SectionEntry, reserved: UInt32
            do {
                let kind = try table.readUInt32LE(), flags = try table.readUInt32LE()
                let offset = try table.readUInt64LE(), length = try table.readUInt64LE(), crc = try table.readUInt32LE()
                reserved = try table.readUInt32LE()
                e = SectionEntry(kind: kind, flags: flags, offset: offset, length: length, crc: crc)
            } catch {
                throw fail(.badSectionTable, nil, "table entry \(i) is cut short: \(error)")   // not reached: the slice holds them all
            }
            let name = e.name
            let entry = "table entry \(i)"
            guard e.flags & ~ShardFormat.requiredFlag == 0 else {
                throw fail(.badSectionTable, name, "\(entry): flags \(hex32(e.flags)); only bit 0 (required) is defined")
            }
            guard reserved == 0 else {
                throw fail(.badSectionTable, name, "\(entry): the reserved field is not zero")
            }
            if let first = entries.firstIndex(where: { $0.kind == e.kind }) {
                throw fail(.badSectionTable, name, "kind \(e.kind) appears twice (table entries \(first) and \(i))")
            }
            guard e.offset % UInt64(ShardFormat.alignment) == 0 else {
                throw fail(.badSectionTable, name, "\(entry): offset \(e.offset) is not a multiple of \(ShardFormat.alignment)")
            }
            guard e.offset >= UInt64(tableEnd) else {
                throw fail(.badSectionTable, name, "\(entry): offset \(e.offset) is inside the header or the table (which end at \(tableEnd))")
            }
            guard e.offset >= previousEnd else {
                throw fail(.badSectionTable, name, "\(entry): offset \(e.offset) overlaps the previous section or is out of order (the previous one ends at \(previousEnd))")
            }
            guard let end = Checked.add(e.offset, e.length), end <= UInt64(dataEnd) else {
                throw fail(.badSectionTable, name, "\(entry): \(e.length) bytes at offset \(e.offset) run past the trailer at \(dataEnd)")
            }
            previousEnd = end
            entries.append(e)
            placed.append(Int(e.offset)..<Int(end))   // both at most dataEnd, an Int
        }
        for e in entries where SectionKind(rawValue: e.kind) == nil && e.isRequired {
            throw fail(.unknownRequiredSection, e.name, "kind \(e.kind) is marked required but this reader (format_version \(ShardFormat.version)) does not know it: upgrade vidx")
        }
        for kind in SectionKind.allCases where kind.isMandatory {
            guard let e = entries.first(where: { $0.kind == kind.rawValue }) else {
                throw fail(.badSectionTable, kind.name, "missing: every shard has a \(kind.name) section (kind \(kind.rawValue))")
            }
            guard e.isRequired else {
                throw fail(.badSectionTable, kind.name, "kind \(kind.rawValue) lacks the required flag")
            }
        }
        return (entries, placed)
    }

    // MARK: Lengths

    /// Checks every known section's length against the header's counts; returns N.
    func checkLengths(_ h: ShardHeader, _ ranges: [UInt32: Range<Int>]) throws -> Int {
        func length(_ kind: SectionKind) -> UInt64? { ranges[kind.rawValue].map { UInt64($0.count) } }
        func expect(_ kind: SectionKind, _ factors: [UInt64], _ formula: String) throws {
            guard let actual = length(kind) else { return }
            guard let expected = Checked.product(factors) else {
                throw fail(.badSectionLength, kind.name, "is \(actual) bytes, but \(formula) overflows 64 bits (video_count \(h.videoCount) is corrupt)")
            }
            guard actual == expected else {
                throw fail(.badSectionLength, kind.name, "is \(actual) bytes, but \(formula) = \(expected) (video_count \(h.videoCount))")
            }
        }
        let n = h.videoCount, l = UInt64(h.levels), m = UInt64(h.subspaces), d = UInt64(h.dimension)
        // The ids first: once they fit in the file (8 N <= file size), N is small enough for
        // an Int, and 8 (N + 1) cannot overflow either.
        try expect(.ids, [8, n], "8 x N")
        guard let count = Int(exactly: n), count < Int.max / 8 - 1 else {   // not reached: 8 N fits the file
            throw fail(.badSectionLength, SectionKind.ids.name, "video_count \(n) does not fit this reader")
        }
        try expect(.contentHashes, [32, n], "32 x N")
        try expect(.coarseCodes, [n, m], "N x M")
        try expect(.fineCodes, [n, l - 1, m], "N x (L - 1) x M")
        try expect(.coarseEmbeddingsF16, [2, n, d], "2 x N x D")
        if let t = length(.tombstones), t % 8 != 0 {
            throw fail(.badSectionLength, SectionKind.tombstones.name, "is \(t) bytes, not a multiple of 8")
        }
        let offsets = 8 * (count + 1)
        if let r = ranges[SectionKind.externalIDs.rawValue] {
            let name = SectionKind.externalIDs.name
            var cursor = ByteCursor(try slice(r, name))
            guard (try? cursor.skip(8 * count)) != nil, let last = try? cursor.readUInt64LE() else {
                throw fail(.badSectionLength, name, "is \(r.count) bytes, less than the \(offsets) of its N + 1 offsets")
            }
            guard last == UInt64(cursor.remaining) else {
                throw fail(.badSectionLength, name, "o[N] = \(last), but the section holds \(cursor.remaining) bytes of text after its offsets")
            }
        }
        if let r = ranges[SectionKind.segments.rawValue] {
            let name = SectionKind.segments.name
            let head = 8 + offsets
            var cursor = ByteCursor(try slice(r, name))
            guard r.count >= head, let g = try? cursor.readUInt64LE() else {
                throw fail(.badSectionLength, name, "is \(r.count) bytes, less than the \(head) of its count and N + 1 offsets")
            }
            let expected = Checked.product([8, g]).flatMap { windows in
                Checked.product([g, l, m]).flatMap { codes in Checked.sum([UInt64(head), windows, codes]) }
            }
            guard let expected else {
                throw fail(.badSectionLength, name, "is \(r.count) bytes, but its segment count \(g) makes 8 + 8 (N + 1) + 8 G + G L M overflow 64 bits")
            }
            guard UInt64(r.count) == expected else {
                throw fail(.badSectionLength, name, "is \(r.count) bytes, but 8 + 8 (N + 1) + 8 G + G L M = \(expected) for G = \(g) segments")
            }
        }
        if let r = ranges[SectionKind.hashCodes.rawValue] {
            let name = SectionKind.hashCodes.name
            var cursor = ByteCursor(try slice(r, name))
            guard let bits = try? cursor.readUInt32LE(), (try? cursor.skip(4)) != nil else {
                throw fail(.badSectionLength, name, "is \(r.count) bytes, less than its 8-byte head")
            }
            let width = (UInt64(bits) + 7) / 8
            guard let codes = Checked.product([n, width]), let expected = Checked.sum([8, codes]), UInt64(r.count) == expected else {
                throw fail(.badSectionLength, name, "is \(r.count) bytes, but 8 + N x ceil(b / 8) is not, for b = \(bits) bits and N = \(n)")
            }
        }
        return count
    }

    // MARK: Padding and checksums

    /// The bytes between the table, the sections and the trailer must be zero.
    func checkPadding(_ placed: [Range<Int>], _ sections: [SectionEntry], tableEnd: Int, dataEnd: Int) throws {
        var position = tableEnd
        for (next, name) in gaps(placed, sections, dataEnd: dataEnd) {
            if next.lowerBound > position {
                let padding = try slice(position..<next.lowerBound, nil)
                if let bad = padding.firstIndex(where: { $0 != 0 }) {
                    throw fail(.badContent, nil, "padding byte at offset \(position + bad), before \(name), is not zero")
                }
            }
            position = max(position, next.upperBound)
        }
    }

    /// Every section's range in file order, then the trailer's start, with names.
    func gaps(_ placed: [Range<Int>], _ sections: [SectionEntry], dataEnd: Int) -> [(Range<Int>, String)] {
        zip(placed, sections).map { ($0, "section \($1.name)") } + [(dataEnd..<dataEnd, "the trailer")]
    }

    /// Every section's CRC, then the file's: the CRCs of the bytes between sections joined
    /// with the (now checked) section CRCs, so no byte is read twice.
    func checkChecksums(_ placed: [Range<Int>], _ sections: [SectionEntry], dataEnd: Int, stored: UInt32) throws {
        var fileCRC: UInt32 = 0
        var position = 0
        for (range, e) in zip(placed, sections) {
            let computed = CRC32C.checksum(try slice(range, e.name))
            guard computed == e.crc else {
                throw fail(.badChecksum, e.name, "stored \(hex32(e.crc)), computed \(hex32(computed)) over \(range.count) bytes at offset \(range.lowerBound)")
            }
            fileCRC = CRC32C.checksum(try slice(position..<range.lowerBound, nil), continuing: fileCRC)
            fileCRC = CRC32C.combine(fileCRC, computed, lengthB: UInt64(range.count))
            position = range.upperBound
        }
        fileCRC = CRC32C.checksum(try slice(position..<dataEnd, nil), continuing: fileCRC)
        guard fileCRC == stored else {
            throw fail(.badChecksum, nil, "the trailer's file_crc: stored \(hex32(stored)), computed \(hex32(fileCRC)) over the \(dataEnd) bytes before the trailer")
        }
    }

    // MARK: Contents

    func checkContents(_ h: ShardHeader, n: Int, _ ranges: [UInt32: Range<Int>]) throws {
        // The mandatory kinds are present (readTable); their lengths match N (checkLengths).
        func section(_ kind: SectionKind) throws -> UnsafeRawBufferPointer {
            try slice(ranges[kind.rawValue] ?? 0..<0, kind.name)
        }
        try checkExternalIDs(try section(.externalIDs), n: n)

        let ids = LittleEndianView(try section(.ids), as: UInt64.self)
        let idsName = SectionKind.ids.name
        let shardCount = UInt64(h.shardCount), shardIndex = UInt64(h.shardIndex)
        var previous: UInt64 = 0
        for (i, id) in ids.enumerated() {
            if i > 0 && id <= previous {
                throw fail(.badContent, idsName, "not strictly ascending: row \(i) holds \(id), row \(i - 1) \(previous)")
            }
            if id % shardCount != shardIndex {
                throw fail(.badContent, idsName, "row \(i): id \(id) belongs in shard \(id % shardCount) of \(shardCount), this is shard \(shardIndex)")
            }
            previous = id
        }
        let tombstones = LittleEndianView(try section(.tombstones), as: UInt64.self)
        for i in tombstones.indices.dropFirst() where tombstones[i] <= tombstones[i - 1] {
            throw fail(.badContent, SectionKind.tombstones.name, "not strictly ascending: entry \(i) holds \(tombstones[i]), entry \(i - 1) \(tombstones[i - 1])")
        }
        let m = Int(h.subspaces), k = Int(h.codewords)
        try checkCodes(try section(.coarseCodes), .coarseCodes, codewords: k, rowBytes: m,
                       describe: { "row \($0), sub-space \($1)" })
        let fine = (Int(h.levels) - 1) * m
        try checkCodes(try section(.fineCodes), .fineCodes, codewords: k, rowBytes: fine,
                       describe: { "row \($0), level \($1 / m + 1), sub-space \($1 % m)" })
        if let r = ranges[SectionKind.segments.rawValue] {
            try checkSegments(try slice(r, SectionKind.segments.name), n: n, levels: Int(h.levels), subspaces: m,
                              codewords: k)
        }
        if let r = ranges[SectionKind.hashCodes.rawValue] {
            // u32 bits, u32 zero (the length check saw both).
            let head = LittleEndianView(try slice(r, SectionKind.hashCodes.name), as: UInt32.self)
            if head.count >= 2, head[1] != 0 {
                throw fail(.badContent, SectionKind.hashCodes.name, "the u32 after the bit count is \(head[1]), not 0")
            }
        }
    }

    /// Offsets start at 0 and increase (o[N] was checked with the length): every id is
    /// non-empty, and valid UTF-8 on its own.
    func checkExternalIDs(_ section: UnsafeRawBufferPointer, n: Int) throws {
        let name = SectionKind.externalIDs.name
        var cursor = ByteCursor(section)
        let offsets: LittleEndianView<UInt64>
        do { offsets = LittleEndianView(try cursor.take(8 * (n + 1))) } catch {
            throw fail(.badSectionLength, name, "\(error)")   // not reached: checkLengths
        }
        let blob = cursor.takeRest()
        guard offsets[0] == 0 else { throw fail(.badContent, name, "o[0] = \(offsets[0]), not 0") }
        var previous: UInt64 = 0
        for i in stride(from: 1, through: n, by: 1) {
            let o = offsets[i]
            if o < previous {
                throw fail(.badContent, name, "offsets decrease: o[\(i)] = \(o) after o[\(i - 1)] = \(previous)")
            }
            if o == previous {
                throw fail(.badContent, name, "row \(i - 1): the external id is empty (o[\(i - 1)] = o[\(i)] = \(o))")
            }
            previous = o
        }
        // All ASCII (the common case, 8 bytes a step): every split is a character boundary.
        if UTF8Validation.isASCII(blob) { return }
        // The ids lie back to back: each is the next o[i + 1] - o[i] bytes of the text.
        var text = ByteCursor(blob)
        for i in 0..<n {
            let piece: UnsafeRawBufferPointer
            do { piece = try text.take(offsets[i + 1] - offsets[i]) } catch {
                throw fail(.badSectionLength, name, "row \(i): \(error)")   // not reached: o[N] is the text's length
            }
            if let bad = UTF8Validation.firstInvalidOffset(piece) {
                throw fail(.badContent, name, "row \(i): the external id is not valid UTF-8 (byte \(bad) of its \(piece.count))")
            }
        }
    }

    /// Every byte of a codes section is below K (skipped when K is 256: any byte is).
    func checkCodes(_ codes: UnsafeRawBufferPointer, _ kind: SectionKind, codewords: Int, rowBytes: Int,
                    describe: (Int, Int) -> String) throws {
        guard codewords < 256, !codes.isEmpty, rowBytes > 0 else { return }
        let limit = UInt8(codewords)
        guard maxByte(codes) >= limit, let bad = codes.firstIndex(where: { $0 >= limit }) else { return }
        throw fail(.badContent, kind.name, "\(describe(bad / rowBytes, bad % rowBytes)) holds code \(codes[bad]), but codewords K is \(codewords)")
    }

    /// The offsets g[0..N] run from 0 to G without decreasing, and every code is below K.
    func checkSegments(_ section: UnsafeRawBufferPointer, n: Int, levels: Int, subspaces: Int, codewords: Int) throws {
        let name = SectionKind.segments.name
        // Lengths were checked: 8 + 8 (N + 1) + 8 G + G L M bytes, so G fits an Int.
        var cursor = ByteCursor(section)
        let g: UInt64, offsets: LittleEndianView<UInt64>, codes: UnsafeRawBufferPointer
        do {
            g = try cursor.readUInt64LE()
            offsets = LittleEndianView(try cursor.take(8 * (n + 1)))
            try cursor.skip(8 * Int(g))   // the time windows: any float pairs
            codes = try cursor.take(Int(g) * levels * subspaces)
        } catch {
            throw fail(.badSectionLength, name, "\(error)")   // not reached: checkLengths
        }
        var previous: UInt64 = 0
        for (i, o) in offsets.enumerated() {
            if (i == 0 && o != 0) || o < previous || (i == n && o != g) {
                throw fail(.badContent, name, "offsets must run from g[0] = 0 to g[N] = G = \(g) without decreasing; g[\(i)] = \(o)")
            }
            previous = o
        }
        try checkCodes(codes, .segments, codewords: codewords, rowBytes: levels * subspaces,
                       describe: { "segment \($0), level \($1 / subspaces), sub-space \($1 % subspaces)" })
    }
}

// MARK: - Helpers

/// The largest byte (0 for none); a loop the optimiser vectorises.
private func maxByte(_ bytes: UnsafeRawBufferPointer) -> UInt8 {
    var m: UInt8 = 0
    for b in bytes { m = max(m, b) }
    return m
}

/// `0x0000abcd`.
private func hex32(_ v: UInt32) -> String {
    let digits = String(v, radix: 16)
    return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
}

/// Bytes as a quoted ASCII string with escapes: `"PK\x03\x04"`.
private func printable(_ bytes: [UInt8]) -> String {
    var s = "\""
    for b in bytes {
        if b >= 0x20 && b < 0x7F && b != 0x22 && b != 0x5C {
            s.unicodeScalars.append(Unicode.Scalar(b))
        } else {
            let h = String(b, radix: 16)
            s += "\\x" + (h.count == 1 ? "0" : "") + h
        }
    }
    return s + "\""
}
