import Foundation
import Testing
import VidxCore
import VidxQuantization
import VidxTestSupport

/// Seeded unit-norm codebooks for `layout`.
func randomCodebooks(_ layout: ProductQuantizer.Layout, seed: UInt64) -> [Float] {
    var rng = SeededGenerator(seed: seed)
    var books = (0..<layout.codebookCount).map { _ in rng.uniform() }
    let d = layout.subDimension
    for w in 0..<(layout.codebookCount / d) {
        let norm = (0..<d).reduce(Float(0)) { $0 + books[w * d + $1] * books[w * d + $1] }.squareRoot()
        for j in 0..<d { books[w * d + j] /= norm }
    }
    return books
}

@Suite("ProductQuantizer: layout, codebooks, encoding, reconstruction, tables, file")
struct ProductQuantizerTests {
    let layout = try! ProductQuantizer.Layout(levels: 3, subspaces: 4, codewords: 16, dimension: 32)

    @Test("the layout derives the sub-vector size and counts, and refuses impossible sizes")
    func layoutRules() throws {
        #expect(layout.subDimension == 8 && layout.codeBytes == 12 && layout.codebookCount == 3 * 4 * 16 * 8)
        #expect(layout.codebookShape == [3, 4, 16, 8] && layout.vectorCount == 96)
        #expect(throws: QuantizerError.self) { try ProductQuantizer.Layout(levels: 8, subspaces: 32, codewords: 257, dimension: 512) }
        #expect(throws: QuantizerError.self) { try ProductQuantizer.Layout(levels: 8, subspaces: 30, codewords: 256, dimension: 512) }
        #expect(throws: QuantizerError.self) { try ProductQuantizer.Layout(levels: 0, subspaces: 32, codewords: 256, dimension: 512) }
        let hcq = try ProductQuantizer.Layout(levels: 8, subspaces: 32, codewords: 256, dimension: 512)
        #expect(hcq.subDimension == 16 && hcq.codeBytes == 256)
    }

    @Test("codebooks must match the layout and be unit-norm codewords (or zero ones)")
    func codebookRules() throws {
        var books = randomCodebooks(layout, seed: 1)
        _ = try ProductQuantizer(layout: layout, codebooks: books)
        #expect(throws: QuantizerError.self) { try ProductQuantizer(layout: layout, codebooks: Array(books.dropLast())) }
        var bad = books
        bad[8 * 5] *= 1.5
        #expect(throws: QuantizerError.self) { try ProductQuantizer(layout: layout, codebooks: bad) }
        bad = books
        bad[3] = .nan
        #expect(throws: QuantizerError.self) { try ProductQuantizer(layout: layout, codebooks: bad) }
        // HCQ leaves a codeword nothing was assigned to at zero: accepted, and never chosen
        // over a codeword with a positive inner product.
        for j in 0..<8 { books[8 * 7 + j] = 0 }
        let pq = try ProductQuantizer(layout: layout, codebooks: books)
        #expect(pq.codebooks[8 * 7] == 0)
    }

