import Foundation
import VidxCore
import VidxNumerics

/// An image CNN read from a weights file in the `vidx-cnn` format (Schemas/cnn-weights.md)
/// and run generically from its layer list: convolutions with bias, ReLU6 and residual adds,
/// global average pooling, a linear classifier. First user: the appearance expert
/// (EfficientNet-Lite0, `models/efficientnet-lite0/weights.safetensors`).
///
/// Frames go through the network `framesPerPass` at a time, every layer over all of them
/// before the next, in NHWC layout (see VidxNumerics' Convolution.swift): a 1x1 convolution
/// is a few sgemm calls of whole frames (tiles) over the pass.
///
/// Threads: a call runs on ``Parallel/threads`` workers: the tiles of each layer, the
/// depthwise rows and the frames are spread over them, and every sgemm call runs whole on
/// the worker that makes it, single-threaded (``BLAS/setThreads(_:)`` sets the workers).
///
/// Deterministic: the same bytes whatever the number of workers; a frame's bytes also do
/// not depend on the other frames or the pass size, except on AMD Zen
/// (Documentation/Determinism.md, "The extract stage and its CNN").
///
/// Immutable after `init` but for a pool of reusable workspaces behind a lock, hence
/// `Sendable`; concurrent calls are safe (each takes its own workspace).
public final class ConvNet: @unchecked Sendable {
    /// The file, as given to `init`.
    public let path: String
    /// The `name` metadata (e.g. `efficientnet-lite0`).
    public let name: String
    /// Frames must be `inputSize` x `inputSize`.
    public let inputSize: Int
    /// Width of a feature vector: the last convolution's channels (global average pool).
    public let featureWidth: Int
    /// Width of a logits vector: the classifier's outputs.
    public let classes: Int
    /// Floating-point operations per frame: 2 x the multiply-adds of every convolution and
    /// the classifier (pooling, bias, activations and residual adds not counted).
    public let flopsPerFrame: Double
    /// Frames run through the layers together: the workspace holds this many.
    public let framesPerPass: Int

    private let plan: ConvNetPlan
    private let lookupTable: [Float]
    private let lock = NSLock()
    private var idleWorkspaces: [Workspace] = []

    /// The default ``framesPerPass``.
    public static let defaultFramesPerPass = 16

    /// Reads and checks the network in `path`; the weights are copied into memory (packed
    /// for the convolution kernels) and the file closed.
    ///
    /// - Parameters:
    ///   - path: a `vidx-cnn` safetensors file.
    ///   - framesPerPass: frames run through the layers together; bounds the workspace
    ///     (``workspaceBytes``: for EfficientNet-Lite0 about 8.5 MB per frame, 137 MB at
    ///     16). Does not change any result.
    /// - Throws: `ConvNetError`: `unreadable` (the container), `notConvNet`,
    ///   `unsupportedVersion`, `badInput`, `badArchitecture` (malformed or inconsistent:
    ///   channel chain, sizes, residual ids and shapes), `unsupportedLayer` (kind, activation
    ///   or groups), `missingTensor`, `wrongTensor` (dtype or shape; the message names the
    ///   layer and both shapes).
    public init(path: String, framesPerPass: Int = ConvNet.defaultFramesPerPass) throws {
        precondition(framesPerPass >= 1, "framesPerPass must be at least 1")
        let file: SafeTensorsFile
        do {
            file = try SafeTensorsFile(path: path)
        } catch let error as SafeTensorsError {
            throw ConvNetError(.unreadable, path: path, error.message, cause: error)
        }
        plan = try ConvNetPlan(file: file)
        self.path = path
        name = plan.name
        inputSize = plan.input.size
        featureWidth = plan.featureWidth
        classes = plan.classifier.outputCount
        flopsPerFrame = plan.flopsPerFrame
        self.framesPerPass = framesPerPass
        lookupTable = plan.input.lookupTable
    }

    /// The number of convolution layers.
    public var convolutionCount: Int { plan.steps.count }

    /// The memory one call on ``Parallel/threads`` workers holds while it runs (activation
    /// buffers for ``framesPerPass`` frames and a scratch slot per worker), in bytes; kept for
    /// reuse by later calls.
    public var workspaceBytes: Int {
        4 * (plan.bufferFloatsPerFrame.reduce(0, +) * framesPerPass + plan.scratchFloats * Parallel.threads)
    }

    /// The feature vectors of `frames`: (frames.count, featureWidth), row-major.
    /// - Precondition: every frame is `inputSize` x `inputSize`.
    public func features(_ frames: [RGBImage]) -> [Float] {
        run(frames)
    }

    /// The classifier's logits for `frames`: (frames.count, classes), row-major.
    /// - Precondition: every frame is `inputSize` x `inputSize`.
    public func logits(_ frames: [RGBImage]) -> [Float] {
        featuresAndLogits(frames).logits
    }

