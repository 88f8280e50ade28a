import Testing
import VidxTestSupport
@testable import VidxNumerics

// What these tests hold the code to: Documentation/Determinism.md.

/// Expects the same shape and the same bytes (`==` on the Float arrays), reporting how many
/// elements differ instead of printing the arrays.
func expectBitIdentical(_ got: Matrix, _ want: Matrix, _ what: String,
                        sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(got.rows == want.rows && got.cols == want.cols, "\(what): shape", sourceLocation: sourceLocation)
    guard got.data != want.data, got.data.count == want.data.count else { return }
    let differing = zip(got.data, want.data).enumerated().filter { $0.element.0 != $0.element.1 }
    let first = differing[0]
    let message = "\(what): \(differing.count) of \(got.data.count) values differ, first at \(first.offset): "
        + "\(first.element.0) vs \(first.element.1)"
    Issue.record(Comment(rawValue: message), sourceLocation: sourceLocation)
}

/// Expects the same shape and every value within `tolerance * max(1, |want|)`: for results
/// computed in other batches, whose last bits may differ on AMD Zen
/// (Documentation/Determinism.md, "Batch size").
func expectClose(_ got: Matrix, _ want: Matrix, _ what: String, tolerance: Float = 1e-5,
                 sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(got.rows == want.rows && got.cols == want.cols, "\(what): shape", sourceLocation: sourceLocation)
    guard got.data.count == want.data.count else { return }
    let far = zip(got.data, want.data).filter { abs($0.0 - $0.1) > tolerance * max(1, abs($0.1)) }.count
    #expect(far == 0, "\(what): \(far) of \(got.data.count) values differ by more than \(tolerance)",
            sourceLocation: sourceLocation)
}

extension NumericsTests {
    @Suite struct Determinism {
        /// Computes `f` over `x` in batches of `batch` rows and stacks the results.
        static func batched(_ x: Matrix, _ batch: Int, _ f: (Matrix) -> Matrix) -> Matrix {
            var parts: [Matrix] = []
            var start = 0
            while start < x.rows {
                parts.append(f(x.rows(in: start..<min(x.rows, start + batch))))
                start += batch
            }
            return Matrix.stacking(parts)
        }

        /// (in, out): HCQ's widths (fused qkv, attention output) and shapes where single OpenBLAS
        /// calls differ by row count (512 -> 8 as in the VLAD assignment, 257 -> 70), plus odd sizes.
        /// Exact across thread counts; across batch sizes within 1e-5 (exact on Intel;
        /// Documentation/Determinism.md, "Batch size").
        @Test(arguments: [(512, 1536), (512, 512), (512, 8), (257, 70), (13, 7)])
        func linearIsThreadInvariant(shape: (Int, Int)) {
            let (inputs, outputs) = shape
            let x = randomMatrix(300, inputs, seed: 200)
            let layer = Linear(weight: randomMatrix(outputs, inputs, seed: 201, scale: 0.05),
                               bias: randomVector(outputs, seed: 202))
            let whole = withBLASThreads(1) { layer(x) }
            for threads in [1, 2] {
                withBLASThreads(threads) {
                    expectBitIdentical(layer(x), whole, "300 rows, \(threads) threads")
                    for batch in [1, 7, 64] {
                        let parts = Self.batched(x, batch) { layer($0) }
                        expectClose(parts, whole, "batches of \(batch), \(threads) threads")
                        let again = withBLASThreads(1) { Self.batched(x, batch) { layer($0) } }
                        expectBitIdentical(parts, again, "batches of \(batch), \(threads) threads against 1")
                    }
                }
            }
        }

        @Test(arguments: [false, true])
        func matmulIsThreadInvariant(transposeB: Bool) {
            let x = randomMatrix(300, 218, seed: 210)
            let b = transposeB ? randomMatrix(64, 218, seed: 211) : randomMatrix(218, 64, seed: 211)
            let whole = withBLASThreads(1) { BLAS.matmul(x, b, transposeB: transposeB) }
            for threads in [1, 2] {
                withBLASThreads(threads) {
                    expectBitIdentical(BLAS.matmul(x, b, transposeB: transposeB), whole, "300 rows, \(threads) threads")
                    for batch in [1, 7, 64] {
                        let parts = Self.batched(x, batch) { BLAS.matmul($0, b, transposeB: transposeB) }
                        expectClose(parts, whole, "batches of \(batch), \(threads) threads")
                        let again = withBLASThreads(1) { Self.batched(x, batch) { BLAS.matmul($0, b, transposeB: transposeB) } }
                        expectBitIdentical(parts, again, "batches of \(batch), \(threads) threads against 1")
                    }
                }
            }
        }

