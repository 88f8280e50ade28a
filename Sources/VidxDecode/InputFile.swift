import VidxCore
import CFFmpeg
import CFFmpegShim
#if canImport(Glibc)
import Glibc
#endif

/// An opened, probed input: the demuxer, the chosen streams and the probe.
/// Opening classifies every failure into a `DecodeError.Kind`.
final class InputFile {
    let path: String
    let format: FormatContext
    let probe: MediaProbe
    /// Stream indices in the container.
    let videoIndex: Int32?
    let audioIndex: Int32?
    /// Seconds subtracted from every video timestamp: the video stream's start time
    /// (the container's when the stream has none), so the first frame is at 0.
    let origin: Double
    let deadline: Deadline

    /// Whether the container's duration is only FFmpeg's guess from the bit rate (no
    /// stream or container header states it): then it is not held against the data.
    let durationFromBitRate: Bool

    /// Opens and probes `path`, enforcing `limits`.
    /// - Throws: `DecodeError` of kind notFound, unreadable, notMediaFile, corrupt,
    ///   tooLarge or timedOut. A file without video opens fine (see `probe.video`).
    ///
    /// Classification: `unreadable` when the operating system failed to read the bytes
    /// (the byte stream's own error, see `IOContext`); otherwise bytes that a demuxer
    /// recognises with confidence from their content (`recognisedContainer`) are
    /// `corrupt` when they cannot be opened or hold no stream at all, and
    /// `not_media_file` only when nothing recognises them (or they hold streams, but
    /// neither audio nor video: subtitles, data). A demuxer's "end of file" or "I/O
    /// error" while the operating system read fine means the file was cut short: corrupt.
    init(path: String, limits: DecodeLimits, deadline: Deadline) throws {
        _ = FF.installLogCapture
        _ = FF.takeLoggedError()
        self.path = path
        self.deadline = deadline
        try InputFile.checkReadable(path)

        let io: IOContext
        switch IOContext.open(path: path, deadline: deadline) {
        case .success(let opened): io = opened
        case .failure(let code):
            if code.value == FF.exit || deadline.isExpired {
                throw DecodeError(.timedOut, path: path, message: "opening took longer than the \(Deadline.format(limits.timeout)) s limit",
                                  call: "avio_open2", code: code.value)
            }
            if code.value == vidx_averror(ENOENT) {
                throw FF.error(.notFound, code.value, call: "avio_open2", path: path, context: "the file disappeared")
            }
            throw FF.error(.unreadable, code.value, call: "avio_open2", path: path, context: "cannot open the file")
        }
        guard var ctx = avformat_alloc_context() else {
            throw DecodeError(.unreadable, path: path, message: "out of memory opening the file")
        }
        ctx.pointee.interrupt_callback = AVIOInterruptCB(
            callback: deadlineInterruptCallback,
            opaque: Unmanaged.passUnretained(deadline).toOpaque())
        ctx.pointee.pb = io.pointer
        ctx.pointee.flags |= AVFMT_FLAG_CUSTOM_IO
        var optCtx: UnsafeMutablePointer<AVFormatContext>? = ctx
        var ret = avformat_open_input(&optCtx, path, nil, nil)   // frees ctx (not io) on failure
        if ret < 0 {
            if ret == FF.exit || deadline.isExpired {
                throw DecodeError(.timedOut, path: path,
                                  message: "opening took longer than the \(Deadline.format(limits.timeout)) s limit",
                                  call: "avformat_open_input", code: ret)
            }
            if let e = io.readError { throw InputFile.readFailure(path, e, call: "avformat_open_input", when: "opening it") }
            if ret == vidx_averror(EACCES) || ret == vidx_averror(EISDIR) {
                throw FF.error(.unreadable, ret, call: "avformat_open_input", path: path)
            }
            let logged = FF.takeLoggedError()   // before probing again, which logs too
            let recognised = InputFile.recognisedContainer(path, deadline: deadline)
            if deadline.isExpired {
                throw DecodeError(.timedOut, path: path,
                                  message: "opening took longer than the \(Deadline.format(limits.timeout)) s limit",
                                  call: "avformat_open_input", code: ret)
            }
            if let name = recognised {
                throw FF.error(.corrupt, ret, call: "avformat_open_input", path: path,
                               context: "looks like \(name) but its headers are damaged or cut short", logged: logged)
            }
            throw FF.error(.notMediaFile, ret, call: "avformat_open_input", path: path,
                           context: "not a video or audio file FFmpeg recognises", logged: logged)
        }
        ctx = optCtx!
        format = FormatContext(takingOwnershipOf: ctx, io: io, interruptOwner: deadline)

        ret = avformat_find_stream_info(ctx, nil)
        if ret < 0 {
            if ret == FF.exit || deadline.isExpired {
                throw DecodeError(.timedOut, path: path,
                                  message: "probing streams took longer than the \(Deadline.format(limits.timeout)) s limit",
                                  call: "avformat_find_stream_info", code: ret)
            }
            if let e = io.readError { throw InputFile.readFailure(path, e, call: "avformat_find_stream_info", when: "probing its streams") }
            throw FF.error(.corrupt, ret, call: "avformat_find_stream_info", path: path, context: "cannot read stream parameters")
        }
        if let e = io.readError { throw InputFile.readFailure(path, e, call: "avformat_find_stream_info", when: "probing its streams") }
        let containerName = FF.string(ctx.pointee.iformat.pointee.name) ?? "unknown"
        let streams = Array(UnsafeBufferPointer(start: ctx.pointee.streams, count: Int(ctx.pointee.nb_streams)))
            .compactMap { $0 }
        // Text that FFmpeg's "tty" (ANSI art) demuxer accepts, or a container without a
        // single audio or video stream, is not media.
        let hasMedia = streams.contains {
            let t = $0.pointee.codecpar.pointee.codec_type
            return t == AVMEDIA_TYPE_VIDEO || t == AVMEDIA_TYPE_AUDIO
        }
        if streams.isEmpty && containerName != "tty", let name = InputFile.recognisedContainer(path, deadline: deadline) {
            // A container recognised from its bytes whose headers name no stream at all
            // (an MP4 cut inside its moov atom, say) is damaged, not some other kind of file.
            throw DecodeError(.corrupt, path: path,
                              message: "looks like \(name) but holds no stream: its headers are damaged or cut short")
        }
        if containerName == "tty" || !hasMedia {
            throw DecodeError(.notMediaFile, path: path,
                              message: "no audio or video stream (FFmpeg reads it as '\(containerName)')")
        }

        videoIndex = InputFile.bestVideoStream(ctx, streams)
        let audio = av_find_best_stream(ctx, AVMEDIA_TYPE_AUDIO, -1, videoIndex ?? -1, nil, 0)
        audioIndex = audio >= 0 ? audio : nil

        let start = ctx.pointee.start_time != FF.noPTS ? Double(ctx.pointee.start_time) / Double(AV_TIME_BASE) : nil
        var duration = ctx.pointee.duration != FF.noPTS && ctx.pointee.duration > 0
            ? Double(ctx.pointee.duration) / Double(AV_TIME_BASE) : nil
        var probe = MediaProbe(container: containerName, duration: duration, startTime: start,
                               bitRate: ctx.pointee.bit_rate > 0 ? ctx.pointee.bit_rate : nil,
                               video: nil, audio: nil)
        if let v = videoIndex { probe.video = InputFile.videoInfo(streams[Int(v)], index: Int(v)) }
        if let a = audioIndex { probe.audio = InputFile.audioInfo(streams[Int(a)], index: Int(a)) }
        if duration == nil { duration = probe.video?.duration ?? probe.audio?.duration; probe.duration = duration }
        self.probe = probe
        origin = probe.video?.startTime ?? start ?? 0
        durationFromBitRate = ctx.pointee.duration_estimation_method == AVFMT_DURATION_FROM_BITRATE

        if let v = probe.video, limits.maxPixels > 0, v.width * v.height > limits.maxPixels {
            throw DecodeError(.tooLarge, path: path,
                              message: "video is \(v.width)x\(v.height) = \(v.width * v.height) pixels, over the limit of \(limits.maxPixels)")
        }
        if let d = duration, limits.maxDuration > 0, d > limits.maxDuration {
            throw DecodeError(.tooLarge, path: path,
                              message: String(format: "duration %.1f s is over the limit of %.0f s", d, limits.maxDuration))
        }
    }

