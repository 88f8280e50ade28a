import CVidxCluster
import Foundation
import Testing
import VidxNumerics
@testable import VidxCodebooks

/// Points around `centres` random unit directions per sub-space, laid out (M, n, d), each
/// sub-vector normalised: a mixture whose codewords k-means should find.
func mixture(n: Int, subspaces M: Int, d: Int, centres: Int, noise: Float, seed: UInt64) -> (points: [Float], centres: [Float]) {
    var rng = SplitMix64(seed: seed)
    func gaussian() -> Float {
        let u = max(rng.nextUnit(), 1e-300), v = rng.nextUnit()
        return Float((-2 * log(u)).squareRoot() * cos(2 * Double.pi * v))
    }
    var c = [Float](repeating: 0, count: M * centres * d)
    for w in 0..<(M * centres) {
        var norm: Float = 0
        for j in 0..<d { c[w * d + j] = gaussian(); norm += c[w * d + j] * c[w * d + j] }
        for j in 0..<d { c[w * d + j] /= norm.squareRoot() }
    }
    var x = [Float](repeating: 0, count: M * n * d)
    for m in 0..<M {
        for i in 0..<n {
            let k = Int(rng.next(below: UInt64(centres)))
            var norm: Float = 0
            for j in 0..<d {
                let v = c[(m * centres + k) * d + j] + noise * gaussian()
                x[(m * n + i) * d + j] = v
                norm += v * v
            }
            for j in 0..<d { x[(m * n + i) * d + j] /= norm.squareRoot() }
        }
    }
    return (x, c)
}

func norms(_ codewords: [Float], d: Int) -> [Float] {
    stride(from: 0, to: codewords.count, by: d).map { s in codewords[s..<(s + d)].reduce(0) { $0 + $1 * $1 }.squareRoot() }
}

@Suite("Spherical k-means: HCQ's codebook refresh with k-means++ seeding and split empty clusters", .serialized)
struct SphericalKMeansTests {
    @Test("well-separated clusters on the sphere are found: every centre has a codeword within a few degrees, and the objective rises")
    func findsClusters() {
        let M = 2, K = 16, d = 16, n = 2000, C = 8
        let (x, centres) = mixture(n: n, subspaces: M, d: d, centres: C, noise: 0.05, seed: 3)
        let r = SphericalKMeans.fit(points: x, count: n, subspaces: M, codewords: K, subDimension: d,
                                    settings: .init(iterations: 15, seed: 7), level: 0)
        #expect(norms(r.codewords, d: d).allSatisfy { abs($0 - 1) < 1e-5 })
        #expect(r.objective.last! > 0.95, "\(r.objective)")
        #expect(r.objective.last! >= r.objective.first!)
        for m in 0..<M {
            for k in 0..<C {
                let best = (0..<K).map { w in (0..<d).reduce(Float(0)) { $0 + centres[(m * C + k) * d + $1] * r.codewords[(m * K + w) * d + $1] } }.max()!
                #expect(best > 0.99, "sub-space \(m), centre \(k): nearest codeword cosine \(best)")
            }
        }
    }

    @Test("the same codewords whatever the thread count, and the fused kernel agrees with sgemm plus argmax")
    func deterministic() {
        let M = 4, K = 32, d = 16, n = 3000
        let (x, _) = mixture(n: n, subspaces: M, d: d, centres: 40, noise: 0.3, seed: 11)
        let settings = SphericalKMeans.Settings(iterations: 6, seed: 5, seedingPoints: 1000)
        func run(threads: Int, kernel: SphericalKMeans.Kernel) -> SphericalKMeans.Result {
            BLAS.setThreads(threads)
            defer { BLAS.setThreads(ProcessInfo.processInfo.activeProcessorCount) }
            return SphericalKMeans.fit(points: x, count: n, subspaces: M, codewords: K, subDimension: d,
                                       settings: settings, level: 2, kernel: kernel)
        }
        let one = run(threads: 1, kernel: .automatic), two = run(threads: 2, kernel: .automatic), four = run(threads: 4, kernel: .automatic)
        #expect(one.codewords == two.codewords && two.codewords == four.codewords)
        #expect(one.objective == four.objective)
        let blas = run(threads: 2, kernel: .sgemm)
        #expect(blas.objective.count == one.objective.count)
        // Rounding may differ in the last bit between the kernels; the fits must not.
        let drift = zip(blas.codewords, one.codewords).map { abs($0 - $1) }.max()!
        #expect(drift < 1e-3, "largest codeword difference between the kernels: \(drift)")
        // Another seed gives other codewords: the seed is used.
        let other = SphericalKMeans.fit(points: x, count: n, subspaces: M, codewords: K, subDimension: d,
                                        settings: .init(iterations: 6, seed: 6, seedingPoints: 1000), level: 2)
        #expect(other.codewords != one.codewords)
    }

