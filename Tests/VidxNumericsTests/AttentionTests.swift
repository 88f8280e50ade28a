import Foundation
import Testing
@testable import VidxNumerics

/// Naive per-head BERT attention in Double. With `additiveMask` false, masked keys are
/// simply dropped (an all-masked sequence then uses every key: what -10000 amounts to).
func referenceAttention(q: Matrix, k: Matrix, v: Matrix, heads: Int, L: Int, keyMask: [Float],
                        additiveMask: Bool = true) -> (value: [Double], magnitude: [Double]) {
    let hidden = q.cols, d = hidden / heads, sequences = q.rows / L
    var value = [Double](repeating: 0, count: q.rows * hidden), magnitude = value
    for s in 0..<sequences {
        let allMasked = (0..<L).allSatisfy { keyMask[s * L + $0] == 0 }
        for h in 0..<heads {
            for i in 0..<L {
                var scores = [Double](repeating: 0, count: L)
                var used = [Bool](repeating: true, count: L)
                for j in 0..<L {
                    var dot = 0.0
                    for c in 0..<d {
                        dot += Double(q[s * L + i, h * d + c]) * Double(k[s * L + j, h * d + c])
                    }
                    scores[j] = dot / Double(d).squareRoot()
                    if additiveMask {
                        scores[j] += (1 - Double(keyMask[s * L + j])) * -10000
                    } else if keyMask[s * L + j] == 0 && !allMasked {
                        used[j] = false
                    }
                }
                let m = (0..<L).filter { used[$0] }.map { scores[$0] }.max()!
                let e = (0..<L).map { used[$0] ? exp(scores[$0] - m) : 0 }
                let total = e.reduce(0, +)
                for c in 0..<d {
                    var acc = 0.0, mag = 0.0
                    for j in 0..<L {
                        let vv = Double(v[s * L + j, h * d + c])
                        acc += e[j] / total * vv
                        mag += e[j] / total * abs(vv)
                    }
                    value[(s * L + i) * hidden + h * d + c] = acc
                    magnitude[(s * L + i) * hidden + h * d + c] = mag
                }
            }
        }
    }
    return (value, magnitude)
}

extension NumericsTests {
    @Suite struct Attention {
        static let L = 11, hidden = 24, heads = 3

        @Test func matchesNaivePerHeadLoop() {
            let L = Self.L, rows = 3 * L
            let q = randomMatrix(rows, Self.hidden, seed: 100, scale: 2)
            let k = randomMatrix(rows, Self.hidden, seed: 101, scale: 2)
            let v = randomMatrix(rows, Self.hidden, seed: 102)
            var mask = [Float](repeating: 1, count: rows)
            mask[L + 4] = 0
            mask[2 * L + 10] = 0
            let out = multiHeadAttention(q: q, k: k, v: v, heads: Self.heads, sequenceLength: L, keyMask: mask)
            #expect(out.rows == rows && out.cols == Self.hidden)
            let ref = referenceAttention(q: q, k: k, v: v, heads: Self.heads, L: L, keyMask: mask)
            expectClose(out.data, ref.value, scale: ref.magnitude, relative: 1e-5, absolute: 1e-7, "attention")
        }

        @Test func maskedKeyGetsNoWeight() {
            let L = Self.L, rows = 2 * L
            let q = randomMatrix(rows, Self.hidden, seed: 110, scale: 2)
            let k = randomMatrix(rows, Self.hidden, seed: 111, scale: 2)
            var v = randomMatrix(rows, Self.hidden, seed: 112)
            var mask = [Float](repeating: 1, count: rows)
            // Sequence 1, key 4: masked, with a huge value that would show through any weight.
            mask[L + 4] = 0
            for c in 0..<Self.hidden { v[L + 4, c] = 1e4 }
            let out = multiHeadAttention(q: q, k: k, v: v, heads: Self.heads, sequenceLength: L, keyMask: mask)
            let dropped = referenceAttention(q: q, k: k, v: v, heads: Self.heads, L: L, keyMask: mask, additiveMask: false)
            // Scale 1 (the unmasked values' size), not the magnitude including 1e4.
            expectClose(out.data, dropped.value, scale: [Double](repeating: 1, count: out.data.count),
                        relative: 2e-6, absolute: 0, "masked key")
        }

        @Test func fullyMaskedSequenceIsPlainSoftmaxNotNaN() {
            let L = Self.L, rows = 2 * L
            let q = randomMatrix(rows, Self.hidden, seed: 120)
            let k = randomMatrix(rows, Self.hidden, seed: 121)
            let v = randomMatrix(rows, Self.hidden, seed: 122)
            var mask = [Float](repeating: 1, count: rows)
            for j in L..<rows { mask[j] = 0 }  // every key of sequence 1 masked
            let out = multiHeadAttention(q: q, k: k, v: v, heads: Self.heads, sequenceLength: L, keyMask: mask)
            #expect(out.data.allSatisfy { $0.isFinite })
            // What PyTorch computes: softmax(scores - 10000) = softmax(scores), up to the Float
            // rounding of scores - 10000 (ulp 2^-10 there, so ~1e-3 relative in the weights).
            let plain = referenceAttention(q: q, k: k, v: v, heads: Self.heads, L: L, keyMask: mask, additiveMask: false)
            let second = Array(out.data[(L * Self.hidden)...]), want = Array(plain.value[(L * Self.hidden)...])
            expectClose(second, want, scale: Array(plain.magnitude[(L * Self.hidden)...]),
                        relative: 2e-3, absolute: 0, "fully masked sequence")
            // Sequence 0 is unaffected by sequence 1's mask.
            let ref = referenceAttention(q: q, k: k, v: v, heads: Self.heads, L: L, keyMask: mask)
            expectClose(Array(out.data[..<(L * Self.hidden)]), Array(ref.value[..<(L * Self.hidden)]),
                        scale: Array(ref.magnitude[..<(L * Self.hidden)]), relative: 1e-5, absolute: 1e-7, "sequence 0")
        }
    }
}
