import Foundation
import VidxCore

/// A build in three steps that separate processes can run (Slurm array tasks on a shared
/// file system): read the codes files in P parts, build each of the S shards from every
/// part's run for it, then publish the shards as a new generation. The result is
/// byte-identical to `IndexBuilder.build` over the same codes files: a shard's bytes
/// depend on its entries only.
///
/// The stage directory (Schemas/shard-stage.schema.json) holds, for part k and shard s:
///
///     part-KKKK/run-SSSS    part k's entries for shard s (`ShardRuns`' scratch layout)
///     part-KKKK.json        part k's summary, written last: the part is complete
///     base-SSSS.vidx        shard s
///     base-SSSS.json        its manifest record, written last: the shard is complete
///
/// Every step may be re-run (a task requeued or resubmitted): it redoes its own files,
/// and a step whose summary exists is already done. Nothing touches the index before
/// `publish`, which takes the index lock and applies the same checks as a build.
public enum StagedBuild {
    /// `part-KKKK.json`.
    public struct Part: Codable, Sendable, Equatable {
        public static let format = "vidx-shard-part"
        public var format = Part.format
        public var formatVersion = 1
        public var part: Int
        public var parts: Int
        public var shards: Int
        public var bundleFingerprint: String
        /// SHA-256 of the whole list of codes files (every part's), one path per line.
        public var codesListSHA256: String
        public var embeddings: Bool
        public var inputs: [IndexManifest.Input]
        public var unreadable: [Unreadable]
        /// Videos left out because they failed an earlier stage, by failure class.
        public var failures: [String: Int]
        /// Usable videos read (duplicates included), and how many carry an embedding.
        public var videos: Int
        public var videosWithEmbedding: Int
        public var firstWithoutEmbedding: String?

        public struct Unreadable: Codable, Sendable, Equatable {
            public var path: String
            public var problem: String
        }

        enum CodingKeys: String, CodingKey {
            case format, formatVersion = "format_version", part, parts, shards, bundleFingerprint = "bundle_fingerprint"
            case codesListSHA256 = "codes_list_sha256", embeddings, inputs, unreadable, failures, videos
            case videosWithEmbedding = "videos_with_embedding", firstWithoutEmbedding = "first_without_embedding"
        }
    }

    /// `base-SSSS.json`.
    public struct Built: Codable, Sendable, Equatable {
        public static let format = "vidx-shard-built"
        public var format = Built.format
        public var formatVersion = 1
        public var parts: Int
        public var bundleFingerprint: String
        public var codesListSHA256: String
        public var record: IndexManifest.ShardRecord

        enum CodingKeys: String, CodingKey {
            case format, formatVersion = "format_version", parts, bundleFingerprint = "bundle_fingerprint"
            case codesListSHA256 = "codes_list_sha256", record
        }
    }

    static func partDirectory(_ stage: String, _ k: Int) -> String { stage + "/" + String(format: "part-%04d", k) }
    static func partSummary(_ stage: String, _ k: Int) -> String { partDirectory(stage, k) + ".json" }
    static func shardFile(_ stage: String, _ s: Int) -> String { stage + "/" + String(format: "base-%04d.vidx", s) }
    static func shardSummary(_ stage: String, _ s: Int) -> String { stage + "/" + String(format: "base-%04d.json", s) }

    /// The digest that ties every step to one list of codes files.
    public static func codesListDigest(_ codes: [String]) -> String {
        SHA256Digest.hex(Array(codes.map { $0 + "\n" }.joined().utf8))
    }

    static func read<T: Decodable>(_ type: T.Type, _ path: String) throws -> T {
        do { return try JSONDecoder().decode(T.self, from: try InputFiles.read(path, maxBytes: 256 << 20)) } catch {
            throw IndexError(path: path, "cannot read this stage file: \(error)")
        }
    }

    static func write<T: Encodable>(_ value: T, _ path: String) throws {
        try AtomicFile.write(try makeJSONEncoder(pretty: true).encode(value), to: path)
    }

