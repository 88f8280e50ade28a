// vidx-encode: a work unit's features -> HCQ codes (and optionally float embeddings).
import ArgumentParser
import Foundation
import VidxCore
import VidxHCQ
import VidxNumerics

struct EncodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vidx-encode",
        abstract: "Encode a work unit's features into HCQ codes with a model bundle.",
        discussion: """
        Reads UNIT.features.safetensors (Schemas/features.md), runs the bundle's HCQ video
        encoder and writes UNIT.codes.safetensors (Schemas/codes.md) atomically. A video
        whose features are unusable (wrong width, NaN or infinity, unknown expert, failed
        extraction, no expert with features, an encoder output that is not finite) is
        recorded as failed in the output and the others go on. An expert whose first value
        is NaN is treated as missing, as HCQ's reference does; each is named on stderr and
        counted in the summary.
        Exit status: 0 every video encoded; 3 some videos failed; 2 usage error;
        1 the bundle, the features file or the output could not be used.
        """)

    @Option(name: .long, help: "Model bundle directory (bundle.json + weights.safetensors).")
    var bundle: String

    @Option(name: .long, help: "The work unit's features file.")
    var features: String

    @Option(name: .long, help: "Where to write the codes file.")
    var out: String

    @Flag(name: .long, help: "Also store the float embeddings (levels x hidden per video).")
    var embeddings = false

    @Option(name: .long, help: "Videos per transformer pass.")
    var batch: Int = 16

    @Option(name: .long, help: "Threads (default: all cores); the output bytes do not depend on it.")
    var threads: Int?

    @Flag(name: .long, help: "Print a JSON summary line instead of text.")
    var json = false

    func validate() throws {
        guard batch >= 1 && batch <= 4096 else { throw ValidationError("--batch must be between 1 and 4096") }
        if let threads, threads < 1 || threads > 256 { throw ValidationError("--threads must be between 1 and 256") }
    }

    func run() throws {
        BLAS.setThreads(threads ?? ProcessInfo.processInfo.activeProcessorCount)
        MemoryTuning.reuseLargeAllocations()
        let model: ModelBundle
        let unit: FeaturesFile
        do {
            model = try ModelBundle(directory: bundle)
            unit = try FeaturesFile(path: features)
        } catch {
            printError("vidx-encode: \(error)")
            throw ExitCode(StageExit.failure)
        }
        for spec in model.config.experts {
            if let id = unit.extractors[spec.name], id != spec.extractor {
                printError("vidx-encode: \(features): expert '\(spec.name)' was extracted with '\(id)', but bundle \(bundle) was trained on '\(spec.extractor)'")
                throw ExitCode(StageExit.failure)
            }
        }
        // Every expert a video holds must be declared, or its extractor goes unchecked.
        do {
            if let (video, expert) = try Self.undeclaredExpert(in: features, videos: unit.videos.count, extractors: unit.extractors) {
                let declared = unit.extractors.keys.sorted().joined(separator: ", ")
                printError("vidx-encode: \(features): video '\(unit.videos[video].id)' holds expert '\(expert)', which the file's 'extractors' metadata does not declare (it declares: \(declared.isEmpty ? "none" : declared)): its extractor cannot be checked against the bundle (Schemas/features.md)")
                throw ExitCode(StageExit.failure)
            }
        } catch let e as ExitCode { throw e } catch {
            printError("vidx-encode: \(error)")
            throw ExitCode(StageExit.failure)
        }
        let started = Date()
        let encoder = HCQEncoder(bundle: model, batchSize: batch)
        let config = model.config
        let perVideo = config.levels * config.pq.subspaces
        var codes = [UInt8](repeating: 0, count: unit.videos.count * perVideo)
        var floats: [Float]? = embeddings ? [Float](repeating: 0, count: unit.videos.count * config.levels * config.hiddenSize) : nil
        var records = unit.videos
        var failed = 0
        var nanMasked = 0   // (video, expert) pairs dropped because the first value is NaN
        // Read and encode in chunks so memory stays bounded for large units.
        let progress = ProgressLine(total: unit.videos.count, minimumItems: 64)
        var start = 0
        while start < unit.videos.count {
            let end = min(unit.videos.count, start + batch * 4)
            var inputs: [VideoFeatures] = []
            var positions: [Int] = []
            for i in start..<end {
                if records[i].status == .failed {
                    failed += 1
                    continue
                }
                do {
                    let video = VideoFeatures(experts: try unit.experts(of: i))
                    for name in video.nanMaskedExperts {
                        nanMasked += 1
                        progress.finish()
                        printError("vidx-encode: warning: \(features): video '\(records[i].id)': expert '\(name)' has NaN as its first value: treated as missing (HCQ's rule; NaN elsewhere fails the video); check the extractor or importer that wrote it")
                    }
                    inputs.append(video)
                    positions.append(i)
                } catch {
                    records[i].status = .failed
                    records[i].error = .init(class: .badFeatures, message: "\(error)")
                    failed += 1
                }
            }
            for (j, result) in encoder.encode(inputs).enumerated() {
                let i = positions[j]
                switch result {
                case .success(let enc):
                    codes.replaceSubrange((i * perVideo)..<((i + 1) * perVideo), with: enc.codes)
                    if floats != nil {
                        let n = enc.embeddings.count
                        floats!.replaceSubrange((i * n)..<((i + 1) * n), with: enc.embeddings)
                    }
                case .failure(let e):
                    records[i].status = .failed
                    records[i].error = .init(class: e.kind, message: e.message)
                    failed += 1
                }
            }
            start = end
            unit.releaseResidentPages()  // the chunk's features were copied; keep RSS near one chunk
            progress.update(done: start, failed: failed, current: features)
        }
        progress.finish()
        do {
            try CodesFile.write(to: out, videos: records, codes: codes, levels: config.levels,
                                subspaces: config.pq.subspaces, codewords: config.pq.codewords,
                                embeddings: floats, hidden: config.hiddenSize,
                                bundleFingerprint: model.fingerprint, featuresBundleFingerprint: unit.bundleFingerprint)
        } catch {
            printError("vidx-encode: \(error)")
            throw ExitCode(StageExit.failure)
        }
        let seconds = Date().timeIntervalSince(started)
        for r in records where r.status == .failed {
            printError("vidx-encode: \(features): video '\(r.id)': \(r.error?.class.rawValue ?? "failed"): \(r.error?.message ?? "")")
        }
        let ok = records.count - failed
        if json {
            let summary: [String: String] = ["out": out, "videos": String(records.count), "ok": String(ok),
                                             "failed": String(failed), "nan_masked_experts": String(nanMasked),
                                             "bundle_fingerprint": model.fingerprint,
                                             "seconds": String(format: "%.3f", seconds)]
            print(String(decoding: try makeJSONEncoder().encode(summary), as: UTF8.self))
        } else {
            print(String(format: "%@: %d videos, %d encoded, %d failed, %d expert(s) masked (first value NaN), %.2f s (%.1f videos/s); bundle %@",
                         out, records.count, ok, failed, nanMasked, seconds, Double(ok) / max(seconds, 1e-9),
                         String(model.fingerprint.prefix(16))))
        }
        if failed > 0 { throw ExitCode(StageExit.someFailed) }
    }
}

