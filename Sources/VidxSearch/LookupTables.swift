import Dispatch

/// Per-query lookup tables for asymmetric distance computation (HCQ.md, Scoring).
///
/// Layout: (queries, levels, M, K) Float32, row-major: `values[((q * L + l) * M + m) * K + k]`
/// is <q[l, m] / |q[l, m]|, C[l, m, k]>, the query's l-th level, m-th sub-vector
/// L2-normalised (a zero sub-vector stays zero) against codeword k.
public struct LookupTables: Sendable {
    public let queries: Int
    public let levels: Int, subspaces: Int, codewords: Int
    public let values: [Float]

    /// Floats per query: L * M * K.
    public var stride: Int { levels * subspaces * codewords }

    /// - Parameters:
    ///   - queries: (Q, L, D) Float32, row-major: every query's L level vectors.
    ///   - codebooks: (L, M, K, D / M) Float32, codewords L2-normalised.
    public init(queries: [Float], count: Int, codebooks: [Float], levels: Int, subspaces: Int, codewords: Int,
                dimension: Int) {
        precondition(dimension % subspaces == 0, "dimension must be a multiple of the subspaces")
        precondition(queries.count == count * levels * dimension, "queries must be (Q, L, D)")
        precondition(codebooks.count == levels * subspaces * codewords * (dimension / subspaces), "codebooks must be (L, M, K, D/M)")
        self.queries = count
        self.levels = levels
        self.subspaces = subspaces
        self.codewords = codewords
        let d = dimension / subspaces
        var values = [Float](repeating: 0, count: count * levels * subspaces * codewords)
        // The codebooks transposed to (L, M, D/M, K): the dot products below then run over k
        // in the inner loop, which vectorises (each k still sums over j in order).
        var columns = [Float](repeating: 0, count: codebooks.count)
        for lm in 0..<(levels * subspaces) {
            for k in 0..<codewords {
                for j in 0..<d { columns[(lm * d + j) * codewords + k] = codebooks[(lm * codewords + k) * d + j] }
            }
        }
        // One (query, level) pair per task: each writes its own M x K slice.
        values.withUnsafeMutableBufferPointer { vb in
            nonisolated(unsafe) let out = vb.baseAddress!
            queries.withUnsafeBufferPointer { qb in
                columns.withUnsafeBufferPointer { cb in
                    nonisolated(unsafe) let qp = qb.baseAddress!, cp = cb.baseAddress!
                    DispatchQueue.concurrentPerform(iterations: count * levels) { item in
                        let q = item / levels, l = item % levels
                        var sub = [Float](repeating: 0, count: d)
                        for m in 0..<subspaces {
                            let base = (q * levels + l) * dimension + m * d
                            var norm: Float = 0
                            for j in 0..<d { sub[j] = qp[base + j]; norm += sub[j] * sub[j] }
                            norm = norm.squareRoot()
                            if norm > 0 { for j in 0..<d { sub[j] /= norm } }
                            let book = cp + (l * subspaces + m) * d * codewords
                            let dst = out + ((q * levels + l) * subspaces + m) * codewords
                            for k in 0..<codewords { dst[k] = 0 }
                            for j in 0..<d {
                                let x = sub[j], row = book + j * codewords
                                for k in 0..<codewords { dst[k] += x * row[k] }
                            }
                        }
                    }
                }
            }
        }
        self.values = values
    }

    /// A video's levels rebuilt from its codes: (L, D), codeword m of level l at columns
    /// m * D/M ..< (m + 1) * D/M (query by example).
    /// - Parameter codes: L * M bytes, level 0 first.
    public static func reconstruct(codes: [UInt8], codebooks: [Float], levels: Int, subspaces: Int, codewords: Int,
                                   dimension: Int) -> [Float] {
        let d = dimension / subspaces
        var out = [Float](repeating: 0, count: levels * dimension)
        for l in 0..<levels {
            for m in 0..<subspaces {
                let k = Int(codes[l * subspaces + m])
                let src = ((l * subspaces + m) * codewords + k) * d
                for j in 0..<d { out[l * dimension + m * d + j] = codebooks[src + j] }
            }
        }
        return out
    }
}

/// Lookup tables regrouped for the scan kernel: queries in lane groups of 8, each group's
/// tables interleaved so that entry (l, m, c) holds the 8 queries' values side by side
/// (`vidx_scan_level8`, Sources/CVidxScan). A last group with fewer than 8 queries has
/// zero tables in its unused lanes, which nothing reads back.
final class LaneTables: @unchecked Sendable {
    let queries: Int
    let groups: Int
    /// Floats per (group, level): M * K * 8.
    let levelStride: Int
    let levels: Int
    private let storage: UnsafeMutablePointer<Float>

    /// The lane-group tables of `tables`' queries in `range`.
    init(_ tables: LookupTables, queries range: Range<Int>) {
        queries = range.count
        groups = (range.count + 7) / 8
        levels = tables.levels
        levelStride = tables.subspaces * tables.codewords * 8
        let count = groups * levels * levelStride
        storage = UnsafeMutableRawPointer.allocate(byteCount: count * 4, alignment: 64)
            .bindMemory(to: Float.self, capacity: count)
        storage.initialize(repeating: 0, count: count)
        let perQuery = tables.stride, base = range.lowerBound
        tables.values.withUnsafeBufferPointer { src in
            for q in 0..<queries {
                let from = src.baseAddress! + (base + q) * perQuery
                let to = storage + (q / 8) * levels * levelStride + q % 8
                for e in 0..<perQuery { to[e * 8] = from[e] }
            }
        }
    }

    deinit { storage.deallocate() }

    /// Group `group`'s table for `level`: M * K * 8 floats.
    @inline(__always)
    func table(group: Int, level: Int) -> UnsafePointer<Float> {
        UnsafePointer(storage + (group * levels + level) * levelStride)
    }
}
