import Foundation
import Testing
import VidxCore
@testable import VidxDecode

/// The frame index the definition samples for each target of `policy`, for a constant
/// frame rate clip starting at 0 with `count` frames: the last frame at or before the
/// target, each frame once.
func expectedIndices(_ policy: SamplingPolicy, duration: Double?, fps: Double, count: Int) -> [Int] {
    var seq = policy.targets(duration: duration)
    var out: [Int] = []
    while let t = seq.next() {
        let i = min(count - 1, Int((t * fps + 1e-6).rounded(.down)))
        if t >= Double(count) / fps { break }
        if out.last != i { out.append(i) }
    }
    return out
}

/// What the definition samples from frames shown at `frameTimes`: for each target, the
/// last frame at or before it (the first frame for targets before it), each frame once,
/// targets past the end of the last frame unserved. Returns (index, time) pairs.
func expectedSamples(_ policy: SamplingPolicy, duration: Double?, frameTimes: [Double], frameDuration: Double)
    -> [(index: Int, time: Double)] {
    var seq = policy.targets(duration: duration)
    var out: [(Int, Double)] = []
    guard let last = frameTimes.last else { return [] }
    while let t = seq.next() {
        if t >= last + frameDuration - 1e-6 { break }
        let i = frameTimes.lastIndex { $0 <= t + 1e-6 } ?? 0
        if out.last?.0 != i { out.append((i, frameTimes[i])) }
    }
    return out
}

@Suite("Sampling on a lossless gray ramp: the pixels say which frame was sampled")
struct GrayRampTests {
    static let policies = ["fps:1", "fps:3", "fps:10", "fps:25", "uniform:7", "uniform:1", "every:2", "every:0.7", "fps:0.2"]

    @Test("every policy samples exactly the frames the definition names", arguments: policies)
    func exactFrames(_ policy: String) throws {
        let path = try Clips.grayRamp()
        let (report, frames, _) = try MediaDecoder.decodeAll(path: path, options: options(policy))
        let p = try SamplingPolicy(parsing: policy)
        let expected = expectedIndices(p, duration: report.probe.duration, fps: 10, count: 60)
        #expect(frames.map(\.info.index) == expected)
        for f in frames {
            #expect(abs(f.info.time - Double(f.info.index) / 10) < 1e-6)
            #expect(try Clips.frameNumber(of: f.image) == f.info.index, "gray \(f.image.meanColor().0) at \(f.info.index)")
        }
        #expect(report.damage == nil)
    }

    @Test("seeking ahead and skipping non-reference frames never change the samples", arguments: policies)
    func seekIsExact(_ policy: String) throws {
        let path = try Clips.grayRamp()
        let (seekReport, withSeek, _) = try MediaDecoder.decodeAll(path: path, options: options(policy, seek: true))
        let (_, without, _) = try MediaDecoder.decodeAll(path: path, options: options(policy, seek: false))
        #expect(withSeek.map(\.info) == without.map(\.info))
        #expect(withSeek.map(\.image) == without.map(\.image))
        #expect(seekReport.stats.framesConverted == withSeek.count)
    }

    @Test("the ramp really has B-frames, reference and not")
    func rampHasBFrames() throws {
        let types = try Clips.run("ffprobe", ["-v", "error", "-select_streams", "v", "-show_entries", "frame=pict_type",
                                              "-of", "csv=p=0", try Clips.grayRamp()])
        #expect(types.filter { $0 == "B" }.count >= 30)
    }

    @Test("a sparse policy skips whole groups of pictures")
    func seekSkipsWork() throws {
        let path = try Clips.grayRamp()
        let (report, frames, _) = try MediaDecoder.decodeAll(path: path, options: options("fps:0.2"))
        #expect(frames.map(\.info.index) == [0, 50])
        #expect(report.stats.seeks >= 1)
        #expect(report.stats.packetsDecoded < report.stats.packetsRead / 2)
        let (full, _, _) = try MediaDecoder.decodeAll(path: path, options: options("fps:0.2", seek: false))
        #expect(report.stats.framesDecoded < full.stats.framesDecoded)
        // Non-reference B-frames that cannot be samples are skipped inside the decoder.
        let (dense, _, _) = try MediaDecoder.decodeAll(path: path, options: options("fps:1", seek: false))
        #expect(dense.stats.framesDecoded < dense.stats.packetsDecoded)
    }

