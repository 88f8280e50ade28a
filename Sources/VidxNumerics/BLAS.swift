import COpenBLAS
import Foundation

/// Dense products on OpenBLAS (wraps `cblas_sgemm` and OpenBLAS's thread controls).
///
/// All matrices are Float32 and row-major. Two product forms:
/// - ``gemm(m:n:k:alpha:a:lda:b:ldb:transposeB:beta:c:ldc:)``: one `cblas_sgemm` call; a
///   row's bytes may depend on `m`.
/// - ``rowTiledGEMM(m:n:k:alpha:a:lda:b:ldb:transposeB:beta:c:ldc:)`` (used by ``matmul(_:_:transposeB:)``
///   and ``Linear``): fixed ``rowTile``-row tiles on ``Parallel``'s threads.
/// Why, and where the guarantee ends: Documentation/Determinism.md.
public enum BLAS {
    /// Rows per `cblas_sgemm` call in ``rowTiledGEMM(m:n:k:alpha:a:lda:b:ldb:transposeB:beta:c:ldc:)``.
    ///
    /// Every call of a layer has this height (the last tile zero-padded), so OpenBLAS uses one
    /// kernel and one summation order whatever the row count or the thread count
    /// (Documentation/Determinism.md, "Dense products: three rules").
    ///
    /// Cost: the weights are repacked once per tile and the last tile is padded (at most 255
    /// wasted rows); the overhead is largest for a single video (one mostly padded tile), and
    /// smaller tiles would cost more. `make bench-encode` prints the encoder's throughput.
    public static let rowTile = 256

    /// Sets the threads vidx's own dense work uses (process-wide): row tiles, convolution
    /// tiles and the loops of ``Parallel``. OpenBLAS itself stays single-threaded
    /// (Documentation/Determinism.md).
    /// - Parameter n: threads, at least 1.
    public static func setThreads(_ n: Int) {
        precondition(n >= 1, "BLAS thread count must be at least 1")
        _ = singleThreaded
        setting.value = n
    }

    /// The threads the dense math may use: the last ``setThreads(_:)``, else all cores.
    public static var threads: Int {
        let n = setting.value
        return n > 0 ? n : ProcessInfo.processInfo.activeProcessorCount
    }

    /// Puts OpenBLAS at one thread, once, before the first product.
    private static let singleThreaded: Void = { openblas_set_num_threads(1) }()
    private static let setting = LockedInt()

    /// C (m x n) = alpha * A (m x k) * op(B) + beta * C, all row-major, in one `cblas_sgemm` call.
    ///
    /// - Parameters:
    ///   - a: A, `m` rows of `k` values, row `i` starting at `a + i * lda` (`lda >= k`).
    ///   - b: B. Without `transposeB` it is stored k x n (`ldb >= n`), op(B) = B; with it, it is
    ///     stored n x k (`ldb >= k`, e.g. a PyTorch `Linear.weight`), op(B) = B^T.
    ///   - c: C, `m` rows of `n` values, row `i` starting at `c + i * ldc` (`ldc >= n`). With
    ///     `beta == 0`, C is write-only (NaNs there do not propagate).
    ///
    /// The leading dimensions let callers address sub-blocks (e.g. one attention head's
    /// columns) without copies. Per-row results may depend on `m`; use
    /// ``rowTiledGEMM(m:n:k:alpha:a:lda:b:ldb:transposeB:beta:c:ldc:)`` where that matters.
    public static func gemm(m: Int, n: Int, k: Int, alpha: Float = 1,
                            a: UnsafePointer<Float>, lda: Int,
                            b: UnsafePointer<Float>, ldb: Int, transposeB: Bool = false,
                            beta: Float = 0,
                            c: UnsafeMutablePointer<Float>, ldc: Int) {
        precondition(m >= 0 && n >= 0 && k >= 0, "gemm dimensions must be non-negative")
        precondition(lda >= max(1, k) && ldb >= max(1, transposeB ? k : n) && ldc >= max(1, n),
                     "gemm leading dimensions too small")
        precondition(m <= Int(Int32.max) && n <= Int(Int32.max) && k <= Int(Int32.max)
                     && lda <= Int(Int32.max) && ldb <= Int(Int32.max) && ldc <= Int(Int32.max),
                     "gemm dimensions exceed the 32-bit BLAS interface")
        if m == 0 || n == 0 { return }
        if k == 0 {  // OpenBLAS would only scale C; do it here and skip its argument checks.
            for i in 0..<m {
                let row = c + i * ldc
                for j in 0..<n { row[j] = beta == 0 ? 0 : beta * row[j] }
            }
            return
        }
        _ = singleThreaded
        // Called as the column-major product C^T = op(B)^T A^T: the same memory and arithmetic,
        // but it bypasses OpenBLAS's row-major "direct" path (Documentation/Determinism.md,
        // "Why it takes work").
        cblas_sgemm(CblasColMajor, transposeB ? CblasTrans : CblasNoTrans, CblasNoTrans,
                    Int32(n), Int32(m), Int32(k), alpha,
                    b, Int32(ldb), a, Int32(lda), beta, c, Int32(ldc))
    }

