import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Exit statuses shared by every stage executable (documented in README.md).
public enum StageExit {
    /// Every input was processed successfully.
    public static let ok: Int32 = 0
    /// An unexpected failure stopped the run (an output could not be written, ...).
    public static let failure: Int32 = 1
    /// The command line was wrong; nothing was done.
    public static let usage: Int32 = 2
    /// The run finished, but some inputs failed (or were only partly processed).
    public static let someFailed: Int32 = 3
    /// A safety check refused to publish (vidx-shard): nothing changed, the live index is
    /// as it was. Not retried blindly: the message says what to look at.
    public static let refused: Int32 = 4
}

/// Writes to standard error without buffering surprises.
public func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

/// A single self-overwriting progress line on standard error, shown only when standard
/// error is a terminal: a cron job's logs get results, never carriage returns.
public final class ProgressLine: @unchecked Sendable {
    private let enabled: Bool
    private let total: Int
    private let start = Date()
    private var lastDraw = Date.distantPast
    private var lastWidth = 0
    private let lock = NSLock()

    /// - Parameters:
    ///   - total: the number of items the run will process.
    ///   - minimumItems: below this many items no progress line is drawn.
    public init(total: Int, minimumItems: Int = 2) {
        self.total = total
        self.enabled = isatty(STDERR_FILENO) == 1 && total >= minimumItems
    }

    /// Redraws the line (at most ten times a second unless `force`).
    public func update(done: Int, failed: Int, current: String, force: Bool = false) {
        guard enabled else { return }
        lock.lock(); defer { lock.unlock() }
        let now = Date()
        guard force || now.timeIntervalSince(lastDraw) > 0.1 else { return }
        lastDraw = now
        let elapsed = now.timeIntervalSince(start)
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        var eta = ""
        if rate > 0 && done < total {
            eta = String(format: ", eta %.0fs", Double(total - done) / rate)
        }
        var line = "[\(done)/\(total)] \(failed) failed\(eta)  \(current)"
        if line.count > 100 { line = String(line.prefix(97)) + "..." }
        let pad = max(0, lastWidth - line.count)
        lastWidth = line.count
        FileHandle.standardError.write(Data(("\r" + line + String(repeating: " ", count: pad)).utf8))
    }

    /// Clears the line so the next output starts clean.
    public func finish() {
        guard enabled else { return }
        lock.lock(); defer { lock.unlock() }
        FileHandle.standardError.write(Data(("\r" + String(repeating: " ", count: lastWidth) + "\r").utf8))
        lastWidth = 0
    }

    /// Clears the line, prints `text` on standard output, and lets the line be redrawn.
    public func printAbove(_ text: String) {
        finish()
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }
}

/// JSON encoding settings shared by every tool: stable key order, so the same result
/// always prints the same bytes.
public func makeJSONEncoder(pretty: Bool = false) -> JSONEncoder {
    let encoder = JSONEncoder()
    encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
                                      : [.sortedKeys, .withoutEscapingSlashes]
    encoder.nonConformingFloatEncodingStrategy = .throw
    return encoder
}

/// The version of the vidx tools, recorded in the files they write (index manifests).
public enum VidxVersion {
    public static let string = "0.4.0"
}
