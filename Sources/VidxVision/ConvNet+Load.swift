import Foundation
import VidxCore
import VidxNumerics

/// The network's input, from the `input` metadata.
struct InputSpec: Sendable {
    /// Frames are `size` x `size`.
    var size: Int
    /// Per network input channel.
    var mean: [Float]
    var scale: [Float]
    /// The network's channels are B, G, R (else R, G, B).
    var bgr: Bool

    /// x' = (x - mean[c]) / scale[c] for every 8-bit value x, per network channel c:
    /// (3, 256), row-major.
    var lookupTable: [Float] {
        var table = [Float](repeating: 0, count: 3 * 256)
        for c in 0..<3 {
            for v in 0..<256 { table[c * 256 + v] = (Float(v) - mean[c]) / scale[c] }
        }
        return table
    }
}

/// One convolution as it runs: the layer, its input and output sizes, and which workspace
/// buffers hold its input, output and residual.
struct ConvStep: Sendable {
    var index: Int
    var conv: Conv2D
    var inHeight: Int
    var inWidth: Int
    var outHeight: Int
    var outWidth: Int
    var source: Int
    var destination: Int
    var residual: Int?
}

/// A validated network: everything `ConvNet` runs, read from a weights file.
struct ConvNetPlan: Sendable {
    var name: String
    var input: InputSpec
    var steps: [ConvStep]
    /// Floats per frame of each workspace buffer; buffer 0 holds the preprocessed input.
    var bufferFloatsPerFrame: [Int]
    /// The largest scratch any step needs (independent of the frame count).
    var scratchFloats: Int
    /// The buffer holding the last convolution's output, and that output's pixels per frame.
    var finalBuffer: Int
    var finalPixels: Int
    var featureWidth: Int
    var classifier: Linear
    var flopsPerFrame: Double

    /// The largest frame size accepted, and the largest pad (also below the kernel size):
    /// caps that keep size arithmetic far from overflow on corrupt metadata.
    static let maxInputSize = 8192
    static let maxPad = 1024

    /// Reads and checks everything: metadata, architecture, and every tensor it names.
    /// - Throws: `ConvNetError`.
    init(file: SafeTensorsFile) throws {
        let path = file.path
        let meta = file.metadata
        guard let format = meta["format"] else {
            throw ConvNetError(.notConvNet, path: path, "no 'format' metadata: not a CNN weights file (Schemas/cnn-weights.md)")
        }
        guard format == "vidx-cnn" else {
            throw ConvNetError(.notConvNet, path: path, "format is '\(format)', expected 'vidx-cnn'")
        }
        guard let versionText = meta["format_version"], let version = Int(versionText), version >= 1 else {
            throw ConvNetError(.unsupportedVersion, path: path,
                               "format_version \(meta["format_version"].map { "'\($0)'" } ?? "missing"), expected a positive integer")
        }
        guard version == 1 else {
            throw ConvNetError(.unsupportedVersion, path: path,
                               "format_version \(version) is newer than this reader (1): upgrade vidx")
        }
        name = meta["name"] ?? ""
        input = try Self.parseInput(meta["input"], path: path)

        guard let architectureText = meta["architecture"] else {
            throw ConvNetError(.badArchitecture, path: path, "no 'architecture' metadata")
        }
        guard let data = architectureText.data(using: .utf8),
              let parsed = try? JSONSerialization.jsonObject(with: data, options: []),
              let entries = parsed as? [Any] else {
            throw ConvNetError(.badArchitecture, path: path, "'architecture' is not a JSON array")
        }
        var builder = Builder(file: file, input: input)
        for (position, value) in entries.enumerated() {
            guard let entry = value as? [String: Any] else {
                throw ConvNetError(.badArchitecture, path: path, "architecture entry \(position) is not an object")
            }
            guard let kind = entry["kind"] as? String else {
                throw ConvNetError(.badArchitecture, path: path, "architecture entry \(position) has no string 'kind'")
            }
            switch kind {
            case "conv": try builder.addConv(entry, position: position)
            case "global_average_pool": try builder.addPool(position: position)
            case "linear": try builder.addLinear(entry, position: position)
            default:
                throw ConvNetError(.unsupportedLayer, path: path,
                                   "architecture entry \(position) has kind '\(kind)'; this reader knows conv, global_average_pool, linear")
            }
        }
        let done = try builder.finish()
        steps = done.steps
        bufferFloatsPerFrame = done.bufferFloats
        scratchFloats = done.scratch
        finalBuffer = done.finalBuffer
        finalPixels = done.finalPixels
        featureWidth = done.featureWidth
        classifier = done.classifier
        flopsPerFrame = done.flops
    }

