import Foundation
import Testing
import VidxCore
@testable import VidxDecode

/// Damaged and cut-short files, as the fault-injection campaigns of issue 10 found them:
/// a video that yields no frame is never `ok`, a file cut short is `partial`, and the
/// failure classes are the ones a retry policy can act on.
@Suite("Damaged videos: no frame is never ok, cut files are partial, classes a retry can trust")
struct DamageTests {
    static let policies = ["fps:1", "keyframes", "uniform:4", "every:2"]

    /// 6 s of h264 + AAC in Matroska, 320x240 (so that 4 KB holds the headers but no packet).
    static func matroska() throws -> String {
        try Clips.make("dmg-h264-aac.mkv", Clips.testsrc(320, 240, rate: 25, seconds: 6) + Clips.tone(seconds: 6)
                       + ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"])
    }

    /// 6 s of VP8 + Vorbis in WebM: the video stream states no duration of its own.
    static func webm() throws -> String {
        try Clips.make("dmg-vp8-vorbis.webm", Clips.testsrc(96, 64, rate: 25, seconds: 6) + Clips.tone(seconds: 6)
                       + ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k",
                          "-c:a", "libvorbis", "-shortest"])
    }

    /// 6 s of h264 + AAC in MP4, moov at the end or (faststart) at the start.
    static func mp4(faststart: Bool) throws -> String {
        try Clips.make(faststart ? "dmg-h264-aac-faststart.mp4" : "dmg-h264-aac.mp4",
                       Clips.testsrc(96, 64, rate: 25, seconds: 6) + Clips.tone(seconds: 6)
                       + ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "25", "-c:a", "aac", "-shortest"]
                       + (faststart ? ["-movflags", "+faststart"] : []))
    }

    /// Decodes with `partial` and returns the report and frames, failing the test on an error.
    static func decodePartial(_ path: String, _ policy: String = "fps:1", audio: Bool = false) throws
        -> (report: DecodeReport, frames: [SampledFrame]) {
        let (report, frames, _) = try MediaDecoder.decodeAll(path: path, options: options(policy, audio: audio, partial: true))
        return (report, frames)
    }

    /// The damage of a decode with partial results allowed: the report's (with its frame
    /// count), or the error it failed with (no frame before the damage: 0 frames).
    static func damage(_ path: String, _ policy: String) throws -> (error: DecodeError?, frames: Int) {
        do {
            let (report, frames) = try decodePartial(path, policy)
            return (report.damage, frames.count)
        } catch let e as DecodeError {
            return (e, 0)
        }
    }

    // MARK: No frame at all

    @Test("headers intact, no frame: corrupt under every policy, with or without partial results",
          arguments: ["mkv-4k-prefix", "mp4-stsz-doubled"])
    func noFrameIsCorrupt(_ defect: String) throws {
        let file: String
        switch defect {
        case "mkv-4k-prefix":
            file = try Clips.prefix(try Self.matroska(), bytes: 4096, name: "dmg-4k.mkv")
        default:
            // The video track's sample-size box claims twice its size: no sample can be read.
            file = try Clips.patched(try Self.mp4(faststart: false), name: "dmg-stsz.mp4") { b in
                let at = try #require(Clips.find("stsz", in: b))
                let size = b[(at - 4)..<at].reduce(0) { $0 << 8 | Int($1) } * 2
                for k in 0..<4 { b[at - 4 + k] = UInt8(truncatingIfNeeded: size >> (8 * (3 - k))) }
            }
        }
        // The headers still open and promise a 6 s video: the failure is about frames.
        let probe = try MediaDecoder.probe(path: file)
        #expect(abs((probe.duration ?? 0) - 6) < 0.1)
        #expect(probe.video != nil)
        for policy in Self.policies {
            for partial in [true, false] {
                try expectFailure(file, .corrupt, options: options(policy, partial: partial))
            }
        }
        let (error, _) = try Self.damage(file, "fps:1")
        #expect(error?.message.contains("no frame") == true, "\(String(describing: error))")
    }

    // MARK: Cut short

    @Test("a WebM cut short is partial, keeps the samples before the cut, and fails without partial results",
          arguments: [0.1, 0.3, 0.5])
    func cutWebMIsPartial(_ fraction: Double) throws {
        let good = try Self.webm()
        #expect(try MediaDecoder.probe(path: good).video?.duration == nil, "the test needs a video stream without a duration")
        let cut = try Clips.truncated(good, fraction: fraction, name: "dmg-cut-\(fraction).webm")
        let (_, full) = try Self.decodePartial(good)
        #expect(full.count == 6)
        for policy in Self.policies {
            // Partial (or, when no target falls before the cut, failed), never ok.
            let (damage, count) = try Self.damage(cut, policy)
            let d = try #require(damage, "\(policy): \(count) frames, no damage")
            #expect(d.kind == .corrupt)
            #expect(d.path == cut)
            #expect(d.message.contains("truncated"), "\(d)")
            if policy == "fps:1" || policy == "keyframes" { #expect(count >= 1) }
            try expectFailure(cut, .corrupt, options: options(policy))
        }
        let (_, frames) = try Self.decodePartial(cut)
        #expect(frames.count < full.count)
        #expect(frames.map(\.info) == Array(full.prefix(frames.count)).map(\.info))
        #expect(frames.map(\.image) == Array(full.prefix(frames.count)).map(\.image))
    }

    @Test("a Matroska file cut short is partial and fails without partial results", arguments: [0.1, 0.5])
    func cutMatroskaIsPartial(_ fraction: Double) throws {
        let cut = try Clips.truncated(try Self.matroska(), fraction: fraction, name: "dmg-cut-\(fraction).mkv")
        for policy in Self.policies {
            let (damage, count) = try Self.damage(cut, policy)
            #expect(damage?.kind == .corrupt, "\(policy): \(count) frames")
            #expect(count < 6)
            if policy == "fps:1" || policy == "keyframes" { #expect(count >= 1) }
            try expectFailure(cut, .corrupt, options: options(policy))
        }
    }

    @Test("audio that outlasts the video is not a cut: ok", arguments: ["mkv", "webm", "mp4"])
    func longerAudioIsOk(_ ext: String) throws {
        let video: [String] = ext == "webm" ? ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-c:a", "libvorbis"]
            : ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"]
        // 4 s of video, 5.5 s of audio: the container's duration is the audio's.
        let file = try Clips.make("dmg-long-audio.\(ext)", Clips.testsrc(96, 64, rate: 25, seconds: 4)
                                  + Clips.tone(seconds: 5.5) + video)
        let probe = try MediaDecoder.probe(path: file)
        #expect((probe.duration ?? 0) > 5.4)
        for policy in Self.policies {
            for audio in [false, true] {
                let (report, frames, _) = try MediaDecoder.decodeAll(path: file, options: options(policy, audio: audio))
                #expect(report.damage == nil, "\(policy)")
                #expect(!frames.isEmpty)
                if policy == "fps:1" { #expect(frames.map(\.info.index) == [0, 25, 50, 75]) }
            }
        }
    }

    @Test("sampling ends early or seeks ahead: a clean file is never mistaken for a cut one", arguments: ["fps:0.2", "uniform:1", "every:2"])
    func earlyEndIsNotTruncation(_ policy: String) throws {
        for file in [try Self.webm(), try Self.matroska(), try Self.mp4(faststart: true)] {
            for seek in [true, false] {
                let (report, frames, _) = try MediaDecoder.decodeAll(path: file, options: options(policy, seek: seek))
                #expect(report.damage == nil, "\(file) \(policy)")
                #expect(!frames.isEmpty)
            }
        }
    }

    // MARK: Classes

    @Test("a Matroska or WebM file cut inside its headers is corrupt, not unreadable",
          arguments: ["mkv", "webm"], [200, 600, 1500])
    func cutHeadersAreCorrupt(_ ext: String, _ bytes: Int) throws {
        let good = ext == "mkv" ? try Self.matroska() : try Self.webm()
        let cut = try Clips.prefix(good, bytes: bytes, name: "dmg-head-\(bytes).\(ext)")
        try expectFailure(cut, .corrupt)
        try expectFailure(cut, .corrupt, options: options("fps:1", partial: true))
    }

    @Test("a codec identifier damaged to 'none' is corrupt; an unknown but well-formed FourCC is unsupported_codec")
    func damagedCodecID() throws {
        for faststart in [true, false] {
            let good = try Self.mp4(faststart: faststart)
            for (name, tag) in [("zero", [UInt8](repeating: 0, count: 4)), ("flipped", [0x61, 0xf6, 0x63, 0x31] as [UInt8])] {
                let file = try Clips.patched(good, name: "dmg-codec-\(name)-\(faststart).mp4") { b in
                    let stsd = try #require(Clips.find("stsd", in: b))
                    let entry = try #require(Clips.find("avc1", in: b, from: stsd))
                    b.replaceSubrange(entry..<(entry + 4), with: tag)
                }
                #expect(try MediaDecoder.probe(path: file).video?.codec == "none")
                try expectFailure(file, .corrupt)
                try expectFailure(file, .corrupt, options: options("fps:1", partial: true))
            }
            let unknown = try Clips.patched(good, name: "dmg-codec-unknown-\(faststart).mp4") { b in
                let stsd = try #require(Clips.find("stsd", in: b))
                let entry = try #require(Clips.find("avc1", in: b, from: stsd))
                b.replaceSubrange(entry..<(entry + 4), with: Array("zq9x".utf8))
            }
            try expectFailure(unknown, .unsupportedCodec)
        }
        let mkv = try Clips.patched(try Self.matroska(), name: "dmg-codec.mkv") { b in
            let id = try #require(Clips.find("V_MPEG4/ISO/AVC", in: b))
            b[id + 2] = 0
        }
        #expect(try MediaDecoder.probe(path: mkv).video?.codec == "none")
        try expectFailure(mkv, .corrupt)
    }

    @Test("an MP4 cut anywhere before its samples is corrupt; not_media_file only when nothing recognises the bytes",
          arguments: [false, true])
    func cutMP4(_ faststart: Bool) throws {
        let good = try Self.mp4(faststart: faststart)
        let boxes = try Clips.mp4Boxes(good)
        let moov = try #require(boxes.first { $0.type == "moov" })
        let mdat = try #require(boxes.first { $0.type == "mdat" })
        let size = try Data(contentsOf: URL(fileURLWithPath: good)).count
        #expect(faststart ? moov.offset < mdat.offset : moov.offset > mdat.offset)
        #expect(boxes.last.map { $0.offset + $0.size } == size)
        // Inside the ftyp box, just after it, inside moov (its first and its last track);
        // faststart: just after moov, just into mdat; moov at the end: anywhere in mdat,
        // and at the start of moov. (A cut inside the trailing `udta` metadata loses
        // nothing FFmpeg reads: every frame is there, and it is rightly `ok`.)
        var cuts = [8, 16, boxes[0].size, boxes[0].size + 8, moov.offset + 8, moov.offset + moov.size / 2,
                    moov.offset + moov.size * 3 / 4]
        if faststart {
            cuts += [moov.offset + moov.size, mdat.offset + 8]
        } else {
            cuts += [mdat.offset + 8, mdat.offset + mdat.size / 2, moov.offset]
        }
        for cut in cuts {
            let file = try Clips.prefix(good, bytes: cut, name: "dmg-mp4-\(faststart)-\(cut).mp4")
            try expectFailure(file, .corrupt)
            try expectFailure(file, .corrupt, options: options("fps:1", partial: true))
        }
        // Four bytes (a box size and nothing else) are recognised by nothing.
        try expectFailure(try Clips.prefix(good, bytes: 4, name: "dmg-mp4-\(faststart)-4.mp4"), .notMediaFile)
        if faststart {
            // Cut inside the samples: the frames before the cut, then the damage.
            let half = try Clips.prefix(good, bytes: mdat.offset + mdat.size / 2, name: "dmg-mp4-half.mp4")
            let (report, frames) = try Self.decodePartial(half)
            #expect(report.damage?.kind == .corrupt)
            #expect(frames.count >= 2 && frames.count < 6)
            try expectFailure(half, .corrupt)
        }
    }

    // MARK: Audio damage

    @Test("damaged audio is counted and reported like video damage")
    func audioDamage() throws {
        let good = try Self.mp4(faststart: true)
        let audioPackets = try Clips.run("ffprobe", ["-v", "error", "-select_streams", "a:0", "-show_entries",
                                                     "packet=size,pos", "-of", "csv=p=0", good])
            .split(separator: "\n").compactMap { line -> (size: Int, pos: Int)? in
                let f = line.split(separator: ",").compactMap { Int($0) }
                return f.count == 2 ? (f[0], f[1]) : nil
            }
        #expect(audioPackets.count > 200)
        // Garbage over ten AAC packets at about 2 s; the video is untouched.
        let file = try Clips.patched(good, name: "dmg-audio.mp4") { b in
            var state: UInt32 = 12345
            for p in audioPackets[100..<110] {
                for i in p.pos..<(p.pos + p.size) {
                    state = state &* 1_103_515_245 &+ 12345
                    b[i] = UInt8(truncatingIfNeeded: state >> 16)
                }
            }
        }
        let (clean, cleanFrames, _) = try MediaDecoder.decodeAll(path: good, options: options("fps:1", audio: true))
        #expect(clean.damage == nil)
        #expect(clean.audio?.errors == 0)
        let (report, frames, track) = try MediaDecoder.decodeAll(path: file, options: options("fps:1", audio: true, partial: true))
        let damage = try #require(report.damage)
        #expect(damage.kind == .corrupt)
        #expect(damage.message.contains("audio"), "\(damage)")
        let audio = try #require(report.audio)
        #expect(audio.errors >= 1 && audio.errors <= 10, "\(audio.errors)")
        #expect(try #require(track).samples.count > 16000 * 5)
        // The video is whole.
        #expect(frames.map(\.info) == cleanFrames.map(\.info))
        #expect(frames.map(\.image) == cleanFrames.map(\.image))
        // Without partial results the file fails; without audio it is ok.
        try expectFailure(file, .corrupt, options: options("fps:1", audio: true))
        let (noAudio, _, _) = try MediaDecoder.decodeAll(path: file, options: options("fps:1"))
        #expect(noAudio.damage == nil)
        // The count is in the JSON summary only when there is one.
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        #expect(String(decoding: try encoder.encode(audio), as: UTF8.self).contains("\"errors\":\(audio.errors)"))
        #expect(!String(decoding: try encoder.encode(try #require(clean.audio)), as: UTF8.self).contains("errors"))
    }
}
