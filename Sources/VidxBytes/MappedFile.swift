#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The bytes of a whole regular file, mapped read-only and private: the one owner of
/// `mmap`, `munmap` and `madvise` in the package.
///
/// `bytes` stays valid while the object lives; `deinit` unmaps it. Readers keep the object
/// in a stored property of whatever hands out views; a caller holding only `bytes` keeps the
/// object alive (`withExtendedLifetime`), since Swift may release it after its last use. The file must not be
/// truncated or rewritten in place meanwhile (a read past a shrunken end faults);
/// replacing it by rename, as `AtomicFile` does, is safe: the old inode stays mapped.
/// An empty file gives an empty buffer (`mmap` refuses zero bytes). A mapping's base is
/// page-aligned; a copy's is aligned as asked. Immutable after `init`, hence `Sendable`.
public final class MappedFile: @unchecked Sendable {
    /// The whole file (or the copied buffer).
    public let bytes: UnsafeRawBufferPointer
    /// Whether `bytes` is a mapping (as opposed to a copy made by `init(copying:)`).
    public let isMapped: Bool

    /// Opens `path` as a regular file only (`RegularFile.open`: a FIFO is refused, not
    /// waited on) and maps all of it (`PROT_READ`, `MAP_PRIVATE`). The descriptor is
    /// closed before returning; the mapping outlives it.
    /// - Parameter maxBytes: refuse a larger file before mapping it.
    /// - Throws: `FileAccessError` naming the path and the step that failed.
    public init(path: String, maxBytes: Int = .max) throws(FileAccessError) {
        let (fd, size) = try RegularFile.open(path)
        defer { close(fd) }
        guard size <= maxBytes else { throw FileAccessError(path: path, .tooLarge(size: size, limit: maxBytes)) }
        isMapped = true
        guard size > 0 else {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let base, base != UnsafeMutableRawPointer(bitPattern: -1) else { throw FileAccessError(path: path, .map(errno: errno)) }
        bytes = UnsafeRawBufferPointer(start: base, count: size)
    }

    /// A copy of `source` in memory of its own, for tests and fuzzing: readers treat it
    /// as they treat a file.
    /// - Parameter alignment: the copy's base alignment, a power of two (64 by default,
    ///   as the shard format aligns its sections).
    public init(copying source: UnsafeRawBufferPointer, alignment: Int = 64) {
        precondition(alignment > 0 && alignment & (alignment - 1) == 0, "alignment must be a power of two")
        // At least one byte, so that even an empty copy has a base address to free.
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(source.count, 1), alignment: alignment)
        if source.count > 0 { storage.copyMemory(from: source) }
        bytes = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(storage)[0..<source.count])
        isMapped = false
    }

    deinit {
        if isMapped {
            if let base = bytes.baseAddress, bytes.count > 0 { munmap(UnsafeMutableRawPointer(mutating: base), bytes.count) }
        } else {
            bytes.baseAddress.map { UnsafeMutableRawPointer(mutating: $0).deallocate() }
        }
    }

    /// Drops the mapping's pages from this process's resident set (`madvise(MADV_DONTNEED)`).
    ///
    /// The mapping is read-only and private, so nothing is lost: a later read faults the
    /// pages back in from the page cache. Stages that stream through a large file call this
    /// after each chunk so that their resident memory stays near one chunk. Views handed
    /// out earlier stay valid. Does nothing for a copy.
    public func releaseResidentPages() {
        guard isMapped, let base = bytes.baseAddress, bytes.count > 0 else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base), bytes.count, MADV_DONTNEED)
    }
}