    @Test("encoding picks the codeword of largest cosine, the first on ties; a codeword codes as itself")
    func encoding() throws {
        let books = randomCodebooks(layout, seed: 2)
        let pq = try ProductQuantizer(layout: layout, codebooks: books)
        var rng = SeededGenerator(seed: 3)
        let d = layout.subDimension
        for _ in 0..<50 {
            let x = (0..<layout.vectorCount).map { _ in rng.uniform() * 3 }
            let codes = pq.encode(x)
            for l in 0..<layout.levels {
                for m in 0..<layout.subspaces {
                    let sub = (0..<d).map { x[l * layout.dimension + m * d + $0] }
                    let dots = (0..<layout.codewords).map { k in
                        (0..<d).reduce(Float(0)) { $0 + sub[$1] * books[((l * layout.subspaces + m) * layout.codewords + k) * d + $1] }
                    }
                    let best = dots.indices.max { dots[$0] < dots[$1] || (dots[$0] == dots[$1] && $0 > $1) }!
                    #expect(Int(codes[l * layout.subspaces + m]) == best)
                }
            }
            #expect(pq.encode(pq.reconstruct(codes)) == codes)
        }
        // Ties: codeword 5 duplicated into 9 of sub-space 0, level 0: 5 wins.
        var tied = books
        for j in 0..<d { tied[9 * d + j] = tied[5 * d + j] }
        let tq = try ProductQuantizer(layout: layout, codebooks: tied)
        var x = [Float](repeating: 0, count: layout.vectorCount)
        for j in 0..<d { x[j] = tied[5 * d + j] * 2 }
        #expect(tq.encode(x)[0] == 5)
        // A zero sub-vector: every cosine is 0, the first codeword wins.
        #expect(pq.encode([Float](repeating: 0, count: layout.vectorCount)) == [UInt8](repeating: 0, count: layout.codeBytes))
    }

    @Test("lookup tables are the normalised sub-vectors' inner products with every codeword")
    func tables() throws {
        let books = randomCodebooks(layout, seed: 4)
        let pq = try ProductQuantizer(layout: layout, codebooks: books)
        var rng = SeededGenerator(seed: 5)
        let count = 3, d = layout.subDimension, M = layout.subspaces, K = layout.codewords
        var queries = (0..<(count * layout.vectorCount)).map { _ in rng.uniform() }
        for j in 0..<d { queries[layout.dimension + j] = 0 }  // query 0, level 1, sub-space 0: zero
        let t = pq.lookupTables(queries, count: count)
        #expect(t.queries == count && t.stride == layout.levels * M * K && t.values.count == count * t.stride)
        var worst: Float = 0
        for q in 0..<count {
            for l in 0..<layout.levels {
                for m in 0..<M {
                    let base = (q * layout.levels + l) * layout.dimension + m * d
                    let norm = (0..<d).reduce(Float(0)) { $0 + queries[base + $1] * queries[base + $1] }.squareRoot()
                    for k in 0..<K {
                        let dot = (0..<d).reduce(Float(0)) { $0 + queries[base + $1] * books[((l * M + m) * K + k) * d + $1] }
                        let want = norm > 0 ? dot / norm : 0
                        worst = max(worst, abs(t.values[((q * layout.levels + l) * M + m) * K + k] - want))
                    }
                }
            }
        }
        #expect(worst < 1e-5, "largest difference \(worst)")
        #expect(t.values[(0 * layout.levels + 1) * M * K] == 0)
    }

    @Test("the codebook file round-trips, and refuses another bundle, another layout, another format")
    func file() throws {
        let dir = makeTestDirectory("codebooks")
        let pq = try ProductQuantizer(layout: layout, codebooks: randomCodebooks(layout, seed: 6))
        let fingerprint = String(repeating: "a1", count: 32), path = dir + "/codebooks.safetensors"
        try pq.write(to: path, bundleFingerprint: fingerprint)
        #expect(try ProductQuantizer(contentsOf: path, layout: layout, bundleFingerprint: fingerprint) == pq)
        #expect(throws: QuantizerError.self) {
            try ProductQuantizer(contentsOf: path, layout: layout, bundleFingerprint: String(repeating: "b2", count: 32))
        }
        let other = try ProductQuantizer.Layout(levels: 3, subspaces: 8, codewords: 16, dimension: 32)
        #expect(throws: SafeTensorsError.self) { try ProductQuantizer(contentsOf: path, layout: other, bundleFingerprint: fingerprint) }
        var w = SafeTensorsWriter(metadata: ["format": "something-else"])
        w.add("codebooks", floats: pq.codebooks, shape: layout.codebookShape)
        try w.write(to: dir + "/other.safetensors")
        #expect(throws: QuantizerError.self) {
            try ProductQuantizer(contentsOf: dir + "/other.safetensors", layout: layout, bundleFingerprint: fingerprint)
        }
    }
}
