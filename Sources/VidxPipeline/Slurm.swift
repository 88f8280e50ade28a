import Foundation
import VidxCore
import VidxHCQ
import VidxIndex

/// The pipeline on a Slurm cluster (Pipelines/slurm/README.md): the plan's units as one job
/// array, task i running line i of `WORK/units.list` exactly as a make rule does, and a
/// finalize job (`--dependency=afterany` on the array) that checks every unit on disk,
/// resubmits the missing or invalid ones as a new array (up to `slurm.max_rounds`), and
/// otherwise publishes what finished, with the pipeline's report, metrics and exit status.
///
/// The files on disk are the truth, not the queue: without slurmdbd, `sacct` knows
/// nothing and the controller forgets a job `MinJobAge` seconds after it ends. The state
/// of a submission is `WORK/slurm/submission.json` (Schemas/slurm-submission.schema.json).
public enum Slurm {
    /// `WORK/slurm/`: the submission, its logs.
    public static func directory(_ work: WorkLayout) -> String { work.root + "/slurm" }
    public static func submissionPath(_ work: WorkLayout) -> String { directory(work) + "/submission.json" }
    public static func logDirectory(_ work: WorkLayout) -> String { directory(work) + "/logs" }

    /// One submission: the rounds of arrays and finalize jobs, and how it ended.
    public struct Submission: Codable, Sendable, Equatable {
        public static let format = "vidx-slurm-submission"
        public static let version = 1

        public struct Round: Codable, Sendable, Equatable {
            public var round: Int
            /// The array job's id; nil when the round had no unit to run.
            public var arrayJob: String?
            /// The array's indices (lines of units.list, 0-based), as `--array` took them.
            public var indices: String
            public var units: Int
            public var finalizeJob: String
            public var submitted: String
            enum CodingKeys: String, CodingKey {
                case round, arrayJob = "array_job", indices, units, finalizeJob = "finalize_job", submitted
            }
        }

        public var format = Submission.format
        public var formatVersion = Submission.version
        public var created: String
        public var mode: String
        public var index: String
        public var work: String
        public var units: Int
        public var rounds: [Round]
        /// `submitted` (jobs in the queue), `finished` (the last finalize job published or
        /// failed: see `exitStatus`).
        public var state: String
        public var exitStatus: Int32?
        public var finished: String?
        public var metricsFile: String?
        public var cnn: String?
        /// The staged build the last round's finalize job submitted (`slurm.shard_parts`).
        public var stage: Stage?

        /// A build's shards as array tasks: partition tasks read the codes files, shard
        /// tasks build one shard each, a publishing finalize job links them in.
        public struct Stage: Codable, Sendable, Equatable {
            /// The round whose finalize job submitted the stage.
            public var round: Int
            public var directory: String
            public var parts: Int
            public var shards: Int
            public var codesFiles: Int
            public var partitionJob: String
            public var shardJob: String
            public var publishJob: String
            public var submitted: String
            enum CodingKeys: String, CodingKey {
                case round, directory, parts, shards, codesFiles = "codes_files", partitionJob = "partition_job"
                case shardJob = "shard_job", publishJob = "publish_job", submitted
            }
        }

        public init(created: String, mode: String, index: String, work: String, units: Int, rounds: [Round], state: String,
                    exitStatus: Int32?, finished: String?, metricsFile: String?, cnn: String?) {
            self.created = created
            self.mode = mode
            self.index = index
            self.work = work
            self.units = units
            self.rounds = rounds
            self.state = state
            self.exitStatus = exitStatus
            self.finished = finished
            self.metricsFile = metricsFile
            self.cnn = cnn
        }

        enum CodingKeys: String, CodingKey {
            case format, formatVersion = "format_version", created, mode, index, work, units, rounds, state
            case exitStatus = "exit_status", finished, metricsFile = "metrics_file", cnn, stage
        }

        public static func read(_ work: WorkLayout) throws -> Submission? {
            let path = Slurm.submissionPath(work)
            guard FileManager.default.fileExists(atPath: path) else { return nil }
            do {
                let s = try JSONDecoder().decode(Submission.self, from: try InputFiles.read(path, maxBytes: 64 << 20))
                guard s.format == format, s.formatVersion == version else { throw PlanError("not a submission of version \(version)") }
                return s
            } catch {
                throw PlanError("\(path): cannot read the Slurm submission: \(describeDecodingError(error))")
            }
        }

