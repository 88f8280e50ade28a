import Foundation
import VidxCore

/// Index entries spilled to disk by shard, so that building a generation holds one
/// shard's entries in memory, never the whole index's.
///
/// Entry `e` goes to run `e.entry.id % count`: the shard it belongs in. Runs are plain
/// files in `directory` (inside the generation's temporary directory, so an interrupted
/// run leaves nothing behind that the next run does not remove), written through a
/// bounded buffer per run (appended with open, write, close: no descriptor is held, so
/// thousands of shards need no raised file limit) and read back whole, one at a time.
/// They are scratch files of one process, never read by another tool; the record layout
/// (little-endian) is: u64 id, u32 external id length + UTF-8 bytes, u8 content hash
/// length (0 or 32) + bytes, u32 code count + codes, u32 embedding length (0xFFFFFFFF for
/// none) + float16 bit patterns.
final class ShardRuns {
    let directory: String
    let count: Int
    private var buffers: [[UInt8]]
    private let bufferLimit: Int
    /// Entries added, and how many of them carry an embedding of `dimension` values.
    private(set) var added = 0
    private(set) var withEmbedding = 0
    /// The first entry added without an embedding of `dimension` values (named in the
    /// all-or-none error).
    private(set) var firstWithoutEmbedding: String?
    let dimension: Int

    /// The memory all run buffers together may use before they are written out.
    static let bufferBudget = 32 << 20

    /// Creates `directory` for `count` runs.
    /// - Parameter bufferLimit: bytes buffered per run before they are written out
    ///   (default: `bufferBudget` shared by the runs, 4 KiB to 1 MiB each).
    init(directory: String, count: Int, dimension: Int, bufferLimit: Int? = nil) throws {
        precondition(count >= 1)
        self.directory = directory
        self.count = count
        self.dimension = dimension
        self.bufferLimit = bufferLimit ?? max(4096, min(1 << 20, ShardRuns.bufferBudget / count))
        buffers = [[UInt8]](repeating: [], count: count)
        try AtomicFile.makeDirectory(directory)
    }

    func path(_ run: Int) -> String { directory + "/" + String(format: "run-%04d", run) }

    /// Appends `e` to its shard's run.
    func add(_ e: IndexEntry) throws {
        let run = Int(e.entry.id % UInt64(count))
        added += 1
        if let embedding = e.coarseEmbedding, embedding.count == dimension {
            withEmbedding += 1
        } else if firstWithoutEmbedding == nil {
            firstWithoutEmbedding = e.entry.externalID
        }
        var b = buffers[run]
        buffers[run] = []
        append(e.entry.id, to: &b)
        let name = Array(e.entry.externalID.utf8)
        append(UInt32(name.count), to: &b)
        b += name
        b.append(UInt8(e.entry.contentHash.count == 32 ? 32 : 0))
        if e.entry.contentHash.count == 32 { b += e.entry.contentHash }
        append(UInt32(e.entry.codes.count), to: &b)
        b += e.entry.codes
        if let embedding = e.coarseEmbedding {
            append(UInt32(embedding.count), to: &b)
            for v in embedding { append(v, to: &b) }
        } else {
            append(UInt32.max, to: &b)
        }
        if b.count >= bufferLimit {
            try flush(run, b)
            b.removeAll(keepingCapacity: true)
        }
        buffers[run] = b
    }

    /// Writes every buffered record out.
    func finish() throws {
        for run in 0..<count where !buffers[run].isEmpty {
            try flush(run, buffers[run])
            buffers[run] = []
        }
    }