    var videoStream: UnsafeMutablePointer<AVStream>? {
        videoIndex.map { format.pointer.pointee.streams[Int($0)]! }
    }
    var audioStream: UnsafeMutablePointer<AVStream>? {
        audioIndex.map { format.pointer.pointee.streams[Int($0)]! }
    }

    private static func checkReadable(_ path: String) throws {
        var st = stat()
        if stat(path, &st) != 0 {
            let e = errno
            if e == ENOENT || e == ENOTDIR {
                throw DecodeError(.notFound, path: path, message: "no such file")
            }
            throw DecodeError(.unreadable, path: path, message: "cannot stat: \(String(cString: strerror(e)))")
        }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            throw DecodeError(.unreadable, path: path, message: "is a directory, not a file")
        }
        // A FIFO or a device could block forever or never end: only regular files.
        if (st.st_mode & S_IFMT) != S_IFREG {
            throw DecodeError(.unreadable, path: path, message: "not a regular file (a pipe, socket or device)")
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            throw DecodeError(.unreadable, path: path, message: "cannot open: \(String(cString: strerror(errno)))")
        }
        close(fd)
        if st.st_size == 0 {
            throw DecodeError(.corrupt, path: path, message: "the file is empty (0 bytes): an interrupted copy or upload?")
        }
    }

    /// The error the operating system returned reading the file (mid-file or while
    /// opening), if any: `unreadable` (a failing disk or network mount; worth a retry).
    var readError: Int32? { format.io.readError }

    /// The `unreadable` error for a read that the operating system failed.
    static func readFailure(_ path: String, _ code: Int32, call: String, when: String) -> DecodeError {
        _ = FF.takeLoggedError()
        return DecodeError(.unreadable, path: path,
                           message: "the operating system failed to read the file while \(when): \(FF.message(code)) (\(call))",
                           call: call, code: code)
    }

    /// The container a demuxer recognises with confidence from the file's bytes alone
    /// (not its name), if any: FFmpeg's content probe over as many bytes as
    /// `avformat_open_input` itself probes (up to 1 MiB), scoring more than a matching
    /// file extension would (`AVPROBE_SCORE_EXTENSION`). This one rule decides between
    /// `corrupt` (recognised, but cannot be opened or holds no stream) and
    /// `not_media_file` (nothing recognises it), wherever the file was cut.
    static func recognisedContainer(_ path: String, deadline: Deadline) -> String? {
        guard case .success(let io) = IOContext.open(path: path, deadline: deadline) else { return nil }
        let size = 1 << 20
        var buf = [UInt8](repeating: 0, count: size + Int(AVPROBE_PADDING_SIZE))
        var n = 0
        while n < size {
            let r = buf.withUnsafeMutableBufferPointer { avio_read(io.pointer, $0.baseAddress! + n, Int32(size - n)) }
            if r <= 0 { break }
            n += Int(r)
        }
        _ = FF.takeLoggedError()
        guard n > 0 else { return nil }
        return buf.withUnsafeMutableBufferPointer { p -> String? in
            let noName: StaticString = ""
            var pd = AVProbeData(filename: UnsafeRawPointer(noName.utf8Start).assumingMemoryBound(to: CChar.self),
                                 buf: p.baseAddress, buf_size: Int32(n), mime_type: nil)
            var score: Int32 = 0
            guard let fmt = av_probe_input_format3(&pd, 1, &score),
                  score > AVPROBE_SCORE_EXTENSION else { return nil }
            return FF.string(fmt.pointee.name)
        }
    }

    /// The container's best video stream that is a real video (not cover art).
    private static func bestVideoStream(_ ctx: UnsafeMutablePointer<AVFormatContext>,
                                        _ streams: [UnsafeMutablePointer<AVStream>]) -> Int32? {
        func isMovingVideo(_ s: UnsafeMutablePointer<AVStream>) -> Bool {
            s.pointee.codecpar.pointee.codec_type == AVMEDIA_TYPE_VIDEO
                && (s.pointee.disposition & AV_DISPOSITION_ATTACHED_PIC) == 0
        }
        let best = av_find_best_stream(ctx, AVMEDIA_TYPE_VIDEO, -1, -1, nil, 0)
        if best >= 0 && isMovingVideo(streams[Int(best)]) { return best }
        return streams.firstIndex(where: isMovingVideo).map { Int32($0) }
    }

    private static func videoInfo(_ s: UnsafeMutablePointer<AVStream>, index: Int) -> VideoStreamInfo {
        let par = s.pointee.codecpar.pointee
        let pixFmt = AVPixelFormat(rawValue: par.format)
        let desc = av_pix_fmt_desc_get(pixFmt)
        let pixName = FF.string(av_get_pix_fmt_name(pixFmt)) ?? "unknown"
        let depth = desc.map { Int($0.pointee.comp.0.depth) } ?? 0
        var range = "unknown"
        if par.color_range == AVCOL_RANGE_JPEG || pixName.hasPrefix("yuvj") { range = "full" }
        else if par.color_range == AVCOL_RANGE_MPEG { range = "limited" }
        let rotation = displayRotation(s)
        var sar = FF.rationalValue(s.pointee.sample_aspect_ratio) ?? FF.rationalValue(par.sample_aspect_ratio) ?? 1
        if !(sar > 0.01 && sar < 100) { sar = 1 }
        var dw = Int((Double(par.width) * sar).rounded()), dh = Int(par.height)
        if rotation == 90 || rotation == 270 { swap(&dw, &dh) }
        let tb = s.pointee.time_base
        return VideoStreamInfo(
            streamIndex: index,
            codec: FF.string(avcodec_get_name(par.codec_id)) ?? "unknown",
            width: Int(par.width), height: Int(par.height),
            displayWidth: dw, displayHeight: dh,
            averageFrameRate: FF.rationalValue(s.pointee.avg_frame_rate),
            realFrameRate: FF.rationalValue(s.pointee.r_frame_rate),
            pixelFormat: pixName, bitDepth: depth, colorRange: range, rotation: rotation,
            frameCount: s.pointee.nb_frames > 0 ? s.pointee.nb_frames : nil,
            duration: s.pointee.duration != FF.noPTS && s.pointee.duration > 0 && tb.den > 0
                ? FF.seconds(s.pointee.duration, tb) : nil,
            startTime: s.pointee.start_time != FF.noPTS && tb.den > 0 ? FF.seconds(s.pointee.start_time, tb) : nil)
    }

    private static func audioInfo(_ s: UnsafeMutablePointer<AVStream>, index: Int) -> AudioStreamInfo {
        let par = s.pointee.codecpar.pointee
        let tb = s.pointee.time_base
        return AudioStreamInfo(
            streamIndex: index,
            codec: FF.string(avcodec_get_name(par.codec_id)) ?? "unknown",
            sampleRate: Int(par.sample_rate), channels: Int(par.ch_layout.nb_channels),
            duration: s.pointee.duration != FF.noPTS && s.pointee.duration > 0 && tb.den > 0
                ? FF.seconds(s.pointee.duration, tb) : nil,
            startTime: s.pointee.start_time != FF.noPTS && tb.den > 0 ? FF.seconds(s.pointee.start_time, tb) : nil)
    }

    /// Clockwise degrees (0, 90, 180, 270) that make the picture upright, from the
    /// stream's display matrix (what `ffmpeg`'s autorotate applies).
    private static func displayRotation(_ s: UnsafeMutablePointer<AVStream>) -> Int {
        var size: Int = 0
        guard let data = av_stream_get_side_data(s, AV_PKT_DATA_DISPLAYMATRIX, &size), size >= 36 else { return 0 }
        let angle = data.withMemoryRebound(to: Int32.self, capacity: 9) { av_display_rotation_get($0) }
        guard angle.isFinite else { return 0 }
        var theta = -angle
        theta -= 360 * (theta / 360 + 0.9 / 360).rounded(.down)
        let quarter = Int((theta / 90).rounded()) % 4
        return quarter * 90
    }
}
