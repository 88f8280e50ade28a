import Foundation
import Logging
import VidxCore

/// The pipeline's log, through swift-log: on a terminal, readable lines on standard error;
/// otherwise (cron, make -O, Slurm logs) one JSON object a line on standard error, with
/// `ts` (ISO 8601 UTC), `level`, `component`, `event` and the event's fields as strings.
public struct PipelineLog: Sendable {
    let logger: Logger
    let terminal: Bool

    public init(component: String) {
        terminal = isatty(2) != 0
        var logger = Logger(label: "vidx.\(component)") { _ in
            PipelineLogHandler(component: component, json: isatty(2) == 0)
        }
        logger.logLevel = .info
        self.logger = logger
    }

    /// Logs `event` with `fields`; `text` is the line shown on a terminal (default: the
    /// event and its fields).
    public func event(_ event: String, _ fields: [String: String] = [:], level: Logger.Level = .info, text: String? = nil) {
        var metadata: Logger.Metadata = [:]
        for (k, v) in fields { metadata[k] = .string(v) }
        let message = terminal ? (text ?? fields["message"] ?? fields.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")) : event
        logger.log(level: level, "\(message)", metadata: metadata)
    }
}

/// Writes swift-log events as JSON lines or text lines on standard error.
struct PipelineLogHandler: LogHandler {
    let component: String
    let json: Bool
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info
    var metadataProvider: Logger.MetadataProvider?

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var line: String
        if json {
            var object: [String: String] = ["ts": utcTimestamp(), "level": event.level.rawValue, "component": component,
                                            "event": event.message.description]
            for (k, v) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) { object[k] = "\(v)" }
            line = (try? String(decoding: makeJSONEncoder().encode(object), as: UTF8.self)) ?? "{}"
        } else {
            line = "vidx-pipeline \(component): \(event.message)"
        }
        line += "\n"
        FileHandle.standardError.write(Data(line.utf8))
    }
}

/// How far the plan's units are, measured from the work directory when a unit finishes.
public struct UnitProgress: Sendable {
    public var done: Int
    public var total: Int
    public var videosDone: Int
    public var videosTotal: Int
    public var elapsed: Double

    public var videosPerSecond: Double { elapsed > 0 ? Double(videosDone) / elapsed : 0 }
    public var etaSeconds: Double { videosPerSecond > 0 ? Double(videosTotal - videosDone) / videosPerSecond : 0 }

    /// Counts the plan's units whose record exists (not re-verified: this is a progress line).
    public static func measure(plan: PlanFile, work: WorkLayout) -> UnitProgress {
        var p = UnitProgress(done: 0, total: plan.units.count, videosDone: 0, videosTotal: 0, elapsed: 0)
        for u in plan.units {
            p.videosTotal += u.videos
            if FileManager.default.fileExists(atPath: work.record(u.name)) {
                p.done += 1
                p.videosDone += u.videos
            }
        }
        let started = ISO8601DateFormatter().date(from: plan.created) ?? Date()
        p.elapsed = Date().timeIntervalSince(started)
        return p
    }

    /// A bar of `width` cells for the share of units done: `[######--------------]`.
    public func bar(width: Int = 20) -> String {
        let filled = total > 0 ? min(width, done * width / total) : width
        return "[" + String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled) + "]"
    }

    /// `[######--------------] 3/10 units, u1234...: 32 videos (1 failed) in 41.2 s; 0.78 videos/s, ETA 4m 12s`:
    /// the terminal line printed as each unit finishes (units run in parallel processes
    /// under make, so each prints its own line rather than redrawing one).
    public func line(unit: String, record: UnitRecord) -> String {
        let eta = Int(etaSeconds.rounded())
        return String(format: "%@ %d/%d units, %@: %d videos (%d failed) in %.1f s; %.2f videos/s, ETA %dm %02ds",
                      bar(), done, total, unit, record.counts.videos, record.counts.failed,
                      record.seconds.extract + record.seconds.encode, videosPerSecond, eta / 60, eta % 60)
    }
}

/// Runs a command with standard streams inherited, passing SIGINT and SIGTERM on to it.
public enum ChildProcess {
    /// Runs `argv` (found on PATH) and returns its exit status (128 + N when a signal N ended it).
    public static func run(_ argv: [String]) -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = argv
        do { try p.run() } catch {
            printError("vidx-pipeline: cannot run \(argv.joined(separator: " ")): \(error)")
            return 127
        }
        let pid = p.processIdentifier
        let sources = [SIGINT, SIGTERM].map { sig -> DispatchSourceSignal in
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler { kill(pid, sig) }
            s.resume()
            return s
        }
        p.waitUntilExit()
        for s in sources { s.cancel() }
        return p.terminationReason == .uncaughtSignal ? 128 + p.terminationStatus : p.terminationStatus
    }
}
