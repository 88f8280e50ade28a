import Foundation
import VidxCore
import VidxDecode
import VidxExperts
import VidxVision

/// What every expert of the extract stage declares.
public struct ExpertDescriptor: Sendable, Equatable {
    /// The expert's name in the bundle (`appearance`, `audio`, `motion`).
    public var name: String
    /// The extractor id recorded in features files and bundles (name + version +
    /// parameters, e.g. `builtin:audio/logmel64-stats@1`).
    public var extractorID: String
    /// Feature width.
    public var width: Int
}

/// An expert: fed every sampled frame and every chunk of audio of one video, in order,
/// then asked for its time series. One instance per video; memory bounded whatever the
/// video's length. New experts plug in by conforming and registering in
/// ``ExpertRegistry``.
public protocol Expert: AnyObject {
    var descriptor: ExpertDescriptor { get }
    /// A sampled frame (the extract stage samples at ``ExtractSampling/framesPerSecond``).
    func consume(frame: SampledFrame) throws
    /// Mono audio at ``ExtractSampling/audioSampleRate``, in order.
    func consume(audio: [Float]) throws
    /// The features, rows in time order.
    func finish() throws -> FeatureSeries
    /// Seconds spent inside this expert so far.
    var seconds: Double { get }
}

/// How the extract stage decodes: one pass, every expert fed from it.
public enum ExtractSampling {
    /// Frames per second decoded (the motion expert's rate; appearance takes every
    /// `framesPerSecond`-th frame, i.e. one a second).
    public static let framesPerSecond = 4
    public static let frameSize = 224
    public static let audioSampleRate = 16_000
}

/// Times a closure into an accumulator.
@inline(__always)
func timed<T>(_ seconds: inout Double, _ body: () throws -> T) rethrows -> T {
    let start = DispatchTime.now().uptimeNanoseconds
    defer { seconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
    return try body()
}

/// Appearance: EfficientNet-Lite0's 1280-d penultimate feature of one frame a second
/// (the frames sampled for target times 0, 1, 2 ... s), in batches through the CNN.
/// Row k is timed [t_k, t_k + 1) where t_k is the frame's target time.
public final class AppearanceExpert: Expert {
    public static let extractorID = "builtin:appearance/efficientnet-lite0@1"
    public let descriptor: ExpertDescriptor
    public private(set) var seconds = 0.0
    let net: ConvNet
    let batchSize: Int
    var pending: [RGBImage] = []
    var pendingTimes: [Float] = []
    var features: [Float] = []
    var times: [Float] = []

    public init(net: ConvNet, batchSize: Int = 16) {
        self.net = net
        self.batchSize = batchSize
        descriptor = ExpertDescriptor(name: "appearance", extractorID: AppearanceExpert.extractorID, width: net.featureWidth)
    }

    public func consume(frame: SampledFrame) throws {
        let target = frame.info.target ?? frame.info.time
        let scaled = target * Double(ExtractSampling.framesPerSecond)
        // Only whole-second targets (every framesPerSecond-th sample).
        guard Int((scaled).rounded()) % ExtractSampling.framesPerSecond == 0,
              abs(scaled - scaled.rounded()) < 1e-6 else { return }
        pending.append(frame.image)
        pendingTimes.append(Float(target))
        if pending.count >= batchSize { flush() }
    }

    public func consume(audio: [Float]) throws {}

    func flush() {
        guard !pending.isEmpty else { return }
        timed(&seconds) {
            features += net.features(pending)
            for t in pendingTimes { times += [t, t + 1] }
        }
        pending.removeAll(keepingCapacity: true)
        pendingTimes.removeAll(keepingCapacity: true)
    }

    public func finish() throws -> FeatureSeries {
        flush()
        return FeatureSeries(rows: times.count / 2, width: descriptor.width, features: features, times: times)
    }
}

/// Audio: log-mel statistics per 0.96 s window (``LogMelStats``).
public final class AudioExpert: Expert {
    public let descriptor = ExpertDescriptor(name: "audio", extractorID: LogMelStats.extractorID, width: LogMelStats.width)
    public private(set) var seconds = 0.0
    let stats = LogMelStats(sampleRate: ExtractSampling.audioSampleRate)
    public init() {}
    public func consume(frame: SampledFrame) throws {}
    public func consume(audio: [Float]) throws { timed(&seconds) { stats.append(audio) } }
    public func finish() throws -> FeatureSeries { timed(&seconds) { stats.finish() } }
}

/// Motion: frame-difference energy on an 8 x 8 grid at 4 fps (``FrameMotion``).
public final class MotionExpert: Expert {
    public let descriptor = ExpertDescriptor(name: "motion", extractorID: FrameMotion.extractorID, width: FrameMotion.width)
    public private(set) var seconds = 0.0
    let motion = FrameMotion()
    public init() {}
    public func consume(frame: SampledFrame) throws {
        timed(&seconds) {
            motion.append(frame: frame.image.pixels, width: frame.image.width, height: frame.image.height,
                          time: frame.info.target ?? frame.info.time)
        }
    }
    public func consume(audio: [Float]) throws {}
    public func finish() throws -> FeatureSeries { timed(&seconds) { motion.finish() } }
}

/// The built-in experts by extractor id, and the shared resources they need.
public final class ExpertRegistry: @unchecked Sendable {
    /// Extractor ids this build can run.
    public static let builtinIDs = [AppearanceExpert.extractorID, LogMelStats.extractorID, FrameMotion.extractorID]
    let net: ConvNet?
    public let cnnBatch: Int

    /// - Parameter cnnWeights: the converted EfficientNet-Lite0 (`make models`), needed
    ///   only when a bundle uses the appearance expert.
    public init(cnnWeights: String?, cnnBatch: Int = 16) throws {
        net = try cnnWeights.map { try ConvNet(path: $0) }
        self.cnnBatch = cnnBatch
    }

    /// A fresh expert for one video.
    public func make(extractorID: String) -> Expert? {
        switch extractorID {
        case AppearanceExpert.extractorID: return net.map { AppearanceExpert(net: $0, batchSize: cnnBatch) }
        case LogMelStats.extractorID: return AudioExpert()
        case FrameMotion.extractorID: return MotionExpert()
        default: return nil
        }
    }

    /// The CNN's frames per second of compute (for benchmarks): its FLOPs per frame.
    public var cnnFlopsPerFrame: Double? { net?.flopsPerFrame }
}
