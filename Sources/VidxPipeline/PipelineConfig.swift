import Foundation
import VidxCore
import VidxHCQ
import VidxExtract

/// A pipeline configuration (`Pipelines/NAME.json`, Schemas/pipeline-config.schema.json).
///
/// Every field is optional in the file; a missing one takes the default documented here
/// and in the schema. Unknown fields are refused, so a typo never silently means "default".
public struct PipelineConfig: Codable, Sendable, Equatable {
    /// Videos per work unit (the unit of resumption, of `make -j` and of a Slurm array task).
    public var unitSize = 32
    /// Base shards of a fresh build (appends and compactions keep the live count).
    public var shards = 8
    /// Videos one unit's extract process works on at once (`vidx-extract --workers`).
    public var extractWorkers = 1
    /// Frames per CNN batch (`vidx-extract --batch`).
    public var cnnBatch = 16
    /// Videos per encoder batch (`vidx-encode --batch`).
    public var encodeBatch = 16
    /// Per-video wall-clock limit in seconds (0: none), `vidx-extract --timeout`.
    public var timeoutSeconds: Double = 600
    /// Refuse videos over this many pixels a frame (0: no limit).
    public var maxPixels = 8192 * 4352
    /// Refuse videos longer than this many seconds (0: no limit).
    public var maxDurationSeconds: Double = 6 * 3600
    /// How many runs may try a video that failed for a transient reason (`unreadable`,
    /// `timed_out`) before it stays quarantined until its file changes or it is released.
    public var maxAttempts = 3
    /// How many times a unit is run again without the videos that crashed its extract
    /// process before the unit itself fails.
    public var maxCrashRetries = 4
    /// A video whose content is already indexed (or planned) under another id: `index`
    /// it under its own id too, or `skip` it. Either way the plan reports it.
    public var duplicates: DuplicatePolicy = .index
    /// File name extensions a directory scan takes as videos (lowercase, with the dot).
    public var extensions = PipelineConfig.defaultExtensions
    /// Also take files with other extensions when FFmpeg recognises them as media with
    /// a video stream (slower: every such file is opened).
    public var probeUnknownExtensions = false
    /// Store float16 coarse embeddings in the shards (exact re-ranking).
    public var embeddings = false
    /// The largest share of the live videos a publication may drop (`vidx-shard --max-shrink`).
    public var maxShrink = 0.10
    /// Compact after an append when the live generation has more delta shards than this.
    public var compactAfterDeltaShards = 64
    /// Compact after an append when more than this share of the generation's entries are
    /// superseded or deleted.
    public var compactAfterDeadShare = 0.25

    /// How `vidx-pipeline slurm` submits the units to Slurm (Pipelines/slurm/README.md).
    public var slurm = Slurm()

    public enum DuplicatePolicy: String, Codable, Sendable, CaseIterable {
        case index, skip
    }

    /// Slurm resources and limits; nothing assumes GPUs.
    public struct Slurm: Codable, Sendable, Equatable {
        /// `--partition` of every job (empty: the cluster's default partition).
        public var partition = ""
        /// `--account` of every job (empty: the submitter's default).
        public var account = ""
        /// `--time` of one unit task (Slurm's format: MM, HH:MM:SS, D-HH:MM:SS).
        public var timeLimit = "02:00:00"
        /// `--cpus-per-task` of a unit task.
        public var cpusPerTask = 2
        /// `--mem` of a unit task, in MB.
        public var memoryMB = 4096
        /// The most unit tasks running at once (`--array=...%C`).
        public var arrayCap = 64
        /// Rounds of resubmission of the units whose outputs are missing or invalid after
        /// the array ended, before the finalize job publishes what finished.
        public var maxRounds = 2
        /// `--time` of the finalize job (it publishes).
        public var finalizeTimeLimit = "01:00:00"
        /// `--mem` of the finalize job, in MB (also of each staged-build task).
        public var finalizeMemoryMB = 8192
        /// 0: the finalize job builds a fresh generation itself. P > 0: it submits the
        /// build as array tasks instead (P tasks reading the codes files, one task per
        /// shard) and a finalize job after them that publishes their shards. Appends are
        /// always published by the finalize job.
        public var shardParts = 0

