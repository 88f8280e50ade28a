import Foundation
import VidxCore
import VidxDecode
import VidxExtract
import VidxHCQ

/// `WORK/plan.json` (Schemas/plan.schema.json): what a plan found and the units it cut.
public struct PlanFile: Codable, Sendable {
    public static let format = "vidx-plan"
    public static let version = 1

    public struct Counts: Codable, Sendable, Equatable {
        /// Videos the inputs name (after id conflicts).
        public var inputs = 0
        public var new = 0
        /// New content under an id the live generation holds.
        public var changed = 0
        public var unchanged = 0
        /// Live ids whose files are gone (deleted only with --deletions).
        public var removed = 0
        /// Content already indexed or planned under another id.
        public var duplicate = 0
        /// Of `duplicate`, those left out (`duplicates: skip`).
        public var duplicateSkipped = 0
        /// Kept out by the quarantine (permanent failures, attempts used up).
        public var quarantined = 0
        /// Quarantined for a transient reason and tried again.
        public var retried = 0
        /// Files the plan could not find or read (quarantined by the publisher).
        public var missing = 0
        public var unreadable = 0
        /// Ids given twice by the inputs (the first one kept).
        public var idConflicts = 0
        /// Files hashed by this plan, and recognised from the hash cache.
        public var hashed = 0
        public var hashCached = 0
        /// Wanted videos already in finished units of the work directory.
        public var inFinishedUnits = 0
        /// Wanted videos in units that re-encode an earlier unit's features (another bundle
        /// with the same experts, extractors and extraction settings): nothing decoded.
        public var featuresReused = 0

        enum CodingKeys: String, CodingKey {
            case inputs, new, changed, unchanged, removed, duplicate, duplicateSkipped = "duplicate_skipped"
            case quarantined, retried, missing, unreadable, idConflicts = "id_conflicts", hashed
            case hashCached = "hash_cached", inFinishedUnits = "in_finished_units", featuresReused = "features_reused"
        }

        public init() {}

        /// Videos the plan sends to units.
        public var toIndex: Int { new + changed }
    }

    public struct Unit: Codable, Sendable, Equatable {
        public var name: String
        public var videos: Int
        /// Finished (its record verified) when the plan was made.
        public var done: Bool
        /// An earlier unit with the same videos whose features another bundle with the same
        /// features key made: this unit re-encodes them instead of extracting.
        public var featuresFrom: String?

        enum CodingKeys: String, CodingKey { case name, videos, done, featuresFrom = "features_from" }

        public init(name: String, videos: Int, done: Bool, featuresFrom: String? = nil) {
            self.name = name
            self.videos = videos
            self.done = done
            self.featuresFrom = featuresFrom
        }
    }

    /// A video the plan could not read.
    public struct Failure: Codable, Sendable, Equatable {
        public var id: String
        public var path: String
        public var `class`: FailureClass
        public var message: String
    }

    public struct BundleInfo: Codable, Sendable {
        public var path: String
        public var fingerprint: String
    }

    public struct ConfigInfo: Codable, Sendable {
        public var path: String?
        public var sha256: String
        public var values: PipelineConfig
    }

    public var format = PlanFile.format
    public var formatVersion = PlanFile.version
    public var created: String
    /// `index`, `nightly` or `rebuild`: what the publisher does with the units.
    public var mode: String
    public var index: String
    public var work: String
    public var inputs: [String]
    public var bundle: BundleInfo
    public var config: ConfigInfo
    public var liveGeneration: String?
    public var liveVideos: Int
    public var counts: Counts
    public var units: [Unit]
    public var deletions: Int
    public var failures: Int
    public var tool: String
    public var seconds: Double
    /// Only in a dry run's output.
    public var estimate: Estimate?

    enum CodingKeys: String, CodingKey {
        case format, formatVersion = "format_version", created, mode, index, work, inputs, bundle, config
        case liveGeneration = "live_generation", liveVideos = "live_videos", counts, units, deletions, failures
        case tool, seconds, estimate
    }

    /// Reads `WORK/plan.json`.
    /// - Throws: `PlanError` naming the file.
    public static func read(_ work: WorkLayout) throws -> PlanFile {
        do {
            let plan = try JSONDecoder().decode(PlanFile.self, from: try InputFiles.read(work.plan, maxBytes: 1 << 30))
            guard plan.format == format, plan.formatVersion == version else {
                throw PlanError("\(work.plan): not a vidx plan of version \(version)")
            }
            return plan
        } catch let e as PlanError { throw e } catch {
            throw PlanError("\(work.plan): cannot read the plan (run vidx-plan first): \(describeDecodingError(error))")
        }
    }
}

/// What a dry run estimates the work will cost.
public struct Estimate: Codable, Sendable {
    /// Bytes of video to read.
    public var inputBytes: Int64
    /// Hours of video, from durations probed (a sample of the files, scaled by bytes).
    public var videoHours: Double
    /// Decode hours on one core: from the decode seconds per byte of earlier runs' units
    /// when the work directory has some, else from the video hours and `decodePerVideoSecond`.
    public var decodeHours: Double
    /// Where `decodeHours` comes from: `earlier_runs` or `cost_model`.
    public var decodeBasis: String
    /// Bytes the units' features and codes files will take.
    public var diskBytes: Int64
    public var probedFiles: Int

    enum CodingKeys: String, CodingKey {
        case inputBytes = "input_bytes", videoHours = "video_hours", decodeHours = "decode_hours"
        case decodeBasis = "decode_basis", diskBytes = "disk_bytes", probedFiles = "probed_files"
    }

