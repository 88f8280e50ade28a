import Foundation
import VidxCore

/// A finished unit's record (`WORK/units/U.unit.json`, Schemas/unit-record.schema.json),
/// written last, after every output it names: the unit is done when this file exists and
/// every output it lists has the recorded size and SHA-256.
public struct UnitRecord: Codable, Sendable, Equatable {
    public static let format = "vidx-unit-record"
    public static let version = 1

    public struct Output: Codable, Sendable, Equatable {
        public var file: String
        public var bytes: Int
        public var sha256: String
    }

    /// A video that crashed the extract process, left out of the unit's outputs.
    public struct Crashed: Codable, Sendable, Equatable {
        public var id: String
        public var path: String
        public var contentHash: String
        public var message: String
        enum CodingKeys: String, CodingKey { case id, path, contentHash = "content_hash", message }
    }

    public struct Counts: Codable, Sendable, Equatable {
        public var videos: Int
        public var ok: Int
        public var partial: Int
        public var failed: Int
    }

    public struct Seconds: Codable, Sendable, Equatable {
        public var extract: Double
        public var encode: Double
    }

    public var format = UnitRecord.format
    public var formatVersion = UnitRecord.version
    public var unit: String
    public var bundleFingerprint: String
    public var configSha256: String
    public var tool: String
    /// Features, stats and codes; absent when every video of the unit crashed.
    public var features: Output?
    public var stats: Output?
    public var codes: Output?
    public var crashed: [Crashed]
    /// `PipelineConfig.featuresKey` of the bundle and configuration the features were made
    /// with: a later bundle with the same key re-encodes them instead of extracting again.
    public var featuresKey: String?
    /// The earlier unit whose features this unit re-encoded (nothing decoded), if any.
    public var featuresFrom: String?
    public var counts: Counts
    /// Sums over the unit's videos: decoded frames and audio seconds.
    public var frames: Int
    public var audioSeconds: Double
    public var seconds: Seconds

    enum CodingKeys: String, CodingKey, CaseIterable {
        case format, formatVersion = "format_version", unit, bundleFingerprint = "bundle_fingerprint"
        case configSha256 = "config_sha256", tool, features, stats, codes, crashed
        case featuresKey = "features_key", featuresFrom = "features_from", counts, frames
        case audioSeconds = "audio_seconds", seconds
    }

    public init(unit: String, bundleFingerprint: String, configSha256: String, features: Output?, stats: Output?,
                codes: Output?, crashed: [Crashed], featuresKey: String? = nil, featuresFrom: String? = nil,
                counts: Counts, frames: Int, audioSeconds: Double, seconds: Seconds) {
        self.unit = unit
        self.bundleFingerprint = bundleFingerprint
        self.configSha256 = configSha256
        tool = "vidx-pipeline \(VidxVersion.string)"
        self.features = features
        self.stats = stats
        self.codes = codes
        self.crashed = crashed
        self.featuresKey = featuresKey
        self.featuresFrom = featuresFrom
        self.counts = counts
        self.frames = frames
        self.audioSeconds = audioSeconds
        self.seconds = seconds
    }

    public init(from decoder: Decoder) throws {
        try StrictDecoding.checkKeys(decoder, allowed: Set(CodingKeys.allCases.map(\.rawValue)))
        let c = try decoder.container(keyedBy: CodingKeys.self)
        format = try c.decode(String.self, forKey: .format)
        formatVersion = try c.decode(Int.self, forKey: .formatVersion)
        guard format == UnitRecord.format, formatVersion == UnitRecord.version else {
            throw StrictDecoding.Violation("format must be \(UnitRecord.format) version \(UnitRecord.version), not \(format) \(formatVersion)")
        }
        unit = try c.decode(String.self, forKey: .unit)
        bundleFingerprint = try c.decode(String.self, forKey: .bundleFingerprint)
        configSha256 = try c.decode(String.self, forKey: .configSha256)
        tool = try c.decode(String.self, forKey: .tool)
        features = try c.decodeIfPresent(Output.self, forKey: .features)
        stats = try c.decodeIfPresent(Output.self, forKey: .stats)
        codes = try c.decodeIfPresent(Output.self, forKey: .codes)
        crashed = try c.decode([Crashed].self, forKey: .crashed)
        featuresKey = try c.decodeIfPresent(String.self, forKey: .featuresKey)
        featuresFrom = try c.decodeIfPresent(String.self, forKey: .featuresFrom)
        if let k = featuresKey, !StrictDecoding.isLowercaseHex(k, count: 64) {
            throw StrictDecoding.Violation("features_key must be 64 lowercase hex digits")
        }
        if let f = featuresFrom, !WorkLayout.isUnitName(f) { throw StrictDecoding.Violation("features_from must be a unit name") }
        counts = try c.decode(Counts.self, forKey: .counts)
        frames = try c.decode(Int.self, forKey: .frames)
        audioSeconds = try c.decode(Double.self, forKey: .audioSeconds)
        seconds = try c.decode(Seconds.self, forKey: .seconds)
        guard (features == nil) == (codes == nil), (features == nil) == (stats == nil) else {
            throw StrictDecoding.Violation("features, stats and codes are all present or all absent")
        }
    }

