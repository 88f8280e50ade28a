// Safetensors files: the types shared by the reader (SafeTensors+Read.swift) and the
// writer (SafeTensors+Write.swift).
//
// The format (Hugging Face safetensors), byte by byte:
//
//   offset 0      UInt64, little-endian: N, the header's length in bytes.
//   offset 8      N bytes of UTF-8 JSON: one object. Each key is a tensor name mapping to
//                   {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}
//                 with begin and end relative to the start of the data section; the
//                 optional key "__metadata__" maps to an object of string -> string.
//                 Writers may pad the JSON with trailing spaces (0x20).
//   offset 8 + N  the data section: each tensor's elements, little-endian, row-major
//                 (C order), in bytes [begin, end) of the section.
//
// What this implementation adds to the format's own rules:
// - Reader: every tensor is checked before `SafeTensorsFile.init` returns (JSON types,
//   integer offsets and dims, known dtype, size = product(shape) x dtype size, within the
//   data section, no two non-empty tensors overlapping). As the HF library, it also
//   requires the tensors to cover the data section exactly: no gap between them, no byte
//   after the last one (`unusedBytes`).
//   Only the dtypes in `TensorDType` are accepted: a file with any other (U16, F8_E4M3,
//   ...) is refused with `unknownDType`.
// - Writer: deterministic bytes. "__metadata__" comes first (omitted when empty), then the
//   tensors; metadata keys and tensor names are sorted by their UTF-8 bytes (Python's
//   `sorted` order); each entry's fields are in the HF order dtype, shape, data_offsets;
//   no whitespace; the header is padded with spaces so that the data section starts at a
//   multiple of 8 bytes. Tensors are laid out back to back in name order, with no gaps.

/// The element types this package reads and writes, named as in the safetensors header.
public enum TensorDType: String, Sendable, CaseIterable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8", u8 = "U8", bool = "BOOL"

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .f64, .i64: return 8
        case .f32, .i32: return 4
        case .f16, .bf16, .i16: return 2
        case .i8, .u8, .bool: return 1
        }
    }
}

/// One tensor's entry in a validated safetensors header.
public struct TensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: TensorDType
    /// Dimensions, outermost first; empty for a scalar. Elements are row-major.
    public let shape: [Int]
    /// The tensor's bytes within the data section (not the file).
    public let byteRange: Range<Int>

    /// The number of elements: the product of `shape` (1 for a scalar, 0 if any dim is 0).
    /// Cannot overflow: the reader checked that it times `dtype.byteSize` fits the file.
    public var elementCount: Int { shape.reduce(1, *) }
}

/// A safetensors file that cannot be read, or a tensor that is not what the caller asked for.
public struct SafeTensorsError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: String, Sendable {
        /// The file could not be opened, examined or mapped (see the message for errno).
        case unreadable
        /// Shorter than the 8-byte length field, or than the header length it states.
        case truncated
        /// The stated header length exceeds the reader's cap (`maxHeaderBytes`).
        case headerTooLarge
        /// The header is not UTF-8, not JSON, not an object, or `__metadata__` is not an
        /// object of strings.
        case badHeaderJSON
        /// A tensor entry lacks dtype, shape or data_offsets, has wrong JSON types,
        /// non-integer or negative numbers, or begin > end.
        case badEntry
        /// A dtype name this package does not support.
        case unknownDType
        /// product(shape) x dtype size differs from end - begin, or overflows.
        case sizeMismatch
        /// A tensor ends beyond the data section (corrupt offsets or a truncated file).
        case outOfBounds
        /// Two non-empty tensors share bytes.
        case overlapping
        /// Bytes of the data section that no tensor covers: a gap between tensors, or
        /// trailing bytes after the last one.
        case unusedBytes
        /// The caller asked for a tensor the file does not have.
        case missingTensor
        /// The caller asked for a dtype the tensor does not have.
        case wrongDType
        /// The caller asked for a shape the tensor does not have.
        case wrongShape
    }

    public let kind: Kind
    /// The file, as given to the reader.
    public let path: String
    /// The tensor concerned, if any ("__metadata__" for metadata problems).
    public let tensor: String?
    /// What is wrong, and where useful what to do.
    public let message: String

    init(_ kind: Kind, path: String, tensor: String? = nil, _ message: String) {
        self.kind = kind
        self.path = path
        self.tensor = tensor
        self.message = message
    }

    /// "path: tensor 'name': message", or "path: message" when no tensor is concerned.
    public var description: String {
        if let tensor { return "\(path): tensor '\(tensor)': \(message)" }
        return "\(path): \(message)"
    }
}