    private static func parseInput(_ text: String?, path: String) throws -> InputSpec {
        func fail(_ message: String) -> ConvNetError { ConvNetError(.badInput, path: path, "'input' \(message)") }
        guard let text else { throw fail("metadata is missing") }
        guard let data = text.data(using: .utf8), let parsed = try? JSONSerialization.jsonObject(with: data, options: []),
              let object = parsed as? [String: Any] else { throw fail("is not a JSON object") }
        guard let size = jsonInt(object["size"]), size >= 1, size <= maxInputSize else {
            throw fail("needs an integer 'size' in 1...\(maxInputSize)")
        }
        guard let mean = jsonNumbers(object["mean"]), mean.count == 3, mean.allSatisfy(\.isFinite) else {
            throw fail("needs 'mean': three finite numbers")
        }
        guard let scale = jsonNumbers(object["scale"]), scale.count == 3,
              scale.allSatisfy({ $0.isFinite && $0 != 0 }) else {
            throw fail("needs 'scale': three finite non-zero numbers")
        }
        let layout = object["layout"] as? String
        guard layout == "RGB" || layout == "BGR" else {
            throw fail("layout \(layout.map { "'\($0)'" } ?? "missing") is not supported (RGB or BGR)")
        }
        return InputSpec(size: size, mean: mean.map { Float($0) }, scale: scale.map { Float($0) }, bgr: layout == "BGR")
    }
}

/// Walks the architecture in order, tracking the running tensor's shape, the saved
/// residuals and the workspace buffers.
private struct Builder {
    enum Phase { case convolutions, pooled, done }

    let file: SafeTensorsFile
    var path: String { file.path }
    var phase = Phase.convolutions
    var channels = 3
    var height: Int
    var width: Int
    var steps: [ConvStep] = []
    /// Buffer 0 is the preprocessed input.
    var bufferFloats: [Int]
    var current = 0
    var saved: [Int: (buffer: Int, layer: Int, height: Int, width: Int, channels: Int)] = [:]
    var scratch = 0
    var flops = 0.0
    var classifier: Linear?

    init(file: SafeTensorsFile, input: InputSpec) {
        self.file = file
        height = input.size
        width = input.size
        bufferFloats = [input.size * input.size * 3]
    }

