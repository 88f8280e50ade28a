import Foundation
import VidxCore
import VidxHCQ
import VidxNumerics
import VidxQuantization

/// What quantization costs, measured on held-out videos (`vidx-quality`,
/// Documentation/Codebooks.md): ADC search over a bundle's codes against exact search over
/// the float embeddings, both with HCQ's score.
///
/// Definitions (the FAISS script, Pipelines/quality/fidelity.py, uses the same):
/// - a level's score is the mean over its M sub-spaces of the cosine between the query's
///   and the video's sub-vectors (the video's codeword for ADC); the all-levels score is
///   the mean over levels (HCQ's S(q, v));
/// - recall@k: the share of queries whose exact top-1 is among the ADC top-k (a video
///   scoring exactly as the exact top-1 does not push it down);
/// - MSE: the mean over videos of the squared distance between the sub-normalised level
///   vector and its reconstruction; mean cosine: over videos and sub-spaces;
/// - coarse-to-fine agreement at depth K: the share of the all-levels ADC top-10 that a
///   search keeps when it ranks by level 0's ADC score, keeps the top K and re-ranks
///   those by the all-levels ADC score.
/// Query by example takes database videos as queries and leaves each out of its own
/// results; text queries (`--queries`, (Q, L, D)) search the whole database.
public enum Fidelity {
    public static let recallDepths = [1, 2, 5, 10, 20, 50, 100]
    public static let rerankDepths = [100, 1000, 10000]

    public struct Level: Codable, Sendable, Equatable {
        public var level: Int
        public var mse: Double
        public var meanCosine: Double
        enum CodingKeys: String, CodingKey { case level, mse, meanCosine = "mean_cosine" }
    }

    public struct QuerySet: Codable, Sendable, Equatable {
        /// `example` (database videos, each left out of its own results) or `text`.
        public var kind: String
        public var queries: Int
        /// recall[level][i] at `recallDepths[i]`, levels 0..L-1; the last row is all levels.
        public var recall: [[Double]]
        /// Top-10 agreement at `rerankDepths` (depths at or past the database are full scans).
        public var coarseToFine: [Double]
        enum CodingKeys: String, CodingKey { case kind, queries, recall, coarseToFine = "coarse_to_fine" }
    }

    public struct Report: Codable, Sendable, Equatable {
        public var format = "vidx-quality"
        public var formatVersion = 1
        public var quantizer: String
        public var bundleFingerprint: String
        public var database: Int
        public var recallDepths: [Int]
        public var rerankDepths: [Int]
        public var levels: [Level]
        public var querySets: [QuerySet]
        enum CodingKeys: String, CodingKey {
            case format, formatVersion = "format_version", quantizer, bundleFingerprint = "bundle_fingerprint", database
            case recallDepths = "recall_depths", rerankDepths = "rerank_depths", levels, querySets = "query_sets"
        }
    }

    /// Database videos: ids and sub-normalised embeddings laid out (L, n, D).
    public struct Database: Sendable {
        public var ids: [String]
        public var vectors: [Float]
        public var levels: Int, dimension: Int
        public var count: Int { ids.count }
    }

    /// Reads the usable videos of codes files with embeddings made by `bundle` (or one it
    /// accepts), sub-vectors normalised.
    public static func database(codes paths: [String], bundle: ModelBundle) throws -> Database {
        let layout = bundle.quantizer.layout
        let fitter = CodebookFitter(bundle: bundle)
        var rows: [[Float]] = []
        var ids: [String] = []
        var seen = Set<String>()
        for path in paths {
            let file = try CodesFile(path: path)
            try fitter.check(file)
            let width = layout.vectorCount
            for (i, v) in file.videos.enumerated() where v.status != .failed {
                guard seen.insert(v.id).inserted else { throw FitError("video '\(v.id)' is given twice (again in \(path))") }
                ids.append(v.id)
                rows.append(Array(file.embeddings![(i * width)..<((i + 1) * width)]))
            }
        }
        let n = ids.count, L = layout.levels, D = layout.dimension
        var vectors = [Float](repeating: 0, count: L * n * D)
        for (i, row) in rows.enumerated() {
            let normalised = subNormalised(row, layout: layout)
            for l in 0..<L {
                vectors.replaceSubrange(((l * n + i) * D)..<((l * n + i + 1) * D), with: normalised[(l * D)..<((l + 1) * D)])
            }
        }
        return Database(ids: ids, vectors: vectors, levels: L, dimension: D)
    }

