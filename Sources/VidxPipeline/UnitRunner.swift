import Foundation
import VidxCore
import VidxExtract
import VidxHCQ

/// Runs one work unit: extract (in a child `vidx-extract`, so that a video that crashes
/// FFmpeg or an expert takes down only that process), then encode (in-process), then the
/// unit record, last. What `vidx-pipeline unit` and each Make rule and Slurm task run.
///
/// A unit whose videos partly fail succeeds: failures are data, in the outputs. The unit
/// itself fails (throws) only when the infrastructure does: the bundle or the tools
/// cannot be used, an output cannot be written, the extract process is killed from
/// outside (SIGKILL, SIGTERM, SIGINT: an interrupted run, redone next time), or videos keep
/// crashing it past `max_crash_retries`.
///
/// Crash isolation: when the extract process dies of a fault signal (SIGSEGV, SIGBUS,
/// SIGILL, SIGFPE, SIGABRT, SIGTRAP), its journal (`UnitJournal`) names the videos in
/// flight. One in flight: that video is recorded `crashed` and the unit is run again
/// without it. Several (extract_workers > 1): the unit is run again one video at a time,
/// which pins the culprit on the next crash.
public struct UnitRunner: Sendable {
    public let work: WorkLayout
    public let bundleDirectory: String
    public let config: PipelineConfig
    /// The directory holding `vidx-extract` (`PipelineTools.directory()` by default).
    public let toolDirectory: String
    /// The appearance CNN's weights; nil lets `vidx-extract` look for them.
    public let cnnWeights: String?

    public init(work: WorkLayout, bundleDirectory: String, config: PipelineConfig,
                toolDirectory: String = PipelineTools.directory(), cnnWeights: String? = nil) {
        self.work = work
        self.bundleDirectory = bundleDirectory
        self.config = config
        self.toolDirectory = toolDirectory
        self.cnnWeights = cnnWeights
    }

    /// Whether the unit was already done (nothing run) or what the run recorded.
    public enum Outcome: Sendable {
        case alreadyDone(UnitRecord)
        case ran(UnitRecord)
        public var record: UnitRecord {
            switch self { case .alreadyDone(let r), .ran(let r): return r }
        }
    }

