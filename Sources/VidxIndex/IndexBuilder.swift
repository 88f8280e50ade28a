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
/// numbers are consecutive along the live chain. Before the new generation leaves its
/// temporary name, the `PublishPolicy` checks run: a refusal (`PublishRefusal`) removes
/// the temporary directory and leaves the index as it was.
///
/// Memory is bounded by one shard, not by the index: entries are spilled by shard into the
/// temporary directory as they are read, and each shard is then built from its own run.
public enum IndexBuilder {
    /// Where a run's entries come from: called once, under the index lock, with `add`, to
    /// which it hands every entry (any order, duplicates allowed); returns the inputs to
    /// record in the manifest. It may throw (a `PublishRefusal` once it has seen every
    /// input, say): nothing is published then.
    public typealias EntryFeed = (_ add: (IndexEntry) throws -> Void) throws -> [IndexManifest.Input]

    /// Builds a fresh generation (no parent shards) from `entries` into `shards` base shards.
    /// The generation `CURRENT` named (if any) is recorded as the parent; the videos live
    /// there and absent from `entries` count as dropped for `policy`.
    /// - Parameter note: receives one line per leftover removed.
    /// - Throws: `PublishRefusal`, `IndexError` for duplicate or colliding ids, or a write failure.
    public static func build(index: String, model: IndexModel, entries: [IndexEntry],
                             inputs: [IndexManifest.Input], shards: Int, tool: IndexManifest.Tool,
                             policy: PublishPolicy = PublishPolicy(),
                             note: (String) -> Void = { _ in }) throws -> PublishResult {
        try build(index: index, model: model, feed: { add in try entries.forEach(add); return inputs },
                  shards: shards, tool: tool, policy: policy, note: note)
    }

    /// Builds a fresh generation from what `feed` hands over, in bounded memory: entries
    /// are spilled into one run file per shard (in the generation's temporary directory),
    /// then each shard is built from its own run (duplicates and 64-bit collisions checked
    /// there: equal ids land in the same shard), so the peak depends on one shard's
    /// entries, not on the index. The parent's live ids are spilled the same way to count
    /// what the build drops, shard by shard.
    public static func build(index: String, model: IndexModel, feed: EntryFeed, shards: Int,
                             tool: IndexManifest.Tool, policy: PublishPolicy = PublishPolicy(),
                             note: (String) -> Void = { _ in }) throws -> PublishResult {
        try checkShardCount(shards)
        return try withLock(index, note: note) { live in
            let parent = try openParent(index: index, live: live, policy: policy)
            return try Draft.run(index: index, parent: live) { draft in
                let (runs, inputs, withEmbeddings) = try spill(feed, into: draft, count: shards, model: model)
                var records: [IndexManifest.ShardRecord] = []
                for s in 0..<shards {
                    let unique = try deduplicate(runs.take(s), path: index)
                    records.append(try writeShard(unique, tombstones: [], model: model, shard: s, of: shards, kind: .base,
                                                  sequence: 0, embeddings: withEmbeddings, into: draft.directory))
                }
                draft.removeScratch()
                return try finishBuild(draft, parent: parent, records: records, model: model, inputs: inputs,
                                       policy: policy, tool: tool)
            }
        }
    }

    /// The live generation a build replaces (nil when the index has none). One that cannot
    /// be read is refused, unless `policy.allowShrink`: what the build drops cannot be counted.
    static func openParent(index: String, live: String?, policy: PublishPolicy) throws -> IndexGeneration? {
        guard let live else { return nil }
        do {
            return try IndexGeneration(indexDirectory: index, generation: live, releasePages: true)
        } catch {
            if !policy.allowShrink {
                throw PublishRefusal(index: index, "the live generation \(live) cannot be read (\(error)), so how many of its videos this build would drop cannot be checked; nothing published, CURRENT unchanged. Pass --allow-shrink to replace it anyway")
            }
            return nil
        }
    }

