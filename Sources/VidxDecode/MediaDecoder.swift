import VidxCore
import CFFmpeg

/// The decode stage's library entry points: probe a file, sample its frames and audio.
///
/// Decoding follows FFmpeg's demux_decode example (read a packet, send it, drain frames
/// until EAGAIN, flush at the end), with two exact savings and one optional one:
/// - groups of pictures that hold no sample are dropped before the decoder sees them
///   (`DecodeOptions.seekAhead`), and non-reference frames that cannot be a sample are
///   skipped inside the decoder: neither ever changes which frame is sampled;
/// - only sampled frames are converted to RGB;
/// - fast mode (`DecodeOptions.fast`) also drops runs of B-frames whose neighbouring
///   anchor frame is within half a sampling interval of the targets they cover.
public enum MediaDecoder {
    /// Reads the container and stream headers of `path`.
    /// - Throws: `DecodeError` (not found, unreadable, not a media file, corrupt,
    ///   too large, timed out). A file without video is not an error here.
    public static func probe(path: String, limits: DecodeLimits = DecodeLimits()) throws -> MediaProbe {
        try InputFile(path: path, limits: limits, deadline: Deadline(seconds: limits.timeout)).probe
    }

    /// Decodes `path`, handing each sampled frame to `onFrame` as soon as it is known
    /// and each chunk of decoded audio to `onAudio`, so that memory stays bounded
    /// whatever the length of the video.
    /// - Returns: the probe, the sampled frames' times and indices, an audio summary
    ///   (nil when not asked for or absent) and, for a damaged file decoded with
    ///   `allowPartial`, the damage.
    /// - Throws: `DecodeError`; errors thrown by the handlers are passed through.
    public static func decode(path: String, options: DecodeOptions = DecodeOptions(),
                              onFrame: (SampledFrame) throws -> Void,
                              onAudio: (([Float]) throws -> Void)? = nil) throws -> DecodeReport {
        let deadline = Deadline(seconds: options.limits.timeout)
        let input = try InputFile(path: path, limits: options.limits, deadline: deadline)
        var report = try withoutActuallyEscaping(onFrame) { onFrame in
            try VideoSampler(input: input, options: options, onFrame: onFrame, onAudio: onAudio).run()
        }
        report.stats.seconds = deadline.elapsed
        return report
    }

    /// Decodes `path` and returns every sampled frame and the whole audio track in memory.
    /// Convenient for short clips and tests; batch code should use the streaming form.
    public static func decodeAll(path: String, options: DecodeOptions = DecodeOptions())
        throws -> (report: DecodeReport, frames: [SampledFrame], audio: AudioTrack?) {
        var frames: [SampledFrame] = []
        var samples: [Float] = []
        let report = try decode(path: path, options: options,
                                onFrame: { frames.append($0) },
                                onAudio: options.audio ? { samples += $0 } : nil)
        let audio = report.audio.map { AudioTrack(sampleRate: $0.sampleRate, samples: samples) }
        return (report, frames, audio)
    }
}

/// One pass over one file: demux, gate packets, decode, select, convert.
final class VideoSampler {
    private let input: InputFile
    private let options: DecodeOptions
    private let path: String
    private let codec: CodecContext
    private let stream: UnsafeMutablePointer<AVStream>
    private let timeBase: AVRational
    private let duration: Double?
    private let frameDuration: Double
    private var selector: FrameSelector
    private let keyframesOnly: Bool
    private let converter: FrameConverter
    private let onFrame: (SampledFrame) throws -> Void
    private var audio: AudioDecoder?

    // The frame most recently offered to the selector, kept while it may be a sample.
    private var pending: (frame: Frame, time: Double, index: Int, key: Bool)?
    private var lastKeyframeEmitted = -Double.infinity

    // Packets read but not yet sent: a short look-ahead, or a whole group of pictures
    // while it is unknown whether it holds a sample.
    private struct Queued {
        let packet: Packet
        let time: Double?
        let key: Bool
        let size: Int
        /// Shown before a packet read earlier (a B-frame, in practice); then `run` is the
        /// pair of anchor frames (frames shown in the order they are read) it lies between.
        let run: (from: Double?, to: Double)?
    }
    private var queue: [Queued] = []
    private var queueBytes = 0
    private var holdingGroup = false
    private var decoderFed = false
    private static let lookahead = 8
    private static let maxHeldBytes = 64 << 20

