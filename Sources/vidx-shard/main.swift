// vidx-shard: codes files -> a new index generation (build, nightly append, compaction).
import ArgumentParser
import Foundation
import VidxCore
import VidxHCQ
import VidxIndex

struct ShardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vidx-shard",
        abstract: "Write codes files into a new index generation and make it live.",
        discussion: """
        Modes: build (default: a fresh generation of --shards base shards from CODES files);
        --append (keep the live generation's shards and add delta shards with the new and
        changed videos; --delete FILE hides the external ids listed in FILE, one per line);
        --compact (rewrite the live generation's live entries into fresh base shards).
        Every run writes a complete generation INDEX/gNNNNNN, then switches INDEX/CURRENT
        atomically; an interrupted run leaves the previous generation live.
        Before anything is written, safety checks run; a refusal changes nothing: a codes
        file that cannot be read refuses the run (unless --allow-missing-inputs); a
        generation with no live video is never published; a run that would drop more than
        --max-shrink of the live generation's videos (deleted, or left out of a rebuild) is
        refused unless --allow-shrink. Each run first removes what interrupted runs left:
        temporary names, and generations that are neither CURRENT nor its ancestors.
        Exit status: 0 done; 3 done with --allow-missing-inputs, but some codes files could
        not be read (named on stderr) and were left out; 4 refused by a safety check
        (nothing published, CURRENT unchanged); 2 usage error; 1 nothing was published
        (bad bundle, codes from another bundle, conflicting inputs, write failure).
        """)

    @Option(name: .long, help: "Index directory (holds CURRENT and the generations).")
    var index: String

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

    @Flag(name: .long, help: "Print a JSON summary line instead of text.")
    var json = false

    @Argument(help: "Codes files (UNIT.codes.safetensors).")
    var codes: [String] = []

    func validate() throws {
        if append && compact { throw ValidationError("--append and --compact cannot be combined") }
        if let shards, shards < 1 || shards > 9999 { throw ValidationError("--shards must be between 1 and 9999") }
        if !(maxShrink >= 0 && maxShrink <= 1) { throw ValidationError("--max-shrink must be between 0 and 1") }
        if compact {
            if !codes.isEmpty { throw ValidationError("--compact takes no codes files") }
            if delete != nil || embeddings { throw ValidationError("--compact takes no --delete or --embeddings") }
        } else {
            if bundle == nil { throw ValidationError("--bundle is required to build or append") }
            if delete != nil && !append { throw ValidationError("--delete needs --append") }
            if !append && codes.isEmpty { throw ValidationError("give at least one codes file to build an index") }
        }
    }

    func run() throws {
        let tool = IndexManifest.Tool(name: "vidx-shard", version: VidxVersion.string)
        let policy = PublishPolicy(maxShrink: maxShrink, allowShrink: allowShrink)
        let note = { (line: String) in printError("vidx-shard: \(line)") }
        let result: PublishResult
        var skipped: [String] = []
        var failedVideos = 0
        do {
            try IndexBuilder.removeLeftovers(index: index, note: note)
            if compact {
                result = try IndexBuilder.compact(index: index, shards: shards, tool: tool, policy: policy, note: note)
            } else {
                let model = try ModelBundle(directory: bundle!)
                let c = model.config
                let indexModel = IndexModel(bundleFingerprint: model.fingerprint, quantizer: model.quantizer)
                var entries: [IndexEntry] = []
                var inputs: [IndexManifest.Input] = []
                var failureClasses: [String: Int] = [:]
                let progress = ProgressLine(total: codes.count, minimumItems: 8)
                for (n, path) in codes.enumerated() {
                    progress.update(done: n, failed: skipped.count, current: path)
                    let file: CodesFile
                    do {
                        file = try CodesFile(path: path)
                        try file.checkShape(levels: c.levels, subspaces: c.pq.subspaces, codewords: c.pq.codewords,
                                            hidden: c.hiddenSize)
                    } catch {
                        progress.finish()
                        printError("vidx-shard: \(error)")
                        skipped.append(path)
                        continue
                    }
                    guard file.bundleFingerprint == model.fingerprint else {
                        throw IndexError(path: path, "made with bundle \(file.bundleFingerprint), but --bundle \(bundle!) is \(model.fingerprint): codes from different bundles cannot share an index")
                    }
                    if embeddings && file.embeddings == nil {
                        throw IndexError(path: path, "--embeddings was given but this codes file holds none (encode with vidx-encode --embeddings)")
                    }
                    let per = c.levels * c.pq.subspaces, D = c.hiddenSize
                    for (i, video) in file.videos.enumerated() {
                        if video.status == .failed {
                            failedVideos += 1
                            failureClasses[video.error?.class.rawValue ?? "failed", default: 0] += 1
                            continue
                        }
                        var embedding: [UInt16]? = nil
                        if embeddings, let e = file.embeddings {
                            let base = i * c.levels * D  // level 0 of video i; the width was checked
                            embedding = (0..<D).map { Float16(e[base + $0]).bitPattern }
                        }
                        entries.append(IndexEntry(externalID: video.id, contentHash: contentHashBytes(video.contentHash),
                                                  codes: Array(file.codes[(i * per)..<((i + 1) * per)]),
                                                  coarseEmbedding: embedding))
                    }
                    inputs.append(.init(sha256: try SHA256Digest.hex(fileAt: path), videos: file.videos.count))
                }
                progress.finish()
                if !skipped.isEmpty && !allowMissingInputs {
                    throw PublishRefusal(index: index, "\(skipped.count) of the \(codes.count) codes files could not be read (named above); publishing without them would leave out their videos. Nothing published, CURRENT unchanged; pass --allow-missing-inputs to publish the rest")
                }
                if entries.isEmpty && !append {
                    let classes = failureClasses.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
                    let why = failedVideos > 0 ? "every one of the \(failedVideos) videos in the codes files failed (\(classes))"
                                               : "the codes files hold no video"
                    throw PublishRefusal(index: index, "\(why): an empty index is never published; CURRENT unchanged")
                }
                if append {
                    var deletions: [String] = []
                    if let delete {
                        let data: Data
                        do { data = try InputFiles.read(delete) } catch {
                            throw IndexError(path: delete, "cannot read the list of ids to delete: \(error)")
                        }
                        // One external id a line (LF or CRLF), surrounding spaces trimmed.
                        deletions = JSONLines.lines(data).map { String($0.text) }
                    }
                    result = try IndexBuilder.append(index: index, model: indexModel,
                                                     entries: entries, deletions: deletions, inputs: inputs,
                                                     shards: shards, tool: tool, policy: policy, note: note)
                } else {
                    result = try IndexBuilder.build(index: index, model: indexModel,
                                                    entries: entries, inputs: inputs, shards: shards ?? 8, tool: tool,
                                                    policy: policy, note: note)
                }
            }
        } catch let refusal as PublishRefusal {
            printError("vidx-shard: \(refusal)")
            throw ExitCode(StageExit.refused)
        } catch {
            printError("vidx-shard: \(error)")
            throw ExitCode(StageExit.failure)
        }
        for id in result.notFound { printError("vidx-shard: delete: '\(id)' is not live in the index; nothing to delete") }
        if json {
            var summary: [String: String] = ["index": index, "unchanged": String(result.unchanged),
                                             "skipped_files": String(skipped.count), "failed_videos": String(failedVideos),
                                             "dropped": String(result.dropped)]
            if let m = result.manifest {
                summary["generation"] = m.generation
                summary["live"] = String(m.counts.live)
                summary["shards"] = String(m.shards.count)
            }
            print(String(decoding: try makeJSONEncoder().encode(summary), as: UTF8.self))
        } else if let m = result.manifest {
            print("\(index)/\(m.generation): \(m.counts.live) live videos in \(m.shards.count) shards (\(m.config.mode)); "
                  + "\(m.counts.superseded) superseded, \(m.counts.deleted) deleted; \(result.unchanged) unchanged; "
                  + "\(failedVideos) failed videos left out; \(result.dropped) dropped from the previous generation; CURRENT -> \(m.generation)")
        } else {
            print("\(index): nothing new (\(result.unchanged) videos unchanged); CURRENT unchanged")
        }
        if !skipped.isEmpty { throw ExitCode(StageExit.someFailed) }
    }
}

/// A codes file's hex content hash as raw bytes; empty (unknown) unless it is a full SHA-256.
func contentHashBytes(_ hex: String) -> [UInt8] {
    guard hex.utf8.count == 64, let bytes = SHA256Digest.bytes(fromHex: hex) else { return [] }
    return bytes
}

do {
    let command = try ShardCommand.parse()
    try command.validate()
    try command.run()
} catch let code as ExitCode {
    exit(code.rawValue)
} catch {
    let exitCode = ShardCommand.exitCode(for: error)
    if exitCode == .success {
        print(ShardCommand.fullMessage(for: error))
        exit(0)
    }
    printError(ShardCommand.fullMessage(for: error))
    exit(exitCode == .validationFailure ? StageExit.usage : exitCode.rawValue)
}
