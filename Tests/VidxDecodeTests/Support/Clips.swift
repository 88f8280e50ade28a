import Foundation
import Testing
import VidxCore
import VidxTestSupport
@testable import VidxDecode

/// Test clips, generated on first use with the ffmpeg command-line tool (installed by
/// `make setup`) into one temporary directory per test process. No media is committed.
enum Clips {
    static let directory = makeTestDirectory("clips")

    private static let lock = NSLock()
    nonisolated(unsafe) private static var made: [String: String] = [:]

    /// Runs ffmpeg with `args` to make `name` (once per process) and returns its path.
    static func make(_ name: String, _ args: [String]) throws -> String {
        lock.lock(); defer { lock.unlock() }
        if let p = made[name] { return p }
        let path = directory + "/" + name
        try run("ffmpeg", ["-hide_banner", "-loglevel", "error", "-nostdin", "-y"] + args + [path])
        made[name] = path
        return path
    }

    /// Runs a command, failing with its standard error when it exits non-zero.
    @discardableResult
    static func run(_ tool: String, _ args: [String]) throws -> String {
        let r = try runCommand(tool, args)
        guard r.status == 0 else {
            throw ClipError(message: "\(tool) \(args.joined(separator: " ")) failed: \(r.stderr)")
        }
        return r.stdout
    }

    /// Writes `bytes` as a file named `name` in the clip directory.
    static func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let path = directory + "/" + name
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// A copy of `path` cut to `fraction` of its size.
    static func truncated(_ path: String, fraction: Double, name: String) throws -> String {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return try write(name, Array(data.prefix(Int(Double(data.count) * fraction))))
    }

    /// A copy of `path` holding its first `bytes` bytes.
    static func prefix(_ path: String, bytes: Int, name: String) throws -> String {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return try write(name, Array(data.prefix(bytes)))
    }

    /// A copy of `path` with `edit` applied to its bytes.
    static func patched(_ path: String, name: String, _ edit: (inout [UInt8]) throws -> Void) throws -> String {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        try edit(&bytes)
        return try write(name, bytes)
    }

    /// The offset of the first occurrence of `needle` in `bytes` at or after `from`.
    static func find(_ needle: String, in bytes: [UInt8], from: Int = 0) -> Int? {
        let n = Array(needle.utf8)
        guard bytes.count >= n.count, from <= bytes.count - n.count else { return nil }
        return (from...(bytes.count - n.count)).first { bytes[$0..<($0 + n.count)].elementsEqual(n) }
    }

    /// The top-level boxes of an MP4 file: type, offset and size (32-bit sizes only,
    /// which is all ffmpeg writes for small clips).
    static func mp4Boxes(_ path: String) throws -> [(type: String, offset: Int, size: Int)] {
        let b = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var out: [(String, Int, Int)] = []
        var i = 0
        while i + 8 <= b.count {
            let size = b[i..<(i + 4)].reduce(0) { $0 << 8 | Int($1) }
            guard size >= 8 else { break }
            out.append((String(decoding: b[(i + 4)..<(i + 8)], as: UTF8.self), i, size))
            i += size
        }
        return out
    }