    // Anchors: packets shown in the order they are read (I and P frames, in practice).
    private var previousAnchor: Double?
    private var lastAnchor: Double?
    private let halfInterval: Double?

    private var presentation = PresentationOrder()
    private var decodedCount = 0
    private var stats = DecodeStats()
    private var frames: [FrameInfo] = []
    private var damage: DecodeError?
    private var lastFrameTime: Double?
    private var lastPacketEnd: Double?
    /// The end of the data read so far over every stream, from the container's start.
    private var dataEnd: Double?
    private var videoDone = false
    private let frame = Frame()

    init(input: InputFile, options: DecodeOptions,
         onFrame: @escaping (SampledFrame) throws -> Void,
         onAudio: (([Float]) throws -> Void)?) throws {
        self.input = input
        self.options = options
        self.path = input.path
        self.onFrame = onFrame
        guard let stream = input.videoStream, let info = input.probe.video else {
            let what = input.probe.audio != nil ? "it has audio only" : "it has no video stream"
            throw DecodeError(.noVideoStream, path: input.path, message: "no video stream to sample: \(what)")
        }
        self.stream = stream
        timeBase = stream.pointee.time_base
        let par = stream.pointee.codecpar!
        guard let decoder = avcodec_find_decoder(par.pointee.codec_id) else {
            if par.pointee.codec_id == AV_CODEC_ID_NONE {
                throw VideoSampler.unknownCodec(tag: par.pointee.codec_tag, path: input.path)
            }
            throw DecodeError(.unsupportedCodec, path: path,
                              message: "no decoder for video codec '\(info.codec)' in this FFmpeg build",
                              call: "avcodec_find_decoder")
        }
        guard let ctx = CodecContext(codec: decoder) else {
            throw DecodeError(.unsupportedCodec, path: path, message: "cannot allocate a decoder for '\(info.codec)'")
        }
        var ret = avcodec_parameters_to_context(ctx.pointer, par)
        guard ret >= 0 else { throw FF.error(.unsupportedCodec, ret, call: "avcodec_parameters_to_context", path: path) }
        ctx.pointer.pointee.pkt_timebase = timeBase
        ctx.pointer.pointee.thread_count = Int32(max(1, options.threads))
        keyframesOnly = options.sampling == .keyframes
        if keyframesOnly { ctx.pointer.pointee.skip_frame = AVDISCARD_NONKEY }
        ret = avcodec_open2(ctx.pointer, decoder, nil)
        guard ret >= 0 else {
            throw FF.error(.unsupportedCodec, ret, call: "avcodec_open2", path: path,
                           context: "the '\(info.codec)' decoder refused this stream")
        }
        codec = ctx
        // Targets span what the container promises: its duration, or the stream's frame
        // count when that is longer (an AVI whose index was cut off underestimates its
        // duration from the bit rate, but its header still counts every frame).
        var promised = input.probe.duration
        if let n = info.frameCount, let fps = info.averageFrameRate, fps > 0 {
            promised = max(promised ?? 0, Double(n) / fps)
        }
        duration = promised
        frameDuration = 1 / (info.averageFrameRate ?? info.realFrameRate ?? 25)
        selector = FrameSelector(policy: options.sampling, duration: duration)
        halfInterval = options.sampling.interval(duration: duration).map { $0 / 2 }
        converter = FrameConverter(width: options.width, height: options.height, fit: options.fit,
                                   rotation: info.rotation, path: path)
        if options.audio, let onAudio, let a = input.audioStream {
            audio = AudioDecoder(stream: a, sampleRate: options.audioSampleRate, path: path, sink: onAudio)
        }
    }

