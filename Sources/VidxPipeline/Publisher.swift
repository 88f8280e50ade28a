import Foundation
import VidxCore
import VidxExtract
import VidxHCQ
import VidxIndex

/// The finalize stage: checks every unit of the plan on disk (the files are the truth,
/// never a scheduler's word), updates the quarantine, publishes a generation from the
/// units that finished, compacts past the thresholds, and writes the run report (and the
/// metrics file). What `make index`/`make nightly` run after the units, and what a
/// Slurm finalize job runs.
///
/// Exit status (`exitStatus` of the report): 0 every planned video indexed (or nothing to
/// do); 3 published (or nothing needed publishing), but some videos failed and were
/// quarantined, or some units did not finish (their videos are planned again next run);
/// 1 nothing published: the publication failed or was refused, or no unit finished.
public struct Publisher {
    public let work: WorkLayout
    /// Where the Prometheus textfile goes (nil: none).
    public let metricsFile: String?
    /// The make status of the units step (non-zero: some unit rules failed), for the report.
    public let unitsStatus: Int32?
    /// A staged build's directory (`StagedBuild`, built by Slurm array tasks): a build
    /// publishes its shards when the stage is complete and was made from the same codes
    /// files; otherwise the build runs in this process, with a note saying why.
    public let stage: String?
    let note: (String) -> Void

    public init(work: WorkLayout, metricsFile: String? = nil, unitsStatus: Int32? = nil, stage: String? = nil,
                note: @escaping (String) -> Void = { _ in }) {
        self.work = work
        self.metricsFile = metricsFile
        self.unitsStatus = unitsStatus
        self.stage = stage
        self.note = note
    }

    /// The codes files a publication of `states` reads, in the plan's order.
    public static func codesFiles(_ states: [Result<UnitRecord, UnitNotDone>], work: WorkLayout) -> [String] {
        states.compactMap { state in
            guard case .success(let r) = state, r.codes != nil else { return nil }
            return work.codes(r.unit)
        }
    }

    /// Whether publishing `plan` builds a fresh generation (no live one, or a rebuild)
    /// rather than appending to the live one.
    public static func builds(_ plan: PlanFile) -> Bool {
        plan.mode == "rebuild" || !FileManager.default.fileExists(atPath: plan.index + "/" + IndexGeneration.currentFileName)
    }

    /// Each unit of `plan` checked on disk, in the plan's order: its verified record, or why
    /// it is not done. `hashes: false` compares sizes only (progress displays).
    public static func unitStates(plan: PlanFile, work: WorkLayout, hashes: Bool = true) -> [Result<UnitRecord, UnitNotDone>] {
        let sha = plan.config.values.unitSettingsSha256
        return plan.units.map {
            UnitRecord.verified($0.name, in: work, bundleFingerprint: plan.bundle.fingerprint, configSha256: sha, hashes: hashes)
        }
    }

