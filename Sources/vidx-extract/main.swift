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
        A video that fails is recorded with its error and the others go on.
        Exit status: 0 every video extracted; 3 some failed; 2 usage error; 1 the bundle,
        the CNN weights, the unit or the output could not be used.
        """)

    @Option(name: .long, help: "Model bundle whose experts to extract.")
    var bundle: String

    @Option(name: .long, help: "Work unit (JSON Lines: id, path).")
    var unit: String

    @Option(name: .long, help: "Features file to write.")
    var out: String

    @Option(name: .long, help: "Videos processed at once.")
    var workers: Int = 1

    @Option(name: .long, help: "Converted EfficientNet-Lite0 weights (make models).")
    var cnn: String = "models/efficientnet-lite0/weights.safetensors"

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
        do {
            let b = try ModelBundle(directory: bundle)
            model = b.config
            fingerprint = b.fingerprint
            var problems: [String] = []
            let needsCNN = model.experts.contains { $0.extractor == AppearanceExpert.extractorID }
            registry = try ExpertRegistry(cnnWeights: needsCNN ? cnn : nil, cnnBatch: batch)
            for spec in model.experts {
                guard ExpertRegistry.builtinIDs.contains(spec.extractor), let probe = registry.make(extractorID: spec.extractor) else {
                    problems.append("expert '\(spec.name)' was trained on '\(spec.extractor)', which vidx-extract cannot run (built in: \(ExpertRegistry.builtinIDs.joined(separator: ", "))); import such features with vidx-import-features")
                    continue
                }
                if probe.descriptor.width != spec.width {
                    problems.append("expert '\(spec.name)': the bundle expects width \(spec.width), '\(spec.extractor)' gives \(probe.descriptor.width)")
                }
                experts.append((spec.name, spec.extractor))
            }
            guard problems.isEmpty else { throw StageFileError(path: bundle, message: problems.joined(separator: "; ")) }
            videos = try UnitVideo.readUnit(path: unit)
        } catch {
            printError("vidx-extract: \(error)")
            throw ExitCode(StageExit.failure)
        }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        BLAS.setThreads(max(1, cores / workers))
        MemoryTuning.reuseLargeAllocations()
        let extractor = VideoExtractor(registry: registry, experts: experts, decodeThreads: max(1, cores / workers))

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
                if result.record.status == "failed" {
                    failed += 1
                    progress.finish()
                    printError("vidx-extract: \(list[i].id) (\(list[i].path)): \(result.record.error?.class ?? "failed"): \(result.record.error?.message ?? "")")
                }
                progress.update(done: done, failed: failed, current: list[i].path)
                lock.unlock()
            }
        }
        progress.finish()

        var writer = FeaturesWriter(bundleFingerprint: fingerprint,
                                    extractors: Dictionary(uniqueKeysWithValues: experts.map { ($0.name, $0.extractorID) }))
        var stats: [VideoExtractStats] = []
        for i in videos.indices {
            let r = results[i]!
            writer.add(r.record, experts: r.experts)
            stats.append(r.stats)
        }
        do {
            try writer.write(to: out)
            try AtomicFile.write(try makeJSONEncoder(pretty: true).encode(stats), to: statsPath)
        } catch {
            printError("vidx-extract: \(error)")
            throw ExitCode(StageExit.failure)
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
