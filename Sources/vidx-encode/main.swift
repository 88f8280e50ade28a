// vidx-encode: a work unit's features -> HCQ codes (and optionally float embeddings).
import ArgumentParser
import VidxCLI
import Foundation
import VidxCore
import VidxHCQ
import VidxNumerics

struct EncodeCommand: StageCommand {
    static let configuration = CommandConfiguration(
        commandName: "vidx-encode",
        abstract: "Encode a work unit's features into HCQ codes with a model bundle.",
        discussion: """
        Reads UNIT.features.safetensors (Schemas/features.md), runs the bundle's HCQ video \
        encoder and writes UNIT.codes.safetensors (Schemas/codes.md) atomically. A video \
        whose features are unusable (wrong width, NaN or infinity, unknown expert, failed \
        extraction, no expert with features, an encoder output that is not finite) is \
        recorded as failed in the output and the others go on. An expert whose first value \
        is NaN is treated as missing, as HCQ's reference does; each is named on stderr and \
        counted in the summary.
        With --requantize CODES instead of --features: the codes of a codes file that \
        carries embeddings (written with --embeddings) are recomputed with this bundle's \
        codebooks, without the transformer, as after vidx-fit-codebooks; the output is \
        what --features --embeddings would write. The file must come from this bundle or \
        from one its codebooks were fitted from (Documentation/Codebooks.md).
        Exit status: 0 every video encoded; 3 some videos failed; 2 usage error; \
        1 the bundle, the features file or the output could not be used.
        """)

    @Option(name: .long, help: "Model bundle directory (bundle.json + weights.safetensors).")
    var bundle: String

    @Option(name: .long, help: "The work unit's features file.")
    var features: String?

    @Option(name: .long, help: "A codes file with embeddings to re-quantize with this bundle's codebooks (instead of --features).")
    var requantize: String?

    @Option(name: .long, help: "Where to write the codes file.")
    var out: String

    @Flag(name: .long, help: "Also store the float embeddings (levels x hidden per video).")
    var embeddings = false

    @Option(name: .long, help: "Videos per transformer pass.")
    var batch: Int = 16

    @OptionGroup var threads: ThreadOptions

    @OptionGroup var summary: SummaryOptions

    func validate() throws {
        guard (features == nil) != (requantize == nil) else {
            throw ValidationError("give exactly one of --features FILE (encode) and --requantize CODES (re-quantize)")
        }
        if requantize != nil && embeddings {
            throw ValidationError("--embeddings is implied by --requantize (the embeddings are kept)")
        }
        guard batch >= 1 && batch <= 4096 else { throw ValidationError("--batch must be between 1 and 4096") }
    }

    /// What `--json` prints.
    struct Summary: Encodable {
        let out: String
        let videos: Int, ok: Int, failed: Int, nanMaskedExperts: Int
        let bundleFingerprint: String
        let seconds: Double
        /// With --requantize: videos whose codes changed.
        var changed: Int? = nil

        enum CodingKeys: String, CodingKey {
            case out, videos, ok, failed, nanMaskedExperts = "nan_masked_experts", bundleFingerprint = "bundle_fingerprint", seconds
            case changed
        }
    }

    func run() throws {
        BLAS.setThreads(threads.resolved)
        MemoryTuning.reuseLargeAllocations()
        let model = try ModelBundle(directory: bundle)
        if let requantize {
            let started = Date()
            let r = try Requantizer.requantize(codes: requantize, bundle: model, to: out)
            let seconds = Date().timeIntervalSince(started)
            try summary.print(Summary(out: out, videos: r.videos, ok: r.coded, failed: r.videos - r.coded, nanMaskedExperts: 0,
                                      bundleFingerprint: model.fingerprint, seconds: (seconds * 1000).rounded() / 1000,
                                      changed: r.changed),
                              text: String(format: "%@: %d videos re-quantized (%d with other codes than before), %d failed earlier, %.2f s; bundle %@",
                                           out, r.coded, r.changed, r.videos - r.coded, seconds, String(model.fingerprint.prefix(16))))
            return
        }
        let features = features!
        let outcome = try UnitEncoder(bundle: model, batchSize: batch, keepEmbeddings: embeddings)
            .encode(features: features, to: out, warn: { printError("vidx-encode: \($0)") })
        for r in outcome.records where r.status == .failed {
            printError("vidx-encode: \(features): video '\(r.id)': \(r.error?.class.rawValue ?? "failed"): \(r.error?.message ?? "")")
        }
        let videos = outcome.records.count, failed = outcome.failed, ok = videos - failed
        let masked = outcome.nanMaskedExperts.count, seconds = outcome.seconds
        try summary.print(Summary(out: out, videos: videos, ok: ok, failed: failed, nanMaskedExperts: masked,
                                  bundleFingerprint: model.fingerprint, seconds: (seconds * 1000).rounded() / 1000),
                          text: String(format: "%@: %d videos, %d encoded, %d failed, %d expert(s) masked (first value NaN), %.2f s (%.1f videos/s); bundle %@",
                                       out, videos, ok, failed, masked, seconds, Double(ok) / max(seconds, 1e-9),
                                       String(model.fingerprint.prefix(16))))
        if failed > 0 { throw ExitCode(StageExit.someFailed) }
    }
}

EncodeCommand.main()