    /// (L, D) with every sub-vector L2-normalised (a zero sub-vector stays zero).
    static func subNormalised(_ v: [Float], layout: ProductQuantizer.Layout) -> [Float] {
        var out = v
        let d = layout.subDimension
        for s in stride(from: 0, to: v.count, by: d) {
            var norm: Float = 0
            for j in 0..<d { norm += v[s + j] * v[s + j] }
            norm = norm.squareRoot()
            if norm > 0 { for j in 0..<d { out[s + j] = v[s + j] / norm } }
        }
        return out
    }

    /// Measures `quantizer` on `database`: example queries (the first `examples` database
    /// videos in the seeded sample order) and, when given, text queries (Q, L, D).
    public static func evaluate(quantizer: ProductQuantizer, bundleFingerprint: String, database db: Database,
                                examples: Int, seed: UInt64, textQueries: [Float]? = nil,
                                progress: (Int, Int) -> Void = { _, _ in }) -> Report {
        let layout = quantizer.layout
        let L = layout.levels, D = layout.dimension, M = layout.subspaces, d = layout.subDimension, n = db.count
        // Reconstructions (L, n, D) and the per-level error figures.
        var recon = [Float](repeating: 0, count: L * n * D)
        var levels: [Level] = []
        recon.withUnsafeMutableBufferPointer { rb in
            nonisolated(unsafe) let r = rb.baseAddress!
            let x = db.vectors
            Parallel.forEachRange(n) { range in
                var v = [Float](repeating: 0, count: L * D)
                for i in range {
                    for l in 0..<L { for j in 0..<D { v[l * D + j] = x[(l * n + i) * D + j] } }
                    let rec = quantizer.reconstruct(quantizer.encode(v))
                    for l in 0..<L { for j in 0..<D { r[(l * n + i) * D + j] = rec[l * D + j] } }
                }
            }
        }
        for l in 0..<L {
            var squared = 0.0, cosine = 0.0
            for i in 0..<n {
                let base = (l * n + i) * D
                for m in 0..<M {
                    var dot: Float = 0, dist: Float = 0
                    for j in 0..<d {
                        let a = db.vectors[base + m * d + j], b = recon[base + m * d + j]
                        dot += a * b
                        dist += (a - b) * (a - b)
                    }
                    squared += Double(dist)
                    cosine += Double(dot)
                }
            }
            // Unit vectors' float dot products may pass 1 by a rounding: the figure stays a cosine.
            let mean = min(1, max(-1, cosine / Double(max(n * M, 1))))
            levels.append(Level(level: l, mse: squared / Double(max(n, 1)), meanCosine: mean))
        }
        var sets: [QuerySet] = []
        let count = min(examples, n)
        if count > 0 {
            let chosen = CodebookFitter.select(db.ids, size: count, seed: seed)
            let position = Dictionary(uniqueKeysWithValues: db.ids.enumerated().map { ($1, $0) })
            let selves = chosen.map { position[$0]! }
            var queries = [Float](repeating: 0, count: count * L * D)
            for (q, i) in selves.enumerated() {
                for l in 0..<L { for j in 0..<D { queries[(q * L + l) * D + j] = db.vectors[(l * n + i) * D + j] } }
            }
            sets.append(search(kind: "example", queries: queries, count: count, exclude: selves, db: db, recon: recon,
                               layout: layout, progress: progress))
        }
        if let textQueries {
            let q = textQueries.count / (L * D)
            var normalised = [Float](repeating: 0, count: textQueries.count)
            for i in 0..<q {
                normalised.replaceSubrange((i * L * D)..<((i + 1) * L * D),
                                           with: subNormalised(Array(textQueries[(i * L * D)..<((i + 1) * L * D)]), layout: layout))
            }
            sets.append(search(kind: "text", queries: normalised, count: q, exclude: nil, db: db, recon: recon,
                               layout: layout, progress: progress))
        }
        return Report(quantizer: "vidx", bundleFingerprint: bundleFingerprint, database: n, recallDepths: recallDepths,
                      rerankDepths: rerankDepths, levels: levels, querySets: sets)
    }

