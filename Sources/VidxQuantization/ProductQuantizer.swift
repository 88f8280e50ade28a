import Dispatch
import VidxCore

/// HCQ's product quantizer: `levels` quantizers (level 0 coarse, then the fine levels),
/// each splitting a D-dimensional vector into M sub-vectors of D/M values, each coded by
/// the nearest of K unit-norm codewords by inner product
/// (Documentation/HCQ-inference.md, Product quantization).
///
/// The encoder, the index and search meet at this one type: it owns the layout, the
/// codebooks in their documented layout, encoding, reconstruction, the inner-product
/// lookup tables queries are scored with, and the codebook file a generation publishes.
/// (In the spirit of FAISS's `ProductQuantizer`, with HCQ's normalisations.)
public struct ProductQuantizer: Sendable, Equatable {
    /// The shape every code, codebook and table follows.
    public struct Layout: Sendable, Equatable, Hashable, CustomStringConvertible {
        /// Quantizers per vector: L (8 for HCQ: 1 coarse + 7 GhostVLAD levels).
        public let levels: Int
        /// Sub-spaces per level: M (32 for HCQ).
        public let subspaces: Int
        /// Codewords per sub-space: K, at most 256 so that a code is one byte.
        public let codewords: Int
        /// The dimension of one level's vector: D (the model's hidden size, 512 for HCQ).
        public let dimension: Int

        /// Values per sub-vector and codeword: D / M.
        public var subDimension: Int { dimension / subspaces }
        /// Code bytes per vector: L x M.
        public var codeBytes: Int { levels * subspaces }
        /// Floats in the codebooks: L x M x K x D/M.
        public var codebookCount: Int { levels * subspaces * codewords * subDimension }
        /// Floats in one vector's levels: L x D.
        public var vectorCount: Int { levels * dimension }
        /// The codebooks tensor's shape: (L, M, K, D/M).
        public var codebookShape: [Int] { [levels, subspaces, codewords, subDimension] }

        /// - Throws: `QuantizerError` when a size is not positive, K is over 256, or D is
        ///   not a multiple of M.
        public init(levels: Int, subspaces: Int, codewords: Int, dimension: Int) throws {
            guard levels >= 1, subspaces >= 1, codewords >= 1, dimension >= 1 else {
                throw QuantizerError("levels \(levels), M \(subspaces), K \(codewords) and D \(dimension) must all be at least 1")
            }
            guard codewords <= 256 else { throw QuantizerError("K = \(codewords) codewords do not fit a one-byte code (at most 256)") }
            guard dimension % subspaces == 0 else {
                throw QuantizerError("D = \(dimension) is not a multiple of M = \(subspaces) sub-spaces")
            }
            self.levels = levels
            self.subspaces = subspaces
            self.codewords = codewords
            self.dimension = dimension
        }

        public var description: String { "L \(levels) x M \(subspaces) x K \(codewords), D \(dimension)" }
    }

    public let layout: Layout
    /// (L, M, K, D/M) Float32, row-major: codeword k of sub-space m of level l at
    /// `((l * M + m) * K + k) * D/M`; every codeword L2-normalised, or zero (HCQ's training
    /// leaves a codeword no vector was assigned to as a zero vector: it scores 0).
    public let codebooks: [Float]
    /// The codebooks transposed to (L, M, D/M, K), for the table products (computed once).
    private let columns: [Float]

    /// The largest difference from 1 accepted in a codeword's norm.
    public static let normTolerance: Float = 1e-4

    /// - Parameter codebooks: (L, M, K, D/M), every codeword already L2-normalised (a
    ///   bundle normalises its checkpoint's codewords as HCQ does; a generation's file
    ///   stores them normalised).
    /// - Throws: `QuantizerError` for a count that does not match the layout, a value that
    ///   is not finite, or a codeword whose norm is not 1.
    public init(layout: Layout, codebooks: [Float]) throws {
        guard codebooks.count == layout.codebookCount else {
            throw QuantizerError("codebooks hold \(codebooks.count) values, \(layout) needs \(layout.codebookCount)")
        }
        let d = layout.subDimension
        for w in 0..<(layout.levels * layout.subspaces * layout.codewords) {
            var norm: Float = 0
            for j in 0..<d {
                let v = codebooks[w * d + j]
                guard v.isFinite else { throw QuantizerError("codeword \(w) holds \(v)") }
                norm += v * v
            }
            guard norm == 0 || abs(norm.squareRoot() - 1) <= Self.normTolerance else {
                let (l, rest) = w.quotientAndRemainder(dividingBy: layout.subspaces * layout.codewords)
                throw QuantizerError("codeword \(rest % layout.codewords) of sub-space \(rest / layout.codewords), level \(l), has norm \(norm.squareRoot()), neither 1 nor 0")
            }
        }
        self.layout = layout
        self.codebooks = codebooks
        var columns = [Float](repeating: 0, count: codebooks.count)
        let K = layout.codewords
        for lm in 0..<(layout.levels * layout.subspaces) {
            for k in 0..<K {
                for j in 0..<d { columns[(lm * d + j) * K + k] = codebooks[(lm * K + k) * d + j] }
            }
        }
        self.columns = columns
    }

    public static func == (a: ProductQuantizer, b: ProductQuantizer) -> Bool {
        a.layout == b.layout && a.codebooks == b.codebooks
    }

    // MARK: Encoding

