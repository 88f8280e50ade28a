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
        Nothing mapped is trusted: the manifest follows its schema, the codebooks match its
        SHA-256, every shard's checksums are verified when the generation is opened (all of
        its sections; --skip-checksums checks only the headers and tables), and every hit's
        id is checked against the hash of its external id. Queries are scanned in batches
        of 64, so memory does not grow with their number.
        Exit status: 0 done; 1 the index or the query could not be used (or a damaged
        entry was met); 2 usage error.
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

    @Option(name: .long, help: "Generation to search, by name (gNNNNNN; default: the one CURRENT names).")
    var generation: String?

    @Flag(name: .customLong("skip-checksums"),
          help: "Do not verify the shards' section checksums when opening (faster on large indexes; headers, tables and hits are still checked).")
    var skipChecksums = false

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
        MemoryTuning.returnLargeAllocations()  // per-batch tables must not fragment the heap
        let gen: IndexGeneration
        let vectors: [Float]
        let count: Int
        let clock = ContinuousClock()
        let opened = clock.now
        do {
            gen = try IndexGeneration(indexDirectory: index, generation: generation, verifyChecksums: !skipChecksums)
            let m = gen.manifest
            let per = m.levels * m.dimension
            if let like {
                guard let (s, r) = gen.locate(externalID: like) else {
                    throw IndexError(path: index, "no live video '\(like)' in generation \(gen.name)")
                }
                vectors = gen.quantizer.reconstruct(gen.shards[s].codes(at: r))
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
        let openSeconds = seconds(clock.now - opened)
        let searcher = Searcher(generation: gen, threads: threads ?? ProcessInfo.processInfo.activeProcessorCount)
        let per = gen.manifest.levels * gen.manifest.dimension
        // Bounded batches: one batch's tables (L x M x K floats a query) and hits at a time.
        let batch = Searcher.queriesPerPass
        let start = clock.now
        for repeat_ in 0..<repeats {
            var q0 = 0
            while q0 < count {
                let q1 = min(count, q0 + batch)
                let tables = searcher.tables(for: Array(vectors[(q0 * per)..<(q1 * per)]), count: q1 - q0)
                let results = searcher.search(tables, k: k, rerank: rerank)
                if repeat_ == repeats - 1 { try printHits(results, firstQuery: q0, generation: gen) }
                q0 = q1
            }
        }
        if repeats > 1 {
            let total = seconds(clock.now - start)
            printError(String(format: "vidx-search: opened %@ in %.3f s%@; %d queries x %d repeats in %.3f s: %.2f queries/s",
                              gen.name, openSeconds, skipChecksums ? "" : " (checksums verified)", count, repeats, total,
                              Double(count * repeats) / total))
        }
    }

    /// Prints one JSON line per hit, each checked (its id is the hash of its external id);
    /// a batch with a damaged hit prints nothing and fails the run.
    func printHits(_ results: [[SearchHit]], firstQuery: Int, generation gen: IndexGeneration) throws {
        var out = ""
        do {
            for (q, hits) in results.enumerated() {
                for (rank, h) in hits.enumerated() {
                    let ext = try gen.checkedExternalID(shard: Int(h.shard), row: Int(h.row))
                    out += "{\"query\":\(firstQuery + q),\"rank\":\(rank + 1),\"id\":\(h.id),\"external_id\":\(jsonString(ext)),\"score\":\(h.score)}\n"
                }
            }
        } catch {
            printError("vidx-search: \(error)")
            throw ExitCode(StageExit.failure)
        }
        FileHandle.standardOutput.write(Data(out.utf8))
    }

    func seconds(_ d: Duration) -> Double {
        let (s, atto) = d.components
        return Double(s) + Double(atto) * 1e-18
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
