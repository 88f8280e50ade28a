import CVidxCluster
import Foundation
import VidxNumerics

/// Spherical k-means over the M sub-spaces of one quantization level: K unit-norm
/// codewords per sub-space, the algorithm HCQ refreshes its codebooks with (assign each
/// sub-vector to the codeword of largest inner product, take each cluster's mean,
/// re-normalise it), with the safeguards of FAISS's `Clustering`
/// (Documentation/Codebooks.md):
///
/// - k-means++ seeding (D² sampling with the squared distance between unit vectors,
///   2 - 2 cos) on a seeded subset of at most `seedingPoints` points;
/// - at most `maxPointsPerCentroid` x K points are used (the caller samples; `fit` checks);
/// - an empty cluster takes half of the largest one: that codeword is copied with a
///   small symmetric perturbation, both are re-normalised and the counts are split (FAISS
///   splits a cluster chosen in proportion to its size; HCQ's own code leaves a zero
///   codeword, which breaks the unit-norm assumption of scoring).
///
/// Assignment is one `sgemm` per (tile of 256 points, sub-space) on a strided view of the
/// points, tiles spread over `Parallel`'s threads; updates run per sub-space in point
/// order. Every sum has a fixed order, so the codewords depend on the points, K and the
/// settings, never on the thread count.
public enum SphericalKMeans {
    public struct Settings: Sendable, Equatable, Codable {
        /// Assignment and update rounds (FAISS's default 25; HCQ's training uses 10).
        public var iterations: Int
        public var seed: UInt64
        /// FAISS's `max_points_per_centroid`: the most points per codeword used.
        public var maxPointsPerCentroid: Int
        /// k-means++ runs on at most this many of the points (its cost is K passes).
        public var seedingPoints: Int

        public init(iterations: Int = 25, seed: UInt64 = 1234, maxPointsPerCentroid: Int = 256, seedingPoints: Int = 4096) {
            self.iterations = iterations
            self.seed = seed
            self.maxPointsPerCentroid = maxPointsPerCentroid
            self.seedingPoints = seedingPoints
        }

        enum CodingKeys: String, CodingKey {
            case iterations, seed, maxPointsPerCentroid = "max_points_per_centroid", seedingPoints = "seeding_points"
        }
    }

    /// One level's fit.
    public struct Result: Sendable {
        /// (M, K, d) Float32, row-major, every codeword of norm 1.
        public var codewords: [Float]
        /// The objective of each iteration's assignment: the mean over points and
        /// sub-spaces of the cosine between a sub-vector and its codeword.
        public var objective: [Double]
        /// Empty clusters split, over all iterations and sub-spaces.
        public var splits: Int
    }

    /// How points are assigned: `automatic` takes the fused kernel (`vidx_assign16`: dot
    /// products in registers and the running maximum, no score matrix) when d = 16 and K is
    /// a multiple of 16, HCQ's shapes; otherwise, and with `sgemm`, one `sgemm` per tile and
    /// sub-space, then an argmax over the score rows. Both sum each dot product's terms in
    /// order, so they agree except where two codewords' scores are within a rounding.
    public enum Kernel: Sendable { case automatic, sgemm }

    /// Rows of points per `sgemm` call.
    static let tile = 1024
    /// The relative perturbation of a split codeword (FAISS's `EPS` in `split_clusters`).
    static let splitEpsilon: Float = 1 / 1024

