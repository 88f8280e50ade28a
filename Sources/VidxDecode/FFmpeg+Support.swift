import VidxCore
import CFFmpeg
import CFFmpegShim
#if canImport(Glibc)
import Glibc
#endif

// The single funnel for FFmpeg's error convention, and the owners of FFmpeg objects.
// Nothing here is public: no C type leaves this module.

enum FF {
    static let eagain = vidx_averror(EAGAIN)
    static let eof = vidx_averror_eof()
    static let invalidData = vidx_averror_invaliddata()
    static let exit = vidx_averror_exit()
    static let noPTS = vidx_av_nopts_value()

    /// FFmpeg's message for a negative return code.
    static func message(_ code: Int32) -> String {
        var buf = [CChar](repeating: 0, count: 256)
        if av_strerror(code, &buf, buf.count) < 0 { return "FFmpeg error \(code)" }
        return string(buffer: buf)
    }

    /// The last error FFmpeg logged on this thread (its log is captured, not printed).
    static func takeLoggedError() -> String? {
        var buf = [CChar](repeating: 0, count: 512)
        return vidx_log_take_last_error(&buf, buf.count) > 0 ? string(buffer: buf) : nil
    }

    /// Installs the log capture once per process.
    static let installLogCapture: Void = {
        vidx_log_capture_install(0)
    }()

    /// Turns a negative FFmpeg return code into a `DecodeError` of `kind`, naming the
    /// call, the file, FFmpeg's message and what FFmpeg logged (`logged`: taken from the
    /// log unless the caller took it earlier).
    static func error(_ kind: FailureClass, _ code: Int32, call: String, path: String,
                      context: String? = nil, logged: String? = takeLoggedError()) -> DecodeError {
        var text = context.map { $0 + ": " } ?? ""
        text += "\(call) failed: \(message(code))"
        if let logged, !logged.isEmpty { text += " (\(logged))" }
        return DecodeError(kind, path: path, message: text, call: call, code: code)
    }

    static func seconds(_ ts: Int64, _ tb: AVRational) -> Double {
        Double(ts) * Double(tb.num) / Double(tb.den)
    }

    static func rationalValue(_ r: AVRational) -> Double? {
        r.num > 0 && r.den > 0 ? Double(r.num) / Double(r.den) : nil
    }

    /// The NUL-terminated text in a C buffer.
    static func string(buffer: [CChar]) -> String {
        String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func string(_ p: UnsafePointer<CChar>?) -> String? {
        p.map { String(cString: $0) }
    }
}

/// Owns an `AVPacket` (wraps `av_packet_alloc` / `av_packet_free`).
final class Packet {
    let pointer: UnsafeMutablePointer<AVPacket>
    init() {
        guard let p = av_packet_alloc() else { fatalError("av_packet_alloc: out of memory") }
        pointer = p
    }
    deinit {
        var p: UnsafeMutablePointer<AVPacket>? = pointer
        av_packet_free(&p)
    }
    /// Moves the reference held by `other` into a new packet, leaving `other` blank.
    static func taking(_ other: Packet) -> Packet {
        let p = Packet()
        av_packet_move_ref(p.pointer, other.pointer)
        return p
    }
}

/// Owns an `AVFrame` (wraps `av_frame_alloc` / `av_frame_free`).
final class Frame {
    let pointer: UnsafeMutablePointer<AVFrame>
    init() {
        guard let p = av_frame_alloc() else { fatalError("av_frame_alloc: out of memory") }
        pointer = p
    }
    deinit {
        var p: UnsafeMutablePointer<AVFrame>? = pointer
        av_frame_free(&p)
    }
    /// Moves the reference held by `other` into a new frame, leaving `other` blank.
    static func taking(_ other: Frame) -> Frame {
        let f = Frame()
        av_frame_move_ref(f.pointer, other.pointer)
        return f
    }
}

/// Owns an opened demuxer (wraps `avformat_open_input` / `avformat_close_input`).
final class FormatContext {
    let pointer: UnsafeMutablePointer<AVFormatContext>
    /// The byte stream the demuxer reads (its `pb`), opened by us (`AVFMT_FLAG_CUSTOM_IO`,
    /// so `avformat_close_input` leaves it open): kept alive, and closed, after the context.
    let io: IOContext
    /// The object behind the context's interrupt callback, kept alive as long as it.
    private let interruptOwner: AnyObject?
    /// Takes ownership of an opened context that reads from `io`.
    init(takingOwnershipOf pointer: UnsafeMutablePointer<AVFormatContext>, io: IOContext, interruptOwner: AnyObject? = nil) {
        self.pointer = pointer
        self.io = io
        self.interruptOwner = interruptOwner
    }
    deinit {
        var p: UnsafeMutablePointer<AVFormatContext>? = pointer
        avformat_close_input(&p)
        // `io` is released (and closed) after this body, once the demuxer is gone.
    }
}

/// Owns an opened byte stream (wraps `avio_open2` / `avio_closep`).
///
/// The decoder opens its input itself rather than letting `avformat_open_input` do it,
/// so that after a failure it can tell the operating system failing to read the file
/// (`readError`: `read(2)` failed, the stream keeps the error) from a demuxer that met
/// the end of a file cut short (only `eof_reached` is set): the first is `unreadable`
/// and may be retried, the second is `corrupt` and will fail the same way again.
final class IOContext {
    let pointer: UnsafeMutablePointer<AVIOContext>
    /// The object behind the interrupt callback, kept alive as long as the stream.
    private let interruptOwner: AnyObject?

