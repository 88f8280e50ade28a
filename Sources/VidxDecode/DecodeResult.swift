import VidxCore
/// Where a sampled frame came from.
public struct FrameInfo: Sendable, Codable, Equatable {
    /// Index of the frame in the stream, in presentation order from 0.
    public var index: Int
    /// Presentation time in seconds from the start of the file.
    public var time: Double
    /// The target time it was sampled for (nil for `keyframes`).
    public var target: Double?
    /// Whether it is a key frame.
    public var keyframe: Bool
}

/// A sampled frame: where it came from and its pixels.
public struct SampledFrame: Sendable {
    public var info: FrameInfo
    public var image: RGBImage
}

/// Decoded audio, mono float32 in [-1, 1] at `sampleRate`.
public struct AudioTrack: Sendable, Equatable {
    public var sampleRate: Int
    public var samples: [Float]
    public var duration: Double { Double(samples.count) / Double(sampleRate) }
}

/// A summary of the decoded audio.
public struct AudioSummary: Sendable, Codable, Equatable {
    public var sampleRate: Int
    public var samples: Int
    public var seconds: Double
    /// Root mean square and peak absolute value of the samples.
    public var rms: Double
    public var peak: Double
    /// Audio packets or frames that could not be decoded (the report is then partial,
    /// with the damage). In JSON only when not 0, so clean files print as before.
    public var errors: Int = 0

    enum CodingKeys: String, CodingKey { case sampleRate = "sample_rate", samples, seconds, rms, peak, errors }

    public init(sampleRate: Int, samples: Int, seconds: Double, rms: Double, peak: Double, errors: Int = 0) {
        self.sampleRate = sampleRate
        self.samples = samples
        self.seconds = seconds
        self.rms = rms
        self.peak = peak
        self.errors = errors
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        sampleRate = try c.decode(Int.self, forKey: .sampleRate)
        samples = try c.decode(Int.self, forKey: .samples)
        seconds = try c.decode(Double.self, forKey: .seconds)
        rms = try c.decode(Double.self, forKey: .rms)
        peak = try c.decode(Double.self, forKey: .peak)
        errors = try c.decodeIfPresent(Int.self, forKey: .errors) ?? 0
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(sampleRate, forKey: .sampleRate)
        try c.encode(samples, forKey: .samples)
        try c.encode(seconds, forKey: .seconds)
        try c.encode(rms, forKey: .rms)
        try c.encode(peak, forKey: .peak)
        if errors > 0 { try c.encode(errors, forKey: .errors) }
    }
}

/// Counters describing the work done, for benchmarks and logs.
public struct DecodeStats: Sendable, Codable, Equatable {
    /// Video packets read from the container.
    public var packetsRead = 0
    /// Video packets given to the decoder (the rest were skipped unread).
    public var packetsDecoded = 0
    /// Video packets fast mode dropped (runs of B-frames whose neighbour is close enough).
    public var packetsDropped = 0
    /// Frames that came out of the video decoder.
    public var framesDecoded = 0
    /// Frames converted to RGB (= samples).
    public var framesConverted = 0
    /// Times the decoder jumped ahead to a later key frame.
    public var seeks = 0
    /// Wall-clock seconds for the whole file.
    public var seconds = 0.0

    enum CodingKeys: String, CodingKey {
        case packetsRead = "packets_read", packetsDecoded = "packets_decoded", packetsDropped = "packets_dropped"
        case framesDecoded = "frames_decoded", framesConverted = "frames_converted"
        case seeks, seconds
    }
}

/// The outcome of decoding one file (the frames themselves went to the caller's handler).
public struct DecodeReport: Sendable {
    public var probe: MediaProbe
    public var frames: [FrameInfo]
    public var audio: AudioSummary?
    /// Set when the file was damaged part-way and `allowPartial` kept what came before.
    public var damage: DecodeError?
    public var stats: DecodeStats
    public var isPartial: Bool { damage != nil }
}