    /// The same product as ``gemm(m:n:k:alpha:a:lda:b:ldb:transposeB:beta:c:ldc:)``, computed
    /// with one `cblas_sgemm` call per ``rowTile`` rows of A and C; the last, partial tile is
    /// zero-padded in a scratch buffer.
    ///
    /// Output row `i` depends only on row `i` of A (and of C when `beta != 0`), B, alpha, beta
    /// and, on AMD Zen, `i mod rowTile`; never on the thread count
    /// (Documentation/Determinism.md, "Batch size").
    public static func rowTiledGEMM(m: Int, n: Int, k: Int, alpha: Float = 1,
                                    a: UnsafePointer<Float>, lda: Int,
                                    b: UnsafePointer<Float>, ldb: Int, transposeB: Bool = false,
                                    beta: Float = 0,
                                    c: UnsafeMutablePointer<Float>, ldc: Int) {
        precondition(m >= 0 && n >= 0 && k >= 0, "gemm dimensions must be non-negative")
        if m == 0 || n == 0 { return }
        let tile = rowTile
        let full = m / tile * tile, tiles = (m + tile - 1) / tile
        // Whole tiles on Parallel's threads, each call single-threaded (Documentation/Determinism.md).
        Parallel.forEachRange(tiles) { range in
            for t in range {
                let row = t * tile
                if row < full {
                    gemm(m: tile, n: n, k: k, alpha: alpha, a: a + row * lda, lda: lda,
                         b: b, ldb: ldb, transposeB: transposeB, beta: beta, c: c + row * ldc, ldc: ldc)
                    continue
                }
                // Partial tile: pad to a full tile so the call has the same shape as all the others.
                let rest = m - full
                let kk = max(k, 1)
                let padA = UnsafeMutablePointer<Float>.allocate(capacity: tile * kk)
                let padC = UnsafeMutablePointer<Float>.allocate(capacity: tile * n)
                defer { padA.deallocate(); padC.deallocate() }
                padA.initialize(repeating: 0, count: tile * kk)
                padC.initialize(repeating: 0, count: tile * n)
                for i in 0..<rest {
                    (padA + i * kk).update(from: a + (full + i) * lda, count: k)
                    if beta != 0 { (padC + i * n).update(from: c + (full + i) * ldc, count: n) }
                }
                gemm(m: tile, n: n, k: k, alpha: alpha, a: padA, lda: kk,
                     b: b, ldb: ldb, transposeB: transposeB, beta: beta, c: padC, ldc: n)
                for i in 0..<rest {
                    (c + (full + i) * ldc).update(from: padC + i * n, count: n)
                }
            }
        }
    }

    /// A (m x k) * op(B), row-major, row-tiled: thread-invariant; batch-invariant except on
    /// AMD Zen (Documentation/Determinism.md).
    /// - Parameter transposeB: B is stored n x k and used transposed (A * B^T); otherwise B is k x n.
    /// - Returns: an m x n matrix.
    public static func matmul(_ a: Matrix, _ b: Matrix, transposeB: Bool = false) -> Matrix {
        let k = a.cols
        let n = transposeB ? b.rows : b.cols
        precondition((transposeB ? b.cols : b.rows) == k,
                     "matmul shape mismatch: \(a.rows) x \(a.cols) times \(transposeB ? "transposed " : "")\(b.rows) x \(b.cols)")
        var c = Matrix(rows: a.rows, cols: n)
        a.data.withUnsafeBufferPointer { ap in
            b.data.withUnsafeBufferPointer { bp in
                c.data.withUnsafeMutableBufferPointer { cp in
                    guard let ab = ap.baseAddress, let bb = bp.baseAddress, let cb = cp.baseAddress else { return }
                    rowTiledGEMM(m: a.rows, n: n, k: k, a: ab, lda: max(k, 1), b: bb, ldb: max(b.cols, 1),
                                 transposeB: transposeB, c: cb, ldc: max(n, 1))
                }
            }
        }
        return c
    }

    /// Measures `cblas_sgemm`'s sustained GFLOP/s on square `size x size` products (one call
    /// per product, alpha 1, beta 0) for about `seconds` seconds, after one warm-up call, with
    /// ``threads`` OpenBLAS threads (for this measurement only: the one place OpenBLAS
    /// runs multi-threaded). Counts 2 * size^3 floating-point operations per product.
    public static func measurePeakGFLOPS(size: Int = 1024, seconds: Double = 1) -> Double {
        precondition(size >= 1, "size must be positive")
        _ = singleThreaded
        openblas_set_num_threads(Int32(clamping: threads))
        defer { openblas_set_num_threads(1) }
        let count = size * size
        var a = [Float](repeating: 0, count: count)
        var b = [Float](repeating: 0, count: count)
        for i in 0..<count {
            a[i] = Float(i % 97) / 97 - 0.5
            b[i] = Float(i % 89) / 89 - 0.5
        }
        var c = [Float](repeating: 0, count: count)
        let clock = ContinuousClock()
        var products = 0
        var elapsed = Duration.zero
        a.withUnsafeBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                c.withUnsafeMutableBufferPointer { cp in
                    let pa = ap.baseAddress!, pb = bp.baseAddress!, pc = cp.baseAddress!
                    let run = {
                        gemm(m: size, n: size, k: size, a: pa, lda: size, b: pb, ldb: size, c: pc, ldc: size)
                    }
                    run()  // warm-up: thread pool start, page faults, buffers
                    let start = clock.now
                    repeat {
                        run()
                        products += 1
                        elapsed = clock.now - start
                    } while elapsed.seconds < seconds || products < 2
                }
            }
        }
        let flops = 2 * Double(size) * Double(size) * Double(size) * Double(products)
        return flops / elapsed.seconds / 1e9
    }
}

extension Duration {
    /// The duration in seconds, as a Double.
    var seconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) * 1e-18
    }
}

/// An Int behind a lock: read on every product, set from any thread.
final class LockedInt: @unchecked Sendable {
    private let lock = NSLock()
    private var stored = 0
    var value: Int {
        get { lock.lock(); defer { lock.unlock() }; return stored }
        set { lock.lock(); stored = newValue; lock.unlock() }
    }
}
