import Foundation
import VidxCore

/// One video to index: its shard entry (id, external id, content hash, codes) and,
/// optionally, its coarse embedding as float16 bits.
public struct IndexEntry: Sendable, Equatable {
    public var entry: ShardEntry
    /// D float16 values (bit patterns), or nil.
    public var coarseEmbedding: [UInt16]?

    public init(externalID: String, contentHash: [UInt8], codes: [UInt8], coarseEmbedding: [UInt16]? = nil) {
        entry = ShardEntry(id: VideoID.of(externalID), externalID: externalID,
                           contentHash: contentHash.isEmpty ? [UInt8](repeating: 0, count: 32) : contentHash,
                           codes: codes)
        self.coarseEmbedding = coarseEmbedding
    }

    init(entry: ShardEntry, coarseEmbedding: [UInt16]?) {
        self.entry = entry
        self.coarseEmbedding = coarseEmbedding
    }
}

/// What every shard of a generation shares.
public struct IndexShape: Sendable, Equatable {
    public var bundleFingerprint: String
    public var levels: Int, subspaces: Int, codewords: Int, dimension: Int

    public init(bundleFingerprint: String, levels: Int, subspaces: Int, codewords: Int, dimension: Int) {
        self.bundleFingerprint = bundleFingerprint
        self.levels = levels
        self.subspaces = subspaces
        self.codewords = codewords
        self.dimension = dimension
    }
}

/// The outcome of a `vidx-shard` run.
public struct PublishResult: Sendable {
    /// The new live generation, or nil when there was nothing to change (append with no
    /// new, changed or deleted videos): `CURRENT` was left as it was.
    public var manifest: IndexManifest?
    /// Videos already live with the same content and codes (append): not re-added.
    public var unchanged: Int
    /// External ids asked for deletion that are not live in the parent.
    public var notFound: [String]
}

/// Writes index generations: a fresh build, a nightly append (delta shards and
/// tombstones on top of the parent's shards) and a compaction.
///
/// Every run writes a complete new generation under a temporary name, fsyncs it, renames
/// it to `gNNNNNN` and only then switches `CURRENT` (temporary name, fsync, rename). An
/// interrupted run leaves the previous generation live and intact; its temporary
/// directory is removed by the next run. Runs on the same index are serialised with a
/// lock file (`INDEX/.lock`); a second concurrent run fails at once.
public enum IndexBuilder {
    /// Builds a fresh generation (no parent shards) from `entries` into `shards` base shards.
    /// - Throws: `IndexError` for duplicate or colliding ids, or a write failure.
    public static func build(index: String, shape: IndexShape, codebooks: [Float], entries: [IndexEntry],
                             inputs: [IndexManifest.Input], shards: Int, tool: IndexManifest.Tool) throws -> PublishResult {
        try withLock(index) {
            let unique = try deduplicate(entries, path: index)
            let planned = try plan(unique, tombstones: [], shape: shape, count: shards, kind: "base", sequence: 0)
            let config = IndexManifest.Config(mode: "build", shards: shards, inputs: sortedInputs(inputs), deletedIDs: nil)
            let parent = try? IndexGeneration.currentName(indexDirectory: index)
            let manifest = try publish(index: index, parent: parent, shape: shape, codebooks: codebooks,
                                       kept: [], planned: planned, config: config, tool: tool)
            return PublishResult(manifest: manifest, unchanged: 0, notFound: [])
        }
    }

