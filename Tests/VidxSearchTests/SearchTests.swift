import Foundation
import Testing
import VidxCore
import VidxIndex
@testable import VidxSearch
import VidxTestSupport

/// HCQ's score computed the slow way, in Double: the mean over levels and sub-spaces of
/// <normalised query sub-vector, codeword>.
func bruteForceScore(query: [Float], codes: [UInt8], codebooks: [Float], L: Int, M: Int, K: Int, D: Int) -> Double {
    let d = D / M
    var total = 0.0
    for l in 0..<L {
        for m in 0..<M {
            var norm = 0.0
            for j in 0..<d { norm += Double(query[l * D + m * d + j]) * Double(query[l * D + m * d + j]) }
            norm = norm.squareRoot()
            let k = Int(codes[l * M + m])
            var dot = 0.0
            for j in 0..<d { dot += Double(query[l * D + m * d + j]) * Double(codebooks[((l * M + m) * K + k) * d + j]) }
            total += norm > 0 ? dot / norm : 0
        }
    }
    return total / Double(L * M)
}

@Suite("Search: scores, rankings and agreement between implementations", .serialized)
struct SearchTests {
    static let shared: (inputs: IndexFixture, index: String)? = {
        guard let inputs = try? IndexFixture("search", videos: 400, files: 2) else { return nil }
        let index = inputs.dir + "/index"
        guard (try? runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle, "--shards", "3"] + inputs.codes))?.status == 0
        else { return nil }
        return (inputs, index)
    }()

    func setup() throws -> (inputs: IndexFixture, index: String, gen: IndexGeneration) {
        let s = try #require(SearchTests.shared, "could not build the test index")
        return (s.inputs, s.index, try IndexGeneration(indexDirectory: s.index))
    }

    func randomQueries(_ n: Int, _ gen: IndexGeneration, seed: UInt64) -> [Float] {
        var rng = seed
        let count = n * gen.manifest.levels * gen.manifest.dimension
        return (0..<count).map { _ in
            rng = rng &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: rng >> 11) % 2001 - 1000) / 1000
        }
    }

    @Test("full scan: every live video scored as the formula says, top k in score order")
    func fullScanMatchesBruteForce() throws {
        let (_, _, gen) = try setup()
        let m = gen.manifest
        let queries = randomQueries(3, gen, seed: 1)
        let searcher = Searcher(generation: gen, threads: 2)
        let results = searcher.search(searcher.tables(for: queries, count: 3), k: gen.counts.live)
        for q in 0..<3 {
            let per = m.levels * m.dimension
            let query = Array(queries[(q * per)..<((q + 1) * per)])
            #expect(results[q].count == gen.counts.live)
            var previous: SearchHit? = nil
            for h in results[q] {
                let codes = gen.shards[Int(h.shard)].codes(at: Int(h.row))
                let want = bruteForceScore(query: query, codes: codes, codebooks: gen.quantizer.codebooks, L: m.levels,
                                           M: m.subspaces, K: m.codewords, D: m.dimension)
                #expect(abs(Double(h.score) - want) < 1e-5)
                if let p = previous { #expect(p.ranksAbove(h)) }
                previous = h
            }
        }
    }

    @Test("coarse-to-fine: with every video as a candidate it equals the full scan; rankings ignore thread count")
    func coarseToFineAndThreads() throws {
        let (_, _, gen) = try setup()
        let queries = randomQueries(4, gen, seed: 2)
        let one = Searcher(generation: gen, threads: 1), two = Searcher(generation: gen, threads: 2)
        let tables = one.tables(for: queries, count: 4)
        let full = one.search(tables, k: 10)
        #expect(two.search(tables, k: 10) == full)
        #expect(one.search(tables, k: 10, rerank: gen.counts.live) == full)
        #expect(two.search(tables, k: 10, rerank: 50) == one.search(tables, k: 10, rerank: 50))
        // Candidates are the best by the coarse level alone.
        let coarse = one.scan(tables, keep: 50, coarseOnly: true)
        #expect(coarse[0].count == 50)
    }

    @Test("a query's hits do not depend on the queries searched with it (lane groups of 8, passes of 64)")
    func batchingInvariance() throws {
        let (_, _, gen) = try setup()
        let n = Searcher.queriesPerPass + 6  // two passes, the second a partial lane group
        let queries = randomQueries(n, gen, seed: 7)
        let searcher = Searcher(generation: gen, threads: 2)
        let all = searcher.search(searcher.tables(for: queries, count: n), k: 7)
        let allC2F = searcher.search(searcher.tables(for: queries, count: n), k: 7, rerank: 40)
        let per = gen.manifest.levels * gen.manifest.dimension
        for q in [0, 5, 8, 63, 64, n - 1] {
            let alone = searcher.tables(for: Array(queries[(q * per)..<((q + 1) * per)]), count: 1)
            #expect(searcher.search(alone, k: 7)[0] == all[q], "query \(q)")
            #expect(searcher.search(alone, k: 7, rerank: 40)[0] == allC2F[q], "query \(q), coarse-to-fine")
        }
    }

    @Test("query by example finds the video itself first")
    func likeFindsItself() throws {
        let (_, index, _) = try setup()
        let r = try runTool("vidx-search", [index, "--like", "video-00123", "--k", "3"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try hits(r.stdout).first?.external == "video-00123")
        let missing = try runTool("vidx-search", [index, "--like", "video-00006"])  // failed at encoding
        #expect(missing.status == 1 && missing.stderr.contains("video-00006"))
    }

    @Test("query files: .npy and safetensors give the same hits; a wrong shape is refused, naming both shapes")
    func queryFiles() throws {
        let (inputs, index, _) = try setup()
        let npy = inputs.dir + "/q.npy", st = inputs.dir + "/q.safetensors", bad = inputs.dir + "/bad.npy"
        try Python.call("query_files", npy, st, bad)
        let a = try runTool("vidx-search", [index, "--query", npy, "--k", "5", "--rerank", "40"])
        let b = try runTool("vidx-search", [index, "--query", st, "--k", "5", "--rerank", "40"])
        let count = try hits(a.stdout).count
        #expect(a.status == 0 && a.stdout == b.stdout && count == 10, "\(a.stderr)")
        let c = try runTool("vidx-search", [index, "--query", bad])
        #expect(c.status == 1 && c.stderr.contains("(4, 64)"), "\(c.stderr)")
    }

    @Test("the Python reader (NumPy only, from the spec) reads Swift's shards and ranks the same")
    func pythonReaderAgrees() throws {
        let (inputs, index, _) = try setup()
        let q = inputs.dir + "/py-q.npy"
        try Python.call("random_queries", q, "3", "4", "64", "8")
        _ = try Python.run(["Pipelines/tools/vidx_index.py", "verify", index])
        for extra in [[String](), ["--rerank", "60"]] {
            let swift = try hits(try runTool("vidx-search", [index, "--query", q, "--k", "10"] + extra).stdout)
            let python = try hits(try Python.run(["Pipelines/tools/vidx_index.py", "search", index, "--query", q, "--k", "10"] + extra))
            #expect(swift.count == python.count && swift.count == 30)
            for (s, p) in zip(swift, python) {
                #expect(s.query == p.query && s.id == p.id && s.external == p.external, "\(s) vs \(p)")
                #expect(abs(s.score - p.score) < 1e-5)
            }
        }
        let like = try hits(try Python.run(["Pipelines/tools/vidx_index.py", "search", index, "--like", "video-00200", "--k", "1"]))
        #expect(like.first?.external == "video-00200")
    }
}