    /// Decode seconds per second of video, when no earlier run says: a 720p H.264 clip
    /// decodes about 15 times faster than real time on one core (Documentation/Pipeline.md).
    public static let decodePerVideoSecond = 1.0 / 15

    /// The most files a dry run probes for their duration.
    public static let probeSample = 256

    static func make(for videos: [UnitVideo], uploads: [Planner.Upload], work: WorkLayout, bundle: ModelBundle) -> Estimate {
        var sizes: [ExternalID: Int64] = [:]
        for u in uploads { sizes[ExternalID(u.id)] = u.size }
        let bytes = videos.reduce(Int64(0)) { $0 + max(0, sizes[ExternalID($1.id)] ?? 0) }
        // Durations of an evenly spaced sample, scaled to all files by bytes.
        let step = max(1, videos.count / probeSample)
        var probedSeconds = 0.0, probedBytes: Int64 = 0, probed = 0
        for i in stride(from: 0, to: videos.count, by: step) {
            guard let p = try? MediaDecoder.probe(path: videos[i].path), let d = p.duration, d > 0 else { continue }
            probedSeconds += d
            probedBytes += max(0, sizes[ExternalID(videos[i].id)] ?? 0)
            probed += 1
        }
        let videoSeconds = probedBytes > 0 ? probedSeconds * Double(bytes) / Double(probedBytes) : 0
        // Earlier runs: decode seconds and output bytes per input byte.
        var history = (decode: 0.0, outputBytes: Int64(0), inputBytes: Int64(0))
        for name in ((try? FileManager.default.contentsOfDirectory(atPath: work.units)) ?? []).filter({ $0.hasSuffix(".unit.json") }).prefix(64) {
            let u = String(name.dropLast(".unit.json".count))
            guard let r = try? JSONDecoder().decode(UnitRecord.self, from: try InputFiles.read(work.record(u))),
                  let members = try? UnitVideo.readUnit(path: work.unitVideos(u)) else { continue }
            let input = members.reduce(Int64(0)) { total, m in
                var st = stat()
                return total + (stat(m.path, &st) == 0 ? Int64(st.st_size) : 0)
            }
            guard input > 0 else { continue }
            history.decode += r.seconds.extract
            history.outputBytes += Int64(r.outputs.reduce(0) { $0 + $1.bytes })
            history.inputBytes += input
        }
        let fromHistory = history.inputBytes > 0
        let decodeSeconds = fromHistory ? history.decode * Double(bytes) / Double(history.inputBytes)
                                        : videoSeconds * decodePerVideoSecond
        // Features: each expert's rows per second times its width in float32, plus codes.
        let widths = bundle.config.experts.reduce(0) { $0 + $1.width }
        let modelled = Int64(videoSeconds * Double(widths * 4)) + Int64(videos.count * 4096)
        let disk = fromHistory ? Int64(Double(history.outputBytes) * Double(bytes) / Double(history.inputBytes)) : modelled
        return Estimate(inputBytes: bytes, videoHours: videoSeconds / 3600, decodeHours: decodeSeconds / 3600,
                        decodeBasis: fromHistory ? "earlier_runs" : "cost_model", diskBytes: disk, probedFiles: probed)
    }
}

/// The plan's hash cache (`WORK/state/files.jsonl`): a file whose path, size and
/// modification time (nanoseconds) are unchanged keeps its SHA-256 without being read.
/// One JSON object a line: `{"path", "size", "mtime_ns", "sha256"}`, sorted by path bytes.
public struct HashCache: Sendable {
    struct Key: Hashable {
        let path: ExternalID
        let size: Int64
        let mtime: Int64
    }

    struct Line: Codable {
        let path: String
        let size: Int64
        let mtimeNs: Int64
        let sha256: String
        enum CodingKeys: String, CodingKey { case path, size, mtimeNs = "mtime_ns", sha256 }
    }

    private var entries: [Key: ContentHash] = [:]

    public init() {}

    public var count: Int { entries.count }

    func lookup(path: String, size: Int64, mtime: Int64) -> ContentHash? {
        entries[Key(path: ExternalID(path), size: size, mtime: mtime)]
    }

    mutating func insert(path: String, size: Int64, mtime: Int64, hash: ContentHash) {
        entries[Key(path: ExternalID(path), size: size, mtime: mtime)] = hash
    }

    /// Reads the cache; a missing or damaged one is empty (it only saves reading files),
    /// with a note for a damaged one.
    static func read(path: String, note: (String) -> Void) -> HashCache {
        var cache = HashCache()
        guard FileManager.default.fileExists(atPath: path) else { return cache }
        guard let data = try? InputFiles.read(path, maxBytes: 8 << 30) else {
            note("\(path): cannot read the hash cache; every file is hashed again")
            return cache
        }
        let decoder = JSONDecoder()
        for (number, text) in JSONLines.lines(data) {
            guard let line = try? decoder.decode(Line.self, from: Data(text.utf8)), let h = ContentHash(hex: line.sha256) else {
                note("\(path): line \(number) is damaged; the hash cache is ignored from there")
                break
            }
            cache.insert(path: line.path, size: line.size, mtime: line.mtimeNs, hash: h)
        }
        return cache
    }

    func write(path: String) throws {
        let encoder = makeJSONEncoder()
        var data = Data()
        let sorted = entries.sorted { $0.key.path.string.utf8.lexicographicallyPrecedes($1.key.path.string.utf8) }
        for (k, h) in sorted {
            data.append(try encoder.encode(Line(path: k.path.string, size: k.size, mtimeNs: k.mtime, sha256: h.hex)))
            data.append(0x0A)
        }
        try AtomicFile.write(data, to: path)
    }
}