    /// Appends to the live generation: new and changed videos go into delta shards of the
    /// next sequence, `deletions` (external ids) become tombstones; the parent's shards are
    /// kept (hard links).
    /// - Parameter shards: the number of delta shards (default: the parent's base shard count).
    public static func append(index: String, shape: IndexShape, codebooks: [Float], entries: [IndexEntry],
                              deletions: [String], inputs: [IndexManifest.Input], shards: Int?,
                              tool: IndexManifest.Tool) throws -> PublishResult {
        try withLock(index) {
            let parent = try IndexGeneration(indexDirectory: index)
            try checkSameBundle(parent.manifest, shape, index: index)
            let unique = try deduplicate(entries, path: index)
            var fresh: [IndexEntry] = []
            var unchanged = 0
            for e in unique {
                if let (s, r) = parent.locate(externalID: e.entry.externalID),
                   parent.shards[s].codes(at: r) == e.entry.codes,
                   parent.shards[s].contentHash(at: r) == e.entry.contentHash {
                    unchanged += 1
                } else {
                    fresh.append(e)
                }
            }
            let freshIDs = Set(fresh.map(\.entry.externalID))
            var tombstones: [UInt64] = [], notFound: [String] = []
            for external in Set(deletions).sorted() {
                if freshIDs.contains(external) {
                    throw IndexError(path: index, "video '\(external)' is both submitted and listed for deletion in the same run")
                }
                if parent.locate(externalID: external) != nil {
                    tombstones.append(VideoID.of(external))
                } else {
                    notFound.append(external)
                }
            }
            if fresh.isEmpty && tombstones.isEmpty {
                return PublishResult(manifest: nil, unchanged: unchanged, notFound: notFound)
            }
            let count = shards ?? parent.manifest.shards.filter { $0.kind == "base" }.first?.shardCount ?? 1
            let sequence = (parent.manifest.shards.map(\.sequence).max() ?? 0) + 1
            let planned = try plan(fresh, tombstones: tombstones, shape: shape, count: count, kind: "delta", sequence: sequence)
            let kept = parent.manifest.shards.map { (record: $0, from: parent.directory + "/" + $0.file) }
            let config = IndexManifest.Config(mode: "append", shards: count, inputs: sortedInputs(inputs),
                                              deletedIDs: Set(deletions).count)
            let manifest = try publish(index: index, parent: parent.name, shape: shape, codebooks: codebooks,
                                       kept: kept, planned: planned, config: config, tool: tool)
            return PublishResult(manifest: manifest, unchanged: unchanged, notFound: notFound)
        }
    }

    /// Rewrites the live generation's live entries into fresh base shards, dropping
    /// superseded and deleted entries, without re-encoding.
    /// - Parameter shards: the new shard count (default: the parent's base shard count).
    public static func compact(index: String, shards: Int?, tool: IndexManifest.Tool) throws -> PublishResult {
        try withLock(index) {
            let parent = try IndexGeneration(indexDirectory: index, verifyChecksums: true)
            let m = parent.manifest
            let shape = IndexShape(bundleFingerprint: m.bundleFingerprint, levels: m.levels, subspaces: m.subspaces,
                                   codewords: m.codewords, dimension: m.dimension)
            let live = parent.liveEntries()
            let keepEmbeddings = !live.isEmpty && live.allSatisfy { parent.shards[$0.shard].coarseEmbeddingsF16 != nil }
            let D = m.dimension
            let entries = live.map { (s, r) -> IndexEntry in
                let shard = parent.shards[s]
                let entry = ShardEntry(id: shard.ids[r], externalID: shard.externalID(at: r),
                                       contentHash: shard.contentHash(at: r), codes: shard.codes(at: r))
                var embedding: [UInt16]? = nil
                if keepEmbeddings, let e = shard.coarseEmbeddingsF16 { embedding = Array(e[(r * D)..<((r + 1) * D)]) }
                return IndexEntry(entry: entry, coarseEmbedding: embedding)
            }
            let count = shards ?? m.shards.filter { $0.kind == "base" }.first?.shardCount ?? 1
            let planned = try plan(entries, tombstones: [], shape: shape, count: count, kind: "base", sequence: 0)
            let config = IndexManifest.Config(mode: "compact", shards: count, inputs: nil, deletedIDs: nil)
            let manifest = try publish(index: index, parent: parent.name, shape: shape, codebooks: parent.codebooks,
                                       kept: [], planned: planned, config: config, tool: tool)
            return PublishResult(manifest: manifest, unchanged: 0, notFound: [])
        }
    }

    // MARK: Planning

    struct PlannedShard {
        var file: String
        var kind: String
        var sequence: Int
        var contents: ShardContents
    }

    static func checkSameBundle(_ manifest: IndexManifest, _ shape: IndexShape, index: String) throws {
        guard manifest.bundleFingerprint == shape.bundleFingerprint else {
            throw IndexError(path: index, "the live generation was made with bundle \(manifest.bundleFingerprint), these codes with bundle \(shape.bundleFingerprint): codes from different bundles cannot share an index (rebuild it)")
        }
    }