    func run() throws -> DecodeReport {
        let fmt = input.format.pointer
        let packet = Packet()
        let videoIndex = stream.pointee.index
        let audioIndex = input.audioIndex
        var reachedEnd = false
        while damage == nil {
            try checkDeadline()
            if videoDone && audio == nil { break }
            let ret = av_read_frame(fmt, packet.pointer)
            if ret < 0, let e = input.readError {
                // The operating system failed to read the file: not damage in the file,
                // and not a partial result either (a retry may well read it all).
                throw InputFile.readFailure(path, e, call: "av_read_frame", when: "decoding, after \(describe(lastFrameTime))")
            }
            if ret == FF.eof { reachedEnd = true; break }
            if ret == FF.exit { try checkDeadline() }
            if ret < 0 {
                recordDamage(FF.error(.corrupt, ret, call: "av_read_frame", path: path,
                                      context: "read error after \(describe(lastFrameTime))"))
                break
            }
            defer { av_packet_unref(packet.pointer) }
            noteDataEnd(packet.pointer.pointee)
            if packet.pointer.pointee.stream_index == videoIndex {
                if !videoDone { try handleVideoPacket(packet) }
            } else if let audio, packet.pointer.pointee.stream_index == audioIndex {
                try audio.decode(packet.pointer)
            }
        }
        if damage == nil && !videoDone {
            // End of input: whatever is held may hold a sample; then drain the decoder.
            holdingGroup = false
            try sendQueued(keeping: 0)
            if damage == nil { try send(nil) }
        }
        if let audio, damage == nil || reachedEnd { try audio.decode(nil) }
        try finishSelection()
        if damage == nil && reachedEnd && !videoDone { checkTruncation() }
        // Audio damage never stops the video; it is reported once decoding is over, after
        // any video damage (which, found first, is the one reported).
        if let audio, let audioDamage = audio.damage { recordDamage(audioDamage) }
        if let damage {
            if !options.allowPartial || frames.isEmpty { throw damage }
        } else if frames.isEmpty {
            // Whatever the selector's state: a video without a single sample is of no
            // use downstream (its features would be empty), so it is never `ok`.
            throw noSampleError()
        }
        return DecodeReport(probe: input.probe, frames: frames, audio: audio?.summary,
                            damage: damage, stats: stats)
    }

    /// Why a video gave no sample at all, from the work counters.
    private func noSampleError() -> DecodeError {
        let message: String
        if stats.packetsRead == 0 {
            message = "no frame: the video stream holds no packet (the file is cut short or its index is damaged)"
        } else if case .uniform = options.sampling, duration == nil {
            message = "no frame sampled: \(options.sampling) needs the video's duration, which the file does not state"
        } else if stats.framesDecoded == 0 {
            message = "no frame could be decoded from the \(stats.packetsRead) packet(s) of the video stream"
        } else {
            let end = (lastFrameTime ?? 0) + frameDuration
            let first = options.sampling.firstTarget(atOrAfter: 0, duration: duration)
            message = String(format: "no frame sampled: the %d decoded frame(s) end at %.2f s, before the first target of %@%@",
                             stats.framesDecoded, end, options.sampling.description,
                             first.map { String(format: " (%.2f s)", $0) } ?? "")
        }
        return DecodeError(.corrupt, path: path, message: message)
    }

    /// A stream whose codec FFmpeg does not know at all (`AV_CODEC_ID_NONE`): an unknown
    /// but well-formed FourCC (four printable characters, e.g. a proprietary codec) is
    /// `unsupported_codec`; no tag, or one that is not text, means the codec field itself
    /// is damaged: `corrupt`. (Matroska and WebM expose no tag for their codec-id
    /// strings; FFmpeg knows every video codec Matroska defines, so an unknown one there
    /// is damage too.)
    static func unknownCodec(tag: UInt32, path: String) -> DecodeError {
        let bytes = (0..<4).map { UInt8(truncatingIfNeeded: tag >> (8 * UInt32($0))) }
        let wellFormed = bytes.allSatisfy { (0x20...0x7e).contains($0) } && bytes.contains { $0 != 0x20 }
        if wellFormed {
            let fourcc = String(decoding: bytes, as: UTF8.self)
            return DecodeError(.unsupportedCodec, path: path,
                               message: "no decoder for video codec '\(fourcc)' (a FourCC FFmpeg does not know)",
                               call: "avcodec_find_decoder")
        }
        let shown = tag == 0 ? "no codec tag" : "codec tag " + bytes.map { String(format: "%02x", $0) }.joined(separator: " ")
        return DecodeError(.corrupt, path: path,
                           message: "the video stream's codec identifier is damaged (\(shown)): FFmpeg does not know what it is",
                           call: "avcodec_find_decoder")
    }

    // MARK: Packets

