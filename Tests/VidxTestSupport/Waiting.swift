import Foundation

/// Runs `body` on another thread and returns its result, or nil (instead of hanging the
/// suite) if it has not returned within `seconds`: for checks that a reader refuses a FIFO
/// at once rather than waiting for a writer.
public func returnsWithin<T: Sendable>(_ seconds: Double, _ body: @escaping @Sendable () -> T) -> T? {
    let done = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var result: T?
    Thread { result = body(); done.signal() }.start()
    return done.wait(timeout: .now() + seconds) == .success ? result : nil
}