        public init() {}

        enum CodingKeys: String, CodingKey, CaseIterable {
            case partition, account, timeLimit = "time_limit", cpusPerTask = "cpus_per_task", memoryMB = "memory_mb"
            case arrayCap = "array_cap", maxRounds = "max_rounds", finalizeTimeLimit = "finalize_time_limit"
            case finalizeMemoryMB = "finalize_memory_mb", shardParts = "shard_parts"
        }

        public init(from decoder: Decoder) throws {
            try StrictDecoding.checkKeys(decoder, allowed: Set(CodingKeys.allCases.map(\.rawValue)))
            let c = try decoder.container(keyedBy: CodingKeys.self)
            let d = Slurm()
            partition = try c.decodeIfPresent(String.self, forKey: .partition) ?? d.partition
            account = try c.decodeIfPresent(String.self, forKey: .account) ?? d.account
            timeLimit = try c.decodeIfPresent(String.self, forKey: .timeLimit) ?? d.timeLimit
            cpusPerTask = try c.decodeIfPresent(Int.self, forKey: .cpusPerTask) ?? d.cpusPerTask
            memoryMB = try c.decodeIfPresent(Int.self, forKey: .memoryMB) ?? d.memoryMB
            arrayCap = try c.decodeIfPresent(Int.self, forKey: .arrayCap) ?? d.arrayCap
            maxRounds = try c.decodeIfPresent(Int.self, forKey: .maxRounds) ?? d.maxRounds
            finalizeTimeLimit = try c.decodeIfPresent(String.self, forKey: .finalizeTimeLimit) ?? d.finalizeTimeLimit
            finalizeMemoryMB = try c.decodeIfPresent(Int.self, forKey: .finalizeMemoryMB) ?? d.finalizeMemoryMB
            shardParts = try c.decodeIfPresent(Int.self, forKey: .shardParts) ?? d.shardParts
        }

        /// What is wrong with the values, or nil.
        var problem: String? {
            func outside(_ name: String, _ v: Int, _ r: ClosedRange<Int>) -> String? {
                r.contains(v) ? nil : "slurm.\(name) must be between \(r.lowerBound) and \(r.upperBound), not \(v)"
            }
            if let p = [outside("cpus_per_task", cpusPerTask, 1...1024), outside("memory_mb", memoryMB, 1...16_777_216),
                        outside("array_cap", arrayCap, 1...100_000), outside("max_rounds", maxRounds, 0...100),
                        outside("finalize_memory_mb", finalizeMemoryMB, 1...16_777_216),
                        outside("shard_parts", shardParts, 0...100_000)].compactMap({ $0 }).first { return p }
            for (name, v) in [("time_limit", timeLimit), ("finalize_time_limit", finalizeTimeLimit)]
            where v.range(of: #"^([0-9]+-)?[0-9]+(:[0-9]{2}){0,2}$"#, options: .regularExpression) == nil {
                return "slurm.\(name) '\(v)' is not a Slurm time (MM, HH:MM:SS or D-HH:MM:SS)"
            }
            for (name, v) in [("partition", partition), ("account", account)]
            where v.contains(where: { $0 == " " || $0 == "," || $0 == "\n" || $0 == "'" || $0 == "\"" }) {
                return "slurm.\(name) '\(v)' holds a space, comma or quote"
            }
            return nil
        }
    }

