import Foundation
internal import Crypto
import VidxBytes
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An error reading a file (for hashing): the path, the failed call and its errno.
public struct FileReadError: Error, CustomStringConvertible, Sendable, Equatable {
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

/// SHA-256 (via swift-crypto) of buffers and files, as 32 raw bytes or 64 lowercase hex digits.
public enum SHA256Digest {
    /// The size of the chunks `hex(fileAt:)` and `raw(fileAt:)` read: the file is never
    /// held in memory whole.
    public static let fileChunkBytes = 1 << 20

    /// The 32-byte digest of `bytes`.
    public static func raw(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(bufferPointer: bytes)
        return Array(hasher.finalize())
    }

    /// The 32-byte digest of `data`.
    public static func raw(_ data: [UInt8]) -> [UInt8] {
        data.withUnsafeBytes { raw($0) }
    }

    /// The 32-byte digest of the file at `path`, read in 1 MiB chunks.
    /// Only a regular file is read: a FIFO would block, a device might never end.
    /// - Throws: `FileReadError` naming the path and the failed call (open, read).
    public static func raw(fileAt path: String) throws -> [UInt8] {
        let fd: Int32
        do { (fd, _) = try RegularFile.open(path) } catch {
            switch error.reason {
            case .open(let e): throw FileReadError(path: path, operation: "open", errno: e)
            case .stat(let e): throw FileReadError(path: path, operation: "fstat", errno: e)
            case .notRegular(let kind):
                throw FileReadError(path: path, operation: "open (not a regular file)", errno: kind == .directory ? EISDIR : EINVAL)
            case .notAddressable, .tooLarge, .map: throw FileReadError(path: path, operation: "fstat", errno: EOVERFLOW)
            }
        }
        defer { close(fd) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: fileChunkBytes, alignment: 16)
        defer { buffer.deallocate() }
        var hasher = SHA256()
        while true {
            let n = read(fd, buffer.baseAddress, buffer.count)
            if n < 0 {
                if errno == EINTR { continue }
                throw FileReadError(path: path, operation: "read", errno: errno)
            }
            if n == 0 { break }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
        return Array(hasher.finalize())
    }

    /// The digest of `bytes` as 64 lowercase hex digits.
    public static func hex(_ bytes: UnsafeRawBufferPointer) -> String { hexString(raw(bytes)) }

    /// The digest of `data` as 64 lowercase hex digits.
    public static func hex(_ data: [UInt8]) -> String { hexString(raw(data)) }

    /// The digest of the file at `path` as 64 lowercase hex digits, read in 1 MiB chunks.
    /// - Throws: `FileReadError`.
    public static func hex(fileAt path: String) throws -> String { hexString(try raw(fileAt: path)) }

    /// The bytes spelled by a string of hex digits (either case), or nil when it has an odd
    /// length or a character that is not a hex digit. The inverse of ``hexString(_:)``.
    public static func bytes(fromHex hex: String) -> [UInt8]? {
        @inline(__always) func value(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c &- UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return c &- UInt8(ascii: "a") &+ 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return c &- UInt8(ascii: "A") &+ 10
            default: return nil
            }
        }
        let chars = Array(hex.utf8)
        guard chars.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(chars.count / 2)
        var i = 0
        while i < chars.count {
            guard let hi = value(chars[i]), let lo = value(chars[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    /// Lowercase hex of any bytes (a raw digest, say).
    public static func hexString(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
