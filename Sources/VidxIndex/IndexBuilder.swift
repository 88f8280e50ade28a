import Foundation
import VidxCore
import VidxQuantization

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

/// What every shard of a generation shares: the bundle its codes were made with, and
/// that bundle's product quantizer (whose codebooks the generation publishes).
public struct IndexModel: Sendable, Equatable {
    public var bundleFingerprint: String
    public var quantizer: ProductQuantizer
    public var layout: ProductQuantizer.Layout { quantizer.layout }

    public init(bundleFingerprint: String, quantizer: ProductQuantizer) {
        self.bundleFingerprint = bundleFingerprint
        self.quantizer = quantizer
    }
}

/// The checks that keep a run from replacing the live index with a damaged one.
///
/// Whatever the policy, a generation with no live video is never published. Beyond that,
/// a run may not drop more than `maxShrink` of the live generation's videos (videos live
/// there and not live in the new generation: deleted, or left out of a rebuild) unless
/// `allowShrink` is set.
public struct PublishPolicy: Sendable, Equatable {
    /// The largest share (0...1) of the live generation's videos a run may drop.
    public var maxShrink: Double
    /// Publish however many videos the run drops (but never an empty generation).
    public var allowShrink: Bool
    /// Check the new generation as `vidx-verify` does (every file re-read: sizes, SHA-256,
    /// CRC-32C, shard validation, codebooks, counts) before `CURRENT` names it; one that
    /// does not verify is never made live (and is removed as a leftover by the next run).
    public var verify: Bool

    public static let defaultMaxShrink = 0.10

    public init(maxShrink: Double = PublishPolicy.defaultMaxShrink, allowShrink: Bool = false, verify: Bool = false) {
        self.maxShrink = maxShrink
        self.allowShrink = allowShrink
        self.verify = verify
    }
}

/// A run that a safety check stopped before it published anything: `CURRENT` and every
/// generation are as they were.
public struct PublishRefusal: Error, CustomStringConvertible, Sendable, Equatable {
    public let index: String
    public let message: String
    public init(index: String, _ message: String) {
        self.index = index
        self.message = message
    }
    public var description: String { "\(index): refused: \(message)" }
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
    /// Live videos of the parent generation that the new one no longer holds.
    public var dropped: Int = 0
}

/// Writes index generations: a fresh build, a nightly append (delta shards and
/// tombstones on top of the parent's shards) and a compaction.
///
/// Every run writes a complete new generation under a temporary name, fsyncs it, renames
/// it to `gNNNNNN` and only then switches `CURRENT` (temporary name, fsync, rename). An
/// interrupted run leaves the previous generation live and intact. Runs on the same index
/// are serialised with a lock file (`INDEX/.lock`); a second concurrent run fails at once.
///
/// Each run starts, under the lock, by removing what interrupted runs left (see
/// `removeLeftovers`): temporary names, and generations that are neither `CURRENT` nor
/// one of its ancestors. The new generation is numbered one more than `CURRENT`'s, so
/// numbers are consecutive along the live chain. Before anything is written, the
/// `PublishPolicy` checks run: a refusal (`PublishRefusal`) leaves the index untouched.
public enum IndexBuilder {
    /// Builds a fresh generation (no parent shards) from `entries` into `shards` base shards.
    /// The generation `CURRENT` named (if any) is recorded as the parent; the videos live
    /// there and absent from `entries` count as dropped for `policy`.
    /// - Parameter note: receives one line per leftover removed.
    /// - Throws: `PublishRefusal`, `IndexError` for duplicate or colliding ids, or a write failure.
    public static func build(index: String, model: IndexModel, entries: [IndexEntry],
                             inputs: [IndexManifest.Input], shards: Int, tool: IndexManifest.Tool,
                             policy: PublishPolicy = PublishPolicy(),
                             note: (String) -> Void = { _ in }) throws -> PublishResult {
        try withLock(index, note: note) { live in
            let unique = try deduplicate(entries, path: index)
            var dropped = 0
            var parentLive: (name: String, live: Int)? = nil
            if let live {
                do {
                    let parent = try IndexGeneration(indexDirectory: index, generation: live)
                    let fresh = Set(unique.map(\.entry.id))
                    for (s, r) in parent.liveEntries() where !fresh.contains(parent.shards[s].ids[r]) { dropped += 1 }
                    parentLive = (live, parent.counts.live)
                } catch {
                    if !policy.allowShrink {
                        throw PublishRefusal(index: index, "the live generation \(live) cannot be read (\(error)), so how many of its videos this build would drop cannot be checked; nothing published, CURRENT unchanged. Pass --allow-shrink to replace it anyway")
                    }
                }
            }
            try check(policy, index: index, mode: .build, parent: parentLive, dropped: dropped, live: unique.count)
            let planned = try plan(unique, tombstones: [], model: model, count: shards, kind: .base, sequence: 0)
            let config = IndexManifest.Config(mode: .build, shards: shards, inputs: sortedInputs(inputs), deletedIDs: nil)
            let manifest = try publish(index: index, parent: live, model: model,
                                       kept: [], planned: planned, config: config, tool: tool, verify: policy.verify)
            return PublishResult(manifest: manifest, unchanged: 0, notFound: [], dropped: dropped)
        }
    }

