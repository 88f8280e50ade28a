// vidx-pipeline slurm: the plan's units as a Slurm job array and a finalize job that publishes.
import ArgumentParser
import Foundation
import VidxCLI
import VidxCore
import VidxPipeline

struct SlurmCommand: StageCommand {
    static let configuration = CommandConfiguration(
        commandName: "slurm",
        abstract: "Run the pipeline on a Slurm cluster: the units as a job array, a finalize job that publishes.",
        discussion: """
        `submit` plans (as `run` does), then submits one job array whose task i runs line i \
        of WORK/units.list (extract then encode, as a make rule does) and one finalize job \
        that depends on the array with afterany, so one failed unit never blocks the \
        night's publication. The finalize job checks every unit on disk; units whose \
        outputs are missing or invalid are resubmitted as a new array (up to the \
        configuration's slurm.max_rounds), otherwise it publishes what finished and exits \
        with the pipeline's status. `status` shows a submission's progress, `resubmit` \
        submits the unfinished units again by hand. The binaries, the inputs, the bundle and \
        WORK must be on a file system every node sees. See Pipelines/slurm/README.md.
        """,
        subcommands: [Submit.self, Task.self, Finalize.self, Stage.self, Resubmit.self, Status.self])

    /// The `vidx-pipeline` the jobs run: this one.
    static var tool: String { PipelineTools.directory() + "/vidx-pipeline" }

    /// Refuses (exit 75) when `work` has a submission whose jobs are still in the queue.
    static func refuseInFlight(_ work: WorkLayout, log: PipelineLog) throws {
        guard let previous = try Slurm.Submission.read(work), previous.state != "finished" else { return }
        let queued = try Slurm.queued(previous.latestJobs)
        if !queued.isEmpty {
            printError("vidx-pipeline: \(work.root): a Slurm submission is in flight (jobs \(previous.latestJobs.joined(separator: ", ")), submitted \(previous.rounds.last?.submitted ?? "?")); wait for its finalize job, or cancel it with `scancel \(previous.latestJobs.joined(separator: " "))` (status 75: try again later)")
            throw ExitCode(IndexLock.heldExitStatus)
        }
        log.event("stale_submission", ["created": previous.created],
                  text: "the submission of \(previous.created) did not finish and its jobs are gone from the queue; submitting anew")
    }

    /// The array task index: `given`, or `$SLURM_ARRAY_TASK_ID`.
    static func arrayIndex(_ given: Int?) throws -> Int {
        let env = ProcessInfo.processInfo.environment["SLURM_ARRAY_TASK_ID"]
        guard let i = given ?? env.flatMap({ Int($0) }) else {
            throw ValidationError("not in a Slurm array task (SLURM_ARRAY_TASK_ID is \(env.map { "'\($0)'" } ?? "unset")); give --index")
        }
        return i
    }

