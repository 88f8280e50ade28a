import Foundation
import Testing
import VidxTestSupport
@testable import VidxCore

/// Helpers shared by the safetensors and hashing tests.
enum TensorTestSupport {
    /// A fresh directory per call, removed when the test process exits.
    static func makeDirectory(_ label: String) -> String { makeTestDirectory(label) }

    static func write(_ bytes: [UInt8], to path: String) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    static func read(_ path: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// Runs `python3 -c script args...`; returns stdout, or throws with its stderr.
    static func python(_ script: String, _ args: [String]) throws -> String {
        try Python.run(["-c", script] + args)
    }
}

private func littleEndianBytes<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
    values.flatMap { v in withUnsafeBytes(of: v.littleEndian) { Array($0) } }
}

/// Expects `body` to throw a `SafeTensorsError` of `kind` that names `path` and, when given,
/// `tensor` (in `tensor` and in the description).
@discardableResult
private func expectSafeTensorsError(_ kind: SafeTensorsError.Kind, path: String, tensor: String? = nil,
                                    _ comment: String = "", sourceLocation: SourceLocation = #_sourceLocation,
                                    _ body: () throws -> Void) -> SafeTensorsError? {
    do {
        try body()
        Issue.record("expected \(kind), but no error was thrown \(comment)", sourceLocation: sourceLocation)
        return nil
    } catch let e as SafeTensorsError {
        #expect(e.kind == kind, "\(comment): \(e)", sourceLocation: sourceLocation)
        #expect(e.path == path && e.description.contains(path), "\(comment): \(e)", sourceLocation: sourceLocation)
        if let tensor {
            #expect(e.tensor == tensor, "\(comment): \(e)", sourceLocation: sourceLocation)
            #expect(e.description.contains("'\(tensor)'"), "\(comment): \(e)", sourceLocation: sourceLocation)
        }
        return e
    } catch {
        Issue.record("\(comment): unexpected error \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

@Suite("Safetensors: writer and reader round trip")
struct SafeTensorsRoundTripTests {
    let dir = TensorTestSupport.makeDirectory("safetensors")

    struct Content {
        let weights: [Float]
        let codes: [UInt8]
        let longs: [Int64]
        let halves: [UInt8]
        let flags: [UInt8]
        let signed: [UInt8]
        let scalar: [UInt8]
        let metadata = ["format": "test", "ünïcode \"quoted\"\n": "välue\t\\ / \u{01}", "empty": ""]

        init() {
            var rng = SeededGenerator(seed: 42)
            weights = (0..<12).map { _ in Float.random(in: -4...4, using: &rng) }
            codes = (0..<10).map { _ in UInt8.random(in: 0...255, using: &rng) }
            longs = [-1, Int64.max, 1 << 40]
            halves = [0x00, 0x3C, 0x00, 0xC0]   // F16 1.0, -2.0
            flags = [1, 0, 1]
            signed = littleEndianBytes([Int8(-128), 127])
            scalar = littleEndianBytes([Double(3.5).bitPattern])
        }

        /// Adds every tensor, in the given order of names.
        func writer(order: [String]) -> SafeTensorsWriter {
            var w = SafeTensorsWriter(metadata: metadata)
            for name in order {
                switch name {
                case "b/weights": w.add(name, floats: weights, shape: [3, 4])
                case "a.codes": w.add(name, uint8s: codes, shape: [2, 5])
                case "c": w.add(name, dtype: .i64, shape: [3], bytes: littleEndianBytes(longs))
                case "half": w.add(name, dtype: .f16, shape: [2], bytes: halves)
                case "empty": w.add(name, floats: [], shape: [0, 4])
                case "flags": w.add(name, dtype: .bool, shape: [3], bytes: flags)
                case "名前": w.add(name, dtype: .i8, shape: [2], bytes: signed)
                case "scalar": w.add(name, dtype: .f64, shape: [], bytes: scalar)
                default: Issue.record("no tensor \(name)")
                }
            }
            return w
        }

        static let names = ["b/weights", "a.codes", "c", "half", "empty", "flags", "名前", "scalar"]
    }

    @Test("several dtypes, a zero-size tensor, a scalar and metadata read back equal")
    func roundTrip() throws {
        let content = Content()
        let path = dir + "/round.safetensors"
        try content.writer(order: Content.names).write(to: path)
        let file = try SafeTensorsFile(path: path)
        #expect(file.path == path)
        #expect(file.names == ["a.codes", "b/weights", "c", "empty", "flags", "half", "scalar", "名前"])
        #expect(file.metadata == content.metadata)
        #expect(try file.floats("b/weights", shape: [3, 4]) == content.weights)
        #expect(try file.uint8s("a.codes", shape: [2, 5]) == content.codes)
        #expect(Array(try file.bytes("c")) == littleEndianBytes(content.longs))
        let longs = try file.bytes("c")
        #expect((0..<3).map { Int64(littleEndian: longs.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) } == content.longs)
        #expect(Array(try file.bytes("half")) == content.halves)
        #expect(Array(try file.bytes("flags")) == content.flags)
        #expect(Array(try file.bytes("名前")) == content.signed)
        #expect(Array(try file.bytes("scalar")) == content.scalar)
        #expect(try file.floats("empty", shape: [0, 4]) == [])
        #expect(try file.bytes("empty").count == 0)

        let empty = try #require(file.info("empty"))
        #expect(empty.elementCount == 0 && empty.byteRange.isEmpty && empty.dtype == .f32)
        let scalar = try #require(file.info("scalar"))
        #expect(scalar.shape == [] && scalar.elementCount == 1 && scalar.dtype == .f64 && scalar.byteRange.count == 8)
        let flags = try #require(file.info("flags"))
        #expect(flags == TensorInfo(name: "flags", dtype: .bool, shape: [3], byteRange: flags.byteRange))
        #expect(file.info("absent") == nil)
        expectSafeTensorsError(.missingTensor, path: path, tensor: "absent") { _ = try file.bytes("absent") }
        expectSafeTensorsError(.missingTensor, path: path, tensor: "absent") { _ = try file.floats("absent") }
    }

    @Test("the same tensors and metadata give the same bytes, whatever the order they were added in")
    func deterministic() throws {
        let content = Content()
        let a = content.writer(order: Content.names)
        let b = content.writer(order: Array(Content.names.reversed()))
        let bytes = a.serialized()
        #expect(bytes == b.serialized())
        try a.write(to: dir + "/a.safetensors")
        try b.write(to: dir + "/b.safetensors")
        #expect(try TensorTestSupport.read(dir + "/a.safetensors") == bytes)
        #expect(try TensorTestSupport.read(dir + "/b.safetensors") == bytes)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["a.safetensors", "b.safetensors"])

        // Layout: the data section starts 8-aligned, the header is padded with spaces,
        // "__metadata__" comes first, tensors sit back to back in name order.
        let n = Int(bytes[0..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
        #expect((8 + n) % 8 == 0)
        let header = String(decoding: bytes[8..<(8 + n)], as: UTF8.self)
        #expect(header.hasPrefix(#"{"__metadata__":{"empty":"","format":"test","#))
        #expect(header.hasSuffix("}") || header.hasSuffix(" "))
        #expect(header.trimmingCharacters(in: CharacterSet(charactersIn: " ")).hasSuffix("}"))
        let file = try SafeTensorsFile(path: dir + "/a.safetensors")
        var end = 0
        for name in file.names {
            let info = try #require(file.info(name))
            #expect(info.byteRange.lowerBound == end, "\(name)")
            end = info.byteRange.upperBound
        }
        #expect(8 + n + end == bytes.count)
    }

    @Test("an empty writer gives a valid file with no tensors and no metadata")
    func emptyFile() throws {
        let bytes = SafeTensorsWriter().serialized()
        #expect(bytes == [8, 0, 0, 0, 0, 0, 0, 0] + Array("{}      ".utf8))
        let path = dir + "/empty.safetensors"
        try SafeTensorsWriter().write(to: path)
        let file = try SafeTensorsFile(path: path)
        #expect(file.names.isEmpty && file.metadata.isEmpty)
    }

    @Test("floats(_:shape:) with the wrong shape names both shapes; uint8s on F32 is wrongDType")
    func wrongShapeAndDType() throws {
        let content = Content()
        let path = dir + "/checks.safetensors"
        try content.writer(order: Content.names).write(to: path)
        let file = try SafeTensorsFile(path: path)
        let e = expectSafeTensorsError(.wrongShape, path: path, tensor: "b/weights") {
            _ = try file.floats("b/weights", shape: [4, 3])
        }
        #expect(e?.message.contains("[3, 4]") == true && e?.message.contains("[4, 3]") == true, "\(String(describing: e))")
        let d = expectSafeTensorsError(.wrongDType, path: path, tensor: "b/weights") { _ = try file.uint8s("b/weights") }
        #expect(d?.message.contains("F32") == true && d?.message.contains("U8") == true)
        expectSafeTensorsError(.wrongDType, path: path, tensor: "a.codes") { _ = try file.floats("a.codes") }
        expectSafeTensorsError(.wrongDType, path: path, tensor: "half") { _ = try file.floats("half", shape: [2]) }
        expectSafeTensorsError(.wrongShape, path: path, tensor: "a.codes") { _ = try file.uint8s("a.codes", shape: [10]) }
    }

    @Test("the file's bytes stay readable while the object lives, also after the file is replaced")
    func replacedWhileOpen() throws {
        let path = dir + "/replaced.safetensors"
        var w = SafeTensorsWriter()
        w.add("x", floats: [1, 2, 3], shape: [3])
        try w.write(to: path)
        let file = try SafeTensorsFile(path: path)
        var v = SafeTensorsWriter()
        v.add("y", uint8s: [9], shape: [1])
        try v.write(to: path)   // a rename: the old inode stays mapped
        #expect(try file.floats("x") == [1, 2, 3])
        #expect(try SafeTensorsFile(path: path).names == ["y"])
    }

    @Test("releasing resident pages loses nothing: tensors read the same afterwards")
    func releaseResidentPages() throws {
        let path = dir + "/release.safetensors"
        var w = SafeTensorsWriter()
        let values = (0..<100_000).map { Float($0) * 0.5 }
        w.add("big", floats: values, shape: [values.count])
        try w.write(to: path)
        let file = try SafeTensorsFile(path: path)
        let view = try file.bytes("big")
        #expect(try file.floats("big") == values)
        file.releaseResidentPages()
        #expect(try file.floats("big") == values)
        #expect(view.loadUnaligned(fromByteOffset: 4 * 99_999, as: Float.self) == values[99_999])
    }

    @Test("an unreadable path is unreadable, naming the path")
    func unreadable() throws {
        expectSafeTensorsError(.unreadable, path: dir + "/nope") { _ = try SafeTensorsFile(path: dir + "/nope") }
        expectSafeTensorsError(.unreadable, path: dir) { _ = try SafeTensorsFile(path: dir) }
    }
}

@Suite("Safetensors: interoperability with Python (json + struct + NumPy, no safetensors package)")
struct SafeTensorsInteropTests {
    let dir = TensorTestSupport.makeDirectory("safetensors-py")

    @Test("a file written by hand in Python reads in Swift")
    func pythonWritesSwiftReads() throws {
        let path = dir + "/from-python.safetensors"
        _ = try TensorTestSupport.python("""
            import json, struct, sys
            import numpy as np
            a = (np.arange(6, dtype='<f4') / 4).reshape(2, 3)
            b = np.array([1, 2, 250, 255], dtype=np.uint8)
            c = np.array([-5, 1 << 40], dtype='<i8')
            e = np.zeros((0, 3), dtype='<f4')
            header, data = {'__metadata__': {'source': 'python'}}, b''
            for name, dtype, arr in [('weights', 'F32', a), ('codes', 'U8', b), ('big', 'I64', c), ('none', 'F32', e)]:
                raw = arr.tobytes()
                header[name] = {'dtype': dtype, 'shape': list(arr.shape), 'data_offsets': [len(data), len(data) + len(raw)]}
                data += raw
            h = json.dumps(header).encode('utf-8')   # default separators: with spaces, unpadded
            open(sys.argv[1], 'wb').write(struct.pack('<Q', len(h)) + h + data)
            """, [path])
        let file = try SafeTensorsFile(path: path)
        #expect(file.metadata == ["source": "python"])
        #expect(file.names == ["big", "codes", "none", "weights"])
        #expect(try file.floats("weights", shape: [2, 3]) == [0, 0.25, 0.5, 0.75, 1, 1.25])
        #expect(try file.uint8s("codes", shape: [4]) == [1, 2, 250, 255])
        let big = try file.bytes("big")
        #expect(file.info("big")?.dtype == .i64)
        #expect((0..<2).map { Int64(littleEndian: big.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) } == [-5, 1 << 40])
        #expect(try file.floats("none", shape: [0, 3]) == [])
    }

    @Test("a file written in Swift parses in Python: JSON header, offsets, values")
    func swiftWritesPythonReads() throws {
        let path = dir + "/from-swift.safetensors"
        var rng = SeededGenerator(seed: 7)
        let weights = (0..<6).map { _ in Float.random(in: -1...1, using: &rng) }
        var w = SafeTensorsWriter(metadata: ["b": "2", "a": "ünï \"q\""])
        w.add("z", floats: weights, shape: [3, 2])
        w.add("codes", uint8s: [7, 8, 9], shape: [3])
        w.add("longs", dtype: .i64, shape: [2], bytes: littleEndianBytes([Int64(-3), 1 << 50]))
        w.add("empty", floats: [], shape: [0])
        try w.write(to: path)
        let output = try TensorTestSupport.python("""
            import json, struct, sys
            import numpy as np
            blob = open(sys.argv[1], 'rb').read()
            (n,) = struct.unpack('<Q', blob[:8])
            assert (8 + n) % 8 == 0, 'data section not 8-aligned'
            header = json.loads(blob[8:8 + n].decode('utf-8'))
            assert list(header)[0] == '__metadata__', list(header)
            meta = header.pop('__metadata__')
            data = blob[8 + n:]
            kinds = {'F32': '<f4', 'U8': 'u1', 'I64': '<i8'}
            out, end = {}, 0
            assert list(header) == sorted(header), list(header)
            for name in sorted(header):
                t = header[name]
                begin, stop = t['data_offsets']
                assert begin == end, (name, begin, end)
                end = stop
                arr = np.frombuffer(data[begin:stop], dtype=kinds[t['dtype']]).reshape(t['shape'])
                out[name] = {'dtype': t['dtype'], 'shape': list(arr.shape), 'values': arr.ravel().tolist()}
            assert end == len(data), (end, len(data))
            print(json.dumps({'metadata': meta, 'tensors': out}))
            """, [path])
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
        #expect(parsed["metadata"] as? [String: String] == ["b": "2", "a": "ünï \"q\""])
        let tensors = try #require(parsed["tensors"] as? [String: [String: Any]])
        #expect(Set(tensors.keys) == ["z", "codes", "longs", "empty"])
        #expect(tensors["z"]?["shape"] as? [Int] == [3, 2])
        #expect((tensors["z"]?["values"] as? [Double])?.map { Float($0) } == weights)
        #expect(tensors["codes"]?["values"] as? [Int] == [7, 8, 9])
        #expect(tensors["longs"]?["values"] as? [Int] == [-3, 1 << 50])
        #expect(tensors["empty"]?["shape"] as? [Int] == [0])
    }
}

/// One defect applied to a valid file, and the error it must give.
struct SafeTensorsDefect: Sendable, CustomStringConvertible {
    let description: String
    let kind: SafeTensorsError.Kind
    let tensor: String?
    let bytes: [UInt8]
    var maxHeaderBytes = 100 << 20
}

/// A valid file built by hand, so that each defect can change exactly one thing, down to
/// the JSON text of a single field.
struct HandBuiltFile {
    struct Entry {
        var name: String
        var dtype: String
        var shape: String
        var offsets: String
        var json: String { #""\#(name)":{"dtype":\#(dtype),"shape":\#(shape),"data_offsets":\#(offsets)}"# }
    }

    var metadata: String? = #"{"format":"test","version":"1"}"#
    /// alpha F32 (2, 3) at [0, 24); beta U8 (4) at [24, 28); gamma I64 (2) at [28, 44).
    var entries = [
        Entry(name: "alpha", dtype: #""F32""#, shape: "[2,3]", offsets: "[0,24]"),
        Entry(name: "beta", dtype: #""U8""#, shape: "[4]", offsets: "[24,28]"),
        Entry(name: "gamma", dtype: #""I64""#, shape: "[2]", offsets: "[28,44]"),
    ]
    var data: [UInt8] = {
        var rng = SeededGenerator(seed: 3)
        return (0..<44).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }()

    var headerText: String {
        "{" + ((metadata.map { [#""__metadata__":\#($0)"#] } ?? []) + entries.map(\.json)).joined(separator: ",") + "}"
    }

    /// The file: length field, header (padded to 8 with spaces), data.
    func bytes(header: [UInt8]? = nil, length: UInt64? = nil) -> [UInt8] {
        var h = header ?? Array(headerText.utf8)
        while h.count % 8 != 0 { h.append(UInt8(ascii: " ")) }
        return littleEndianBytes([length ?? UInt64(h.count)]) + h + data
    }

    func with(_ name: String, _ change: (inout Entry) -> Void) -> HandBuiltFile {
        var copy = self
        for i in copy.entries.indices where copy.entries[i].name == name { change(&copy.entries[i]) }
        return copy
    }

    static let valid = HandBuiltFile()

    static var defects: [SafeTensorsDefect] {
        let v = valid
        let good = v.bytes()
        let headerLength = good.count - v.data.count - 8
        func d(_ what: String, _ kind: SafeTensorsError.Kind, _ tensor: String?, _ bytes: [UInt8]) -> SafeTensorsDefect {
            SafeTensorsDefect(description: what, kind: kind, tensor: tensor, bytes: bytes)
        }
        var out = (0...7).map { d("truncated to \($0) bytes", .truncated, nil, Array(good.prefix($0))) }
        out += [
            d("truncated inside the header", .truncated, nil, Array(good.prefix(8 + headerLength / 2))),
            d("header length huge", .headerTooLarge, nil, v.bytes(length: .max)),
            d("header length just over the default cap", .headerTooLarge, nil, v.bytes(length: (100 << 20) + 1)),
            d("header length beyond the file", .truncated, nil, v.bytes(length: UInt64(good.count - 8 + 1))),
            d("invalid JSON", .badHeaderJSON, nil, v.bytes(header: Array(#"{"alpha":{"dtype":"F32","#.utf8))),
            d("JSON array instead of an object", .badHeaderJSON, nil, v.bytes(header: Array("[1,2,3]".utf8))),
            d("JSON string instead of an object", .badHeaderJSON, nil, v.bytes(header: Array(#""alpha""#.utf8))),
            d("header not UTF-8", .badHeaderJSON, nil,
              v.bytes(header: Array(#"{"__metadata__":{"a":""#.utf8) + [0xFF, 0xFE] + Array(#""}}"#.utf8))),
            d("header with a NUL byte", .badHeaderJSON, nil, v.bytes(header: Array(v.headerText.utf8) + [0])),
            d("header in UTF-16", .badHeaderJSON, nil,
              v.bytes(header: [0xFF, 0xFE] + Array(v.headerText.utf16).flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] })),
            d("empty header", .badHeaderJSON, nil, v.bytes(header: [])),
            d("unknown dtype", .unknownDType, "beta", v.with("beta") { $0.dtype = #""U16""# }.bytes()),
            d("lowercase dtype", .unknownDType, "alpha", v.with("alpha") { $0.dtype = #""f32""# }.bytes()),
            d("dtype not a string", .badEntry, "alpha", v.with("alpha") { $0.dtype = "4" }.bytes()),
            d("shape with a negative dim", .badEntry, "alpha", v.with("alpha") { $0.shape = "[-2,-3]" }.bytes()),
            d("shape with a fractional dim", .badEntry, "alpha", v.with("alpha") { $0.shape = "[2.5,3]" }.bytes()),
            d("shape with a boolean dim", .badEntry, "beta", v.with("beta") { $0.shape = "[true]" }.bytes()),
            d("shape not an array", .badEntry, "alpha", v.with("alpha") { $0.shape = #""2x3""# }.bytes()),
            d("shape dim beyond 64 bits", .badEntry, "alpha", v.with("alpha") { $0.shape = "[2,100000000000000000000000]" }.bytes()),
            d("shape dim beyond 64 bits next to a zero dim", .badEntry, "alpha",
              v.with("alpha") { $0.shape = "[0,100000000000000000000000]"; $0.offsets = "[0,0]" }.bytes()),
            d("shape x dtype size mismatch", .sizeMismatch, "alpha", v.with("alpha") { $0.shape = "[2,4]" }.bytes()),
            d("shape x dtype size overflows", .sizeMismatch, "beta",
              v.with("beta") { $0.shape = "[4294967296,4294967296,4]" }.bytes()),
            d("data_offsets beyond the data section", .outOfBounds, "gamma",
              v.with("gamma") { $0.offsets = "[44,60]" }.bytes()),
            d("data_offsets beyond 64 bits", .outOfBounds, "gamma",
              v.with("gamma") { $0.offsets = "[28,18446744073709551615]" }.bytes()),
            d("data_offsets begin after end", .badEntry, "beta", v.with("beta") { $0.offsets = "[28,24]" }.bytes()),
            d("data_offsets negative", .badEntry, "beta", v.with("beta") { $0.offsets = "[-4,0]" }.bytes()),
            d("data_offsets with one number", .badEntry, "beta", v.with("beta") { $0.offsets = "[24]" }.bytes()),
            d("fractional offset", .badEntry, "beta", v.with("beta") { $0.offsets = "[24,28.5]" }.bytes()),
            d("integral offset written as a float", .badEntry, "beta", v.with("beta") { $0.offsets = "[24,28.0]" }.bytes()),
            d("overlapping tensors", .overlapping, "beta", v.with("beta") { $0.offsets = "[20,24]" }.bytes()),
            d("metadata value not a string", .badHeaderJSON, "__metadata__",
              { var f = v; f.metadata = #"{"format":"test","version":1}"#; return f.bytes() }()),
            d("metadata not an object", .badHeaderJSON, "__metadata__",
              { var f = v; f.metadata = #"["format"]"#; return f.bytes() }()),
            d("entry not an object", .badEntry, "alpha",
              v.bytesReplacing(#"{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}"#, with: "[0,24]")),
            d("entry missing dtype", .badEntry, "alpha", v.bytesReplacing(#""dtype":"F32","#, with: "")),
            d("entry missing shape", .badEntry, "beta", v.bytesReplacing(#""shape":[4],"#, with: "")),
            d("entry missing data_offsets", .badEntry, "gamma", v.bytesReplacing(#","data_offsets":[28,44]"#, with: "")),
            d("data section truncated", .outOfBounds, "gamma", Array(good.dropLast(5))),
            d("bytes after the last tensor", .unusedBytes, nil, good + [0, 0, 0, 0]),
            d("a gap between tensors", .unusedBytes, "gamma",
              { var f = v; f.entries.removeAll { $0.name == "beta" }; return f.bytes() }()),
        ]
        out.append(SafeTensorsDefect(description: "header over a small cap", kind: .headerTooLarge, tensor: nil,
                                     bytes: good, maxHeaderBytes: 16))
        return out
    }

    /// The file with one piece of its header text replaced (which must occur).
    func bytesReplacing(_ text: String, with replacement: String) -> [UInt8] {
        precondition(headerText.contains(text), "'\(text)' not in \(headerText)")
        return bytes(header: Array(headerText.replacingOccurrences(of: text, with: replacement).utf8))
    }
}

@Suite("Safetensors: a valid file with exactly one defect gives its specific error")
struct SafeTensorsDefectTests {
    let dir = TensorTestSupport.makeDirectory("safetensors-defects")

    @Test("the undamaged hand-built file is valid")
    func validBase() throws {
        let path = dir + "/valid.safetensors"
        let v = HandBuiltFile.valid
        try TensorTestSupport.write(v.bytes(), to: path)
        let file = try SafeTensorsFile(path: path)
        #expect(file.names == ["alpha", "beta", "gamma"])
        #expect(file.metadata == ["format": "test", "version": "1"])
        #expect(file.info("gamma") == TensorInfo(name: "gamma", dtype: .i64, shape: [2], byteRange: 28..<44))
        #expect(Array(try file.bytes("beta")) == Array(v.data[24..<28]))
    }

    @Test("zero-element tensors are valid, and share no bytes with anything")
    func zeroElements() throws {
        var f = HandBuiltFile.valid
        f.data = [1, 2, 3, 4]
        let header = #"{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"I64","shape":[3,0],"data_offsets":[2,2]},"c":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"d":{"dtype":"F16","shape":[0,7],"data_offsets":[4,4]}}"#
        let path = dir + "/zero.safetensors"
        try TensorTestSupport.write(f.bytes(header: Array(header.utf8)), to: path)
        let file = try SafeTensorsFile(path: path)
        #expect(file.info("b")?.elementCount == 0)
        #expect(file.info("d")?.byteRange == 4..<4)
        #expect(try file.floats("a", shape: [0]) == [])
        #expect(try file.uint8s("c") == [1, 2, 3, 4])
        #expect(try file.bytes("d").isEmpty)
    }

    @Test("each defect", arguments: HandBuiltFile.defects)
    func defect(_ defect: SafeTensorsDefect) throws {
        let slug = defect.description.replacingOccurrences(of: " ", with: "-")
        let path = dir + "/\(slug).safetensors"
        try TensorTestSupport.write(defect.bytes, to: path)
        let e = expectSafeTensorsError(defect.kind, path: path, tensor: defect.tensor, defect.description) {
            _ = try SafeTensorsFile(path: path, maxHeaderBytes: defect.maxHeaderBytes)
        }
        if defect.kind == .overlapping { #expect(e?.description.contains("'alpha'") == true, "\(String(describing: e))") }
        if defect.tensor == nil { #expect(e?.tensor == nil, "\(String(describing: e))") }
    }
}

@Suite("Safetensors: the header parser on hostile input")
struct SafeTensorsFuzzTests {
    /// Seeded mutations of valid files: the parser must throw a SafeTensorsError or return
    /// a header whose every tensor lies within the data, and never crash.
    @Test("10,000 seeded mutations never crash and never yield out-of-range tensors")
    func mutations() throws {
        var rng = SeededGenerator(seed: 2024)
        var writer = SafeTensorsWriter(metadata: ["k": "v"])
        writer.add("w", floats: [1, 2, 3, 4, 5, 6], shape: [2, 3])
        writer.add("c", uint8s: [1, 2], shape: [2])
        writer.add("e", floats: [], shape: [0])
        let seeds = [writer.serialized(), HandBuiltFile.valid.bytes()]
        let tokens = ["-1", "1.5", "1e3", "true", "null", "\"", "{", "}", "[", "]", ",", ":", "99999999999999999999",
                      "9223372036854775807", "\"F32\"", "\"__metadata__\"", "\u{0}", "\\u0000", "\"data_offsets\""]
        var accepted = 0
        for _ in 0..<10_000 {
            var bytes = seeds[Int.random(in: 0..<seeds.count, using: &rng)]
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                switch Int.random(in: 0..<5, using: &rng) {
                case 0 where !bytes.isEmpty:   // flip a byte
                    bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                case 1:   // truncate
                    bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &rng)))
                case 2 where bytes.count > 8:   // insert a JSON token into the header region
                    let at = Int.random(in: 8..<bytes.count, using: &rng)
                    bytes.insert(contentsOf: Array(tokens[Int.random(in: 0..<tokens.count, using: &rng)].utf8), at: at)
                case 3 where bytes.count >= 8:   // a random length field
                    let n = UInt64.random(in: 0...UInt64(bytes.count + 8), using: &rng)
                    for i in 0..<8 { bytes[i] = UInt8(truncatingIfNeeded: n >> (8 * UInt64(i))) }
                case 4 where bytes.count > 9:   // swap two digits' worth of text
                    let i = Int.random(in: 8..<bytes.count, using: &rng)
                    if (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[i]) {
                        bytes[i] = UInt8(ascii: "0") + UInt8.random(in: 0...9, using: &rng)
                    }
                default: break
                }
            }
            do {
                let header = try bytes.withUnsafeBytes {
                    try SafeTensorsHeader(parsing: $0, path: "fuzz", maxHeaderBytes: 1 << 20)
                }
                accepted += 1
                let dataCount = bytes.count - header.dataStart
                for info in header.tensors.values {
                    #expect(info.byteRange.upperBound <= dataCount)
                    #expect(info.elementCount * info.dtype.byteSize == info.byteRange.count)
                }
            } catch let e as SafeTensorsError {
                #expect(e.path == "fuzz")
            }
        }
        #expect(accepted > 0)
    }
}
