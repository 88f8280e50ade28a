// vidx-fit-codebooks: a bundle's codebooks fitted by spherical k-means on a corpus sample.
import ArgumentParser
import Foundation
import VidxCLI
import VidxCodebooks
import VidxCore
import VidxHCQ
import VidxNumerics

struct FitCodebooksCommand: StageCommand {
    static let configuration = CommandConfiguration(
        commandName: "vidx-fit-codebooks",
        abstract: "Fit a bundle's product-quantization codebooks on a sample of videos; write a new bundle.",
        discussion: """
        Takes every level's float embeddings from codes files written with `vidx-encode \
        --embeddings` (--embeddings), or encodes the sampled videos of features files \
        with the bundle (--features). The sample is the --sample videos with the smallest \
        SHA-256(seed, id): it depends on the seed and the ids, not on the order of the \
        inputs. Each level's M sub-spaces get K unit-norm codewords by spherical k-means \
        (HCQ's codebook refresh: assign by largest inner product, mean, re-normalise), \
        seeded by k-means++, with at most --max-points-per-centroid x K videos used and \
        empty clusters split from the largest one. OUT is a new bundle (a new \
        fingerprint): the source's weights and bundle.json with the fitted codebooks and \
        a `codebooks` record of how (Schemas/model-bundle.schema.json). The same inputs, \
        bundle and options give the same bytes whatever --threads. Codes files of the \
        source bundle with embeddings become codes of OUT with `vidx-encode --requantize`. \
        See Documentation/Codebooks.md.
        Exit status: 0 written; 2 usage error; 1 an input or the bundle could not be used, \
        the sample is smaller than K, or OUT exists.
        """)

    @Option(name: .long, help: "The source model bundle directory.")
    var bundle: String

    @Option(name: .long, parsing: .upToNextOption, help: "Codes files with embeddings (vidx-encode --embeddings).")
    var embeddings: [String] = []

    @Option(name: .long, parsing: .upToNextOption, help: "Features files to encode a sample of (instead of --embeddings).")
    var features: [String] = []

    @Option(name: .customLong("embeddings-list"), help: "A file naming codes files with embeddings, one per line (with or instead of --embeddings).")
    var embeddingsList: String?

    @Option(name: .long, help: "The new bundle directory (must not exist).")
    var out: String

    @Option(name: .long, help: "The new bundle's name (default: OUT's last path component).")
    var name: String?

    @Option(name: .long, help: "Videos to sample (default: all, up to K x max points per centroid).")
    var sample: Int?

    @Option(name: .long, help: "k-means iterations per level.")
    var iterations: Int = 25

    @Option(name: .long, help: "Random seed (sample, seeding, splits).")
    var seed: UInt64 = 1234

    @Option(name: .customLong("max-points-per-centroid"), help: "At most this many videos per codeword are used (FAISS's default 256).")
    var maxPointsPerCentroid: Int = 256

    @Option(name: .customLong("seeding-points"), help: "k-means++ seeds from at most this many of the sampled points.")
    var seedingPoints: Int = 4096

    @OptionGroup var threads: ThreadOptions

    @OptionGroup var summary: SummaryOptions

    func validate() throws {
        let codes = !embeddings.isEmpty || embeddingsList != nil
        guard codes != !features.isEmpty else {
            throw ValidationError("give --embeddings CODES... (or --embeddings-list FILE) or --features UNIT..., one of them")
        }
        guard (1...1000).contains(iterations) else { throw ValidationError("--iterations must be between 1 and 1000") }
        if let sample, sample < 1 { throw ValidationError("--sample must be at least 1") }
        guard (1...1_000_000).contains(maxPointsPerCentroid) else {
            throw ValidationError("--max-points-per-centroid must be between 1 and 1000000")
        }
        guard seedingPoints >= 1 else { throw ValidationError("--seeding-points must be at least 1") }
    }

    struct Summary: Encodable {
        let out: String
        let bundleFingerprint: String
        let sourceBundle: String
        let sample: Int
        let available: Int
        let objectives: [[Double]]
        let splits: [Int]
        let seconds: Double

        enum CodingKeys: String, CodingKey {
            case out, bundleFingerprint = "bundle_fingerprint", sourceBundle = "source_bundle", sample, available
            case objectives, splits, seconds
        }
    }

    func run() throws {
        BLAS.setThreads(threads.resolved)
        MemoryTuning.reuseLargeAllocations()
        let source = try ModelBundle(directory: bundle)
        var inputs = embeddings + features
        if let embeddingsList {
            let text: Data
            do { text = try InputFiles.read(embeddingsList) } catch {
                throw FitError("\(embeddingsList): cannot read the list of codes files: \(error)")
            }
            inputs += String(decoding: text, as: UTF8.self).split(whereSeparator: \.isNewline)
                .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            guard !inputs.isEmpty else { throw FitError("\(embeddingsList): names no codes files") }
        }
        let settings = SphericalKMeans.Settings(iterations: iterations, seed: seed, maxPointsPerCentroid: maxPointsPerCentroid,
                                                seedingPoints: seedingPoints)
        let fitter = CodebookFitter(bundle: source, settings: settings, sampleSize: sample)
        let note: (String) -> Void = { printError("vidx-fit-codebooks: \($0)") }
        let started = Date()
        let points = features.isEmpty ? try fitter.sample(codes: inputs, note: note) : try fitter.sample(features: inputs, note: note)
        let layout = source.quantizer.layout
        let progress = ProgressLine(total: layout.levels * iterations, minimumItems: 1)
        let fit = try fitter.fit(points) { level, iteration, objective in
            progress.update(done: level * iterations + iteration + 1, failed: 0,
                            current: String(format: "level %d iteration %d objective %.5f", level, iteration + 1, objective))
        }
        progress.finish()
        let written = try FittedBundle.write(source: source, quantizer: fit.quantizer, provenance: fit.provenance, name: name, to: out)
        let seconds = Date().timeIntervalSince(started)
        let finals = fit.provenance.levels.map(\.objective)
        try summary.print(Summary(out: out, bundleFingerprint: written.fingerprint, sourceBundle: source.fingerprint,
                                  sample: points.count, available: points.available, objectives: fit.objectives,
                                  splits: fit.provenance.levels.map(\.splits), seconds: (seconds * 1000).rounded() / 1000),
                          text: String(format: "%@: codebooks fitted on %d of %d videos (%@), %d iterations, %.1f s; objective (mean cosine) per level: %@; %d empty clusters split; bundle %@",
                                       out, points.count, points.available, points.input, iterations, seconds,
                                       finals.map { String(format: "%.4f", $0) }.joined(separator: " "),
                                       fit.provenance.levels.map(\.splits).reduce(0, +), String(written.fingerprint.prefix(16))))
    }
}

FitCodebooksCommand.main()
