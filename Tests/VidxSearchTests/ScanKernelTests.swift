import CVidxScan
import Testing
import VidxTestSupport
@testable import VidxSearch

/// The C scan kernel (8 queries a table read) against the scalar table sum that re-ranking
/// uses: the same bits, lane by lane, on both instruction sets.
@Suite("Scan kernel: lane sums equal the scalar sums to the bit", .serialized)
struct ScanKernelTests {

    /// Whether this CPU runs the AVX2 kernel (otherwise its test is skipped, and says so).
    static let hasAVX2: Bool = {
        vidx_scan_force_generic(0)
        return String(cString: vidx_scan_isa()) == "avx2"
    }()

    /// Runs the kernel over `rows` rows (stride `M + pad`, so rows are not packed) twice,
    /// the second time accumulating, and checks every lane against Searcher.tableSum.
    func check(M: Int, K: Int, rows: Int, seed: UInt64, isa: String) {
        var rng = SeededGenerator(seed: seed)
        let stride = M + 5
        let codes = (0..<(rows * stride)).map { _ in UInt8(rng.next() % UInt64(K)) }
        // Per-query tables (8 queries, M x K each), and the same values interleaved by lane.
        let tables = (0..<(8 * M * K)).map { _ in rng.float() }
        var lanes = [Float](repeating: 0, count: M * K * 8)
        for q in 0..<8 { for e in 0..<(M * K) { lanes[e * 8 + q] = tables[q * M * K + e] } }
        let start = (0..<(rows * 8)).map { _ in rng.float() }
        do {
            vidx_scan_force_generic(isa == "generic" ? 1 : 0)
            defer { vidx_scan_force_generic(0) }
            #expect(String(cString: vidx_scan_isa()) == isa)
            var stored = [Float](repeating: .nan, count: rows * 8)
            var added = start
            vidx_scan_level8(lanes, codes, stride, rows, UInt32(M), UInt32(K), &stored, 0)
            vidx_scan_level8(lanes, codes, stride, rows, UInt32(M), UInt32(K), &added, 1)
            var mismatches = 0
            tables.withUnsafeBufferPointer { t in
                codes.withUnsafeBufferPointer { c in
                    for r in 0..<rows {
                        for q in 0..<8 {
                            let want = Searcher.tableSum(t.baseAddress! + q * M * K, c.baseAddress! + r * stride,
                                                         count: M, K: K)
                            if stored[r * 8 + q].bitPattern != want.bitPattern { mismatches += 1 }
                            if added[r * 8 + q].bitPattern != (start[r * 8 + q] + want).bitPattern { mismatches += 1 }
                        }
                    }
                }
            }
            #expect(mismatches == 0, "\(isa) kernel, M \(M) K \(K): \(mismatches) lane sums differ from the scalar sum")
        }
    }

    func checkShapes(_ isa: String) {
        check(M: 32, K: 256, rows: 300, seed: 1, isa: isa)  // HCQ's shape
        check(M: 12, K: 5, rows: 97, seed: 2, isa: isa)     // sub-spaces not a multiple of 8, small K
        check(M: 3, K: 1, rows: 10, seed: 3, isa: isa)      // fewer than 8 sub-spaces, one codeword
        check(M: 19, K: 256, rows: 33, seed: 4, isa: isa)
    }

    @Test("baseline x86-64 kernel: HCQ's shape, odd sub-space counts, small K")
    func generic() { checkShapes("generic") }

    @Test("AVX2 kernel: HCQ's shape, odd sub-space counts, small K",
          .enabled(if: ScanKernelTests.hasAVX2, "this CPU has no AVX2: the AVX2 kernel is NOT tested here"))
    func avx2() { checkShapes("avx2") }
}

@Suite("TopK: the best k under (score, then id), whatever the offer order")
struct TopKTests {
    @Test("equals a full sort's prefix; ties on score broken by id; merging chunks changes nothing")
    func matchesSort() {
        var rng = SeededGenerator(seed: 11)
        for (n, k) in [(0, 3), (5, 10), (1000, 1), (5000, 7), (5000, 1000), (20000, 333)] {
            // Few distinct scores, so many ties that only the ids can order.
            let hits = (0..<n).map { i in
                SearchHit(score: Float(rng.next() % 50) / 8, id: UInt64(rng.next() % 1_000_000) << 20 | UInt64(i),
                          shard: 0, row: i)
            }
            let want = Array(hits.sorted { $0.ranksAbove($1) }.prefix(k))
            var one = TopK(k: k)
            for h in hits { one.offer(h) }
            #expect(one.sorted() == want, "n \(n) k \(k)")
            var parts = [TopK(k: k), TopK(k: k), TopK(k: k)]
            for (i, h) in hits.reversed().enumerated() { parts[i % 3].offer(h) }
            var merged = TopK(k: k)
            for p in parts { merged.merge(p) }
            #expect(merged.sorted() == want, "merged, n \(n) k \(k)")
        }
    }
}

extension SeededGenerator {
    /// A table value: one of 20,001 multiples of 1/7919 around 0, so sums have few ties
    /// and exercise rounding.
    mutating func float() -> Float { Float(Int64(next() % 20001) - 10000) / 7919 }
}