    /// Refuses what `policy` forbids: an empty generation, or one that drops more than
    /// `policy.maxShrink` of the parent's live videos without `allowShrink`.
    static func check(_ policy: PublishPolicy, index: String, mode: IndexManifest.Mode, parent: (name: String, live: Int)?,
                      dropped: Int, live: Int) throws {
        let unchanged = parent.map { "CURRENT still names \($0.name)" } ?? "no generation published"
        if live == 0 {
            throw PublishRefusal(index: index, "the new generation would hold no live video; \(unchanged). An empty index is never published (remove the index directory to start over)")
        }
        guard let parent, parent.live > 0, dropped > 0, !policy.allowShrink else { return }
        let share = Double(dropped) / Double(parent.live)
        if share > policy.maxShrink {
            throw PublishRefusal(index: index, String(
                format: "this %@ would drop %d of the %d videos live in %@ (%.1f %%, over the limit of %.1f %%, --max-shrink %g); %@. Pass --allow-shrink if that is intended",
                mode == .compact ? "compaction" : mode.rawValue, dropped, parent.live, parent.name, 100 * share, 100 * policy.maxShrink, policy.maxShrink, unchanged))
        }
    }

    /// Appends to the live generation: new and changed videos go into delta shards of the
    /// next sequence, `deletions` (external ids) become tombstones; the parent's shards are
    /// kept (hard links).
    /// - Parameter shards: the number of delta shards (default: the parent's base shard count).
    public static func append(index: String, model: IndexModel, entries: [IndexEntry],
                              deletions: [String], inputs: [IndexManifest.Input], shards: Int?,
                              tool: IndexManifest.Tool, policy: PublishPolicy = PublishPolicy(),
                              note: (String) -> Void = { _ in }) throws -> PublishResult {
        try withLock(index, note: note) { live in
            guard let live else {
                throw IndexError(path: index, "has no live generation (no CURRENT) to append to: build one first")
            }
            let parent = try IndexGeneration(indexDirectory: index, generation: live)
            try checkSameBundle(parent.manifest, model, index: index)
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
            let freshIDs = Set(fresh.map { ExternalID($0.entry.externalID) })
            var tombstones: [UInt64] = [], notFound: [String] = []
            let listed = Set(deletions.map(ExternalID.init)).map(\.string).sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            for external in listed {
                if freshIDs.contains(ExternalID(external)) {
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
            let added = fresh.filter { parent.locate(externalID: $0.entry.externalID) == nil }.count
            try check(policy, index: index, mode: .append, parent: (parent.name, parent.counts.live),
                      dropped: tombstones.count, live: parent.counts.live - tombstones.count + added)
            let count = shards ?? parent.manifest.shards.filter { $0.kind == .base }.first?.shardCount ?? 1
            let sequence = (parent.manifest.shards.map(\.sequence).max() ?? 0) + 1
            let planned = try plan(fresh, tombstones: tombstones, model: model, count: count, kind: .delta, sequence: sequence)
            let kept = parent.manifest.shards.map { (record: $0, from: parent.directory + "/" + $0.file) }
            let config = IndexManifest.Config(mode: .append, shards: count, inputs: sortedInputs(inputs),
                                              deletedIDs: listed.count)
            let manifest = try publish(index: index, parent: parent.name, model: model,
                                       kept: kept, planned: planned, config: config, tool: tool, verify: policy.verify)
            return PublishResult(manifest: manifest, unchanged: unchanged, notFound: notFound, dropped: tombstones.count)
        }
    }

    /// Rewrites the live generation's live entries into fresh base shards, dropping
    /// superseded and deleted entries, without re-encoding.
    /// - Parameter shards: the new shard count (default: the parent's base shard count).
    public static func compact(index: String, shards: Int?, tool: IndexManifest.Tool,
                               policy: PublishPolicy = PublishPolicy(),
                               note: (String) -> Void = { _ in }) throws -> PublishResult {
        try withLock(index, note: note) { live in
            guard let live else {
                throw IndexError(path: index, "has no live generation (no CURRENT) to compact")
            }
            let parent = try IndexGeneration(indexDirectory: index, generation: live, verifyChecksums: true)
            let m = parent.manifest
            let model = IndexModel(bundleFingerprint: m.bundleFingerprint, quantizer: parent.quantizer)
            let liveRows = parent.liveEntries()
            let keepEmbeddings = !liveRows.isEmpty && liveRows.allSatisfy { parent.shards[$0.shard].coarseEmbeddingsF16 != nil }
            let D = m.dimension
            let entries = liveRows.map { (s, r) -> IndexEntry in
                let shard = parent.shards[s]
                let entry = ShardEntry(id: shard.ids[r], externalID: shard.externalID(at: r),
                                       contentHash: shard.contentHash(at: r), codes: shard.codes(at: r))
                var embedding: [UInt16]? = nil
                if keepEmbeddings, let e = shard.coarseEmbeddingsF16 { embedding = Array(e[(r * D)..<((r + 1) * D)]) }
                return IndexEntry(entry: entry, coarseEmbedding: embedding)
            }
            let count = shards ?? m.shards.filter { $0.kind == .base }.first?.shardCount ?? 1
            try check(policy, index: index, mode: .compact, parent: (parent.name, parent.counts.live),
                      dropped: parent.counts.live - entries.count, live: entries.count)
            let planned = try plan(entries, tombstones: [], model: model, count: count, kind: .base, sequence: 0)
            let config = IndexManifest.Config(mode: .compact, shards: count, inputs: nil, deletedIDs: nil)
            let manifest = try publish(index: index, parent: parent.name, model: model,
                                       kept: [], planned: planned, config: config, tool: tool, verify: policy.verify)
            return PublishResult(manifest: manifest, unchanged: 0, notFound: [])
        }
    }

    // MARK: Planning

    struct PlannedShard {
        var file: String
        var kind: ShardKind
        var sequence: Int
        var contents: ShardContents
    }

    static func checkSameBundle(_ manifest: IndexManifest, _ model: IndexModel, index: String) throws {
        guard manifest.bundleFingerprint == model.bundleFingerprint else {
            throw IndexError(path: index, "the live generation was made with bundle \(manifest.bundleFingerprint), these codes with bundle \(model.bundleFingerprint): codes from different bundles cannot share an index (rebuild it)")
        }
    }

    /// One entry per external id. The same id twice with the same content and codes is one
    /// video; with different ones it is an error (which would win would depend on input
    /// order). Two external ids with the same 64-bit id are refused too.
    static func deduplicate(_ entries: [IndexEntry], path: String) throws -> [IndexEntry] {
        var byID: [UInt64: IndexEntry] = [:]
        byID.reserveCapacity(entries.count)
        for e in entries {
            if let problem = ExternalID.problem(e.entry.externalID) {
                throw IndexError(path: path, "video '\(e.entry.externalID.prefix(80))': \(problem)")
            }
            if let old = byID[e.entry.id] {
                if ExternalID(old.entry.externalID) != ExternalID(e.entry.externalID) {
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

    static func plan(_ entries: [IndexEntry], tombstones: [UInt64], model: IndexModel, count: Int,
                     kind: ShardKind, sequence: Int) throws -> [PlannedShard] {
        guard count >= 1 && count <= 9999 else { throw IndexError(path: "", "the shard count must be between 1 and 9999, not \(count)") }
        let withEmbeddings = entries.contains { $0.coarseEmbedding != nil }
        if withEmbeddings, let bad = entries.first(where: { $0.coarseEmbedding?.count != model.layout.dimension }) {
            throw IndexError(path: "", "video '\(bad.entry.externalID)' has no coarse embedding of \(model.layout.dimension) values, but others do: store embeddings for all videos or none")
        }
        var buckets = [[IndexEntry]](repeating: [], count: count)
        for e in entries { buckets[Int(e.entry.id % UInt64(count))].append(e) }
        var stones = [[UInt64]](repeating: [], count: count)
        for t in tombstones { stones[Int(t % UInt64(count))].append(t) }
        guard let fingerprint = SHA256Digest.bytes(fromHex: model.bundleFingerprint), fingerprint.count == 32 else {
            throw IndexError(path: "", "bundle fingerprint '\(model.bundleFingerprint)' is not 64 hex digits")
        }
        var planned: [PlannedShard] = []
        for s in 0..<count {
            // Deltas only where there is something to say; base shards always (S files).
            if kind == .delta && buckets[s].isEmpty && stones[s].isEmpty { continue }
            let sorted = buckets[s].sorted { $0.entry.id < $1.entry.id }
            let embeddings: [UInt16]? = withEmbeddings ? sorted.flatMap { $0.coarseEmbedding! } : nil
            let layout = model.layout
            let contents = ShardContents(levels: UInt32(layout.levels), subspaces: UInt32(layout.subspaces),
                                         codewords: UInt32(layout.codewords), dimension: UInt32(layout.dimension),
                                         bundleFingerprint: fingerprint, shardIndex: UInt32(s), shardCount: UInt32(count),
                                         entries: sorted.map(\.entry), tombstones: stones[s].sorted(),
                                         coarseEmbeddingsF16: embeddings)
            let file = kind == .base ? String(format: "base-%04d.vidx", s)
                                      : String(format: "delta-%04d-%04d.vidx", sequence, s)
            planned.append(PlannedShard(file: file, kind: kind, sequence: sequence, contents: contents))
        }
        return planned
    }

    static func sortedInputs(_ inputs: [IndexManifest.Input]) -> [IndexManifest.Input] {
        inputs.sorted { ($0.sha256, $0.videos) < ($1.sha256, $1.videos) }
    }

    // MARK: Publishing

    static func publish(index: String, parent: String?, model: IndexModel,
                        kept: [(record: IndexManifest.ShardRecord, from: String)], planned: [PlannedShard],
                        config: IndexManifest.Config, tool: IndexManifest.Tool, verify: Bool) throws -> IndexManifest {
        let name = try nextGenerationName(after: parent, index: index)
        let tmp = index + "/.tmp-" + name
        try AtomicFile.makeDirectory(tmp)
        var files: [(file: String, kind: ShardKind, sequence: Int)] = []
        for k in kept {
            try linkOrCopy(k.from, to: tmp + "/" + k.record.file)
            files.append((k.record.file, k.record.kind, k.record.sequence))
        }
        for p in planned {
            try ShardWriter.write(p.contents, to: tmp + "/" + p.file)
            files.append((p.file, p.kind, p.sequence))
        }
        files.sort { ($0.sequence, $0.file) < ($1.sequence, $1.file) }
        let codebooksFile = Codebooks.fileName(bundleFingerprint: model.bundleFingerprint)
        try model.quantizer.write(to: tmp + "/" + codebooksFile, bundleFingerprint: model.bundleFingerprint)
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
            generation: name, parent: parent, bundleFingerprint: model.bundleFingerprint, levels: model.layout.levels,
            subspaces: model.layout.subspaces, codewords: model.layout.codewords, dimension: model.layout.dimension,
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
        if verify {
            let problems = IndexVerifier.verify(indexDirectory: index, generation: name)
            guard problems.isEmpty else {
                throw IndexError(path: final, "the new generation does not verify, so CURRENT still names \(parent ?? "no generation"): "
                                 + problems.prefix(5).joined(separator: "; ") + (problems.count > 5 ? "; and \(problems.count - 5) more" : ""))
            }
        }
        try AtomicFile.write(name + "\n", to: index + "/" + IndexGeneration.currentFileName)
        return manifest
    }

    /// The generation after `live` (g000001 when the index has none): numbers are
    /// consecutive along the live chain. `removeLeftovers` has made sure it is free.
    static func nextGenerationName(after live: String?, index: String) throws -> String {
        let number = live.flatMap { Int($0.dropFirst()) } ?? 0
        guard number < 999_999 else { throw IndexError(path: index, "no generation numbers left (g999999 is live)") }
        return String(format: "g%06d", number + 1)
    }

    static func linkOrCopy(_ from: String, to: String) throws {
        if link(from, to) == 0 { return }
        do { try FileManager.default.copyItem(atPath: from, toPath: to) } catch {
            throw IndexError(path: from, "cannot link or copy into the new generation: \(error.localizedDescription)")
        }
    }

    /// Takes the index lock, removes what interrupted runs left (`removeLeftovers`) and
    /// lets go: what every run does first, so leftovers go even when the run is then
    /// refused. Does nothing when `index` does not exist.
    /// - Throws: `IndexError` when the lock is held or `CURRENT` is damaged.
    public static func removeLeftovers(index: String, note: (String) -> Void = { _ in }) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: index, isDirectory: &isDirectory), isDirectory.boolValue else { return }
        _ = try withLock(index, note: note) { _ in }
    }

    /// Runs `body` holding an exclusive lock on `INDEX/.lock`, after `removeLeftovers`.
    /// `body` receives the live generation's name (nil when the index has none).
    static func withLock<T>(_ index: String, note: (String) -> Void, _ body: (String?) throws -> T) throws -> T {
        try AtomicFile.makeDirectory(index)
        let lockPath = index + "/.lock"
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw IndexError(path: lockPath, "cannot open the lock file: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            throw IndexError(path: index, "another vidx-shard run holds the index lock (\(lockPath)); try again when it has finished")
        }
        defer { _ = flock(fd, LOCK_UN) }
        let live = try removeLeftovers(index, note: note)
        return try body(live)
    }

    /// Removes what interrupted runs leave behind, and returns the live generation's name.
    ///
    /// The rule (Schemas/index-shard.md, Generations): a generation directory is kept when
    /// it is `CURRENT` or one of its ancestors (following `parent` in the manifests);
    /// every other generation is removed: one numbered above `CURRENT` can only come from
    /// a run killed between publishing its directory and switching `CURRENT` (or from a
    /// rollback of `CURRENT` by hand), one below it and off the chain from a run of an
    /// older version. When the chain cannot be followed to a fresh build (a generation
    /// removed by hand, a damaged manifest), nothing below `CURRENT` is removed. Temporary names (`.tmp-gNNNNNN` directories and
    /// `.CURRENT.tmp-*` files) are always removed. Call with the lock held.
    /// - Throws: `IndexError` when `CURRENT` exists but does not name a generation
    ///   (nothing is removed then: the index needs a person).
    static func removeLeftovers(_ index: String, note: (String) -> Void) throws -> String? {
        let fm = FileManager.default
        let currentPath = index + "/" + IndexGeneration.currentFileName
        let live: String? = fm.fileExists(atPath: currentPath)
            ? try IndexGeneration.currentName(indexDirectory: index) : nil
        let names = ((try? fm.contentsOfDirectory(atPath: index)) ?? []).sorted()
        var chain = Set<String>()
        var chainComplete = true
        if var name = live {
            while true {
                chain.insert(name)
                // A generation removed by hand, a damaged manifest or a cycle: the chain's
                // end is unknown, so nothing below CURRENT may be judged off the chain.
                guard let manifest = try? IndexManifest.read(generationDirectory: index + "/" + name) else {
                    chainComplete = false
                    break
                }
                guard let parent = manifest.parent else { break }  // the chain's first generation
                if chain.contains(parent) { chainComplete = false; break }
                name = parent
            }
        }
        let liveNumber = live.flatMap { Int($0.dropFirst()) } ?? 0
        for name in names {
            let path = index + "/" + name
            if name.hasPrefix(".tmp-") || AtomicFile.isTemporaryName(name) {
                try? fm.removeItem(atPath: path)
                note("removed \(path), a temporary name left by an interrupted run")
                continue
            }
            guard IndexGeneration.isGenerationName(name), !chain.contains(name), let number = Int(name.dropFirst()) else { continue }
            if number > liveNumber || chainComplete {
                try? fm.removeItem(atPath: path)
                note("removed \(path): neither CURRENT (\(live ?? "none")) nor one of its ancestors (left by an interrupted run)")
            }
        }
        return live
    }
}
