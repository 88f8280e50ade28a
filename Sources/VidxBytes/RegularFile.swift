#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Opening input files without trusting what the path names.
///
/// A FIFO blocks `open(2)` until a writer appears and a device may never end, so every
/// reader of the package opens with `O_NONBLOCK` (which returns at once for a FIFO) and
/// refuses anything `fstat` does not call a regular file before it reads a byte.
public enum RegularFile {
    /// Opens `path` read-only if it is a regular file (wraps `open(2)` with `O_NONBLOCK`,
    /// then `fstat(2)`; the flag is cleared again before returning).
    /// - Returns: the descriptor, which the caller owns and closes, and the file's size.
    /// - Throws: `FileAccessError` (`open`, `stat`, `notRegular`, `notAddressable`); no
    ///   descriptor is left open.
    public static func open(_ path: String) throws(FileAccessError) -> (fd: Int32, size: Int) {
        let fd = systemOpen(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw FileAccessError(path: path, .open(errno: errno)) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = errno
            close(fd)
            throw FileAccessError(path: path, .stat(errno: e))
        }
        let type = st.st_mode & S_IFMT
        guard type == S_IFREG else {
            close(fd)
            let kind: FileAccessError.FileKind = type == S_IFDIR ? .directory : type == S_IFIFO ? .fifo
                : type == S_IFSOCK ? .socket : .device
            throw FileAccessError(path: path, .notRegular(kind))
        }
        guard let size = Int(exactly: st.st_size), size >= 0 else {
            close(fd)
            throw FileAccessError(path: path, .notAddressable(size: Int64(st.st_size)))
        }
        // Regular files ignore O_NONBLOCK; clear it anyway so reads behave as documented.
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 { _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) }
        return (fd, size)
    }
}

/// `open(2)`, named apart from `RegularFile.open`.
private func systemOpen(_ path: String, _ flags: Int32) -> Int32 { open(path, flags) }

/// A file that could not be opened, examined or mapped: which step failed and why.
///
/// Readers turn it into their own error kinds and wording (`unreadable`); `message` is the
/// wording most of them use.
public struct FileAccessError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What a path named instead of a regular file.
    public enum FileKind: String, Sendable, Equatable {
        case directory = "a directory", fifo = "a pipe (FIFO)", socket = "a socket", device = "a device"
    }

    /// The step that failed.
    public enum Reason: Sendable, Equatable {
        /// `open(2)` failed with this errno (`ENOENT`: no such file).
        case open(errno: Int32)
        /// `fstat(2)` failed with this errno.
        case stat(errno: Int32)
        /// The path names something other than a regular file.
        case notRegular(FileKind)
        /// The size `fstat` reports does not fit this process's address space.
        case notAddressable(size: Int64)
        /// The file is larger than the caller's limit.
        case tooLarge(size: Int, limit: Int)
        /// `mmap(2)` failed with this errno.
        case map(errno: Int32)
    }

    /// The path, as given.
    public let path: String
    public let reason: Reason

    public init(path: String, _ reason: Reason) {
        self.path = path
        self.reason = reason
    }

    /// "no such file", "cannot open: Permission denied", "is a directory, not a regular
    /// file", "is 12 bytes, over the limit of 10 for this kind of file", "mmap failed: ...".
    public var message: String {
        switch reason {
        case .open(let e): return e == ENOENT ? "no such file" : "cannot open: \(errorText(e))"
        case .stat(let e): return "cannot stat: \(errorText(e))"
        case .notRegular(let kind): return "is \(kind.rawValue), not a regular file"
        case .notAddressable(let size): return "file size \(size) is not addressable"
        case .tooLarge(let size, let limit): return "is \(size) bytes, over the limit of \(limit) for this kind of file"
        case .map(let e): return "mmap failed: \(errorText(e))"
        }
    }

    /// "PATH: message".
    public var description: String { "\(path): \(message)" }
}

extension FileAccessError {
    /// `strerror(3)`'s text for an errno: "No such file or directory".
    public static func text(errno code: Int32) -> String { String(cString: strerror(code)) }
}

private func errorText(_ code: Int32) -> String { FileAccessError.text(errno: code) }