    /// The entries of run `run`, in the order they were added; the run's file is removed
    /// unless `remove` is false (a staged build's runs stay until the build is published,
    /// so a shard task can be run again).
    func take(_ run: Int, remove: Bool = true) throws -> [IndexEntry] {
        let path = path(run)
        let data = try takeFile(path, what: "a temporary shard run", remove: remove)
        var out: [IndexEntry] = []
        var at = 0
        func need(_ n: Int) throws {
            guard n >= 0, at + n <= data.count else {
                throw IndexError(path: path, "temporary shard run is truncated at byte \(at) (was the disk full?)")
            }
        }
        func u32() throws -> UInt32 {
            try need(4)
            defer { at += 4 }
            return data.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: UInt32.self).littleEndian }
        }
        func u64() throws -> UInt64 {
            try need(8)
            defer { at += 8 }
            return data.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: UInt64.self).littleEndian }
        }
        func bytes(_ n: Int) throws -> [UInt8] {
            try need(n)
            defer { at += n }
            return Array(data[at..<(at + n)])
        }
        while at < data.count {
            let id = try u64()
            let nameLength = Int(try u32())
            try need(nameLength)
            let name = String(decoding: data[at..<(at + nameLength)], as: UTF8.self)
            at += nameLength
            try need(1)
            let hashLength = Int(data[at])
            at += 1
            let hash = try bytes(hashLength)
            let codes = try bytes(Int(try u32()))
            let embeddingLength = try u32()
            var embedding: [UInt16]? = nil
            if embeddingLength != UInt32.max {
                let n = Int(embeddingLength)
                try need(2 * n)
                embedding = data.withUnsafeBytes { raw in
                    (0..<n).map { raw.loadUnaligned(fromByteOffset: at + 2 * $0, as: UInt16.self).littleEndian }
                }
                at += 2 * n
            }
            out.append(IndexEntry(entry: ShardEntry(id: id, externalID: name, contentHash: hash, codes: codes),
                                  coarseEmbedding: embedding))
        }
        return out
    }

    /// Removes the runs' directory and whatever is left in it.
    func remove() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func flush(_ run: Int, _ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try appendToFile(path(run), $0, what: "a temporary shard run") }
    }

    private func append<T: FixedWidthInteger>(_ value: T, to b: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { b += $0 }
    }
}

/// 64-bit ids spilled by shard: the parent generation's live ids, compared shard by shard
/// with a build's fresh ids to count what the build drops.
final class IDRuns {
    private let runs: [String]
    private var buffers: [[UInt64]]
    private let bufferLimit: Int

    init(directory: String, count: Int) throws {
        try AtomicFile.makeDirectory(directory)
        runs = (0..<count).map { directory + "/" + String(format: "ids-%04d", $0) }
        buffers = [[UInt64]](repeating: [], count: count)
        bufferLimit = max(512, min(1 << 17, (ShardRuns.bufferBudget / 8) / count))
    }

    func add(_ id: UInt64) throws {
        let run = Int(id % UInt64(runs.count))
        buffers[run].append(id.littleEndian)
        if buffers[run].count >= bufferLimit {
            try flush(run)
        }
    }

    func finish() throws {
        for run in runs.indices where !buffers[run].isEmpty { try flush(run) }
    }

    /// The ids of run `run`, sorted; the run's file is removed.
    func takeSorted(_ run: Int) throws -> [UInt64] {
        let path = runs[run]
        let data = try takeFile(path, what: "temporary ids")
        guard data.count % 8 == 0 else { throw IndexError(path: path, "temporary ids are truncated (was the disk full?)") }
        var ids = data.withUnsafeBytes { raw in
            (0..<(data.count / 8)).map { raw.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self).littleEndian }
        }
        ids.sort()
        return ids
    }

    private func flush(_ run: Int) throws {
        try buffers[run].withUnsafeBytes { try appendToFile(runs[run], $0, what: "temporary ids") }
        buffers[run].removeAll(keepingCapacity: true)
    }
}

/// Appends `bytes` to the file at `path` (created when missing), holding no descriptor after.
private func appendToFile(_ path: String, _ bytes: UnsafeRawBufferPointer, what: String) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw IndexError(path: path, "cannot write \(what): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var done = 0
    while done < bytes.count {
        let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { throw IndexError(path: path, "cannot write \(what): \(String(cString: strerror(errno)))") }
        done += n
    }
}

/// The whole file at `path`, then removes it (unless `remove` is false); empty when there
/// is no such file.
private func takeFile(_ path: String, what: String, remove: Bool = true) throws -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 && errno == ENOENT { return [] }
    guard fd >= 0 else { throw IndexError(path: path, "cannot read back \(what): \(String(cString: strerror(errno)))") }
    defer {
        close(fd)
        if remove { unlink(path) }
    }
    var st = stat()
    guard fstat(fd, &st) == 0 else { throw IndexError(path: path, "cannot read back \(what): \(String(cString: strerror(errno)))") }
    var data = [UInt8](repeating: 0, count: Int(st.st_size))
    var done = 0
    while done < data.count {
        let n = data.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, $0.count - done) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { throw IndexError(path: path, "cannot read back \(what): \(n == 0 ? "shorter than its size" : String(cString: strerror(errno)))") }
        done += n
    }
    return data
}
