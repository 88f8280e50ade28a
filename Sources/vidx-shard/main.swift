// vidx-shard: codes files -> a new index generation (build, nightly append, compaction).
import ArgumentParser
import VidxCLI
import Foundation
import VidxCore
import VidxHCQ
import VidxIndex

struct ShardCommand: StageCommand {
    static let configuration = CommandConfiguration(
        commandName: "vidx-shard",
        abstract: "Write codes files into a new index generation and make it live.",
        discussion: """
        Modes: build (default: a fresh generation of --shards base shards from CODES files);
        --append (keep the live generation's shards and add delta shards with the new and \
        changed videos; --delete FILE hides the external ids listed in FILE, one per line);
        --compact (rewrite the live generation's live entries into fresh base shards).
        Every run writes a complete generation INDEX/gNNNNNN, then switches INDEX/CURRENT \
        atomically; an interrupted run leaves the previous generation live.
        Before anything is written, safety checks run; a refusal changes nothing: a codes \
        file that cannot be read refuses the run (unless --allow-missing-inputs); a \
        generation with no live video is never published; a run that would drop more than \
        --max-shrink of the live generation's videos (deleted, or left out of a rebuild) is \
        refused unless --allow-shrink. Each run first removes what interrupted runs left: \
        temporary names, and generations that are neither CURRENT nor its ancestors.
        A build can also run in steps, on several machines sharing a file system (a Slurm \
        array): --stage DIR --part K --parts P reads every P-th codes file from the K-th and \
        spills its videos by shard into DIR; --stage DIR --build-shard S builds shard S from \
        every part; --stage DIR --index INDEX publishes the staged shards (the same checks \
        as a build; byte-identical to a one-process build of the same codes files). Every \
        step may be re-run; use a fresh DIR per build.
        Exit status: 0 done; 3 done with --allow-missing-inputs, but some codes files could \
        not be read (named on stderr) and were left out; 4 refused by a safety check \
        (nothing published, CURRENT unchanged); 2 usage error; 1 nothing was published \
        (bad bundle, codes from another bundle, conflicting inputs, write failure).
        """)

    @Option(name: .long, help: "Index directory (holds CURRENT and the generations).")
    var index: String?

    @Option(name: .long, help: "Model bundle the codes were made with (build and append).")
    var bundle: String?

    @Option(name: .long, help: "Shards to write (build: 8; append and compact: the live generation's count).")
    var shards: Int?

    @Flag(name: .long, help: "Add delta shards to the live generation.")
    var append = false

    @Flag(name: .long, help: "Merge the live generation's shards into fresh base shards.")
    var compact = false

    @Option(name: .long, help: "With --append: a file of external ids to delete, one per line.")
    var delete: String?

    @Flag(name: .long, help: "Also store float16 coarse embeddings (the codes files must hold embeddings).")
    var embeddings = false

    @Flag(name: .customLong("allow-missing-inputs"),
          help: "Publish even when some codes files cannot be read (they are left out; exit 3).")
    var allowMissingInputs = false

    @Option(name: .customLong("max-shrink"),
            help: "The largest share (0-1) of the live generation's videos a run may drop without --allow-shrink.")
    var maxShrink: Double = PublishPolicy.defaultMaxShrink

    @Flag(name: .customLong("allow-shrink"), help: "Publish however many live videos the run drops (never an empty index).")
    var allowShrink = false

    @Flag(name: .long, help: "Verify the new generation as vidx-verify does before CURRENT names it; one that does not verify is not made live (exit 1).")
    var verify = false

    @Option(name: .customLong("codes-list"), help: "A file naming codes files, one path per line (added after the CODES arguments).")
    var codesList: String?

    @Option(name: .long, help: "A staged build's directory (see the discussion).")
    var stage: String?

    @Option(name: .long, help: "With --stage: read part K of --parts (codes files K, K + P, ...).")
    var part: Int?

    @Option(name: .long, help: "With --stage --part: the number of parts.")
    var parts: Int = 1

    @Option(name: .customLong("build-shard"), help: "With --stage: build shard S from every part.")
    var buildShard: Int?

    @OptionGroup var summary: SummaryOptions

    @Argument(help: "Codes files (UNIT.codes.safetensors).")
    var codes: [String] = []

    /// The CODES arguments, then the files --codes-list names.
    func allCodes() throws -> [String] {
        guard let codesList else { return codes }
        return codes + (try IndexInputs.readList(path: codesList, of: "codes files"))
    }

