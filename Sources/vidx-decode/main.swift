// vidx-decode: probe videos and sample their frames (and audio) the way the indexer's
// extract stage will, printing what was sampled and optionally writing the frames as PNG.
import ArgumentParser
import Dispatch
import Foundation
import VidxCore
import VidxDecode

struct DecodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vidx-decode",
        abstract: "Probe videos and sample frames and audio through FFmpeg.",
        discussion: """
        Prints, per file, the probe, the sampled frames and the status (ok, partial, failed).
        Exit status: 0 every file ok; 3 finished but some files failed or were only partly
        decoded; 2 usage error; 1 an output could not be written.
        """)

    @Option(name: .long, help: "Sampling policy: fps:R, uniform:N, keyframes or every:S.")
    var sample: String = "fps:1"

    @Option(name: .long, help: "Output size: N (N x N) or WxH.")
    var size: String = "224"

    @Option(name: .long, help: "How frames fit the output: crop, pad or stretch.")
    var fit: String = "crop"

    @Flag(name: .long, help: "Also decode the best audio stream to mono float32.")
    var audio = false

    @Option(name: .customLong("audio-rate"), help: "Sample rate of the decoded audio, Hz.")
    var audioRate: Int = 16_000

    @Flag(name: .long, help: "One JSON object per file per line (see Schemas/decode-report.schema.json).")
    var json = false

    @Option(name: .long, help: "Write every sampled frame as a PNG under DIR/<file name>/.")
    var out: String?

    @Flag(name: .long, help: "Fast mode: skip non-reference frames; a sample may be a neighbouring frame.")
    var fast = false

    @Flag(name: .customLong("no-seek"), help: "Decode every group of pictures, even those without a sample.")
    var noSeek = false

    @Flag(name: .customLong("no-partial"), help: "Fail damaged files instead of keeping the frames before the damage.")
    var noPartial = false

    @Option(name: .long, help: "Files decoded at once.")
    var jobs: Int = 1

    @Option(name: .long, help: "FFmpeg threads per file (default: cores / jobs).")
    var threads: Int?

    @Option(name: .customLong("max-pixels"), help: "Refuse videos over this many pixels a frame (0: no limit).")
    var maxPixels: Int = DecodeLimits().maxPixels

    @Option(name: .customLong("max-duration"), help: "Refuse videos longer than this many seconds (0: no limit).")
    var maxDuration: Double = DecodeLimits().maxDuration

    @Option(name: .long, help: "Give up on a file after this many seconds of wall-clock time (0: no limit).")
    var timeout: Double = 600

    @Argument(help: "Video files.")
    var files: [String] = []

    func validate() throws {
        guard !files.isEmpty else { throw ValidationError("give at least one FILE") }
        guard jobs >= 1, jobs <= 64 else { throw ValidationError("--jobs must be between 1 and 64") }
        if let threads, threads < 1 || threads > 64 { throw ValidationError("--threads must be between 1 and 64") }
        guard audioRate >= 1000, audioRate <= 384_000 else { throw ValidationError("--audio-rate must be between 1000 and 384000") }
        guard FitMode(rawValue: fit) != nil else { throw ValidationError("--fit must be crop, pad or stretch") }
        do { _ = try SamplingPolicy(parsing: sample) } catch { throw ValidationError("\(error)") }
        guard parseSize(size) != nil else { throw ValidationError("--size must be N or WxH with 1 <= N <= 8192") }
        guard maxPixels >= 0, maxDuration >= 0, timeout >= 0 else { throw ValidationError("limits must not be negative") }
    }

    func decodeOptions() throws -> DecodeOptions {
        var o = DecodeOptions()
        o.sampling = try SamplingPolicy(parsing: sample)
        (o.width, o.height) = parseSize(size)!
        o.fit = FitMode(rawValue: fit)!
        o.audio = audio
        o.audioSampleRate = audioRate
        o.fast = fast
        o.seekAhead = !noSeek
        o.allowPartial = !noPartial
        let cores = ProcessInfo.processInfo.activeProcessorCount
        o.threads = threads ?? max(1, cores / jobs)
        o.limits = DecodeLimits(maxPixels: maxPixels, maxDuration: maxDuration, timeout: timeout)
        return o
    }

    func run() throws {
        let options = try decodeOptions()
        if let out { try AtomicFile.makeDirectory(out) }
        let frameDirs = Self.frameDirectoryNames(files)
        let progress = ProgressLine(total: files.count)
        let printer = OrderedPrinter(count: files.count, progress: progress)
        let outDir = out
        let json = self.json
        let files = self.files
        DispatchQueue.concurrentPerform(iterations: jobs) { worker in
            var i = worker
            while i < files.count {
                let entry = Self.process(files[i], options: options,
                                         frameDir: outDir.map { $0 + "/" + frameDirs[i] })
                printer.deliver(i, entry: entry, json: json)
                i += jobs
            }
        }
        progress.finish()
        if printer.writeFailures > 0 { throw ExitCode(StageExit.failure) }
        if printer.failedOrPartial > 0 { throw ExitCode(StageExit.someFailed) }
    }

    /// One directory name per input for its PNGs, none the same as another's.
    ///
    /// The first input with a given file name gets that name; a later one gets
    /// `<name>-<n>` with the smallest n >= 2 that is neither the file name of any input
    /// (so `x.mp4` twice and an input really named `x.mp4-2` get `x.mp4`, `x.mp4-3`,
    /// `x.mp4-2`) nor a name already given. Names that differ only in case or Unicode
    /// normalisation count as the same, so that no two can land in one folder on a
    /// case-insensitive or normalising file system (macOS) either.
    static func frameDirectoryNames(_ files: [String]) -> [String] {
        func key(_ name: String) -> String { name.lowercased() }
        let bases = files.map { ($0 as NSString).lastPathComponent }
        let reserved = Set(bases.map(key))
        var taken = Set<String>()
        return bases.map { base in
            if taken.insert(key(base)).inserted { return base }
            var n = 2
            while reserved.contains(key("\(base)-\(n)")) || taken.contains(key("\(base)-\(n)")) { n += 1 }
            taken.insert(key("\(base)-\(n)"))
            return "\(base)-\(n)"
        }
    }

    /// A frame (or its directory) that could not be written under `--out`.
    struct FrameWriteFailure: Error, CustomStringConvertible {
        let underlying: any Error
        var description: String { "cannot write the sampled frames: \(underlying)" }
    }

    static func process(_ file: String, options: DecodeOptions, frameDir: String?) -> ReportEntry {
        var entry = ReportEntry(file: file)
        do {
            if let frameDir {
                do { try AtomicFile.makeDirectory(frameDir) } catch { throw FrameWriteFailure(underlying: error) }
            }
            let report = try MediaDecoder.decode(path: file, options: options, onFrame: { frame in
                guard let frameDir else { return }
                let name = String(format: "%@/frame-%06d.png", frameDir, frame.info.index)
                // The first failure ends this file's decode: its record says so.
                do { try PNGEncoder.write(frame.image, to: name) } catch { throw FrameWriteFailure(underlying: error) }
            }, onAudio: options.audio ? { _ in } : nil)
            entry.record(report)
        } catch let error as DecodeError {
            entry.record(error)
            if let probe = try? MediaDecoder.probe(path: file, limits: options.limits) { entry.probe = probe }
        } catch let error as FrameWriteFailure {
            // Decoded, perhaps, but its frames are not all on disk: a failure of its own
            // class (not the video's fault), and the run exits 1.
            entry.status = .failed
            entry.error = .init(class: .writeFailed, message: error.description)
            entry.writeError = error.description
            if let probe = try? MediaDecoder.probe(path: file, limits: options.limits) { entry.probe = probe }
        } catch {
            entry.status = .failed
            entry.error = .init(class: .internal, message: "\(error)")
        }
        return entry
    }
}

