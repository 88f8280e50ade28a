// vidx-extract: a work unit of videos -> one features file (every expert, one decode per video).
import ArgumentParser
import Foundation
import VidxCore
import VidxExtract
import VidxHCQ
import VidxNumerics

struct ExtractCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vidx-extract",
        abstract: "Decode each video of a work unit once and run the bundle's experts on it.",
        discussion: """
        UNIT.jsonl lists the videos, one {"id": ..., "path": ...} object a line
        (Schemas/work-unit.schema.json). Writes UNIT.features.safetensors
        (Schemas/features.md) and, beside it, UNIT.stats.json (per video: status, error,
        frames and audio seconds decoded, seconds decoding and in each expert), both
        atomically. Frames are sampled at 4 fps, 224 x 224 (centre crop); the appearance
        expert takes one frame a second, motion all of them; audio at 16 kHz mono.
        Experts the bundle names that vidx-extract cannot run (face, OCR, speech, ...) come
        from --import LIST.jsonl, in vidx-import-features' format: each video's files are
        merged into the same features file. A video the list does not name, or names without
        one of those experts, has that expert missing (HCQ masks it); a file that cannot be
        used fails the video. A video from which no expert got a single row is failed
        (no_features), never stored ok.
        A video that fails is recorded with its error and the others go on.
        Both outputs are written to temporary names first, then the features file and the
        stats file last (its presence means the unit is done); an older stats file is
        removed before the new features file appears. If either cannot be written, neither
        appears.
        The appearance expert's CNN weights are --cnn PATH; else
        $VIDX_MODELS/efficientnet-lite0/weights.safetensors; else, in the executable's
        directory and each directory above it, models/efficientnet-lite0/weights.safetensors
        or share/vidx/models/efficientnet-lite0/weights.safetensors (a source tree's
        .build/release finds ./models, an installed PREFIX/bin finds PREFIX/share/vidx/models).
        Exit status: 0 every video extracted; 3 some failed; 2 usage error; 1 the bundle,
        the CNN weights, the unit or the output could not be used.
        """)

    @Option(name: .long, help: "Model bundle whose experts to extract.")
    var bundle: String

    @Option(name: .long, help: "Work unit (JSON Lines: id, path).")
    var unit: String

    @Option(name: .long, help: "Features file to write.")
    var out: String

    @Option(name: .customLong("import"),
            help: "Import list (JSON Lines, as vidx-import-features reads) for the experts vidx-extract cannot run.")
    var importList: String?

    @Option(name: .long, help: "Videos processed at once.")
    var workers: Int = 1

    @Option(name: .long, help: "Converted EfficientNet-Lite0 weights (make models); default: $VIDX_MODELS, else models/ or share/vidx/models/ beside or above the executable.")
    var cnn: String?

    @Option(name: .long, help: "Frames per CNN batch.")
    var batch: Int = 16

    @Flag(name: .long, help: "Print a JSON summary line instead of text.")
    var json = false

    func validate() throws {
        guard workers >= 1 && workers <= 64 else { throw ValidationError("--workers must be between 1 and 64") }
        guard batch >= 1 && batch <= 1024 else { throw ValidationError("--batch must be between 1 and 1024") }
    }

    /// `UNIT.features.safetensors` -> `UNIT.stats.json`.
    var statsPath: String {
        out.hasSuffix(".features.safetensors") ? String(out.dropLast(".features.safetensors".count)) + ".stats.json"
                                               : out + ".stats.json"
    }

    func run() throws {
        let started = Date()
        let model: BundleConfig, fingerprint: String, videos: [UnitVideo], registry: ExpertRegistry
        var experts: [(name: String, extractorID: String)] = []
        var imported: [(name: String, width: Int, extractorID: String)] = []
        var importLines: [ExternalID: ImportLine] = [:]
        do {
            let b = try ModelBundle(directory: bundle)
            model = b.config
            fingerprint = b.fingerprint
            var problems: [String] = []
            let needsCNN = model.experts.contains { $0.extractor == AppearanceExpert.extractorID }
            var cnnWeights: String? = nil
            if needsCNN { cnnWeights = try CNNWeights.locate(explicit: cnn) }
            registry = try ExpertRegistry(cnnWeights: cnnWeights, cnnBatch: batch)
            for spec in model.experts {
                guard ExpertRegistry.builtinIDs.contains(spec.extractor), let probe = registry.make(extractorID: spec.extractor) else {
                    if importList != nil {
                        imported.append((spec.name, spec.width, spec.extractor))
                        continue
                    }
                    problems.append("expert '\(spec.name)' was trained on '\(spec.extractor)', which vidx-extract cannot run (built in: \(ExpertRegistry.builtinIDs.joined(separator: ", "))); import such features with --import LIST.jsonl (or vidx-import-features)")
                    continue
                }
                if probe.descriptor.width != spec.width {
                    problems.append("expert '\(spec.name)': the bundle expects width \(spec.width), '\(spec.extractor)' gives \(probe.descriptor.width)")
                }
                experts.append((spec.name, spec.extractor))
            }
            guard problems.isEmpty else { throw StageFileError(path: bundle, message: problems.joined(separator: "; ")) }
            videos = try UnitVideo.readUnit(path: unit)
            if let importList {
                let names = Set(imported.map(\.name))
                let lines = try FeatureImport.readList(path: importList)   // ids valid and unique by bytes
                for line in lines {
                    if let other = line.experts.keys.sorted().first(where: { !names.contains($0) }) {
                        let known = names.isEmpty ? "none: vidx-extract runs all of this bundle's experts" : names.sorted().joined(separator: ", ")
                        throw StageFileError(path: importList, message: "video '\(line.id)' names expert '\(other)', which is not one of the bundle's imported experts (\(known))")
                    }
                }
                importLines = FeatureImport.byID(lines)
            }
        } catch {
            printError("vidx-extract: \(error)")
            throw ExitCode(StageExit.failure)
        }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let threadsPerWorker = max(1, cores / workers)
        // Per-worker threads for the experts' loops and the CNN's tiles; OpenBLAS stays
        // single-threaded (Documentation/Determinism.md).
        BLAS.setThreads(threadsPerWorker)
        MemoryTuning.reuseLargeAllocations()
        let extractor = VideoExtractor(registry: registry, experts: experts, decodeThreads: threadsPerWorker)

        // Workers take the next video in unit order; results land in their slot.
        let results = UnsafeMutableBufferPointer<ExtractedVideo?>.allocate(capacity: max(videos.count, 1))
        results.initialize(repeating: nil)
        defer { results.deinitialize(); results.deallocate() }
        let progress = ProgressLine(total: videos.count, minimumItems: 2)
        let lock = NSLock()
        nonisolated(unsafe) var next = 0, done = 0, failed = 0
        nonisolated(unsafe) let slots = results
        let list = videos
        DispatchQueue.concurrentPerform(iterations: min(workers, max(videos.count, 1))) { _ in
            while true {
                lock.lock()
                let i = next
                next += 1
                lock.unlock()
                guard i < list.count else { return }
                let result = extractor.extract(list[i])
                lock.lock()
                slots[i] = result
                done += 1
                if result.record.status == .failed {
                    failed += 1
                    progress.finish()
                    printError("vidx-extract: \(list[i].id) (\(list[i].path)): \(result.record.error?.class.rawValue ?? "failed"): \(result.record.error?.message ?? "")")
                }
                progress.update(done: done, failed: failed, current: list[i].path)
                lock.unlock()
            }
        }
        progress.finish()

        let extractors = experts.map { ($0.name, $0.extractorID) } + imported.map { ($0.name, $0.extractorID) }
        var writer = FeaturesWriter(bundleFingerprint: fingerprint, extractors: Dictionary(uniqueKeysWithValues: extractors))
        var stats: [VideoExtractStats] = []
        let importBase = importList.map { URL(fileURLWithPath: $0).deletingLastPathComponent().path } ?? ""
        var missingImports = 0
        for i in videos.indices {
            var r = results[i]!
            let wasFailed = r.record.status == .failed
            if !imported.isEmpty {
                let missing = FeatureImport.merge(into: &r, line: importLines[ExternalID(videos[i].id)],
                                                  wanted: imported.map { ($0.name, $0.width) }, base: importBase)
                missingImports += missing.count
            }
            r.failIfNoFeatures()
            if !wasFailed && r.record.status == .failed {
                failed += 1
                printError("vidx-extract: \(videos[i].id) (\(videos[i].path)): \(r.record.error?.class.rawValue ?? "failed"): \(r.record.error?.message ?? "")")
            }
            writer.add(r.record, experts: r.experts)
            stats.append(r.stats)
        }
        do {
            try publish(features: writer, stats: try makeJSONEncoder(pretty: true).encode(stats))
        } catch {
            printError("vidx-extract: \(error)")
            throw ExitCode(StageExit.failure)
        }
        if missingImports > 0 {
            printError("vidx-extract: note: \(missingImports) imported expert(s) missing across the unit's videos (not in \(importList ?? ""))")
        }
        let seconds = Date().timeIntervalSince(started)
        if json {
            let summary = ["out": out, "stats": statsPath, "videos": String(videos.count), "failed": String(failed),
                           "seconds": String(format: "%.3f", seconds)]
            print(String(decoding: try makeJSONEncoder().encode(summary), as: UTF8.self))
        } else {
            print(String(format: "%@: %d videos, %d failed, %.2f s; stats in %@", out, videos.count, failed, seconds, statsPath))
        }
        if failed > 0 { throw ExitCode(StageExit.someFailed) }
    }
}

