import Testing
@testable import VidxNumerics

extension NumericsTests {
    @Suite struct GEMM {
        /// (m, n, k): 1x1x1, odd small sizes both ways round, and sizes across kernel edges.
        static let shapes: [(Int, Int, Int)] = [(1, 1, 1), (7, 13, 5), (7, 5, 13), (130, 70, 257), (130, 257, 70)]

        @Test(arguments: [false, true])
        func matmulMatchesDoubleReference(transposeB: Bool) {
            for (index, (m, n, k)) in Self.shapes.enumerated() {
                let a = randomMatrix(m, k, seed: UInt64(10 + index))
                let b = transposeB ? randomMatrix(n, k, seed: UInt64(20 + index)) : randomMatrix(k, n, seed: UInt64(20 + index))
                let c = BLAS.matmul(a, b, transposeB: transposeB)
                #expect(c.rows == m && c.cols == n)
                let ref = referenceProduct(a, b, transposeB: transposeB)
                expectClose(c.data, ref.value, scale: ref.magnitude, "\(m)x\(n)x\(k) transposeB \(transposeB)")
            }
        }

        @Test(arguments: [false, true])
        func rawGEMMWithAlphaBetaAndStrides(transposeB: Bool) {
            // Operands are sub-blocks of wider buffers (leading dimensions > widths).
            for (index, (m, n, k)) in Self.shapes.enumerated() {
                let lda = k + 3, ldc = n + 2
                let bRows = transposeB ? n : k, bCols = transposeB ? k : n, ldb = bCols + 5
                let aWide = randomMatrix(m, lda, seed: UInt64(30 + index))
                let bWide = randomMatrix(bRows, ldb, seed: UInt64(40 + index))
                var cWide = randomMatrix(m, ldc, seed: UInt64(50 + index))
                let c0 = cWide
                let alpha: Float = 0.75, beta: Float = -0.5
                aWide.data.withUnsafeBufferPointer { ap in
                    bWide.data.withUnsafeBufferPointer { bp in
                        cWide.data.withUnsafeMutableBufferPointer { cp in
                            BLAS.gemm(m: m, n: n, k: k, alpha: alpha, a: ap.baseAddress!, lda: lda,
                                      b: bp.baseAddress!, ldb: ldb, transposeB: transposeB,
                                      beta: beta, c: cp.baseAddress!, ldc: ldc)
                        }
                    }
                }
                let a = Matrix(rows: m, cols: k, data: (0..<m).flatMap { Array(aWide.data[($0 * lda)..<($0 * lda + k)]) })
                let b = Matrix(rows: bRows, cols: bCols,
                               data: (0..<bRows).flatMap { Array(bWide.data[($0 * ldb)..<($0 * ldb + bCols)]) })
                let ref = referenceProduct(a, b, transposeB: transposeB)
                var got: [Float] = [], want: [Double] = [], scale: [Double] = []
                for i in 0..<m {
                    for j in 0..<ldc {
                        let old = Double(c0.data[i * ldc + j])
                        got.append(cWide.data[i * ldc + j])
                        if j < n {
                            want.append(Double(alpha) * ref.value[i * n + j] + Double(beta) * old)
                            scale.append(Double(alpha) * ref.magnitude[i * n + j] + abs(Double(beta) * old))
                        } else {  // padding columns of C must be untouched
                            want.append(old)
                            scale.append(0)
                        }
                    }
                }
                expectClose(got, want, scale: scale, absolute: 0, "\(m)x\(n)x\(k) strided")
            }
        }

        @Test func rowTiledAcrossSeveralTilesWithBeta() {
            // More rows than two tiles, plus a partial one; beta != 0 must read C's rows in the padded tile.
            let m = 2 * BLAS.rowTile + 37, n = 9, k = 21
            let a = randomMatrix(m, k, seed: 60), b = randomMatrix(n, k, seed: 61)
            var c = randomMatrix(m, n, seed: 62)
            let c0 = c
            a.data.withUnsafeBufferPointer { ap in
                b.data.withUnsafeBufferPointer { bp in
                    c.data.withUnsafeMutableBufferPointer { cp in
                        BLAS.rowTiledGEMM(m: m, n: n, k: k, alpha: 2, a: ap.baseAddress!, lda: k,
                                          b: bp.baseAddress!, ldb: k, transposeB: true,
                                          beta: 1, c: cp.baseAddress!, ldc: n)
                    }
                }
            }
            let ref = referenceProduct(a, b, transposeB: true)
            let want = (0..<(m * n)).map { 2 * ref.value[$0] + Double(c0.data[$0]) }
            let scale = (0..<(m * n)).map { 2 * ref.magnitude[$0] + abs(Double(c0.data[$0])) }
            expectClose(c.data, want, scale: scale, "row-tiled")
        }

        @Test func emptyAndZeroDepthProducts() {
            #expect(BLAS.matmul(Matrix(rows: 0, cols: 4), Matrix(rows: 4, cols: 3)) == Matrix(rows: 0, cols: 3))
            // k = 0: the product is an empty sum, i.e. zeros.
            #expect(BLAS.matmul(Matrix(rows: 3, cols: 0), Matrix(rows: 0, cols: 2)) == Matrix(rows: 3, cols: 2))
        }

        @Test func threadsCanBeSetAndRead() {
            withBLASThreads(1) { #expect(BLAS.threads == 1) }
            withBLASThreads(2) { #expect(BLAS.threads == 2) }
        }

        @Test func peakMeasurementIsPositive() {
            let gflops = BLAS.measurePeakGFLOPS(size: 64, seconds: 0.01)
            #expect(gflops > 0 && gflops.isFinite)
        }
    }
}