    /// Runs unit `u` unless it is done already.
    /// - Parameters:
    ///   - featuresFrom: an earlier unit with the same videos whose features were made with
    ///     the same features key (the plan's `features_from`): they are linked in and
    ///     re-encoded, decoding nothing, when that unit's outputs still match its record;
    ///     otherwise the unit extracts as usual.
    ///   - note: receives progress and per-video failure lines.
    /// - Throws: `UnitFailure` (the infrastructure failed; nothing is left that looks done).
    public func run(_ u: String, featuresFrom: String? = nil, note: @escaping @Sendable (String) -> Void = { _ in }) throws -> Outcome {
        guard WorkLayout.isUnitName(u) else { throw UnitFailure(unit: u, "not a unit name (u and 24 hex digits)") }
        let bundle: ModelBundle
        do { bundle = try ModelBundle(directory: bundleDirectory) } catch {
            throw UnitFailure(unit: u, "the bundle cannot be used: \(error)")
        }
        if case .success(let record) = UnitRecord.verified(u, in: work, bundleFingerprint: bundle.fingerprint,
                                                             configSha256: config.unitSettingsSha256) {
            return .alreadyDone(record)
        }
        clean(u)
        let videos: [UnitVideo]
        do { videos = try UnitVideo.readUnit(path: work.unitVideos(u)) } catch {
            throw UnitFailure(unit: u, "\(error)")
        }

        let featuresKey = config.featuresKey(bundle: bundle)
        let reused = featuresFrom.flatMap { reuseFeatures(from: $0, into: u, featuresKey: featuresKey, note: note) } ?? false

        // Extract, in a child process, isolating videos that crash it.
        let extractStart = Date()
        var remaining = videos
        var crashed: [UnitRecord.Crashed] = []
        var workers = config.extractWorkers
        var attempts = 0
        extraction: while !remaining.isEmpty && !reused {
            let list = remaining.count == videos.count ? work.unitVideos(u) : work.retryVideos(u)
            if list == work.retryVideos(u) { try writeUnit(remaining, to: list, unit: u) }
            let status = try runExtract(unit: list, workers: workers, u: u)
            switch status {
            case .exited(0), .exited(StageExit.someFailed):
                break extraction
            case .exited(let code):
                throw UnitFailure(unit: u, "vidx-extract exited with status \(code) (see its message above)")
            case .signalled(let sig) where !Self.faultSignals.contains(sig):
                throw UnitFailure(unit: u, "vidx-extract was killed by signal \(sig) (\(Self.signalName(sig))): interrupted, the unit is redone by the next run")
            case .signalled(let sig):
                attempts += 1
                let inFlight = UnitJournal.inFlight(journal: work.journal(u)).filter { $0 < remaining.count }
                if inFlight.isEmpty {
                    throw UnitFailure(unit: u, "vidx-extract crashed (signal \(sig), \(Self.signalName(sig))) outside any video: not a video's fault")
                }
                guard attempts <= config.maxCrashRetries else {
                    throw UnitFailure(unit: u, "vidx-extract crashed \(attempts) times (max_crash_retries \(config.maxCrashRetries)); giving up on the unit")
                }
                if inFlight.count > 1 && workers > 1 {
                    note("unit \(u): vidx-extract crashed (signal \(sig)) with \(inFlight.count) videos in flight; running the unit again one video at a time to find which")
                    workers = 1
                    continue
                }
                for i in inFlight.sorted(by: >) {
                    let v = remaining.remove(at: i)
                    let message = "the video crashed vidx-extract (signal \(sig), \(Self.signalName(sig))); the unit was run again without it"
                    note("\(v.id) (\(v.path)): crashed: \(message)")
                    crashed.append(.init(id: v.id, path: v.path, contentHash: v.contentHash ?? "", message: message))
                }
            }
        }
        let extractSeconds = reused ? 0 : Date().timeIntervalSince(extractStart)

        // Encode in-process, then the record, last.
        var features: UnitRecord.Output? = nil, stats: UnitRecord.Output? = nil, codes: UnitRecord.Output? = nil
        var counts = UnitRecord.Counts(videos: videos.count, ok: 0, partial: 0, failed: crashed.count)
        var frames = 0, audio = 0.0
        var encodeSeconds = 0.0
        do {
            if !remaining.isEmpty {
                let encoder = UnitEncoder(bundle: bundle, batchSize: config.encodeBatch, keepEmbeddings: config.embeddings)
                let outcome = try encoder.encode(features: work.features(u), to: work.codes(u), warn: note)
                encodeSeconds = outcome.seconds
                for r in outcome.records {
                    switch r.status {
                    case .ok: counts.ok += 1
                    case .partial: counts.partial += 1
                    case .failed: counts.failed += 1
                    }
                }
                if !reused {  // decoded by this unit (a reused unit decoded nothing)
                    let perVideo = try JSONDecoder().decode([ExtractStatsLine].self, from: try InputFiles.read(work.stats(u)))
                    frames = perVideo.reduce(0) { $0 + $1.frames }
                    audio = perVideo.reduce(0) { $0 + $1.audioSeconds }
                }
                features = try UnitRecord.output(work.features(u))
                stats = try UnitRecord.output(work.stats(u))
                codes = try UnitRecord.output(work.codes(u))
            }
            let record = UnitRecord(unit: u, bundleFingerprint: bundle.fingerprint, configSha256: config.unitSettingsSha256,
                                    features: features, stats: stats, codes: codes, crashed: crashed,
                                    featuresKey: featuresKey, featuresFrom: reused ? featuresFrom : nil, counts: counts,
                                    frames: frames, audioSeconds: audio,
                                    seconds: .init(extract: extractSeconds, encode: encodeSeconds))
            try AtomicFile.write(try makeJSONEncoder(pretty: true).encode(record), to: work.record(u))
            unlink(work.journal(u))
            return .ran(record)
        } catch let e as UnitFailure {
            throw e
        } catch {
            throw UnitFailure(unit: u, "\(error)")
        }
    }

