import Foundation
import VidxBytes

/// A memory-mapped (`MappedFile`), fully validated safetensors file. Views stay valid while
/// the object lives.
///
/// Every tensor's entry is checked when the file is opened (see `SafeTensors.swift` for the
/// format and the rules), so the accessors only check what the caller asks for: presence,
/// dtype and shape. The mapping is private and read-only; the file must not be truncated or
/// rewritten in place while the object lives (replacing it by rename, as `AtomicFile` does,
/// is safe). Immutable after `init`, hence `Sendable`.
public final class SafeTensorsFile: @unchecked Sendable {
    /// The path given to `init`, as used in error messages.
    public let path: String
    /// The header's `__metadata__` object; empty when absent.
    public let metadata: [String: String]
    /// Tensor names, sorted by their UTF-8 bytes.
    public var names: [String] { sortedNames }

    private let sortedNames: [String]
    private let tensors: [String: TensorInfo]
    /// The whole file, as mapped (or copied); owns the bytes the views point into.
    private let file: MappedFile
    /// The data section, within `file.bytes`.
    private let data: UnsafeRawBufferPointer

    /// Maps the file at `path` (PROT_READ, MAP_PRIVATE) and validates its header and every
    /// tensor's entry before returning.
    /// - Parameters:
    ///   - path: the file.
    ///   - maxHeaderBytes: the largest header length accepted; checked before anything is
    ///     parsed, so a corrupt length field cannot make the reader allocate or scan much.
    /// - Throws: `SafeTensorsError` with kind `unreadable`, `truncated`, `headerTooLarge`,
    ///   `badHeaderJSON`, `badEntry`, `unknownDType`, `sizeMismatch`, `outOfBounds` or
    ///   `overlapping`, naming the file and, where there is one, the tensor.
    public convenience init(path: String, maxHeaderBytes: Int = 100 << 20) throws {
        // Opened without blocking and refused unless regular: a FIFO would block here.
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch {
            throw SafeTensorsError(.unreadable, path: path, error.message)
        }
        try self.init(file: file, path: path, maxHeaderBytes: maxHeaderBytes)
    }

    /// Copies `bytes` into memory of its own and validates them as a whole file: for tests
    /// and fuzzing. `path` only names the bytes in errors.
    /// - Throws: `SafeTensorsError` as `init(path:maxHeaderBytes:)`, never `unreadable`.
    public convenience init(copying bytes: UnsafeRawBufferPointer, path: String = "<memory>",
                            maxHeaderBytes: Int = 100 << 20) throws {
        try self.init(file: MappedFile(copying: bytes), path: path, maxHeaderBytes: maxHeaderBytes)
    }

    private init(file: MappedFile, path: String, maxHeaderBytes: Int) throws {
        precondition(maxHeaderBytes >= 0, "maxHeaderBytes must not be negative")
        self.path = path
        let header = try SafeTensorsHeader(parsing: file.bytes, path: path, maxHeaderBytes: maxHeaderBytes)
        self.file = file
        self.data = UnsafeRawBufferPointer(rebasing: file.bytes[header.dataStart...])
        self.metadata = header.metadata
        self.tensors = header.tensors
        self.sortedNames = header.tensors.keys.sorted(by: utf8Precedes)
    }

    /// Drops the mapping's pages from this process's resident set
    /// (`MappedFile.releaseResidentPages`, `madvise(MADV_DONTNEED)`).
    ///
    /// The mapping is read-only and private, so nothing is lost: a later read faults the
    /// pages back in from the page cache. Stages that stream through a large file call this
    /// after each chunk so their resident memory stays near one chunk, not the whole file.
    /// Views handed out earlier stay valid.
    public func releaseResidentPages() {
        file.releaseResidentPages()
    }

    /// The entry of tensor `name`, or nil if the file has none.
    public func info(_ name: String) -> TensorInfo? { tensors[name] }

    /// The raw little-endian bytes of tensor `name`, a view into the mapping that stays valid
    /// while this object lives.
    ///
    /// The view is aligned to the element size only if the writer placed it so (the data
    /// section starts 8-aligned in files from `SafeTensorsWriter` and the HF library, and
    /// the HF library orders tensors by alignment; `SafeTensorsWriter` orders them by name).
    /// Use `loadUnaligned`, or `floats`/`uint8s`, rather than `bindMemory` on arbitrary files.
    /// - Throws: `SafeTensorsError` `missingTensor`.
    public func bytes(_ name: String) throws -> UnsafeRawBufferPointer {
        let info = try lookUp(name)
        return UnsafeRawBufferPointer(rebasing: data[info.byteRange])
    }

