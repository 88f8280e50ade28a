import Foundation
import VidxBytes
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
/// refuses anything `fstat` does not call a regular file before it reads a byte
/// (`RegularFile.open` in VidxBytes; `MappedFile` maps through it). The decode stage
/// applies the same rule to videos.
public enum InputFiles {
    /// Opens `path` read-only if it is a regular file (`RegularFile.open`).
    /// - Returns: the descriptor (the caller closes it) and the file's size in bytes.
    /// - Throws: `StageFileError` naming the path: missing, unreadable, or not a regular
    ///   file (a directory, pipe, socket or device).
    public static func openRegular(_ path: String) throws -> (fd: Int32, size: Int) {
        do { return try RegularFile.open(path) } catch { throw StageFileError(error) }
    }

    /// Reads the whole of the regular file at `path`.
    /// - Parameter maxBytes: refuse a larger file before reading it.
    /// - Throws: `StageFileError` (see `openRegular`), also when the file is over `maxBytes`
    ///   or a read fails.
    public static func read(_ path: String, maxBytes: Int = 1 << 30) throws -> Data {
        let (fd, size) = try openRegular(path)
        defer { close(fd) }
        guard size <= maxBytes else {
            throw StageFileError(FileAccessError(path: path, .tooLarge(size: size, limit: maxBytes)))
        }
        var data = Data(count: size)
        var filled = 0
        try data.withUnsafeMutableBytes { (buffer: UnsafeMutableRawBufferPointer) in
            while filled < size {
                let n = systemRead(fd, buffer.baseAddress! + filled, size - filled)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw StageFileError(path: path, message: "read failed: \(String(cString: strerror(errno)))")
                }
                if n == 0 { break }  // shrank while being read
                filled += n
            }
        }
        if filled < size { data.removeSubrange(filled...) }
        return data
    }
}

extension StageFileError {
    /// The path and `FileAccessError.message`: "PATH: is a pipe (FIFO), not a regular file".
    public init(_ error: FileAccessError) {
        self.init(path: error.path, message: error.message)
    }
}

/// `read(2)`, named apart from `InputFiles.read`.
private func systemRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int {
    read(fd, buffer, count)
}

/// JSON Lines (one JSON value per line), as the work units, import lists and deletion
/// lists are written: lines end in LF or CRLF, blank lines are skipped.
public enum JSONLines {
    /// The non-blank lines of `data` with their 1-based line numbers, without the line
    /// terminator (LF, or CR LF) and without surrounding spaces and tabs.
    public static func lines(_ data: Data) -> [(number: Int, text: Substring)] {
        var out: [(number: Int, text: Substring)] = []
        // Bytes, not Characters: "\r\n" is one Character in Swift, and LF, CR, space and
        // tab are single bytes that never occur inside a multi-byte UTF-8 sequence.
        data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            let bytes = raw.bindMemory(to: UInt8.self)
            var number = 0
            var start = 0
            while start <= bytes.count {
                var end = start
                while end < bytes.count && bytes[end] != 0x0A { end += 1 }
                number += 1
                var lo = start, hi = end
                if hi > lo && bytes[hi - 1] == 0x0D { hi -= 1 }
                while lo < hi && (bytes[lo] == 0x20 || bytes[lo] == 0x09) { lo += 1 }
                while hi > lo && (bytes[hi - 1] == 0x20 || bytes[hi - 1] == 0x09) { hi -= 1 }
                if hi > lo {
                    out.append((number, Substring(String(decoding: UnsafeBufferPointer(rebasing: bytes[lo..<hi]), as: UTF8.self))))
                }
                if end == bytes.count { break }
                start = end + 1
            }
        }
        return out
    }
}

extension JSONLines {
    /// Reads a JSON Lines file whose every line is one entry with an external id (work
    /// units, import lists): each line decoded as `T`, its id checked (`ExternalID.problem`)
    /// and unique by its UTF-8 bytes.
    /// - Parameters:
    ///   - what: the entry's name in messages ("work unit entry {\"id\", \"path\"}").
    ///   - container: what the file is in messages ("unit", "list").
    ///   - schema: the schema's path, named in messages.
    /// - Returns: the entries with their 1-based line numbers, in file order.
    /// - Throws: `StageFileError` naming the file, the line and the problem; also when the
    ///   file is not a regular file (a FIFO is refused, not waited on) or over `maxBytes`.
    public static func readEntries<T: Decodable>(_ type: T.Type, path: String, maxBytes: Int, what: String,
                                                 container: String, schema: String,
                                                 id: (T) -> String) throws -> [(line: Int, entry: T)] {
        let data = try InputFiles.read(path, maxBytes: maxBytes)
        var out: [(line: Int, entry: T)] = []
        var seen: [ExternalID: Int] = [:]
        let decoder = JSONDecoder()
        for (number, text) in lines(data) {
            let entry: T
            do { entry = try decoder.decode(T.self, from: Data(text.utf8)) } catch {
                throw StageFileError(path: path, message: "line \(number): not \(what) (\(schema)): \(error)")
            }
            let key = id(entry)
            if let problem = ExternalID.problem(key) {
                throw StageFileError(path: path, message: "line \(number): \(problem) (\(schema))")
            }
            if let first = seen.updateValue(number, forKey: ExternalID(key)) {
                throw StageFileError(path: path, message: "line \(number): id '\(key)' appears twice in the \(container) (first on line \(first)); ids are compared by their UTF-8 bytes")
            }
            out.append((number, entry))
        }
        return out
    }
}

/// A video's external id as the package compares it: by its UTF-8 bytes.
///
/// One identity rule holds in every stage: two ids are the same video only if their UTF-8
/// bytes are equal. There is no Unicode normalisation: `café` written with a precomposed
/// `é` (NFC) and with `e` + combining accent (NFD) are two videos, as they are in the
/// index, whose 64-bit ids hash the bytes. (Swift's `String ==` compares canonical
/// equivalence, so sets and dictionaries of ids use this key instead.)
public struct ExternalID: Hashable, Sendable, CustomStringConvertible {
    public let string: String

    public init(_ string: String) { self.string = string }

    public static func == (a: ExternalID, b: ExternalID) -> Bool {
        a.string.utf8.elementsEqual(b.string.utf8)
    }

    public func hash(into hasher: inout Hasher) {
        for byte in string.utf8 { hasher.combine(byte) }
    }

    public var description: String { string }

    /// The longest external id the specifications allow, in Unicode scalars (JSON Schema's
    /// `maxLength` counts code points).
    public static let maxLength = 4096

    /// What is wrong with `id` as an external id (empty, or over `maxLength`), or nil.
    public static func problem(_ id: String) -> String? {
        if id.isEmpty { return "the id is empty" }
        let length = id.unicodeScalars.count
        if length > maxLength { return "the id is \(length) characters long, over the limit of \(maxLength)" }
        return nil
    }
}
