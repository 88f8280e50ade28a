import VidxCore
import CFFmpeg

/// Converts decoded frames of any pixel format to upright RGB24 at the output size:
/// fit (crop / pad / stretch) on the displayed geometry (sample aspect ratio and
/// rotation applied), colour conversion by swscale with the frame's own matrix and range.
///
/// Cropping is done before scaling (only the visible region is scaled), so the work
/// is proportional to what is kept. Scaling is bilinear with full chroma interpolation
/// and accurate, bit-exact rounding: swscale's faster table-driven YUV-to-RGB path is off
/// by up to 2 levels (a flat Y=46 comes out 33 instead of 35), and bit-exact output is
/// the same on every x86-64 machine.
final class FrameConverter {
    let outWidth: Int
    let outHeight: Int
    let fit: FitMode
    let rotation: Int
    let path: String
    private var sws: OpaquePointer?
    private let work = Frame()

    init(width: Int, height: Int, fit: FitMode, rotation: Int, path: String) {
        outWidth = width
        outHeight = height
        self.fit = fit
        self.rotation = rotation
        self.path = path
    }

    deinit { sws_freeContext(sws) }

    /// Where the frame's pixels go: the source crop in coded pixels and the content
    /// size and offset in the (upright) output.
    struct Geometry: Equatable {
        var cropLeft: Int, cropTop: Int, cropWidth: Int, cropHeight: Int
        var contentWidth: Int, contentHeight: Int
        var offsetX: Int, offsetY: Int
    }

    /// Computes the geometry for a coded frame of `width` x `height` with sample aspect
    /// ratio `sar`, shown rotated by `rotation` degrees clockwise.
    static func geometry(width: Int, height: Int, sar: Double, rotation: Int,
                         outWidth: Int, outHeight: Int, fit: FitMode,
                         chromaShiftX: Int = 1, chromaShiftY: Int = 1) -> Geometry {
        let sideways = rotation == 90 || rotation == 270
        // Aspect ratio of the picture as displayed.
        var aspect = Double(width) * sar / Double(height)
        if sideways { aspect = 1 / aspect }
        let outAspect = Double(outWidth) / Double(outHeight)
        var fx = 1.0, fy = 1.0            // fraction of the displayed picture kept
        var cw = outWidth, ch = outHeight // displayed content size in the output
        switch fit {
        case .stretch: break
        case .crop:
            if aspect > outAspect { fx = outAspect / aspect } else { fy = aspect / outAspect }
        case .pad:
            if aspect > outAspect {
                ch = max(1, min(outHeight, Int((Double(outWidth) / aspect).rounded())))
            } else {
                cw = max(1, min(outWidth, Int((Double(outHeight) * aspect).rounded())))
            }
        }
        if sideways { swap(&fx, &fy) }
        // Crop in coded pixels, centred, offsets aligned to the chroma subsampling.
        let alignX = 1 << chromaShiftX, alignY = 1 << chromaShiftY
        let cropW = max(1, min(width, Int((Double(width) * fx).rounded())))
        let cropH = max(1, min(height, Int((Double(height) * fy).rounded())))
        let left = ((width - cropW) / 2) / alignX * alignX
        let top = ((height - cropH) / 2) / alignY * alignY
        return Geometry(cropLeft: left, cropTop: top, cropWidth: cropW, cropHeight: cropH,
                        contentWidth: cw, contentHeight: ch,
                        offsetX: (outWidth - cw) / 2, offsetY: (outHeight - ch) / 2)
    }

