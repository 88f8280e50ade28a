// vidx-pipeline: the pipeline's steps that are not a stage of their own: run one work unit,
// publish a plan's units, hold the index lock around a run, and manage the quarantine.
import ArgumentParser
import Foundation
import VidxCLI
import VidxCore
import VidxPipeline

struct PipelineCommand: StageCommand {
    static let configuration = CommandConfiguration(
        commandName: "vidx-pipeline",
        abstract: "Run work units, publish them, lock the index, manage the quarantine.",
        discussion: """
        The steps Pipelines/index.mk runs after vidx-plan: `unit` per work unit (one make \
        rule each), then `publish`, all under `locked`. See Documentation/Pipeline.md. \
        `slurm` runs the same units as a Slurm job array (Pipelines/slurm/README.md).
        """,
        subcommands: [RunCommand.self, UnitCommand.self, PublishCommand.self, LockedCommand.self, QuarantineCommand.self,
                      SlurmCommand.self])
}

struct RunCommand: StageCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "One whole pipeline run: lock, plan, units (make -j), publish, report.",
        discussion: """
        Takes the index's pipeline lock, plans (as vidx-plan), runs the plan's units with \
        `make -f WORK/units.mk -k -j JOBS` (one rule per unit; a unit that fails for an \
        infrastructure reason does not stop the others), then publishes (as `publish`).
        Safe to interrupt at any point and to run again: finished units are kept, stale \
        temporaries removed, and the index ends byte-identical to an uninterrupted run's.
        --mode index: the inputs are the corpus: new and changed videos are appended (a \
        first run builds the index) and, with --deletions, live ids no input names are \
        deleted. --mode nightly: the inputs are new uploads; append only. --mode rebuild: \
        a fresh generation from every input. Index and nightly compact past the \
        configuration's thresholds. This is what Pipelines/index.mk's index, nightly and \
        rebuild targets run.
        Exit status: 0 all indexed (or nothing to do); 3 published with failed \
        (quarantined) videos or unfinished units; 1 failed, nothing published; 75 another \
        run holds the index lock; 2 usage error.
        """)

    @Option(name: .long, help: "A directory to scan or an upload list (JSON Lines); repeatable.")
    var input: [String] = []
    @Option(name: .long, help: "Index directory.") var index: String
    @Option(name: .long, help: "Work directory (default: INDEX.work beside the index).") var work: String?
    @Option(name: .long, help: "Model bundle.") var bundle: String
    @Option(name: .long, help: "Pipeline configuration (Schemas/pipeline-config.schema.json).") var config: String?
    @Option(name: .long, help: "index, nightly or rebuild.") var mode: Mode = .index
    @Flag(name: .long, help: "Delete live ids that no input names.") var deletions = false
    @Option(name: .long, help: "Units run at once (make -j).") var jobs: Int = 2
    @Option(name: .customLong("metrics-file"), help: "Prometheus textfile to write (node_exporter's textfile collector).")
    var metricsFile: String?
    @Option(name: .long, help: "The appearance CNN's weights (default: as vidx-extract finds them).") var cnn: String?
    @OptionGroup var summary: SummaryOptions

    enum Mode: String, ExpressibleByArgument, CaseIterable { case index, nightly, rebuild }

    func validate() throws {
        guard !input.isEmpty else { throw ValidationError("give at least one --input DIR_OR_LIST") }
        guard jobs >= 1 && jobs <= 256 else { throw ValidationError("--jobs must be between 1 and 256") }
    }

    func run() throws {
        let layout = WorkLayout(work ?? (WorkLayout.absolute(index) + ".work"))
        let log = PipelineLog(component: "run")
        let lock = try takeIndexLock(index, command: CommandLine.arguments)
        defer { lock.release() }
        let plan = try makePlan(inputs: input, index: index, work: layout, bundle: bundle, config: config,
                                deletions: deletions, mode: mode, log: log)
        let pending = plan.units.filter { !$0.done }
        log.event("planned", ["units": "\(plan.units.count)", "to_run": "\(pending.count)", "new": "\(plan.counts.new)",
                              "changed": "\(plan.counts.changed)", "unchanged": "\(plan.counts.unchanged)",
                              "deletions": "\(plan.deletions)"],
                  text: "planned \(plan.counts.toIndex) videos to index (\(plan.counts.new) new, \(plan.counts.changed) changed), \(plan.counts.unchanged) unchanged, \(plan.deletions) to delete: \(plan.units.count) units, \(pending.count) to run")
        var unitsStatus: Int32 = 0
        if !pending.isEmpty {
            var argv = ["make", "--no-print-directory", "-f", layout.unitMakefile, "-k", "-j", "\(jobs)", "units",
                        "VIDX_PIPELINE=\(PipelineTools.directory())/vidx-pipeline"]
            if let cnn { argv.append("VIDX_UNIT_FLAGS=--cnn \(WorkLayout.absolute(cnn))") }
            unitsStatus = ChildProcess.run(argv)
        }
        let report = try Publisher(work: layout, metricsFile: metricsFile, unitsStatus: unitsStatus,
                                   note: { log.event("publish", ["message": $0], level: .warning) }).run()
        try summary.print(report, text: "vidx-pipeline: \(report.summaryLine); report in \(layout.latestRun)")
        if report.exitStatus != 0 { throw ExitCode(report.exitStatus) }
    }
}

