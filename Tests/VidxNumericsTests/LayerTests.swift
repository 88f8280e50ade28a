import Foundation
import Testing
@testable import VidxNumerics

extension NumericsTests {
    @Suite struct Layers {
        @Test(arguments: [37, 2 * BLAS.rowTile + 3])
        func linearIsXWTransposePlusBias(rows: Int) {
            let x = randomMatrix(rows, 19, seed: 1)
            let layer = Linear(weight: randomMatrix(23, 19, seed: 2), bias: randomVector(23, seed: 3))
            let y = layer(x)
            #expect(y.rows == rows && y.cols == 23)
            let ref = referenceProduct(x, layer.weight, transposeB: true)
            let want = (0..<(rows * 23)).map { ref.value[$0] + Double(layer.bias[$0 % 23]) }
            let scale = (0..<(rows * 23)).map { ref.magnitude[$0] + abs(Double(layer.bias[$0 % 23])) }
            expectClose(y.data, want, scale: scale, "Linear")
        }

        @Test func layerNormMatchesBiasedVarianceReference() {
            let rows = 9, cols = 37
            var x = randomMatrix(rows, cols, seed: 4, scale: 3)
            for c in 0..<cols { x[2, c] = 5 }  // constant row: normalises to beta
            for c in 0..<cols { x[3, c] += 100 }  // large offset
            let gamma = randomVector(cols, seed: 5, scale: 0.5, offset: 1)
            let beta = randomVector(cols, seed: 6)
            let original = x
            layerNorm(&x, gamma: gamma, beta: beta, eps: 1e-12)
            var want: [Double] = []
            for r in 0..<rows {
                let row = (0..<cols).map { Double(original[r, $0]) }
                let mean = row.reduce(0, +) / Double(cols)
                let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(cols)
                for c in 0..<cols {
                    want.append((row[c] - mean) / (variance + 1e-12).squareRoot() * Double(gamma[c]) + Double(beta[c]))
                }
            }
            // Scale: a Float32 LayerNorm is accurate relative to |gamma| (the normalised value is O(1)).
            let scale = (0..<(rows * cols)).map { 4 * abs(Double(gamma[$0 % cols])) + abs(Double(beta[$0 % cols])) }
            expectClose(x.data, want, scale: scale, absolute: 0, "layerNorm")
            for c in 0..<cols { #expect(x[2, c] == beta[c]) }
        }

        @Test func geluKnownValues() {
            var x = Matrix(rows: 1, cols: 5, data: [1, -1, 0, 10, -10])
            geluErf(&x)
            #expect(abs(x.data[0] - 0.8413447) <= 2e-7)
            #expect(abs(x.data[1] - -0.15865525) <= 2e-7)
            #expect(x.data[2] == 0)
            #expect(x.data[3] == 10)
            #expect(abs(x.data[4]) <= 1e-6)
        }

        @Test func geluMatchesDoubleErfOnAGrid() {
            // 23 columns: both the 16-lane body and the scalar tail.
            let values = stride(from: -8.0, through: 8.0, by: 1.0 / 64).map { Float($0) }
            let cols = 23, rows = (values.count + cols - 1) / cols
            var x = Matrix(rows: rows, cols: cols, data: values + [Float](repeating: 0, count: rows * cols - values.count))
            let original = x
            geluErf(&x)
            let want = original.data.map { v -> Double in let d = Double(v); return 0.5 * d * (1 + erf(d / 2.0.squareRoot())) }
            // erf's approximation error (< 4e-7) is scaled by 0.5 |x|.
            expectClose(x.data, want, scale: original.data.map { abs(Double($0)) }, relative: 4e-7, absolute: 1e-7, "gelu")
        }

        @Test func fastErfErrorBound() {
            var worst = 0.0
            for i in -80_000...80_000 {
                let v = Float(i) * 1e-4
                worst = max(worst, abs(Double(fastErf(v)) - erf(Double(v))))
            }
            #expect(worst < 4e-7)
            #expect(fastErf(.infinity) == 1 && fastErf(-.infinity) == -1 && fastErf(.nan).isNaN)
        }

        @Test func expNonPositiveErrorBound() {
            var worst = 0.0
            var v: Float = 0
            while v > -87 {
                let want = exp(Double(v))
                worst = max(worst, abs(Double(expNonPositive(v)) - want) / want)
                v -= 0.000_7
            }
            #expect(worst < 3e-7)  // about 2.5 ulp
            #expect(expNonPositive(0) == 1)
            #expect(expNonPositive(-88) == 0 && expNonPositive(-10_000) == 0 && expNonPositive(-.infinity) == 0)
        }

        @Test func softmaxRowsSumToOneAndMatchReference() {
            let rows = 6, cols = 41
            var x = randomMatrix(rows, cols, seed: 7, scale: 5)
            let original = x
            softmaxRows(&x)
            var want: [Double] = []
            for r in 0..<rows {
                let row = (0..<cols).map { Double(original[r, $0]) }
                let m = row.max()!
                let e = row.map { exp($0 - m) }
                let s = e.reduce(0, +)
                want.append(contentsOf: e.map { $0 / s })
            }
            expectClose(x.data, want, relative: 2e-6, absolute: 1e-8, "softmax")
            for r in 0..<rows {
                let sum = (0..<cols).reduce(0.0) { $0 + Double(x[r, $1]) }
                #expect(abs(sum - 1) < 1e-5)
            }
        }

        @Test func softmaxLargeInputsDoNotOverflow() {
            var x = Matrix(rows: 3, cols: 3, data: [1000, 1001, 1002,
                                                    1e30, 1e30, -1e30,
                                                    -1e4, -1e4 + 1, -1e4 + 2])
            softmaxRows(&x)
            #expect(x.data.allSatisfy { $0.isFinite && $0 >= 0 })
            let expected: [Float] = [0.09003057, 0.24472847, 0.66524096]
            for c in 0..<3 {
                #expect(abs(x[0, c] - expected[c]) < 1e-6)
                #expect(abs(x[2, c] - expected[c]) < 1e-6)
            }
            #expect(x[1, 0] == 0.5 && x[1, 1] == 0.5 && x[1, 2] == 0)
        }

        @Test func l2NormalizationUnitNormAndZeroRows() {
            let cols = 19
            var x = randomMatrix(5, cols, seed: 8, scale: 4)
            for c in 0..<cols { x[1, c] = 0 }       // zero row
            for c in 0..<cols { x[3, c] = 1e-15 }   // norm below eps
            var withEps = x
            l2NormalizeRows(&withEps, eps: 1e-12)
            for r in [0, 2, 4] {
                let norm = (0..<cols).reduce(0.0) { $0 + Double(withEps[r, $1]) * Double(withEps[r, $1]) }.squareRoot()
                #expect(abs(norm - 1) < 1e-6)
                for c in 0..<cols {  // direction kept
                    let n0 = (0..<cols).reduce(0.0) { $0 + Double(x[r, $1]) * Double(x[r, $1]) }.squareRoot()
                    #expect(abs(Double(withEps[r, c]) - Double(x[r, c]) / n0) < 1e-6)
                }
            }
            #expect((0..<cols).allSatisfy { withEps[1, $0] == 0 })
            // torch.nn.functional.normalize: a norm below eps is replaced by eps.
            #expect((0..<cols).allSatisfy { abs(withEps[3, $0] - 1e-15 / 1e-12) < 1e-9 })

            var noEps = x
            l2NormalizeRows(&noEps)
            #expect((0..<cols).allSatisfy { noEps[1, $0] == 0 })
            for r in [0, 2, 3, 4] {
                let norm = (0..<cols).reduce(0.0) { $0 + Double(noEps[r, $1]) * Double(noEps[r, $1]) }.squareRoot()
                #expect(abs(norm - 1) < 1e-6)
            }
        }

        @Test func batchNormInferencePerColumn() {
            let rows = 11, cols = 7
            var x = randomMatrix(rows, cols, seed: 9, scale: 3)
            let original = x
            let weight = randomVector(cols, seed: 10, scale: 0.5, offset: 1)
            let bias = randomVector(cols, seed: 11)
            let mean = randomVector(cols, seed: 12)
            let variance = randomVector(cols, seed: 13, scale: 0.5, offset: 1)
            batchNormInference(&x, weight: weight, bias: bias, runningMean: mean, runningVar: variance, eps: 1e-5)
            var want: [Double] = []
            for r in 0..<rows {
                for c in 0..<cols {
                    want.append((Double(original[r, c]) - Double(mean[c])) / (Double(variance[c]) + 1e-5).squareRoot()
                                * Double(weight[c]) + Double(bias[c]))
                }
            }
            expectClose(x.data, want, relative: 2e-6, absolute: 2e-6, "batchNorm")
        }

        @Test func matrixBasics() {
            var m = Matrix(rows: 2, cols: 3)
            m[1, 2] = 5
            #expect(m.data == [0, 0, 0, 0, 0, 5])
            let s = Matrix.stacking([m, Matrix(rows: 1, cols: 3, data: [1, 2, 3])])
            #expect(s.rows == 3 && s.rows(in: 2..<3).data == [1, 2, 3])
        }
    }
}