    /// The video packets ffprobe reads: presentation time, byte position and size.
    static func videoPackets(_ path: String) throws -> [(time: Double, position: Int, size: Int)] {
        let csv = try run("ffprobe", ["-v", "error", "-select_streams", "v:0", "-show_entries",
                                      "packet=pts_time,pos,size", "-of", "csv=p=0", path])
        return csv.split(separator: "\n").compactMap { line in
            let f = line.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }
            guard f.count >= 3, let t = Double(f[0]), let size = Int(f[1]), let pos = Int(f[2]) else { return nil }
            return (t, pos, size)
        }
    }

    // MARK: The clips

    /// A lavfi video source of `seconds` s at `rate` fps, `w`x`h`.
    static func testsrc(_ w: Int, _ h: Int, rate: Int = 25, seconds: Double) -> [String] {
        ["-f", "lavfi", "-i", "testsrc2=size=\(w)x\(h):rate=\(rate):duration=\(seconds)"]
    }

    /// A 1 kHz tone at amplitude 0.5 on `channels` channels at 48 kHz.
    static func tone(seconds: Double, channels: Int = 2) -> [String] {
        let ch = Array(repeating: "0.5*sin(2*PI*1000*t)", count: channels).joined(separator: "|")
        return ["-f", "lavfi", "-i", "aevalsrc=\(ch):s=48000:d=\(seconds)"]
    }

    /// "Gray ramp": frame N is a flat gray of luma 16 + 3N (N < 60), coded by x264 at a
    /// quality that keeps flat frames exact, with a fixed IBBBP pattern (B-pyramid, so
    /// reference and non-reference B-frames) and a key frame every 12 frames, at 10 fps.
    /// A sampled frame's pixels therefore say which frame it is: see `frameNumber(of:)`.
    /// (Lossless x264 would not use B-frames.)
    static func grayRamp() throws -> String {
        try make("ramp.mp4", ["-f", "lavfi", "-i", "color=c=black:s=64x48:r=10:d=6,format=yuv420p,geq=lum='16+3*N':cb=128:cr=128",
                              "-c:v", "libx264", "-qp", "4", "-g", "12", "-bf", "3",
                              "-x264-params", "b-adapt=0:b-pyramid=normal", "-pix_fmt", "yuv420p"])
    }

    /// The mean gray level of every gray-ramp frame as ffmpeg itself decodes it.
    static func rampGrays() throws -> [Double] {
        let ramp = try grayRamp()
        grayLock.lock(); defer { grayLock.unlock() }
        if let g = grays { return g }
        let raw = directory + "/ramp.gray"
        try run("ffmpeg", ["-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", ramp,
                           "-pix_fmt", "gray", "-f", "rawvideo", raw])
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: raw)))
        let size = 64 * 48
        // "gray" is full range: ffmpeg expands the limited-range luma, as we do for RGB.
        let g = stride(from: 0, to: bytes.count, by: size).map { start in
            Double(bytes[start..<(start + size)].reduce(0) { $0 + Int($1) }) / Double(size)
        }
        grays = g
        return g
    }
    nonisolated(unsafe) private static var grays: [Double]?
    private static let grayLock = NSLock()

    /// Which gray-ramp frame an image shows: the frame whose gray level (as ffmpeg decodes
    /// it) is nearest, or nil when none is within one level.
    static func frameNumber(of image: RGBImage) throws -> Int? {
        let gray = image.meanColor().0
        let grays = try rampGrays()
        let best = grays.indices.min { abs(grays[$0] - gray) < abs(grays[$1] - gray) }!
        return abs(grays[best] - gray) <= 1 ? best : nil
    }

    /// The presentation times of every frame of the video stream as ffprobe reports them,
    /// relative to the first, sorted.
    static func frameTimes(_ path: String) throws -> [Double] {
        let csv = try run("ffprobe", ["-v", "error", "-select_streams", "v:0", "-show_entries",
                                      "frame=best_effort_timestamp_time", "-of", "csv=p=0", path])
        let times = csv.split(separator: "\n").compactMap { Double($0.trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: ","))) }.sorted()
        return times.map { $0 - (times.first ?? 0) }
    }

    /// Red over blue, each half of a 64x48 frame.
    static func redOverBlue() -> [String] {
        ["-f", "lavfi", "-i", "color=c=red:s=64x24:r=10:d=1[a];color=c=blue:s=64x24:r=10:d=1[b];[a][b]vstack"]
    }
}


struct ClipError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// Options with a sampling policy and size, the rest default.
func options(_ policy: String, size: Int = 32, fit: FitMode = .crop, audio: Bool = false,
             fast: Bool = false, seek: Bool = true, partial: Bool = false) throws -> DecodeOptions {
    var o = DecodeOptions()
    o.sampling = try SamplingPolicy(parsing: policy)
    o.width = size
    o.height = size
    o.fit = fit
    o.audio = audio
    o.fast = fast
    o.seekAhead = seek
    o.allowPartial = partial
    return o
}

/// Rounds times to milliseconds for comparisons.
func ms(_ t: [Double]) -> [Double] { t.map { ($0 * 1000).rounded() / 1000 } }
