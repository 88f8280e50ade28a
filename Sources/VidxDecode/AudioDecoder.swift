import VidxCore
import CFFmpeg

/// Decodes one audio stream to mono float32 at a fixed rate through libswresample.
/// Channels are averaged with equal weights (so identical channels keep their level).
final class AudioDecoder {
    private let codec: CodecContext
    private var swr: OpaquePointer?
    private let outRate: Int32
    private let frame = Frame()
    private let path: String
    private var sumSquares = 0.0
    private var peak: Float = 0
    private(set) var sampleCount = 0
    /// Audio packets or frames that could not be decoded or resampled. Audio damage
    /// never stops the video; it is counted and reported (`damage`) like video damage.
    private(set) var errors = 0
    /// The first of those errors, naming the call, the time and FFmpeg's message.
    private var firstError: DecodeError?
    private let timeBase: AVRational
    private let origin: Double
    private var lastTime: Double?
    private let sink: ([Float]) throws -> Void

    /// Opens a decoder for `stream`. Returns nil when FFmpeg has no decoder for it.
    init?(stream: UnsafeMutablePointer<AVStream>, sampleRate: Int, path: String,
          sink: @escaping ([Float]) throws -> Void) {
        guard let par = stream.pointee.codecpar, let dec = avcodec_find_decoder(par.pointee.codec_id),
              let ctx = CodecContext(codec: dec) else { return nil }
        guard avcodec_parameters_to_context(ctx.pointer, par) >= 0 else { return nil }
        ctx.pointer.pointee.pkt_timebase = stream.pointee.time_base
        ctx.pointer.pointee.thread_count = 1
        guard avcodec_open2(ctx.pointer, dec, nil) >= 0 else { return nil }
        codec = ctx
        timeBase = stream.pointee.time_base
        origin = stream.pointee.start_time != FF.noPTS ? FF.seconds(stream.pointee.start_time, timeBase) : 0
        outRate = Int32(sampleRate)
        self.path = path
        self.sink = sink
    }

    deinit { swr_free(&swr) }

    /// Sends one packet (nil: flush at end of stream) and converts what comes out.
    ///
    /// Every send is followed by a drain to EAGAIN (as in demux_decode.c). A drain that a
    /// decoding error ended early can leave output pending, so that the next send gets
    /// EAGAIN: the packet is then resent once after a drain, never dropped, never
    /// retried in a loop.
    func decode(_ packet: UnsafeMutablePointer<AVPacket>?) throws {
        if let p = packet, p.pointee.pts != FF.noPTS { lastTime = FF.seconds(p.pointee.pts, timeBase) - origin }
        var ret = avcodec_send_packet(codec.pointer, packet)
        if ret == FF.eagain {
            try receiveFrames()
            ret = avcodec_send_packet(codec.pointer, packet)
        }
        if ret < 0 && !(packet == nil && ret == FF.eof) { noteError(ret, call: "avcodec_send_packet") }
        try receiveFrames()
        if packet == nil { try drainResampler() }
    }

    /// Drains decoded frames until EAGAIN, end of stream or an error.
    private func receiveFrames() throws {
        while true {
            let r = avcodec_receive_frame(codec.pointer, frame.pointer)
            if r == FF.eagain || r == FF.eof { return }
            if r < 0 { noteError(r, call: "avcodec_receive_frame"); return }
            defer { av_frame_unref(frame.pointer) }
            try convert(frame.pointer)
        }
    }

    private func noteError(_ code: Int32, call: String) {
        errors += 1
        if firstError == nil {
            let at = lastTime.map { String(format: "%.2f s", $0) } ?? "the start"
            firstError = FF.error(.corrupt, code, call: call, path: path, context: "damaged audio data at \(at)")
        } else {
            _ = FF.takeLoggedError()
        }
    }

    /// The audio damage to report, if any: how many errors, and the first one.
    var damage: DecodeError? {
        guard errors > 0, let first = firstError else { return nil }
        return DecodeError(.corrupt, path: path,
                           message: "\(errors) audio packet(s) could not be decoded; the first: \(first.message)",
                           call: first.call, code: first.code)
    }

    private func setUpResampler(for f: UnsafeMutablePointer<AVFrame>) -> Bool {
        var inLayout = AVChannelLayout()
        if f.pointee.ch_layout.order == AV_CHANNEL_ORDER_UNSPEC || av_channel_layout_check(&f.pointee.ch_layout) == 0 {
            av_channel_layout_default(&inLayout, max(1, f.pointee.ch_layout.nb_channels))
        } else {
            guard av_channel_layout_copy(&inLayout, &f.pointee.ch_layout) >= 0 else { return false }
        }
        defer { av_channel_layout_uninit(&inLayout) }
        var outLayout = AVChannelLayout()
        av_channel_layout_default(&outLayout, 1)
        defer { av_channel_layout_uninit(&outLayout) }
        guard swr_alloc_set_opts2(&swr, &outLayout, AV_SAMPLE_FMT_FLT, outRate,
                                  &inLayout, AVSampleFormat(rawValue: f.pointee.format),
                                  f.pointee.sample_rate, 0, nil) >= 0 else { return false }
        let channels = Int(inLayout.nb_channels)
        let matrix = [Double](repeating: 1.0 / Double(channels), count: channels)
        guard swr_set_matrix(swr, matrix, Int32(channels)) >= 0, swr_init(swr) >= 0 else {
            swr_free(&swr)
            return false
        }
        return true
    }

    private func convert(_ f: UnsafeMutablePointer<AVFrame>) throws {
        if swr == nil && !setUpResampler(for: f) { noteError(FF.invalidData, call: "swr_init"); return }
        let capacity = Int(swr_get_out_samples(swr, f.pointee.nb_samples))
        guard capacity > 0 else { return }
        var out = [Float](repeating: 0, count: capacity)
        let n = out.withUnsafeMutableBytes { raw -> Int32 in
            var dst: UnsafeMutablePointer<UInt8>? = raw.baseAddress?.assumingMemoryBound(to: UInt8.self)
            let src = UnsafeMutableRawPointer(f.pointee.extended_data)?
                .assumingMemoryBound(to: UnsafePointer<UInt8>?.self)
            return swr_convert(swr, &dst, Int32(capacity), src, f.pointee.nb_samples)
        }
        guard n >= 0 else { noteError(n, call: "swr_convert"); return }
        try emit(out, count: Int(n))
    }

    private func drainResampler() throws {
        guard swr != nil else { return }
        let capacity = Int(swr_get_out_samples(swr, 0)) + 64
        var out = [Float](repeating: 0, count: capacity)
        let n = out.withUnsafeMutableBytes { raw -> Int32 in
            var dst: UnsafeMutablePointer<UInt8>? = raw.baseAddress?.assumingMemoryBound(to: UInt8.self)
            return swr_convert(swr, &dst, Int32(capacity), nil, 0)
        }
        if n > 0 { try emit(out, count: Int(n)) }
    }

    private func emit(_ buffer: [Float], count: Int) throws {
        guard count > 0 else { return }
        let chunk = count == buffer.count ? buffer : Array(buffer[0..<count])
        for s in chunk {
            sumSquares += Double(s) * Double(s)
            peak = max(peak, abs(s))
        }
        sampleCount += count
        try sink(chunk)
    }

    var summary: AudioSummary {
        AudioSummary(sampleRate: Int(outRate), samples: sampleCount,
                     seconds: Double(sampleCount) / Double(outRate),
                     rms: sampleCount > 0 ? (sumSquares / Double(sampleCount)).squareRoot() : 0,
                     peak: Double(peak), errors: errors)
    }
}