extension EncodeCommand {
    /// The first (video, expert) of a features file whose `v{i}/{E}/features` tensor names an
    /// expert that `extractors` does not declare, or nil. Reads the header only.
    /// - Throws: `SafeTensorsError` when the file cannot be read.
    static func undeclaredExpert(in path: String, videos: Int, extractors: [String: String]) throws -> (Int, String)? {
        let file = try SafeTensorsFile(path: path)
        for name in file.names where name.hasPrefix("v") && name.hasSuffix("/features") {
            let body = name.dropFirst().dropLast("/features".count)
            guard let slash = body.firstIndex(of: "/"), let video = Int(body[..<slash]), String(video) == body[..<slash],
                  video < videos else { continue }
            let expert = String(body[body.index(after: slash)...])
            if extractors[expert] == nil { return (video, expert) }
        }
        return nil
    }
}

do {
    let command = try EncodeCommand.parse()
    try command.validate()
    try command.run()
} catch let code as ExitCode {
    exit(code.rawValue)
} catch {
    let exitCode = EncodeCommand.exitCode(for: error)
    if exitCode == .success {
        print(EncodeCommand.fullMessage(for: error))
        exit(0)
    }
    printError(EncodeCommand.fullMessage(for: error))
    exit(exitCode == .validationFailure ? StageExit.usage : exitCode.rawValue)
}
