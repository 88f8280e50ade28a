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

    public init(path: String, operation: String, errno: Int32) {
        self.path = path
        self.operation = operation
        self.errno = errno
    }

    public var description: String {
        "\(path): \(operation) failed: \(String(cString: strerror(errno)))"
    }
}

/// Writes whole files so that a reader never sees a partial one: the bytes go to a
/// temporary name in the same directory, are fsynced, renamed over the destination,
/// and the directory is fsynced so the rename survives a crash.
///
/// Temporary names are `.<name>.tmp-<pid>-<random>` beside the destination
/// (`isTemporaryName` recognises them), so a run killed mid-write leaves at most such a
/// file, never a partial destination.
public enum AtomicFile {
    /// A file written and fsynced under its temporary name, not yet visible at `path`.
    /// `commit()` renames it into place; `discard()` (or dropping it uncommitted) removes it.
    public final class Staged {
        public let path: String
        let temporary: String
        private var done = false

        init(path: String, temporary: String) {
            self.path = path
            self.temporary = temporary
        }

        /// Renames the staged file over `path` and fsyncs the directory.
        /// - Throws: `FileWriteError` (the staged file is then removed).
        public func commit() throws {
            precondition(!done, "a staged file is committed or discarded once")
            done = true
            if rename(temporary, path) != 0 {
                let e = errno
                unlink(temporary)
                throw FileWriteError(path: path, operation: "rename", errno: e)
            }
            AtomicFile.syncDirectory(AtomicFile.directory(of: path))
        }

        /// Removes the staged file; `path` is untouched.
        public func discard() {
            guard !done else { return }
            done = true
            unlink(temporary)
        }

        deinit { discard() }
    }

    /// Creates a fresh temporary file beside `path` (`.NAME.tmp-PID-RANDOM`, which
    /// `isTemporaryName` recognises) and returns its name and descriptor.
    static func createTemporary(for path: String) throws -> (name: String, fd: Int32) {
        let base = (path as NSString).lastPathComponent
        let tmp = directory(of: path) + "/.\(base).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileWriteError(path: path, operation: "create temporary file", errno: errno) }
        return (tmp, fd)
    }

