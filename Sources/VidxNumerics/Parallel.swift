import Dispatch

/// Data-parallel loops for the work between BLAS calls (activations, normalisation,
/// attention heads), on as many threads as OpenBLAS is set to use (``BLAS/setThreads(_:)``).
///
/// Every item is computed by exactly one worker with the same code whatever the split, so
/// results are byte-identical for any thread count; only the wall time changes. Without
/// this, those loops run on one core while OpenBLAS's threads spin idle (measured: about a
/// third of the encoder's wall time on 2 cores).
public enum Parallel {
    /// Calls `body` on contiguous, disjoint sub-ranges that together cover `0..<count`, on up
    /// to ``BLAS/threads`` threads at once, and returns when all have finished.
    /// - Parameter grain: the fewest items worth a task of their own; smaller loops run
    ///   inline on the calling thread.
    public static func forEachRange(_ count: Int, grain: Int = 1, _ body: (Range<Int>) -> Void) {
        precondition(count >= 0 && grain >= 1, "Parallel.forEachRange needs count >= 0 and grain >= 1")
        let tasks = min(BLAS.threads, count / grain)
        if tasks <= 1 {
            if count > 0 { body(0..<count) }
            return
        }
        withoutActuallyEscaping(body) { body in
            // The ranges are disjoint, so the body's writes never overlap between tasks.
            nonisolated(unsafe) let run = body
            DispatchQueue.concurrentPerform(iterations: tasks) { t in
                run((count * t / tasks)..<(count * (t + 1) / tasks))
            }
        }
    }
}