    /// The report as a table for people: per level the error figures and each query
    /// set's recall@1/10/100, then the coarse-to-fine agreement.
    public static func table(_ r: Report) -> String {
        let pick = [1, 10, 100].compactMap { r.recallDepths.firstIndex(of: $0) }
        var lines = ["vidx-quality: bundle \(r.bundleFingerprint.prefix(16)), \(r.database) database videos"]
        var head = "level      mse  cosine"
        for set in r.querySets {
            head += "  | \(set.kind) (\(set.queries)): " + pick.map { "R@\(r.recallDepths[$0])" }.map { $0.padding(toLength: 6, withPad: " ", startingAt: 0) }.joined(separator: " ")
        }
        lines.append(head)
        let L = r.levels.count
        for l in 0...L {
            var line = l < L ? String(format: "%5d  %7.4f  %6.4f", l, r.levels[l].mse, r.levels[l].meanCosine) : "  all                 "
            for set in r.querySets {
                let label = "  | \(set.kind) (\(set.queries)): "
                line += String(repeating: " ", count: label.count)
                    + pick.map { String(format: "%.3f ", set.recall[l][$0]) }.joined()
            }
            lines.append(line)
        }
        for set in r.querySets {
            let depths = zip(r.rerankDepths, set.coarseToFine).map { depth, v in
                String(format: "K=%d %.3f", depth, v) + (depth >= r.database ? " (full scan)" : "")
            }
            lines.append("coarse-to-fine top-10 agreement (\(set.kind)): " + depths.joined(separator: ", "))
        }
        return lines.joined(separator: "\n")
    }

    /// Queries per block of score products.
    static let block = 32

