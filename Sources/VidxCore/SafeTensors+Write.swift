import Foundation

/// Builds a safetensors file in memory and writes it atomically.
///
/// Output is deterministic: the same tensors and metadata give the same bytes whatever the
/// order of the `add` calls (layout rules in `SafeTensors.swift`: "__metadata__" first,
/// then tensors sorted by the UTF-8 bytes of their names, laid out back to back in that
/// order; data section 8-aligned). Note that tensors are not aligned to their element size
/// within the data section.
public struct SafeTensorsWriter: Sendable {
    private struct Entry: Sendable {
        let dtype: TensorDType
        let shape: [Int]
        let bytes: [UInt8]
    }

    /// Written as the header's "__metadata__" object; omitted when empty.
    public var metadata: [String: String]
    private var entries: [String: Entry] = [:]

    public init(metadata: [String: String] = [:]) {
        self.metadata = metadata
    }

    /// Adds an F32 tensor.
    /// - Parameters:
    ///   - floats: the elements, row-major; `floats.count` must equal the product of `shape`.
    ///   - shape: dimensions, outermost first; `[]` for a scalar.
    /// - Precondition: `name` is new and not "__metadata__"; dims are not negative.
    public mutating func add(_ name: String, floats: [Float], shape: [Int]) {
        #if _endian(little)
        let bytes = floats.withUnsafeBytes { Array($0) }
        #else
        var bytes: [UInt8] = []
        bytes.reserveCapacity(floats.count * 4)
        for f in floats { withUnsafeBytes(of: f.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
        #endif
        add(name, dtype: .f32, shape: shape, bytes: bytes)
    }

    /// Adds a U8 tensor. See `add(_:floats:shape:)`.
    public mutating func add(_ name: String, uint8s: [UInt8], shape: [Int]) {
        add(name, dtype: .u8, shape: shape, bytes: uint8s)
    }

    /// Adds a tensor of any dtype from its raw little-endian, row-major bytes.
    /// - Precondition: `name` is new and not "__metadata__"; dims are not negative;
    ///   `bytes.count` equals product(shape) x `dtype.byteSize`.
    public mutating func add(_ name: String, dtype: TensorDType, shape: [Int], bytes: [UInt8]) {
        precondition(name != "__metadata__", "'__metadata__' is reserved and cannot name a tensor")
        precondition(entries[name] == nil, "tensor '\(name)' added twice")
        precondition(shape.allSatisfy { $0 >= 0 }, "tensor '\(name)': negative dim in shape \(shape)")
        var expected = shape.contains(0) ? 0 : dtype.byteSize
        for dim in shape where expected > 0 {
            let (product, overflow) = expected.multipliedReportingOverflow(by: dim)
            precondition(!overflow, "tensor '\(name)': shape \(shape) overflows")
            expected = product
        }
        precondition(bytes.count == expected,
                     "tensor '\(name)': \(bytes.count) bytes given, shape \(shape) x \(dtype.rawValue) needs \(expected)")
        entries[name] = Entry(dtype: dtype, shape: shape, bytes: bytes)
    }

    /// The whole file: length field, header, data.
    public func serialized() -> [UInt8] {
        let names = entries.keys.sorted(by: utf8Precedes)
        var json: [UInt8] = []
        json.append(UInt8(ascii: "{"))
        var first = true
        func separator() {
            if !first { json.append(UInt8(ascii: ",")) }
            first = false
        }
        if !metadata.isEmpty {
            separator()
            appendJSONString("__metadata__", to: &json)
            json.append(contentsOf: Array(":{".utf8))
            for (i, key) in metadata.keys.sorted(by: utf8Precedes).enumerated() {
                if i > 0 { json.append(UInt8(ascii: ",")) }
                appendJSONString(key, to: &json)
                json.append(UInt8(ascii: ":"))
                appendJSONString(metadata[key] ?? "", to: &json)
            }
            json.append(UInt8(ascii: "}"))
        }
        var offset = 0
        for name in names {
            guard let e = entries[name] else { continue }
            let end = offset + e.bytes.count
            separator()
            appendJSONString(name, to: &json)
            json.append(contentsOf: Array(#":{"dtype":"\#(e.dtype.rawValue)","shape":\#(jsonIntegers(e.shape)),"data_offsets":\#(jsonIntegers([offset, end]))}"#.utf8))
            offset = end
        }
        json.append(UInt8(ascii: "}"))
        // Spaces so that the data section (at 8 + header length) starts 8-aligned.
        while json.count % 8 != 0 { json.append(UInt8(ascii: " ")) }

        var out: [UInt8] = []
        out.reserveCapacity(8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: json)
        for name in names {
            if let e = entries[name] { out.append(contentsOf: e.bytes) }
        }
        return out
    }

    /// Writes `serialized()` to `path` via `AtomicFile` (temporary name, fsync, rename).
    /// - Throws: `FileWriteError`; an existing file at `path` is then left as it was.
    public func write(to path: String) throws {
        try stage(to: path).commit()
    }

    /// Writes `serialized()` to a temporary name beside `path`, fsynced but not yet
    /// visible (`AtomicFile.Staged`), for outputs that must appear together.
    /// - Throws: `FileWriteError`; nothing is left behind.
    public func stage(to path: String) throws -> AtomicFile.Staged {
        let bytes = serialized()
        return try bytes.withUnsafeBytes { try AtomicFile.stage($0, to: path) }
    }
}

private func jsonIntegers(_ values: [Int]) -> String {
    "[" + values.map(String.init).joined(separator: ",") + "]"
}

/// Appends `text` as a JSON string: quotes, backslashes and control characters escaped,
/// everything else as raw UTF-8.
private func appendJSONString(_ text: String, to out: inout [UInt8]) {
    let hex = Array("0123456789abcdef".utf8)
    out.append(UInt8(ascii: "\""))
    for byte in text.utf8 {
        switch byte {
        case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
        case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
        case 0x0A: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
        case 0x0D: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
        case 0x09: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
        case 0..<0x20:
            out.append(contentsOf: Array("\\u00".utf8))
            out.append(hex[Int(byte >> 4)])
            out.append(hex[Int(byte & 0xF)])
        default: out.append(byte)
        }
    }
    out.append(UInt8(ascii: "\""))
}