    private func handleVideoPacket(_ packet: Packet) throws {
        let p = packet.pointer.pointee
        stats.packetsRead += 1
        let ts = p.pts != FF.noPTS ? p.pts : p.dts
        if p.pts != FF.noPTS { presentation.insert(p.pts) }
        let time = ts != FF.noPTS ? FF.seconds(ts, timeBase) - input.origin : nil
        let key = (p.flags & AV_PKT_FLAG_KEY) != 0
        if let t = time {
            let end = t + (p.duration > 0 ? FF.seconds(p.duration, timeBase) : frameDuration)
            lastPacketEnd = max(lastPacketEnd ?? end, end)
        }
        if keyframesOnly {
            if key { try sendPacket(packet.pointer, skipNonReference: false) }
            return
        }
        if selector.isDone { videoDone = true; return }
        if options.seekAhead, key, let t = time, let next = selector.nextTarget,
           t <= next + SamplingPolicy.epsilon {
            // This key frame is at or before the next wanted time: nothing before it
            // (in decoding order) can be a sample. Drop what is held, reset the decoder.
            if !queue.isEmpty {
                stats.seeks += 1
                queue.removeAll(keepingCapacity: true)
                queueBytes = 0
            }
            if decoderFed {
                avcodec_flush_buffers(codec.pointer)
                decoderFed = false
            }
            previousAnchor = nil
            lastAnchor = nil
            holdingGroup = true
        }
        var run: (from: Double?, to: Double)?
        if let t = time {
            if let last = lastAnchor, t < last - SamplingPolicy.epsilon {
                run = (previousAnchor, last)
            } else {
                previousAnchor = lastAnchor
                lastAnchor = t
            }
        }
        let size = Int(p.size)
        queue.append(Queued(packet: Packet.taking(packet), time: time, key: key, size: size, run: run))
        queueBytes += size
        if holdingGroup {
            // The next key frame is past the next wanted time: the sample is in the held
            // group, decode it. Also give up holding when the group grows too large.
            let past = time.map { t in selector.nextTarget.map { t > $0 + SamplingPolicy.epsilon } ?? true } ?? true
            if (key && queue.count > 1 && past) || queueBytes > VideoSampler.maxHeldBytes {
                holdingGroup = false
            }
        }
        if !holdingGroup { try sendQueued(keeping: VideoSampler.lookahead) }
    }

    /// Sends queued packets, oldest first, until `keeping` remain.
    private func sendQueued(keeping: Int) throws {
        var sent = 0
        defer {
            if sent > 0 {
                queue.removeFirst(sent)
            }
        }
        while queue.count - sent > keeping && damage == nil && !videoDone {
            let q = queue[sent]
            queueBytes -= q.size
            sent += 1
            if options.fast && mayDropRun(q) {
                stats.packetsDropped += 1
                continue
            }
            try sendPacket(q.packet.pointer, skipNonReference: cannotBeSample(q, after: sent))
        }
    }

    /// Fast mode drops a whole run of reordered frames (B-frames) between two anchors
    /// when the anchor before the run is within half a sampling interval of every target
    /// the run covers: the sample for those targets is then that anchor, close enough.
    /// The whole run or none of it is dropped, so no decoded frame misses a reference
    /// inside its run.
    private func mayDropRun(_ q: Queued) -> Bool {
        guard let run = q.run, let from = run.from, let half = halfInterval, selector.hasSeenFrame else { return false }
        let eps = SamplingPolicy.epsilon
        // The first target at or after the run's start; if it is before the closing
        // anchor, every target in [from, to) must be within `half` of `from`.
        guard let n = options.sampling.firstTarget(atOrAfter: from, duration: duration), n < run.to - eps else {
            return true
        }
        var last = n
        var t = n
        while let next = options.sampling.firstTarget(atOrAfter: t + 2 * eps, duration: duration), next < run.to - eps {
            last = next
            t = next
        }
        return last - from <= half + eps
    }

    /// A non-reference frame can be skipped when another frame read after it is shown
    /// after it but still before (or at) the next target: the sample for that target is
    /// then a later frame, whatever this one holds.
    private func cannotBeSample(_ q: Queued, after position: Int) -> Bool {
        guard selector.hasSeenFrame, !q.key, let p = q.time else { return false }
        guard let n = options.sampling.firstTarget(atOrAfter: p, duration: duration) else { return true }
        let eps = SamplingPolicy.epsilon
        for later in queue[position...] {
            if let t = later.time, t > p + eps, t <= n + eps { return true }
        }
        return false
    }

    private func sendPacket(_ packet: UnsafeMutablePointer<AVPacket>, skipNonReference: Bool) throws {
        if !keyframesOnly {
            codec.pointer.pointee.skip_frame = skipNonReference ? AVDISCARD_NONREF : AVDISCARD_DEFAULT
        }
        stats.packetsDecoded += 1
        decoderFed = true
        try send(packet)
    }