    /// Opens `path` for reading through FFmpeg's `file` protocol (never another protocol,
    /// whatever the name looks like: the path was checked to be a regular file), with
    /// `deadline` as the interrupt callback of every blocking read.
    /// - Returns: the stream, or FFmpeg's negative error code.
    static func open(path: String, deadline: Deadline) -> Result<IOContext, FFmpegCode> {
        var pb: UnsafeMutablePointer<AVIOContext>?
        var callback = AVIOInterruptCB(callback: deadlineInterruptCallback,
                                       opaque: Unmanaged.passUnretained(deadline).toOpaque())
        let ret = avio_open2(&pb, "file:" + path, AVIO_FLAG_READ, &callback, nil)
        guard ret >= 0, let pb else { return .failure(FFmpegCode(value: ret < 0 ? ret : FF.invalidData)) }
        return .success(IOContext(takingOwnershipOf: pb, interruptOwner: deadline))
    }

    private init(takingOwnershipOf pointer: UnsafeMutablePointer<AVIOContext>, interruptOwner: AnyObject) {
        self.pointer = pointer
        self.interruptOwner = interruptOwner
    }
    deinit {
        var p: UnsafeMutablePointer<AVIOContext>? = pointer
        avio_closep(&p)
    }

    /// The error a read from the operating system returned (an `AVERROR(errno)` such as
    /// EIO), if any; nil at a mere end of file or when the deadline interrupted a read.
    var readError: Int32? {
        let e = pointer.pointee.error
        return e < 0 && e != FF.eof && e != FF.exit ? e : nil
    }
}

/// A negative FFmpeg return code, as a `Result` failure.
struct FFmpegCode: Error {
    let value: Int32
}

/// Owns a codec context (wraps `avcodec_alloc_context3` / `avcodec_free_context`).
final class CodecContext {
    let pointer: UnsafeMutablePointer<AVCodecContext>
    init?(codec: UnsafePointer<AVCodec>?) {
        guard let p = avcodec_alloc_context3(codec) else { return nil }
        pointer = p
    }
    deinit {
        var p: UnsafeMutablePointer<AVCodecContext>? = pointer
        avcodec_free_context(&p)
    }
}

/// A wall-clock deadline that FFmpeg's blocking I/O checks through its interrupt
/// callback, so that a stalled read cannot hang a batch.
final class Deadline {
    let limit: Double?
    private let start = ContinuousClock.now

    init(seconds: Double?) {
        limit = seconds.flatMap { $0 > 0 ? $0 : nil }
    }
    var elapsed: Double {
        let d = ContinuousClock.now - start
        return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }
    var isExpired: Bool {
        guard let limit else { return false }
        return elapsed > limit
    }
    /// A limit in seconds as a person would write it: `600`, `0.5`.
    static func format(_ seconds: Double) -> String {
        String(format: "%g", seconds)
    }
}

/// The `AVIOInterruptCB` callback: `opaque` is an unretained `Deadline`.
let deadlineInterruptCallback: @convention(c) (UnsafeMutableRawPointer?) -> Int32 = { opaque in
    guard let opaque else { return 0 }
    return Unmanaged<Deadline>.fromOpaque(opaque).takeUnretainedValue().isExpired ? 1 : 0
}