    /// A copy of F32 tensor `name`'s elements, row-major.
    /// - Parameter shape: when given, the shape the tensor must have.
    /// - Throws: `SafeTensorsError` `missingTensor`, `wrongDType` (not F32) or `wrongShape`.
    public func floats(_ name: String, shape: [Int]? = nil) throws -> [Float] {
        let (info, raw) = try checked(name, dtype: .f32, shape: shape)
        let count = info.elementCount
        return [Float](unsafeUninitializedCapacity: count) { out, initialized in
            #if _endian(little)
            if count > 0 { UnsafeMutableRawBufferPointer(out).copyMemory(from: raw) }
            #else
            for i in 0..<count {
                out[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
            }
            #endif
            initialized = count
        }
    }

    /// A copy of U8 tensor `name`'s elements, row-major.
    /// - Parameter shape: when given, the shape the tensor must have.
    /// - Throws: `SafeTensorsError` `missingTensor`, `wrongDType` (not U8) or `wrongShape`.
    public func uint8s(_ name: String, shape: [Int]? = nil) throws -> [UInt8] {
        let (_, raw) = try checked(name, dtype: .u8, shape: shape)
        return Array(raw)
    }

    private func lookUp(_ name: String) throws -> TensorInfo {
        guard let info = tensors[name] else {
            throw SafeTensorsError(.missingTensor, path: path, tensor: name,
                                   "no such tensor in this file (it has \(tensors.count) tensors)")
        }
        return info
    }

    private func checked(_ name: String, dtype: TensorDType, shape: [Int]?) throws -> (TensorInfo, UnsafeRawBufferPointer) {
        let info = try lookUp(name)
        guard info.dtype == dtype else {
            throw SafeTensorsError(.wrongDType, path: path, tensor: name,
                                   "is \(info.dtype.rawValue), expected \(dtype.rawValue)")
        }
        if let shape, shape != info.shape {
            throw SafeTensorsError(.wrongShape, path: path, tensor: name,
                                   "has shape \(info.shape), expected \(shape)")
        }
        return (info, UnsafeRawBufferPointer(rebasing: data[info.byteRange]))
    }

}

/// A safetensors header, parsed and validated against the bytes of a whole file.
/// Separate from the mapping so that it can be exercised on any buffer (fuzzing).
struct SafeTensorsHeader {
    var metadata: [String: String] = [:]
    var tensors: [String: TensorInfo] = [:]
    /// Where the data section starts in the file: 8 + header length.
    var dataStart = 0

    /// - Throws: `SafeTensorsError` (any of the kinds the file reader documents but
    ///   `unreadable`).
    init(parsing file: UnsafeRawBufferPointer, path: String, maxHeaderBytes: Int) throws {
        func fail(_ kind: SafeTensorsError.Kind, _ tensor: String?, _ message: String) -> SafeTensorsError {
            SafeTensorsError(kind, path: path, tensor: tensor, message)
        }
        var cursor = ByteCursor(file)
        guard let headerLength = try? cursor.readUInt64LE() else {
            throw fail(.truncated, nil, "file is \(file.count) bytes, shorter than the 8-byte header length field")
        }
        // Compare as UInt64 first: the field may not fit an Int.
        guard headerLength <= UInt64(maxHeaderBytes) else {
            throw fail(.headerTooLarge, nil, "header length field says \(headerLength) bytes, over the limit of \(maxHeaderBytes): corrupt, or not a safetensors file")
        }
        guard let headerBytes = try? cursor.take(headerLength) else {
            throw fail(.truncated, nil, "header length field says \(headerLength) bytes but only \(cursor.remaining) follow it: file truncated")
        }
        dataStart = cursor.offset
        let dataCount = cursor.remaining

        // JSONSerialization also accepts UTF-16 and UTF-32; the format is UTF-8 only. A NUL
        // byte cannot occur in UTF-8 JSON text, and rejecting it rules out the
        // BOM-less UTF-16/32 that JSONSerialization would otherwise detect.
        if let bad = UTF8Validation.firstInvalidOffset(headerBytes) {
            throw fail(.badHeaderJSON, nil, "header is not valid UTF-8 (at header byte \(bad))")
        }
        if let nul = headerBytes.firstIndex(of: 0) {
            throw fail(.badHeaderJSON, nil, "header contains a NUL byte (at header byte \(nul))")
        }
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(headerBytes), options: [])
        } catch {
            let detail = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String ?? "\(error)"
            throw fail(.badHeaderJSON, nil, "header is not valid JSON: \(detail)")
        }
        guard let object = json as? [String: Any] else {
            throw fail(.badHeaderJSON, nil, "header JSON is \(jsonTypeName(json)), expected an object")
        }

