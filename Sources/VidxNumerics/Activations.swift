/// Exact (erf) GELU in place, elementwise: x <- 0.5 x (1 + erf(x / sqrt 2)), as
/// `torch.nn.GELU()` (approximate = "none"). Layout: (rows x cols), any shape.
///
/// erf is a rational approximation (``fastErf(_:)``, absolute error below 4e-7; PyTorch's
/// own vectorised CPU erf is an approximation of the same order, 1.5e-7) written so that
/// the compiler vectorises the loop: a libm `erff` call per element costs more than the FFN
/// products around it.
public func geluErf(_ x: inout Matrix) {
    let n = x.cols
    x.data.withUnsafeMutableBufferPointer { buf in
        guard let base = buf.baseAddress else { return }
        Parallel.forEachRange(x.rows, grain: 64) { rows in
            for r in rows {
                let p = base + r * n
                for i in 0..<n {
                    let v = p[i]
                    p[i] = v * 0.5 * (1 + fastErf(v * 0.70710678118654752440))
                }
            }
        }
    }
}

/// Softmax of every row in place, numerically stable: exp(x - max(row)) / sum.
/// Layout: (rows x cols), one distribution per row. A row containing NaN or whose entries
/// are all -infinity becomes NaN, as in PyTorch.
public func softmaxRows(_ x: inout Matrix) {
    let n = x.cols
    x.data.withUnsafeMutableBufferPointer { buf in
        guard let p = buf.baseAddress else { return }
        Parallel.forEachRange(x.rows, grain: 256) { rows in
            for r in rows { softmaxRow(p + r * n, n) }
        }
    }
}

/// Softmax of `p[0..<n]` in place: subtract the maximum, exponentiate (``expNonPositive(_:)``),
/// multiply by 1 / sum (PyTorch's CPU kernel also multiplies by the reciprocal).
@inline(__always)
func softmaxRow(_ p: UnsafeMutablePointer<Float>, _ n: Int) {
    if n == 0 { return }
    var m = -Float.infinity
    var sawNaN = false
    for i in 0..<n {
        let v = p[i]
        if v > m { m = v }
        if v.isNaN { sawNaN = true }
    }
    if sawNaN || m == -.infinity {
        for i in 0..<n { p[i] = .nan }
        return
    }
    if m == .infinity {  // exp(inf - inf): PyTorch gives NaN too
        for i in 0..<n { p[i] = .nan }
        return
    }
    for i in 0..<n { p[i] = expNonPositive(p[i] - m) }
    rowScale(p, n, by: 1 / rowSum(p, n))
}

/// exp(x) for x <= 0 (what softmax needs after subtracting the maximum), branch-free so that
/// loops over it vectorise. Cody-Waite reduction x = k ln2 + r, |r| <= ln2 / 2, then Cephes'
/// `expf` polynomial for e^r, scaled by 2^k built in the exponent bits. Relative error
/// about 2 ulp (checked against Double `exp` in the tests); returns 0 below -87 (where
/// e^x < 1.7e-38 is no longer a normal Float) and for x = -infinity.
@inline(__always)
func expNonPositive(_ x: Float) -> Float {
    let lowest: Float = -87
    let c = x < lowest ? lowest : x
    // Round c / ln2 to the nearest integer with the 1.5 * 2^23 trick: the sum's low mantissa
    // bits are k (two's complement), no float-to-int conversion (which would not vectorise).
    let shifter: Float = 12582912
    let t = c * 1.44269504088896341 + shifter
    let k = t - shifter
    let r = (c - k * 0.693359375) - k * -2.12194440e-4
    var e = r * 1.9875691500e-4 + 1.3981999507e-3
    e = e * r + 8.3334519073e-3
    e = e * r + 4.1665795894e-2
    e = e * r + 1.6666665459e-1
    e = e * r + 5.0000001201e-1
    e = e * (r * r) + r + 1
    let kBits = t.bitPattern &- shifter.bitPattern  // k, as a 32-bit two's complement integer
    let scale = Float(bitPattern: (kBits &+ 127) &<< 23)
    return x < lowest ? 0 : e * scale
}

/// erf(x) for Float: an odd/even rational approximation on x clamped to [-3.8325, 3.8325]
/// (beyond which erf rounds to +-1 in Float), result capped to [-1, 1], branch-free so that loops over it vectorise.
/// Max absolute error 3.6e-7 over the whole line (checked against Double `erf` in the tests).
@inline(__always)
func fastErf(_ a: Float) -> Float {
    let bound: Float = 3.832506856900711
    let x = a < -bound ? -bound : (a > bound ? bound : a)
    let x2 = x * x
    var p = x2 * 0.00022905065861350646 + 0.0034082910107109506 as Float
    p = x2 * p + 0.050955695062380861
    p = x2 * p + 0.18520832239976145
    p = x2 * p + 1.128379143519084
    p = x * p
    var q = x2 * -1.1791602954361697e-7 + 0.000023547966471313185 as Float
    q = x2 * q + 0.0010179625278914885
    q = x2 * q + 0.014070470171167667
    q = x2 * q + 0.11098505178285362
    q = x2 * q + 0.49746925110067538
    q = x2 * q + 1
    let e = p / q
    return e > 1 ? 1 : (e < -1 ? -1 : e)  // the approximation reaches 1 + 1.2e-7 near the bound
}