    /// - Parameter checked: `unitStates` of the plan, when the caller has just computed
    ///   them (the Slurm finalize job), so the outputs are not read twice.
    public func run(checked: [Result<UnitRecord, UnitNotDone>]? = nil) throws -> RunReport {
        let publishStart = Date()
        let plan = try PlanFile.read(work)
        let config = plan.config.values
        let now = utcTimestamp()
        var report = RunReport(plan: plan, started: plan.created)

        // Units: done or not, on disk.
        var records: [UnitRecord] = []
        let states = checked?.count == plan.units.count ? checked! : Self.unitStates(plan: plan, work: work)
        for (index, unit) in plan.units.enumerated() {
            switch states[index] {
            case .success(let r): records.append(r)
            case .failure(let why):
                report.units.unfinished.append(.init(name: unit.name, index: index, reason: why.reason))
                note("\(why): not published; its videos are planned again by the next run")
            }
        }
        report.units.done = records.count

        // Videos: outcomes from the codes files, the crash lists and the plan's failures.
        var quarantine: Quarantine
        do { quarantine = try Quarantine.read(path: work.quarantine) } catch { throw PlanError("\(error)") }
        let sizeBefore = quarantine.count
        var codes: [String] = []
        for r in records {
            report.frames += r.frames
            report.audioSeconds += r.audioSeconds
            report.seconds.extract += r.seconds.extract
            report.seconds.encode += r.seconds.encode
            let members = (try? UnitVideo.readUnit(path: work.unitVideos(r.unit))) ?? []
            var paths: [ExternalID: String] = [:]
            for m in members { paths[ExternalID(m.id)] = m.path }
            for c in r.crashed {
                report.videos.add(.failed, class: .crashed)
                quarantine.recordFailure(id: c.id, path: c.path, contentHash: c.contentHash, class: .crashed, message: c.message, now: now)
            }
            guard r.codes != nil else { continue }
            let file: CodesFile
            do { file = try CodesFile(path: work.codes(r.unit)) } catch {
                throw PlanError("\(work.codes(r.unit)): verified a moment ago, now unreadable: \(error)")
            }
            codes.append(work.codes(r.unit))
            for v in file.videos {
                report.videos.add(v.status, class: v.status == .failed ? v.error?.class : nil)
                if v.status == .failed {
                    quarantine.recordFailure(id: v.id, path: paths[ExternalID(v.id)] ?? "", contentHash: v.contentHash,
                                             class: v.error?.class ?? .internal, message: v.error?.message ?? "", now: now)
                } else {
                    quarantine.remove(id: v.id)
                }
            }
        }
        if plan.failures > 0 {
            let failures = (try? InputFiles.read(work.planFailures)).map { data in
                JSONLines.lines(data).compactMap { try? JSONDecoder().decode(PlanFile.Failure.self, from: Data($0.text.utf8)) }
            } ?? []
            for f in failures {
                report.videos.add(.failed, class: f.class)
                quarantine.recordFailure(id: f.id, path: f.path, contentHash: "", class: f.class, message: f.message, now: now)
            }
        }
        report.quarantine = .init(size: quarantine.count, added: max(0, quarantine.count - sizeBefore),
                                  byClass: Dictionary(uniqueKeysWithValues: quarantine.byClass.map { ($0.key.rawValue, $0.value) }))

        // Publish.
        let publication = publish(plan: plan, config: config, codes: codes)
        report.publication = publication
        do { try quarantine.write(path: work.quarantine) } catch { throw PlanError("\(error)") }

        // Result and exit status.
        let planned = plan.units.count
        let nothingFinished = planned > 0 && records.isEmpty
        if publication.failed != nil || nothingFinished {
            report.exitStatus = StageExit.failure
            report.result = "failed"
        } else if report.videos.failed > 0 || !report.units.unfinished.isEmpty {
            report.exitStatus = StageExit.someFailed
            report.result = publication.generation == nil ? "nothing_published_with_failures" : "published_with_failures"
        } else {
            report.exitStatus = StageExit.ok
            report.result = publication.generation == nil ? "nothing_to_do" : "published"
        }
        let finished = Date()
        report.finished = utcTimestamp(finished)
        report.seconds.plan = plan.seconds
        report.seconds.publish = finished.timeIntervalSince(publishStart)
        report.seconds.total = max(0, finished.timeIntervalSince(ISO8601DateFormatter().date(from: plan.created) ?? publishStart))
        let videos = report.videos.ok + report.videos.partial + report.videos.failed
        report.videosPerSecond = report.seconds.total > 0 ? Double(videos) / report.seconds.total : 0
        if let live = try? IndexGeneration(indexDirectory: plan.index) {
            report.live = .init(generation: live.name, videos: live.counts.live)
        }
        try report.write(to: work)
        if let metricsFile {
            try PipelineMetrics.write(report: report, to: metricsFile, state: work.state)
        }
        return report
    }

