import Foundation
import VidxCore
import VidxQuantization

/// The codes files of a run, read one at a time into index entries: what `vidx-shard`
/// feeds the builder (which spills them by shard, so no run holds every entry at once).
///
/// Every file is checked against the model (its layout and, with embeddings, their width)
/// and against its spec (`CodesFile`); a file that fails is `unreadable` (named, left out).
/// Videos that failed encoding are counted by class and left out.
public struct IndexInputs: Sendable {
    /// Videos handed on (every usable video of every readable file, duplicates included).
    public var videos = 0
    /// The files read, by SHA-256 (recorded in the manifest).
    public var inputs: [IndexManifest.Input] = []
    /// The files that could not be used, and why.
    public var unreadable: [(path: String, problem: String)] = []
    /// Videos left out because they failed an earlier stage, by failure class.
    public var failures: [FailureClass: Int] = [:]
    public var failedVideos: Int { failures.values.reduce(0, +) }

    public init() {}

    /// Reads `paths` in order, handing every usable video to `each` as it goes (one file
    /// in memory at a time).
    /// - Parameters:
    ///   - embeddings: also keep each video's float16 coarse embedding (the files must hold
    ///     embeddings).
    ///   - note: receives one line per file that cannot be used.
    /// - Throws: `IndexError` for a file made with another bundle, or without embeddings
    ///   when they are asked for: such inputs cannot share the index at all; what `each` throws.
    public static func scan(_ paths: [String], model: IndexModel, embeddings: Bool,
                            note: (String) -> Void = { _ in },
                            each: (IndexEntry) throws -> Void) throws -> IndexInputs {
        var result = IndexInputs()
        let layout = model.layout
        let progress = ProgressLine(total: paths.count, minimumItems: 8)
        defer { progress.finish() }
        for (n, path) in paths.enumerated() {
            progress.update(done: n, failed: result.unreadable.count, current: path)
            let file: CodesFile
            do {
                file = try CodesFile(path: path)
                try file.checkShape(levels: layout.levels, subspaces: layout.subspaces, codewords: layout.codewords,
                                    hidden: layout.dimension)
            } catch {
                progress.finish()
                note("\(error)")
                result.unreadable.append((path, "\(error)"))
                continue
            }
            guard file.bundleFingerprint == model.bundleFingerprint else {
                throw IndexError(path: path, "made with bundle \(file.bundleFingerprint), but the bundle given is \(model.bundleFingerprint): codes from different bundles cannot share an index")
            }
            if embeddings && file.embeddings == nil {
                throw IndexError(path: path, "--embeddings was given but this codes file holds none (encode with vidx-encode --embeddings)")
            }
            let per = layout.codeBytes, D = layout.dimension
            for (i, video) in file.videos.enumerated() {
                if video.status == .failed {
                    result.failures[video.error?.class ?? .internal, default: 0] += 1
                    continue
                }
                var embedding: [UInt16]? = nil
                if embeddings, let e = file.embeddings {
                    let base = i * layout.vectorCount  // level 0 of video i; the width was checked
                    embedding = (0..<D).map { Float16(e[base + $0]).bitPattern }
                }
                result.videos += 1
                try each(IndexEntry(externalID: video.id, contentHash: contentHashBytes(video.contentHash),
                                    codes: Array(file.codes[(i * per)..<((i + 1) * per)]), coarseEmbedding: embedding))
            }
            result.inputs.append(.init(sha256: try SHA256Digest.hex(fileAt: path), videos: file.videos.count))
        }
        return result
    }