        public func write(_ work: WorkLayout) throws {
            try AtomicFile.makeDirectory(Slurm.directory(work))
            try AtomicFile.write(try makeJSONEncoder(pretty: true).encode(self), to: Slurm.submissionPath(work))
        }

        /// The job ids of the latest round, and of the stage it submitted.
        public var latestJobs: [String] {
            guard let r = rounds.last else { return [] }
            var jobs = [r.arrayJob, r.finalizeJob].compactMap { $0 }
            if let stage, stage.round == r.round { jobs += [stage.partitionJob, stage.shardJob, stage.publishJob] }
            return jobs
        }
    }

    /// A command's outcome.
    public struct CommandResult: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    /// Runs a Slurm client command (found on PATH) and collects its output.
    public static func command(_ argv: [String]) throws -> CommandResult {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = argv
        p.standardInput = FileHandle.nullDevice
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        do { try p.run() } catch { throw PlanError("cannot run \(argv[0]): \(error)") }
        nonisolated(unsafe) var errData = Data()
        let reader = Thread { errData = err.fileHandleForReading.readDataToEndOfFile() }
        reader.start()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        while !reader.isFinished { usleep(1000) }
        let status = p.terminationReason == .uncaughtSignal ? 128 + p.terminationStatus : p.terminationStatus
        if status == 127 { throw PlanError("\(argv[0]) is not installed (Slurm's client commands must be on PATH)") }
        return CommandResult(status: status, stdout: String(decoding: outData, as: UTF8.self),
                             stderr: String(decoding: errData, as: UTF8.self))
    }

    /// `0-3,7,9-12`: sorted indices as Slurm's `--array` ranges.
    public static func ranges(_ indices: [Int]) -> String {
        var parts: [String] = []
        var i = 0
        let sorted = Array(Set(indices)).sorted()
        while i < sorted.count {
            var j = i
            while j + 1 < sorted.count && sorted[j + 1] == sorted[j] + 1 { j += 1 }
            parts.append(i == j ? "\(sorted[i])" : "\(sorted[i])-\(sorted[j])")
            i = j + 1
        }
        return parts.joined(separator: ",")
    }

    /// The `sbatch` options every job gets from the configuration.
    static func resourceArguments(_ s: PipelineConfig.Slurm) -> [String] {
        var args: [String] = []
        if !s.partition.isEmpty { args.append("--partition=\(s.partition)") }
        if !s.account.isEmpty { args.append("--account=\(s.account)") }
        return args
    }

    /// A shell word: `'...'` with embedded quotes escaped.
    static func quote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    /// Submits the array for `indices` of the plan's unit list and the finalize job of
    /// `round` after it; returns the round.
    /// - Parameter tool: the `vidx-pipeline` executable the jobs run (on a shared file system).
    public static func submitRound(plan: PlanFile, work: WorkLayout, indices: [Int], round: Int, tool: String,
                                   metricsFile: String?, cnn: String?) throws -> Submission.Round {
        let s = plan.config.values.slurm
        try AtomicFile.makeDirectory(logDirectory(work))
        var arrayJob: String? = nil
        let spec = ranges(indices)
        if !indices.isEmpty {
            var task = "exec \(quote(tool)) slurm task --work \(quote(work.root))"
            if let cnn { task += " --cnn \(quote(cnn))" }
            let args = ["sbatch", "--parsable", "--job-name=vidx-units", "--array=\(spec)%\(s.arrayCap)",
                        "--output=\(logDirectory(work))/%A_%a.out", "--cpus-per-task=\(s.cpusPerTask)",
                        "--mem=\(s.memoryMB)", "--time=\(s.timeLimit)", "--chdir=\(work.root)"]
                + resourceArguments(s) + ["--wrap", task]
            arrayJob = try sbatch(args)
        }
        var finalize = "exec \(quote(tool)) slurm finalize --work \(quote(work.root)) --round \(round)"
        if let metricsFile { finalize += " --metrics-file \(quote(WorkLayout.absolute(metricsFile)))" }
        var args = ["sbatch", "--parsable", "--job-name=vidx-finalize", "--output=\(logDirectory(work))/finalize-%j.out",
                    "--cpus-per-task=1", "--mem=\(s.finalizeMemoryMB)", "--time=\(s.finalizeTimeLimit)",
                    "--chdir=\(work.root)"] + resourceArguments(s)
        if let arrayJob { args.append("--dependency=afterany:\(arrayJob)") }
        args += ["--wrap", finalize]
        let finalizeJob = try sbatch(args)
        return Submission.Round(round: round, arrayJob: arrayJob, indices: spec, units: indices.count,
                                finalizeJob: finalizeJob, submitted: utcTimestamp())
    }

