import Foundation
import Testing
import VidxCore
import VidxTestSupport
import VidxVision

/// One defect applied to the valid small network (make_cnn_test_net.py, seed 3), and the
/// error it must give. The small net's layers: 0 stem 3 -> 12 k3 s2; 1 dw 12 (saves id 0);
/// 2 12 -> 12 (adds 0); 3 12 -> 36; 4 dw 36 k5 s2; 5 36 -> 20; 6 20 -> 60 (saves 1); 7 dw 60;
/// 8 60 -> 20 (adds 1); 9 20 -> 24 k3; 10 24 -> 28 1x1 s2; 11 dw 28 k3 s2; 12 28 -> 28
/// (saves and adds 2); 13 28 -> 40; pool; classifier 40 -> 10.
struct Defect: Sendable, CustomTestStringConvertible {
    let name: String
    let kind: ConvNetError.Kind
    let layer: Int?
    /// Text the message must contain (e.g. both shapes).
    let mentions: [String]
    let edit: @Sendable (inout EditableNet) -> Void

    var testDescription: String { name }

    static func conv(_ net: inout EditableNet, _ i: Int, _ key: String, _ value: Any?) {
        net.architecture[i][key] = value
    }

    static let all: [Defect] = [
        Defect(name: "missing conv weight", kind: .missingTensor, layer: 3, mentions: ["layers.3.weight"]) {
            $0.tensors["layers.3.weight"] = nil
        },
        Defect(name: "missing classifier bias", kind: .missingTensor, layer: nil, mentions: ["classifier.bias"]) {
            $0.tensors["classifier.bias"] = nil
        },
        Defect(name: "depthwise kernel 3 instead of 5", kind: .wrongTensor, layer: 4,
               mentions: ["layers.4.weight", "[36, 1, 3, 3]", "[36, 1, 5, 5]"]) {
            $0.tensors["layers.4.weight"] = ([36, 1, 3, 3], [Float](repeating: 0.1, count: 36 * 9))
        },
        Defect(name: "transposed 1x1 weight", kind: .wrongTensor, layer: 5, mentions: ["[36, 20, 1, 1]", "[20, 36, 1, 1]"]) {
            $0.tensors["layers.5.weight"]!.shape = [36, 20, 1, 1]
        },
        Defect(name: "bias too long", kind: .wrongTensor, layer: 9, mentions: ["layers.9.bias", "[25]", "[24]"]) {
            $0.tensors["layers.9.bias"] = ([25], [Float](repeating: 0, count: 25))
        },
        Defect(name: "F64 bias", kind: .wrongTensor, layer: 0, mentions: ["layers.0.bias", "F64"]) {
            $0.tensors["layers.0.bias"] = nil
            $0.raw["layers.0.bias"] = (.f64, [12], [UInt8](repeating: 0, count: 12 * 8))
        },
        Defect(name: "classifier of the wrong width", kind: .wrongTensor, layer: nil, mentions: ["[10, 39]", "[10, 40]"]) {
            $0.tensors["classifier.weight"] = ([10, 39], [Float](repeating: 0, count: 390))
        },
        Defect(name: "broken channel chain", kind: .badArchitecture, layer: 5, mentions: ["'in' is 30", "36 channels"]) {
            conv(&$0, 5, "in", 30)
        },
        Defect(name: "unknown layer kind", kind: .unsupportedLayer, layer: nil, mentions: ["max_pool"]) {
            $0.architecture.insert(["kind": "max_pool"], at: 14)
        },
        Defect(name: "unknown activation", kind: .unsupportedLayer, layer: 3, mentions: ["swish"]) {
            conv(&$0, 3, "activation", "swish")
        },
        Defect(name: "grouped convolution", kind: .unsupportedLayer, layer: 3, mentions: ["groups 2"]) {
            conv(&$0, 3, "groups", 2)
        },
        Defect(name: "add of an id never saved", kind: .badArchitecture, layer: 8, mentions: ["id 7"]) {
            conv(&$0, 8, "add_saved", 7)
        },
        Defect(name: "saved input never added", kind: .badArchitecture, layer: 6, mentions: ["id 1", "no later layer"]) {
            conv(&$0, 8, "add_saved", nil)
        },
        Defect(name: "residual of another shape", kind: .badArchitecture, layer: 12,
               mentions: ["6 x 6 x 28", "3 x 3 x 28", "layer 11"]) {
            conv(&$0, 11, "save_input_as", 5)
            conv(&$0, 12, "save_input_as", nil)
            conv(&$0, 12, "add_saved", 5)
        },
        Defect(name: "id saved again before it is added", kind: .badArchitecture, layer: 7, mentions: ["id 1", "layer 6"]) {
            conv(&$0, 7, "save_input_as", 1)
        },
        Defect(name: "layers out of order", kind: .badArchitecture, layer: 2, mentions: ["index 3"]) {
            $0.architecture.swapAt(2, 3)
        },
        Defect(name: "no global_average_pool", kind: .badArchitecture, layer: nil, mentions: ["linear must come"]) {
            $0.architecture.remove(at: 14)
        },
        Defect(name: "no classifier", kind: .badArchitecture, layer: nil, mentions: ["stops early"]) {
            $0.architecture.removeLast()
        },
        Defect(name: "conv after the pool", kind: .badArchitecture, layer: nil, mentions: ["after the global_average_pool"]) {
            $0.architecture.swapAt(13, 14)
        },
        Defect(name: "not a CNN file", kind: .notConvNet, layer: nil, mentions: ["vidx-hcq"]) {
            $0.metadata["format"] = "vidx-hcq"
        },
        Defect(name: "newer format version", kind: .unsupportedVersion, layer: nil, mentions: ["format_version 2", "upgrade"]) {
            $0.metadata["format_version"] = "2"
        },
        Defect(name: "unknown input layout", kind: .badInput, layer: nil, mentions: ["YUV"]) {
            $0.metadata["input"] = #"{"size":48,"mean":[127,127,127],"scale":[128,128,128],"layout":"YUV"}"#
        },
        Defect(name: "zero scale", kind: .badInput, layer: nil, mentions: ["scale"]) {
            $0.metadata["input"] = #"{"size":48,"mean":[127,127,127],"scale":[128,0,128],"layout":"RGB"}"#
        },
        Defect(name: "kernel larger than its padded input", kind: .badArchitecture, layer: 4, mentions: ["1 x 1 input"]) {
            $0.metadata["input"] = #"{"size":2,"mean":[127,127,127],"scale":[128,128,128],"layout":"RGB"}"#
        },
        Defect(name: "fractional kernel", kind: .badArchitecture, layer: 0, mentions: ["'kernel'"]) {
            conv(&$0, 0, "kernel", 3.5)
        },
        Defect(name: "kernel as a string", kind: .badArchitecture, layer: 0, mentions: ["'kernel'"]) {
            conv(&$0, 0, "kernel", "3")
        },
        Defect(name: "pad as large as the kernel", kind: .badArchitecture, layer: 0, mentions: ["[3, 0, 0, 0]"]) {
            conv(&$0, 0, "pad", [3, 0, 0, 0])
        },
        Defect(name: "three pads", kind: .badArchitecture, layer: 0, mentions: ["'pad'"]) {
            conv(&$0, 0, "pad", [0, 1, 0])
        },
    ]
}