extension ExtractCommand {
    /// Publishes the unit's two outputs together: both staged (written and fsynced under
    /// temporary names, where a full disk fails), the older stats file removed, then the
    /// features file committed and the stats file last. The stats file's presence means
    /// the unit is done, so a kill at any point never pairs new features with old stats;
    /// if the stats file cannot be committed, the new features file is removed again.
    /// - Throws: `FileWriteError` naming the file and the failed call; nothing new is
    ///   left at either path then.
    func publish(features writer: FeaturesWriter, stats: Data) throws {
        let stagedFeatures = try writer.stage(to: out)
        let stagedStats = try AtomicFile.stage(stats, to: statsPath)
        if unlink(statsPath) != 0 && errno != ENOENT {
            let e = errno
            throw FileWriteError(path: statsPath, operation: "remove the older stats file", errno: e)
        }
        try stagedFeatures.commit()
        do { try stagedStats.commit() } catch {
            unlink(out)
            AtomicFile.syncDirectory(AtomicFile.directory(of: out))
            throw error
        }
    }
}

/// Where the appearance expert's CNN weights are found when `--cnn` is not given.
enum CNNWeights {
    /// The weights file's path below a models directory.
    static let relative = "efficientnet-lite0/weights.safetensors"

    /// `explicit` if given; else `$VIDX_MODELS/efficientnet-lite0/weights.safetensors`
    /// if `VIDX_MODELS` is set; else the first of `models/...` and `share/vidx/models/...`
    /// found in the executable's directory or one above it.
    /// - Throws: `StageFileError` naming every place looked at.
    static func locate(explicit: String?) throws -> String {
        if let explicit { return explicit }   // ConvNet names it if it cannot be read
        if let models = ProcessInfo.processInfo.environment["VIDX_MODELS"], !models.isEmpty {
            let path = models + "/" + relative
            guard isRegularFile(path) else {
                throw StageFileError(path: path, message: "no EfficientNet-Lite0 weights here (looked here because VIDX_MODELS=\(models); make models builds them, or pass --cnn PATH)")
            }
            return path
        }
        var looked: [String] = []
        var dir = URL(fileURLWithPath: executablePath()).deletingLastPathComponent().standardizedFileURL.path
        while true {
            for candidate in [dir + "/models/" + relative, dir + "/share/vidx/models/" + relative] {
                let path = candidate.hasPrefix("//") ? String(candidate.dropFirst()) : candidate
                if isRegularFile(path) { return path }
                looked.append(path)
            }
            let parent = (dir as NSString).deletingLastPathComponent
            if parent == dir || parent.isEmpty { break }
            dir = parent
        }
        throw StageFileError(path: relative, message: "EfficientNet-Lite0 weights not found (no --cnn PATH, VIDX_MODELS not set); looked in: \(looked.joined(separator: ", ")). Run make models, or pass --cnn PATH, or set VIDX_MODELS to a directory holding \(relative)")
    }

    /// This executable's real path (symbolic links resolved), so that an installed
    /// PREFIX/bin finds PREFIX/share/vidx/models.
    static func executablePath() -> String {
        if let real = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return real }
        let given = Bundle.main.executablePath ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: given).resolvingSymlinksInPath().path
    }

    static func isRegularFile(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }
}

do {
    let command = try ExtractCommand.parse()
    try command.validate()
    try command.run()
} catch let code as ExitCode {
    exit(code.rawValue)
} catch {
    let exitCode = ExtractCommand.exitCode(for: error)
    if exitCode == .success {
        print(ExtractCommand.fullMessage(for: error))
        exit(0)
    }
    printError(ExtractCommand.fullMessage(for: error))
    exit(exitCode == .validationFailure ? StageExit.usage : exitCode.rawValue)
}
