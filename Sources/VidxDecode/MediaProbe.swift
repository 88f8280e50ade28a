/// What a media file holds, read from its container and stream headers.
/// Times are in seconds. Absent values are nil (the container did not say).
public struct MediaProbe: Sendable, Codable, Equatable {
    /// FFmpeg's name for the container format, e.g. `mov,mp4,m4a,3gp,3g2,mj2`, `matroska,webm`.
    public var container: String
    /// Duration of the whole file.
    public var duration: Double?
    /// Presentation time of the file's first sample (any stream).
    public var startTime: Double?
    /// Overall bit rate in bits per second.
    public var bitRate: Int64?
    /// The video stream that is decoded (the container's best one), or nil.
    public var video: VideoStreamInfo?
    /// The audio stream that is decoded (the container's best one), or nil when absent.
    public var audio: AudioStreamInfo?

    enum CodingKeys: String, CodingKey {
        case container, duration, startTime = "start_time", bitRate = "bit_rate", video, audio
    }
}

/// The sampled video stream.
public struct VideoStreamInfo: Sendable, Codable, Equatable {
    /// Index of the stream in the container.
    public var streamIndex: Int
    /// Decoder name, e.g. `h264`, `mpeg4`, `mjpeg`, `vp9`.
    public var codec: String
    /// Coded size in pixels, before rotation.
    public var width: Int
    public var height: Int
    /// Size as displayed: rotation and sample aspect ratio applied.
    public var displayWidth: Int
    public var displayHeight: Int
    /// Average frame rate (frames / duration), frames per second.
    public var averageFrameRate: Double?
    /// The lowest frame rate that represents all timestamps exactly ("r_frame_rate").
    public var realFrameRate: Double?
    /// FFmpeg's pixel format name, e.g. `yuv420p`, `yuv420p10le`, `yuvj422p`.
    public var pixelFormat: String
    /// Bits per sample of the first component (8, 10, 12, ...).
    public var bitDepth: Int
    /// `full` (JPEG, 0-255) or `limited` (TV, 16-235); `unknown` when unspecified.
    public var colorRange: String
    /// Clockwise rotation in degrees (0, 90, 180, 270) needed to display the frames
    /// upright, from the stream's display matrix. Sampled frames have it applied.
    public var rotation: Int
    /// Number of frames, when the container states it.
    public var frameCount: Int64?
    /// Duration of the video stream.
    public var duration: Double?
    /// Presentation time of the stream's first frame. Sampled frame times count from it:
    /// the first frame is at 0.
    public var startTime: Double?

    enum CodingKeys: String, CodingKey {
        case startTime = "start_time"
        case streamIndex = "stream_index", codec, width, height
        case displayWidth = "display_width", displayHeight = "display_height"
        case averageFrameRate = "avg_frame_rate", realFrameRate = "r_frame_rate"
        case pixelFormat = "pixel_format", bitDepth = "bit_depth", colorRange = "color_range"
        case rotation, frameCount = "frame_count", duration
    }
}

/// The decoded audio stream.
public struct AudioStreamInfo: Sendable, Codable, Equatable {
    public var streamIndex: Int
    /// Decoder name, e.g. `aac`, `opus`, `vorbis`, `pcm_s16le`.
    public var codec: String
    public var sampleRate: Int
    public var channels: Int
    public var duration: Double?
    /// Presentation time of the stream's first sample; decoded audio starts there.
    public var startTime: Double?

    enum CodingKeys: String, CodingKey {
        case streamIndex = "stream_index", codec, sampleRate = "sample_rate", channels, duration
        case startTime = "start_time"
    }
}