    /// The codes of one vector: each sub-vector L2-normalised, code = the codeword of
    /// largest inner product (the first on ties, as argmax does). The normalisation does
    /// not change the argmax; it is kept so that dot products are the cosines HCQ compares.
    /// - Parameter levels: (L, D), level 0 first.
    /// - Returns: L x M bytes, level 0 first.
    public func encode(_ levels: [Float]) -> [UInt8] {
        precondition(levels.count == layout.vectorCount, "encode takes (L, D) = \(layout.vectorCount) values")
        let M = layout.subspaces, K = layout.codewords, d = layout.subDimension, D = layout.dimension
        var codes = [UInt8](repeating: 0, count: layout.codeBytes)
        var sub = [Float](repeating: 0, count: d)
        for l in 0..<layout.levels {
            let book = l * M * K * d
            for m in 0..<M {
                var norm: Float = 0
                for j in 0..<d {
                    sub[j] = levels[l * D + m * d + j]
                    norm += sub[j] * sub[j]
                }
                let scale = 1 / max(norm.squareRoot(), 1e-12)
                var best = -Float.infinity, bestK = 0
                for k in 0..<K {
                    var dot: Float = 0
                    let base = book + (m * K + k) * d
                    for j in 0..<d { dot += sub[j] * codebooks[base + j] }
                    dot *= scale
                    if dot > best { best = dot; bestK = k }
                }
                codes[l * M + m] = UInt8(bestK)
            }
        }
        return codes
    }

    /// A vector's levels rebuilt from its codes: (L, D), codeword m of level l at columns
    /// m * D/M ..< (m + 1) * D/M (query by example).
    /// - Parameter codes: L x M bytes, level 0 first.
    public func reconstruct(_ codes: [UInt8]) -> [Float] {
        precondition(codes.count == layout.codeBytes, "reconstruct takes L x M = \(layout.codeBytes) codes")
        let M = layout.subspaces, K = layout.codewords, d = layout.subDimension, D = layout.dimension
        var out = [Float](repeating: 0, count: layout.vectorCount)
        for l in 0..<layout.levels {
            for m in 0..<M {
                let k = Int(codes[l * M + m])
                let src = ((l * M + m) * K + k) * d
                for j in 0..<d { out[l * D + m * d + j] = codebooks[src + j] }
            }
        }
        return out
    }

    // MARK: Lookup tables

    /// Inner-product lookup tables for `count` queries (asymmetric distance computation).
    /// - Parameter queries: (Q, L, D) Float32, row-major: every query's L level vectors.
    /// - Returns: tables (Q, L, M, K): entry ((q L + l) M + m) K + k is <q[l, m] / |q[l, m]|,
    ///   C[l, m, k]>, the query's l-th level, m-th sub-vector L2-normalised (a zero
    ///   sub-vector stays zero) against codeword k. (Query, level) pairs are computed in
    ///   parallel; each sum runs in a fixed order, so the values do not depend on it.
    public func lookupTables(_ queries: [Float], count: Int) -> LookupTables {
        precondition(queries.count == count * layout.vectorCount, "queries must be (Q, L, D)")
        let levels = layout.levels, subspaces = layout.subspaces, codewords = layout.codewords
        let d = layout.subDimension, dimension = layout.dimension
        var values = [Float](repeating: 0, count: count * levels * subspaces * codewords)
        // Over the transposed codebooks (L, M, D/M, K), the dot products run over k in the
        // inner loop, which vectorises (each k still sums over j in order).
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
        return LookupTables(queries: count, layout: layout, values: values)
    }

    // MARK: The codebook file

    /// The codebook file's `format` metadata.
    public static let fileFormat = "vidx-codebooks"

    /// Writes the codebook file: a safetensors file with one F32 tensor `codebooks` of
    /// shape (L, M, K, D/M) and metadata `format` = `vidx-codebooks`, `format_version` = 1,
    /// `bundle_fingerprint` (Schemas/index-manifest.schema.json, codebooks), atomically.
    public func write(to path: String, bundleFingerprint: String) throws {
        var w = SafeTensorsWriter(metadata: ["format": Self.fileFormat, "format_version": "1",
                                             "bundle_fingerprint": bundleFingerprint])
        w.add("codebooks", floats: codebooks, shape: layout.codebookShape)
        try w.write(to: path)
    }

    /// Reads a codebook file and checks it: format, the bundle fingerprint, the layout's
    /// shape, unit-norm codewords.
    /// - Throws: `QuantizerError` naming the file, or the reader's `SafeTensorsError`.
    public init(contentsOf path: String, layout: Layout, bundleFingerprint: String) throws {
        let file = try SafeTensorsFile(path: path)
        guard file.metadata["format"] == Self.fileFormat else {
            throw QuantizerError("\(path): not a codebooks file (metadata format is '\(file.metadata["format"] ?? "absent")')")
        }
        guard file.metadata["bundle_fingerprint"] == bundleFingerprint else {
            throw QuantizerError("\(path): made for bundle \(file.metadata["bundle_fingerprint"] ?? "?"), expected \(bundleFingerprint)")
        }
        let values = try file.floats("codebooks", shape: layout.codebookShape)
        do { try self.init(layout: layout, codebooks: values) } catch let e as QuantizerError {
            throw QuantizerError("\(path): \(e.message)")
        }
    }
}

/// Per-query lookup tables for asymmetric distance computation (`ProductQuantizer.lookupTables`).
///
/// Layout: (queries, L, M, K) Float32, row-major: `values[((q * L + l) * M + m) * K + k]`.
public struct LookupTables: Sendable {
    public let queries: Int
    public let layout: ProductQuantizer.Layout
    public let values: [Float]

    public var levels: Int { layout.levels }
    public var subspaces: Int { layout.subspaces }
    public var codewords: Int { layout.codewords }
    /// Floats per query: L x M x K.
    public var stride: Int { layout.levels * layout.subspaces * layout.codewords }
}

/// A layout, codebooks or codebook file that breaks the quantizer's rules.
public struct QuantizerError: Error, CustomStringConvertible, Sendable, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
