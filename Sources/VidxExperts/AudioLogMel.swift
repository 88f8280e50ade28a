// The built-in audio expert `builtin:audio/logmel64-stats@1`: statistics of a log-mel
// spectrogram over 0.96 s windows.
//
// Definition (Tests/Reference/expert_reference.py implements it independently in NumPy):
//
// - Input: mono samples at 16 kHz (the decoder's default), as Float.
// - Frames: frame j covers samples [160 j, 160 j + 400) (25 ms, hop 10 ms); only full frames,
//   so n samples give max(0, (n - 400) / 160 + 1) frames (integer division).
// - Window: periodic Hann, w[t] = 0.5 - 0.5 cos(2 pi t / 400), t = 0..<400 (as
//   `torch.hann_window(400)`, `scipy.signal.get_window("hann", 400)`).
// - Spectrum: the windowed frame zero-padded to 512 samples, its DFT X[k] for bins
//   k = 0...256 (k * 31.25 Hz), power P[k] = |X[k]|^2 (no scaling).
// - Mel: 64 triangular filters on the HTK mel scale, mel(f) = 2595 log10(1 + f / 700),
//   between 0 and 8000 Hz: edge points p_i = hz(i * mel(8000) / 65), i = 0...65; filter b
//   (b = 0..<64) weighs bin frequency f by max(0, min((f - p_b) / (p_b+1 - p_b),
//   (p_b+2 - f) / (p_b+2 - p_b+1))) (peak 1, no area normalisation; torchaudio's
//   `melscale_fbanks(norm=None, mel_scale="htk")`). M[b] = sum_k weight_b(k) P[k].
// - Log: L[b] = ln(M[b] + 1e-6).
// - Rows: window k holds frames [96 k, 96 k + 96) (0.96 s, non-overlapping). The row is
//   the 64 means of L over the window's frames, then the 64 population standard deviations
//   (divided by the frame count): 128 values, timed [0.96 k, 0.96 (k + 1)].
// - The last, partial window is kept when it has at least 48 frames (half a window); its
//   end time is the end of the audio (samples / 16000) rather than 0.96 (k + 1). So audio
//   shorter than 7920 samples (48 frames, 0.495 s), or none, gives zero rows.