    /// Every output, in the order they are written.
    public var outputs: [Output] { [features, stats, codes].compactMap { $0 } }

    /// Describes an output file for the record.
    public static func output(_ path: String) throws -> Output {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        return Output(file: (path as NSString).lastPathComponent, bytes: (attributes[.size] as? NSNumber)?.intValue ?? -1,
                      sha256: try SHA256Digest.hex(fileAt: path))
    }

    /// Reads unit `u`'s record and checks every output it lists against the disk.
    /// - Returns: the record, or why the unit is not done (no record, a damaged record, a
    ///   missing output, a size or hash that differs, another bundle or configuration).
    /// - Parameter hashes: also compare each output's SHA-256 (false: sizes only, for a
    ///   progress display; anything that decides whether a unit is redone or published
    ///   checks the hashes).
    public static func verified(_ u: String, in work: WorkLayout, bundleFingerprint: String?,
                                configSha256: String?, hashes: Bool = true) -> Result<UnitRecord, UnitNotDone> {
        let path = work.record(u)
        guard FileManager.default.fileExists(atPath: path) else { return .failure(.init(unit: u, reason: "no unit record yet", damaged: false)) }
        let record: UnitRecord
        do {
            record = try JSONDecoder().decode(UnitRecord.self, from: try InputFiles.read(path, maxBytes: 64 << 20))
        } catch {
            return .failure(.init(unit: u, reason: "\(path): damaged unit record: \(describeDecodingError(error))", damaged: true))
        }
        guard record.unit == u else {
            return .failure(.init(unit: u, reason: "\(path): the record is of unit \(record.unit)", damaged: true))
        }
        if let bundleFingerprint, record.bundleFingerprint != bundleFingerprint {
            return .failure(.init(unit: u, reason: "\(path): made with bundle \(record.bundleFingerprint), not \(bundleFingerprint)", damaged: true))
        }
        if let configSha256, record.configSha256 != configSha256 {
            return .failure(.init(unit: u, reason: "\(path): made with another pipeline configuration", damaged: true))
        }
        for o in record.outputs {
            let file = work.units + "/" + o.file
            guard o.file.hasPrefix(u + "."), !o.file.contains("/") else {
                return .failure(.init(unit: u, reason: "\(path): names an output '\(o.file)' outside the unit", damaged: true))
            }
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: file) else {
                return .failure(.init(unit: u, reason: "\(file): missing (the unit record lists it)", damaged: true))
            }
            let size = (attributes[.size] as? NSNumber)?.intValue ?? -1
            guard size == o.bytes else {
                return .failure(.init(unit: u, reason: "\(file): \(size) bytes, the unit record says \(o.bytes)", damaged: true))
            }
            guard !hashes || (try? SHA256Digest.hex(fileAt: file)) == o.sha256 else {
                return .failure(.init(unit: u, reason: "\(file): its SHA-256 differs from the unit record's", damaged: true))
            }
        }
        return .success(record)
    }
}

/// Why a unit is not done.
public struct UnitNotDone: Error, CustomStringConvertible, Sendable {
    public let unit: String
    public let reason: String
    /// Whether something is there but wrong (a record or output to remove), rather than
    /// simply not written yet.
    public let damaged: Bool
    public var description: String { "unit \(unit): \(reason)" }
}
