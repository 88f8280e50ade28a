// vidx-search: score queries against an index generation (full scan or coarse-to-fine).
import ArgumentParser
import Foundation
import VidxCore
import VidxIndex
import VidxSearch

struct SearchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vidx-search",
        abstract: "Search an index with query vectors or by example.",
        discussion: """
        Q holds L x D query vectors (the text encoder's levels; 8 x 512) or Q x L x D for
        several queries: a .npy file (float32 or float64) or a safetensors file with a
        tensor `queries`. --like VIDEO_ID queries with that video's reconstructed levels.
        Prints one JSON line per hit: query, rank, id, external_id, score (HCQ's score:
        the mean over levels and sub-spaces of the codeword similarities).
        Exit status: 0 done; 1 the index or the query could not be used; 2 usage error.
        """)

    @Argument(help: "Index directory (holds CURRENT).")
    var index: String

    @Option(name: .long, help: "Query file (.npy or .safetensors).")
    var query: String?

    @Option(name: .long, help: "Query by example: the external id of an indexed video.")
    var like: String?

    @Option(name: .long, help: "Hits per query.")
    var k: Int = 10

    @Option(name: .long, help: "Coarse-to-fine: keep this many candidates by the coarse level, re-rank them with all levels.")
    var rerank: Int?

    @Option(name: .long, help: "Threads (default: all cores).")
    var threads: Int?

    @Option(name: .long, help: "Generation to search (default: the one CURRENT names).")
    var generation: String?

    @Option(name: .long, help: "Repeat the search this many times and report the time per query on stderr (benchmarks).")
    var repeats: Int = 1

    func validate() throws {
        if (query == nil) == (like == nil) { throw ValidationError("give exactly one of --query and --like") }
        if k < 1 || k > 100_000 { throw ValidationError("--k must be between 1 and 100000") }
        if let rerank, rerank < 1 || rerank > 10_000_000 { throw ValidationError("--rerank must be between 1 and 10000000") }
        if let threads, threads < 1 || threads > 256 { throw ValidationError("--threads must be between 1 and 256") }
        if repeats < 1 { throw ValidationError("--repeats must be at least 1") }
    }

    func run() throws {
        let gen: IndexGeneration
        let vectors: [Float]
        let count: Int
        do {
            gen = try IndexGeneration(indexDirectory: index, generation: generation)
            let m = gen.manifest
            let per = m.levels * m.dimension
            if let like {
                guard let (s, r) = gen.locate(externalID: like) else {
                    throw IndexError(path: index, "no live video '\(like)' in generation \(gen.name)")
                }
                vectors = LookupTables.reconstruct(codes: gen.shards[s].codes(at: r), codebooks: gen.codebooks,
                                                   levels: m.levels, subspaces: m.subspaces, codewords: m.codewords,
                                                   dimension: m.dimension)
                count = 1
            } else {
                let (shape, values) = try readQueries(query!)
                guard values.count % per == 0, !values.isEmpty, shape.count >= 2,
                      shape.suffix(2) == [m.levels, m.dimension] else {
                    throw IndexError(path: query!, "query shape \(shape) is not (\(m.levels), \(m.dimension)) or (Q, \(m.levels), \(m.dimension)) as this index needs")
                }
                guard values.allSatisfy({ $0.isFinite }) else { throw IndexError(path: query!, "query holds NaN or infinity") }
                vectors = values
                count = values.count / per
            }
        } catch {
            printError("vidx-search: \(error)")
            throw ExitCode(StageExit.failure)
        }
        let searcher = Searcher(generation: gen, threads: threads ?? ProcessInfo.processInfo.activeProcessorCount)
        let clock = ContinuousClock()
        var results: [[SearchHit]] = []
        let start = clock.now
        for _ in 0..<repeats {
            let tables = searcher.tables(for: vectors, count: count)
            results = searcher.search(tables, k: k, rerank: rerank)
        }
        let elapsed = clock.now - start
        if repeats > 1 {
            let (s, atto) = elapsed.components
            let seconds = Double(s) + Double(atto) * 1e-18
            printError(String(format: "vidx-search: %d queries x %d repeats in %.3f s: %.2f queries/s", count, repeats, seconds,
                              Double(count * repeats) / seconds))
        }
        var out = ""
        for (q, hits) in results.enumerated() {
            for (rank, h) in hits.enumerated() {
                let ext = gen.shards[Int(h.shard)].externalID(at: Int(h.row))
                out += "{\"query\":\(q),\"rank\":\(rank + 1),\"id\":\(h.id),\"external_id\":\(jsonString(ext)),\"score\":\(h.score)}\n"
            }
        }
        FileHandle.standardOutput.write(Data(out.utf8))
    }

    func readQueries(_ path: String) throws -> ([Int], [Float]) {
        if path.hasSuffix(".npy") {
            let a = try NPY.read(path: path)
            return (a.shape, a.values)
        }
        let file = try SafeTensorsFile(path: path)
        guard let info = file.info("queries") else {
            throw IndexError(path: path, "no tensor 'queries' (expected F32 (L, D) or (Q, L, D))")
        }
        return (info.shape, try file.floats("queries"))
    }

    func jsonString(_ s: String) -> String {
        String(decoding: (try? makeJSONEncoder().encode(s)) ?? Data("\"\"".utf8), as: UTF8.self)
    }
}

do {
    let command = try SearchCommand.parse()
    try command.validate()
    try command.run()
} catch let code as ExitCode {
    exit(code.rawValue)
} catch {
    let exitCode = SearchCommand.exitCode(for: error)
    if exitCode == .success {
        print(SearchCommand.fullMessage(for: error))
        exit(0)
    }
    printError(SearchCommand.fullMessage(for: error))
    exit(exitCode == .validationFailure ? StageExit.usage : exitCode.rawValue)
}