    /// Step 1, part `part` of `parts`: reads codes files `part`, `part + parts`, ... of
    /// `codes` and spills their videos by shard into `part-KKKK/`. Unreadable files are
    /// recorded (the publish step applies `--allow-missing-inputs`).
    /// - Throws: `IndexError` for codes from another bundle or without asked-for
    ///   embeddings, or a write failure.
    @discardableResult
    public static func partition(stage: String, part: Int, of parts: Int, codes: [String], model: IndexModel,
                                 shards: Int, embeddings: Bool, note: (String) -> Void = { _ in }) throws -> Part {
        try IndexBuilder.checkShardCount(shards)
        guard parts >= 1, part >= 0, part < parts else {
            throw IndexError(path: stage, "part \(part) of \(parts): needs 0 <= part < parts")
        }
        let digest = codesListDigest(codes)
        if FileManager.default.fileExists(atPath: partSummary(stage, part)) {
            let done = try read(Part.self, partSummary(stage, part))
            if done.parts == parts, done.shards == shards, done.codesListSHA256 == digest,
               done.bundleFingerprint == model.bundleFingerprint, done.embeddings == embeddings {
                return done
            }
            throw IndexError(path: stage, "part \(part) was staged for other inputs or settings; use a fresh stage directory per build")
        }
        try AtomicFile.makeDirectory(stage)
        let dir = partDirectory(stage, part)
        try? FileManager.default.removeItem(atPath: dir)   // an earlier attempt's leftovers
        let runs = try ShardRuns(directory: dir, count: shards, dimension: model.layout.dimension)
        let mine = codes.enumerated().filter { $0.offset % parts == part }.map(\.element)
        let inputs = try IndexInputs.scan(mine, model: model, embeddings: embeddings, note: note, each: runs.add)
        try runs.finish()
        let summary = Part(part: part, parts: parts, shards: shards, bundleFingerprint: model.bundleFingerprint,
                           codesListSHA256: digest, embeddings: embeddings, inputs: inputs.inputs,
                           unreadable: inputs.unreadable.map { Part.Unreadable(path: $0.path, problem: $0.problem) },
                           failures: Dictionary(uniqueKeysWithValues: inputs.failures.map { ($0.key.rawValue, $0.value) }),
                           videos: runs.added, videosWithEmbedding: runs.withEmbedding,
                           firstWithoutEmbedding: runs.firstWithoutEmbedding)
        AtomicFile.syncDirectory(dir)
        try write(summary, partSummary(stage, part))
        return summary
    }

    /// Every part's summary, checked to belong to one build.
    static func parts(stage: String, model: IndexModel) throws -> [Part] {
        let first = partSummary(stage, 0)
        guard FileManager.default.fileExists(atPath: first) else {
            throw IndexError(path: stage, "part 0 is not staged (\(first) is missing): run the partition step first")
        }
        let p0 = try read(Part.self, first)
        var all = [p0]
        for k in 1..<max(1, p0.parts) {
            let path = partSummary(stage, k)
            guard FileManager.default.fileExists(atPath: path) else {
                throw IndexError(path: stage, "part \(k) of \(p0.parts) is not staged (\(path) is missing): its partition task has not finished")
            }
            all.append(try read(Part.self, path))
        }
        for p in all where p.parts != p0.parts || p.shards != p0.shards || p.codesListSHA256 != p0.codesListSHA256
            || p.bundleFingerprint != p0.bundleFingerprint || p.embeddings != p0.embeddings {
            throw IndexError(path: partSummary(stage, p.part), "was staged for other inputs or settings than part 0; use a fresh stage directory per build")
        }
        guard p0.bundleFingerprint == model.bundleFingerprint else {
            throw IndexError(path: stage, "staged with bundle \(p0.bundleFingerprint), but the bundle given is \(model.bundleFingerprint)")
        }
        return all
    }

    /// Step 2: shard `shard` from every part's run for it (duplicates and collisions
    /// checked across parts), written as `base-SSSS.vidx` with its record.
    /// - Throws: `IndexError` when a part is missing, the parts disagree, or the entries
    ///   conflict; a write failure.
    @discardableResult
    public static func buildShard(stage: String, shard: Int, model: IndexModel) throws -> IndexManifest.ShardRecord {
        let parts = try parts(stage: stage, model: model)
        let p0 = parts[0]
        guard shard >= 0, shard < p0.shards else {
            throw IndexError(path: stage, "shard \(shard): the stage has shards 0 to \(p0.shards - 1)")
        }
        if FileManager.default.fileExists(atPath: shardSummary(stage, shard)) {
            let done = try read(Built.self, shardSummary(stage, shard))
            if done.codesListSHA256 == p0.codesListSHA256 && done.parts == p0.parts { return done.record }
        }
        let withEmbedding = parts.reduce(0) { $0 + $1.videosWithEmbedding }
        let videos = parts.reduce(0) { $0 + $1.videos }
        if withEmbedding > 0 && withEmbedding != videos, let bad = parts.compactMap(\.firstWithoutEmbedding).first {
            throw IndexError(path: stage, "video '\(bad)' has no coarse embedding of \(model.layout.dimension) values, but others do: store embeddings for all videos or none")
        }
        var entries: [IndexEntry] = []
        for p in parts {
            let runs = try ShardRuns(directory: partDirectory(stage, p.part), count: p0.shards, dimension: model.layout.dimension)
            entries += try runs.take(shard, remove: false)
        }
        let unique = try IndexBuilder.deduplicate(entries, path: stage)
        entries = []
        let record = try IndexBuilder.writeShard(unique, tombstones: [], model: model, shard: shard, of: p0.shards,
                                                 kind: .base, sequence: 0, embeddings: withEmbedding > 0, into: stage)
        try write(Built(parts: p0.parts, bundleFingerprint: model.bundleFingerprint, codesListSHA256: p0.codesListSHA256,
                        record: record), shardSummary(stage, shard))
        return record
    }