    /// `WORK/slurm/stage/`: a staged build's parts, shards and codes list.
    public static func stageDirectory(_ work: WorkLayout) -> String { directory(work) + "/stage" }
    public static func stageCodesList(_ work: WorkLayout) -> String { stageDirectory(work) + "/codes.list" }

    /// A fresh `WORK/slurm/stage/` (an earlier build's stage is removed, never mixed with
    /// this one) holding the list of `codes` files the partition tasks read.
    @discardableResult
    public static func prepareStage(work: WorkLayout, codes: [String]) throws -> String {
        let dir = stageDirectory(work)
        try? FileManager.default.removeItem(atPath: dir)
        try AtomicFile.makeDirectory(dir)
        try AtomicFile.write(Data(codes.map { $0 + "\n" }.joined().utf8), to: stageCodesList(work))
        return dir
    }

    /// Submits a staged build of `codes` (what the publisher would build from) after
    /// round `round`: `parts` partition tasks, one task per shard after them, and a
    /// finalize job with `--publish-stage` after those. Every dependency is `afterany`:
    /// the tasks and the publishing job check the stage's files themselves, and the
    /// publishing job builds in-process whatever the tasks did not finish.
    public static func submitStage(plan: PlanFile, work: WorkLayout, codes: [String], parts: Int, round: Int, tool: String,
                                   metricsFile: String?) throws -> Submission.Stage {
        let s = plan.config.values.slurm
        let shards = plan.config.values.shards
        let dir = try prepareStage(work: work, codes: codes)
        try AtomicFile.makeDirectory(logDirectory(work))
        let parts = max(1, min(parts, codes.count))
        let common = ["--cpus-per-task=1", "--mem=\(s.finalizeMemoryMB)", "--time=\(s.finalizeTimeLimit)",
                      "--chdir=\(work.root)"] + resourceArguments(s)
        let step = "exec \(quote(tool)) slurm stage --work \(quote(work.root))"
        let partition = try sbatch(["sbatch", "--parsable", "--job-name=vidx-partition", "--array=0-\(parts - 1)%\(s.arrayCap)",
                                    "--output=\(logDirectory(work))/partition-%A_%a.out"] + common
                                   + ["--wrap", step + " --step partition --parts \(parts)"])
        let shard = try sbatch(["sbatch", "--parsable", "--job-name=vidx-shard", "--array=0-\(shards - 1)%\(s.arrayCap)",
                                "--output=\(logDirectory(work))/shard-%A_%a.out", "--dependency=afterany:\(partition)"] + common
                               + ["--wrap", step + " --step shard"])
        var finalize = "exec \(quote(tool)) slurm finalize --work \(quote(work.root)) --round \(round) --publish-stage"
        if let metricsFile { finalize += " --metrics-file \(quote(WorkLayout.absolute(metricsFile)))" }
        let publish = try sbatch(["sbatch", "--parsable", "--job-name=vidx-publish", "--output=\(logDirectory(work))/finalize-%j.out",
                                  "--cpus-per-task=1", "--mem=\(s.finalizeMemoryMB)", "--time=\(s.finalizeTimeLimit)",
                                  "--chdir=\(work.root)", "--dependency=afterany:\(shard)"] + resourceArguments(s)
                                 + ["--wrap", finalize])
        return Submission.Stage(round: round, directory: dir, parts: parts, shards: shards, codesFiles: codes.count,
                                partitionJob: partition, shardJob: shard, publishJob: publish, submitted: utcTimestamp())
    }