    /// Gives unit `u` the features and stats of unit `source` for `u`'s videos, when
    /// `source`'s record verifies, was made with `featuresKey`, and its features hold every
    /// video of `u` with the same content: hard links (or copies) when `u` has exactly
    /// `source`'s videos, else new files holding `u`'s videos only. Returns false (and says
    /// why) when they cannot be used: the unit then extracts.
    func reuseFeatures(from source: String, into u: String, featuresKey: String, note: (String) -> Void) -> Bool {
        guard WorkLayout.isUnitName(source), source != u else { return false }
        let record: UnitRecord
        switch UnitRecord.verified(source, in: work, bundleFingerprint: nil, configSha256: nil) {
        case .success(let r): record = r
        case .failure(let why):
            note("unit \(u): cannot re-encode the features of \(source) (\(why.reason)); extracting instead")
            return false
        }
        do {
            guard record.featuresKey == featuresKey, record.features != nil, record.stats != nil else {
                throw UnitFailure(unit: source, "its features were made with other experts, extractors or extraction settings")
            }
            let mine = try UnitVideo.readUnit(path: work.unitVideos(u))
            let file = try FeaturesFile(path: work.features(source))
            var index: [ExternalID: Int] = [:]
            for (i, v) in file.videos.enumerated() { index[ExternalID(v.id)] = i }
            let rows = try mine.map { m -> Int in
                guard let i = index[ExternalID(m.id)], file.videos[i].contentHash == (m.contentHash ?? "") else {
                    throw UnitFailure(unit: source, "its features do not hold \(m.id) with that content")
                }
                return i
            }
            for f in [work.features(u), work.stats(u)] { unlink(f) }
            if rows == Array(file.videos.indices) {
                for (from, to) in [(work.features(source), work.features(u)), (work.stats(source), work.stats(u))] {
                    if link(from, to) != 0 { try AtomicFile.write(try InputFiles.read(from, maxBytes: 1 << 40), to: to) }
                }
            } else {
                var writer = FeaturesWriter(bundleFingerprint: file.bundleFingerprint, extractors: file.extractors)
                for i in rows { writer.add(file.videos[i], experts: try file.experts(of: i)) }
                let stats = try JSONSerialization.jsonObject(with: try InputFiles.read(work.stats(source), maxBytes: 1 << 30))
                guard let lines = stats as? [[String: Any]] else { throw UnitFailure(unit: source, "its stats file is not a list") }
                var byID: [String: [String: Any]] = [:]
                for line in lines { if let id = line["id"] as? String { byID[id] = line } }
                let subset = mine.compactMap { byID[$0.id] }
                guard subset.count == mine.count else { throw UnitFailure(unit: source, "its stats file does not hold every video") }
                let statsData = try JSONSerialization.data(withJSONObject: subset, options: [.sortedKeys, .withoutEscapingSlashes])
                // Stats last, as vidx-extract writes them: their presence means the features are complete.
                try writer.write(to: work.features(u))
                try AtomicFile.write(statsData, to: work.stats(u))
            }
            AtomicFile.syncDirectory(work.units)
        } catch {
            for f in [work.features(u), work.stats(u)] { unlink(f) }
            note("unit \(u): cannot re-encode the features of \(source) (\(error)); extracting instead")
            return false
        }
        return true
    }

    /// The per-video fields of `UNIT.stats.json` the record sums.
    struct ExtractStatsLine: Decodable {
        let frames: Int
        let audioSeconds: Double
        enum CodingKeys: String, CodingKey { case frames, audioSeconds = "audio_seconds" }
    }