    /// Writes all of `bytes` to `fd` (retrying short writes and EINTR); on failure closes
    /// `fd` and throws naming `path`.
    static func writeFully(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let n = systemWrite(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                let e = errno
                close(fd)
                throw FileWriteError(path: path, operation: "write", errno: e)
            }
            offset += n
        }
    }

    /// Writes `bytes` to a temporary name beside `path` and fsyncs it, without making it
    /// visible: see `Staged`. Use it to publish several files together (`commit(_:)`).
    /// - Throws: `FileWriteError`; nothing is left behind on failure.
    public static func stage(_ bytes: UnsafeRawBufferPointer, to path: String) throws -> Staged {
        let (tmp, fd) = try createTemporary(for: path)
        var ok = false
        defer { if !ok { unlink(tmp) } }
        try writeFully(fd, bytes, path: path)
        if fsync(fd) != 0 {
            let e = errno
            close(fd)
            throw FileWriteError(path: path, operation: "fsync", errno: e)
        }
        if close(fd) != 0 { throw FileWriteError(path: path, operation: "close", errno: errno) }
        ok = true
        return Staged(path: path, temporary: tmp)
    }

    /// Stages `data`; see `stage(_:to:)`.
    public static func stage(_ data: Data, to path: String) throws -> Staged {
        try data.withUnsafeBytes { try stage($0, to: path) }
    }

    /// Commits staged files in order. Stage every file first (that is where a full disk
    /// fails), then commit: a reader then sees either none of the new files or, once the
    /// last is committed, all of them. Put the file whose presence means "done" last.
    /// - Throws: the first `FileWriteError`; the files not yet committed are discarded.
    public static func commit(_ files: [Staged]) throws {
        var i = 0
        defer { for f in files[i...] { f.discard() } }
        while i < files.count {
            let f = files[i]
            i += 1
            try f.commit()
        }
    }

    /// Writes `bytes` to `path` atomically, replacing any existing file.
    /// - Throws: `FileWriteError` naming the path and the failed call; the destination
    ///   is untouched and the temporary file removed on failure.
    public static func write(_ bytes: UnsafeRawBufferPointer, to path: String) throws {
        try stage(bytes, to: path).commit()
    }

    /// Writes `data` to `path` atomically. See `write(_:to:)`.
    public static func write(_ data: Data, to path: String) throws {
        try data.withUnsafeBytes { try write($0, to: path) }
    }

    /// Writes many files atomically with one file-system sync for all of them instead of
    /// two fsyncs each: every file goes to a temporary name, then `syncfs` flushes them
    /// (and everything else on that file system), then each is renamed into place and
    /// each directory fsynced once. A kill at any point leaves every destination either
    /// as it was or complete, and at most temporary names (`isTemporaryName`) behind.
    /// - Throws: `FileWriteError` naming the path; files not yet renamed are removed.
    public static func writeAll(_ files: [(data: Data, path: String)]) throws {
        guard !files.isEmpty else { return }
        var staged: [(temporary: String, path: String)] = []
        var renamed = 0
        defer { for f in staged[renamed...] { unlink(f.temporary) } }
        for f in files {
            let (tmp, fd) = try createTemporary(for: f.path)
            staged.append((tmp, f.path))
            try f.data.withUnsafeBytes { try writeFully(fd, $0, path: f.path) }
            if close(fd) != 0 { throw FileWriteError(path: f.path, operation: "close", errno: errno) }
        }
        let dirs = Array(Set(files.map { directory(of: $0.path) })).sorted()
        for d in dirs {
            let fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard fd >= 0 else { throw FileWriteError(path: d, operation: "open directory", errno: errno) }
            let r = linuxSyncfs(fd)
            let e = errno
            close(fd)
            if r != 0 { throw FileWriteError(path: d, operation: "syncfs", errno: e) }
        }
        while renamed < staged.count {
            let f = staged[renamed]
            if rename(f.temporary, f.path) != 0 { throw FileWriteError(path: f.path, operation: "rename", errno: errno) }
            renamed += 1
        }
        for d in dirs { syncDirectory(d) }
    }

    /// Writes a UTF-8 string to `path` atomically.
    public static func write(_ text: String, to path: String) throws {
        try write(Data(text.utf8), to: path)
    }

    /// Whether `name` (a file name, not a path) is a temporary name `stage` makes.
    public static func isTemporaryName(_ name: String) -> Bool {
        name.hasPrefix(".") && name.contains(".tmp-")
    }

    /// Creates `path` and its parents if needed (mode 0755), as `mkdir -p` does.
    /// - Throws: `FileWriteError` naming `path` with the errno of the `mkdir` that failed
    ///   (`ENOTDIR` when a parent is a file, `EEXIST` when `path` is one, `EACCES`, ...).
    public static func makeDirectory(_ path: String) throws {
        if mkdir(path, 0o755) == 0 { return }
        var e = errno
        if e == ENOENT {
            let parent = (path as NSString).deletingLastPathComponent
            if !parent.isEmpty && parent != path {
                do { try makeDirectory(parent) } catch let p as FileWriteError {
                    throw FileWriteError(path: path, operation: "create directory", errno: p.errno)
                }
                if mkdir(path, 0o755) == 0 { return }
                e = errno
            }
        }
        if e == EEXIST {
            var st = stat()
            if stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR { return }
        }
        throw FileWriteError(path: path, operation: "create directory", errno: e)
    }

    /// fsyncs a directory, so that renames and new entries in it survive a crash.
    public static func syncDirectory(_ dir: String) {
        let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        close(fd)
    }

    /// The directory holding `path` ("." for a bare name).
    public static func directory(of path: String) -> String {
        let dir = (path as NSString).deletingLastPathComponent
        return dir.isEmpty ? "." : dir
    }
}

/// `write(2)`, named apart from `AtomicFile.write`.
private func systemWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    write(fd, buffer, count)
}

/// glibc's syncfs(2) (declared only with _GNU_SOURCE, so not imported by Glibc).
@_silgen_name("syncfs")
private func linuxSyncfs(_ fd: Int32) -> Int32