    public static let defaultExtensions = [".3gp", ".avi", ".flv", ".m2ts", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg",
                                           ".mpg", ".mts", ".ogv", ".ts", ".webm", ".wmv"]

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case unitSize = "unit_size", shards, extractWorkers = "extract_workers", cnnBatch = "cnn_batch"
        case encodeBatch = "encode_batch", timeoutSeconds = "timeout_seconds", maxPixels = "max_pixels"
        case maxDurationSeconds = "max_duration_seconds", maxAttempts = "max_attempts"
        case maxCrashRetries = "max_crash_retries", duplicates, extensions
        case probeUnknownExtensions = "probe_unknown_extensions", embeddings, maxShrink = "max_shrink"
        case compactAfterDeltaShards = "compact_after_delta_shards", compactAfterDeadShare = "compact_after_dead_share"
        case slurm
    }

    public init(from decoder: Decoder) throws {
        try StrictDecoding.checkKeys(decoder, allowed: Set(CodingKeys.allCases.map(\.rawValue)))
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = PipelineConfig()
        unitSize = try c.decodeIfPresent(Int.self, forKey: .unitSize) ?? d.unitSize
        shards = try c.decodeIfPresent(Int.self, forKey: .shards) ?? d.shards
        extractWorkers = try c.decodeIfPresent(Int.self, forKey: .extractWorkers) ?? d.extractWorkers
        cnnBatch = try c.decodeIfPresent(Int.self, forKey: .cnnBatch) ?? d.cnnBatch
        encodeBatch = try c.decodeIfPresent(Int.self, forKey: .encodeBatch) ?? d.encodeBatch
        timeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .timeoutSeconds) ?? d.timeoutSeconds
        maxPixels = try c.decodeIfPresent(Int.self, forKey: .maxPixels) ?? d.maxPixels
        maxDurationSeconds = try c.decodeIfPresent(Double.self, forKey: .maxDurationSeconds) ?? d.maxDurationSeconds
        maxAttempts = try c.decodeIfPresent(Int.self, forKey: .maxAttempts) ?? d.maxAttempts
        maxCrashRetries = try c.decodeIfPresent(Int.self, forKey: .maxCrashRetries) ?? d.maxCrashRetries
        duplicates = try c.decodeIfPresent(DuplicatePolicy.self, forKey: .duplicates) ?? d.duplicates
        extensions = try c.decodeIfPresent([String].self, forKey: .extensions) ?? d.extensions
        probeUnknownExtensions = try c.decodeIfPresent(Bool.self, forKey: .probeUnknownExtensions) ?? d.probeUnknownExtensions
        embeddings = try c.decodeIfPresent(Bool.self, forKey: .embeddings) ?? d.embeddings
        maxShrink = try c.decodeIfPresent(Double.self, forKey: .maxShrink) ?? d.maxShrink
        compactAfterDeltaShards = try c.decodeIfPresent(Int.self, forKey: .compactAfterDeltaShards) ?? d.compactAfterDeltaShards
        compactAfterDeadShare = try c.decodeIfPresent(Double.self, forKey: .compactAfterDeadShare) ?? d.compactAfterDeadShare
        slurm = try c.decodeIfPresent(Slurm.self, forKey: .slurm) ?? d.slurm
        if let problem = self.problem { throw StrictDecoding.Violation(problem) }
    }

    /// What is wrong with the values (the schema's ranges), or nil.
    public var problem: String? {
        func outside<T: Comparable>(_ name: String, _ v: T, _ r: ClosedRange<T>) -> String? {
            r.contains(v) ? nil : "\(name) must be between \(r.lowerBound) and \(r.upperBound), not \(v)"
        }
        let checks: [String?] = [
            outside("unit_size", unitSize, 1...100_000), outside("shards", shards, 1...9999),
            outside("extract_workers", extractWorkers, 1...64), outside("cnn_batch", cnnBatch, 1...1024),
            outside("encode_batch", encodeBatch, 1...4096), outside("timeout_seconds", timeoutSeconds, 0...86_400 * 7),
            outside("max_pixels", maxPixels, 0...Int(Int32.max)), outside("max_duration_seconds", maxDurationSeconds, 0...86_400 * 365),
            outside("max_attempts", maxAttempts, 1...1000), outside("max_crash_retries", maxCrashRetries, 0...1000),
            outside("max_shrink", maxShrink, 0...1), outside("compact_after_delta_shards", compactAfterDeltaShards, 1...1_000_000),
            outside("compact_after_dead_share", compactAfterDeadShare, 0...1),
        ]
        if let first = checks.compactMap({ $0 }).first { return first }
        if let p = slurm.problem { return p }
        if let bad = extensions.first(where: { !$0.hasPrefix(".") || $0.count < 2 || $0 != $0.lowercased() }) {
            return "extensions: '\(bad)' must be a lowercase extension with its dot, such as .mp4"
        }
        return nil
    }

    /// Reads a configuration file; nil `path` gives the defaults.
    /// - Throws: `StageFileError` naming the file and the field.
    public static func load(path: String?) throws -> PipelineConfig {
        guard let path else { return PipelineConfig() }
        let data: Data
        do { data = try InputFiles.read(path, maxBytes: 1 << 20) } catch {
            throw StageFileError(path: path, message: "cannot read the pipeline configuration: \(error)")
        }
        do { return try JSONDecoder().decode(PipelineConfig.self, from: data) } catch let v as StrictDecoding.Violation {
            throw StageFileError(path: path, message: "not a pipeline configuration (Schemas/pipeline-config.schema.json): \(v)")
        } catch {
            throw StageFileError(path: path, message: "not a pipeline configuration (Schemas/pipeline-config.schema.json): \(describeDecodingError(error))")
        }
    }

    /// The settings that change what the extract stage writes for a video: part of every
    /// unit's name, so that changing one makes new units instead of reusing old features.
    public var extractionKey: String {
        let sampling = "fps=\(ExtractSampling.framesPerSecond),size=\(ExtractSampling.frameSize),audio=\(ExtractSampling.audioSampleRate)"
        return "extract-v1;\(sampling);timeout=\(timeoutSeconds);max_pixels=\(maxPixels);max_duration=\(maxDurationSeconds);embeddings=\(embeddings)"
    }

    /// What a unit's features depend on besides its videos: the extraction settings and,
    /// per expert of `experts` (name, extractor id, width, timing), how its features are
    /// made. Two bundles with the same key can share features: a unit's features made
    /// with one are re-encoded with the other, decoding nothing (`Planner`, `UnitRunner`).
    public func featuresKey(experts: [(name: String, extractor: String, width: Int, timing: String)]) -> String {
        let list = experts.sorted { $0.name < $1.name }.map { "\($0.name)=\($0.extractor);\($0.width);\($0.timing)" }
        return SHA256Digest.hex(Array("features-v1\n\(extractionKey)\n\(list.joined(separator: "\n"))".utf8))
    }

    /// The SHA-256 of the settings that change what a unit writes: the extraction settings
    /// and the batch sizes (which can change the last bits of features and embeddings on
    /// some CPUs). Unit records carry it as `config_sha256`; a unit made with other such
    /// settings is redone, while the rest (unit size, shards, limits on retries, thresholds,
    /// Slurm resources) can change without redoing anything.
    public var unitSettingsSha256: String {
        SHA256Digest.hex(Array("unit-v1\n\(extractionKey)\ncnn_batch=\(cnnBatch);encode_batch=\(encodeBatch)".utf8))
    }

    /// `featuresKey` of `bundle`'s experts.
    public func featuresKey(bundle: ModelBundle) -> String {
        featuresKey(experts: bundle.config.experts.map { ($0.name, $0.extractor, $0.width, $0.timing.rawValue) })
    }

    /// The configuration as canonical JSON (sorted keys, every field): what outputs record.
    public var canonicalJSON: Data {
        (try? makeJSONEncoder().encode(self)) ?? Data()
    }

    public var sha256: String { SHA256Digest.hex(Array(canonicalJSON)) }
}

/// A decoding error as one readable line (the coding path and what was wrong).
public func describeDecodingError(_ error: Error) -> String {
    guard let e = error as? DecodingError else { return "\(error)" }
    func path(_ c: [CodingKey]) -> String { c.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".") }
    switch e {
    case .typeMismatch(let t, let ctx): return "\(path(ctx.codingPath)): expected \(t)"
    case .valueNotFound(let t, let ctx): return "\(path(ctx.codingPath)): expected \(t), found null"
    case .keyNotFound(let k, let ctx): return "\(path(ctx.codingPath + [k])): missing"
    case .dataCorrupted(let ctx):
        if let v = ctx.underlyingError as? StrictDecoding.Violation { return "\(path(ctx.codingPath)): \(v)" }
        return ctx.codingPath.isEmpty ? "not valid JSON" : "\(path(ctx.codingPath)): \(ctx.debugDescription)"
    @unknown default: return "\(error)"
    }
}
