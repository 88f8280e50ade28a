// vidx-search: score queries against an index generation (full scan or coarse-to-fine).
import ArgumentParser
import VidxCLI
import Foundation
import VidxCore
import VidxIndex
import VidxSearch

struct SearchCommand: StageCommand {
    static let configuration = CommandConfiguration(
        commandName: "vidx-search",
        abstract: "Search an index with query vectors or by example.",
        discussion: """
        Q holds L x D query vectors (the text encoder's levels; 8 x 512) or Q x L x D for \
        several queries: a .npy file (float32 or float64) or a safetensors file with a \
        tensor `queries`. --like VIDEO_ID queries with that video's reconstructed levels.
        Prints one JSON line per hit: query, rank, id, external_id, score (HCQ's score: \
        the mean over levels and sub-spaces of the codeword similarities).
        Nothing mapped is trusted: the manifest follows its schema, the codebooks match its \
        SHA-256, every shard's checksums are verified when the generation is opened (all of \
        its sections; --skip-checksums checks only the headers and tables), and every hit's \
        id is checked against the hash of its external id. Queries are scanned in batches \
        of 64, so memory does not grow with their number.
        Exit status: 0 done; 1 the index or the query could not be used (or a damaged \
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

    @OptionGroup var threads: ThreadOptions

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
        if repeats < 1 { throw ValidationError("--repeats must be at least 1") }
    }

    func run() throws {
        MemoryTuning.returnLargeAllocations()  // per-batch tables must not fragment the heap
        let session = try SearchSession(index: index, generation: generation, verifyChecksums: !skipChecksums,
                                        threads: threads.resolved)
        let (vectors, count) = try like.map { (try session.query(like: $0), 1) } ?? session.queries(fromFile: query!)
        let seconds = try session.search(vectors, count: count, k: k, rerank: rerank, repeats: repeats) { hits in
            FileHandle.standardOutput.write(Data(hits.map { $0.jsonLine + "\n" }.joined().utf8))
        }
        if repeats > 1 {
            printError(String(format: "vidx-search: opened %@ in %.3f s%@; %d queries x %d repeats in %.3f s: %.2f queries/s",
                              session.generation.name, session.openSeconds, skipChecksums ? "" : " (checksums verified)",
                              count, repeats, seconds, Double(count * repeats) / seconds))
        }
    }
}

SearchCommand.main()
