import Dispatch

/// BERT self-attention (`BertSelfAttention` at inference, after the q/k/v projections) over
/// `sequences` stacked sequences of equal length L.
///
/// Layouts (row-major): `q`, `k`, `v` are ((sequences * L) x hidden), already projected;
/// rows `s*L ..< (s+1)*L` belong to sequence `s`. Head `h` owns columns
/// `h*d ..< (h+1)*d`, d = hidden / heads. `keyMask` has sequences * L values, 1 for a key
/// that may be attended to and 0 for a masked one. The result is ((sequences * L) x hidden),
/// the heads' outputs concatenated in head order (what BERT feeds its output dense layer).
///
/// Per sequence and head: scores = q_h k_h^T / sqrt(d) + (1 - keyMask) * -10000, softmax over
/// the keys, times v_h. The mask is additive, as in BERT: a masked key gets weight ~e^-10000
/// = 0, and a row whose keys are all masked is the plain softmax of its scores (all shifted
/// by -10000), not NaN.
///
/// As in PyTorch, the scores are divided by sqrt(d) (not scaled by 1 / sqrt d) and then
/// masked; the softmax exponential is ``expNonPositive(_:)`` (about 2 ulp).
///
/// Two `cblas_sgemm` calls per sequence and head read q/k/v and write the result in place
/// through strided pointers (leading dimension `hidden`), no copies. Every call has the
/// shape (L, L, d) or (L, d, L) whatever `sequences` is, single-threaded, on Parallel's
/// threads (Documentation/Determinism.md).
public func multiHeadAttention(q: Matrix, k: Matrix, v: Matrix, heads: Int, sequenceLength: Int,
                               keyMask: [Float]) -> Matrix {
    let L = sequenceLength, hidden = q.cols
    precondition(heads >= 1 && hidden % heads == 0, "hidden size \(hidden) is not a multiple of \(heads) heads")
    precondition(L >= 1 && q.rows % L == 0, "\(q.rows) rows are not whole sequences of length \(L)")
    precondition(k.rows == q.rows && v.rows == q.rows && k.cols == hidden && v.cols == hidden,
                 "q, k and v must have the same shape")
    precondition(keyMask.count == q.rows, "keyMask has \(keyMask.count) values for \(q.rows) keys")
    let sequences = q.rows / L, d = hidden / heads
    var out = Matrix(rows: q.rows, cols: hidden)
    if q.rows == 0 || hidden == 0 { return out }
    let root = Float(d).squareRoot()
    let pairs = sequences * heads
    // (sequence, head) pairs over the threads; fixed-shape single-threaded calls.
    let threads = Parallel.threads

    q.data.withUnsafeBufferPointer { qb in
        k.data.withUnsafeBufferPointer { kb in
            v.data.withUnsafeBufferPointer { vb in
                out.data.withUnsafeMutableBufferPointer { ob in
                    let qp = qb.baseAddress!, kp = kb.baseAddress!, vp = vb.baseAddress!, op = ob.baseAddress!
                    let work = { (range: Range<Int>) in
                        let scores = UnsafeMutablePointer<Float>.allocate(capacity: L * L)
                        let maskBias = UnsafeMutablePointer<Float>.allocate(capacity: L)
                        defer { scores.deallocate(); maskBias.deallocate() }
                        var maskOf = -1
                        for pair in range {
                            let s = pair / heads, h = pair % heads
                            if s != maskOf {
                                for j in 0..<L { maskBias[j] = (1 - keyMask[s * L + j]) * -10000 }
                                maskOf = s
                            }
                            let offset = s * L * hidden + h * d
                            // scores (L x L) = q_h (L x d) * k_h^T
                            BLAS.gemm(m: L, n: L, k: d, a: qp + offset, lda: hidden,
                                      b: kp + offset, ldb: hidden, transposeB: true,
                                      beta: 0, c: scores, ldc: L)
                            for i in 0..<L {
                                let row = scores + i * L
                                // Divided (not multiplied by 1 / sqrt d), then masked, in PyTorch's order.
                                for j in 0..<L { row[j] = row[j] / root + maskBias[j] }
                                softmaxRow(row, L)
                            }
                            // out_h (L x d) = probabilities (L x L) * v_h (L x d)
                            BLAS.gemm(m: L, n: d, k: L, a: scores, lda: L,
                                      b: vp + offset, ldb: hidden,
                                      beta: 0, c: op + offset, ldc: hidden)
                        }
                    }
                    if threads > 1 && pairs > 1 {
                        let tasks = min(threads, pairs)
                        nonisolated(unsafe) let run = work  // disjoint output columns per pair
                        DispatchQueue.concurrentPerform(iterations: tasks) { t in
                            run((pairs * t / tasks)..<(pairs * (t + 1) / tasks))
                        }
                    } else {
                        work(0..<pairs)
                    }
                }
            }
        }
    }
    return out
}