    /// Both outputs of one run: features (frames.count, featureWidth) and logits
    /// (frames.count, classes), row-major.
    /// - Precondition: every frame is `inputSize` x `inputSize`.
    public func featuresAndLogits(_ frames: [RGBImage]) -> (features: [Float], logits: [Float]) {
        let features = run(frames)
        let logits = plan.classifier(Matrix(rows: frames.count, cols: featureWidth, data: features))
        return (features, logits.data)
    }

    // MARK: Running

    private func run(_ frames: [RGBImage]) -> [Float] {
        for (i, f) in frames.enumerated() {
            precondition(f.width == inputSize && f.height == inputSize,
                         "frame \(i) is \(f.width) x \(f.height); \(name.isEmpty ? path : name) takes \(inputSize) x \(inputSize)")
        }
        let count = frames.count * featureWidth
        if count == 0 { return [] }
        let workers = Parallel.threads  // read once: the scratch holds a slot per worker
        let workspace = takeWorkspace(workers: workers)
        defer { returnWorkspace(workspace) }
        return [Float](unsafeUninitializedCapacity: count) { out, initialized in
            var first = 0
            while first < frames.count {
                let n = min(framesPerPass, frames.count - first)
                pass(frames[first..<(first + n)], workspace: workspace, workers: workers,
                     features: out.baseAddress! + first * featureWidth)
                first += n
            }
            initialized = count
        }
    }

    /// Runs the layers over `frames` (at most `framesPerPass`) on `workers` threads, writing
    /// their features.
    private func pass(_ frames: ArraySlice<RGBImage>, workspace: Workspace, workers: Int,
                      features: UnsafeMutablePointer<Float>) {
        let n = frames.count
        let buffers = workspace.buffers
        preprocess(frames, into: buffers[0], workers: workers)
        for step in plan.steps {
            step.conv.apply(frames: n, height: step.inHeight, width: step.inWidth,
                            input: buffers[step.source], output: buffers[step.destination],
                            residual: step.residual.map { UnsafePointer(buffers[$0]) },
                            scratch: workspace.scratch, threads: workers)
        }
        globalAveragePool(frames: n, pixels: plan.finalPixels, channels: featureWidth,
                          input: buffers[plan.finalBuffer], output: features, threads: workers)
    }

    /// 8-bit RGB -> the network's normalised channels, NHWC (frames, size, size, 3).
    private func preprocess(_ frames: ArraySlice<RGBImage>, into out: UnsafeMutablePointer<Float>, workers: Int) {
        let pixels = inputSize * inputSize
        let bgr = plan.input.bgr
        let start = frames.startIndex
        lookupTable.withUnsafeBufferPointer { lut in
            let table = lut.baseAddress!
            Parallel.forEachRange(frames.count, threads: workers) { range in
                for i in range {
                    let dst = out + i * pixels * 3
                    frames[start + i].pixels.withUnsafeBufferPointer { src in
                        for p in 0..<pixels {
                            let r = Int(src[3 * p]), g = Int(src[3 * p + 1]), b = Int(src[3 * p + 2])
                            dst[3 * p] = table[bgr ? b : r]
                            dst[3 * p + 1] = table[256 + g]
                            dst[3 * p + 2] = table[512 + (bgr ? r : b)]
                        }
                    }
                }
            }
        }
    }

    // MARK: Workspaces

    /// Activation buffers for one pass, reused across calls: allocating and first-touching
    /// 137 MB per call (EfficientNet-Lite0, 16 frames) would cost more than a layer.
    private final class Workspace {
        let buffers: [UnsafeMutablePointer<Float>]
        /// `workers` slots of the plan's scratch, one per worker.
        let scratch: UnsafeMutablePointer<Float>?
        let workers: Int

        init(bufferFloats: [Int], scratchFloats: Int, workers: Int) {
            buffers = bufferFloats.map { UnsafeMutablePointer<Float>.allocate(capacity: max($0, 1)) }
            scratch = scratchFloats > 0 ? UnsafeMutablePointer<Float>.allocate(capacity: scratchFloats * workers) : nil
            self.workers = workers
        }

        deinit {
            for b in buffers { b.deallocate() }
            scratch?.deallocate()
        }
    }

    /// An idle workspace with scratch for at least `workers` workers, or a new one (an idle
    /// one with too few slots, left by a call on fewer threads, is dropped).
    private func takeWorkspace(workers: Int) -> Workspace {
        lock.lock()
        let idle = idleWorkspaces.popLast()
        lock.unlock()
        if let idle, idle.workers >= workers { return idle }
        return Workspace(bufferFloats: plan.bufferFloatsPerFrame.map { $0 * framesPerPass },
                         scratchFloats: plan.scratchFloats, workers: workers)
    }

    private func returnWorkspace(_ workspace: Workspace) {
        lock.lock()
        idleWorkspaces.append(workspace)
        lock.unlock()
    }
}