    /// Sends one packet (nil: end of stream) and drains the frames it releases.
    ///
    /// As in demux_decode.c, every send is followed by a drain to EAGAIN, so the decoder
    /// always accepts the next packet: EAGAIN from a send cannot happen and is treated as
    /// the decoder failing, never retried in a loop.
    private func send(_ packet: UnsafeMutablePointer<AVPacket>?) throws {
        let ret = avcodec_send_packet(codec.pointer, packet)
        if ret < 0 && !(packet == nil && ret == FF.eof) {
            recordDamage(FF.error(.corrupt, ret, call: "avcodec_send_packet", path: path,
                                  context: "damaged video data after \(describe(lastFrameTime))"))
            return
        }
        try receiveFrames()
    }

    /// Drains the decoder until EAGAIN or end of stream. Frames that come out after
    /// damage was found or once every sample is taken are unreferenced unread: the
    /// drain is always complete, whatever the state.
    private func receiveFrames() throws {
        while true {
            let ret = avcodec_receive_frame(codec.pointer, frame.pointer)
            if ret == FF.eagain || ret == FF.eof { return }
            if ret < 0 {
                recordDamage(FF.error(.corrupt, ret, call: "avcodec_receive_frame", path: path,
                                      context: "damaged video data after \(describe(lastFrameTime))"))
                return
            }
            defer { av_frame_unref(frame.pointer) }
            if damage == nil && !videoDone { try handleFrame() }
        }
    }

    // MARK: Frames

    private func handleFrame() throws {
        let f = frame.pointer.pointee
        stats.framesDecoded += 1
        decodedCount += 1
        var ts = f.best_effort_timestamp
        if ts == FF.noPTS { ts = f.pts }
        let time: Double
        if ts != FF.noPTS {
            time = FF.seconds(ts, timeBase) - input.origin
        } else {
            time = (lastFrameTime ?? -frameDuration) + frameDuration
        }
        if (f.flags & AV_FRAME_FLAG_CORRUPT) != 0 || f.decode_error_flags != 0 {
            recordDamage(DecodeError(.corrupt, path: path,
                                     message: "damaged video frame at \(describe(time))"))
            return
        }
        let limits = options.limits
        if limits.maxPixels > 0 && Int(f.width) * Int(f.height) > limits.maxPixels {
            throw DecodeError(.tooLarge, path: path,
                              message: "a frame of \(f.width)x\(f.height) is over the limit of \(limits.maxPixels) pixels")
        }
        lastFrameTime = time
        let index = ts != FF.noPTS ? presentation.index(of: ts) ?? (decodedCount - 1) : decodedCount - 1
        let key = f.key_frame != 0

        if keyframesOnly {
            if key && time > lastKeyframeEmitted + SamplingPolicy.epsilon {
                lastKeyframeEmitted = time
                try emit(frame.pointer, FrameInfo(index: index, time: time, target: nil, keyframe: key))
            }
            return
        }
        let d = selector.offer(time: time)
        if d.ignored { return }
        if let target = d.emitPending, let p = pending {
            try emit(p.frame.pointer, FrameInfo(index: p.index, time: p.time, target: target, keyframe: p.key))
        }
        if let target = d.emitOffered {
            try emit(frame.pointer, FrameInfo(index: index, time: time, target: target, keyframe: key))
        }
        pending = d.keepOffered ? (Frame.taking(frame), time, index, key) : nil
        if selector.isDone { videoDone = true }
    }

    private func finishSelection() throws {
        guard !keyframesOnly else { return }
        let end = lastFrameTime.map { $0 + frameDuration }
        if let target = selector.finish(endTime: end), let p = pending {
            try emit(p.frame.pointer, FrameInfo(index: p.index, time: p.time, target: target, keyframe: p.key))
        }
        pending = nil
    }

    private func emit(_ f: UnsafeMutablePointer<AVFrame>, _ info: FrameInfo) throws {
        let image = try converter.convert(f)
        stats.framesConverted += 1
        frames.append(info)
        try onFrame(SampledFrame(info: info, image: image))
    }

    // MARK: Damage, time

    private func recordDamage(_ error: DecodeError) {
        if damage == nil { damage = error }
    }