    mutating func addConv(_ e: [String: Any], position: Int) throws {
        guard phase == .convolutions else {
            throw ConvNetError(.badArchitecture, path: path, "architecture entry \(position) is a conv after the global_average_pool")
        }
        let index = steps.count
        func fail(_ message: String) -> ConvNetError { ConvNetError(.badArchitecture, path: path, layer: index, message) }
        func field(_ key: String, min: Int = 1) throws -> Int {
            guard let v = jsonInt(e[key]) else { throw fail("'\(key)' must be an integer") }
            guard v >= min else { throw fail("'\(key)' is \(v), must be at least \(min)") }
            return v
        }
        guard jsonInt(e["index"]) == index else {
            throw fail("architecture entry \(position) has index \(e["index"].map { "\($0)" } ?? "missing"); conv indices must be 0, 1, 2, ... in order")
        }
        let label = (e["name"] as? String).map { " (\($0))" } ?? ""
        let cin = try field("in"), cout = try field("out")
        let kernel = try field("kernel"), stride = try field("stride"), groups = try field("groups")
        guard let pad = (e["pad"] as? [Any])?.compactMap({ jsonInt($0) }), pad.count == 4,
              (e["pad"] as? [Any])?.count == 4 else {
            throw fail("'pad' must be four integers [top, bottom, left, right]")
        }
        guard pad.allSatisfy({ $0 >= 0 && $0 < kernel && $0 <= ConvNetPlan.maxPad }) else {
            throw fail("pad \(pad) must be non-negative and smaller than the kernel (\(kernel))")
        }
        guard let activationName = e["activation"] as? String else { throw fail("'activation' must be a string") }
        guard let activation = ConvActivation(rawValue: activationName) else {
            throw ConvNetError(.unsupportedLayer, path: path, layer: index,
                               "activation '\(activationName)' is not supported (relu6, none)")
        }
        guard cin == channels else {
            let source = index == 0 ? "the \(channels)-channel image" : "layer \(index - 1)'s output, \(channels) channels"
            throw fail("'in' is \(cin) but its input is \(source)")
        }
        let geometry = ConvGeometry(inChannels: cin, outChannels: cout, kernel: kernel, stride: stride, groups: groups, pad: pad)
        guard geometry.kind != nil else {
            throw ConvNetError(.unsupportedLayer, path: path, layer: index,
                               "groups \(groups) with \(cin) -> \(cout) channels is not supported (1, or in = out for depthwise)")
        }
        guard let (oh, ow) = geometry.outputSize(height: height, width: width) else {
            throw fail("kernel \(kernel) with pads \(pad) does not fit its \(height) x \(width) input")
        }

        // Residuals: save first (a layer may save its own input and add it), then look up.
        if let key = e["save_input_as"] {
            guard let id = jsonInt(key, allowNegative: true) else { throw fail("'save_input_as' must be an integer") }
            if let held = saved[id] {
                throw fail("saves its input as id \(id), but layer \(held.layer)'s input is still held under that id (not yet added)")
            }
            saved[id] = (current, index, height, width, channels)
        }
        var residual: Int?
        var consumed: Int?
        if let key = e["add_saved"] {
            guard let id = jsonInt(key, allowNegative: true) else { throw fail("'add_saved' must be an integer") }
            guard let s = saved[id] else {
                throw fail("adds saved id \(id), which no earlier layer saved (or which was already added)")
            }
            guard (s.height, s.width, s.channels) == (oh, ow, cout) else {
                throw fail("adds saved id \(id), the input of layer \(s.layer), of shape \(s.height) x \(s.width) x \(s.channels), "
                           + "to its output of shape \(oh) x \(ow) x \(cout)")
            }
            residual = s.buffer
            consumed = id
        }

        // Tensors.
        let weightName = "layers.\(index).weight", biasName = "layers.\(index).bias"
        let weight = try floats(weightName, shape: geometry.weightShape, layer: index,
                                needs: "the architecture entry\(label) (\(geometry))")
        let bias = try floats(biasName, shape: [cout], layer: index, needs: "the architecture entry\(label) (out \(cout))")
        let conv = Conv2D(geometry: geometry, weight: weight, bias: bias, activation: activation)

        // Buffers: the output goes to the lowest buffer that holds neither the input nor a
        // saved tensor still to be added (including this layer's own residual).
        let held = Set(saved.values.map(\.buffer)).union([current])
        let destination = (0...bufferFloats.count).first { !held.contains($0) }!
        if destination == bufferFloats.count { bufferFloats.append(0) }
        bufferFloats[destination] = max(bufferFloats[destination], oh * ow * cout)
        if let consumed { saved[consumed] = nil }
        scratch = max(scratch, conv.scratchCount(height: height, width: width))
        steps.append(ConvStep(index: index, conv: conv, inHeight: height, inWidth: width, outHeight: oh, outWidth: ow,
                              source: current, destination: destination, residual: residual))
        flops += 2 * Double(oh * ow) * Double(geometry.multiplyAddsPerOutputPixel)
        current = destination
        channels = cout
        height = oh
        width = ow
    }

    mutating func addPool(position: Int) throws {
        guard phase == .convolutions, !steps.isEmpty else {
            throw ConvNetError(.badArchitecture, path: path,
                               "architecture entry \(position): global_average_pool must come once, after at least one conv")
        }
        if let (id, s) = saved.min(by: { $0.key < $1.key }) {
            throw ConvNetError(.badArchitecture, path: path, layer: s.layer,
                               "saves its input as id \(id), but no later layer adds it")
        }
        phase = .pooled
    }