    /// Fits one level.
    /// - Parameters:
    ///   - points: (M, n, d) Float32, row-major: sub-space m's n sub-vectors together (so
    ///     every pass reads contiguous memory); each L2-normalised (as HCQ normalises the
    ///     sub-vectors it quantizes).
    ///   - count: n, at least K and at most `maxPointsPerCentroid` x K.
    ///   - level: mixed into the random streams, so that levels draw independently.
    ///   - progress: called after every iteration with (iteration, objective).
    public static func fit(points: [Float], count n: Int, subspaces M: Int, codewords K: Int, subDimension d: Int,
                           settings: Settings, level: Int, kernel: Kernel = .automatic,
                           progress: (Int, Double) -> Void = { _, _ in }) -> Result {
        let fused = kernel == .automatic && d == 16 && K % 16 == 0
        let block = n * d
        precondition(points.count == M * block, "points must be M x n x d")
        precondition(n >= K && K >= 1 && n <= settings.maxPointsPerCentroid * K, "fit needs K <= n <= max points per centroid x K")
        precondition(settings.iterations >= 1 && settings.seedingPoints >= 1)
        var centroids = [Float](repeating: 0, count: M * K * d)
        var assign = [Int32](repeating: 0, count: n * M)
        var best = [Float](repeating: 0, count: n * M)
        var objective: [Double] = []
        var splits = 0

        points.withUnsafeBufferPointer { pb in
            nonisolated(unsafe) let x = pb.baseAddress!
            // Seeding, one sub-space per task.
            centroids.withUnsafeMutableBufferPointer { cb in
                nonisolated(unsafe) let c = cb.baseAddress!
                Parallel.forEachRange(M) { range in
                    for m in range {
                        var rng = SplitMix64(seed: settings.seed, streams: [UInt64(level), UInt64(m), 0])
                        seed(x: x + m * block, stride: d, count: n, dimension: d, codewords: K,
                             sample: min(n, max(K, settings.seedingPoints)), rng: &rng, into: c + m * K * d)
                    }
                }
            }
            for iteration in 0..<settings.iterations {
                if fused {
                    // The codewords transposed to (M, d, K), then tiles of points over the threads.
                    var columns = [Float](repeating: 0, count: M * K * d)
                    for m in 0..<M {
                        for k in 0..<K { for j in 0..<d { columns[(m * d + j) * K + k] = centroids[(m * K + k) * d + j] } }
                    }
                    columns.withUnsafeBufferPointer { cb in
                        assign.withUnsafeMutableBufferPointer { ab in
                            best.withUnsafeMutableBufferPointer { bb in
                                nonisolated(unsafe) let c = cb.baseAddress!, a = ab.baseAddress!, s = bb.baseAddress!
                                let tiles = (n + tile - 1) / tile
                                Parallel.forEachRange(tiles * M) { range in
                                    for item in range {
                                        let m = item / tiles, row = (item % tiles) * tile, rows = min(tile, n - row)
                                        vidx_assign16(x + m * block + row * d, rows, c + m * d * K, K, a + m * n + row, s + m * n + row)
                                    }
                                }
                            }
                        }
                    }
                } else {
                // Assignment: tiles of points over the threads, every sub-space per tile.
                centroids.withUnsafeBufferPointer { cb in
                    assign.withUnsafeMutableBufferPointer { ab in
                        best.withUnsafeMutableBufferPointer { bb in
                            nonisolated(unsafe) let c = cb.baseAddress!, a = ab.baseAddress!, s = bb.baseAddress!
                            let tiles = (n + tile - 1) / tile
                            Parallel.forEachRange(tiles) { range in
                                let scores = UnsafeMutablePointer<Float>.allocate(capacity: tile * K)
                                defer { scores.deallocate() }
                                for t in range {
                                    let row = t * tile, rows = min(tile, n - row)
                                    for m in 0..<M {
                                        BLAS.gemm(m: rows, n: K, k: d, a: x + m * block + row * d, lda: d,
                                                  b: c + m * K * d, ldb: d, transposeB: true, c: scores, ldc: K)
                                        vidx_argmax_rows(scores, rows, K, K, a + m * n + row, 1, s + m * n + row, 1)
                                    }
                                }
                            }
                        }
                    }
                }
                }
                // Update: one sub-space per task, sums in point order.
                var perSpace = [Double](repeating: 0, count: M)
                var splitCounts = [Int](repeating: 0, count: M)
                centroids.withUnsafeMutableBufferPointer { cb in
                    assign.withUnsafeBufferPointer { ab in
                        best.withUnsafeBufferPointer { bb in
                            perSpace.withUnsafeMutableBufferPointer { ob in
                                splitCounts.withUnsafeMutableBufferPointer { sb in
                                    nonisolated(unsafe) let c = cb.baseAddress!, a = ab.baseAddress!, s = bb.baseAddress!
                                    nonisolated(unsafe) let o = ob.baseAddress!, sp = sb.baseAddress!
                                    Parallel.forEachRange(M) { range in
                                        for m in range {
                                            var rng = SplitMix64(seed: settings.seed,
                                                                 streams: [UInt64(level), UInt64(m), UInt64(iteration + 1)])
                                            var total = 0.0
                                            for i in 0..<n { total += Double(s[m * n + i]) }
                                            o[m] = total / Double(n)
                                            sp[m] = update(x: x + m * block, stride: d, count: n, assign: a + m * n, assignStride: 1,
                                                           dimension: d, codewords: K, rng: &rng, centroids: c + m * K * d)
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                // A mean of cosines; float dot products of unit vectors may pass 1 by a rounding.
                let value = min(1, max(-1, perSpace.reduce(0, +) / Double(M)))
                objective.append(value)
                splits += splitCounts.reduce(0, +)
                progress(iteration, value)
            }
        }
        return Result(codewords: centroids, objective: objective, splits: splits)
    }

    /// k-means++ on `sample` points drawn without replacement: the first uniformly, each
    /// next with probability proportional to its squared distance (2 - 2 cos) to the
    /// nearest codeword chosen so far. With fewer distinct points than K, the rest repeat
    /// points (and become empty clusters that the first update splits).
    static func seed(x: UnsafePointer<Float>, stride: Int, count n: Int, dimension d: Int, codewords K: Int,
                     sample: Int, rng: inout SplitMix64, into c: UnsafeMutablePointer<Float>) {
        // A seeded subset: a partial Fisher-Yates shuffle of the indices.
        var order = Array(0..<n)
        for i in 0..<sample {
            let j = i + Int(rng.next(below: UInt64(n - i)))
            order.swapAt(i, j)
        }
        let chosen = Array(order[0..<sample])
        var subset = [Float](repeating: 0, count: sample * d)
        for (i, p) in chosen.enumerated() {
            for j in 0..<d { subset[i * d + j] = x[p * stride + j] }
        }
        // The same points transposed, (d, sample), for the distance kernel.
        var columns = [Float](repeating: 0, count: sample * d)
        for i in 0..<sample { for j in 0..<d { columns[j * sample + i] = subset[i * d + j] } }
        var nearest = [Float](repeating: .infinity, count: sample)
        // Sums of nearest[] per block of 64 points: the draw finds its block, then its point.
        let blockSize = 64
        var blocks = [Double](repeating: 0, count: (sample + blockSize - 1) / blockSize)
        var pick = Int(rng.next(below: UInt64(sample)))
        for k in 0..<K {
            for j in 0..<d { c[k * d + j] = subset[pick * d + j] }
            if k == K - 1 { break }
            var total = 0.0
            subset.withUnsafeBufferPointer { sp in
                nearest.withUnsafeMutableBufferPointer { nb in
                    blocks.withUnsafeMutableBufferPointer { bb in
                        let s = sp.baseAddress!, near = nb.baseAddress!, sums = bb.baseAddress!
                        let word = c + k * d
                        if d == 16 {
                            total = columns.withUnsafeBufferPointer { vidx_nearest_update16($0.baseAddress!, sample, word, near, sums) }
                            return
                        }
                        for i in 0..<sample {
                            var dot: Float = 0
                            for j in 0..<d { dot += s[i * d + j] * word[j] }
                            let dist = max(0, 2 - 2 * dot)
                            if dist < near[i] { near[i] = dist }
                        }
                        for b in 0..<bb.count {
                            var sum = 0.0
                            for i in (b * blockSize)..<min(sample, (b + 1) * blockSize) { sum += Double(near[i]) }
                            sums[b] = sum
                            total += sum
                        }
                    }
                }
            }
            guard total > 0 else {
                pick = Int(rng.next(below: UInt64(sample)))
                continue
            }
            // The point where the running sum passes a uniform target: its block first.
            var target = rng.nextUnit() * total
            var block = blocks.count - 1
            for b in 0..<blocks.count {
                if target < blocks[b] { block = b; break }
                target -= blocks[b]
            }
            let start = block * blockSize, end = min(sample, start + blockSize)
            pick = -1
            var running = 0.0
            for i in start..<end where nearest[i] > 0 {
                running += Double(nearest[i])
                pick = i
                if running > target { break }
            }
            if pick < 0 { pick = Int(rng.next(below: UInt64(sample))) }  // an all-zero block by rounding
        }
    }

    /// Each codeword becomes its cluster's normalised sum (the mean's direction); empty
    /// clusters (or clusters whose sum is zero) take half of the largest cluster.
    /// - Returns: the number of clusters split.
    static func update(x: UnsafePointer<Float>, stride: Int, count n: Int, assign: UnsafePointer<Int32>, assignStride: Int,
                       dimension d: Int, codewords K: Int, rng: inout SplitMix64, centroids c: UnsafeMutablePointer<Float>) -> Int {
        var sums = [Double](repeating: 0, count: K * d)
        var sizes = [Int](repeating: 0, count: K)
        for i in 0..<n {
            let k = Int(assign[i * assignStride])
            sizes[k] += 1
            let p = x + i * stride
            for j in 0..<d { sums[k * d + j] += Double(p[j]) }
        }
        var empty: [Int] = []
        for k in 0..<K {
            var norm = 0.0
            for j in 0..<d { norm += sums[k * d + j] * sums[k * d + j] }
            norm = norm.squareRoot()
            if sizes[k] == 0 || !(norm > 1e-12) {
                empty.append(k)
                sizes[k] = 0
                continue
            }
            for j in 0..<d { c[k * d + j] = Float(sums[k * d + j] / norm) }
        }
        for k in empty {
            // The largest cluster (the first on ties) gives half its points.
            var largest = 0
            for j in 1..<K where sizes[j] > sizes[largest] { largest = j }
            let source = c + largest * d, target = c + k * d
            // Which dimensions move up and which down: random, so that repeated splits of
            // one codeword do not all move the same way.
            for j in 0..<d {
                let up = rng.next() & 1 == 0
                let v = source[j]
                target[j] = v * (up ? 1 + splitEpsilon : 1 - splitEpsilon)
                source[j] = v * (up ? 1 - splitEpsilon : 1 + splitEpsilon)
            }
            normalize(source, d)
            normalize(target, d)
            sizes[k] = sizes[largest] / 2
            sizes[largest] -= sizes[k]
        }
        return empty.count
    }

    static func normalize(_ v: UnsafeMutablePointer<Float>, _ d: Int) {
        var norm: Float = 0
        for j in 0..<d { norm += v[j] * v[j] }
        norm = norm.squareRoot()
        if norm > 0 { for j in 0..<d { v[j] /= norm } }
    }
}

/// SplitMix64 (Steele, Lea and Flood, 2014): a small, fast generator whose streams are
/// derived from a seed and a path (level, sub-space, iteration), so that each part of a
/// fit draws the same numbers whatever runs beside it.
public struct SplitMix64: Sendable {
    private var state: UInt64

    public init(seed: UInt64, streams: [UInt64] = []) {
        state = seed
        for s in streams {
            state = Self.mix(state &+ 0x9E37_79B9_7F4A_7C15 &* (s &+ 1))
        }
    }

    static func mix(_ z0: UInt64) -> UInt64 {
        var z = z0
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return Self.mix(state)
    }

    /// Uniform in 0 ..< bound (bound > 0), without modulo bias (Lemire's method).
    public mutating func next(below bound: UInt64) -> UInt64 {
        precondition(bound > 0)
        let threshold = (0 &- bound) % bound
        while true {
            let r = next()
            let (high, low) = r.multipliedFullWidth(by: bound)
            if low >= threshold { return high }
        }
    }

    /// Uniform in [0, 1), 53 bits.
    public mutating func nextUnit() -> Double { Double(next() >> 11) * 0x1p-53 }
}