/// What `--json` prints for one file (Schemas/decode-report.schema.json).
struct ReportEntry: Encodable {
    typealias ErrorInfo = VideoRecord.ErrorInfo
    var file: String
    var status = VideoStatus.ok
    var probe: MediaProbe?
    var frames: [FrameInfo] = []
    var audio: AudioSummary?
    var error: ErrorInfo?
    var stats: DecodeStats?
    var writeError: String?

    enum CodingKeys: String, CodingKey { case file, status, probe, frames, audio, error, stats }

    init(file: String) { self.file = file }

    mutating func record(_ r: DecodeReport) {
        probe = r.probe
        frames = r.frames
        audio = r.audio
        stats = r.stats
        if let d = r.damage {
            status = .partial
            error = .init(class: d.kind, message: d.message)
        }
    }

    mutating func record(_ e: DecodeError) {
        status = .failed
        error = .init(class: e.kind, message: e.message)
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(file, forKey: .file)
        try c.encode(status, forKey: .status)
        try c.encode(probe, forKey: .probe)
        try c.encode(frames, forKey: .frames)
        try c.encode(audio, forKey: .audio)
        try c.encode(error, forKey: .error)
        try c.encode(stats, forKey: .stats)
    }

    var text: String {
        var lines: [String] = []
        let f2 = { (v: Double?) in v.map { String(format: "%.3f", $0) } ?? "?" }
        lines.append("\(file): \(status.rawValue)" + (error.map { " [\($0.class.rawValue)] \($0.message)" } ?? ""))
        if let p = probe {
            lines.append("  container \(p.container), duration \(f2(p.duration)) s, start \(f2(p.startTime)) s")
            if let v = p.video {
                lines.append("  video \(v.codec) \(v.width)x\(v.height) (shown \(v.displayWidth)x\(v.displayHeight)), "
                    + "\(f2(v.averageFrameRate)) fps avg, \(f2(v.realFrameRate)) fps real, \(v.pixelFormat) "
                    + "\(v.bitDepth)-bit \(v.colorRange) range, rotation \(v.rotation)")
            } else {
                lines.append("  video: none")
            }
            if let a = p.audio {
                lines.append("  audio \(a.codec) \(a.sampleRate) Hz, \(a.channels) channel(s)")
            } else {
                lines.append("  audio: none")
            }
        }
        if status != .failed {
            let list = frames.map { "#\($0.index)@\(String(format: "%.3f", $0.time))" }
            lines.append("  sampled \(frames.count) frame(s): " + list.joined(separator: " "))
            if let a = audio {
                let db = a.rms > 0 ? 20 * log10(a.rms) : -Double.infinity
                lines.append(String(format: "  audio decoded: %d samples (%.3f s at %d Hz), rms %.1f dBFS, peak %.3f",
                                    a.samples, a.seconds, a.sampleRate, db, a.peak))
            }
            if let s = stats {
                lines.append(String(format: "  work: %d packets read, %d decoded, %d frames decoded, %d converted, %d seeks, %.3f s",
                                    s.packetsRead, s.packetsDecoded, s.framesDecoded, s.framesConverted, s.seeks, s.seconds))
            }
        }
        return lines.joined(separator: "\n")
    }
}

