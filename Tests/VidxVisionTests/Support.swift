import Foundation
import Testing
import VidxCore
import VidxNumerics
import VidxTestSupport
import VidxVision

/// All vision tests, run one at a time: the determinism tests change BLAS.threads, a
/// process-wide setting, which must not change under another test's products.
@Suite(.serialized) struct VisionTests {}

/// Networks, images and reference outputs made once per test process by the project's
/// Python tools (Tests/Reference/make_cnn_test_net.py and cnn_reference.py).
enum TestNets {
    static let directory = makeTestDirectory("vision")
    private static let lock = NSLock()
    nonisolated(unsafe) private static var made: [String: Case] = [:]

    /// A network, test images and the NumPy reference's outputs for them.
    struct Case {
        /// The weights file.
        var weights: String
        /// The images as frames, in order.
        var frames: [RGBImage]
        /// (frames, features) and (frames, classes), from cnn_reference.py.
        var features: [Float]
        var logits: [Float]
    }

    /// "small" or "lite0": a seeded random network (make_cnn_test_net.py), its 7 test images
    /// (gradients, checkerboard, noise, flat) and the reference outputs.
    static func random(_ name: String) throws -> Case {
        try once(name) {
            let dir = directory + "/\(name)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            var args = ["Tests/Reference/make_cnn_test_net.py", dir + "/weights.safetensors",
                        "--seed", "3", "--images", dir + "/images.npy", "--count", "7"]
            if name == "lite0" { args.append("--lite0") }
            try Python.run(args)
            return try reference(weights: dir + "/weights.safetensors", images: dir + "/images.npy", dir: dir)
        }
    }

    /// Where `make models` puts the converted EfficientNet-Lite0.
    static let lite0Weights = Python.root + "/models/efficientnet-lite0/weights.safetensors"

    /// The converted EfficientNet-Lite0 (models/efficientnet-lite0) with 7 generated
    /// 224 x 224 images and the reference outputs.
    /// - Throws: `TestDataError` saying to run `make models` when the file is absent.
    static func realLite0() throws -> Case {
        let weights = lite0Weights
        guard FileManager.default.fileExists(atPath: weights) else {
            throw TestDataError(message: "\(weights) is absent: run `make models` (make test does it first; Pipelines/models/convert_efficientnet.py converts the weights)")
        }
        return try once("real-lite0") {
            let dir = directory + "/real-lite0"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try Python.call("cnn_images", dir + "/images.npy", "7", "224", "11")
            return try reference(weights: weights, images: dir + "/images.npy", dir: dir)
        }
    }

    private static func once(_ key: String, _ make: () throws -> Case) throws -> Case {
        lock.lock()
        defer { lock.unlock() }
        if let c = made[key] { return c }
        let c = try make()
        made[key] = c
        return c
    }

    /// Runs cnn_reference.py and reads its outputs and the images back through one
    /// safetensors file (Swift reads neither .npz nor uint8 .npy).
    private static func reference(weights: String, images: String, dir: String) throws -> Case {
        try Python.run(["Tests/Reference/cnn_reference.py", weights, images, dir + "/reference.npz"])
        try Python.call("cnn_reference_file", dir + "/reference.npz", images, dir + "/reference.safetensors")
        let file = try SafeTensorsFile(path: dir + "/reference.safetensors")
        guard let shape = file.info("images")?.shape, shape.count == 4, shape[1] == shape[2], shape[3] == 3 else {
            throw TestDataError(message: "reference images have an unexpected shape")
        }
        let (n, size) = (shape[0], shape[1])
        let bytes = try file.uint8s("images")
        let frames = (0..<n).map { i in
            RGBImage(width: size, height: size, pixels: Array(bytes[(i * size * size * 3)..<((i + 1) * size * size * 3)]))
        }
        return Case(weights: weights, frames: frames, features: try file.floats("features"), logits: try file.floats("logits"))
    }
}