    /// Completes a build whose base shards (`records`, one per shard index) are in `draft`:
    /// counts what it drops of `parent`'s live videos (the parent's live ids spilled by
    /// shard and compared, shard by shard, with the ids of the shard written), checks the
    /// policy, then publishes.
    static func finishBuild(_ draft: Draft, parent: IndexGeneration?, records: [IndexManifest.ShardRecord], model: IndexModel,
                            inputs: [IndexManifest.Input], policy: PublishPolicy, tool: IndexManifest.Tool) throws -> PublishResult {
        let shards = records.count
        let live = records.reduce(0) { $0 + $1.videos }
        var dropped = 0
        if let parent {
            let ids = try IDRuns(directory: draft.directory + "/.parent-ids", count: shards)
            try parent.forEachLive { s, r in try ids.add(parent.shards[s].ids[r]) }
            try ids.finish()
            parent.releaseResidentPages()
            for (s, record) in records.enumerated() {
                let shard = try Shard(path: draft.directory + "/" + record.file, verifyChecksums: false)
                dropped += countMissing(try ids.takeSorted(s), from: shard.ids)
                shard.releaseResidentPages()
            }
            draft.removeScratch()
        }
        try check(policy, index: draft.index, mode: .build, parent: parent.map { ($0.name, $0.counts.live) },
                  dropped: dropped, live: live)
        let config = IndexManifest.Config(mode: .build, shards: shards, inputs: sortedInputs(inputs), deletedIDs: nil)
        let counts = IndexManifest.Counts(entries: live, live: live, superseded: 0, deleted: 0)
        let manifest = try publish(draft, model: model, kept: [], written: records, counts: counts, config: config,
                                   tool: tool, verify: policy.verify)
        return PublishResult(manifest: manifest, unchanged: 0, notFound: [], dropped: dropped)
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
        try append(index: index, model: model, feed: { add in try entries.forEach(add); return inputs },
                   deletions: deletions, shards: shards, tool: tool, policy: policy, note: note)
    }

    /// Appends what `feed` hands over, in memory and time that grow with the delta, not
    /// with the index: entries are spilled by delta shard and compared shard by shard with
    /// the parent (binary search in its memory-mapped shards); the parent's shard files are
    /// hard-linked with their manifest records, and the counts are updated from the rows of
    /// the ids the delta touches.
    public static func append(index: String, model: IndexModel, feed: EntryFeed, deletions: [String], shards: Int?,
                              tool: IndexManifest.Tool, policy: PublishPolicy = PublishPolicy(),
                              note: (String) -> Void = { _ in }) throws -> PublishResult {
        if let shards { try checkShardCount(shards) }
        return try withLock(index, note: note) { live in
            guard let live else {
                throw IndexError(path: index, "has no live generation (no CURRENT) to append to: build one first")
            }
            let parent = try IndexGeneration(indexDirectory: index, generation: live, releasePages: true)
            try checkSameBundle(parent.manifest, model, index: index)
            let count = shards ?? parent.manifest.shards.filter { $0.kind == .base }.first?.shardCount ?? 1
            try checkShardCount(count)
            let sequence = (parent.manifest.shards.map(\.sequence).max() ?? 0) + 1
            let listed = Set(deletions.map(ExternalID.init)).map(\.string).sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            var listedByShard = [[String]](repeating: [], count: count)
            for external in listed { listedByShard[Int(VideoID.of(external) % UInt64(count))].append(external) }
            return try Draft.run(index: index, parent: live) { draft in
                let (runs, inputs, withEmbeddings) = try spill(feed, into: draft, count: count, model: model)
                var records: [IndexManifest.ShardRecord] = []
                var unchanged = 0, added = 0
                var freshIDs: [UInt64] = [], tombstones: [UInt64] = [], notFound: [String] = []
                for s in 0..<count {
                    var fresh: [IndexEntry] = []
                    for e in try deduplicate(runs.take(s), path: index) {
                        if let (ps, r) = parent.locate(externalID: e.entry.externalID) {
                            if parent.shards[ps].codes(at: r) == e.entry.codes, parent.shards[ps].contentHash(at: r) == e.entry.contentHash {
                                unchanged += 1
                                continue
                            }
                        } else {
                            added += 1
                        }
                        fresh.append(e)
                    }
                    var stones: [UInt64] = []
                    if !listedByShard[s].isEmpty {
                        let freshNames = Set(fresh.map { ExternalID($0.entry.externalID) })
                        for external in listedByShard[s] {
                            if freshNames.contains(ExternalID(external)) {
                                throw IndexError(path: index, "video '\(external)' is both submitted and listed for deletion in the same run")
                            }
                            if parent.locate(externalID: external) != nil {
                                stones.append(VideoID.of(external))
                            } else {
                                notFound.append(external)
                            }
                        }
                    }
                    freshIDs += fresh.map(\.entry.id)
                    tombstones += stones
                    // The lookups touched rows all over the parent's shards (and the kernel maps
                    // neighbouring pages with each): let them go, so the resident set stays
                    // one delta shard's worth however large the index.
                    parent.releaseResidentPages()
                    // Deltas only where there is something to say.
                    if fresh.isEmpty && stones.isEmpty { continue }
                    records.append(try writeShard(fresh, tombstones: stones.sorted(), model: model, shard: s, of: count,
                                                  kind: .delta, sequence: sequence, embeddings: withEmbeddings,
                                                  into: draft.directory))
                }
                draft.removeScratch()
                notFound.sort { $0.utf8.lexicographicallyPrecedes($1.utf8) }
                if freshIDs.isEmpty && tombstones.isEmpty {
                    draft.discard()
                    return PublishResult(manifest: nil, unchanged: unchanged, notFound: notFound)
                }
                try check(policy, index: index, mode: .append, parent: (parent.name, parent.counts.live),
                          dropped: tombstones.count, live: parent.counts.live - tombstones.count + added)
                let kept = parent.manifest.shards.map { (record: $0, from: parent.directory + "/" + $0.file) }
                let counts = parent.countsAfterAppending(entries: freshIDs, tombstones: tombstones)
                let config = IndexManifest.Config(mode: .append, shards: count, inputs: sortedInputs(inputs),
                                                  deletedIDs: listed.count)
                let manifest = try publish(draft, model: model, kept: kept, written: records, counts: counts,
                                           config: config, tool: tool, verify: policy.verify)
                return PublishResult(manifest: manifest, unchanged: unchanged, notFound: notFound, dropped: tombstones.count)
            }
        }
    }

