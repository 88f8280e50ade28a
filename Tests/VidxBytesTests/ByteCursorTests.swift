import Foundation
import Testing
import VidxBytes

/// `body` over the bytes of `array`.
func withBytes<R>(_ array: [UInt8], _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    try array.withUnsafeBytes(body)
}

/// The little-endian value of `width` bytes of `array` at `at`, computed independently.
func littleEndian(_ array: [UInt8], at: Int, width: Int) -> UInt64 {
    (0..<width).reduce(UInt64(0)) { $0 | UInt64(array[at + $1]) << (8 * UInt64($1)) }
}

@Suite("ByteCursor: every read checks what remains")
struct ByteCursorTests {
    let data: [UInt8] = (0..<23).map { UInt8(($0 * 37 + 11) & 0xFF) }

    @Test("reads of 1, 2, 4 and 8 bytes at every offset: a value when they fit, else OutOfBounds and nothing consumed")
    func fixedWidthReads() throws {
        try withBytes(data) { raw in
            for width in [1, 2, 4, 8] {
                for start in 0...raw.count {
                    var c = ByteCursor(raw)
                    try c.skip(start)
                    #expect(c.offset == start && c.remaining == raw.count - start)
                    let fits = start + width <= raw.count
                    do throws(ByteCursor.OutOfBounds) {
                        let v: UInt64
                        switch width {
                        case 1: v = UInt64(try c.readUInt8())
                        case 2: v = UInt64(try c.readUInt16LE())
                        case 4: v = UInt64(try c.readUInt32LE())
                        default: v = try c.readUInt64LE()
                        }
                        #expect(fits, "width \(width) at \(start) read past the end")
                        #expect(v == littleEndian(data, at: start, width: width))
                        #expect(c.offset == start + width)
                    } catch {
                        #expect(!fits, "width \(width) at \(start): \(error)")
                        #expect(error == ByteCursor.OutOfBounds(offset: start, needed: UInt64(width), remaining: raw.count - start))
                        #expect(c.offset == start, "a failed read consumed bytes")
                    }
                }
            }
        }
    }