/// A weights file opened for editing: the defect generator's raw material.
struct EditableNet {
    var metadata: [String: String]
    /// The `architecture` metadata, parsed; written back by `write(to:)`.
    var architecture: [[String: Any]]
    var tensors: [String: (shape: [Int], values: [Float])]
    /// Tensors of other dtypes, written as given.
    var raw: [String: (dtype: TensorDType, shape: [Int], bytes: [UInt8])] = [:]

    init(path: String) throws {
        let file = try SafeTensorsFile(path: path)
        metadata = file.metadata
        let parsed = try JSONSerialization.jsonObject(with: Data(metadata["architecture"]!.utf8))
        architecture = parsed as! [[String: Any]]
        tensors = [:]
        for name in file.names {
            tensors[name] = (file.info(name)!.shape, try file.floats(name))
        }
    }

    func write(to path: String) throws {
        var meta = metadata
        let data = try JSONSerialization.data(withJSONObject: architecture, options: [.sortedKeys])
        meta["architecture"] = String(decoding: data, as: UTF8.self)
        var writer = SafeTensorsWriter(metadata: meta)
        for (name, t) in tensors { writer.add(name, floats: t.values, shape: t.shape) }
        for (name, t) in raw { writer.add(name, dtype: t.dtype, shape: t.shape, bytes: t.bytes) }
        try writer.write(to: path)
    }
}

/// Runs `body` on `workers` threads (``BLAS/setThreads(_:)``), as the extract stage runs
/// the CNN; restores the previous count afterwards.
func withCNNWorkers<T>(_ workers: Int, _ body: () throws -> T) rethrows -> T {
    let previous = BLAS.threads
    BLAS.setThreads(workers)
    defer { BLAS.setThreads(previous) }
    return try body()
}

/// The largest |got - want|; infinity if the counts differ or a value is NaN.
func maxAbsDifference(_ got: [Float], _ want: [Float]) -> Float {
    guard got.count == want.count else { return .infinity }
    var worst: Float = 0
    for (a, b) in zip(got, want) {
        let d = abs(a - b)
        if !(d <= worst) { worst = d.isNaN ? .infinity : d }
    }
    return worst
}

/// Expects the same count and the same bytes, reporting how many values differ.
func expectBitIdentical(_ got: [Float], _ want: [Float], _ what: String,
                        sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(got.count == want.count, "\(what): \(got.count) values, expected \(want.count)", sourceLocation: sourceLocation)
    guard got.count == want.count else { return }
    let differing = zip(got, want).filter { $0.0.bitPattern != $0.1.bitPattern }.count
    #expect(differing == 0, "\(what): \(differing) of \(got.count) values differ", sourceLocation: sourceLocation)
}

/// Expects every value within `tolerance * max(1, |want|)`: for frames computed in other
/// batches or positions, whose last bits may differ on AMD Zen (Documentation/Determinism.md).
func expectClose(_ got: [Float], _ want: [Float], _ what: String, tolerance: Float = 1e-4,
                 sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(got.count == want.count, "\(what): \(got.count) values, expected \(want.count)", sourceLocation: sourceLocation)
    guard got.count == want.count else { return }
    let far = zip(got, want).filter { abs($0.0 - $0.1) > tolerance * max(1, abs($0.1)) }.count
    #expect(far == 0, "\(what): \(far) of \(got.count) values differ by more than \(tolerance)", sourceLocation: sourceLocation)
}

/// `count` uniform values in [-scale, scale).
func randomFloats(_ count: Int, seed: UInt64, scale: Float = 1) -> [Float] {
    var g = SeededGenerator(seed: seed)
    return (0..<count).map { _ in g.uniform() * scale }
}

/// A frame of seeded noise.
func noiseFrame(size: Int, seed: UInt64) -> RGBImage {
    var g = SeededGenerator(seed: seed)
    return RGBImage(width: size, height: size, pixels: (0..<(size * size * 3)).map { _ in UInt8(truncatingIfNeeded: g.next() >> 56) })
}
