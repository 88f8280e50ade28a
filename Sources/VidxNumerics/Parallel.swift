import Dispatch
import Foundation

/// Data-parallel loops for the work between BLAS calls (activations, normalisation,
/// attention heads), and for the convolutions' sgemm tiles.
///
/// Every item is computed by exactly one worker with the same code whatever the split, so
/// results do not depend on the thread count (Documentation/Determinism.md, rule 3); only
/// the wall time changes. Without this, those loops would run on one core and dominate the
/// encoder's time on several cores.
///
/// How many threads: ``threads``, the one count ``BLAS/setThreads(_:)`` sets. OpenBLAS
/// stays single-threaded; its calls are among what these threads run.
public enum Parallel {
    /// The thread count of the loops: ``BLAS/threads``.
    public static var threads: Int { BLAS.threads }

    /// Calls `body` on contiguous, disjoint sub-ranges that together cover `0..<count`, on up
    /// to `threads` threads at once, and returns when all have finished.
    /// - Parameters:
    ///   - grain: the fewest items worth a task of their own; smaller loops run inline on
    ///     the calling thread.
    ///   - threads: the most threads to use; nil: ``threads``.
    public static func forEachRange(_ count: Int, grain: Int = 1, threads: Int? = nil, _ body: (Range<Int>) -> Void) {
        forEachTask(count, grain: grain, threads: threads) { _, range in body(range) }
    }

    /// ``forEachRange(_:grain:threads:_:)`` that also tells `body` which task it runs:
    /// task `t` of `tasks` (at most `threads`, numbered from 0) covers
    /// `(count * t / tasks) ..< (count * (t + 1) / tasks)`, and no two calls with the same
    /// task number run at once; for per-task scratch.
    public static func forEachTask(_ count: Int, grain: Int = 1, threads: Int? = nil,
                                   _ body: (_ task: Int, _ range: Range<Int>) -> Void) {
        precondition(count >= 0 && grain >= 1, "Parallel.forEachTask needs count >= 0 and grain >= 1")
        let limit = threads ?? Self.threads
        precondition(limit >= 1, "Parallel needs at least one thread")
        let tasks = min(limit, count / grain)
        if tasks <= 1 {
            if count > 0 { body(0, 0..<count) }
            return
        }
        withoutActuallyEscaping(body) { body in
            // The ranges are disjoint, so the body's writes never overlap between tasks.
            nonisolated(unsafe) let run = body
            DispatchQueue.concurrentPerform(iterations: tasks) { t in
                run(t, (count * t / tasks)..<(count * (t + 1) / tasks))
            }
        }
    }

    /// Calls `body(i)` for every i in `0..<count` on `workers` threads that each take the
    /// next index in order as they become free: for items of very different costs (the
    /// videos of a unit), where fixed ranges would leave threads idle. `body` synchronises
    /// whatever it shares; the order in which items finish is not fixed.
    public static func forEachDynamically(_ count: Int, workers: Int, _ body: (Int) -> Void) {
        precondition(count >= 0 && workers >= 1, "Parallel.forEachDynamically needs count >= 0 and workers >= 1")
        let threads = min(workers, count)
        if threads <= 1 {
            for i in 0..<count { body(i) }
            return
        }
        let lock = NSLock()
        nonisolated(unsafe) var next = 0
        withoutActuallyEscaping(body) { body in
            nonisolated(unsafe) let run = body
            DispatchQueue.concurrentPerform(iterations: threads) { _ in
                while true {
                    lock.lock()
                    let i = next
                    next += 1
                    lock.unlock()
                    guard i < count else { return }
                    run(i)
                }
            }
        }
    }
}
