import Foundation
import Testing
import VidxCore
@testable import VidxDecode

/// Asserts that decoding `path` fails with `kind`, and that the message names the file.
func expectFailure(_ path: String, _ kind: FailureClass, options o: DecodeOptions? = nil,
                   sourceLocation: SourceLocation = #_sourceLocation) throws {
    let opts = try o ?? options("fps:1")
    do {
        let (report, frames, _) = try MediaDecoder.decodeAll(path: path, options: opts)
        Issue.record("expected \(kind), got \(frames.count) frames, damage \(String(describing: report.damage))",
                     sourceLocation: sourceLocation)
    } catch let e as DecodeError {
        #expect(e.kind == kind, "\(e)", sourceLocation: sourceLocation)
        #expect(e.path == path, sourceLocation: sourceLocation)
        #expect(e.description.contains(path), sourceLocation: sourceLocation)
        #expect(!e.message.isEmpty, sourceLocation: sourceLocation)
    }
}

@Suite("Bad input: typed errors, never a crash or a hang")
struct BadInputTests {
    static func goodMP4(faststart: Bool) throws -> String {
        try Clips.make(faststart ? "good-faststart.mp4" : "good.mp4",
                       Clips.testsrc(96, 64, rate: 25, seconds: 8) + ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "25"]
                       + (faststart ? ["-movflags", "+faststart"] : []))
    }

    @Test("missing file: not_found")
    func notFound() throws {
        try expectFailure(Clips.directory + "/does-not-exist.mp4", .notFound)
        try expectFailure(Clips.directory + "/no-such-dir/x.mp4", .notFound)
    }

    @Test("a directory or a pipe: unreadable, without blocking")
    func directory() throws {
        try expectFailure(Clips.directory, .unreadable)
        let fifo = Clips.directory + "/pipe.mp4"
        unlink(fifo)
        #expect(mkfifo(fifo, 0o600) == 0)
        try expectFailure(fifo, .unreadable)
    }

    @Test("zero bytes: corrupt (an interrupted copy)")
    func empty() throws {
        try expectFailure(try Clips.write("empty.mp4", []), .corrupt)
    }

    @Test("a text file named .mp4: not_media_file")
    func textFile() throws {
        let text = Array("This is not a video, it is a shopping list.\neggs\nmilk\n".utf8)
        try expectFailure(try Clips.write("list.mp4", text), .notMediaFile)
        try expectFailure(try Clips.write("random.mkv", (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7919 &+ 13) }), .notMediaFile)
    }

    @Test("audio only: no_video_stream, and the probe still reports the audio")
    func audioOnly() throws {
        let file = try Clips.make("song.mp4", Clips.tone(seconds: 2) + ["-c:a", "aac"])
        try expectFailure(file, .noVideoStream)
        let probe = try MediaDecoder.probe(path: file)
        #expect(probe.video == nil)
        #expect(probe.audio?.codec == "aac")
    }

    @Test("a codec FFmpeg cannot decode: unsupported_codec")
    func unsupportedCodec() throws {
        let avi = try Clips.make("fourcc.avi", Clips.testsrc(64, 48, rate: 10, seconds: 1) + ["-c:v", "mpeg4", "-vtag", "XVID"])
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: avi)))
        // Rename the stream's FourCC (in the stream header and the format chunk).
        let from = Array("XVID".utf8), to = Array("QQ9Z".utf8)
        var replaced = 0
        for i in 0..<(bytes.count - 4) where Array(bytes[i..<(i + 4)]) == from {
            bytes.replaceSubrange(i..<(i + 4), with: to)
            replaced += 1
        }
        #expect(replaced >= 1)
        try expectFailure(try Clips.write("unknown-codec.avi", bytes), .unsupportedCodec)
    }

    @Test("an mp4 cut short before its index: corrupt")
    func truncatedHeader() throws {
        let cut = try Clips.truncated(try Self.goodMP4(faststart: false), fraction: 0.5, name: "cut-noindex.mp4")
        try expectFailure(cut, .corrupt)
        try expectFailure(cut, .corrupt, options: options("fps:1", partial: true))
    }

    @Test("cut half-way: corrupt, or partial with the frames before the damage", arguments: ["mp4", "mkv", "avi"])
    func truncatedMidway(_ ext: String) throws {
        let good: String
        switch ext {
        case "mp4": good = try Self.goodMP4(faststart: true)
        default:
            good = try Clips.make("good.\(ext)", Clips.testsrc(96, 64, rate: 25, seconds: 8)
                + (ext == "avi" ? ["-c:v", "mpeg4", "-g", "25"] : ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "25"]))
        }
        let cut = try Clips.truncated(good, fraction: 0.55, name: "cut.\(ext)")
        try expectFailure(cut, .corrupt)
        let (report, frames, _) = try MediaDecoder.decodeAll(path: cut, options: options("fps:1", partial: true))
        let damage = try #require(report.damage)
        #expect(damage.kind == .corrupt)
        #expect(damage.path == cut)
        #expect(report.isPartial)
        // The samples before the damage are all there, exactly as in the intact file.
        let (_, full, _) = try MediaDecoder.decodeAll(path: good, options: options("fps:1"))
        #expect(frames.count >= 2 && frames.count < full.count)
        #expect(frames.map(\.info) == Array(full.prefix(frames.count)).map(\.info))
        #expect(frames.map(\.image) == Array(full.prefix(frames.count)).map(\.image))
    }

    @Test("garbage in the middle of a stream: partial, corrupt, exactly the intact samples before it")
    func corruptedMiddle() throws {
        let good = try Self.goodMP4(faststart: true)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: good)))
        let garbage = (bytes.count / 2)..<(bytes.count / 2 + 20_000)
        var state: UInt32 = 12345
        for i in garbage where i < bytes.count {
            state = state &* 1_103_515_245 &+ 12345
            bytes[i] = UInt8(truncatingIfNeeded: state >> 16)
        }
        let file = try Clips.write("garbled.mp4", bytes)
        // The earliest frame whose packet the garbage touches: every sample shown before
        // it decodes from intact data.
        let hit = try Clips.videoPackets(good).filter { $0.position < garbage.upperBound && $0.position + $0.size > garbage.lowerBound }
        let damagedFrom = try #require(hit.map(\.time).min())
        let (_, full, _) = try MediaDecoder.decodeAll(path: good, options: options("fps:1"))
        let intact = full.filter { $0.info.time < damagedFrom }
        #expect(full.count == 8)
        #expect(intact.count >= 2 && intact.count < 8, "garbage from \(damagedFrom) s")

        let (report, frames, _) = try MediaDecoder.decodeAll(path: file, options: options("fps:1", partial: true))
        let damage = try #require(report.damage, "\(frames.count) frames and no damage")
        #expect(damage.kind == .corrupt)
        #expect(damage.path == file)
        #expect(damage.message.contains("damaged video"), "\(damage)")
        #expect(frames.map(\.info) == intact.map(\.info))
        #expect(frames.map(\.image) == intact.map(\.image))
        try expectFailure(file, .corrupt)
    }

    @Test("a decode that runs past the wall-clock limit mid-stream: timed_out, after the start")
    func timedOutMidDecode() throws {
        // Costly per frame (every frame converted to 4096 x 4096), long (20 s at 25 fps):
        // opening takes milliseconds, decoding everything minutes.
        let file = try Clips.make("long-costly.mp4", Clips.testsrc(320, 240, rate: 25, seconds: 20)
                                  + ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"])
        var o = try options("fps:25", size: 4096, seek: false)
        o.limits.timeout = 0.5
        var converted = 0
        do {
            let report = try MediaDecoder.decode(path: file, options: o, onFrame: { _ in converted += 1 })
            Issue.record("expected timed_out, got \(report.frames.count) frames, damage \(String(describing: report.damage))")
        } catch let e as DecodeError {
            #expect(converted >= 1, "the deadline passed before the first frame: not a mid-stream timeout")
            #expect(e.kind == .timedOut, "\(e)")
            #expect(e.path == file)
            #expect(e.message.contains("decoding took longer than the 0.5 s limit"), "\(e)")
            #expect(!e.message.contains("the start"), "\(e)")
        }
    }

    @Test("over the pixel or duration limit: too_large")
    func tooLarge() throws {
        let file = try Self.goodMP4(faststart: false)
        var o = try options("fps:1")
        o.limits.maxPixels = 96 * 64 - 1
        try expectFailure(file, .tooLarge, options: o)
        o.limits = DecodeLimits(maxDuration: 5)
        try expectFailure(file, .tooLarge, options: o)
        #expect(throws: DecodeError.self) { try MediaDecoder.probe(path: file, limits: DecodeLimits(maxPixels: 100)) }
        o.limits = DecodeLimits(maxPixels: 96 * 64, maxDuration: 8.5)
        #expect(try MediaDecoder.decodeAll(path: file, options: o).frames.count == 8)
    }

    @Test("over the wall-clock limit: timed_out")
    func timedOut() throws {
        var o = try options("fps:1")
        o.limits.timeout = 1e-9
        try expectFailure(try Self.goodMP4(faststart: false), .timedOut, options: o)
    }

    @Test("every error class has a stable name")
    func kindNames() {
        #expect(FailureClass.decode.map(\.rawValue) == [
            "not_found", "unreadable", "not_media_file", "no_video_stream", "unsupported_codec", "corrupt", "too_large", "timed_out",
        ])
    }
}