    /// One entry per external id. The same id twice with the same content and codes is one
    /// video; with different ones it is an error (which would win would depend on input
    /// order). Two external ids with the same 64-bit id are refused too.
    static func deduplicate(_ entries: [IndexEntry], path: String) throws -> [IndexEntry] {
        var byID: [UInt64: IndexEntry] = [:]
        byID.reserveCapacity(entries.count)
        for e in entries {
            if let old = byID[e.entry.id] {
                if old.entry.externalID != e.entry.externalID {
                    throw IndexError(path: path, "external ids '\(old.entry.externalID)' and '\(e.entry.externalID)' have the same 64-bit id \(e.entry.id); they cannot share an index")
                }
                if old != e {
                    throw IndexError(path: path, "video '\(e.entry.externalID)' appears twice in the inputs with different content or codes")
                }
                continue
            }
            byID[e.entry.id] = e
        }
        return byID.values.sorted { $0.entry.id < $1.entry.id }
    }

    static func plan(_ entries: [IndexEntry], tombstones: [UInt64], shape: IndexShape, count: Int,
                     kind: String, sequence: Int) throws -> [PlannedShard] {
        guard count >= 1 && count <= 9999 else { throw IndexError(path: "", "the shard count must be between 1 and 9999, not \(count)") }
        let withEmbeddings = entries.contains { $0.coarseEmbedding != nil }
        if withEmbeddings, let bad = entries.first(where: { $0.coarseEmbedding?.count != shape.dimension }) {
            throw IndexError(path: "", "video '\(bad.entry.externalID)' has no coarse embedding of \(shape.dimension) values, but others do: store embeddings for all videos or none")
        }
        var buckets = [[IndexEntry]](repeating: [], count: count)
        for e in entries { buckets[Int(e.entry.id % UInt64(count))].append(e) }
        var stones = [[UInt64]](repeating: [], count: count)
        for t in tombstones { stones[Int(t % UInt64(count))].append(t) }
        guard let fingerprint = SHA256Digest.bytes(fromHex: shape.bundleFingerprint), fingerprint.count == 32 else {
            throw IndexError(path: "", "bundle fingerprint '\(shape.bundleFingerprint)' is not 64 hex digits")
        }
        var planned: [PlannedShard] = []
        for s in 0..<count {
            // Deltas only where there is something to say; base shards always (S files).
            if kind == "delta" && buckets[s].isEmpty && stones[s].isEmpty { continue }
            let sorted = buckets[s].sorted { $0.entry.id < $1.entry.id }
            let embeddings: [UInt16]? = withEmbeddings ? sorted.flatMap { $0.coarseEmbedding! } : nil
            let contents = ShardContents(levels: UInt32(shape.levels), subspaces: UInt32(shape.subspaces),
                                         codewords: UInt32(shape.codewords), dimension: UInt32(shape.dimension),
                                         bundleFingerprint: fingerprint, shardIndex: UInt32(s), shardCount: UInt32(count),
                                         entries: sorted.map(\.entry), tombstones: stones[s].sorted(),
                                         coarseEmbeddingsF16: embeddings)
            let file = kind == "base" ? String(format: "base-%04d.vidx", s)
                                      : String(format: "delta-%04d-%04d.vidx", sequence, s)
            planned.append(PlannedShard(file: file, kind: kind, sequence: sequence, contents: contents))
        }
        return planned
    }

    static func sortedInputs(_ inputs: [IndexManifest.Input]) -> [IndexManifest.Input] {
        inputs.sorted { ($0.sha256, $0.videos) < ($1.sha256, $1.videos) }
    }

    // MARK: Publishing

