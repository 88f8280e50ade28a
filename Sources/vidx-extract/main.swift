// vidx-extract: a work unit of videos -> one features file (every expert, one decode per video).
import ArgumentParser
import VidxCLI
import Foundation
import VidxCore
import VidxExtract
import VidxHCQ
import VidxNumerics

struct ExtractCommand: StageCommand {
    static let configuration = CommandConfiguration(
        commandName: "vidx-extract",
        abstract: "Decode each video of a work unit once and run the bundle's experts on it.",
        discussion: """
        UNIT.jsonl lists the videos, one {"id": ..., "path": ...} object a line \
        (Schemas/work-unit.schema.json). Writes UNIT.features.safetensors \
        (Schemas/features.md) and, beside it, UNIT.stats.json (per video: status, error, \
        frames and audio seconds decoded, seconds decoding and in each expert), both \
        atomically. Frames are sampled at 4 fps, 224 x 224 (centre crop); the appearance \
        expert takes one frame a second, motion all of them; audio at 16 kHz mono.
        Experts the bundle names that vidx-extract cannot run (face, OCR, speech, ...) come \
        from --import LIST.jsonl, in vidx-import-features' format: each video's files are \
        merged into the same features file. A video the list does not name, or names without \
        one of those experts, has that expert missing (HCQ masks it); a file that cannot be \
        used fails the video. A video from which no expert got a single row is failed \
        (no_features), never stored ok.
        A video that fails is recorded with its error and the others go on.
        Both outputs are written to temporary names first, then the features file and the \
        stats file last (its presence means the unit is done); an older stats file is \
        removed before the new features file appears. If either cannot be written, neither \
        appears.
        The appearance expert's CNN weights are --cnn PATH; else \
        $VIDX_MODELS/efficientnet-lite0/weights.safetensors; else, in the executable's \
        directory and each directory above it, models/efficientnet-lite0/weights.safetensors \
        or share/vidx/models/efficientnet-lite0/weights.safetensors (a source tree's \
        .build/release finds ./models, an installed PREFIX/bin finds PREFIX/share/vidx/models).
        Each video gets the decoder's limits (--max-pixels, --max-duration, --timeout: a \
        video over one fails as too_large or timed_out). --journal FILE records which \
        videos are in flight, for the pipeline's crash isolation.
        Exit status: 0 every video extracted; 3 some failed; 2 usage error; 1 the bundle, \
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

    @OptionGroup var limitOptions: LimitOptions

    @Option(name: .long, help: "Record 'start N' and 'end N' per video in this file, so a crash names the videos in flight.")
    var journal: String?

    @OptionGroup var summary: SummaryOptions

    func validate() throws {
        guard workers >= 1 && workers <= 64 else { throw ValidationError("--workers must be between 1 and 64") }
        guard batch >= 1 && batch <= 1024 else { throw ValidationError("--batch must be between 1 and 1024") }
    }

    /// What `--json` prints.
    struct Summary: Encodable {
        let out: String, stats: String
        let videos: Int, failed: Int
        let seconds: Double
    }

    func run() throws {
        let started = Date()
        let model = try ModelBundle(directory: bundle)
        let experts = model.config.experts.map { FeatureImport.Expert(name: $0.name, width: $0.width, extractor: $0.extractor) }
        let extractor = try UnitExtractor(
            bundleFingerprint: model.fingerprint, bundle: bundle, experts: experts,
            cnnWeights: UnitExtractor.needsCNN(experts) ? try CNNWeights.locate(explicit: cnn) : nil,
            cnnBatch: batch, workers: workers, importList: importList, limits: limitOptions.limits)
        MemoryTuning.reuseLargeAllocations()
        let outcome = try extractor.run(unit: unit, out: out, journal: journal, note: { printError("vidx-extract: \($0)") })
        if outcome.missingImports > 0 {
            printError("vidx-extract: note: \(outcome.missingImports) imported expert(s) missing across the unit's videos (not in \(importList ?? ""))")
        }
        let seconds = Date().timeIntervalSince(started), videos = outcome.records.count, failed = outcome.failed
        try summary.print(Summary(out: out, stats: outcome.statsPath, videos: videos, failed: failed,
                                  seconds: (seconds * 1000).rounded() / 1000),
                          text: String(format: "%@: %d videos, %d failed, %.2f s; stats in %@", out, videos, failed, seconds,
                                       outcome.statsPath))
        if failed > 0 { throw ExitCode(StageExit.someFailed) }
    }
}

ExtractCommand.main()