/// Prints results in input order whatever order the workers finish in.
final class OrderedPrinter: @unchecked Sendable {
    private let lock = NSLock()
    private var waiting: [Int: (ReportEntry, Bool)] = [:]
    private var next = 0
    private let progress: ProgressLine
    private(set) var failedOrPartial = 0
    private(set) var writeFailures = 0
    private let encoder = makeJSONEncoder()

    init(count: Int, progress: ProgressLine) { self.progress = progress }

    func deliver(_ i: Int, entry: ReportEntry, json: Bool) {
        lock.lock(); defer { lock.unlock() }
        waiting[i] = (entry, json)
        while let (e, json) = waiting.removeValue(forKey: next) {
            if e.status != .ok { failedOrPartial += 1 }
            var text = e.text
            if json, let data = try? encoder.encode(e) { text = String(decoding: data, as: UTF8.self) }
            progress.printAbove(text)
            if let w = e.writeError {
                writeFailures += 1
                printError("vidx-decode: \(e.file): \(w)")
            }
            next += 1
            progress.update(done: next, failed: failedOrPartial, current: e.file, force: true)
        }
    }
}

func parseSize(_ s: String) -> (Int, Int)? {
    let parts = s.lowercased().split(separator: "x").map { Int($0) }
    let valid = { (v: Int?) in v.map { $0 >= 1 && $0 <= 8192 } ?? false }
    if parts.count == 1, valid(parts[0]) { return (parts[0]!, parts[0]!) }
    if parts.count == 2, valid(parts[0]), valid(parts[1]) { return (parts[0]!, parts[1]!) }
    return nil
}

// Usage errors exit with 2 (ArgumentParser's default is 64).
do {
    let command = try DecodeCommand.parse()
    try command.validate()
    try command.run()
} catch let code as ExitCode {
    exit(code.rawValue)
} catch {
    let exitCode = DecodeCommand.exitCode(for: error)
    if exitCode == .success {
        print(DecodeCommand.fullMessage(for: error))
        exit(0)
    }
    printError(DecodeCommand.fullMessage(for: error))
    if exitCode == .validationFailure { printError("Run 'vidx-decode --help' for usage.") }
    exit(exitCode == .validationFailure ? StageExit.usage : exitCode.rawValue)
}
