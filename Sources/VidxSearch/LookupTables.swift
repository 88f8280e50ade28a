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
        // One (query, level) pair per task: each writes its own M x K slice.
        values.withUnsafeMutableBufferPointer { vb in
            nonisolated(unsafe) let out = vb.baseAddress!
            queries.withUnsafeBufferPointer { qb in
                codebooks.withUnsafeBufferPointer { cb in
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
                            let book = (l * subspaces + m) * codewords * d
                            let dst = ((q * levels + l) * subspaces + m) * codewords
                            for k in 0..<codewords {
                                var dot: Float = 0
                                for j in 0..<d { dot += sub[j] * cp[book + k * d + j] }
                                out[dst + k] = dot
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