struct UnitCommand: StageCommand {
    static let configuration = CommandConfiguration(
        commandName: "unit",
        abstract: "Run one work unit of the plan: extract, encode, record.",
        discussion: """
        Reads WORK/plan.json for the bundle and the configuration, runs vidx-extract on \
        WORK/units/UNIT.jsonl in a child process (a video that crashes it is recorded \
        `crashed` and the unit runs again without it), encodes, and writes \
        WORK/units/UNIT.unit.json last. A unit already done (its record verifies) is not \
        run again. vidx-extract is looked for in $VIDX_BIN, else beside this executable.
        Exit status: 0 the unit is done (some of its videos may have failed: that is data); \
        1 the infrastructure failed (the unit is redone by the next run); 2 usage error.
        """)

    @Option(name: .long, help: "Work directory (as given to vidx-plan).")
    var work: String

    @Option(name: .long, help: "The appearance CNN's weights (default: as vidx-extract finds them).")
    var cnn: String?

    @Argument(help: "Unit name (a line of WORK/units.list).")
    var unit: String

    func run() throws { try Self.runUnit(work: work, unit: unit, cnn: cnn) }

    /// Runs one unit of the plan in `work` (also each Slurm array task).
    static func runUnit(work: String, unit: String, cnn: String?) throws {
        let layout = WorkLayout(work)
        let plan = try PlanFile.read(layout)
        let runner = UnitRunner(work: layout, bundleDirectory: plan.bundle.path, config: plan.config.values, cnnWeights: cnn)
        let log = PipelineLog(component: "unit")
        let featuresFrom = plan.units.first { $0.name == unit }?.featuresFrom
        let outcome = try runner.run(unit, featuresFrom: featuresFrom, note: { log.event("video", ["unit": unit, "message": $0], level: .warning) })
        let r = outcome.record
        if case .alreadyDone = outcome {
            log.event("unit_done", ["unit": unit, "already": "true"])
            return
        }
        let progress = UnitProgress.measure(plan: plan, work: layout)
        log.event("unit_done", ["unit": unit, "videos": "\(r.counts.videos)", "ok": "\(r.counts.ok)", "partial": "\(r.counts.partial)",
                                "failed": "\(r.counts.failed)", "extract_seconds": String(format: "%.2f", r.seconds.extract),
                                "encode_seconds": String(format: "%.2f", r.seconds.encode),
                                "units_done": "\(progress.done)", "units": "\(progress.total)",
                                "videos_per_second": String(format: "%.2f", progress.videosPerSecond),
                                "eta_seconds": String(format: "%.0f", progress.etaSeconds)],
                  text: progress.line(unit: unit, record: r))
    }
}

struct PublishCommand: StageCommand {
    static let configuration = CommandConfiguration(
        commandName: "publish",
        abstract: "Check the plan's units on disk, update the quarantine, publish, report.",
        discussion: """
        Every unit of WORK/plan.json is checked on disk (its record and the sizes and hashes \
        it lists). The units that finished are published: a fresh build when the index has \
        no live generation (or the plan's mode is rebuild), else an append with the plan's \
        deletions, then a compaction when the live generation passes the configuration's \
        thresholds. Failed videos go to the quarantine; videos indexed at last leave it.
        Writes WORK/RUN.json (and WORK/runs/ID.json) and, with --metrics-file, a \
        Prometheus textfile. Prints one summary line.
        Exit status: 0 every planned video indexed (or nothing to do); 3 published (or \
        nothing needed publishing) with failed videos or unfinished units; 1 nothing \
        published (the publication failed or was refused, or no unit finished); 2 usage.
        """)

    @Option(name: .long, help: "Work directory (as given to vidx-plan).")
    var work: String

    @Option(name: .customLong("metrics-file"), help: "Write the run's metrics here (node_exporter textfile format, e.g. /var/lib/prometheus/node-exporter/vidx.prom).")
    var metricsFile: String?

    @Option(name: .customLong("units-status"), help: "The exit status of the step that ran the units (make's), for the report.")
    var unitsStatus: Int32?

    @OptionGroup var summary: SummaryOptions

    func run() throws {
        let log = PipelineLog(component: "publish")
        let report = try Publisher(work: WorkLayout(work), metricsFile: metricsFile, unitsStatus: unitsStatus,
                                   note: { log.event("note", ["message": $0], level: .warning) }).run()
        try summary.print(report, text: "vidx-pipeline: \(report.summaryLine); report in \(WorkLayout(work).latestRun)")
        if report.exitStatus != 0 { throw ExitCode(report.exitStatus) }
    }
}