    mutating func addLinear(_ e: [String: Any], position: Int) throws {
        guard phase == .pooled else {
            throw ConvNetError(.badArchitecture, path: path,
                               "architecture entry \(position): linear must come once, right after global_average_pool")
        }
        guard let name = e["name"] as? String, !name.isEmpty else {
            throw ConvNetError(.badArchitecture, path: path, "architecture entry \(position): linear needs a 'name' (its tensors' prefix)")
        }
        guard let info = file.info("\(name).weight") else {
            throw ConvNetError(.missingTensor, path: path, "tensor '\(name).weight' (the \(name) layer) is missing")
        }
        let classes = info.shape.count == 2 ? info.shape[0] : -1
        if let declared = e["out"] {
            guard let out = jsonInt(declared), out >= 1 else {
                throw ConvNetError(.badArchitecture, path: path, "architecture entry \(position): linear 'out' must be a positive integer")
            }
            guard out == classes else {
                throw ConvNetError(.wrongTensor, path: path,
                                   "tensor '\(name).weight' has shape \(info.shape), the architecture entry (in \(channels), out \(out)) needs [\(out), \(channels)]")
            }
        }
        if let declared = e["in"], jsonInt(declared) != channels {
            throw ConvNetError(.badArchitecture, path: path,
                               "architecture entry \(position): linear 'in' is \(declared) but the pooled features have \(channels) channels")
        }
        guard classes >= 1 else {
            throw ConvNetError(.wrongTensor, path: path,
                               "tensor '\(name).weight' has shape \(info.shape), expected [classes, \(channels)]")
        }
        let weight = try floats("\(name).weight", shape: [classes, channels], layer: nil,
                                needs: "the pooled features (\(channels) channels)")
        let bias = try floats("\(name).bias", shape: [classes], layer: nil, needs: "its weight (\(classes) classes)")
        classifier = Linear(weight: Matrix(rows: classes, cols: channels, data: weight), bias: bias)
        flops += 2 * Double(classes) * Double(channels)
        phase = .done
    }

    func finish() throws -> (steps: [ConvStep], bufferFloats: [Int], scratch: Int, finalBuffer: Int, finalPixels: Int,
                             featureWidth: Int, classifier: Linear, flops: Double) {
        guard phase == .done, let classifier else {
            throw ConvNetError(.badArchitecture, path: path,
                               "the architecture must be conv layers, then global_average_pool, then linear (it stops early)")
        }
        return (steps, bufferFloats, scratch, current, height * width, channels, classifier, flops)
    }

    /// F32 tensor `name`, which must have `shape`.
    private func floats(_ name: String, shape: [Int], layer: Int?, needs: String) throws -> [Float] {
        guard let info = file.info(name) else {
            throw ConvNetError(.missingTensor, path: path, layer: layer, "tensor '\(name)' is missing")
        }
        guard info.dtype == .f32 else {
            throw ConvNetError(.wrongTensor, path: path, layer: layer, "tensor '\(name)' is \(info.dtype.rawValue), expected F32")
        }
        guard info.shape == shape else {
            throw ConvNetError(.wrongTensor, path: path, layer: layer,
                               "tensor '\(name)' has shape \(info.shape), \(needs) needs \(shape)")
        }
        do {
            return try file.floats(name, shape: shape)
        } catch let error as SafeTensorsError {
            throw ConvNetError(.unreadable, path: path, layer: layer, error.message, cause: error)
        }
    }
}

/// A JSON integer (JSONSerialization's NSNumber of an integer type; not a boolean, not 1.0).
private func jsonInt(_ value: Any?, allowNegative: Bool) -> Int? {
    guard let number = value as? NSNumber else { return nil }
    switch String(cString: number.objCType) {
    case "q", "l", "i", "s", "Q", "L", "I", "S", "C":
        guard let v = Int(exactly: number.int64Value), number.compare(NSNumber(value: v)) == .orderedSame else { return nil }
        return allowNegative || v >= 0 ? v : nil
    default:
        return nil
    }
}

private func jsonInt(_ value: Any?) -> Int? { jsonInt(value, allowNegative: false) }

/// A JSON array of numbers (integers or not, no booleans).
private func jsonNumbers(_ value: Any?) -> [Double]? {
    guard let array = value as? [Any] else { return nil }
    var out: [Double] = []
    for item in array {
        guard let n = item as? NSNumber, String(cString: n.objCType) != "c" else { return nil }
        out.append(n.doubleValue)
    }
    return out
}
