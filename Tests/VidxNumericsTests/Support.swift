import Foundation
import Testing
import VidxTestSupport
@testable import VidxNumerics

/// All numerics tests, run one at a time: the determinism tests change BLAS.threads, a
/// process-wide setting, which must not change under another test's products.
@Suite(.serialized) struct NumericsTests {}

/// A (rows x cols) matrix of uniform values in [-scale, scale).
func randomMatrix(_ rows: Int, _ cols: Int, seed: UInt64, scale: Float = 1) -> Matrix {
    var g = SeededGenerator(seed: seed)
    return Matrix(rows: rows, cols: cols, data: (0..<(rows * cols)).map { _ in g.uniform() * scale })
}

func randomVector(_ n: Int, seed: UInt64, scale: Float = 1, offset: Float = 0) -> [Float] {
    var g = SeededGenerator(seed: seed)
    return (0..<n).map { _ in g.uniform() * scale + offset }
}

/// Double-precision reference of A (m x k) * op(B), with the sum of |terms| per element
/// (the scale a Float32 rounding error is relative to).
func referenceProduct(_ a: Matrix, _ b: Matrix, transposeB: Bool) -> (value: [Double], magnitude: [Double]) {
    let m = a.rows, k = a.cols, n = transposeB ? b.rows : b.cols
    var value = [Double](repeating: 0, count: m * n), magnitude = value
    for i in 0..<m {
        for j in 0..<n {
            var s = 0.0, t = 0.0
            for p in 0..<k {
                let bv = transposeB ? b.data[j * b.cols + p] : b.data[p * b.cols + j]
                let term = Double(a.data[i * k + p]) * Double(bv)
                s += term
                t += abs(term)
            }
            value[i * n + j] = s
            magnitude[i * n + j] = t
        }
    }
    return (value, magnitude)
}

/// Expects `got[i]` within `relative * scale[i] + absolute` of `want[i]` for every i.
func expectClose(_ got: [Float], _ want: [Double], scale: [Double]? = nil,
                 relative: Double = 1e-5, absolute: Double = 1e-6,
                 _ what: String = "", sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(got.count == want.count, "\(what): \(got.count) values, expected \(want.count)",
            sourceLocation: sourceLocation)
    guard got.count == want.count else { return }
    var worst = 0.0, worstIndex = -1
    for i in 0..<got.count {
        let s = scale?[i] ?? abs(want[i])
        let excess = abs(Double(got[i]) - want[i]) - (relative * s + absolute)
        if !(excess <= worst) { worst = excess.isNaN ? .infinity : excess; worstIndex = i }
    }
    #expect(worstIndex < 0,
            "\(what): element \(worstIndex) is \(worstIndex >= 0 ? got[worstIndex] : 0), expected \(worstIndex >= 0 ? want[worstIndex] : 0)",
            sourceLocation: sourceLocation)
}

/// Runs `body` with BLAS.threads set to `threads` (OpenBLAS itself stays at one), restoring
/// the previous count afterwards.
func withBLASThreads<T>(_ threads: Int, _ body: () throws -> T) rethrows -> T {
    let previous = BLAS.threads
    BLAS.setThreads(threads)
    defer { BLAS.setThreads(previous) }
    return try body()
}