        @Test func attentionIsSequenceAndThreadInvariant() {
            // HCQ's shape: 218 tokens, hidden 512, 4 heads; 5 sequences with assorted masks.
            let L = 218, hidden = 512, heads = 4, sequences = 5
            let q = randomMatrix(sequences * L, hidden, seed: 220)
            let k = randomMatrix(sequences * L, hidden, seed: 221)
            let v = randomMatrix(sequences * L, hidden, seed: 222)
            var g = SeededGenerator(seed: 223)
            var mask = (0..<(sequences * L)).map { _ in g.uniform() < 0.4 ? Float(1) : 0 }
            for j in (3 * L)..<(4 * L) { mask[j] = 0 }  // one fully masked sequence
            let whole = withBLASThreads(1) {
                multiHeadAttention(q: q, k: k, v: v, heads: heads, sequenceLength: L, keyMask: mask)
            }
            #expect(whole.data.allSatisfy { $0.isFinite })
            for threads in [1, 2] {
                withBLASThreads(threads) {
                    let again = multiHeadAttention(q: q, k: k, v: v, heads: heads, sequenceLength: L, keyMask: mask)
                    expectBitIdentical(again, whole, "5 sequences, \(threads) threads")
                    var parts: [Matrix] = []
                    for s in 0..<sequences {
                        let rows = (s * L)..<((s + 1) * L)
                        parts.append(multiHeadAttention(q: q.rows(in: rows), k: k.rows(in: rows), v: v.rows(in: rows), heads: heads,
                                                        sequenceLength: L, keyMask: Array(mask[rows])))
                    }
                    expectBitIdentical(Matrix.stacking(parts), whole, "one sequence at a time, \(threads) threads")
                }
            }
        }

        @Test func rowOperationsAreBatchInvariant() {
            // Row-wise kernels with a scalar tail (cols not a multiple of 16).
            let x = randomMatrix(300, 53, seed: 230, scale: 3)
            let gamma = randomVector(53, seed: 231), beta = randomVector(53, seed: 232)
            let ops: [(String, (inout Matrix) -> Void)] = [
                ("layerNorm", { layerNorm(&$0, gamma: gamma, beta: beta, eps: 1e-12) }),
                ("gelu", { geluErf(&$0) }),
                ("softmax", { softmaxRows(&$0) }),
                ("l2", { l2NormalizeRows(&$0, eps: 1e-12) }),
            ]
            for (name, op) in ops {
                var whole = x
                op(&whole)
                for batch in [1, 7, 64] {
                    let parts = Self.batched(x, batch) { var m = $0; op(&m); return m }
                    expectBitIdentical(parts, whole, "\(name), batches of \(batch)")
                }
            }
        }
    }
}

@Suite("Parallel loops")
struct ParallelTests {
    @Test("every index is visited exactly once, for any count, grain and thread count",
          arguments: [1, 2, 3])
    func coversEveryIndexOnce(threads: Int) {
        withBLASThreads(threads) {
            for (count, grain) in [(0, 1), (1, 1), (7, 1), (1000, 3), (1000, 600), (4097, 64)] {
                let hits = UnsafeMutableBufferPointer<Int>.allocate(capacity: max(count, 1))
                defer { hits.deallocate() }
                hits.initialize(repeating: 0)
                Parallel.forEachRange(count, grain: grain) { range in
                    for i in range { hits[i] += 1 }
                }
                #expect(hits.prefix(count).allSatisfy { $0 == 1 }, "count \(count), grain \(grain)")
            }
        }
    }

    @Test("forEachTask: contiguous ranges in task order, each index once, task numbers below the thread count",
          arguments: [1, 2, 3])
    func tasksCoverTheirRanges(threads: Int) {
        // An explicit thread count, so that no other test's setting matters.
        for (count, grain) in [(0, 1), (1, 1), (2, 1), (7, 1), (1000, 3), (1000, 600)] {
            let hits = UnsafeMutableBufferPointer<Int>.allocate(capacity: max(count, 1))
            let owner = UnsafeMutableBufferPointer<Int>.allocate(capacity: max(count, 1))
            defer { hits.deallocate(); owner.deallocate() }
            hits.initialize(repeating: 0)
            Parallel.forEachTask(count, grain: grain, threads: threads) { task, range in
                for i in range { hits[i] += 1; owner[i] = task }
            }
            #expect(hits.prefix(count).allSatisfy { $0 == 1 }, "count \(count), grain \(grain)")
            // Task t of n covers count * t / n ..< count * (t + 1) / n.
            let tasks = max(1, min(threads, count / grain))
            let misplaced = (0..<count).filter { i in
                let t = owner[i]
                return t < 0 || t >= tasks || i < count * t / tasks || i >= count * (t + 1) / tasks
            }
            #expect(misplaced.isEmpty, "count \(count), grain \(grain): indices \(misplaced.prefix(5)) in the wrong task")
        }
    }

    @Test("attention leaves the caller's thread count as it was")
    func attentionRestoresThreads() {
        withBLASThreads(2) {
            let x = randomMatrix(2 * 5, 8, seed: 9)
            _ = multiHeadAttention(q: x, k: x, v: x, heads: 2, sequenceLength: 5, keyMask: [Float](repeating: 1, count: 10))
            #expect(BLAS.threads == 2)
        }
    }
}
