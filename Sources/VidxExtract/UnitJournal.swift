import Foundation
import VidxCore

/// The extract stage's flight recorder: which videos of a unit a run started and finished.
///
/// `vidx-extract --journal FILE` writes `start N` before and `end N` after video N (0-based,
/// in unit order), one line each, with one `write(2)` per line on an `O_APPEND` file: the
/// lines reach the kernel before the next video starts, so they survive the process being
/// killed by a crash in FFmpeg or an expert (not a crash of the machine, which needs no
/// such record: the unit is simply run again). The pipeline reads the journal of a crashed
/// run to learn which videos were in flight (`inFlight`) and re-runs the unit without them.
public final class UnitJournal: @unchecked Sendable {
    private let fd: Int32
    private let lock = NSLock()
    public let path: String

    /// Creates (or truncates) the journal at `path`.
    /// - Throws: `FileWriteError` when it cannot be opened.
    public init(writingTo path: String) throws {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileWriteError(path: path, operation: "open the journal", errno: errno) }
    }

    deinit { close(fd) }

    /// Appends `event N`. A failed write is ignored: the journal only helps diagnose a crash.
    func record(_ event: String, _ index: Int) {
        let line = Array("\(event) \(index)\n".utf8)
        lock.lock()
        defer { lock.unlock() }
        _ = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }

    /// The videos a journal shows started but not finished, in the order they started.
    /// A missing or unreadable journal gives none; a torn last line is ignored.
    public static func inFlight(journal path: String) -> [Int] {
        guard let data = try? InputFiles.read(path, maxBytes: 64 << 20) else { return [] }
        var started: [Int] = [], ended = Set<Int>()
        for line in JSONLines.lines(data) {
            let parts = line.text.split(separator: " ")
            guard parts.count == 2, let n = Int(parts[1]), n >= 0 else { continue }
            if parts[0] == "start" { started.append(n) } else if parts[0] == "end" { ended.insert(n) }
        }
        return started.filter { !ended.contains($0) }
    }
}
