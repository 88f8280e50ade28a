import Foundation
import VidxCore

/// The pipeline's lock on one index (`INDEX/.pipeline.lock`), held for a whole run.
///
/// `flock(2)`: the kernel releases it when every process holding the descriptor has
/// exited, so a run killed with `kill -9` never leaves a stale lock. The descriptor is
/// inherited by the command run under it (make and the stages), so the lock stays held
/// while any of them still runs. The file names the holder (host, pid, start time,
/// command) for the message a second run prints. flock over NFS is not reliable: keep
/// the index (or at least this file) on a local file system.
///
/// This lock is not `vidx-shard`'s `INDEX/.lock`, which a publication takes briefly
/// inside the run.
public final class IndexLock {
    public static let fileName = ".pipeline.lock"
    /// The exit status of a run that finds the lock held: EX_TEMPFAIL (sysexits.h), so
    /// cron and schedulers treat it as "try again later".
    public static let heldExitStatus: Int32 = 75

    public let path: String
    let fd: Int32

    /// Who holds the lock, from the lock file.
    public struct Held: Error, CustomStringConvertible {
        public let index: String
        public let holder: String
        public var description: String {
            "\(index): another pipeline run holds the index lock (\(holder.isEmpty ? "holder unknown" : holder)); exiting (status 75: try again later)"
        }
    }

    /// Takes the lock on `index` (created if needed) without waiting.
    /// - Throws: `Held` when another process holds it, `FileWriteError` when the lock
    ///   file cannot be opened.
    public init(index: String, command: [String]) throws {
        try AtomicFile.makeDirectory(index)
        path = index + "/" + IndexLock.fileName
        // Inherited by children on purpose (no O_CLOEXEC): see the type's comment.
        fd = open(path, O_RDWR | O_CREAT, 0o644)
        guard fd >= 0 else { throw FileWriteError(path: path, operation: "open the lock file", errno: errno) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let holder = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            close(fd)
            throw Held(index: index, holder: holder)
        }
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, host.count - 1)
        let text = "host \(String(cString: host)), pid \(getpid()), since \(utcTimestamp()), running: \(command.joined(separator: " "))\n"
        _ = ftruncate(fd, 0)
        _ = text.withCString { pwrite(fd, $0, strlen($0), 0) }
    }

    /// Releases the lock (also released when the process and its children exit).
    public func release() {
        _ = ftruncate(fd, 0)
        _ = flock(fd, LOCK_UN)
        close(fd)
    }
}
