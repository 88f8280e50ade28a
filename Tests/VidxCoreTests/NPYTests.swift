import Foundation
import Testing
import VidxTestSupport
@testable import VidxCore

/// An .npy file: magic, version, header length (u16 in version 1, u32 after), the header
/// text padded with spaces and a newline to 64 bytes, then `data`.
private func npy(_ header: String, version: UInt8 = 1, data: [UInt8], rawHeader: [UInt8]? = nil) -> [UInt8] {
    var text = rawHeader ?? Array(header.utf8)
    let prefix = version == 1 ? 10 : 12
    while (prefix + text.count + 1) % 64 != 0 { text.append(0x20) }
    text.append(0x0A)
    let length: [UInt8] = version == 1 ? [UInt8(text.count & 0xFF), UInt8(text.count >> 8)]
        : (0..<4).map { UInt8(truncatingIfNeeded: text.count >> (8 * $0)) }
    return [0x93] + Array("NUMPY".utf8) + [version, 0] + length + text + data
}

private func parse(_ bytes: [UInt8]) throws -> NPY.Array {
    try bytes.withUnsafeBytes { try NPY.parse($0, path: "q.npy") }
}

/// The message of the error `bytes` give, or nil when they parse.
private func refusal(_ bytes: [UInt8]) -> String? {
    do { _ = try parse(bytes); return nil } catch let e as StageFileError {
        #expect(e.path == "q.npy")
        return e.message
    } catch { return "\(error)" }
}

@Suite("NPY: parsed through the byte layer")
struct NPYTests {
    let floats: [UInt8] = [Float(1.5), -2, 0.25].flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) }

    @Test("float32 in version 1 and float64 in version 2 read back as Float, row-major")
    func valid() throws {
        let a = try parse(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", data: floats))
        #expect(a == NPY.Array(shape: [3], values: [1.5, -2, 0.25]))
        let doubles = [Double(1), 2, 3, 4].flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) }
        let b = try parse(npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }", version: 2, data: doubles))
        #expect(b == NPY.Array(shape: [2, 2], values: [1, 2, 3, 4]))
        let empty = try parse(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 5), }", data: []))
        #expect(empty.shape == [0, 5] && empty.values.isEmpty)
    }

    @Test("each defect is refused with its own message")
    func defects() {
        let good = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", data: floats)
        #expect(refusal(Array(good.prefix(9)))?.hasSuffix("bad magic") == true)
        #expect(refusal([0x93] + Array("NUMPX".utf8) + Array(good.dropFirst(6)))?.hasSuffix("bad magic") == true)
        #expect(refusal(Array(good.prefix(40)))?.hasSuffix("truncated header") == true)
        var v2 = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", version: 2, data: floats)
        #expect(refusal(Array(v2.prefix(11)))?.hasSuffix("truncated header") == true)
        v2[8...11] = [0xFF, 0xFF, 0xFF, 0x7F]   // a header length over the 1 MiB cap
        #expect(refusal(v2)?.hasSuffix("truncated header") == true)
        var future = good
        future[6] = 4
        #expect(refusal(future)?.hasSuffix("format version 4 is not supported") == true)
        #expect(refusal(good.dropLast())?.contains("11 data bytes for shape [3] (12 expected)") == true)
        #expect(refusal(good + [0])?.contains("13 data bytes") == true)
        #expect(refusal(npy("{'descr': '<f4', 'fortran_order': True, 'shape': (3,), }", data: floats))?.contains("Fortran") == true)
        #expect(refusal(npy("{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", data: floats))?.contains("not little-endian float32") == true)
        #expect(refusal(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (65536, 65536, 2), }", data: []))?.hasSuffix("shape too large") == true)
        #expect(refusal(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-3,), }", data: floats))?.hasSuffix("bad shape") == true)
        #expect(refusal(npy("{'descr': '<f4', 'shape': (3,), }", data: floats))?.contains("lacks descr") == true)
        // Not UTF-8: refused, where the header used to be decoded with replacement characters.
        let latin = Array("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'x\u{0}': }".utf8).map { $0 == 0 ? 0xE9 : $0 }
        #expect(refusal(npy("", data: floats, rawHeader: latin))?.hasSuffix("the header is not valid UTF-8") == true)
    }

    @Test("read(path:) maps regular files only: a directory is refused, naming it")
    func readFile() throws {
        let dir = makeTestDirectory("npy")
        #expect(throws: StageFileError(path: dir, message: "is a directory, not a regular file")) { try NPY.read(path: dir) }
        let path = dir + "/q.npy"
        try Data(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", data: floats)).write(to: URL(fileURLWithPath: path))
        #expect(try NPY.read(path: path).values == [1.5, -2, 0.25])
    }
}
