/// A read position in a byte buffer that knows how many bytes remain: every read checks
/// them first and throws `ByteCursor.OutOfBounds` (consuming nothing) when too few do.
///
/// For parsing headers, tables and offsets; bulk data is read through the slices `take`
/// hands out (typed views, `LittleEndianView`), not one checked read per element.
/// Integers are little-endian and need no alignment.
public struct ByteCursor {
    /// The whole buffer; offsets are relative to its start.
    public let bytes: UnsafeRawBufferPointer
    /// The next byte to read, in `0...bytes.count`.
    @inlinable
    public var offset: Int { position }
    @usableFromInline
    var position: Int

    /// A cursor at the start of `bytes`.
    @inlinable
    public init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
        self.position = 0
    }

    /// A read the buffer cannot satisfy: `needed` bytes at `offset`, where `remaining`
    /// were left (or a seek to `offset` beyond the end, `needed` 0).
    public struct OutOfBounds: Error, Sendable, Equatable, CustomStringConvertible {
        public let offset: Int
        /// Bytes asked for (as asked: may not fit an `Int`).
        public let needed: UInt64
        public let remaining: Int

        @inlinable
        public init(offset: Int, needed: UInt64, remaining: Int) {
            self.offset = offset
            self.needed = needed
            self.remaining = remaining
        }

        public var description: String {
            "needed \(needed) bytes at offset \(offset), but only \(remaining) remain"
        }
    }

    /// Bytes after `offset`.
    @inlinable
    public var remaining: Int { bytes.count &- offset }

    /// Whether no bytes remain.
    @inlinable
    public var isAtEnd: Bool { offset == bytes.count }

    /// Throws unless `count` bytes remain; returns `count` as an `Int`.
    @inlinable
    func require<T: BinaryInteger>(_ count: T) throws(OutOfBounds) -> Int {
        guard count >= 0, let n = Int(exactly: count), n <= remaining else {
            throw OutOfBounds(offset: offset, needed: UInt64(clamping: count), remaining: remaining)
        }
        return n
    }

    @inlinable
    public mutating func readUInt8() throws(OutOfBounds) -> UInt8 {
        _ = try require(1)
        defer { position &+= 1 }
        return bytes[offset]
    }

    @inlinable
    public mutating func readUInt16LE() throws(OutOfBounds) -> UInt16 { try readLE(UInt16.self) }

    @inlinable
    public mutating func readUInt32LE() throws(OutOfBounds) -> UInt32 { try readLE(UInt32.self) }

    @inlinable
    public mutating func readUInt64LE() throws(OutOfBounds) -> UInt64 { try readLE(UInt64.self) }

    /// The next `T.bitWidth / 8` bytes as a little-endian integer.
    @inlinable
    public mutating func readLE<T: FixedWidthInteger>(_: T.Type) throws(OutOfBounds) -> T {
        let size = MemoryLayout<T>.size
        _ = try require(size)
        defer { position &+= size }
        return T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    /// The next `count` bytes, a slice of `bytes` (valid as long as the buffer is).
    @inlinable
    public mutating func take<T: BinaryInteger>(_ count: T) throws(OutOfBounds) -> UnsafeRawBufferPointer {
        let n = try require(count)
        defer { position &+= n }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset &+ n)])
    }

    /// Every remaining byte (possibly none).
    @inlinable
    public mutating func takeRest() -> UnsafeRawBufferPointer {
        defer { position = bytes.count }
        return UnsafeRawBufferPointer(rebasing: bytes[offset...])
    }

    /// Steps over `count` bytes.
    @inlinable
    public mutating func skip<T: BinaryInteger>(_ count: T) throws(OutOfBounds) {
        position &+= try require(count)
    }

    /// Moves to `target`, which may be anywhere in `0...bytes.count`.
    @inlinable
    public mutating func seek<T: BinaryInteger>(to target: T) throws(OutOfBounds) {
        guard target >= 0, let p = Int(exactly: target), p <= bytes.count else {
            throw OutOfBounds(offset: Int(clamping: target), needed: 0, remaining: 0)
        }
        position = p
    }

    /// The `count` bytes at `start` (from the buffer's start), without moving: `seek` then `take` on a copy.
    @inlinable
    public func slice<P: BinaryInteger, C: BinaryInteger>(at start: P, count: C) throws(OutOfBounds) -> UnsafeRawBufferPointer {
        var c = self
        try c.seek(to: start)
        return try c.take(count)
    }
}

/// A buffer read as consecutive little-endian integers: `count` is the buffer's length
/// divided by the width (any remainder is ignored), and the subscript checks its index,
/// so nothing outside the buffer can be read. For validation loops over a section a
/// cursor handed out; no alignment needed.
public struct LittleEndianView<Element: FixedWidthInteger>: RandomAccessCollection {
    public let bytes: UnsafeRawBufferPointer

    @inlinable
    public init(_ bytes: UnsafeRawBufferPointer, as _: Element.Type = Element.self) { self.bytes = bytes }

    @inlinable
    public var startIndex: Int { 0 }

    @inlinable
    public var endIndex: Int { bytes.count / MemoryLayout<Element>.size }

    @inlinable
    public subscript(i: Int) -> Element {
        precondition(i >= 0 && i < endIndex, "index \(i) out of range 0..<\(endIndex)")
        return Element(littleEndian: bytes.loadUnaligned(fromByteOffset: i &* MemoryLayout<Element>.size, as: Element.self))
    }
}
