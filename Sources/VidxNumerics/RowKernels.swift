// The C library is imported for its link dependency on libm: `Float.squareRoot()` can compile
// to a `sqrtf` call, which executables that import only this module must still resolve.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// Small fixed-order loops over one contiguous row, shared by the normalisation, activation
// and attention code. Reductions use 16 lanes then a lane sum: a fixed order that depends
// only on the row length, so a row's result never depends on the rows around it.

typealias Lanes = SIMD16<Float>

@inline(__always)
func loadLanes(_ p: UnsafePointer<Float>) -> Lanes {
    UnsafeRawPointer(p).loadUnaligned(as: Lanes.self)
}

@inline(__always)
func storeLanes(_ v: Lanes, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: Lanes.self)
}

/// Sum of `p[0..<n]`.
@inline(__always)
func rowSum(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = Lanes()
    var i = 0
    while i + Lanes.scalarCount <= n {
        acc += loadLanes(p + i)
        i += Lanes.scalarCount
    }
    var s = acc.sum()
    while i < n { s += p[i]; i += 1 }
    return s
}

/// Sum of `(p[i] - shift)^2` over `0..<n`.
@inline(__always)
func rowSquaredDeviationSum(_ p: UnsafePointer<Float>, _ n: Int, shift: Float) -> Float {
    var acc = Lanes()
    let s = Lanes(repeating: shift)
    var i = 0
    while i + Lanes.scalarCount <= n {
        let d = loadLanes(p + i) - s
        acc += d * d
        i += Lanes.scalarCount
    }
    var total = acc.sum()
    while i < n { let d = p[i] - shift; total += d * d; i += 1 }
    return total
}

/// `p[i] *= s` over `0..<n`.
@inline(__always)
func rowScale(_ p: UnsafeMutablePointer<Float>, _ n: Int, by s: Float) {
    let v = Lanes(repeating: s)
    var i = 0
    while i + Lanes.scalarCount <= n {
        storeLanes(loadLanes(p + i) * v, p + i)
        i += Lanes.scalarCount
    }
    while i < n { p[i] *= s; i += 1 }
}

/// `p[i] /= s` over `0..<n` (a true division, as PyTorch does, not a reciprocal multiply).
@inline(__always)
func rowDivide(_ p: UnsafeMutablePointer<Float>, _ n: Int, by s: Float) {
    let v = Lanes(repeating: s)
    var i = 0
    while i + Lanes.scalarCount <= n {
        storeLanes(loadLanes(p + i) / v, p + i)
        i += Lanes.scalarCount
    }
    while i < n { p[i] /= s; i += 1 }
}
