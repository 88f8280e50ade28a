import CFFmpeg
import VidxCore

/// Encodes RGB images as PNG with libavcodec's PNG encoder.
public enum PNGEncoder {
    /// Returns the PNG file bytes of `image`.
    /// - Throws: `DecodeError` (`unsupportedCodec`) when this FFmpeg has no PNG encoder.
    public static func encode(_ image: RGBImage) throws -> [UInt8] {
        guard let codec = avcodec_find_encoder(AV_CODEC_ID_PNG), let ctx = CodecContext(codec: codec) else {
            throw DecodeError(.unsupportedCodec, path: "<png>", message: "this FFmpeg has no PNG encoder")
        }
        let c = ctx.pointer
        c.pointee.width = Int32(image.width)
        c.pointee.height = Int32(image.height)
        c.pointee.pix_fmt = AV_PIX_FMT_RGB24
        c.pointee.time_base = AVRational(num: 1, den: 1)
        c.pointee.flags |= Int32(AV_CODEC_FLAG_BITEXACT)
        var ret = avcodec_open2(c, codec, nil)
        guard ret >= 0 else { throw FF.error(.unsupportedCodec, ret, call: "avcodec_open2", path: "<png>") }
        let frame = Frame()
        frame.pointer.pointee.width = c.pointee.width
        frame.pointer.pointee.height = c.pointee.height
        frame.pointer.pointee.format = AV_PIX_FMT_RGB24.rawValue
        ret = av_frame_get_buffer(frame.pointer, 0)
        guard ret >= 0 else { throw FF.error(.unsupportedCodec, ret, call: "av_frame_get_buffer", path: "<png>") }
        let stride = Int(frame.pointer.pointee.linesize.0)
        image.pixels.withUnsafeBytes { src in
            let dst = frame.pointer.pointee.data.0!
            for y in 0..<image.height {
                (dst + y * stride).update(from: src.baseAddress!.assumingMemoryBound(to: UInt8.self) + y * image.width * 3,
                                          count: image.width * 3)
            }
        }
        ret = avcodec_send_frame(c, frame.pointer)
        guard ret >= 0 else { throw FF.error(.unsupportedCodec, ret, call: "avcodec_send_frame", path: "<png>") }
        _ = avcodec_send_frame(c, nil)
        let packet = Packet()
        var bytes: [UInt8] = []
        while avcodec_receive_packet(c, packet.pointer) >= 0 {
            bytes += UnsafeBufferPointer(start: packet.pointer.pointee.data, count: Int(packet.pointer.pointee.size))
            av_packet_unref(packet.pointer)
        }
        return bytes
    }

    /// Writes `image` as a PNG file at `path` (temporary name, fsync, rename).
    public static func write(_ image: RGBImage, to path: String) throws {
        let bytes = try encode(image)
        try bytes.withUnsafeBytes { try AtomicFile.write($0, to: path) }
    }
}