    /// The index model of the plan's bundle.
    static func model(_ plan: PlanFile) throws -> IndexModel {
        let bundle = try ModelBundle(directory: plan.bundle.path)
        return IndexModel(bundleFingerprint: bundle.fingerprint, quantizer: bundle.quantizer)
    }

    /// A partition task of the staged build: part `part` of `parts` of the stage's codes
    /// list, with the plan's bundle, shard count and embeddings setting.
    public static func stagePartition(work: WorkLayout, part: Int, of parts: Int,
                                      note: (String) -> Void = { _ in }) throws -> StagedBuild.Part {
        let plan = try PlanFile.read(work)
        let codes = try IndexInputs.readList(path: stageCodesList(work), of: "codes files")
        return try StagedBuild.partition(stage: stageDirectory(work), part: part, of: parts, codes: codes, model: model(plan),
                                         shards: plan.config.values.shards, embeddings: plan.config.values.embeddings, note: note)
    }

    /// A shard task of the staged build: shard `shard` from every part.
    public static func stageShard(work: WorkLayout, shard: Int) throws -> IndexManifest.ShardRecord {
        try StagedBuild.buildShard(stage: stageDirectory(work), shard: shard, model: model(try PlanFile.read(work)))
    }

    /// How many of a staged build's parts and shards are done.
    public static func stageProgress(_ stage: Submission.Stage) -> (parts: Int, shards: Int) {
        guard let s = try? StagedBuild.status(stage: stage.directory) else { return (0, 0) }
        return (s.parts - s.missingParts.count, s.shards - s.missingShards.count)
    }

    /// Runs `sbatch --parsable ...` and returns the job id.
    static func sbatch(_ args: [String]) throws -> String {
        let r = try command(args)
        guard r.status == 0 else {
            throw PlanError("sbatch refused the job (status \(r.status)): \(r.stderr.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        // --parsable: "jobid" or "jobid;cluster".
        let id = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ";").first.map(String.init) ?? ""
        guard !id.isEmpty, id.allSatisfy(\.isNumber) else { throw PlanError("sbatch printed no job id: '\(r.stdout)'") }
        return id
    }

    /// The jobs of `ids` the controller still knows as pending or running (`squeue`).
    public static func queued(_ ids: [String]) throws -> [String] {
        guard !ids.isEmpty else { return [] }
        let r = try command(["squeue", "-h", "-r", "-j", ids.joined(separator: ","), "-o", "%i %T"])
        // A job the controller has forgotten makes squeue fail with "Invalid job id": gone.
        // Any other failure (no controller) is not an answer.
        guard r.status == 0 else {
            if r.stderr.localizedCaseInsensitiveContains("invalid job id") { return [] }
            throw PlanError("squeue failed (status \(r.status)): \(r.stderr.trimmingCharacters(in: .whitespacesAndNewlines)); cannot tell whether jobs \(ids.joined(separator: ", ")) are still queued")
        }
        return r.stdout.split(separator: "\n").map { String($0) }.filter {
            let state = $0.split(separator: " ").last.map(String.init) ?? ""
            return ["PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED"].contains(state)
        }
    }

    /// The plan's units that are not done, from `Publisher.unitStates`: their 0-based
    /// index (line of units.list, array task index), name and why.
    public static func unfinished(_ states: [Result<UnitRecord, UnitNotDone>], plan: PlanFile) -> [(index: Int, unit: String, reason: String)] {
        states.enumerated().compactMap { i, state in
            if case .failure(let why) = state { return (i, plan.units[i].name, why.reason) }
            return nil
        }
    }

    /// Line `index` (0-based) of `WORK/units.list`.
    public static func unit(at index: Int, work: WorkLayout) throws -> String {
        let lines = try String(decoding: InputFiles.read(work.unitList, maxBytes: 1 << 30), as: UTF8.self)
            .split(separator: "\n", omittingEmptySubsequences: false)
        guard index >= 0, index < lines.count, !lines[index].isEmpty else {
            throw PlanError("\(work.unitList): no unit at line \(index + 1) (array task index \(index))")
        }
        return String(lines[index])
    }
}
