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
    /// Decoding errors met (audio damage never fails a video; it is counted).
    private(set) var errors = 0
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
        outRate = Int32(sampleRate)
        self.path = path
        self.sink = sink
    }

    deinit { swr_free(&swr) }

    /// Sends one packet (nil: flush at end of stream) and converts what comes out.
    func decode(_ packet: UnsafeMutablePointer<AVPacket>?) throws {
        let ret = avcodec_send_packet(codec.pointer, packet)
        if ret < 0 && ret != FF.eagain && ret != FF.eof { errors += 1; return }
        while true {
            let r = avcodec_receive_frame(codec.pointer, frame.pointer)
            if r == FF.eagain || r == FF.eof { break }
            if r < 0 { errors += 1; break }
            defer { av_frame_unref(frame.pointer) }
            try convert(frame.pointer)
        }
        if packet == nil { try drainResampler() }
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
        if swr == nil && !setUpResampler(for: f) { errors += 1; return }
        let capacity = Int(swr_get_out_samples(swr, f.pointee.nb_samples))
        guard capacity > 0 else { return }
        var out = [Float](repeating: 0, count: capacity)
        let n = out.withUnsafeMutableBytes { raw -> Int32 in
            var dst: UnsafeMutablePointer<UInt8>? = raw.baseAddress?.assumingMemoryBound(to: UInt8.self)
            let src = UnsafeMutableRawPointer(f.pointee.extended_data)?
                .assumingMemoryBound(to: UnsafePointer<UInt8>?.self)
            return swr_convert(swr, &dst, Int32(capacity), src, f.pointee.nb_samples)
        }
        guard n >= 0 else { errors += 1; return }
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
                     peak: Double(peak))
    }
}