    static func search(kind: String, queries: [Float], count Q: Int, exclude: [Int]?, db: Database, recon: [Float],
                       layout: ProductQuantizer.Layout, progress: (Int, Int) -> Void) -> QuerySet {
        let L = layout.levels, D = layout.dimension, n = db.count, M = layout.subspaces
        let blocks = (Q + block - 1) / block
        // Per block: recall hits (L + 1) x depths, and agreement sums per rerank depth.
        var hits = [Int](repeating: 0, count: blocks * (L + 1) * recallDepths.count)
        var agreement = [Double](repeating: 0, count: blocks * rerankDepths.count)
        let done = LockedCounter()
        hits.withUnsafeMutableBufferPointer { hb in
            agreement.withUnsafeMutableBufferPointer { ab in
                nonisolated(unsafe) let h = hb.baseAddress!, a = ab.baseAddress!
                queries.withUnsafeBufferPointer { qb in
                    db.vectors.withUnsafeBufferPointer { xb in
                        recon.withUnsafeBufferPointer { rb in
                            nonisolated(unsafe) let qp = qb.baseAddress!, xp = xb.baseAddress!, rp = rb.baseAddress!
                            Parallel.forEachRange(blocks) { range in
                                let rowsMax = block
                                // Level-major query copies (rows of D), float and ADC scores per level.
                                var qLevel = [Float](repeating: 0, count: rowsMax * D)
                                var exact = [Float](repeating: 0, count: (L + 1) * rowsMax * n)
                                var adc = [Float](repeating: 0, count: (L + 1) * rowsMax * n)
                                for b in range {
                                    let first = b * block, rows = min(block, Q - first)
                                    for l in 0..<L {
                                        for r in 0..<rows {
                                            for j in 0..<D { qLevel[r * D + j] = qp[((first + r) * L + l) * D + j] / Float(M) }
                                        }
                                        qLevel.withUnsafeBufferPointer { qlb in
                                            exact.withUnsafeMutableBufferPointer { eb in
                                                adc.withUnsafeMutableBufferPointer { cb in
                                                    BLAS.gemm(m: rows, n: n, k: D, a: qlb.baseAddress!, lda: D, b: xp + l * n * D, ldb: D,
                                                              transposeB: true, c: eb.baseAddress! + l * rowsMax * n, ldc: n)
                                                    BLAS.gemm(m: rows, n: n, k: D, a: qlb.baseAddress!, lda: D, b: rp + l * n * D, ldb: D,
                                                              transposeB: true, c: cb.baseAddress! + l * rowsMax * n, ldc: n)
                                                }
                                            }
                                        }
                                    }
                                    for r in 0..<rows {
                                        // The all-levels scores: the mean over levels, in level order.
                                        let all = L * rowsMax * n
                                        for i in 0..<n {
                                            var e: Float = 0, c: Float = 0
                                            for l in 0..<L { e += exact[(l * rowsMax + r) * n + i]; c += adc[(l * rowsMax + r) * n + i] }
                                            exact[all + r * n + i] = e / Float(L)
                                            adc[all + r * n + i] = c / Float(L)
                                        }
                                        if let exclude {
                                            let me = exclude[first + r]
                                            for l in 0...L {
                                                exact[(l * rowsMax + r) * n + me] = -.infinity
                                                adc[(l * rowsMax + r) * n + me] = -.infinity
                                            }
                                        }
                                        for l in 0...L {
                                            let e = (l * rowsMax + r) * n
                                            var top = 0
                                            for i in 1..<n where exact[e + i] > exact[e + top] { top = i }
                                            let mark = adc[e + top]
                                            var above = 0
                                            for i in 0..<n where adc[e + i] > mark { above += 1 }
                                            for (t, k) in recallDepths.enumerated() where above < k {
                                                h[(b * (L + 1) + l) * recallDepths.count + t] += 1
                                            }
                                        }
                                        let coarse = Array(adc[(r * n)..<((r + 1) * n)])
                                        let full = Array(adc[(all + r * n)..<(all + (r + 1) * n)])
                                        let reference = Set(topIndices(full, among: nil, count: 10))
                                        for (t, depth) in rerankDepths.enumerated() {
                                            let kept = depth >= n ? nil : topIndices(coarse, among: nil, count: depth)
                                            let got = topIndices(full, among: kept, count: 10)
                                            a[b * rerankDepths.count + t] += Double(got.filter { reference.contains($0) }.count)
                                                / Double(max(reference.count, 1))
                                        }
                                    }
                                    progress(done.add(rows), Q)
                                }
                            }
                        }
                    }
                }
            }
        }
        var recall = [[Double]](repeating: [Double](repeating: 0, count: recallDepths.count), count: L + 1)
        for b in 0..<blocks {
            for l in 0...L { for t in 0..<recallDepths.count { recall[l][t] += Double(hits[(b * (L + 1) + l) * recallDepths.count + t]) } }
        }
        recall = recall.map { $0.map { $0 / Double(max(Q, 1)) } }
        var c2f = [Double](repeating: 0, count: rerankDepths.count)
        for b in 0..<blocks { for t in 0..<rerankDepths.count { c2f[t] += agreement[b * rerankDepths.count + t] } }
        return QuerySet(kind: kind, queries: Q, recall: recall, coarseToFine: c2f.map { $0 / Double(max(Q, 1)) })
    }

    /// The indices of the `count` largest scores (ties: the lower index first), among
    /// `among` when given, best first.
    static func topIndices(_ scores: [Float], among: [Int]?, count: Int) -> [Int] {
        let pool = among ?? Array(scores.indices)
        if pool.count <= count {
            return pool.sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }
        }
        // The count-th largest by quickselect on a copy, then the ones above it.
        var values = pool.map { scores[$0] }
        let threshold = quickselect(&values, rank: count - 1)
        var chosen = pool.filter { scores[$0] > threshold }
        for i in pool where scores[i] == threshold && chosen.count < count { chosen.append(i) }
        return chosen.sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }.prefix(count).map { $0 }
    }

    /// The value of rank `rank` (0: the largest) of `values` (reordered).
    static func quickselect(_ values: inout [Float], rank: Int) -> Float {
        var lo = 0, hi = values.count - 1
        while lo < hi {
            let pivot = values[(lo + hi) / 2]
            var i = lo, j = hi
            while i <= j {
                while values[i] > pivot { i += 1 }
                while values[j] < pivot { j -= 1 }
                if i <= j { values.swapAt(i, j); i += 1; j -= 1 }
            }
            if rank <= j { hi = j } else if rank >= i { lo = i } else { return values[rank] }
        }
        return values[rank]
    }
}

/// A counter shared by threads (progress).
final class LockedCounter: @unchecked Sendable {
    private var value = 0
    private let lock = NSLock()
    func add(_ n: Int) -> Int {
        lock.lock(); defer { lock.unlock() }
        value += n
        return value
    }
}