    func validate() throws {
        if let shards, shards < 1 || shards > 9999 { throw ValidationError("--shards must be between 1 and 9999") }
        if stage != nil {
            if append || compact || delete != nil { throw ValidationError("--stage is for builds: no --append, --compact or --delete") }
            if bundle == nil { throw ValidationError("--stage needs --bundle") }
            if part != nil && buildShard != nil { throw ValidationError("--part and --build-shard are separate steps") }
            if let part, !(parts >= 1 && part >= 0 && part < parts) { throw ValidationError("--part must be between 0 and --parts - 1") }
            if part == nil {
                if !codes.isEmpty || codesList != nil { throw ValidationError("codes files are read by the --part step only") }
                if buildShard == nil && index == nil { throw ValidationError("--stage without --part or --build-shard publishes: give --index") }
            } else if codes.isEmpty && codesList == nil {
                throw ValidationError("give the codes files (all parts' list: each part takes its share)")
            }
            return
        }
        if part != nil || buildShard != nil { throw ValidationError("--part and --build-shard need --stage") }
        if index == nil { throw ValidationError("--index is required") }
        if append && compact { throw ValidationError("--append and --compact cannot be combined") }
        if !(maxShrink >= 0 && maxShrink <= 1) { throw ValidationError("--max-shrink must be between 0 and 1") }
        if compact {
            if !codes.isEmpty { throw ValidationError("--compact takes no codes files") }
            if delete != nil || embeddings { throw ValidationError("--compact takes no --delete or --embeddings") }
        } else {
            if bundle == nil { throw ValidationError("--bundle is required to build or append") }
            if delete != nil && !append { throw ValidationError("--delete needs --append") }
            if !append && codes.isEmpty && codesList == nil { throw ValidationError("give at least one codes file to build an index") }
        }
    }

    static func exitStatus(for error: Error) -> Int32 {
        error is PublishRefusal ? StageExit.refused : StageExit.failure
    }

    /// What `--json` prints.
    struct Summary: Encodable {
        let index: String
        let generation: String?
        let live: Int?
        let shards: Int?
        let unchanged: Int
        let skippedFiles: Int
        let failedVideos: Int
        let dropped: Int

        enum CodingKeys: String, CodingKey {
            case index, generation, live, shards, unchanged, skippedFiles = "skipped_files"
            case failedVideos = "failed_videos", dropped
        }
    }

    func run() throws {
        let mode: IndexJob.Mode = compact ? .compact(shards: shards)
            : append ? .append(deletions: delete, shards: shards) : .build(shards: shards ?? 8)
        let model = try bundle.map { path -> IndexModel in
            let b = try ModelBundle(directory: path)
            return IndexModel(bundleFingerprint: b.fingerprint, quantizer: b.quantizer)
        }
        let note: (String) -> Void = { printError("vidx-shard: \($0)") }
        let policy = PublishPolicy(maxShrink: maxShrink, allowShrink: allowShrink, verify: verify)
        let tool = IndexManifest.Tool(name: "vidx-shard", version: VidxVersion.string)
        if let stage, let model {
            if let part {
                let p = try StagedBuild.partition(stage: stage, part: part, of: parts, codes: try allCodes(), model: model,
                                                  shards: shards ?? 8, embeddings: embeddings, note: note)
                try summary.print(p, text: "\(stage): part \(part) of \(parts) staged: \(p.videos) videos from \(p.inputs.count) codes files into \(p.shards) shard runs; \(p.unreadable.count) files unreadable")
                return
            }
            if let buildShard {
                let r = try StagedBuild.buildShard(stage: stage, shard: buildShard, model: model)
                try summary.print(r, text: "\(stage)/\(r.file): shard \(buildShard) of \(r.shardCount) built: \(r.videos) videos, \(r.bytes) bytes")
                return
            }
            let outcome = try StagedBuild.publish(index: index!, stage: stage, model: model, allowMissingInputs: allowMissingInputs,
                                                  policy: policy, tool: tool, note: note)
            try report(outcome, index: index!)
            return
        }
        let outcome = try IndexJob.run(
            index: index!, mode: mode, model: model, codes: try allCodes(), embeddings: embeddings,
            allowMissingInputs: allowMissingInputs, policy: policy, tool: tool, note: note)
        try report(outcome, index: index!)
    }

    func report(_ outcome: IndexJob.Outcome, index: String) throws {
        let result = outcome.result, failed = outcome.inputs.failedVideos
        for id in result.notFound { printError("vidx-shard: delete: '\(id)' is not live in the index; nothing to delete") }
        let m = result.manifest
        let text: String
        if let m {
            text = "\(index)/\(m.generation): \(m.counts.live) live videos in \(m.shards.count) shards (\(m.config.mode)); "
                + "\(m.counts.superseded) superseded, \(m.counts.deleted) deleted; \(result.unchanged) unchanged; "
                + "\(failed) failed videos left out; \(result.dropped) dropped from the previous generation; CURRENT -> \(m.generation)"
        } else {
            text = "\(index): nothing new (\(result.unchanged) videos unchanged); CURRENT unchanged"
        }
        try summary.print(Summary(index: index, generation: m?.generation, live: m?.counts.live, shards: m?.shards.count,
                                  unchanged: result.unchanged, skippedFiles: outcome.inputs.unreadable.count,
                                  failedVideos: failed, dropped: result.dropped), text: text)
        if !outcome.inputs.unreadable.isEmpty { throw ExitCode(StageExit.someFailed) }
    }
}

ShardCommand.main()