    /// Rewrites the live generation's live entries into fresh base shards, dropping
    /// superseded and deleted entries, without re-encoding; in bounded memory, as a build.
    /// - Parameter shards: the new shard count (default: the parent's base shard count).
    public static func compact(index: String, shards: Int?, tool: IndexManifest.Tool,
                               policy: PublishPolicy = PublishPolicy(),
                               note: (String) -> Void = { _ in }) throws -> PublishResult {
        if let shards { try checkShardCount(shards) }
        return try withLock(index, note: note) { live in
            guard let live else {
                throw IndexError(path: index, "has no live generation (no CURRENT) to compact")
            }
            let parent = try IndexGeneration(indexDirectory: index, generation: live, verifyChecksums: true, releasePages: true)
            let m = parent.manifest
            let model = IndexModel(bundleFingerprint: m.bundleFingerprint, quantizer: parent.quantizer)
            let count = shards ?? m.shards.filter { $0.kind == .base }.first?.shardCount ?? 1
            try checkShardCount(count)
            let keepEmbeddings = parent.counts.live > 0 && parent.shards.indices.allSatisfy { s in
                parent.shards[s].coarseEmbeddingsF16 != nil || !(0..<parent.shards[s].count).contains { r in parent.isLive(shard: s, row: r) }
            }
            return try Draft.run(index: index, parent: live) { draft in
                let runs = try ShardRuns(directory: draft.directory + "/.runs", count: count, dimension: m.dimension)
                let D = m.dimension
                for s in parent.shards.indices {
                    let shard = parent.shards[s]
                    for r in 0..<shard.count where parent.isLive(shard: s, row: r) {
                        let entry = ShardEntry(id: shard.ids[r], externalID: shard.externalID(at: r),
                                               contentHash: shard.contentHash(at: r), codes: shard.codes(at: r))
                        var embedding: [UInt16]? = nil
                        if keepEmbeddings, let e = shard.coarseEmbeddingsF16 { embedding = Array(e[(r * D)..<((r + 1) * D)]) }
                        try runs.add(IndexEntry(entry: entry, coarseEmbedding: embedding))
                    }
                    shard.releaseResidentPages()
                }
                try runs.finish()
                try check(policy, index: index, mode: .compact, parent: (parent.name, parent.counts.live),
                          dropped: parent.counts.live - runs.added, live: runs.added)
                var records: [IndexManifest.ShardRecord] = []
                for s in 0..<count {
                    let unique = try deduplicate(runs.take(s), path: index)
                    records.append(try writeShard(unique, tombstones: [], model: model, shard: s, of: count, kind: .base,
                                                  sequence: 0, embeddings: keepEmbeddings, into: draft.directory))
                }
                draft.removeScratch()
                let config = IndexManifest.Config(mode: .compact, shards: count, inputs: nil, deletedIDs: nil)
                let counts = IndexManifest.Counts(entries: runs.added, live: runs.added, superseded: 0, deleted: 0)
                let manifest = try publish(draft, model: model, kept: [], written: records, counts: counts,
                                           config: config, tool: tool, verify: policy.verify)
                return PublishResult(manifest: manifest, unchanged: 0, notFound: [])
            }
        }
    }