    /// Converts one decoded frame (not modified; a new reference is taken for cropping).
    func convert(_ source: UnsafeMutablePointer<AVFrame>) throws -> RGBImage {
        let f = source.pointee
        var format = AVPixelFormat(rawValue: f.format)
        guard let desc = av_pix_fmt_desc_get(format), f.width > 0, f.height > 0 else {
            throw DecodeError(.corrupt, path: path, message: "decoded frame has no usable pixel format or size")
        }
        var sar = FF.rationalValue(f.sample_aspect_ratio) ?? 1
        if !(sar > 0.01 && sar < 100) { sar = 1 }
        let g = FrameConverter.geometry(width: Int(f.width), height: Int(f.height), sar: sar,
                                        rotation: rotation, outWidth: outWidth, outHeight: outHeight,
                                        fit: fit, chromaShiftX: Int(desc.pointee.log2_chroma_w),
                                        chromaShiftY: Int(desc.pointee.log2_chroma_h))
        // Crop by reference: av_frame_apply_cropping moves the plane pointers.
        av_frame_unref(work.pointer)
        var ret = av_frame_ref(work.pointer, source)
        guard ret >= 0 else { throw FF.error(.corrupt, ret, call: "av_frame_ref", path: path) }
        defer { av_frame_unref(work.pointer) }
        work.pointer.pointee.crop_left = Int(g.cropLeft)
        work.pointer.pointee.crop_top = Int(g.cropTop)
        work.pointer.pointee.crop_right = Int(Int(f.width) - g.cropLeft - g.cropWidth)
        work.pointer.pointee.crop_bottom = Int(Int(f.height) - g.cropTop - g.cropHeight)
        ret = av_frame_apply_cropping(work.pointer, Int32(AV_FRAME_CROP_UNALIGNED))
        guard ret >= 0 else { throw FF.error(.corrupt, ret, call: "av_frame_apply_cropping", path: path) }

        // Content size before rotation.
        let sideways = rotation == 90 || rotation == 270
        let scaledW = sideways ? g.contentHeight : g.contentWidth
        let scaledH = sideways ? g.contentWidth : g.contentHeight

        var fullRange = f.color_range == AVCOL_RANGE_JPEG
        // The deprecated "J" formats are full-range versions of the plain ones.
        switch format {
        case AV_PIX_FMT_YUVJ420P: format = AV_PIX_FMT_YUV420P; fullRange = true
        case AV_PIX_FMT_YUVJ422P: format = AV_PIX_FMT_YUV422P; fullRange = true
        case AV_PIX_FMT_YUVJ444P: format = AV_PIX_FMT_YUV444P; fullRange = true
        case AV_PIX_FMT_YUVJ440P: format = AV_PIX_FMT_YUV440P; fullRange = true
        case AV_PIX_FMT_YUVJ411P: format = AV_PIX_FMT_YUV411P; fullRange = true
        default: break
        }
        let flags = Int32(SWS_BILINEAR | SWS_FULL_CHR_H_INT | SWS_ACCURATE_RND | SWS_BITEXACT)
        sws = sws_getCachedContext(sws, work.pointer.pointee.width, work.pointer.pointee.height, format,
                                   Int32(scaledW), Int32(scaledH), AV_PIX_FMT_RGB24, flags, nil, nil, nil)
        guard let sws else {
            throw DecodeError(.unsupportedCodec, path: path,
                              message: "cannot convert pixel format \(FF.string(av_get_pix_fmt_name(format)) ?? "?") to RGB",
                              call: "sws_getCachedContext")
        }
        let matrix = sws_getCoefficients(FrameConverter.swsColorspace(f.colorspace, height: Int(f.height)))
        _ = sws_setColorspaceDetails(sws, matrix, fullRange ? 1 : 0,
                                     sws_getCoefficients(SWS_CS_DEFAULT), 1, 0, 1 << 16, 1 << 16)

        var scaled = [UInt8](repeating: 0, count: scaledW * scaledH * 3)
        let h = scaled.withUnsafeMutableBufferPointer { buf -> Int32 in
            var dst: [UnsafeMutablePointer<UInt8>?] = [buf.baseAddress, nil, nil, nil]
            var dstStride: [Int32] = [Int32(scaledW * 3), 0, 0, 0]
            return withUnsafePointer(to: &work.pointer.pointee.data) { dataTuple in
                withUnsafePointer(to: &work.pointer.pointee.linesize) { lineTuple in
                    dataTuple.withMemoryRebound(to: UnsafePointer<UInt8>?.self, capacity: 8) { src in
                        lineTuple.withMemoryRebound(to: Int32.self, capacity: 8) { srcStride in
                            sws_scale(sws, src, srcStride, 0, work.pointer.pointee.height, &dst, &dstStride)
                        }
                    }
                }
            }
        }
        guard h == Int32(scaledH) else {
            throw DecodeError(.corrupt, path: path, message: "sws_scale produced \(h) rows instead of \(scaledH)", call: "sws_scale")
        }
        if rotation == 0 && g.contentWidth == outWidth && g.contentHeight == outHeight {
            return RGBImage(width: outWidth, height: outHeight, pixels: scaled)
        }
        var out = [UInt8](repeating: 0, count: outWidth * outHeight * 3)
        FrameConverter.place(scaled, width: scaledW, height: scaledH, rotation: rotation,
                             into: &out, outWidth: outWidth, offsetX: g.offsetX, offsetY: g.offsetY)
        return RGBImage(width: outWidth, height: outHeight, pixels: out)
    }

    /// Copies a `width` x `height` RGB image rotated clockwise by `rotation` into `out`
    /// at (offsetX, offsetY).
    static func place(_ src: [UInt8], width: Int, height: Int, rotation: Int,
                      into out: inout [UInt8], outWidth: Int, offsetX: Int, offsetY: Int) {
        let rw = (rotation == 90 || rotation == 270) ? height : width
        let rh = (rotation == 90 || rotation == 270) ? width : height
        for y in 0..<rh {
            for x in 0..<rw {
                // (x, y) in the rotated image comes from (sx, sy) in the source.
                let sx: Int, sy: Int
                switch rotation {
                case 90: sx = y; sy = height - 1 - x
                case 180: sx = width - 1 - x; sy = height - 1 - y
                case 270: sx = width - 1 - y; sy = x
                default: sx = x; sy = y
                }
                let s = (sy * width + sx) * 3
                let d = ((y + offsetY) * outWidth + (x + offsetX)) * 3
                out[d] = src[s]; out[d + 1] = src[s + 1]; out[d + 2] = src[s + 2]
            }
        }
    }

    /// swscale's matrix for a frame's colour space; unspecified: BT.709 from 720 lines up,
    /// BT.601 below (what players assume).
    static func swsColorspace(_ cs: AVColorSpace, height: Int) -> Int32 {
        switch cs {
        case AVCOL_SPC_BT709: return SWS_CS_ITU709
        case AVCOL_SPC_BT470BG, AVCOL_SPC_SMPTE170M: return SWS_CS_ITU601
        case AVCOL_SPC_FCC: return SWS_CS_FCC
        case AVCOL_SPC_SMPTE240M: return SWS_CS_SMPTE240M
        case AVCOL_SPC_BT2020_NCL, AVCOL_SPC_BT2020_CL: return SWS_CS_BT2020
        default: return height >= 720 ? SWS_CS_ITU709 : SWS_CS_ITU601
        }
    }
}
