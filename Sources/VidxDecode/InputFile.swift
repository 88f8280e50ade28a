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

    /// Opens and probes `path`, enforcing `limits`.
    /// - Throws: `DecodeError` of kind notFound, unreadable, notMediaFile, corrupt,
    ///   tooLarge or timedOut. A file without video opens fine (see `probe.video`).
    init(path: String, limits: DecodeLimits, deadline: Deadline) throws {
        _ = FF.installLogCapture
        _ = FF.takeLoggedError()
        self.path = path
        self.deadline = deadline
        try InputFile.checkReadable(path)

        guard var ctx = avformat_alloc_context() else {
            throw DecodeError(.unreadable, path: path, message: "out of memory opening the file")
        }
        ctx.pointee.interrupt_callback = AVIOInterruptCB(
            callback: deadlineInterruptCallback,
            opaque: Unmanaged.passUnretained(deadline).toOpaque())
        var optCtx: UnsafeMutablePointer<AVFormatContext>? = ctx
        var ret = avformat_open_input(&optCtx, path, nil, nil)   // frees ctx on failure
        if ret < 0 {
            if ret == FF.exit || deadline.isExpired {
                throw DecodeError(.timedOut, path: path,
                                  message: "opening took longer than the \(limits.timeout) s limit",
                                  call: "avformat_open_input", code: ret)
            }
            if ret == vidx_averror(EACCES) || ret == vidx_averror(EISDIR) {
                throw FF.error(.unreadable, ret, call: "avformat_open_input", path: path)
            }
            if ret == vidx_averror(EIO) {
                throw FF.error(.unreadable, ret, call: "avformat_open_input", path: path, context: "read error")
            }
            if let name = InputFile.recognisedContainer(path) {
                throw FF.error(.corrupt, ret, call: "avformat_open_input", path: path,
                               context: "looks like \(name) but its headers are damaged or cut short")
            }
            throw FF.error(.notMediaFile, ret, call: "avformat_open_input", path: path,
                           context: "not a video or audio file FFmpeg recognises")
        }
        ctx = optCtx!
        format = FormatContext(takingOwnershipOf: ctx, interruptOwner: deadline)

        ret = avformat_find_stream_info(ctx, nil)
        if ret < 0 {
            if ret == FF.exit || deadline.isExpired {
                throw DecodeError(.timedOut, path: path, message: "probing streams took longer than the \(limits.timeout) s limit",
                                  call: "avformat_find_stream_info", code: ret)
            }
            throw FF.error(.corrupt, ret, call: "avformat_find_stream_info", path: path, context: "cannot read stream parameters")
        }
        let containerName = FF.string(ctx.pointee.iformat.pointee.name) ?? "unknown"
        let streams = Array(UnsafeBufferPointer(start: ctx.pointee.streams, count: Int(ctx.pointee.nb_streams)))
            .compactMap { $0 }
        // Text that FFmpeg's "tty" (ANSI art) demuxer accepts, or a container without a
        // single audio or video stream, is not media.
        let hasMedia = streams.contains {
            let t = $0.pointee.codecpar.pointee.codec_type
            return t == AVMEDIA_TYPE_VIDEO || t == AVMEDIA_TYPE_AUDIO
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

    /// The container FFmpeg recognises from the first bytes of the file alone (not its
    /// name), if it is confident.
    static func recognisedContainer(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let size = 1 << 16
        var buf = [UInt8](repeating: 0, count: size + Int(AVPROBE_PADDING_SIZE))
        let n = read(fd, &buf, size)
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