    /// How far a stage got, for a driver deciding whether to publish it.
    public struct Status: Sendable, Equatable {
        public var parts: Int
        public var shards: Int
        public var codesListSHA256: String
        public var embeddings: Bool
        /// Parts and shards whose summary is not written yet.
        public var missingParts: [Int]
        public var missingShards: [Int]
    }

    /// The stage's settings (from part 0's summary) and its unfinished steps.
    /// - Throws: `IndexError` when part 0 is not staged or its summary is unreadable.
    public static func status(stage: String) throws -> Status {
        let first = partSummary(stage, 0)
        guard FileManager.default.fileExists(atPath: first) else {
            throw IndexError(path: stage, "part 0 is not staged (\(first) is missing)")
        }
        let p0 = try read(Part.self, first)
        let fm = FileManager.default
        return Status(parts: p0.parts, shards: p0.shards, codesListSHA256: p0.codesListSHA256, embeddings: p0.embeddings,
                      missingParts: (0..<p0.parts).filter { !fm.fileExists(atPath: partSummary(stage, $0)) },
                      missingShards: (0..<p0.shards).filter { !fm.fileExists(atPath: shardSummary(stage, $0)) })
    }

    /// Step 3: publishes the staged shards as a new generation of `index` (its lock, the
    /// leftovers rule, the safety checks and `policy.verify` as a build), linking the
    /// shard files in (copying them when the stage is on another file system).
    /// - Returns: the result, and the inputs as `IndexJob` reports them.
    /// - Throws: `PublishRefusal` (an unreadable input without `allowMissingInputs`, no
    ///   video, too many dropped), `IndexError` for a missing or damaged step.
    public static func publish(index: String, stage: String, model: IndexModel, allowMissingInputs: Bool,
                               policy: PublishPolicy, tool: IndexManifest.Tool,
                               note: @escaping (String) -> Void = { _ in }) throws -> IndexJob.Outcome {
        let parts = try parts(stage: stage, model: model)
        let p0 = parts[0]
        var inputs = IndexInputs()
        for p in parts {
            inputs.inputs += p.inputs
            inputs.unreadable += p.unreadable.map { ($0.path, $0.problem) }
            inputs.videos += p.videos
            for (name, n) in p.failures { inputs.failures[FailureClass(rawValue: name) ?? .internal, default: 0] += n }
        }
        for u in inputs.unreadable { note("\(u.path): \(u.problem)") }
        let total = inputs.inputs.count + inputs.unreadable.count
        try inputs.checkUsable(index: index, of: total, allowMissing: allowMissingInputs, build: true)
        var records: [IndexManifest.ShardRecord] = []
        for s in 0..<p0.shards {
            let path = shardSummary(stage, s)
            guard FileManager.default.fileExists(atPath: path) else {
                throw IndexError(path: stage, "shard \(s) of \(p0.shards) is not built (\(path) is missing): its task has not finished")
            }
            let built = try read(Built.self, path)
            guard built.codesListSHA256 == p0.codesListSHA256, built.record.shardIndex == s, built.record.shardCount == p0.shards else {
                throw IndexError(path: path, "was built for other inputs or settings than the parts; use a fresh stage directory per build")
            }
            let size = (try? FileManager.default.attributesOfItem(atPath: shardFile(stage, s))[.size] as? Int) ?? -1
            guard size == built.record.bytes else {
                throw IndexError(path: shardFile(stage, s), "is \(size < 0 ? "missing" : "\(size) bytes"), its record says \(built.record.bytes): build the shard again")
            }
            records.append(built.record)
        }
        let result = try IndexBuilder.withLock(index, note: note) { live -> PublishResult in
            let parent = try IndexBuilder.openParent(index: index, live: live, policy: policy)
            return try IndexBuilder.Draft.run(index: index, parent: live) { draft in
                for (s, record) in records.enumerated() {
                    try IndexBuilder.linkOrCopy(shardFile(stage, s), to: draft.directory + "/" + record.file)
                }
                return try IndexBuilder.finishBuild(draft, parent: parent, records: records, model: model,
                                                    inputs: inputs.inputs, policy: policy, tool: tool)
            }
        }
        return IndexJob.Outcome(result: result, inputs: inputs)
    }
}
