// vidx-quality: what a bundle's quantization costs on held-out videos (fidelity report).
import ArgumentParser
import Foundation
import VidxCLI
import VidxCodebooks
import VidxCore
import VidxHCQ
import VidxNumerics

struct QualityCommand: StageCommand {
    static let configuration = CommandConfiguration(
        commandName: "vidx-quality",
        abstract: "Measure what a bundle's product quantization costs: ADC search against exact float search.",
        discussion: """
        The database is every usable video of the codes files (written with `vidx-encode \
        --embeddings`, by the bundle or one it was fitted from; give videos held out of \
        the codebooks' sample). Each video is coded with the bundle's codebooks. Query by \
        example: --examples database videos (a seeded sample), each left out of its own \
        results; --queries Q.npy adds text queries, float32 (Q, levels, hidden). Reported \
        per level and for all levels: recall@k (the share of queries whose exact top-1 is \
        in the ADC top-k) at k = 1, 2, 5, 10, 20, 50, 100; per level the mean squared \
        quantization error and mean cosine; for coarse-to-fine search the top-10 agreement \
        with the full ADC scan at re-rank depths 100, 1000, 10000. A table on standard \
        output, or the JSON report (Schemas/quality-report.schema.json) with --json; --out \
        writes the JSON report to a file. Pipelines/quality/fidelity.py puts FAISS's \
        ProductQuantizer beside it. See Documentation/Codebooks.md.
        Exit status: 0 measured; 2 usage error; 1 an input or the bundle could not be used.
        """)

    @Option(name: .long, help: "Model bundle directory whose codebooks are measured.")
    var bundle: String

    @Option(name: .long, parsing: .upToNextOption, help: "Codes files with embeddings: the held-out database.")
    var embeddings: [String] = []

    @Option(name: .long, help: "Database videos used as queries (query by example).")
    var examples: Int = 1000

    @Option(name: .long, help: "Text queries: an .npy of float32 (Q, levels, hidden).")
    var queries: String?

    @Option(name: .long, help: "Seed of the example queries' sample.")
    var seed: UInt64 = 1234

    @Option(name: .long, help: "Also write the JSON report to this file (atomically).")
    var out: String?

    @OptionGroup var threads: ThreadOptions

    @Flag(name: .long, help: "Print the JSON report instead of the table.")
    var json = false

    func validate() throws {
        guard !embeddings.isEmpty else { throw ValidationError("give --embeddings CODES... (the held-out videos)") }
        guard examples >= 0 else { throw ValidationError("--examples must be 0 or more") }
        if examples == 0 && queries == nil { throw ValidationError("--examples 0 needs --queries") }
    }

    func run() throws {
        BLAS.setThreads(threads.resolved)
        let model = try ModelBundle(directory: bundle)
        let layout = model.quantizer.layout
        let db = try Fidelity.database(codes: embeddings, bundle: model)
        guard db.count >= 2 else { throw FitError("the codes files hold \(db.count) usable videos: too few to search") }
        var text: [Float]?
        if let queries {
            let array = try NPY.read(path: queries)
            guard array.shape.count == 3, array.shape[1] == layout.levels, array.shape[2] == layout.dimension else {
                throw FitError("\(queries): shape \(array.shape), expected (Q, \(layout.levels), \(layout.dimension))")
            }
            if let bad = array.values.firstIndex(where: { !$0.isFinite }) {
                throw FitError("\(queries): query \(bad / layout.vectorCount) holds \(array.values[bad]), not a finite value")
            }
            text = array.values
        }
        try finish(model: model, db: db, text: text)
    }

    func finish(model: ModelBundle, db: Fidelity.Database, text: [Float]?) throws {
        let total = min(examples, db.count) + (text.map { $0.count / model.quantizer.layout.vectorCount } ?? 0)
        let progress = ProgressLine(total: total, minimumItems: 64)
        let report = Fidelity.evaluate(quantizer: model.quantizer, bundleFingerprint: model.fingerprint, database: db,
                                       examples: examples, seed: seed, textQueries: text,
                                       progress: { done, _ in progress.update(done: done, failed: 0, current: "queries") })
        progress.finish()
        let data = try makeJSONEncoder(pretty: true).encode(report)
        if let out { try AtomicFile.write(data + Data("\n".utf8), to: out) }
        if json {
            print(String(decoding: try makeJSONEncoder().encode(report), as: UTF8.self))
        } else {
            print(Fidelity.table(report))
        }
    }
}

QualityCommand.main()
