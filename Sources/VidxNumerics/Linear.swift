/// A fully connected layer in PyTorch's layout (`torch.nn.Linear`): y = x W^T + b.
///
/// Layouts: `weight` is (out x in), row-major, exactly as PyTorch stores `Linear.weight`;
/// `bias` has `out` values; the input is (rows x in), the output (rows x out).
/// All rows go through ``BLAS/rowTiledGEMM(m:n:k:alpha:a:lda:b:ldb:transposeB:beta:c:ldc:)``:
/// thread-invariant, batch-invariant except on AMD Zen (Documentation/Determinism.md, "Batch size").
public struct Linear: Sendable {
    /// W, (out x in), row-major.
    public let weight: Matrix
    /// b, `out` values.
    public let bias: [Float]

    /// - Precondition: `bias.count == weight.rows`.
    public init(weight: Matrix, bias: [Float]) {
        precondition(bias.count == weight.rows,
                     "Linear bias has \(bias.count) values for \(weight.rows) outputs")
        self.weight = weight
        self.bias = bias
    }

    /// Input width (`weight.cols`).
    public var inputCount: Int { weight.cols }
    /// Output width (`weight.rows`).
    public var outputCount: Int { weight.rows }

    /// y = x W^T + b for every row of `x` (rows x in), giving (rows x out).
    ///
    /// As in PyTorch's `addmm`, the output starts as the broadcast bias and the product is
    /// accumulated onto it (sgemm with beta = 1).
    public func callAsFunction(_ x: Matrix) -> Matrix {
        precondition(x.cols == weight.cols, "Linear expects \(weight.cols) input columns, got \(x.cols)")
        let n = weight.rows, k = weight.cols
        var y = Matrix(rows: x.rows, cols: n)
        if x.rows == 0 || n == 0 { return y }
        y.data.withUnsafeMutableBufferPointer { yp in
            bias.withUnsafeBufferPointer { bp in
                for r in 0..<x.rows {
                    (yp.baseAddress! + r * n).update(from: bp.baseAddress!, count: n)
                }
            }
            x.data.withUnsafeBufferPointer { xp in
                weight.data.withUnsafeBufferPointer { wp in
                    if k == 0 { return }
                    BLAS.rowTiledGEMM(m: x.rows, n: n, k: k, a: xp.baseAddress!, lda: k,
                                      b: wp.baseAddress!, ldb: k, transposeB: true,
                                      beta: 1, c: yp.baseAddress!, ldc: n)
                }
            }
        }
        return y
    }
}