extension VisionTests {
    @Suite("Strict loading: a valid file with one defect gives the specific error")
    struct Loading {
        static func write(_ net: EditableNet, _ name: String) throws -> String {
            let dir = TestNets.directory + "/defects"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let path = dir + "/" + name.replacingOccurrences(of: " ", with: "-") + ".safetensors"
            try net.write(to: path)
            return path
        }

        @Test("one defect, one error", arguments: Defect.all)
        func defect(_ defect: Defect) throws {
            var net = try EditableNet(path: TestNets.random("small").weights)
            defect.edit(&net)
            let path = try Self.write(net, defect.name)
            do {
                _ = try ConvNet(path: path)
                Issue.record("\(defect.name): loaded without error")
            } catch let error as ConvNetError {
                #expect(error.kind == defect.kind, "\(defect.name): \(error)")
                #expect(error.layer == defect.layer, "\(defect.name): \(error)")
                for text in defect.mentions {
                    #expect(error.description.contains(text), "\(defect.name): '\(text)' not in: \(error)")
                }
                #expect(error.path == path)
            }
        }

        @Test("the unedited file round-trips through the defect generator and loads")
        func generatorBaseline() throws {
            let data = try TestNets.random("small")
            let path = try Self.write(try EditableNet(path: data.weights), "baseline")
            let a = try ConvNet(path: path), b = try ConvNet(path: data.weights)
            expectBitIdentical(a.features(data.frames), b.features(data.frames), "rewritten file")
        }

        @Test("unknown architecture fields, metadata keys and extra tensors are ignored (format evolution rules)")
        func ignoresAdditions() throws {
            let data = try TestNets.random("small")
            var net = try EditableNet(path: data.weights)
            for i in net.architecture.indices { net.architecture[i]["future_note"] = "ignored" }
            net.metadata["source"] = "test"
            net.tensors["extra.tensor"] = ([2], [1, 2])
            let path = try Self.write(net, "additions")
            let loaded = try ConvNet(path: path), original = try ConvNet(path: data.weights)
            expectBitIdentical(loaded.featuresAndLogits(data.frames).logits, original.featuresAndLogits(data.frames).logits,
                               "with additions")
        }

        @Test("a truncated file is refused as unreadable, with the container's error as the cause")
        func truncated() throws {
            let data = try TestNets.random("small")
            let bytes = try Data(contentsOf: URL(fileURLWithPath: data.weights))
            let path = TestNets.directory + "/truncated.safetensors"
            try bytes.prefix(bytes.count - 100).write(to: URL(fileURLWithPath: path))
            #expect {
                _ = try ConvNet(path: path)
            } throws: { error in
                guard let e = error as? ConvNetError else { return false }
                return e.kind == .unreadable && e.cause?.kind == .outOfBounds
            }
            #expect(throws: ConvNetError.self) { _ = try ConvNet(path: TestNets.directory + "/no-such-file") }
        }
    }
}