        var infos: [TensorInfo] = []
        infos.reserveCapacity(object.count)
        // Sorted, so that a file with several defects always reports the same one.
        for name in object.keys.sorted(by: utf8Precedes) {
            guard let value = object[name] else { continue }
            if name == "__metadata__" {
                metadata = try Self.metadata(value, fail: fail)
                continue
            }
            let info = try Self.tensor(name, value, dataCount: dataCount, fail: fail)
            infos.append(info)
            tensors[name] = info
        }

        // Overlaps: sweep the non-empty ranges in order of their start; an empty range
        // (a zero-element tensor) shares no bytes with anything.
        let ranged = infos.filter { !$0.byteRange.isEmpty }.sorted { a, b in
            if a.byteRange.lowerBound != b.byteRange.lowerBound { return a.byteRange.lowerBound < b.byteRange.lowerBound }
            if a.byteRange.upperBound != b.byteRange.upperBound { return a.byteRange.upperBound < b.byteRange.upperBound }
            return utf8Precedes(a.name, b.name)
        }
        var furthest: TensorInfo?
        for info in ranged {
            if let previous = furthest, info.byteRange.lowerBound < previous.byteRange.upperBound {
                throw fail(.overlapping, info.name,
                           "data_offsets \(offsetsText(info.byteRange)) overlap those of tensor '\(previous.name)' \(offsetsText(previous.byteRange))")
            }
            if furthest.map({ info.byteRange.upperBound > $0.byteRange.upperBound }) ?? true { furthest = info }
        }
        // As the format (and the HF library) requires: the tensors cover the data section
        // exactly, back to back, with no gap and nothing after the last one.
        var covered = 0
        for info in ranged {
            guard info.byteRange.lowerBound == covered else {
                throw fail(.unusedBytes, info.name,
                           "data_offsets \(offsetsText(info.byteRange)) leave bytes [\(covered), \(info.byteRange.lowerBound)] of the data section unused")
            }
            covered = info.byteRange.upperBound
        }
        guard covered == dataCount else {
            throw fail(.unusedBytes, nil,
                       "the tensors end at byte \(covered) of the data section, but it holds \(dataCount) bytes: trailing bytes after the last tensor (corrupt or appended to)")
        }
    }

    private typealias Fail = (SafeTensorsError.Kind, String?, String) -> SafeTensorsError

    private static func metadata(_ value: Any, fail: Fail) throws -> [String: String] {
        let name = "__metadata__"
        guard let object = value as? [String: Any] else {
            throw fail(.badHeaderJSON, name, "must be an object of strings, found \(jsonTypeName(value))")
        }
        var out: [String: String] = [:]
        for key in object.keys.sorted(by: utf8Precedes) {
            guard let text = object[key] as? String else {
                throw fail(.badHeaderJSON, name, "value of key '\(key)' must be a string, found \(jsonTypeName(object[key] as Any))")
            }
            out[key] = text
        }
        return out
    }

    private static func tensor(_ name: String, _ value: Any, dataCount: Int, fail: Fail) throws -> TensorInfo {
        guard let entry = value as? [String: Any] else {
            throw fail(.badEntry, name, "entry must be an object, found \(jsonTypeName(value))")
        }
        guard let dtypeValue = entry["dtype"] else { throw fail(.badEntry, name, "entry has no 'dtype'") }
        guard let dtypeName = dtypeValue as? String else {
            throw fail(.badEntry, name, "'dtype' must be a string, found \(jsonTypeName(dtypeValue))")
        }
        guard let shapeValue = entry["shape"] else { throw fail(.badEntry, name, "entry has no 'shape'") }
        guard let shapeArray = shapeValue as? [Any] else {
            throw fail(.badEntry, name, "'shape' must be an array of integers, found \(jsonTypeName(shapeValue))")
        }
        var shape: [Int] = []
        shape.reserveCapacity(shapeArray.count)
        for (i, dim) in shapeArray.enumerated() {
            switch JSONInteger(dim) {
            case .value(let v): shape.append(v)
            case .negative: throw fail(.badEntry, name, "'shape' dim \(i) is negative (\(dim))")
            case .tooLarge: throw fail(.badEntry, name, "'shape' dim \(i) is too large (\(dim))")
            case .notInteger: throw fail(.badEntry, name, "'shape' dim \(i) must be an integer of at most 2^63 - 1, found \(jsonValueText(dim))")
            }
        }
        guard let offsetsValue = entry["data_offsets"] else { throw fail(.badEntry, name, "entry has no 'data_offsets'") }
        guard let offsets = offsetsValue as? [Any], offsets.count == 2 else {
            throw fail(.badEntry, name, "'data_offsets' must be an array of two integers [begin, end], found \(jsonTypeName(offsetsValue))")
        }
        var bounds: [Int] = []
        for (label, offset) in zip(["begin", "end"], offsets) {
            switch JSONInteger(offset) {
            case .value(let v): bounds.append(v)
            case .negative: throw fail(.badEntry, name, "'data_offsets' \(label) is negative (\(offset))")
            case .tooLarge: throw fail(.outOfBounds, name, "'data_offsets' \(label) \(offset) is beyond the data section of \(dataCount) bytes")
            case .notInteger: throw fail(.badEntry, name, "'data_offsets' \(label) must be an integer of at most 2^63 - 1, found \(jsonValueText(offset))")
            }
        }
        let begin = bounds[0], end = bounds[1]
        guard begin <= end else {
            throw fail(.badEntry, name, "'data_offsets' begin \(begin) is after end \(end)")
        }
        guard let dtype = TensorDType(rawValue: dtypeName) else {
            throw fail(.unknownDType, name, "dtype '\(dtypeName)' is not supported (supported: \(TensorDType.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        // product(shape) x byteSize, overflow-checked; a zero dim makes it 0 whatever the others.
        guard let byteCount = Checked.byteCount(shape: shape, elementSize: dtype.byteSize) else {
            throw fail(.sizeMismatch, name, "shape \(shape) x \(dtype.rawValue) (\(dtype.byteSize)-byte elements) overflows the byte count; data_offsets span \(end - begin) bytes")
        }
        guard byteCount == end - begin else {
            throw fail(.sizeMismatch, name, "shape \(shape) x \(dtype.rawValue) (\(dtype.byteSize)-byte elements) is \(byteCount) bytes, but data_offsets [\(begin), \(end)] span \(end - begin)")
        }
        guard end <= dataCount else {
            throw fail(.outOfBounds, name, "data_offsets [\(begin), \(end)] end beyond the data section of \(dataCount) bytes (file truncated, or offsets corrupt)")
        }
        return TensorInfo(name: name, dtype: dtype, shape: shape, byteRange: begin..<end)
    }
}

/// A JSON number read strictly as an integer: JSONSerialization hands back NSNumbers whose
/// type tells integers ("q", "Q", ...) from doubles ("d", also for 1.0, 1e3 and integers too
/// large for 64 bits) and booleans ("c").
private enum JSONInteger {
    case value(Int), negative, tooLarge, notInteger

    init(_ value: Any) {
        guard let number = value as? NSNumber else { self = .notInteger; return }
        switch String(cString: number.objCType) {
        case "q", "l", "i", "s":
            let v = number.int64Value
            self = v < 0 ? .negative : Int(exactly: v).map(JSONInteger.value) ?? .tooLarge
        case "Q", "L", "I", "S", "C":
            self = Int(exactly: number.uint64Value).map(JSONInteger.value) ?? .tooLarge
        default:
            self = .notInteger
        }
    }
}

private func jsonTypeName(_ value: Any) -> String {
    switch value {
    case is String: return "a string"
    case is [Any]: return "an array"
    case is [String: Any]: return "an object"
    case is NSNull: return "null"
    case let n as NSNumber: return String(cString: n.objCType) == "c" ? "a boolean" : "a number"
    default: return "\(type(of: value))"
    }
}

/// A JSON value for a message: "the number 2.5", "true", "a string".
private func jsonValueText(_ value: Any) -> String {
    if let n = value as? NSNumber {
        return String(cString: n.objCType) == "c" ? (n.boolValue ? "true" : "false") : "the number \(n)"
    }
    return jsonTypeName(value)
}

private func offsetsText(_ range: Range<Int>) -> String { "[\(range.lowerBound), \(range.upperBound)]" }

/// Orders strings by their UTF-8 bytes (Python's `sorted`), not by Swift's Unicode-aware `<`.
func utf8Precedes(_ a: String, _ b: String) -> Bool {
    a.utf8.lexicographicallyPrecedes(b.utf8)
}
