import Foundation
import VidxCore

/// One run's report (`WORK/RUN.json` and `WORK/runs/ID.json`, Schemas/run-report.schema.json).
public struct RunReport: Codable, Sendable {
    public static let format = "vidx-run-report"
    public static let version = 1

    public struct Units: Codable, Sendable {
        public struct Unfinished: Codable, Sendable {
            public var name: String
            /// Its line in `WORK/units.list` (0-based): the Slurm array task index.
            public var index: Int
            public var reason: String
        }
        public var planned = 0
        public var done = 0
        public var unfinished: [Unfinished] = []
    }

    public struct Videos: Codable, Sendable {
        public var ok = 0
        public var partial = 0
        public var failed = 0
        /// Failed videos per failure class.
        public var failedByClass: [String: Int] = [:]

        enum CodingKeys: String, CodingKey { case ok, partial, failed, failedByClass = "failed_by_class" }

        mutating func add(_ status: VideoStatus, class cls: FailureClass?) {
            switch status {
            case .ok: ok += 1
            case .partial: partial += 1
            case .failed:
                failed += 1
                failedByClass[(cls ?? .internal).rawValue, default: 0] += 1
            }
        }
    }

    public struct Seconds: Codable, Sendable {
        public var plan = 0.0
        /// Summed over the plan's units (whenever they ran), on their own clocks.
        public var extract = 0.0
        public var encode = 0.0
        public var publish = 0.0
        /// Wall clock from the plan's start to the report.
        public var total = 0.0
    }

    public struct Publication: Codable, Sendable {
        /// `build`, `append`, or nil when nothing was published.
        public var mode: String?
        public var generation: String?
        public var liveVideos: Int?
        /// Why the new generation was compacted (a threshold passed), or nil.
        public var compacted: String?
        /// Why nothing was published, when nothing needed to be.
        public var reason: String?
        /// The error or refusal that stopped the publication.
        public var failed: String?
        /// For a build after a staged build was submitted: true when its shards were
        /// published from the stage, false when the build ran in the finalize job instead.
        public var staged: Bool?

        enum CodingKeys: String, CodingKey {
            case mode, generation, liveVideos = "live_videos", compacted, reason, failed, staged
        }
    }

    public struct QuarantineSummary: Codable, Sendable {
        public var size = 0
        /// Entries this run added (new ids failing).
        public var added = 0
        public var byClass: [String: Int] = [:]
        enum CodingKeys: String, CodingKey { case size, added, byClass = "by_class" }
    }

    public struct Live: Codable, Sendable {
        public var generation: String
        public var videos: Int
    }

    public var format = RunReport.format
    public var formatVersion = RunReport.version
    public var runID: String
    public var started: String
    public var finished = ""
    public var mode: String
    public var index: String
    public var work: String
    public var bundleFingerprint: String
    public var configSha256: String
    public var tool = "vidx-pipeline \(VidxVersion.string)"
    public var plan: PlanFile.Counts
    public var units = Units()
    public var videos = Videos()
    public var frames = 0
    public var audioSeconds = 0.0
    public var seconds = Seconds()
    public var videosPerSecond = 0.0
    public var publication = Publication()
    public var live: Live?
    public var quarantine = QuarantineSummary()
    /// `published`, `published_with_failures`, `nothing_to_do`,
    /// `nothing_published_with_failures` or `failed`.
    public var result = "failed"
    public var exitStatus: Int32 = StageExit.failure

    enum CodingKeys: String, CodingKey {
        case format, formatVersion = "format_version", runID = "run_id", started, finished, mode, index, work
        case bundleFingerprint = "bundle_fingerprint", configSha256 = "config_sha256", tool, plan, units, videos
        case frames, audioSeconds = "audio_seconds", seconds, videosPerSecond = "videos_per_second", publication
        case live, quarantine, result, exitStatus = "exit_status"
    }

    init(plan: PlanFile, started: String) {
        let stamp = started.replacingOccurrences(of: ":", with: "").replacingOccurrences(of: "-", with: "")
        runID = "\(stamp)-\(getpid())"
        self.started = started
        mode = plan.mode
        index = plan.index
        work = plan.work
        bundleFingerprint = plan.bundle.fingerprint
        configSha256 = plan.config.sha256
        self.plan = plan.counts
        units.planned = plan.units.count
    }

    /// Writes `runs/ID.json`, then `RUN.json` (each atomically).
    func write(to work: WorkLayout) throws {
        let data = try makeJSONEncoder(pretty: true).encode(self)
        try AtomicFile.makeDirectory(work.runs)
        try AtomicFile.write(data, to: "\(work.runs)/\(runID).json")
        try AtomicFile.write(data, to: work.latestRun)
    }

    /// One line for people (and cron's mail).
    public var summaryLine: String {
        var s = "\(result): \(videos.ok + videos.partial) videos indexed (\(videos.partial) partial), \(videos.failed) failed"
        if !videos.failedByClass.isEmpty {
            s += " (" + videos.failedByClass.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + ")"
        }
        s += "; \(plan.unchanged) unchanged, \(plan.quarantined) kept out by the quarantine"
        if !units.unfinished.isEmpty { s += "; \(units.unfinished.count) of \(units.planned) units unfinished" }
        if let g = publication.generation {
            s += "; published \(g) (\(publication.mode ?? ""))\(publication.compacted != nil ? ", compacted" : "")"
        } else if let f = publication.failed {
            s += "; nothing published: \(f)"
        } else {
            s += "; nothing published (\(publication.reason ?? "nothing to do"))"
        }
        if let live { s += "; live \(live.generation) with \(live.videos) videos" }
        s += String(format: "; %.1f s", seconds.total)
        return s
    }
}