    @Test("keyframes samples every key frame and decodes nothing else")
    func keyframes() throws {
        let path = try Clips.grayRamp()
        let (report, frames, _) = try MediaDecoder.decodeAll(path: path, options: options("keyframes"))
        let indices = frames.map(\.info.index)
        #expect(indices.first == 0)
        for i in [0, 12, 24, 36, 48] { #expect(indices.contains(i)) }
        for f in frames {
            #expect(f.info.keyframe)
            #expect(f.info.target == nil)
            #expect(try Clips.frameNumber(of: f.image) == f.info.index, "gray \(f.image.meanColor().0) at \(f.info.index)")
        }
        #expect(report.stats.framesDecoded == frames.count)
    }

    @Test("fast mode stays within half a sampling interval and labels frames truthfully", arguments: ["fps:1", "fps:3", "every:2", "uniform:5"])
    func fastMode(_ policy: String) throws {
        let path = try Clips.grayRamp()
        let (report, frames, _) = try MediaDecoder.decodeAll(path: path, options: options(policy, fast: true))
        let p = try SamplingPolicy(parsing: policy)
        let interval = p.interval(duration: report.probe.duration)!
        #expect(!frames.isEmpty)
        for f in frames {
            #expect(abs(f.info.time - f.info.target!) <= interval / 2 + 1e-6)
            #expect(try Clips.frameNumber(of: f.image) == f.info.index, "gray \(f.image.meanColor().0) at \(f.info.index)")
        }
        let (exact, _, _) = try MediaDecoder.decodeAll(path: path, options: options(policy))
        #expect(report.stats.framesDecoded <= exact.stats.framesDecoded)
        // With a second or more between targets, runs of B-frames are dropped unread.
        if interval >= 1 {
            #expect(report.stats.packetsDropped > 0)
            #expect(report.stats.framesDecoded < exact.stats.framesDecoded)
        }
        #expect(exact.stats.packetsDropped == 0)
    }

    @Test("frames are handed over as they are found, in time order")
    func streaming() throws {
        let path = try Clips.grayRamp()
        var times: [Double] = []
        let report = try MediaDecoder.decode(path: path, options: options("fps:2"), onFrame: { times.append($0.info.time) })
        #expect(times == report.frames.map(\.time))
        #expect(times == times.sorted())
        #expect(times.count == 12)
    }
}

/// One clip of the codec x container matrix.
struct Variant: CustomTestStringConvertible, Sendable {
    let file: String
    let codec: String
    let container: String
    let audioCodec: String?
    let args: [String]
    var testDescription: String { file }
}

@Suite("Codecs and containers round-trip")
struct CodecMatrixTests {
    static let seconds = 4.0
    static let variants: [Variant] = [
        Variant(file: "h264-aac.mp4", codec: "h264", container: "mp4", audioCodec: "aac",
                args: ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"]),
        Variant(file: "h264-opus.mkv", codec: "h264", container: "matroska", audioCodec: "opus",
                args: ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "libopus"]),
        Variant(file: "h264-aac.mov", codec: "h264", container: "mov", audioCodec: "aac",
                args: ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"]),
        Variant(file: "mpeg4-mp3.avi", codec: "mpeg4", container: "avi", audioCodec: "mp3",
                args: ["-c:v", "mpeg4", "-q:v", "3", "-c:a", "libmp3lame"]),
        Variant(file: "mjpeg-pcm.avi", codec: "mjpeg", container: "avi", audioCodec: "pcm_s16le",
                args: ["-c:v", "mjpeg", "-q:v", "3", "-c:a", "pcm_s16le"]),
        Variant(file: "mjpeg-pcm.mov", codec: "mjpeg", container: "mov", audioCodec: "pcm_s16le",
                args: ["-c:v", "mjpeg", "-q:v", "3", "-c:a", "pcm_s16le"]),
        Variant(file: "vp9-opus.webm", codec: "vp9", container: "webm", audioCodec: "opus",
                args: ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k", "-c:a", "libopus"]),
        Variant(file: "h264-noaudio.mp4", codec: "h264", container: "mp4", audioCodec: nil,
                args: ["-c:v", "libx264", "-pix_fmt", "yuv420p"]),
    ]

    static func make(_ v: Variant) throws -> String {
        var input = Clips.testsrc(96, 64, rate: 25, seconds: seconds)
        if v.audioCodec != nil { input += Clips.tone(seconds: seconds) }
        return try Clips.make(v.file, input + v.args + ["-shortest"])
    }

    @Test("probe describes the streams", arguments: variants)
    func probe(_ v: Variant) throws {
        let p = try MediaDecoder.probe(path: try Self.make(v))
        #expect(p.container.contains(v.container))
        let video = try #require(p.video)
        #expect(video.codec == v.codec)
        #expect(video.width == 96 && video.height == 64)
        #expect(abs((video.averageFrameRate ?? 0) - 25) < 0.01)
        #expect(abs((video.realFrameRate ?? 0) - 25) < 0.01)
        #expect(video.bitDepth == 8)
        #expect(video.rotation == 0)
        #expect(abs((p.duration ?? 0) - Self.seconds) < 0.1)
        if let a = v.audioCodec {
            let audio = try #require(p.audio)
            #expect(audio.codec == a)
            #expect(audio.sampleRate == 48000)
            #expect(audio.channels == 2)
        } else {
            #expect(p.audio == nil)
        }
    }

    @Test("every policy gives the expected frames and times", arguments: variants)
    func policies(_ v: Variant) throws {
        let path = try Self.make(v)
        let frameTimes = try Clips.frameTimes(path)
        #expect(frameTimes.count >= 99)
        for policy in ["fps:1", "fps:4", "uniform:4", "every:1.5"] {
            let (report, frames, _) = try MediaDecoder.decodeAll(path: path, options: options(policy))
            let expected = expectedSamples(try SamplingPolicy(parsing: policy), duration: report.probe.duration,
                                           frameTimes: frameTimes, frameDuration: 0.04)
            #expect(frames.map(\.info.index) == expected.map(\.index), "\(policy)")
            #expect(ms(frames.map(\.info.time)) == ms(expected.map(\.time)), "\(policy)")
            for f in frames {
                #expect(f.image.width == 32 && f.image.height == 32)
            }
            #expect(report.damage == nil)
        }
        let (_, keys, _) = try MediaDecoder.decodeAll(path: path, options: options("keyframes"))
        #expect(keys.first?.info.index == 0)
        #expect(keys.allSatisfy { $0.info.keyframe })
    }

    @Test("audio decodes to mono 16 kHz at the right length and level", arguments: variants)
    func audio(_ v: Variant) throws {
        let path = try Self.make(v)
        let (report, _, audio) = try MediaDecoder.decodeAll(path: path, options: options("fps:1", audio: true))
        guard v.audioCodec != nil else {
            #expect(report.audio == nil)
            #expect(audio == nil)
            return
        }
        let track = try #require(audio)
        #expect(track.sampleRate == 16000)
        #expect(abs(track.duration - Self.seconds) < 0.08, "\(track.duration) s")
        let summary = try #require(report.audio)
        #expect(summary.samples == track.samples.count)
        // A sine of amplitude 0.5 on both channels: mono average keeps it, rms 0.5/sqrt(2).
        #expect(abs(summary.rms - 0.5 / 2.0.squareRoot()) < 0.03, "rms \(summary.rms)")
        #expect(summary.peak > 0.45 && summary.peak < 0.6)
    }
}

@Suite("Pixels, geometry and timing")
struct PixelTests {
    static let colors: [(name: String, rgb: (Double, Double, Double))] = [
        ("red", (255, 0, 0)), ("lime", (0, 255, 0)), ("blue", (0, 0, 255)), ("white", (255, 255, 255)), ("gray", (128, 128, 128)),
    ]

    func expectColor(_ image: RGBImage, _ rgb: (Double, Double, Double), tolerance: Double = 10,
                     _ what: String, x: Int = 0, y: Int = 0, width: Int? = nil, height: Int? = nil) {
        let m = image.meanColor(x: x, y: y, width: width, height: height)
        #expect(abs(m.0 - rgb.0) < tolerance && abs(m.1 - rgb.1) < tolerance && abs(m.2 - rgb.2) < tolerance,
                "\(what): got \(m), want \(rgb)")
    }

    @Test("solid colours come out right: 8-bit limited, full-range JPEG, 10-bit, 4:4:4 odd size")
    func solidColors() throws {
        for (name, rgb) in Self.colors {
            let src = ["-f", "lavfi", "-i", "color=c=\(name):s=64x48:r=10:d=1"]
            let files = [
                try Clips.make("\(name)-8bit.mp4", src + ["-c:v", "libx264", "-pix_fmt", "yuv420p"]),
                try Clips.make("\(name)-full.avi", src + ["-c:v", "mjpeg", "-q:v", "2"]),
                try Clips.make("\(name)-10bit.mkv", src + ["-c:v", "libx264", "-pix_fmt", "yuv420p10le"]),
                try Clips.make("\(name)-odd.mp4", ["-f", "lavfi", "-i", "color=c=\(name):s=66x50:r=10:d=1,format=yuv444p,crop=65:49:0:0",
                                                   "-c:v", "libx264", "-pix_fmt", "yuv444p"]),
                try Clips.make("\(name)-vp9-10bit.webm", src + ["-c:v", "libvpx-vp9", "-pix_fmt", "yuv420p10le",
                                                                "-deadline", "realtime", "-cpu-used", "8"]),
            ]
            for file in files {
                let (_, frames, _) = try MediaDecoder.decodeAll(path: file, options: options("fps:1", size: 24))
                let f = try #require(frames.first, "\(file)")
                expectColor(f.image, rgb, file)
            }
        }
        let p10 = try MediaDecoder.probe(path: Clips.directory + "/red-10bit.mkv")
        #expect(p10.video?.bitDepth == 10 && p10.video?.pixelFormat == "yuv420p10le")
        let pvp9 = try MediaDecoder.probe(path: Clips.directory + "/red-vp9-10bit.webm")
        #expect(pvp9.video?.bitDepth == 10)
        let pj = try MediaDecoder.probe(path: Clips.directory + "/red-full.avi")
        #expect(pj.video?.colorRange == "full")
        let odd = try MediaDecoder.probe(path: Clips.directory + "/red-odd.mp4")
        #expect(odd.video?.width == 65 && odd.video?.height == 49)
    }

    @Test("a horizontal gradient keeps its direction and range")
    func gradient() throws {
        let file = try Clips.make("gradient.mp4", [
            "-f", "lavfi", "-i", "color=c=black:s=128x64:r=10:d=1,format=yuv444p,geq=lum='16+X*219/127':cb=128:cr=128",
            "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p"])
        let (_, frames, _) = try MediaDecoder.decodeAll(path: file, options: options("fps:1", size: 64, fit: .stretch))
        let img = try #require(frames.first).image
        let left = img.meanColor(x: 0, y: 0, width: 4, height: 64).0
        let middle = img.meanColor(x: 30, y: 0, width: 4, height: 64).0
        let right = img.meanColor(x: 60, y: 0, width: 4, height: 64).0
        #expect(left < 12 && right > 243 && abs(middle - 127) < 10, "\(left) \(middle) \(right)")
    }

    @Test("crop, pad and stretch fit a 2:1 frame into a square")
    func fitModes() throws {
        // Left quarter red, middle half lime, right quarter blue.
        let file = try Clips.make("thirds.mp4", [
            "-f", "lavfi", "-i",
            "color=c=red:s=32x64:r=10:d=1[a];color=c=lime:s=64x64:r=10:d=1[b];color=c=blue:s=32x64:r=10:d=1[c];[a][b][c]hstack=3",
            "-c:v", "libx264", "-pix_fmt", "yuv444p", "-qp", "0"])
        let crop = try #require(MediaDecoder.decodeAll(path: file, options: options("fps:1", size: 32, fit: .crop)).frames.first).image
        expectColor(crop, (0, 255, 0), tolerance: 12, "crop keeps the middle")
        let pad = try #require(MediaDecoder.decodeAll(path: file, options: options("fps:1", size: 32, fit: .pad)).frames.first).image
        expectColor(pad, (0, 0, 0), tolerance: 2, "pad: black top bar", width: 32, height: 7)
        expectColor(pad, (0, 0, 0), tolerance: 2, "pad: black bottom bar", y: 25, width: 32, height: 7)
        expectColor(pad, (255, 0, 0), tolerance: 20, "pad: red left", x: 0, y: 10, width: 6, height: 12)
        expectColor(pad, (0, 0, 255), tolerance: 20, "pad: blue right", x: 26, y: 10, width: 6, height: 12)
        let stretch = try #require(MediaDecoder.decodeAll(path: file, options: options("fps:1", size: 32, fit: .stretch)).frames.first).image
        expectColor(stretch, (255, 0, 0), tolerance: 20, "stretch: red left", width: 6, height: 32)
        expectColor(stretch, (0, 255, 0), tolerance: 20, "stretch: lime middle", x: 10, width: 12, height: 32)
    }

    @Test("rotation metadata is applied as ffmpeg's autorotate does")
    func rotation() throws {
        let plain = try Clips.make("redblue.mp4", Clips.redOverBlue() + ["-c:v", "libx264", "-pix_fmt", "yuv444p"])
        let rotated = Clips.directory + "/redblue-rot.mp4"
        try Clips.run("ffmpeg", ["-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", plain, "-c", "copy",
                                 "-metadata:s:v:0", "rotate=90", rotated])
        let probe = try MediaDecoder.probe(path: rotated)
        #expect(probe.video?.rotation == 270)
        #expect(probe.video?.displayWidth == 48 && probe.video?.displayHeight == 64)
        // Upright, the red half is on the left and the blue half on the right.
        let img = try #require(MediaDecoder.decodeAll(path: rotated, options: options("fps:1", size: 32, fit: .stretch)).frames.first).image
        expectColor(img, (255, 0, 0), tolerance: 25, "left", x: 0, y: 0, width: 12, height: 32)
        expectColor(img, (0, 0, 255), tolerance: 25, "right", x: 20, y: 0, width: 12, height: 32)
        // Padding follows the displayed (portrait) shape: bars left and right.
        let pad = try #require(MediaDecoder.decodeAll(path: rotated, options: options("fps:1", size: 32, fit: .pad)).frames.first).image
        expectColor(pad, (0, 0, 0), tolerance: 2, "left bar", x: 0, y: 0, width: 3, height: 32)
        expectColor(pad, (0, 0, 0), tolerance: 2, "right bar", x: 29, y: 0, width: 3, height: 32)
        // ffmpeg itself agrees on the orientation.
        let reference = Clips.directory + "/redblue-rot-ffmpeg.png"
        try Clips.run("ffmpeg", ["-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", rotated, "-frames:v", "1", reference])
        let (_, refFrames, _) = try MediaDecoder.decodeAll(path: reference, options: options("fps:1", size: 32, fit: .stretch))
        let ref = try #require(refFrames.first).image
        expectColor(ref, (255, 0, 0), tolerance: 25, "ffmpeg left", x: 0, y: 0, width: 12, height: 32)
    }

    @Test("variable frame rate: the frame on screen at each target")
    func variableFrameRate() throws {
        // 10 frames at 0.1 s spacing, then frames every 0.5 s: 1.0, 1.5, ..., 5.5.
        let file = try Clips.make("vfr.mkv", [
            "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=2",
            "-vf", "setpts='if(lt(N,10),N*0.1,1+(N-10)*0.5)/TB'", "-fps_mode", "vfr",
            "-c:v", "libx264", "-pix_fmt", "yuv420p"])
        let (report, frames, _) = try MediaDecoder.decodeAll(path: file, options: options("fps:4"))
        let frameTimes = (0..<10).map { Double($0) / 10 } + (0..<10).map { 1 + Double($0) / 2 }
        #expect(ms(try Clips.frameTimes(file)) == ms(frameTimes))
        let expected = expectedSamples(.fps(4), duration: report.probe.duration, frameTimes: frameTimes, frameDuration: 0.5)
        #expect(ms(frames.map(\.info.time)) == ms(expected.map(\.time)))
        #expect(frames.map(\.info.index) == expected.map(\.index))
        #expect(frames.count >= 12)
    }

    @Test("a stream that does not start at 0: times count from the start of the file")
    func nonZeroStart() throws {
        let file = try Clips.make("start.ts", Clips.testsrc(64, 48, rate: 25, seconds: 4)
            + ["-c:v", "libx264", "-bf", "0", "-pix_fmt", "yuv420p", "-output_ts_offset", "10"])
        let (report, frames, _) = try MediaDecoder.decodeAll(path: file, options: options("fps:1"))
        #expect((report.probe.startTime ?? 0) > 9)
        #expect(ms(frames.map(\.info.time)) == [0, 1, 2, 3])
        #expect(frames.map(\.info.index) == [0, 25, 50, 75])
    }
}
