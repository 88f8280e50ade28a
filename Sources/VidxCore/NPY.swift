import Foundation
import VidxBytes

/// Reads NumPy `.npy` files (format versions 1-3) holding little-endian float32 or
/// float64 arrays in C order: what `numpy.save` writes for query vectors.
public enum NPY {
    public struct Array: Sendable, Equatable {
        public var shape: [Int]
        /// The elements in C (row-major) order, as Float.
        public var values: [Float]
    }

    /// The largest `.npy` file read: 1 GiB.
    public static let maxBytes = 1 << 30

    /// Reads `path`, a regular file (`MappedFile`: a FIFO or a device is refused, not
    /// waited on) of at most `maxBytes`.
    /// - Throws: `StageFileError` naming the file and what is wrong with it.
    public static func read(path: String) throws -> Array {
        let file: MappedFile
        do { file = try MappedFile(path: path, maxBytes: maxBytes) } catch { throw StageFileError(error) }
        return try withExtendedLifetime(file) { try parse(file.bytes, path: path) }
    }

    /// Parses the bytes of a whole `.npy` file (for `read`, tests and fuzzing).
    ///
    /// Layout: `\x93NUMPY`, major and minor version bytes, the header's length (u16 LE
    /// in version 1, u32 LE in 2 and 3), the header (a Python dict literal with `descr`,
    /// `fortran_order` and `shape`; UTF-8), then the elements, exactly
    /// product(shape) x element size bytes. The header is capped at 1 MiB and the element
    /// count at 2^32 before anything is allocated.
    /// - Parameter path: names the bytes in errors.
    /// - Throws: `StageFileError` "not a usable .npy file: ..." naming `path`.
    public static func parse(_ bytes: UnsafeRawBufferPointer, path: String) throws -> Array {
        func fail(_ m: String) -> StageFileError { StageFileError(path: path, message: "not a usable .npy file: \(m)") }
        var cursor = ByteCursor(bytes)
        let npyMagic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // \x93NUMPY
        guard bytes.count >= 10, let magic = try? cursor.take(6), magic.elementsEqual(npyMagic),
              let major = try? cursor.readUInt8(), (try? cursor.skip(1)) != nil else { throw fail("bad magic") }
        let headerLength: UInt32
        switch major {
        case 1:
            guard let n = try? cursor.readUInt16LE() else { throw fail("truncated header") }
            headerLength = UInt32(n)
        case 2, 3:
            guard let n = try? cursor.readUInt32LE() else { throw fail("truncated header") }
            headerLength = n
        default:
            throw fail("format version \(major) is not supported")
        }
        guard headerLength <= 1 << 20, let headerBytes = try? cursor.take(headerLength) else { throw fail("truncated header") }
        guard let header = UTF8Validation.string(headerBytes) else { throw fail("the header is not valid UTF-8") }
        func value(_ key: String) -> Substring? {
            guard let r = header.range(of: "'\(key)':") else { return nil }
            return header[r.upperBound...].drop { $0 == " " }
        }
        guard let descr = value("descr"), let fortran = value("fortran_order"), let shapeText = value("shape") else {
            throw fail("header lacks descr, fortran_order or shape")
        }
        let elementSize: Int
        if descr.hasPrefix("'<f4'") { elementSize = 4 } else if descr.hasPrefix("'<f8'") { elementSize = 8 } else {
            throw fail("dtype \(descr.prefix(8)) is not little-endian float32 or float64")
        }
        guard fortran.hasPrefix("False") else { throw fail("Fortran-ordered arrays are not supported; save a C-ordered array") }
        guard shapeText.first == "(", let close = shapeText.firstIndex(of: ")") else { throw fail("bad shape") }
        let dims = shapeText[shapeText.index(after: shapeText.startIndex)..<close]
            .split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        var shape: [Int] = []
        var count = 1
        for d in dims {
            guard let v = Int(d), v >= 0 else { throw fail("bad shape") }
            // Every partial product is capped, so no dim can be large even next to a 0.
            guard let p = Checked.multiply(count, v), p <= 1 << 32 else { throw fail("shape too large") }
            shape.append(v)
            count = p
        }
        let data = cursor.takeRest()
        // count <= 2^32 and elementSize <= 8: the product fits.
        guard data.count == count * elementSize else {
            throw fail("\(data.count) data bytes for shape \(shape) (\(count * elementSize) expected)")
        }
        let values: [Float]
        if elementSize == 4 {
            values = LittleEndianView(data, as: UInt32.self).map { Float(bitPattern: $0) }
        } else {
            values = LittleEndianView(data, as: UInt64.self).map { Float(Double(bitPattern: $0)) }
        }
        return Array(shape: shape, values: values)
    }
}
