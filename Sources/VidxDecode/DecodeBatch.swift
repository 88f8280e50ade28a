import Foundation
import VidxCore

/// The decode stage over a list of files, callable in-process: what `vidx-decode` runs.
/// Files are decoded `jobs` at a time; their report lines come out in input order.
public enum DecodeBatch {
    /// Decodes `files` (`jobs` at a time, file i on worker i mod jobs) and hands each report
    /// line to `deliver` in input order, one at a time, as soon as it and every line
    /// before it are done.
    /// - Parameter out: a directory for the sampled frames as PNG (`frameDirectoryNames`).
    /// - Throws: `FileWriteError` when `out` cannot be created.
    public static func run(_ files: [String], options: DecodeOptions, jobs: Int, out: String?,
                           deliver: @escaping @Sendable (DecodeReportLine) -> Void) throws {
        if let out { try AtomicFile.makeDirectory(out) }
        let frameDirs = frameDirectoryNames(files)
        let lock = NSLock()
        nonisolated(unsafe) var waiting: [Int: DecodeReportLine] = [:]
        nonisolated(unsafe) var next = 0
        DispatchQueue.concurrentPerform(iterations: max(1, min(jobs, files.count))) { worker in
            var i = worker
            while i < files.count {
                let line = decode(files[i], options: options, frameDir: out.map { $0 + "/" + frameDirs[i] })
                lock.lock()
                waiting[i] = line
                while let ready = waiting.removeValue(forKey: next) {
                    deliver(ready)
                    next += 1
                }
                lock.unlock()
                i += jobs
            }
        }
    }

    /// One directory name per input for its PNGs, none the same as another's.
    ///
    /// The first input with a given file name gets that name; a later one gets
    /// `<name>-<n>` with the smallest n >= 2 that is neither the file name of any input
    /// (so `x.mp4` twice and an input really named `x.mp4-2` get `x.mp4`, `x.mp4-3`,
    /// `x.mp4-2`) nor a name already given. Names that differ only in case or Unicode
    /// normalisation count as the same, so that no two can land in one folder on a
    /// case-insensitive or normalising file system (macOS) either.
    public static func frameDirectoryNames(_ files: [String]) -> [String] {
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

    /// Decodes one file, writing its sampled frames as PNG under `frameDir` when given;
    /// never throws: every failure is in the report line.
    public static func decode(_ file: String, options: DecodeOptions, frameDir: String?) -> DecodeReportLine {
        var entry = DecodeReportLine(file: file)
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

/// One file's report line: what `vidx-decode --json` prints (Schemas/decode-report.schema.json).
public struct DecodeReportLine: Encodable, Sendable {
    public typealias ErrorInfo = VideoRecord.ErrorInfo
    public var file: String
    public var status = VideoStatus.ok
    public var probe: MediaProbe?
    public var frames: [FrameInfo] = []
    public var audio: AudioSummary?
    public var error: ErrorInfo?
    public var stats: DecodeStats?
    /// Set when a sampled frame could not be written (`--out`): the record is then
    /// `failed`/`write_failed`, and the run exits 1.
    public var writeError: String?

    enum CodingKeys: String, CodingKey { case file, status, probe, frames, audio, error, stats }

    public init(file: String) { self.file = file }

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

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(file, forKey: .file)
        try c.encode(status, forKey: .status)
        try c.encode(probe, forKey: .probe)
        try c.encode(frames, forKey: .frames)
        try c.encode(audio, forKey: .audio)
        try c.encode(error, forKey: .error)
        try c.encode(stats, forKey: .stats)
    }

    /// The human-readable report: the status, the probe, the samples, the work done.
    public var text: String {
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

