// vidx-plan: inputs -> what to index, cut into work units (WORK/plan.json, units, units.mk).
import ArgumentParser
import Foundation
import VidxCLI
import VidxCore
import VidxPipeline

struct PlanCommand: StageCommand {
    static let configuration = CommandConfiguration(
        commandName: "vidx-plan",
        abstract: "Diff the inputs against the live index and cut the work into work units.",
        discussion: """
        Inputs are directories (scanned for video files by extension; hidden names are \
        skipped; a file's id is its path relative to the directory given) and upload lists \
        (JSON Lines in the work-unit format: {"id": ..., "path": ..., "content_hash": ...}, \
        paths relative to the list; a content_hash given is trusted). Every other file gets \
        its SHA-256, unless the hash cache (WORK/state/files.jsonl) holds its path with the \
        same size and modification time.
        Each video is new, changed (new content under a live id), unchanged, a duplicate \
        (content live or planned under another id: indexed or skipped per the config's \
        "duplicates"), kept out by the quarantine, or retried (a transient failure with \
        attempts left). With --deletions, live ids that no input names are deleted.
        The work is sorted by id and cut into units of the config's unit_size; a unit's name \
        is a hash of its ids and content hashes, the bundle and the extraction settings, so \
        re-planning the same inputs gives the same units, and finished units in WORK whose \
        videos are all still wanted are kept whole.
        Writes WORK/plan.json, WORK/units.list, WORK/units/U.jsonl, WORK/units.mk (one make \
        rule per unit, included by Pipelines/index.mk), WORK/deletions.txt and \
        WORK/plan-failures.jsonl, each atomically, after removing stale temporaries and \
        unit records that do not verify. --dry-run writes nothing and prints the counts, \
        the estimated decode hours and the disk the units will need.
        Exit status: 0 planned; 2 usage error; 1 an input, the bundle, the configuration, \
        the index or the work directory cannot be used.
        """)

    @Option(name: .long, help: "A directory to scan or an upload list (JSON Lines); repeatable.")
    var input: [String] = []

    @Option(name: .long, help: "Index directory (its live generation is diffed against).")
    var index: String

    @Option(name: .long, help: "Work directory (units, features, codes, state, reports).")
    var work: String

    @Option(name: .long, help: "Model bundle.")
    var bundle: String

    @Option(name: .long, help: "Pipeline configuration (Schemas/pipeline-config.schema.json); default: the built-in defaults.")
    var config: String?

    @Option(name: .long, help: "What the publisher does: index (append, or build a new index), nightly (append), rebuild (a fresh generation from every input).")
    var mode: Mode = .index

    @Flag(name: .long, help: "Delete live ids that no input names (the inputs are the whole corpus).")
    var deletions = false

    @Flag(name: .customLong("dry-run"), help: "Print what would be done; write nothing.")
    var dryRun = false

    @OptionGroup var threads: ThreadOptions
    @OptionGroup var summary: SummaryOptions

    enum Mode: String, ExpressibleByArgument, CaseIterable { case index, nightly, rebuild }

    func validate() throws {
        guard !input.isEmpty else { throw ValidationError("give at least one --input DIR_OR_LIST") }
    }

    func run() throws {
        let cfg = try PipelineConfig.load(path: config)
        let request = Planner.Request(inputs: input, index: index, work: WorkLayout(work), bundleDirectory: bundle,
                                      config: cfg, configPath: config, deletions: deletions, mode: mode.rawValue,
                                      threads: threads.resolved)
        let plan = try Planner(request, note: { printError("vidx-plan: \($0)") }).run(dryRun: dryRun)
        let c = plan.counts
        let pending = plan.units.filter { !$0.done }
        var text = "\(c.inputs) inputs: \(c.new) new, \(c.changed) changed, \(c.unchanged) unchanged, \(plan.deletions) to delete, \(c.duplicate) duplicate content (\(c.duplicateSkipped) skipped), \(c.quarantined) kept out by the quarantine, \(c.retried) retried, \(c.missing) missing, \(c.unreadable) unreadable; \(c.hashed) files hashed, \(c.hashCached) from the hash cache; \(plan.units.count) units (\(pending.count) to run)"
        if let e = plan.estimate {
            text += String(format: "\nestimate: %.2f GB of video to read, %.2f hours of video (%d files probed), about %.2f decode hours on one core (%@), %.2f GB of features and codes",
                           Double(e.inputBytes) / 1e9, e.videoHours, e.probedFiles, e.decodeHours,
                           e.decodeBasis == "earlier_runs" ? "from earlier runs" : "cost model", Double(e.diskBytes) / 1e9)
        } else {
            text += String(format: "; %.2f s; plan in %@", plan.seconds, WorkLayout(work).plan)
        }
        try summary.print(plan, text: text)
    }
}

PlanCommand.main()
