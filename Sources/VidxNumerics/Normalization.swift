/// Layer normalisation of every row in place, as `torch.nn.LayerNorm(cols, eps)`:
/// y = (x - mean) / sqrt(var + eps) * gamma + beta, with the mean and the biased variance
/// (divided by `cols`) of that row.
///
/// Layout: x is (rows x cols); `gamma` and `beta` have `cols` values (one per column).
/// Computed as PyTorch's CPU kernel does: rstd = 1 / sqrt(var + eps), then
/// y = (x * rstd - mean * rstd) * gamma + beta. Two passes over the row (mean, then
/// variance) for accuracy.
public func layerNorm(_ x: inout Matrix, gamma: [Float], beta: [Float], eps: Float) {
    let n = x.cols
    precondition(gamma.count == n && beta.count == n,
                 "layerNorm needs \(n) gamma and beta values, got \(gamma.count) and \(beta.count)")
    if n == 0 { return }
    let count = Float(n)
    x.data.withUnsafeMutableBufferPointer { buf in
        gamma.withUnsafeBufferPointer { gp in
            beta.withUnsafeBufferPointer { bp in
                let g = gp.baseAddress!, b = bp.baseAddress!, base = buf.baseAddress!
                Parallel.forEachRange(x.rows, grain: 256) { rows in
                    for r in rows {
                        let p = base + r * n
                        let mean = rowSum(p, n) / count
                        let variance = rowSquaredDeviationSum(p, n, shift: mean) / count
                        let rstd = 1 / (variance + eps).squareRoot()
                        let shift = -mean * rstd
                        let vr = Lanes(repeating: rstd), vs = Lanes(repeating: shift)
                        var i = 0
                        while i + Lanes.scalarCount <= n {
                            let y = (loadLanes(p + i) * vr + vs) * loadLanes(g + i) + loadLanes(b + i)
                            storeLanes(y, p + i)
                            i += Lanes.scalarCount
                        }
                        while i < n {
                            p[i] = (p[i] * rstd + shift) * g[i] + b[i]
                            i += 1
                        }
                    }
                }
            }
        }
    }
}

/// Divides every row in place by its Euclidean norm, floored at `eps`:
/// row <- row / max(||row||_2, eps).
///
/// Layout: x is (rows x cols), one vector per row.
/// - Parameter eps: the smallest norm divided by. With `eps = 1e-12` this is
///   `torch.nn.functional.normalize(x, p=2, dim=1, eps=1e-12)` (which also divides, and
///   also floors the norm): rows with norm below eps are divided by eps, so a zero row
///   stays zero. With `eps = 0` (the default) rows are scaled to unit norm and a row whose
///   norm is 0 is left unchanged (all zeros) rather than becoming NaN.
public func l2NormalizeRows(_ x: inout Matrix, eps: Float = 0) {
    precondition(eps >= 0, "l2NormalizeRows eps must be non-negative")
    let n = x.cols
    if n == 0 { return }
    x.data.withUnsafeMutableBufferPointer { buf in
        for r in 0..<x.rows {
            let p = buf.baseAddress! + r * n
            let norm = rowSquaredDeviationSum(p, n, shift: 0).squareRoot()
            let denominator = Swift.max(norm, eps)
            if denominator > 0 { rowDivide(p, n, by: denominator) }
        }
    }
}

/// `torch.nn.BatchNorm1d` in evaluation mode, in place, per column (feature):
/// y = (x - runningMean) / sqrt(runningVar + eps) * weight + bias.
///
/// Layout: x is (rows x features), rows are samples; the four parameter arrays have
/// `features` values. Computed as PyTorch's CPU kernel does: alpha = weight / sqrt(var + eps),
/// beta = bias - mean * alpha, y = x * alpha + beta.
public func batchNormInference(_ x: inout Matrix, weight: [Float], bias: [Float],
                               runningMean: [Float], runningVar: [Float], eps: Float) {
    let n = x.cols
    precondition(weight.count == n && bias.count == n && runningMean.count == n && runningVar.count == n,
                 "batchNormInference needs \(n) values per parameter")
    if n == 0 { return }
    var alpha = [Float](repeating: 0, count: n)
    var shift = [Float](repeating: 0, count: n)
    for j in 0..<n {
        let invStd = 1 / (runningVar[j] + eps).squareRoot()
        alpha[j] = invStd * weight[j]
        shift[j] = bias[j] - runningMean[j] * alpha[j]
    }
    x.data.withUnsafeMutableBufferPointer { buf in
        alpha.withUnsafeBufferPointer { ap in
            shift.withUnsafeBufferPointer { sp in
                for r in 0..<x.rows {
                    let p = buf.baseAddress! + r * n
                    for j in 0..<n { p[j] = p[j] * ap[j] + sp[j] }
                }
            }
        }
    }
}