    @Test("fewer distinct points than K: empty clusters are split, never left as zero codewords")
    func emptyClustersSplit() {
        let M = 1, K = 16, d = 8, n = 64
        // Four distinct unit vectors, each repeated 16 times.
        var x = [Float](repeating: 0, count: n * d)
        for i in 0..<n { x[i * d + (i % 4)] = 1 }
        let r = SphericalKMeans.fit(points: x, count: n, subspaces: M, codewords: K, subDimension: d,
                                    settings: .init(iterations: 4, seed: 1), level: 0)
        #expect(r.splits > 0)
        #expect(norms(r.codewords, d: d).allSatisfy { abs($0 - 1) < 1e-5 }, "every codeword unit-norm")
        #expect(abs(r.objective.last! - 1) < 1e-3, "every point still has its own direction as a codeword: \(r.objective)")
    }

    @Test("the k-means++ draw spreads the seeds: on a few tight clusters each gets a seed before any repeats")
    func seedingSpreads() {
        let K = 8, d = 16, n = 800
        let (x, centres) = mixture(n: n, subspaces: 1, d: d, centres: K, noise: 0.01, seed: 21)
        var rng = SplitMix64(seed: 4)
        var seeds = [Float](repeating: 0, count: K * d)
        x.withUnsafeBufferPointer { p in
            seeds.withUnsafeMutableBufferPointer { s in
                SphericalKMeans.seed(x: p.baseAddress!, stride: d, count: n, dimension: d, codewords: K, sample: n,
                                     rng: &rng, into: s.baseAddress!)
            }
        }
        var hit = Set<Int>()
        for k in 0..<K {
            let nearest = (0..<K).max { a, b in
                (0..<d).reduce(Float(0)) { $0 + seeds[k * d + $1] * centres[a * d + $1] }
                    < (0..<d).reduce(Float(0)) { $0 + seeds[k * d + $1] * centres[b * d + $1] }
            }!
            hit.insert(nearest)
        }
        #expect(hit.count == K, "seeds fell in \(hit.count) of \(K) clusters")
    }

    @Test("the fused assignment picks the first of equal maxima, as argmax does")
    func firstOfTies() {
        let K = 32, d = 16
        // Two identical codewords (5 and 20): the point's best; the first must win.
        var columns = [Float](repeating: 0, count: d * K)
        columns[0 * K + 5] = 1
        columns[0 * K + 20] = 1
        columns[1 * K + 7] = 1
        var point = [Float](repeating: 0, count: d * 5)
        for i in 0..<5 { point[i * d] = 1 }
        var index = [Int32](repeating: -1, count: 5), value = [Float](repeating: 0, count: 5)
        vidx_assign16(point, 5, columns, K, &index, &value)
        #expect(index == [5, 5, 5, 5, 5] && value == [1, 1, 1, 1, 1])
        var rows = [Float](repeating: 0, count: 40)
        rows[3] = 2
        rows[17] = 2
        var i2 = [Int32](repeating: -1, count: 1), v2 = [Float](repeating: 0, count: 1)
        vidx_argmax_rows(rows, 1, 40, 40, &i2, 1, &v2, 1)
        #expect(i2 == [3] && v2 == [2])
    }
}