    /// Notes where the data read so far ends, over every stream, in seconds from the
    /// container's start (the time its duration counts from).
    private func noteDataEnd(_ p: AVPacket) {
        let ts = p.pts != FF.noPTS ? p.pts : p.dts
        guard ts != FF.noPTS, p.stream_index >= 0, p.stream_index < Int32(input.format.pointer.pointee.nb_streams),
              let s = input.format.pointer.pointee.streams[Int(p.stream_index)] else { return }
        let tb = s.pointee.time_base
        guard tb.num > 0, tb.den > 0 else { return }
        let end = FF.seconds(ts, tb) + FF.seconds(max(0, p.duration), tb) - (input.probe.startTime ?? 0)
        dataEnd = max(dataEnd ?? end, end)
    }

    /// A video stream whose packets end well before its stated duration was cut short.
    /// Called only when the whole file was read (not when every sample was taken early).
    private func checkTruncation() {
        guard let video = input.probe.video else { return }
        // Packets end within a packet or two of a duration that is stated exactly; half a
        // second (or 3 frames, at low rates) covers rounding, a last frame's duration and
        // an audio tail, and still catches what the campaigns found (files cut to 10 %).
        let tolerance = max(0.5, 3 * frameDuration)
        // What the container promised: the stream's duration, or its frame count (AVI
        // headers keep it even when the index at the end is lost), or, for a file
        // without audio, the file's duration.
        var stated = video.duration ?? (input.probe.audio == nil ? duration : nil) ?? 0
        if let n = video.frameCount, let fps = video.averageFrameRate { stated = max(stated, Double(n) / fps) }
        if stated > 0 {
            guard let end = lastPacketEnd else { return }
            if end < stated - tolerance {
                recordDamage(DecodeError(.corrupt, path: path, message: String(
                    format: "truncated: the video stream ends at %.2f s of its stated %.2f s", end, stated)))
            } else if !keyframesOnly, let last = lastFrameTime, last + frameDuration < stated - tolerance {
                // Every packet arrived, but the decoder gave up before the end without an
                // error (it dropped what it could not decode): the decoded frames fall short.
                // (Frames skipped as no sample's candidates are only those between the last
                // reference frame and the end: within the tolerance.)
                recordDamage(DecodeError(.corrupt, path: path, message: String(
                    format: "the last frame decoded is at %.2f s of the video's stated %.2f s: the decoder dropped the rest", last, stated)))
            }
            return
        }
        // The video states no duration of its own, and there is audio (Matroska, WebM): the
        // container's duration is the end of its longest stream, which may legitimately be
        // the audio, so hold it against the end of the data of every stream, not of the
        // video. A file cut short loses the tail of all its streams at once; a file whose
        // audio outlasts its video still has audio up to the stated end. A duration FFmpeg
        // only guessed from the bit rate proves nothing and is not used.
        guard let container = input.probe.duration, container > 0, !input.durationFromBitRate,
              let end = dataEnd else { return }
        if end < container - tolerance {
            recordDamage(DecodeError(.corrupt, path: path, message: String(
                format: "truncated: the file's data ends at %.2f s of its stated %.2f s (the video at %.2f s)",
                end, container, lastPacketEnd ?? 0)))
        }
    }

    private func checkDeadline() throws {
        if input.deadline.isExpired {
            throw DecodeError(.timedOut, path: path, message: String(
                format: "decoding took longer than the %@ s limit (stopped at %@ of the video, %d packet(s) read)",
                Deadline.format(input.deadline.limit ?? 0), describe(lastFrameTime), stats.packetsRead))
        }
    }

    private func describe(_ time: Double?) -> String {
        time.map { String(format: "%.2f s", $0) } ?? "the start"
    }
}

/// Presentation-order frame numbers from packet timestamps: a frame's index is the number
/// of packets with an earlier timestamp. Every packet is read (even those never decoded),
/// so indices stay exact when groups of pictures are skipped.
struct PresentationOrder {
    private var sorted: [Int64] = []

    mutating func insert(_ ts: Int64) {
        // Packets arrive nearly sorted (B-frames reorder locally): search from the end.
        var i = sorted.count
        while i > 0 && sorted[i - 1] > ts { i -= 1 }
        if i > 0 && sorted[i - 1] == ts { return }
        sorted.insert(ts, at: i)
    }

    func index(of ts: Int64) -> Int? {
        var lo = 0, hi = sorted.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if sorted[mid] < ts { lo = mid + 1 } else { hi = mid }
        }
        return lo < sorted.count && sorted[lo] == ts ? lo : nil
    }
}