struct LockedCommand: StageCommand {
    static let configuration = CommandConfiguration(
        commandName: "locked",
        abstract: "Run a command holding the index's pipeline lock.",
        discussion: """
        Takes INDEX/.pipeline.lock with flock (released by the kernel when the holders exit, \
        so never stale after kill -9), writes the holder (host, pid, start time, command) \
        into it, runs COMMAND (which inherits the lock), and exits with its status. When \
        another run holds the lock: one line naming the holder, exit status 75 (EX_TEMPFAIL).
        SIGINT and SIGTERM are passed on to COMMAND.
        """)

    @Option(name: .long, help: "Index directory.")
    var index: String

    @Argument(parsing: .captureForPassthrough, help: "The command to run (after --).")
    var command: [String] = []

    func validate() throws {
        if command.first == "--" { return }
        guard !command.isEmpty else { throw ValidationError("give the command to run after --") }
    }

    func run() throws {
        let argv = command.first == "--" ? Array(command.dropFirst()) : command
        guard !argv.isEmpty else { throw ValidationError("give the command to run after --") }
        let lock = try takeIndexLock(index, command: argv)
        let status = ChildProcess.run(argv)
        lock.release()
        throw ExitCode(status)
    }
}

struct QuarantineCommand: StageCommand {
    static let configuration = CommandConfiguration(
        commandName: "quarantine",
        abstract: "List or release quarantined videos.",
        discussion: """
        `list` prints one JSON line per entry (id, path, content_hash, class, message, \
        attempts, first_seen, last_seen), or a table on a terminal. `release ID...` (or \
        --class C, or --all) removes entries, so the next run tries those videos again.
        """,
        subcommands: [List.self, Release.self])

    struct List: StageCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List quarantined videos.")
        @Option(name: .long, help: "Work directory.") var work: String
        @Option(name: .customLong("class"), help: "Only this failure class.") var cls: FailureClass?
        @Flag(name: .long, help: "JSON lines even on a terminal.") var json = false

        func run() throws {
            let q = try Quarantine.read(path: WorkLayout(work).quarantine)
            let entries = q.sorted.filter { cls == nil || $0.class == cls }
            if json || isatty(1) == 0 {
                let encoder = makeJSONEncoder()
                for e in entries { print(String(decoding: try encoder.encode(e), as: UTF8.self)) }
            } else {
                for e in entries {
                    print("\(e.id)\t\(e.class.rawValue)\tattempts \(e.attempts)\tlast \(e.lastSeen)\t\(e.path)\t\(e.message.prefix(120))")
                }
                print("\(entries.count) of \(q.count) quarantined videos")
            }
        }
    }

    struct Release: StageCommand {
        static let configuration = CommandConfiguration(
            commandName: "release", abstract: "Release quarantined videos so the next run tries them again.")
        @Option(name: .long, help: "Work directory.") var work: String
        @Option(name: .customLong("class"), help: "Release every entry of this failure class.") var cls: FailureClass?
        @Flag(name: .long, help: "Release every entry.") var all = false
        @Argument(help: "External ids to release.") var ids: [String] = []

        func validate() throws {
            guard !ids.isEmpty || cls != nil || all else { throw ValidationError("give ids, --class or --all") }
        }

        func run() throws {
            let layout = WorkLayout(work)
            var q = try Quarantine.read(path: layout.quarantine)
            var released = 0, unknown: [String] = []
            for id in ids { if q.remove(id: id) { released += 1 } else { unknown.append(id) } }
            for e in q.sorted where all || e.class == cls {
                q.remove(id: e.id)
                released += 1
            }
            try q.write(path: layout.quarantine)
            print("released \(released) videos; \(q.count) remain quarantined")
            if !unknown.isEmpty {
                printError("vidx-pipeline: not quarantined: \(unknown.joined(separator: ", "))")
                throw ExitCode(StageExit.someFailed)
            }
        }
    }
}

/// Takes the index's pipeline lock; when another run holds it, one line naming the holder
/// and exit status 75.
func takeIndexLock(_ index: String, command: [String]) throws -> IndexLock {
    do { return try IndexLock(index: index, command: command) } catch let held as IndexLock.Held {
        printError("vidx-pipeline: \(held)")
        throw ExitCode(IndexLock.heldExitStatus)
    }
}

/// Plans a run (as vidx-plan does) into `work`; call with the index lock held.
func makePlan(inputs: [String], index: String, work: WorkLayout, bundle: String, config: String?, deletions: Bool,
              mode: RunCommand.Mode, log: PipelineLog) throws -> PlanFile {
    let cfg = try PipelineConfig.load(path: config)
    let request = Planner.Request(inputs: inputs, index: index, work: work, bundleDirectory: bundle, config: cfg,
                                  configPath: config, deletions: deletions, mode: mode.rawValue,
                                  threads: ProcessInfo.processInfo.activeProcessorCount)
    return try Planner(request, note: { log.event("plan", ["message": $0], level: .warning) }).run(dryRun: false)
}

extension FailureClass: ExpressibleByArgument {}

PipelineCommand.main()
