// The words every stage's records and reports share. Each enum's raw values are the
// strings the files hold; the tests hold every JSON Schema's enum equal to these.

/// What happened to one video in a stage: recorded per video in features and codes files,
/// extract stats and decode reports (Schemas/video-record.schema.json).
public enum VideoStatus: String, Codable, Sendable, CaseIterable {
    /// Processed in full.
    case ok
    /// Processed from what could be read: the file is damaged part-way (the record's
    /// error says where); its features are kept.
    case partial
    /// Not processed; the record's error says why. A failed video has no features and no codes.
    case failed
}

/// Why a video failed or was only partly processed: one vocabulary for decode, extract,
/// import and encode, so that a retry policy can key on it.
///
/// Transient classes (`isTransient`) may succeed if tried again (a disk or mount that
/// failed a read, a deadline); every other class fails the same way until the file or
/// the bundle changes.
public enum FailureClass: String, Codable, Sendable, CaseIterable {
    // Decode (VidxDecode's `DecodeError`).
    /// No file at that path.
    case notFound = "not_found"
    /// The path exists but cannot be read: permissions, a directory or a pipe, or the
    /// operating system failing a read (EIO from a disk or a network mount), at open or
    /// mid-file. Never the file's own content: a retry may cure it.
    case unreadable
    /// The bytes are not a container FFmpeg recognises with confidence from their content
    /// (a recognised container that cannot be opened is `corrupt`), or a container with
    /// neither audio nor video.
    case notMediaFile = "not_media_file"
    /// A media file without any video stream (audio only, subtitles, ...).
    case noVideoStream = "no_video_stream"
    /// The video codec has no decoder in this FFmpeg build (or an unknown but well-formed
    /// FourCC), or the decoder refused to open.
    case unsupportedCodec = "unsupported_codec"
    /// The container or the stream is damaged or cut short (including empty files, a
    /// damaged codec identifier, and a video that yields no frame at all).
    case corrupt
    /// Over the configured pixel or duration limit.
    case tooLarge = "too_large"
    /// Over the configured per-video wall-clock limit.
    case timedOut = "timed_out"
    // Written by vidx-decode itself.
    /// A sampled frame could not be written (`vidx-decode --out`).
    case writeFailed = "write_failed"
    /// An unexpected error inside the tool.
    case `internal`
    // Extract and import.
    /// The bundle names an extractor this build cannot run.
    case unknownExpert = "unknown_expert"
    /// A built-in expert failed on the video.
    case expertFailed = "expert_failed"
    /// Features that break their spec: NaN or infinity, malformed tensors, an imported
    /// file that cannot be used, or an encoder output that is not finite.
    case badFeatures = "bad_features"
    /// No expert produced a single feature row: nothing to encode.
    case noFeatures = "no_features"
    // Encode.
    /// An expert's width differs from the bundle's.
    case wrongWidth = "wrong_width"
    // The pipeline (vidx-pipeline unit).
    /// The video crashed the extract process (a fault in FFmpeg or an expert): the unit
    /// was run again without it. Permanent: tried again only when the file changes.
    case crashed

    /// The classes the decode stage reports for a file (`DecodeError.kind`).
    public static let decode: [FailureClass] = [.notFound, .unreadable, .notMediaFile, .noVideoStream,
                                                .unsupportedCodec, .corrupt, .tooLarge, .timedOut]
    /// The classes a `vidx-decode` report line can carry (Schemas/decode-report.schema.json).
    public static let decodeReport: [FailureClass] = decode + [.writeFailed, .internal]
    /// The classes the extract stage records (features file, Schemas/extract-stats.schema.json).
    public static let extract: [FailureClass] = decode + [.unknownExpert, .expertFailed, .badFeatures, .noFeatures]
    /// The classes the encoder itself records (`EncodeError.kind`).
    public static let encoder: [FailureClass] = [.wrongWidth, .badFeatures, .unknownExpert, .noFeatures]
    /// The classes a codes file can carry: extraction's, kept, and the encoder's own.
    public static let encode: [FailureClass] = extract + [.wrongWidth]

    /// The classes the pipeline's quarantine and run report can carry: every stage's, and
    /// its own `crashed`.
    public static let pipeline: [FailureClass] = allCases

    /// Whether trying again may succeed without the file or the bundle changing.
    public var isTransient: Bool { self == .unreadable || self == .timedOut }
}

/// How an expert's feature rows are placed in time (Schemas/model-bundle.schema.json).
public enum ExpertTiming: String, Codable, Sendable, CaseIterable {
    /// Each row has a time window; its midpoint gives the token's position.
    case windowed
    /// Rows have no time: every temporal token gets position 1.
    case untimed = "none"
}

// In messages, the words as the files spell them.
extension VideoStatus: CustomStringConvertible {
    public var description: String { rawValue }
}

extension FailureClass: CustomStringConvertible {
    public var description: String { rawValue }
}
