/// How frames are fitted into the requested output size.
public enum FitMode: String, Sendable, CaseIterable, Codable {
    /// Scale so the shorter side fills the output, then centre-crop the longer one.
    case crop
    /// Scale so the whole frame fits, centred on black.
    case pad
    /// Scale each axis independently to the output size (distorts the aspect ratio).
    case stretch
}

/// Refusal thresholds for hostile or unreasonable inputs.
public struct DecodeLimits: Sendable, Equatable {
    /// Largest accepted width x height of the video stream (0: no limit).
    public var maxPixels: Int
    /// Longest accepted duration in seconds (0: no limit).
    public var maxDuration: Double
    /// Wall-clock limit per video in seconds, covering opening, decoding and any stalled
    /// I/O (0: no limit).
    public var timeout: Double

    /// 8K (7680 x 4320 fits), 6 hours, no time limit.
    public init(maxPixels: Int = 8192 * 4352, maxDuration: Double = 6 * 3600, timeout: Double = 0) {
        self.maxPixels = maxPixels
        self.maxDuration = maxDuration
        self.timeout = timeout
    }
}

/// Everything that shapes one decode.
public struct DecodeOptions: Sendable, Equatable {
    /// Which frames to sample.
    public var sampling: SamplingPolicy = .fps(1)
    /// Output size of each sampled frame in pixels.
    public var width: Int = 224
    public var height: Int = 224
    public var fit: FitMode = .crop
    /// Decode the best audio stream to mono float32.
    public var audio: Bool = false
    /// Sample rate of the decoded audio in Hz.
    public var audioSampleRate: Int = 16_000
    /// Skip the decoding of groups of pictures that hold no sample: when the next key
    /// frame is still at or before the next wanted time, everything before it is
    /// dropped unread by the decoder. Never changes which frame is sampled.
    public var seekAhead: Bool = true
    /// Fast mode: whole runs of reordered frames (B-frames) are dropped unread wherever
    /// the frame shown just before the run is within half a sampling interval of every
    /// target the run covers; that frame is then the sample. So a sample may be a
    /// neighbouring frame of the exact one (with x264's defaults, up to 3 frames
    /// earlier), never more than half a sampling interval from its target. Every frame
    /// that is decoded is decoded exactly.
    public var fast: Bool = false
    /// FFmpeg decoder threads for this video. 1 by default: batch runs decode several
    /// videos at once, one per core.
    public var threads: Int = 1
    /// When a file is damaged part-way, keep the samples decoded before the damage and
    /// report the result as partial, instead of failing the file.
    public var allowPartial: Bool = false
    public var limits = DecodeLimits()

    public init() {}
}
