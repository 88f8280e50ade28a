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
        Exit status: 0 done; 3 done, but some codes files could not be read (named on
        stderr) and were left out; 2 usage error; 1 nothing was published (bad bundle,
        codes from another bundle, conflicting inputs, write failure).
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

    @Flag(name: .long, help: "Print a JSON summary line instead of text.")
    var json = false

    @Argument(help: "Codes files (UNIT.codes.safetensors).")
    var codes: [String] = []

    func validate() throws {
        if append && compact { throw ValidationError("--append and --compact cannot be combined") }
        if let shards, shards < 1 || shards > 9999 { throw ValidationError("--shards must be between 1 and 9999") }
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
        let result: PublishResult
        var skipped: [String] = []
        var failedVideos = 0
        do {
            if compact {
                result = try IndexBuilder.compact(index: index, shards: shards, tool: tool)
            } else {
                let model = try ModelBundle(directory: bundle!)
                let c = model.config
                let shape = IndexShape(bundleFingerprint: model.fingerprint, levels: c.levels, subspaces: c.pq.subspaces,
                                       codewords: c.pq.codewords, dimension: c.hiddenSize)
                var entries: [IndexEntry] = []
                var inputs: [IndexManifest.Input] = []
                let progress = ProgressLine(total: codes.count, minimumItems: 8)
                for (n, path) in codes.enumerated() {
                    progress.update(done: n, failed: skipped.count, current: path)
                    let file: CodesFile
                    do { file = try CodesFile(path: path) } catch {
                        printError("vidx-shard: \(error)")
                        skipped.append(path)
                        continue
                    }
                    guard file.bundleFingerprint == model.fingerprint else {
                        throw IndexError(path: path, "made with bundle \(file.bundleFingerprint), but --bundle \(bundle!) is \(model.fingerprint): codes from different bundles cannot share an index")
                    }
                    guard file.levels == c.levels, file.subspaces == c.pq.subspaces, file.codewords == c.pq.codewords else {
                        throw IndexError(path: path, "codes shape \(file.levels) x \(file.subspaces) (K \(file.codewords)) differs from the bundle's")
                    }
                    if embeddings && file.embeddings == nil {
                        throw IndexError(path: path, "--embeddings was given but this codes file holds none (encode with vidx-encode --embeddings)")
                    }
                    let per = c.levels * c.pq.subspaces, D = c.hiddenSize
                    for (i, video) in file.videos.enumerated() {
                        if video.status == "failed" { failedVideos += 1; continue }
                        var embedding: [UInt16]? = nil
                        if embeddings, let e = file.embeddings {
                            let base = i * c.levels * D
                            embedding = (0..<D).map { Float16(e[base + $0]).bitPattern }
                        }
                        entries.append(IndexEntry(externalID: video.id, contentHash: contentHashBytes(video.contentHash),
                                                  codes: Array(file.codes[(i * per)..<((i + 1) * per)]),
                                                  coarseEmbedding: embedding))
                    }
                    inputs.append(.init(sha256: try SHA256Digest.hex(fileAt: path), videos: file.videos.count))
                }
                progress.finish()
                if append {
                    var deletions: [String] = []
                    if let delete {
                        guard let text = try? String(contentsOfFile: delete, encoding: .utf8) else {
                            throw IndexError(path: delete, "cannot read the list of ids to delete")
                        }
                        deletions = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
                            .filter { !$0.isEmpty }
                    }
                    result = try IndexBuilder.append(index: index, shape: shape, codebooks: model.normalizedCodebooks,
                                                     entries: entries, deletions: deletions, inputs: inputs,
                                                     shards: shards, tool: tool)
                } else {
                    result = try IndexBuilder.build(index: index, shape: shape, codebooks: model.normalizedCodebooks,
                                                    entries: entries, inputs: inputs, shards: shards ?? 8, tool: tool)
                }
            }
        } catch {
            printError("vidx-shard: \(error)")
            throw ExitCode(StageExit.failure)
        }
        for id in result.notFound { printError("vidx-shard: delete: '\(id)' is not live in the index; nothing to delete") }
        if json {
            var summary: [String: String] = ["index": index, "unchanged": String(result.unchanged),
                                             "skipped_files": String(skipped.count), "failed_videos": String(failedVideos)]
            if let m = result.manifest {
                summary["generation"] = m.generation
                summary["live"] = String(m.counts.live)
                summary["shards"] = String(m.shards.count)
            }
            print(String(decoding: try makeJSONEncoder().encode(summary), as: UTF8.self))
        } else if let m = result.manifest {
            print("\(index)/\(m.generation): \(m.counts.live) live videos in \(m.shards.count) shards (\(m.config.mode)); "
                  + "\(m.counts.superseded) superseded, \(m.counts.deleted) deleted; \(result.unchanged) unchanged; "
                  + "\(failedVideos) failed videos left out; CURRENT -> \(m.generation)")
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