    static func publish(index: String, parent: String?, shape: IndexShape, codebooks: [Float],
                        kept: [(record: IndexManifest.ShardRecord, from: String)], planned: [PlannedShard],
                        config: IndexManifest.Config, tool: IndexManifest.Tool) throws -> IndexManifest {
        let name = try nextGenerationName(index)
        let tmp = index + "/.tmp-" + name
        try? FileManager.default.removeItem(atPath: tmp)
        try AtomicFile.makeDirectory(tmp)
        var files: [(file: String, kind: String, sequence: Int)] = []
        for k in kept {
            try linkOrCopy(k.from, to: tmp + "/" + k.record.file)
            files.append((k.record.file, k.record.kind, k.record.sequence))
        }
        for p in planned {
            try ShardWriter.write(p.contents, to: tmp + "/" + p.file)
            files.append((p.file, p.kind, p.sequence))
        }
        files.sort { ($0.sequence, $0.file) < ($1.sequence, $1.file) }
        let codebooksFile = Codebooks.fileName(bundleFingerprint: shape.bundleFingerprint)
        try Codebooks.write(codebooks, levels: shape.levels, subspaces: shape.subspaces, codewords: shape.codewords,
                            dimension: shape.dimension, bundleFingerprint: shape.bundleFingerprint,
                            to: tmp + "/" + codebooksFile)
        var shards: [Shard] = [], records: [IndexManifest.ShardRecord] = []
        for f in files {
            let path = tmp + "/" + f.file
            let shard = try Shard(path: path, verifyChecksums: false)
            let bytes = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            records.append(IndexManifest.ShardRecord(
                file: f.file, kind: f.kind, sequence: f.sequence, shardIndex: Int(shard.header.shardIndex),
                shardCount: Int(shard.header.shardCount), videos: shard.count, tombstones: shard.tombstones.count,
                bytes: bytes, crc32c: String(format: "%08x", shard.fileCRC), sha256: try SHA256Digest.hex(fileAt: path)))
            shards.append(shard)
        }
        let (_, counts) = IndexGeneration.resolve(shards, sequences: records.map(\.sequence))
        let codebooksPath = tmp + "/" + codebooksFile
        let manifest = IndexManifest(
            generation: name, parent: parent, bundleFingerprint: shape.bundleFingerprint, levels: shape.levels,
            subspaces: shape.subspaces, codewords: shape.codewords, dimension: shape.dimension,
            codebooks: .init(file: codebooksFile, sha256: try SHA256Digest.hex(fileAt: codebooksPath),
                             bytes: (try? FileManager.default.attributesOfItem(atPath: codebooksPath)[.size] as? Int) ?? 0),
            shards: records, counts: counts, tool: tool, config: config)
        try AtomicFile.write(try manifest.encoded(), to: tmp + "/" + IndexManifest.fileName)
        AtomicFile.syncDirectory(tmp)
        let final = index + "/" + name
        guard rename(tmp, final) == 0 else {
            throw IndexError(path: final, "cannot publish the generation: \(String(cString: strerror(errno)))")
        }
        AtomicFile.syncDirectory(index)
        try AtomicFile.write(name + "\n", to: index + "/" + IndexGeneration.currentFileName)
        return manifest
    }

    /// One more than the highest generation number present (live or not), so names are
    /// never reused.
    static func nextGenerationName(_ index: String) throws -> String {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: index)) ?? []
        let highest = names.filter(IndexGeneration.isGenerationName).compactMap { Int($0.dropFirst()) }.max() ?? 0
        guard highest < 999_999 else { throw IndexError(path: index, "no generation numbers left (g999999 exists)") }
        return String(format: "g%06d", highest + 1)
    }

    static func linkOrCopy(_ from: String, to: String) throws {
        if link(from, to) == 0 { return }
        do { try FileManager.default.copyItem(atPath: from, toPath: to) } catch {
            throw IndexError(path: from, "cannot link or copy into the new generation: \(error.localizedDescription)")
        }
    }

    /// Runs `body` holding an exclusive lock on `INDEX/.lock`, after removing temporary
    /// directories left by interrupted runs.
    static func withLock<T>(_ index: String, _ body: () throws -> T) throws -> T {
        try AtomicFile.makeDirectory(index)
        let lockPath = index + "/.lock"
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw IndexError(path: lockPath, "cannot open the lock file: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            throw IndexError(path: index, "another vidx-shard run holds the index lock (\(lockPath)); try again when it has finished")
        }
        defer { _ = flock(fd, LOCK_UN) }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: index)) ?? [] where name.hasPrefix(".tmp-") {
            try? FileManager.default.removeItem(atPath: index + "/" + name)
        }
        return try body()
    }
}
