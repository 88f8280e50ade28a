import Foundation

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

    /// Reads `path`, a regular file (`InputFiles`: a FIFO or a device is refused, not
    /// waited on) of at most `maxBytes`.
    /// - Throws: `StageFileError` naming the file and what is wrong with it.
    public static func read(path: String) throws -> Array {
        let data = try InputFiles.read(path, maxBytes: maxBytes)
        return try parse([UInt8](data), path: path)
    }

    static func parse(_ b: [UInt8], path: String) throws -> Array {
        func fail(_ m: String) -> StageFileError { StageFileError(path: path, message: "not a usable .npy file: \(m)") }
        guard b.count >= 10, b[0] == 0x93, Swift.Array(b[1..<6]) == Swift.Array("NUMPY".utf8) else { throw fail("bad magic") }
        let major = b[6]
        var headerLength: Int, start: Int
        switch major {
        case 1:
            headerLength = Int(b[8]) | Int(b[9]) << 8
            start = 10
        case 2, 3:
            guard b.count >= 12 else { throw fail("truncated header") }
            headerLength = Int(b[8]) | Int(b[9]) << 8 | Int(b[10]) << 16 | Int(b[11]) << 24
            start = 12
        default:
            throw fail("format version \(major) is not supported")
        }
        guard headerLength <= 1 << 20, start + headerLength <= b.count else { throw fail("truncated header") }
        let header = String(decoding: b[start..<(start + headerLength)], as: UTF8.self)
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
            let (p, overflow) = count.multipliedReportingOverflow(by: v)
            guard !overflow, p <= 1 << 32 else { throw fail("shape too large") }
            shape.append(v)
            count = p
        }
        let dataStart = start + headerLength
        guard b.count - dataStart == count * elementSize else {
            throw fail("\(b.count - dataStart) data bytes for shape \(shape) (\(count * elementSize) expected)")
        }
        var values = [Float](repeating: 0, count: count)
        b.withUnsafeBytes { raw in
            for i in 0..<count {
                let off = dataStart + i * elementSize
                if elementSize == 4 {
                    values[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: off, as: UInt32.self)))
                } else {
                    values[i] = Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: off, as: UInt64.self))))
                }
            }
        }
        return Array(shape: shape, values: values)
    }
}