    /// Builds (no live generation, or a rebuild), or appends to the live generation, then
    /// compacts when the thresholds are passed. Never throws: a failure is reported.
    func publish(plan: PlanFile, config: PipelineConfig, codes: [String]) -> RunReport.Publication {
        var out = RunReport.Publication()
        let tool = IndexManifest.Tool(name: "vidx-pipeline", version: VidxVersion.string)
        let policy = PublishPolicy(maxShrink: config.maxShrink, allowShrink: false, verify: true)
        let build = Self.builds(plan)
        if codes.isEmpty && (build || plan.deletions == 0) {
            out.reason = codes.isEmpty && plan.units.isEmpty ? "nothing new, changed or deleted" : "no unit finished"
            return out
        }
        do {
            let bundle = try ModelBundle(directory: plan.bundle.path)
            let model = IndexModel(bundleFingerprint: bundle.fingerprint, quantizer: bundle.quantizer)
            let mode: IndexJob.Mode = build ? .build(shards: config.shards)
                                            : .append(deletions: plan.deletions > 0 ? work.deletions : nil, shards: nil)
            let outcome: IndexJob.Outcome
            if build, let stage, stagedBuildUsable(stage, codes: codes, shards: config.shards, embeddings: config.embeddings) {
                outcome = try StagedBuild.publish(index: plan.index, stage: stage, model: model, allowMissingInputs: false,
                                                  policy: policy, tool: tool, note: note)
                out.staged = true
            } else {
                outcome = try IndexJob.run(index: plan.index, mode: mode, model: model, codes: codes,
                                           embeddings: config.embeddings, allowMissingInputs: false, policy: policy,
                                           tool: tool, note: note)
                if build && stage != nil { out.staged = false }
            }
            if out.staged == true { try? FileManager.default.removeItem(atPath: stage!) }
            out.mode = build ? "build" : "append"
            guard let manifest = outcome.result.manifest else {
                out.reason = "the units' videos are already live with the same content and codes"
                return out
            }
            out.generation = manifest.generation
            out.liveVideos = manifest.counts.live
            if !build, let why = compactionReason(manifest, config: config) {
                let compacted = try IndexJob.run(index: plan.index, mode: .compact(shards: nil), model: nil, codes: [],
                                                 embeddings: false, allowMissingInputs: false, policy: policy,
                                                 tool: tool, note: note)
                if let m = compacted.result.manifest {
                    out.generation = m.generation
                    out.liveVideos = m.counts.live
                    out.compacted = why
                }
            }
        } catch {
            out.failed = "\(error)"
            note("nothing published: \(error)")
        }
        return out
    }

    /// Whether `stage` holds every part and shard of a build of exactly `codes` with these
    /// settings; notes why not.
    func stagedBuildUsable(_ stage: String, codes: [String], shards: Int, embeddings: Bool) -> Bool {
        do {
            let status = try StagedBuild.status(stage: stage)
            let why: String? = if status.codesListSHA256 != StagedBuild.codesListDigest(codes) {
                "it was staged from other codes files than the finished units'"
            } else if status.shards != shards || status.embeddings != embeddings {
                "it was staged with other shards or embeddings settings"
            } else if !status.missingParts.isEmpty {
                "partition tasks \(status.missingParts.map(String.init).joined(separator: ",")) did not finish"
            } else if !status.missingShards.isEmpty {
                "shard tasks \(status.missingShards.map(String.init).joined(separator: ",")) did not finish"
            } else { nil }
            if let why { note("\(stage): not publishing the staged build, \(why); building in this job") }
            return why == nil
        } catch {
            note("\(stage): not publishing the staged build (\(error)); building in this job")
            return false
        }
    }

    /// Why the generation should be compacted (past a threshold), or nil.
    func compactionReason(_ m: IndexManifest, config: PipelineConfig) -> String? {
        let deltas = m.shards.filter { $0.kind == .delta }.count
        if deltas > config.compactAfterDeltaShards {
            return "\(deltas) delta shards, over compact_after_delta_shards \(config.compactAfterDeltaShards)"
        }
        let dead = m.counts.superseded + m.counts.deleted
        if m.counts.entries > 0, Double(dead) / Double(m.counts.entries) > config.compactAfterDeadShare {
            return "\(dead) of \(m.counts.entries) entries superseded or deleted, over compact_after_dead_share \(config.compactAfterDeadShare)"
        }
        return nil
    }
}