import VidxCore
import VidxNumerics
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Streams 16 kHz mono audio into log-mel statistics rows (`builtin:audio/logmel64-stats@1`,
/// 128 values a row: 64 band means, then 64 band standard deviations, per 0.96 s window;
/// the full definition is at the top of AudioLogMel.swift).
///
/// Feed the samples in order with ``append(_:)-(UnsafeBufferPointer<Float>)`` in chunks of
/// any size, then call ``finish()``. The bytes of the result do not depend on how the audio
/// was chunked, nor on the thread count.
///
/// The spectrum is a real FFT (a 256-point complex radix-2 FFT plus a split step, see
/// ``LogMelTables``), computed for 8 frames at once, one per SIMD lane: about 11,000 flops a
/// frame, 66 MFLOP per minute of audio. (A DFT as a product with a constant 400 x 512
/// cos / sin matrix on OpenBLAS costs 0.41 MFLOP a frame, 2.5 GFLOP per minute: several
/// times slower than this FFT; `make bench-extract` prints the audio expert's seconds.)
///
/// Memory is bounded whatever the length of the audio: besides the output rows, the
/// extractor keeps at most 41,200 unconsumed samples, the unfinished window's frames
/// (96 x 64 values) and 256 frames' log-mel scratch (about 250 KB in all).
/// Not thread-safe: one instance per stream.
public final class LogMelStats {
    /// The extractor id recorded in features files and bundles.
    public static let extractorID = "builtin:audio/logmel64-stats@1"
    /// Values per row: 64 means, then 64 standard deviations.
    public static let width = 128
    /// Mel bands.
    public static let bands = 64
    /// The only sample rate the definition covers.
    public static let sampleRate = 16000
    /// Samples per frame (25 ms) and between frame starts (10 ms).
    public static let frameLength = 400, hop = 160
    /// Frames per row window (0.96 s), and the fewest frames that make the last, partial one a row.
    public static let framesPerWindow = 96, minimumFrames = 48
    /// Added to the mel energies before the logarithm.
    public static let logFloor: Float = 1e-6

    /// Frames computed per batch (bounds the unconsumed samples).
    static let batchFrames = 256
    /// Samples that make `batchFrames` frames.
    static let batchSamples = (batchFrames - 1) * hop + frameLength

    private let tables = LogMelTables.shared
    /// Samples not yet consumed; `pending[0]` is the first sample of the next frame.
    private let pending: UnsafeMutablePointer<Float>
    private var pendingCount = 0
    /// Scratch: (batchFrames, 64) log-mel energies.
    private let logMel: UnsafeMutablePointer<Float>
    /// The unfinished window's log-mel frames, (framesPerWindow, 64).
    private let window: UnsafeMutablePointer<Float>
    private var windowFrames = 0
    private var windowIndex = 0
    private var sampleCount = 0
    private var series = FeatureSeries(width: LogMelStats.width)

    /// A fresh extractor.
    /// - Parameter sampleRate: the rate of the samples that will be appended; must be 16000
    ///   (decode at the decoder's default rate: the features are defined at 16 kHz only).
    public init(sampleRate: Int = 16000) {
        precondition(sampleRate == Self.sampleRate,
                     "LogMelStats needs 16 kHz audio, got \(sampleRate) Hz: decode with the default 16 kHz sample rate")
        pending = .allocate(capacity: Self.batchSamples)
        logMel = .allocate(capacity: Self.batchFrames * Self.bands)
        window = .allocate(capacity: Self.framesPerWindow * Self.bands)
    }

    deinit {
        pending.deallocate()
        logMel.deallocate()
        window.deallocate()
    }

    /// Appends the next samples of the stream (any count, including 0).
    public func append(_ samples: UnsafeBufferPointer<Float>) {
        guard var source = samples.baseAddress else { return }
        var remaining = samples.count
        sampleCount += remaining
        while remaining > 0 {
            let take = min(remaining, Self.batchSamples - pendingCount)
            (pending + pendingCount).update(from: source, count: take)
            pendingCount += take
            source += take
            remaining -= take
            if pendingCount == Self.batchSamples { consumeFrames(Self.batchFrames) }
        }
    }

    /// Appends the next samples of the stream (any count, including 0).
    public func append(_ samples: [Float]) {
        samples.withUnsafeBufferPointer { append($0) }
    }

    /// Ends the stream: computes the last frames, keeps the last window if it has at least
    /// ``minimumFrames`` frames, and returns all the rows. The extractor is then reset, ready
    /// for a new stream.
    public func finish() -> FeatureSeries {
        if pendingCount >= Self.frameLength {
            consumeFrames((pendingCount - Self.frameLength) / Self.hop + 1)
        }
        if windowFrames >= Self.minimumFrames { closeWindow() }
        let result = series
        series = FeatureSeries(width: Self.width)
        pendingCount = 0
        windowFrames = 0
        windowIndex = 0
        sampleCount = 0
        return result
    }

    /// Computes the log-mel energies of the first `count` frames of `pending`, adds them to
    /// the current window (closing full windows), and drops the samples no later frame needs.
    private func consumeFrames(_ count: Int) {
        let bands = Self.bands
        tables.logMel(samples: pending, count: count, into: logMel)
        for i in 0..<count {
            (window + windowFrames * bands).update(from: logMel + i * bands, count: bands)
            windowFrames += 1
            if windowFrames == Self.framesPerWindow { closeWindow() }
        }
        let consumed = count * Self.hop
        pendingCount -= consumed
        pending.update(from: pending + consumed, count: pendingCount)  // overlapping move to the front
    }

    /// Appends the current window's row (means, then population standard deviations, in
    /// Double so that a constant band has exactly its value as mean and 0 as deviation).
    private func closeWindow() {
        let n = windowFrames, bands = Self.bands
        var row = [Float](repeating: 0, count: Self.width)
        for b in 0..<bands {
            var sum = 0.0
            for f in 0..<n { sum += Double(window[f * bands + b]) }
            let mean = sum / Double(n)
            var squares = 0.0
            for f in 0..<n {
                let d = Double(window[f * bands + b]) - mean
                squares += d * d
            }
            row[b] = Float(mean)
            row[bands + b] = Float((squares / Double(n)).squareRoot())
        }
        let seconds = Double(Self.framesPerWindow) * Double(Self.hop) / Double(Self.sampleRate)
        let start = Double(windowIndex) * seconds
        let end = min(Double(windowIndex + 1) * seconds, Double(sampleCount) / Double(Self.sampleRate))
        series.append(row, start: start, end: end)
        windowIndex += 1
        windowFrames = 0
    }
}

/// Frames transformed together, one per SIMD lane: every lane runs the same operations, so a
/// frame's bytes do not depend on which frames share its group.
typealias FrameLanes = SIMD8<Float>

/// The constant tables of ``LogMelStats`` and its per-frame arithmetic, built once per process.
///
/// The 512-point real DFT of a frame is computed as a 256-point complex FFT of
/// z[n] = x[2n] + i x[2n + 1] (iterative radix-2, decimation in time, bit-reversed input)
/// followed by the standard split X[k] = E[k] + e^(-2 pi i k / 512) O[k], with
/// E[k] = (Z[k] + conj Z[256 - k]) / 2 and O[k] = (Z[k] - conj Z[256 - k]) / 2i, for
/// k = 0...256 (Z[256] = Z[0]). Eight frames go through it at once, one per SIMD lane.
struct LogMelTables: Sendable {
    /// DFT bins 0...256 of a 512-point transform.
    static let bins = 257
    /// Complex points of the packed FFT.
    static let points = 256

    /// The periodic Hann window, w[t] = 0.5 - 0.5 cos(2 pi t / 400), 400 values.
    let window: [Float]
    /// Butterfly twiddles e^(-2 pi i j / len) for len = 2, 4, ..., 256 and j = 0..<len/2,
    /// stage after stage (255 values each part).
    let twiddleRe: [Float], twiddleIm: [Float]
    /// Split twiddles e^(-2 pi i k / 512), k = 0...256.
    let splitRe: [Float], splitIm: [Float]
    /// Bit-reversal of 8-bit indices.
    let bitReverse: [Int]
    /// Filter b's non-zero weights are `weights[weightStart[b] ..< weightStart[b + 1]]`, for
    /// bins `firstBin[b]...`.
    let firstBin: [Int]
    let weightStart: [Int]
    let weights: [Float]

    static let shared = LogMelTables()

    init() {
        // Angles are reduced to j / 512 of a turn before cos / sin, computed in Double and
        // rounded once; the quarter-turn values are exact.
        func turn(_ j: Int) -> (cos: Double, sin: Double) {
            switch j % 512 {
            case 0: return (1, 0)
            case 128: return (0, 1)
            case 256: return (-1, 0)
            case 384: return (0, -1)
            case let r: return (cos(2 * Double.pi * Double(r) / 512), sin(2 * Double.pi * Double(r) / 512))
            }
        }
        let n = LogMelStats.frameLength
        window = (0..<n).map { Float(0.5 - 0.5 * cos(2 * Double.pi * Double($0) / Double(n))) }
        var twRe: [Float] = [], twIm: [Float] = []
        var len = 2
        while len <= Self.points {
            for j in 0..<(len / 2) {
                let t = turn(j * (512 / len))
                twRe.append(Float(t.cos))
                twIm.append(Float(-t.sin))
            }
            len *= 2
        }
        twiddleRe = twRe
        twiddleIm = twIm
        splitRe = (0..<Self.bins).map { Float(turn($0).cos) }
        splitIm = (0..<Self.bins).map { Float(-turn($0).sin) }
        bitReverse = (0..<Self.points).map { i in
            var r = 0
            for bit in 0..<8 where i & (1 << bit) != 0 { r |= 1 << (7 - bit) }
            return r
        }

        func mel(_ f: Double) -> Double { 2595 * log10(1 + f / 700) }
        func hz(_ m: Double) -> Double { 700 * (pow(10, m / 2595) - 1) }
        let bands = LogMelStats.bands
        let top = mel(Double(LogMelStats.sampleRate) / 2)
        let edges = (0...(bands + 1)).map { hz(Double($0) * top / Double(bands + 1)) }
        var firstBin: [Int] = [], weightStart: [Int] = [], weights: [Float] = []
        for b in 0..<bands {
            weightStart.append(weights.count)
            var first = -1
            for k in 0..<Self.bins {
                let f = Double(k) * Double(LogMelStats.sampleRate) / 512
                let up = (f - edges[b]) / (edges[b + 1] - edges[b])
                let down = (edges[b + 2] - f) / (edges[b + 2] - edges[b + 1])
                let weight = max(0, min(up, down))
                if weight > 0 {
                    if first < 0 { first = k }
                    // Triangles are convex: the non-zero bins are contiguous.
                    precondition(k == first + (weights.count - weightStart[b]), "mel filter \(b) is not contiguous")
                    weights.append(Float(weight))
                }
            }
            precondition(first >= 0, "mel filter \(b) covers no FFT bin")
            firstBin.append(first)
        }
        weightStart.append(weights.count)
        self.firstBin = firstBin
        self.weightStart = weightStart
        self.weights = weights
    }

    /// Log-mel energies of `count` frames: frame f is `samples[f * 160 ..< f * 160 + 400]`;
    /// its 64 values go to `out[f * 64 ..< (f + 1) * 64]`. Groups of ``FrameLanes`` frames
    /// are spread over the BLAS threads; a short last group is padded with silent lanes.
    func logMel(samples: UnsafePointer<Float>, count: Int, into out: UnsafeMutablePointer<Float>) {
        let lanes = FrameLanes.scalarCount
        let groups = (count + lanes - 1) / lanes
        Parallel.forEachRange(groups, grain: 8) { range in
            withUnsafeTemporaryAllocation(of: FrameLanes.self, capacity: 2 * Self.points + Self.bins) { scratch in
                for g in range {
                    let first = g * lanes
                    logMelGroup(samples: samples + first * LogMelStats.hop, count: min(lanes, count - first),
                                into: out + first * LogMelStats.bands, scratch: scratch.baseAddress!)
                }
            }
        }
    }

    /// One group of up to ``FrameLanes`` frames (see ``logMel(samples:count:into:)``);
    /// `scratch` holds 2 * 256 + 257 lane vectors.
    private func logMelGroup(samples: UnsafePointer<Float>, count: Int, into out: UnsafeMutablePointer<Float>,
                             scratch: UnsafeMutablePointer<FrameLanes>) {
        let n = Self.points, hop = LogMelStats.hop, frameLength = LogMelStats.frameLength
        let re = scratch, im = scratch + n, power = scratch + 2 * n
        window.withUnsafeBufferPointer { w in
            bitReverse.withUnsafeBufferPointer { reverse in
                // z[r] = x[2 s] + i x[2 s + 1], r = bitReverse(s): windowed, zero-padded from 400 to 512.
                for s in 0..<n {
                    let r = reverse[s], t = 2 * s
                    var a = FrameLanes(), b = FrameLanes()
                    if t < frameLength {
                        for lane in 0..<count {
                            a[lane] = samples[lane * hop + t]
                            b[lane] = samples[lane * hop + t + 1]
                        }
                        a *= FrameLanes(repeating: w[t])
                        b *= FrameLanes(repeating: w[t + 1])
                    }
                    re[r] = a
                    im[r] = b
                }
            }
        }
        twiddleRe.withUnsafeBufferPointer { twRe in
            twiddleIm.withUnsafeBufferPointer { twIm in
                var len = 2, offset = 0
                while len <= n {
                    let half = len / 2
                    for j in 0..<half {
                        let wr = FrameLanes(repeating: twRe[offset + j]), wi = FrameLanes(repeating: twIm[offset + j])
                        var a = j
                        while a < n {
                            let b = a + half
                            let xr = re[b] * wr - im[b] * wi
                            let xi = re[b] * wi + im[b] * wr
                            let ar = re[a], ai = im[a]
                            re[b] = ar - xr
                            im[b] = ai - xi
                            re[a] = ar + xr
                            im[a] = ai + xi
                            a += len
                        }
                    }
                    offset += half
                    len *= 2
                }
            }
        }
        splitRe.withUnsafeBufferPointer { cr in
            splitIm.withUnsafeBufferPointer { ci in
                let halfLane = FrameLanes(repeating: 0.5)
                for k in 0..<Self.bins {
                    let p = k & (n - 1), q = (n - k) & (n - 1)
                    let er = (re[p] + re[q]) * halfLane, ei = (im[p] - im[q]) * halfLane
                    let or = (im[p] + im[q]) * halfLane, oi = (re[q] - re[p]) * halfLane
                    let c = FrameLanes(repeating: cr[k]), s = FrameLanes(repeating: ci[k])
                    let xr = er + (c * or - s * oi)
                    let xi = ei + (c * oi + s * or)
                    power[k] = xr * xr + xi * xi
                }
            }
        }
        weights.withUnsafeBufferPointer { w in
            for b in 0..<LogMelStats.bands {
                let bin = firstBin[b], lo = weightStart[b], hi = weightStart[b + 1]
                var energy = FrameLanes()
                for i in lo..<hi { energy += FrameLanes(repeating: w[i]) * power[bin + i - lo] }
                for lane in 0..<count {
                    out[lane * LogMelStats.bands + b] = logf(energy[lane] + LogMelStats.logFloor)
                }
            }
        }
    }
}