    /// Takes the index lock, waiting up to `seconds` for another holder to let go.
    static func lock(index: String, seconds: Double) throws -> IndexLock {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            do { return try IndexLock(index: index, command: CommandLine.arguments) } catch is IndexLock.Held where Date() < deadline {
                usleep(500_000)
            } catch is IndexLock.Held {
                return try takeIndexLock(index, command: CommandLine.arguments)  // one last try, with the message
            }
        }
    }

    struct Submit: StageCommand {
        static let configuration = CommandConfiguration(
            commandName: "submit",
            abstract: "Plan, then submit the units as a job array and a finalize job.",
            discussion: """
            The same inputs, modes, configuration and bundle as `vidx-pipeline run`. Prints \
            the job ids; the finalize job writes WORK/RUN.json, the metrics file and \
            WORK/slurm/submission.json. Task logs: WORK/slurm/logs/ARRAYJOB_TASK.out.
            Exit status: 0 submitted; 75 a submission for WORK is in flight, or another run \
            holds the index lock; 1 the plan or sbatch failed; 2 usage error.
            """)

        @Option(name: .long, help: "A directory to scan or an upload list (JSON Lines); repeatable.")
        var input: [String] = []
        @Option(name: .long, help: "Index directory.") var index: String
        @Option(name: .long, help: "Work directory (default: INDEX.work beside the index).") var work: String?
        @Option(name: .long, help: "Model bundle.") var bundle: String
        @Option(name: .long, help: "Pipeline configuration (Schemas/pipeline-config.schema.json; its slurm section).") var config: String?
        @Option(name: .long, help: "index, nightly or rebuild.") var mode: RunCommand.Mode = .index
        @Flag(name: .long, help: "Delete live ids that no input names.") var deletions = false
        @Option(name: .customLong("metrics-file"), help: "Prometheus textfile the finalize job writes.") var metricsFile: String?
        @Option(name: .long, help: "The appearance CNN's weights (default: as vidx-extract finds them).") var cnn: String?

        func validate() throws {
            guard !input.isEmpty else { throw ValidationError("give at least one --input DIR_OR_LIST") }
        }

        func run() throws {
            let layout = WorkLayout(work ?? (WorkLayout.absolute(index) + ".work"))
            let log = PipelineLog(component: "slurm")
            try SlurmCommand.refuseInFlight(layout, log: log)
            let lock = try takeIndexLock(index, command: CommandLine.arguments)
            defer { lock.release() }
            let plan = try makePlan(inputs: input, index: index, work: layout, bundle: bundle, config: config,
                                    deletions: deletions, mode: mode, log: log)
            let pending = plan.units.enumerated().filter { !$0.element.done }.map(\.offset)
            let cnnPath = cnn.map(WorkLayout.absolute)
            let round = try Slurm.submitRound(plan: plan, work: layout, indices: pending, round: 0, tool: SlurmCommand.tool,
                                              metricsFile: metricsFile, cnn: cnnPath)
            let submission = Slurm.Submission(created: utcTimestamp(), mode: plan.mode, index: plan.index, work: layout.root,
                                              units: plan.units.count, rounds: [round], state: "submitted", exitStatus: nil,
                                              finished: nil, metricsFile: metricsFile.map(WorkLayout.absolute), cnn: cnnPath)
            try submission.write(layout)
            let arrayText = round.arrayJob.map { "array job \($0) (\(pending.count) units, at most \(plan.config.values.slurm.arrayCap) at once)" } ?? "no array (nothing to run)"
            log.event("submitted", ["array_job": round.arrayJob ?? "", "finalize_job": round.finalizeJob, "units": "\(pending.count)"],
                      text: "planned \(plan.counts.toIndex) videos in \(plan.units.count) units")
            print("vidx-pipeline: submitted \(arrayText), finalize job \(round.finalizeJob); watch with `vidx-pipeline slurm status --work \(layout.root)`")
        }
    }

    struct Task: StageCommand {
        static let configuration = CommandConfiguration(
            commandName: "task",
            abstract: "One array task: the unit on line SLURM_ARRAY_TASK_ID of WORK/units.list (0-based).",
            discussion: """
            What each task of the array runs; the same work as `vidx-pipeline unit`. \
            Exit status: 0 the unit is done (failed videos are data); 1 the infrastructure \
            failed (the finalize job resubmits the unit); 2 usage error.
            """)

        @Option(name: .long, help: "Work directory.") var work: String
        @Option(name: .long, help: "The appearance CNN's weights.") var cnn: String?
        @Option(name: .long, help: "The line (0-based) instead of $SLURM_ARRAY_TASK_ID.") var index: Int?

        func run() throws {
            let unit = try Slurm.unit(at: SlurmCommand.arrayIndex(index), work: WorkLayout(work))
            try UnitCommand.runUnit(work: work, unit: unit, cnn: cnn)
        }
    }

    struct Finalize: StageCommand {
        static let configuration = CommandConfiguration(
            commandName: "finalize",
            abstract: "After an array: resubmit the unfinished units, or publish what finished.",
            discussion: """
            Checks every unit of WORK/plan.json on disk (its record, and the sizes and hashes \
            it lists). Units not done and rounds left (slurm.max_rounds): a new array of \
            their indices and a new finalize job after it; exit 0. Otherwise, for a build \
            (no live generation, or a rebuild) with slurm.shard_parts P > 0: submits the \
            staged build (P partition tasks, one task per shard, then a finalize job with \
            --publish-stage after them) and exits 0. Otherwise: takes the index lock \
            (waiting up to --lock-wait seconds), publishes as `vidx-pipeline publish` \
            (with --publish-stage, from WORK/slurm/stage when every step finished for these \
            codes files, else building in this job), and marks the submission finished.
            Exit status: the pipeline's (0 all indexed; 3 published with quarantined videos or \
            unfinished units; 1 nothing published; 75 the index lock stayed held), or 0 after \
            a resubmission or a staged build's submission.
            """)

        @Option(name: .long, help: "Work directory.") var work: String
        @Option(name: .long, help: "The round this job closes (0: the first array).") var round: Int = 0
        @Option(name: .customLong("metrics-file"), help: "Prometheus textfile to write.") var metricsFile: String?
        @Option(name: .customLong("lock-wait"), help: "Seconds to wait for the index lock.") var lockWait: Double = 600
        @Flag(name: .customLong("publish-stage"), help: "Publish the staged build's shards (the job after a staged build's tasks).")
        var publishStage = false
        @OptionGroup var summary: SummaryOptions

        func run() throws {
            let layout = WorkLayout(work)
            let log = PipelineLog(component: "finalize")
            let plan = try PlanFile.read(layout)
            var submission = try Slurm.Submission.read(layout)
            let states = Publisher.unitStates(plan: plan, work: layout)
            let unfinished = Slurm.unfinished(states, plan: plan)
            for u in unfinished {
                log.event("unit_unfinished", ["unit": u.unit, "index": "\(u.index)", "reason": u.reason],
                          level: .warning, text: "unit \(u.unit) (array index \(u.index)): \(u.reason)")
            }
            if !publishStage && !unfinished.isEmpty && round < plan.config.values.slurm.maxRounds {
                let next = try Slurm.submitRound(plan: plan, work: layout, indices: unfinished.map(\.index), round: round + 1,
                                                 tool: SlurmCommand.tool, metricsFile: metricsFile, cnn: submission?.cnn)
                if submission != nil {
                    submission!.rounds.append(next)
                    try submission!.write(layout)
                }
                print("vidx-pipeline: round \(round): \(unfinished.count) units unfinished; resubmitted as array job \(next.arrayJob ?? "-") (--array=\(next.indices)), finalize job \(next.finalizeJob)")
                return
            }
            let codes = Publisher.codesFiles(states, work: layout)
            let parts = plan.config.values.slurm.shardParts
            if !publishStage && parts > 0 && !codes.isEmpty && Publisher.builds(plan) {
                do {
                    let stage = try Slurm.submitStage(plan: plan, work: layout, codes: codes, parts: parts, round: round,
                                                      tool: SlurmCommand.tool, metricsFile: metricsFile)
                    if submission != nil {
                        submission!.stage = stage
                        try submission!.write(layout)
                    }
                    log.event("stage_submitted", ["partition_job": stage.partitionJob, "shard_job": stage.shardJob,
                                                  "publish_job": stage.publishJob],
                              text: "the build of \(codes.count) codes files as \(stage.parts) partition tasks and \(stage.shards) shard tasks")
                    print("vidx-pipeline: staged build submitted: partition array \(stage.partitionJob) (\(stage.parts) tasks), shard array \(stage.shardJob) (\(stage.shards) tasks), publishing job \(stage.publishJob)")
                    return
                } catch {
                    log.event("stage_not_submitted", ["error": "\(error)"], level: .warning,
                              text: "the staged build could not be submitted (\(error)); building in this job")
                }
            }
            let lock = try SlurmCommand.lock(index: plan.index, seconds: lockWait)
            defer { lock.release() }
            let report = try Publisher(work: layout, metricsFile: metricsFile, unitsStatus: unfinished.isEmpty ? 0 : 1,
                                       stage: publishStage ? Slurm.stageDirectory(layout) : nil,
                                       note: { log.event("note", ["message": $0], level: .warning) }).run(checked: states)
            if submission != nil {
                submission!.state = "finished"
                submission!.exitStatus = report.exitStatus
                submission!.finished = utcTimestamp()
                try submission!.write(layout)
            }
            try summary.print(report, text: "vidx-pipeline: \(report.summaryLine); report in \(layout.latestRun)")
            if report.exitStatus != 0 { throw ExitCode(report.exitStatus) }
        }
    }

    struct Stage: StageCommand {
        static let configuration = CommandConfiguration(
            commandName: "stage",
            abstract: "One task of a staged build: a partition of the codes files, or one shard.",
            discussion: """
            What the staged build's array tasks run (slurm.shard_parts > 0): \
            --step partition reads every P-th file of WORK/slurm/stage/codes.list from the \
            task's index and spills its videos by shard; --step shard builds the shard of \
            the task's index from every partition (vidx-shard --stage, in-process). The \
            bundle, shard count and embeddings setting come from WORK/plan.json. A step \
            whose summary exists is done already. Exit status: 0 done; 1 failed (the \
            publishing job then builds in-process); 2 usage error.
            """)

        enum Step: String, ExpressibleByArgument, CaseIterable { case partition, shard }

        @Option(name: .long, help: "Work directory.") var work: String
        @Option(name: .long, help: "partition or shard.") var step: Step
        @Option(name: .long, help: "With --step partition: the number of partition tasks.") var parts: Int?
        @Option(name: .long, help: "The part or shard (0-based) instead of $SLURM_ARRAY_TASK_ID.") var index: Int?

        func validate() throws {
            if step == .partition && parts == nil { throw ValidationError("--step partition needs --parts") }
        }

        func run() throws {
            let layout = WorkLayout(work)
            let log = PipelineLog(component: "stage")
            let note: (String) -> Void = { log.event("note", ["message": $0], level: .warning) }
            let i = try SlurmCommand.arrayIndex(index)
            switch step {
            case .partition:
                let part = try Slurm.stagePartition(work: layout, part: i, of: parts!, note: note)
                print("vidx-pipeline: part \(i) of \(part.parts): \(part.inputs.count) codes files, \(part.videos) videos")
            case .shard:
                let record = try Slurm.stageShard(work: layout, shard: i)
                print("vidx-pipeline: shard \(i): \(record.videos) videos, \(record.bytes) bytes")
            }
        }
    }

    struct Resubmit: StageCommand {
        static let configuration = CommandConfiguration(
            commandName: "resubmit",
            abstract: "Submit the plan's unfinished units again (a new array and finalize job).",
            discussion: """
            For a submission whose finalize job has ended (or was cancelled) with units \
            unfinished: their indices become a new array, e.g. --array=3,17,42, and a new \
            finalize job follows it. The plan is not redone. Exit status: 0 submitted (or \
            nothing unfinished); 75 the submission is still in flight; 1 sbatch failed.
            """)

        @Option(name: .long, help: "Work directory.") var work: String

        func run() throws {
            let layout = WorkLayout(work)
            let log = PipelineLog(component: "slurm")
            try SlurmCommand.refuseInFlight(layout, log: log)
            let plan = try PlanFile.read(layout)
            var submission = try Slurm.Submission.read(layout)
            let unfinished = Slurm.unfinished(Publisher.unitStates(plan: plan, work: layout), plan: plan)
            let round = (submission?.rounds.last?.round ?? -1) + 1
            let next = try Slurm.submitRound(plan: plan, work: layout, indices: unfinished.map(\.index), round: round,
                                             tool: SlurmCommand.tool, metricsFile: submission?.metricsFile, cnn: submission?.cnn)
            if submission != nil {
                submission!.rounds.append(next)
                submission!.state = "submitted"
                submission!.exitStatus = nil
                submission!.finished = nil
            } else {
                submission = Slurm.Submission(created: utcTimestamp(), mode: plan.mode, index: plan.index, work: layout.root,
                                              units: plan.units.count, rounds: [next], state: "submitted", exitStatus: nil,
                                              finished: nil, metricsFile: nil, cnn: nil)
            }
            try submission!.write(layout)
            print("vidx-pipeline: resubmitted \(unfinished.count) units as array job \(next.arrayJob ?? "-") (--array=\(next.indices.isEmpty ? "none" : next.indices)), finalize job \(next.finalizeJob)")
        }
    }

    struct Status: StageCommand {
        static let configuration = CommandConfiguration(
            commandName: "status",
            abstract: "A submission's progress: units done on disk, its jobs in the queue, its result.",
            discussion: "Reads WORK/slurm/submission.json, the units' records (outputs checked by size; the finalize job also checks their SHA-256) and squeue (no sacct needed). Exit status: 0; 1 no submission in WORK.")

        @Option(name: .long, help: "Work directory.") var work: String
        @OptionGroup var summary: SummaryOptions

        struct Output: Encodable {
            var submission: Slurm.Submission
            var unitsDone: Int
            var unitsTotal: Int
            var queue: [String]
            var unfinished: [String]
            enum CodingKeys: String, CodingKey {
                case submission, unitsDone = "units_done", unitsTotal = "units_total", queue, unfinished
            }
        }

        func run() throws {
            let layout = WorkLayout(work)
            guard let submission = try Slurm.Submission.read(layout) else {
                throw PlanError("\(layout.root): no Slurm submission (\(Slurm.submissionPath(layout)) is missing)")
            }
            let plan = try PlanFile.read(layout)
            let unfinished = Slurm.unfinished(Publisher.unitStates(plan: plan, work: layout, hashes: false), plan: plan)
            let queue = (try? Slurm.queued(submission.latestJobs)) ?? []
            let out = Output(submission: submission, unitsDone: plan.units.count - unfinished.count, unitsTotal: plan.units.count,
                             queue: queue, unfinished: unfinished.map { "\($0.unit) (index \($0.index)): \($0.reason)" })
            var text = "submission of \(submission.created) (\(submission.mode)): \(out.unitsDone)/\(out.unitsTotal) units done; "
            text += "round \(submission.rounds.last?.round ?? 0): array job \(submission.rounds.last?.arrayJob ?? "-"), finalize job \(submission.rounds.last?.finalizeJob ?? "-"); "
            text += submission.state == "finished" ? "finished with exit status \(submission.exitStatus ?? -1) (report: \(layout.latestRun))"
                                                  : "\(queue.count) jobs or tasks in the queue"
            if let stage = submission.stage, submission.state != "finished" {
                let done = Slurm.stageProgress(stage)
                text += "\nstaged build: \(done.parts)/\(stage.parts) parts, \(done.shards)/\(stage.shards) shards staged; "
                    + "partition array \(stage.partitionJob), shard array \(stage.shardJob), publishing job \(stage.publishJob)"
            }
            if !queue.isEmpty { text += "\n" + queue.map { "  \($0)" }.joined(separator: "\n") }
            try summary.print(out, text: text)
        }
    }
}