    /// Removes everything an earlier attempt at unit `u` left: outputs, record, journal,
    /// retry list and the unit's temporary names (the unit's list itself stays).
    public func clean(_ u: String) {
        for f in work.unitFiles(u) { unlink(f) }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: work.units)) ?? []
        where AtomicFile.isTemporaryName(name) && name.hasPrefix(".\(u).") {
            unlink(work.units + "/" + name)
        }
    }

    private func writeUnit(_ videos: [UnitVideo], to path: String, unit u: String) throws {
        var data = Data()
        let encoder = makeJSONEncoder()
        for v in videos {
            data.append(try encoder.encode(v))
            data.append(0x0A)
        }
        do { try AtomicFile.write(data, to: path) } catch { throw UnitFailure(unit: u, "\(error)") }
    }

    enum ChildStatus: Equatable {
        case exited(Int32)
        case signalled(Int32)
    }

    /// Runs vidx-extract on `unit` (inheriting stdout and stderr) and returns how it ended.
    private func runExtract(unit: String, workers: Int, u: String) throws -> ChildStatus {
        var args = ["--bundle", bundleDirectory, "--unit", unit, "--out", work.features(u),
                    "--workers", "\(workers)", "--batch", "\(config.cnnBatch)",
                    "--timeout", "\(config.timeoutSeconds)", "--max-pixels", "\(config.maxPixels)",
                    "--max-duration", "\(config.maxDurationSeconds)", "--journal", work.journal(u)]
        if let cnnWeights { args += ["--cnn", cnnWeights] }
        let p = Process()
        let launcher = PipelineTools.launcher()
        let tool = toolDirectory + "/vidx-extract"
        p.executableURL = URL(fileURLWithPath: launcher.isEmpty ? tool : "/usr/bin/env")
        p.arguments = launcher.isEmpty ? args : launcher + [tool] + args
        do { try p.run() } catch { throw UnitFailure(unit: u, "cannot start \(tool): \(error)") }
        p.waitUntilExit()
        return p.terminationReason == .uncaughtSignal ? .signalled(p.terminationStatus) : .exited(p.terminationStatus)
    }

    /// The signals of a fault inside the process (a crash), as opposed to a kill from outside.
    static let faultSignals: Set<Int32> = [SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP]

    static func signalName(_ sig: Int32) -> String {
        let names: [Int32: String] = [SIGSEGV: "SIGSEGV", SIGBUS: "SIGBUS", SIGILL: "SIGILL", SIGFPE: "SIGFPE",
                                      SIGABRT: "SIGABRT", SIGTRAP: "SIGTRAP", SIGKILL: "SIGKILL", SIGTERM: "SIGTERM",
                                      SIGINT: "SIGINT", SIGHUP: "SIGHUP"]
        return names[sig] ?? "signal \(sig)"
    }
}

/// A unit that could not be run for an infrastructure reason.
public struct UnitFailure: Error, CustomStringConvertible, Sendable {
    public let unit: String
    public let message: String
    public init(unit: String, _ message: String) {
        self.unit = unit
        self.message = message
    }
    public var description: String { "unit \(unit): \(message)" }
}

/// Where the pipeline finds the stage executables.
public enum PipelineTools {
    /// `$VIDX_BIN` if set, else the directory of the running executable.
    public static func directory() -> String {
        if let bin = ProcessInfo.processInfo.environment["VIDX_BIN"], !bin.isEmpty { return bin }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return (WorkLayout.absolute(exe) as NSString).deletingLastPathComponent
    }

    /// `$VIDX_EXTRACT_LAUNCHER` split on spaces: a command prefix for the extract process
    /// (`nice -n 10`, `taskset -c 1`, a debugger, or a fault injector in the tests).
    public static func launcher() -> [String] {
        (ProcessInfo.processInfo.environment["VIDX_EXTRACT_LAUNCHER"] ?? "").split(separator: " ").map(String.init)
    }
}