    // MARK: Writing shards

    static func checkShardCount(_ count: Int) throws {
        guard count >= 1 && count <= 9999 else { throw IndexError(path: "", "the shard count must be between 1 and 9999, not \(count)") }
    }

    static func checkSameBundle(_ manifest: IndexManifest, _ model: IndexModel, index: String) throws {
        guard manifest.bundleFingerprint == model.bundleFingerprint else {
            throw IndexError(path: index, "the live generation was made with bundle \(manifest.bundleFingerprint), these codes with bundle \(model.bundleFingerprint): codes from different bundles cannot share an index (rebuild it)")
        }
    }

    /// Hands `feed`'s entries to fresh per-shard runs in `draft`; returns the runs, the
    /// inputs to record and whether the generation stores embeddings.
    static func spill(_ feed: EntryFeed, into draft: Draft, count: Int,
                      model: IndexModel) throws -> (runs: ShardRuns, inputs: [IndexManifest.Input], embeddings: Bool) {
        let runs = try ShardRuns(directory: draft.directory + "/.runs", count: count, dimension: model.layout.dimension)
        let inputs = try feed(runs.add)
        try runs.finish()
        return (runs, inputs, try embeddingsChoice(runs))
    }

    /// Whether the generation stores coarse embeddings: for all videos or none.
    static func embeddingsChoice(_ runs: ShardRuns) throws -> Bool {
        guard runs.withEmbedding > 0 else { return false }
        if runs.withEmbedding != runs.added, let bad = runs.firstWithoutEmbedding {
            throw IndexError(path: "", "video '\(bad)' has no coarse embedding of \(runs.dimension) values, but others do: store embeddings for all videos or none")
        }
        return true
    }

    /// One entry per external id, sorted by id. The same id twice with the same content and
    /// codes is one video; with different ones it is an error (which would win would depend
    /// on input order). Two external ids with the same 64-bit id are refused too.
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

    /// How many of `ids` (sorted) are not in `present` (sorted).
    static func countMissing(_ ids: [UInt64], from present: UnsafeBufferPointer<UInt64>) -> Int {
        var missing = 0, j = 0
        for id in ids {
            while j < present.count && present[j] < id { j += 1 }
            if j == present.count || present[j] != id { missing += 1 }
        }
        return missing
    }