    @Test("take, skip and slice: every count at every offset, negative and huge counts")
    func takeSkipSlice() throws {
        try withBytes(data) { raw in
            for start in 0...raw.count {
                for count in 0...(raw.count + 1) {
                    var c = ByteCursor(raw)
                    try c.seek(to: start)
                    let fits = start + count <= raw.count
                    if let piece = try? c.take(count) {
                        #expect(fits)
                        #expect(Array(piece) == Array(data[start..<(start + count)]))
                        #expect(c.offset == start + count)
                    } else {
                        #expect(!fits && c.offset == start)
                    }
                    var s = ByteCursor(raw)
                    #expect(((try? s.skip(count)) != nil) == (count <= raw.count))
                    #expect((try? ByteCursor(raw).slice(at: start, count: count)).map(Array.init) == (fits ? Array(data[start..<(start + count)]) : nil))
                }
            }
            var c = ByteCursor(raw)
            #expect(throws: ByteCursor.OutOfBounds.self) { try c.take(-1) }
            #expect(throws: ByteCursor.OutOfBounds.self) { try c.take(UInt64.max) }
            #expect(throws: ByteCursor.OutOfBounds.self) { try c.skip(Int.max) }
            #expect(throws: ByteCursor.OutOfBounds.self) { try c.slice(at: UInt64.max, count: 0) }
            do throws(ByteCursor.OutOfBounds) { _ = try c.take(UInt64.max) } catch { #expect(error.needed == UInt64.max && error.remaining == raw.count) }
            #expect(c.offset == 0)
            #expect(Array(c.takeRest()) == data && c.isAtEnd && c.remaining == 0)
            #expect(c.takeRest().isEmpty)
        }
    }

    @Test("seek anywhere in 0...count; before the start or past the end throws and stays put")
    func seek() throws {
        try withBytes(data) { raw in
            var c = ByteCursor(raw)
            for p in 0...raw.count {
                try c.seek(to: p)
                #expect(c.offset == p)
            }
            try c.seek(to: 5)
            #expect(throws: ByteCursor.OutOfBounds.self) { try c.seek(to: raw.count + 1) }
            #expect(throws: ByteCursor.OutOfBounds.self) { try c.seek(to: -1) }
            #expect(throws: ByteCursor.OutOfBounds.self) { try c.seek(to: UInt64.max) }
            #expect(c.offset == 5)
        }
    }

    @Test("an empty buffer (nil base address): every read throws, take(0) and takeRest give empty slices")
    func empty() throws {
        var c = ByteCursor(UnsafeRawBufferPointer(start: nil, count: 0))
        #expect(c.isAtEnd)
        #expect(throws: ByteCursor.OutOfBounds.self) { try c.readUInt8() }
        #expect(throws: ByteCursor.OutOfBounds.self) { try c.readUInt64LE() }
        #expect(try c.take(0).isEmpty)
        #expect(c.takeRest().isEmpty)
        try c.seek(to: 0)
        #expect(throws: ByteCursor.OutOfBounds.self) { try c.seek(to: 1) }
    }

    @Test("the error says where, how much and what remained")
    func errorText() {
        #expect("\(ByteCursor.OutOfBounds(offset: 8, needed: 16, remaining: 3))" == "needed 16 bytes at offset 8, but only 3 remain")
    }

    @Test("LittleEndianView: count is whole elements, values little-endian at any alignment")
    func littleEndianView() {
        withBytes(data) { raw in
            for start in 0..<8 {
                let piece = UnsafeRawBufferPointer(rebasing: raw[start...])
                let v32 = LittleEndianView(piece, as: UInt32.self)
                #expect(v32.count == (raw.count - start) / 4)
                for i in v32.indices { #expect(UInt64(v32[i]) == littleEndian(data, at: start + 4 * i, width: 4)) }
                let v64 = LittleEndianView(piece, as: UInt64.self)
                #expect(Array(v64) == (0..<((raw.count - start) / 8)).map { littleEndian(data, at: start + 8 * $0, width: 8) })
            }
        }
        #expect(LittleEndianView(UnsafeRawBufferPointer(start: nil, count: 0), as: UInt16.self).isEmpty)
    }

    @Test("LittleEndianView traps on an index outside its bytes rather than reading them")
    func littleEndianViewTraps() async {
        await #expect(processExitsWith: .failure) {
            let bytes: [UInt8] = [1, 2, 3, 4, 5, 6, 7]
            bytes.withUnsafeBytes { raw in
                let view = LittleEndianView(raw, as: UInt32.self)
                _ = view[1]   // bytes 4..<8: one past the end
            }
        }
    }
}

@Suite("Checked arithmetic: overflow is nil, never a wrapped size")
struct CheckedArithmeticTests {
    @Test("add, subtract and multiply at the edges of UInt64 and Int")
    func edges() {
        #expect(Checked.add(UInt64.max - 1, 1) == UInt64.max)
        #expect(Checked.add(UInt64.max, 1) == nil)
        #expect(Checked.add(Int.max, 1) == nil)
        #expect(Checked.add(Int.min, -1) == nil)
        #expect(Checked.subtract(UInt64(3), 4) == nil)
        #expect(Checked.subtract(Int.min, 1) == nil)
        #expect(Checked.subtract(10, 4) == 6)
        #expect(Checked.multiply(UInt64(1) << 32, 1 << 31) == 1 << 63)
        #expect(Checked.multiply(UInt64(1) << 32, 1 << 32) == nil)
        #expect(Checked.multiply(Int.max / 2, 2) == Int.max - 1)
        #expect(Checked.multiply(Int.max / 2 + 1, 2) == nil)
        #expect(Checked.multiply(UInt64.max, 0) == 0)
    }

    @Test("sum and product: empty, zero factors, overflow anywhere")
    func sumsAndProducts() {
        #expect(Checked.sum([UInt64]()) == 0)
        #expect(Checked.sum([UInt64.max, 0]) == UInt64.max)
        #expect(Checked.sum([UInt64.max, 1, 0]) == nil)
        #expect(Checked.product([UInt64]()) == 1)
        #expect(Checked.product([UInt64(8), 1 << 61]) == nil)
        #expect(Checked.product([UInt64(8), 1 << 59, 0]) == 0)   // exactly 0, whatever the others
        #expect(Checked.product([UInt64.max, UInt64.max, 0]) == 0)
        #expect(Checked.product([3, 5, 7]) == 105)
    }

    @Test("byteCount(shape:elementSize:): scalars, zero dims, negative dims, overflow")
    func byteCount() {
        #expect(Checked.byteCount(shape: [], elementSize: 8) == 8)
        #expect(Checked.byteCount(shape: [2, 3], elementSize: 4) == 24)
        #expect(Checked.byteCount(shape: [0, Int.max], elementSize: 4) == 0)
        #expect(Checked.byteCount(shape: [1 << 31, 1 << 31], elementSize: 1) == 1 << 62)
        #expect(Checked.byteCount(shape: [1 << 31, 1 << 31], elementSize: 2) == nil)   // 2^63 > Int.max
        #expect(Checked.byteCount(shape: [2, -3], elementSize: 4) == nil)
        #expect(Checked.byteCount(shape: [2], elementSize: -4) == nil)
    }
}
