import Foundation
import VidxCore
import VidxDecode
import VidxExperts

/// One line of a work unit (Schemas/work-unit.schema.json).
public struct UnitVideo: Codable, Sendable, Equatable {
    public var id: String
    public var path: String
    public var contentHash: String?

    enum CodingKeys: String, CodingKey { case id, path, contentHash = "content_hash" }

    public init(id: String, path: String, contentHash: String? = nil) {
        self.id = id
        self.path = path
        self.contentHash = contentHash
    }

    /// Reads a JSON Lines unit; relative paths are resolved against the unit's directory.
    /// - Throws: `StageFileError` naming the unit, the line and the problem.
    public static func readUnit(path: String) throws -> [UnitVideo] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw StageFileError(path: path, message: "cannot read the work unit")
        }
        let base = URL(fileURLWithPath: path).deletingLastPathComponent().path
        var videos: [UnitVideo] = [], seen = Set<String>()
        for (n, line) in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let text = line.trimmingCharacters(in: .whitespaces)
            if text.isEmpty { continue }
            var v: UnitVideo
            do { v = try JSONDecoder().decode(UnitVideo.self, from: Data(text.utf8)) } catch {
                throw StageFileError(path: path, message: "line \(n + 1): not a work unit entry {\"id\", \"path\"} (Schemas/work-unit.schema.json): \(error)")
            }
            guard !v.id.isEmpty, !v.path.isEmpty else {
                throw StageFileError(path: path, message: "line \(n + 1): empty id or path")
            }
            guard seen.insert(v.id).inserted else {
                throw StageFileError(path: path, message: "line \(n + 1): id '\(v.id)' appears twice in the unit")
            }
            if !v.path.hasPrefix("/") { v.path = base + "/" + v.path }
            videos.append(v)
        }
        return videos
    }
}

/// Per-video statistics written to `UNIT.stats.json` (Schemas/extract-stats.schema.json).
public struct VideoExtractStats: Codable, Sendable {
    public var id: String
    public var status: String
    public var error: VideoRecord.ErrorInfo?
    public var frames: Int
    public var audioSeconds: Double
    public var decodeSeconds: Double
    public var expertSeconds: [String: Double]
    public var totalSeconds: Double
    public var rows: [String: Int]

    enum CodingKeys: String, CodingKey {
        case id, status, error, frames, audioSeconds = "audio_seconds", decodeSeconds = "decode_seconds"
        case expertSeconds = "expert_seconds", totalSeconds = "total_seconds", rows
    }

    // `error` is written as null when absent, as the schema requires.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(status, forKey: .status)
        try c.encode(error, forKey: .error)
        try c.encode(frames, forKey: .frames)
        try c.encode(audioSeconds, forKey: .audioSeconds)
        try c.encode(decodeSeconds, forKey: .decodeSeconds)
        try c.encode(expertSeconds, forKey: .expertSeconds)
        try c.encode(totalSeconds, forKey: .totalSeconds)
        try c.encode(rows, forKey: .rows)
    }
}

/// The features of one video, ready for the features file.
public struct ExtractedVideo: Sendable {
    public var record: VideoRecord
    public var experts: [String: StoredExpert]
    public var stats: VideoExtractStats
}

/// Decodes a video once and feeds every expert.
public struct VideoExtractor: Sendable {
    public let registry: ExpertRegistry
    /// Expert name -> extractor id, the bundle's experts to run.
    public let experts: [(name: String, extractorID: String)]
    public let decodeThreads: Int
    public let limits: DecodeLimits

    public init(registry: ExpertRegistry, experts: [(name: String, extractorID: String)], decodeThreads: Int = 1,
                limits: DecodeLimits = DecodeLimits()) {
        self.registry = registry
        self.experts = experts
        self.decodeThreads = decodeThreads
        self.limits = limits
    }

    /// The decode options every extraction uses: 4 fps, 224 x 224 (centre crop), 16 kHz mono.
    public static func decodeOptions(threads: Int, limits: DecodeLimits) -> DecodeOptions {
        var o = DecodeOptions()
        o.sampling = .fps(Double(ExtractSampling.framesPerSecond))
        o.width = ExtractSampling.frameSize
        o.height = ExtractSampling.frameSize
        o.audio = true
        o.audioSampleRate = ExtractSampling.audioSampleRate
        o.threads = threads
        o.allowPartial = true
        o.limits = limits
        return o
    }

    /// Extracts one video; never throws: a failure is recorded in the result.
    public func extract(_ video: UnitVideo) -> ExtractedVideo {
        let start = DispatchTime.now().uptimeNanoseconds
        var stats = VideoExtractStats(id: video.id, status: "ok", error: nil, frames: 0, audioSeconds: 0, decodeSeconds: 0,
                                      expertSeconds: [:], totalSeconds: 0, rows: [:])
        var record = VideoRecord(id: video.id, contentHash: video.contentHash ?? "", status: "ok", error: nil)
        func elapsed() -> Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
        func failed(_ cls: String, _ message: String) -> ExtractedVideo {
            record.status = "failed"
            record.error = .init(class: cls, message: message)
            stats.status = "failed"
            stats.error = record.error
            stats.totalSeconds = elapsed()
            return ExtractedVideo(record: record, experts: [:], stats: stats)
        }
        var running: [(name: String, expert: Expert)] = []
        for e in experts {
            guard let expert = registry.make(extractorID: e.extractorID) else {
                return failed("unknown_expert", "no built-in extractor '\(e.extractorID)' for expert '\(e.name)'")
            }
            running.append((e.name, expert))
        }
        let report: DecodeReport
        var audioSamples = 0
        do {
            report = try MediaDecoder.decode(
                path: video.path, options: VideoExtractor.decodeOptions(threads: decodeThreads, limits: limits),
                onFrame: { frame in for r in running { try r.expert.consume(frame: frame) } },
                onAudio: { chunk in
                    audioSamples += chunk.count
                    for r in running { try r.expert.consume(audio: chunk) }
                })
        } catch let e as DecodeError {
            return failed(e.kind.rawValue, e.message)
        } catch {
            return failed("expert_failed", "\(error)")
        }
        if record.contentHash.isEmpty {
            do { record.contentHash = try SHA256Digest.hex(fileAt: video.path) } catch {
                return failed("unreadable", "\(error)")
            }
        }
        var out: [String: StoredExpert] = [:]
        for r in running {
            do {
                let s = try r.expert.finish()
                if s.rows > 0 {
                    out[r.name] = StoredExpert(rows: s.rows, width: s.width, features: s.features, times: s.times)
                }
                stats.rows[r.name] = s.rows
                stats.expertSeconds[r.name] = r.expert.seconds
            } catch {
                return failed("expert_failed", "expert '\(r.name)': \(error)")
            }
        }
        if let damage = report.damage {
            record.status = "partial"
            record.error = .init(class: damage.kind.rawValue, message: damage.message)
            stats.status = "partial"
            stats.error = record.error
        }
        stats.frames = report.frames.count
        stats.audioSeconds = Double(audioSamples) / Double(ExtractSampling.audioSampleRate)
        stats.totalSeconds = elapsed()
        stats.decodeSeconds = max(0, stats.totalSeconds - stats.expertSeconds.values.reduce(0, +))
        return ExtractedVideo(record: record, experts: out, stats: stats)
    }
}
