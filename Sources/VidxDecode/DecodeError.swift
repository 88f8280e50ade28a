/// Why a video could not be decoded. Every error names the file.
public struct DecodeError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The class of the failure. Stable strings: they appear in JSON reports and logs.
    public enum Kind: String, Sendable, Codable, CaseIterable {
        /// No file at that path.
        case notFound = "not_found"
        /// The path exists but cannot be read: permissions, a directory or a pipe, or the
        /// operating system failing a read (EIO from a disk or a network mount), at open or
        /// mid-file. The only class a retry may cure; never the file's own content.
        case unreadable
        /// The bytes are not a container FFmpeg recognises with confidence from their
        /// content (a recognised container that cannot be opened is `corrupt`).
        case notMediaFile = "not_media_file"
        /// A media file without any video stream (audio only, subtitles, ...).
        case noVideoStream = "no_video_stream"
        /// The video codec has no decoder in this FFmpeg build (or an unknown but
        /// well-formed FourCC), or the decoder refused to open.
        case unsupportedCodec = "unsupported_codec"
        /// The container or the stream is damaged or cut short (including empty files, a
        /// damaged codec identifier, and a video that yields no frame at all).
        case corrupt
        /// Over the configured pixel or duration limit.
        case tooLarge = "too_large"
        /// Over the configured per-video wall-clock limit.
        case timedOut = "timed_out"
    }

    public let kind: Kind
    /// The input's path as given.
    public let path: String
    /// What went wrong, in words a person can act on.
    public let message: String
    /// The FFmpeg function that failed, if any (e.g. `avformat_open_input`).
    public let call: String?
    /// FFmpeg's negative error code, if any.
    public let code: Int32?

    public init(_ kind: Kind, path: String, message: String, call: String? = nil, code: Int32? = nil) {
        self.kind = kind
        self.path = path
        self.message = message
        self.call = call
        self.code = code
    }

    public var description: String { "\(path): \(kind.rawValue): \(message)" }
}
