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

    public init(from decoder: Decoder) throws {
        try StrictDecoding.checkKeys(decoder, allowed: ["id", "path", "content_hash"])
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        path = try c.decode(String.self, forKey: .path)
        contentHash = try c.decodeIfPresent(String.self, forKey: .contentHash)
        if let h = contentHash, !StrictDecoding.isLowercaseHex(h, count: 64) {
            throw StrictDecoding.Violation("content_hash is not 64 lowercase hex digits (a SHA-256)")
        }
    }

    public init(id: String, path: String, contentHash: String? = nil) {
        self.id = id
        self.path = path
        self.contentHash = contentHash
    }

    /// The largest work unit read (a unit of 100,000 videos is about 10 MB).
    public static let maxUnitBytes = 256 << 20

    /// Reads a JSON Lines unit (Schemas/work-unit.schema.json): lines end in LF or CRLF,
    /// blank lines are skipped; relative paths are resolved against the unit's directory.
    ///
    /// Ids are checked as the schema says: not empty, at most 4,096 characters, unique by
    /// their UTF-8 bytes (`ExternalID`: `café` in NFC and in NFD are two videos).
    /// - Throws: `StageFileError` naming the unit, the line and the problem; also when the
    ///   unit is not a regular file (a FIFO is refused, not waited on).
    public static func readUnit(path: String) throws -> [UnitVideo] {
        let base = URL(fileURLWithPath: path).deletingLastPathComponent().path
        let entries = try JSONLines.readEntries(UnitVideo.self, path: path, maxBytes: maxUnitBytes,
                                                what: "a work unit entry {\"id\", \"path\"}", container: "unit",
                                                schema: "Schemas/work-unit.schema.json", id: \.id)
        return try entries.map { number, entry in
            var v = entry
            guard !v.path.isEmpty else {
                throw StageFileError(path: path, message: "line \(number): video '\(v.id)' has an empty path")
            }
            if !v.path.hasPrefix("/") { v.path = base + "/" + v.path }
            return v
        }
    }
}

/// Per-video statistics written to `UNIT.stats.json` (Schemas/extract-stats.schema.json).
public struct VideoExtractStats: Codable, Sendable {
    public var id: String
    public var status: VideoStatus
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
    public var experts: [String: FeatureSeries]
    public var stats: VideoExtractStats

    public init(record: VideoRecord, experts: [String: FeatureSeries], stats: VideoExtractStats) {
        self.record = record
        self.experts = experts
        self.stats = stats
    }

    /// Marks the video `failed` with `error`, dropping its tensors (a failed video has none).
    public mutating func fail(_ error: VideoRecord.ErrorInfo) {
        record.status = .failed
        record.error = error
        stats.status = .failed
        stats.error = error
        experts = [:]
    }

    /// Fails a video that is not failed yet but has no feature row in any expert
    /// (`no_features`): stored `ok`, every such video would get the same codes and match
    /// every other with score 1.0. Call it once every expert is in (after imports).
    /// - Returns: whether the video was failed here.
    @discardableResult
    public mutating func failIfNoFeatures() -> Bool {
        guard record.status != .failed, experts.values.allSatisfy({ $0.rows == 0 }) else { return false }
        var message = "no expert produced a feature row (\(stats.frames) frames and \(String(format: "%.2f", stats.audioSeconds)) s of audio decoded)"
        if record.status == .partial, let damage = record.error {
            message += "; the decode was partial: \(damage.class.rawValue): \(damage.message)"
        }
        fail(.init(class: .noFeatures, message: message))
        return true
    }
}

/// Decodes a video once and feeds every expert.
public struct VideoExtractor: Sendable {
    /// Every error class a video's record can carry after the extract stage (features file
    /// and `UNIT.stats.json`): the decoder's classes, then the stage's own.
    public static let errorClasses: [FailureClass] = FailureClass.extract

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
        var stats = VideoExtractStats(id: video.id, status: .ok, error: nil, frames: 0, audioSeconds: 0, decodeSeconds: 0,
                                      expertSeconds: [:], totalSeconds: 0, rows: [:])
        var record = VideoRecord(id: video.id, contentHash: video.contentHash ?? "", status: .ok, error: nil)
        func elapsed() -> Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
        func failed(_ cls: FailureClass, _ message: String) -> ExtractedVideo {
            record.status = .failed
            record.error = .init(class: cls, message: message)
            stats.status = .failed
            stats.error = record.error
            stats.totalSeconds = elapsed()
            return ExtractedVideo(record: record, experts: [:], stats: stats)
        }
        var running: [(name: String, expert: Expert)] = []
        for e in experts {
            guard let expert = registry.make(extractorID: e.extractorID) else {
                return failed(.unknownExpert, "no built-in extractor '\(e.extractorID)' for expert '\(e.name)'")
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
            return failed(e.kind, e.message)
        } catch {
            return failed(.expertFailed, "\(error)")
        }
        if record.contentHash.isEmpty {
            do { record.contentHash = try SHA256Digest.hex(fileAt: video.path) } catch {
                return failed(.unreadable, "\(error)")
            }
        }
        var out: [String: FeatureSeries] = [:]
        for r in running {
            do {
                let s = try r.expert.finish()
                if s.rows > 0 {
                    out[r.name] = s
                }
                stats.rows[r.name] = s.rows
                stats.expertSeconds[r.name] = r.expert.seconds
            } catch {
                return failed(.expertFailed, "expert '\(r.name)': \(error)")
            }
        }
        if let damage = report.damage {
            record.status = .partial
            record.error = .init(class: damage.kind, message: damage.message)
            stats.status = .partial
            stats.error = record.error
        }
        stats.frames = report.frames.count
        stats.audioSeconds = Double(audioSamples) / Double(ExtractSampling.audioSampleRate)
        stats.totalSeconds = elapsed()
        stats.decodeSeconds = max(0, stats.totalSeconds - stats.expertSeconds.values.reduce(0, +))
        return ExtractedVideo(record: record, experts: out, stats: stats)
    }
}
