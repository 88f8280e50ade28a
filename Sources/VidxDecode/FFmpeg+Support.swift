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
    /// call, the file, FFmpeg's message and what FFmpeg logged.
    static func error(_ kind: DecodeError.Kind, _ code: Int32, call: String, path: String,
                      context: String? = nil) -> DecodeError {
        var text = context.map { $0 + ": " } ?? ""
        text += "\(call) failed: \(message(code))"
        if let logged = takeLoggedError(), !logged.isEmpty { text += " (\(logged))" }
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
    /// The object behind the context's interrupt callback, kept alive as long as it.
    private let interruptOwner: AnyObject?
    /// Takes ownership of an opened context.
    init(takingOwnershipOf pointer: UnsafeMutablePointer<AVFormatContext>, interruptOwner: AnyObject? = nil) {
        self.pointer = pointer
        self.interruptOwner = interruptOwner
    }
    deinit {
        var p: UnsafeMutablePointer<AVFormatContext>? = pointer
        avformat_close_input(&p)
    }
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
}

/// The `AVIOInterruptCB` callback: `opaque` is an unretained `Deadline`.
let deadlineInterruptCallback: @convention(c) (UnsafeMutableRawPointer?) -> Int32 = { opaque in
    guard let opaque else { return 0 }
    return Unmanaged<Deadline>.fromOpaque(opaque).takeUnretainedValue().isExpired ? 1 : 0
}