    /// Refuses to go on with inputs that would harm the live index: a file that could not
    /// be read (unless `allowMissing`), and, for a build, no video at all to publish.
    /// - Throws: `PublishRefusal` saying what was refused and why.
    public func checkUsable(index: String, of total: Int, allowMissing: Bool, build: Bool) throws {
        if !unreadable.isEmpty && !allowMissing {
            throw PublishRefusal(index: index, "\(unreadable.count) of the \(total) codes files could not be read (named above); publishing without them would leave out their videos. Nothing published, CURRENT unchanged; pass --allow-missing-inputs to publish the rest")
        }
        if videos == 0 && build {
            let classes = failures.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key) \($0.value)" }
                .joined(separator: ", ")
            let why = failedVideos > 0 ? "every one of the \(failedVideos) videos in the codes files failed (\(classes))"
                                       : "the codes files hold no video"
            throw PublishRefusal(index: index, "\(why): an empty index is never published; CURRENT unchanged")
        }
    }

    /// Reads a deletion list: one external id a line (LF or CRLF), surrounding spaces
    /// trimmed, blank lines skipped; a regular file.
    /// - Throws: `IndexError` naming the list.
    public static func readDeletions(path: String) throws -> [String] {
        try readList(path: path, of: "ids to delete")
    }

    /// A file's non-empty lines (a list of ids or of paths); `what` names them in errors.
    public static func readList(path: String, of what: String) throws -> [String] {
        let data: Data
        do { data = try InputFiles.read(path) } catch {
            throw IndexError(path: path, "cannot read the list of \(what): \(error)")
        }
        return JSONLines.lines(data).map { String($0.text) }
    }
}

/// A codes file's hex content hash as raw bytes; empty (unknown) unless it is a full SHA-256.
func contentHashBytes(_ hex: String) -> [UInt8] {
    guard hex.utf8.count == 64, let bytes = SHA256Digest.bytes(fromHex: hex) else { return [] }
    return bytes
}

/// One `vidx-shard` run, callable in-process: leftovers removed, inputs read and checked,
/// then a build, an append or a compaction published (or refused).
public enum IndexJob {
    public enum Mode: Sendable, Equatable {
        /// A fresh generation of `shards` base shards from the codes files.
        case build(shards: Int)
        /// Delta shards over the live generation; `deletions`: a list of ids to delete.
        case append(deletions: String?, shards: Int?)
        /// The live generation's live entries into fresh base shards.
        case compact(shards: Int?)
    }

    /// What a run did.
    public struct Outcome: Sendable {
        public var result: PublishResult
        public var inputs: IndexInputs
    }

    /// Runs one publication on `index`.
    /// - Parameters:
    ///   - model: the bundle's fingerprint and quantizer (not used by a compaction).
    ///   - note: receives one line per leftover removed and per unusable input.
    /// - Throws: `PublishRefusal` (nothing changed), `IndexError` or a write failure.
    public static func run(index: String, mode: Mode, model: IndexModel?, codes: [String], embeddings: Bool,
                           allowMissingInputs: Bool, policy: PublishPolicy, tool: IndexManifest.Tool,
                           note: @escaping (String) -> Void = { _ in }) throws -> Outcome {
        try IndexBuilder.removeLeftovers(index: index, note: note)
        if case .compact(let shards) = mode {
            let result = try IndexBuilder.compact(index: index, shards: shards, tool: tool, policy: policy, note: note)
            return Outcome(result: result, inputs: IndexInputs())
        }
        guard let model else { throw IndexError(path: index, "a build or an append needs the bundle's model") }
        var isBuild = false
        if case .build = mode { isBuild = true }
        // Read under the index lock, straight into the builder's per-shard runs; the
        // usability checks run once every file has been read, before any shard is written.
        var inputs = IndexInputs()
        let feed: IndexBuilder.EntryFeed = { add in
            inputs = try IndexInputs.scan(codes, model: model, embeddings: embeddings, note: note, each: add)
            try inputs.checkUsable(index: index, of: codes.count, allowMissing: allowMissingInputs, build: isBuild)
            return inputs.inputs
        }
        let result: PublishResult
        switch mode {
        case .build(let shards):
            result = try IndexBuilder.build(index: index, model: model, feed: feed, shards: shards, tool: tool,
                                            policy: policy, note: note)
        case .append(let list, let shards):
            let deletions = try list.map(IndexInputs.readDeletions) ?? []
            result = try IndexBuilder.append(index: index, model: model, feed: feed, deletions: deletions,
                                             shards: shards, tool: tool, policy: policy, note: note)
        case .compact:
            preconditionFailure("handled above")
        }
        return Outcome(result: result, inputs: inputs)
    }
}