    /// Writes shard `shard` of `count` (entries sorted by id, unique) into `directory`
    /// and returns its manifest record (size, CRC-32C and SHA-256 from the bytes written).
    static func writeShard(_ entries: [IndexEntry], tombstones: [UInt64], model: IndexModel, shard: Int, of count: Int,
                           kind: ShardKind, sequence: Int, embeddings: Bool, into directory: String) throws -> IndexManifest.ShardRecord {
        guard let fingerprint = SHA256Digest.bytes(fromHex: model.bundleFingerprint), fingerprint.count == 32 else {
            throw IndexError(path: "", "bundle fingerprint '\(model.bundleFingerprint)' is not 64 hex digits")
        }
        let layout = model.layout
        var vectors: [UInt16]? = nil
        if embeddings {
            var all: [UInt16] = []
            all.reserveCapacity(entries.count * layout.dimension)
            for e in entries { all += e.coarseEmbedding! }
            vectors = all
        }
        let contents = ShardContents(levels: UInt32(layout.levels), subspaces: UInt32(layout.subspaces),
                                     codewords: UInt32(layout.codewords), dimension: UInt32(layout.dimension),
                                     bundleFingerprint: fingerprint, shardIndex: UInt32(shard), shardCount: UInt32(count),
                                     entries: entries.map(\.entry), tombstones: tombstones, coarseEmbeddingsF16: vectors)
        let file = kind == .base ? String(format: "base-%04d.vidx", shard) : String(format: "delta-%04d-%04d.vidx", sequence, shard)
        let path = directory + "/" + file
        let bytes = try ShardWriter.bytes(contents, path: path)
        try bytes.withUnsafeBytes { try AtomicFile.write($0, to: path) }
        let crc = bytes.withUnsafeBytes {
            $0.loadUnaligned(fromByteOffset: bytes.count - ShardFormat.trailerSize + ShardFormat.Trailer.fileCRC, as: UInt32.self).littleEndian
        }
        return IndexManifest.ShardRecord(file: file, kind: kind, sequence: sequence, shardIndex: shard, shardCount: count,
                                         videos: entries.count, tombstones: tombstones.count, bytes: bytes.count,
                                         crc32c: String(format: "%08x", crc), sha256: SHA256Digest.hex(bytes))
    }

    static func sortedInputs(_ inputs: [IndexManifest.Input]) -> [IndexManifest.Input] {
        inputs.sorted { ($0.sha256, $0.videos) < ($1.sha256, $1.videos) }
    }

    // MARK: Publishing

    /// A new generation being written, under its temporary name `INDEX/.tmp-gNNNNNN`
    /// (which the next run removes if this one is interrupted).
    struct Draft {
        let index: String
        let parent: String?
        let name: String
        let directory: String

        init(index: String, parent: String?) throws {
            self.index = index
            self.parent = parent
            name = try IndexBuilder.nextGenerationName(after: parent, index: index)
            directory = index + "/.tmp-" + name
            try? FileManager.default.removeItem(atPath: directory)
            try AtomicFile.makeDirectory(directory)
        }

        /// Removes the scratch runs, keeping what will be published.
        func removeScratch() {
            for scratch in [".runs", ".parent-ids"] { try? FileManager.default.removeItem(atPath: directory + "/" + scratch) }
        }

        /// Runs `body` on a new draft; when it throws (a refusal, a failure) the draft is
        /// removed: nothing is published.
        static func run<T>(index: String, parent: String?, _ body: (Draft) throws -> T) throws -> T {
            let draft = try Draft(index: index, parent: parent)
            do { return try body(draft) } catch {
                draft.discard()
                throw error
            }
        }

        /// Removes the whole draft (a refusal or a failure: nothing published).
        func discard() {
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    /// Completes `draft` (the parent's `kept` shards linked in with their records, the
    /// codebooks, the manifest), renames it to its generation name, verifies it when asked,
    /// then switches `CURRENT`.
    static func publish(_ draft: Draft, model: IndexModel, kept: [(record: IndexManifest.ShardRecord, from: String)],
                        written: [IndexManifest.ShardRecord], counts: IndexManifest.Counts,
                        config: IndexManifest.Config, tool: IndexManifest.Tool, verify: Bool) throws -> IndexManifest {
        let (index, parent, name, tmp) = (draft.index, draft.parent, draft.name, draft.directory)
        for k in kept { try linkOrCopy(k.from, to: tmp + "/" + k.record.file) }
        let records = (kept.map(\.record) + written).sorted { ($0.sequence, $0.file) < ($1.sequence, $1.file) }
        let codebooksFile = Codebooks.fileName(bundleFingerprint: model.bundleFingerprint)
        try model.quantizer.write(to: tmp + "/" + codebooksFile, bundleFingerprint: model.bundleFingerprint)
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
