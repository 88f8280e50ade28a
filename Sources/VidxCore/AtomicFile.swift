import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Errors from writing files atomically.
public struct FileWriteError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let operation: String
    public let errno: Int32

    public var description: String {
        "\(path): \(operation) failed: \(String(cString: strerror(errno)))"
    }
}

/// Writes whole files so that a reader never sees a partial one: the bytes go to a
/// temporary name in the same directory, are fsynced, renamed over the destination,
/// and the directory is fsynced so the rename survives a crash.
public enum AtomicFile {
    /// Writes `bytes` to `path` atomically, replacing any existing file.
    /// - Throws: `FileWriteError` naming the path and the failed call; the destination
    ///   is untouched and the temporary file removed on failure.
    public static func write(_ bytes: UnsafeRawBufferPointer, to path: String) throws {
        let dir = (path as NSString).deletingLastPathComponent
        let base = (path as NSString).lastPathComponent
        let tmp = (dir.isEmpty ? "." : dir) + "/.\(base).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileWriteError(path: path, operation: "create temporary file", errno: errno) }
        var ok = false
        defer {
            if !ok { unlink(tmp) }
        }
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                let e = errno
                close(fd)
                throw FileWriteError(path: path, operation: "write", errno: e)
            }
            offset += n
        }
        if fsync(fd) != 0 {
            let e = errno
            close(fd)
            throw FileWriteError(path: path, operation: "fsync", errno: e)
        }
        if close(fd) != 0 { throw FileWriteError(path: path, operation: "close", errno: errno) }
        if rename(tmp, path) != 0 { throw FileWriteError(path: path, operation: "rename", errno: errno) }
        ok = true
        syncDirectory(dir.isEmpty ? "." : dir)
    }

    /// Writes `data` to `path` atomically. See `write(_:to:)`.
    public static func write(_ data: Data, to path: String) throws {
        try data.withUnsafeBytes { try write($0, to: path) }
    }

    /// Writes a UTF-8 string to `path` atomically.
    public static func write(_ text: String, to path: String) throws {
        try write(Data(text.utf8), to: path)
    }

    /// Creates `path` and its parents if needed.
    public static func makeDirectory(_ path: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw FileWriteError(path: path, operation: "create directory", errno: EACCES)
        }
    }

    /// fsyncs a directory, so that renames and new entries in it survive a crash.
    public static func syncDirectory(_ dir: String) {
        let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        close(fd)
    }
}
