import Foundation

/// A video's line in a features or codes file's `videos` metadata
/// (Schemas/video-record.schema.json).
public struct VideoRecord: Codable, Sendable, Equatable {
    /// Why a video failed or was only partly processed.
    public struct ErrorInfo: Codable, Sendable, Equatable {
        public var `class`: FailureClass
        public var message: String
        public init(class: FailureClass, message: String) {
            self.class = `class`
            self.message = message
        }

        public init(from decoder: Decoder) throws {
            try StrictDecoding.checkKeys(decoder, allowed: ["class", "message"])
            let c = try decoder.container(keyedBy: CodingKeys.self)
            let name = try c.decode(String.self, forKey: .class)
            guard let known = FailureClass(rawValue: name) else {
                throw StrictDecoding.Violation("error class '\(name)' is not one of \(FailureClass.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            self.class = known
            message = try c.decode(String.self, forKey: .message)
        }

        enum CodingKeys: String, CodingKey { case `class`, message }
    }

    public var id: String
    public var contentHash: String
    public var status: VideoStatus
    /// Set for `partial` and `failed` videos.
    public var error: ErrorInfo?

    public init(id: String, contentHash: String = "", status: VideoStatus = .ok, error: ErrorInfo? = nil) {
        self.id = id
        self.contentHash = contentHash
        self.status = status
        self.error = error
    }

    /// Marks the video failed with `class` and `message`.
    public mutating func fail(_ class: FailureClass, _ message: String) {
        status = .failed
        error = ErrorInfo(class: `class`, message: message)
    }

    enum CodingKeys: String, CodingKey { case id, contentHash = "content_hash", status, error }

    public init(from decoder: Decoder) throws {
        try StrictDecoding.checkKeys(decoder, allowed: ["id", "content_hash", "status", "error"])
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        contentHash = try c.decode(String.self, forKey: .contentHash)
        let name = try c.decode(String.self, forKey: .status)
        guard let known = VideoStatus(rawValue: name) else {
            throw StrictDecoding.Violation("video '\(id.prefix(80))': status '\(name)' is not one of \(VideoStatus.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        status = known
        guard c.contains(.error) else { throw StrictDecoding.Violation("video '\(id.prefix(80))': no 'error' field (null when ok)") }
        error = try c.decodeIfPresent(ErrorInfo.self, forKey: .error)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(contentHash, forKey: .contentHash)
        try c.encode(status, forKey: .status)
        try c.encode(error, forKey: .error)   // always present, null when none
    }
}

/// A stage file that is not what it should be (wrong format, version, metadata).
public struct StageFileError: Error, CustomStringConvertible, Sendable, Equatable {
    public let path: String
    public let message: String
    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }
    public var description: String { "\(path): \(message)" }
}

/// A features file (Schemas/features.md), memory-mapped and checked.
public struct FeaturesFile: Sendable {
    public static let format = "vidx-features"
    public static let version = 1

    public let path: String
    public let bundleFingerprint: String
    /// Expert name -> extractor fingerprint.
    public let extractors: [String: String]
    public let videos: [VideoRecord]
    private let file: SafeTensorsFile

    public init(path: String) throws {
        self.path = path
        file = try SafeTensorsFile(path: path)
        let meta = file.metadata
        try StageFiles.checkFormat(meta, path: path, format: FeaturesFile.format, version: FeaturesFile.version)
        bundleFingerprint = meta["bundle_fingerprint"] ?? ""
        guard let extractorsText = meta["extractors"] else {
            throw StageFileError(path: path, message: "metadata 'extractors' is missing: every features file names the extractor of each expert (Schemas/features.md)")
        }
        extractors = try StageFiles.decode([String: String].self, extractorsText, key: "extractors", path: path)
        videos = try StageFiles.decode([VideoRecord].self, meta["videos"] ?? "", key: "videos", path: path)
        try StageFiles.check(videos, path: path)
    }

    /// Lets the OS drop the file's pages already read from this process's resident memory
    /// (see `SafeTensorsFile.releaseResidentPages()`); call between chunks of videos.
    public func releaseResidentPages() { file.releaseResidentPages() }

    /// The first (video, expert) whose `v{i}/{E}/features` tensor names an expert the
    /// file's `extractors` does not declare, or nil: such an expert's extractor cannot be
    /// checked against a bundle (Schemas/features.md).
    public func firstUndeclaredExpert() -> (video: Int, expert: String)? {
        for name in file.names where name.hasPrefix("v") && name.hasSuffix("/features") {
            let body = name.dropFirst().dropLast("/features".count)
            guard let slash = body.firstIndex(of: "/"), let video = Int(body[..<slash]), String(video) == body[..<slash],
                  video < videos.count else { continue }
            let expert = String(body[body.index(after: slash)...])
            if extractors[expert] == nil { return (video, expert) }
        }
        return nil
    }

    /// The experts stored for video `index` (absent experts are not in the map).
    /// - Throws: `SafeTensorsError` or `StageFileError` when the tensors disagree with each other.
    public func experts(of index: Int) throws -> [String: FeatureSeries] {
        let prefix = "v\(index)/"
        var out: [String: FeatureSeries] = [:]
        for name in file.names where name.hasPrefix(prefix) && name.hasSuffix("/features") {
            let expert = String(name.dropFirst(prefix.count).dropLast("/features".count))
            guard let info = file.info(name), info.shape.count == 2 else {
                throw StageFileError(path: path, message: "tensor '\(name)' must be 2-D (rows, width)")
            }
            let rows = info.shape[0], width = info.shape[1]
            let features = try file.floats(name, shape: [rows, width])
            let times = try file.floats(prefix + expert + "/times", shape: [rows, 2])
            out[expert] = FeatureSeries(rows: rows, width: width, features: features, times: times)
        }
        return out
    }
}

/// Writes features files (Schemas/features.md).
public struct FeaturesWriter: Sendable {
    private var tensors = SafeTensorsWriter()
    public private(set) var videos: [VideoRecord] = []
    public var bundleFingerprint: String
    public var extractors: [String: String]

    public init(bundleFingerprint: String = "", extractors: [String: String] = [:]) {
        self.bundleFingerprint = bundleFingerprint
        self.extractors = extractors
    }

    /// Adds a video; its experts' tensors are written only when it has any.
    public mutating func add(_ record: VideoRecord, experts: [String: FeatureSeries]) {
        let i = videos.count
        videos.append(record)
        for (name, e) in experts {
            tensors.add("v\(i)/\(name)/features", floats: e.features, shape: [e.rows, e.width])
            tensors.add("v\(i)/\(name)/times", floats: e.times, shape: [e.rows, 2])
        }
    }

    /// Writes the features file atomically (temporary name, fsync, rename).
    public func write(to path: String) throws {
        try stage(to: path).commit()
    }

    /// Writes the features file under a temporary name beside `path`, fsynced but not yet
    /// visible, for outputs that must appear together (`AtomicFile.commit`).
    public func stage(to path: String) throws -> AtomicFile.Staged {
        var w = tensors
        w.metadata = [
            "format": FeaturesFile.format, "format_version": String(FeaturesFile.version),
            "bundle_fingerprint": bundleFingerprint,
            "extractors": StageFiles.json(extractors), "videos": StageFiles.json(videos),
        ]
        return try w.stage(to: path)
    }
}

/// A codes file (Schemas/codes.md).
public struct CodesFile: Sendable {
    public static let format = "vidx-codes"
    public static let version = 1

    public let path: String
    public let bundleFingerprint: String
    public let featuresBundleFingerprint: String
    public let levels: Int, subspaces: Int, codewords: Int
    public let videos: [VideoRecord]
    /// N x levels x subspaces, row-major.
    public let codes: [UInt8]
    /// N x levels x hidden, when stored; finite for every video that did not fail.
    public let embeddings: [Float]?
    /// The stored embeddings' width (hidden), when stored.
    public let embeddingWidth: Int?

    public init(path: String) throws {
        self.path = path
        let file = try SafeTensorsFile(path: path)
        let meta = file.metadata
        try StageFiles.checkFormat(meta, path: path, format: CodesFile.format, version: CodesFile.version)
        bundleFingerprint = meta["bundle_fingerprint"] ?? ""
        featuresBundleFingerprint = meta["features_bundle_fingerprint"] ?? ""
        func int(_ key: String) throws -> Int {
            guard let s = meta[key], let v = Int(s), v > 0 else {
                throw StageFileError(path: path, message: "metadata '\(key)' must be a positive integer")
            }
            return v
        }
        levels = try int("levels")
        subspaces = try int("subspaces")
        codewords = try int("codewords")
        videos = try StageFiles.decode([VideoRecord].self, meta["videos"] ?? "", key: "videos", path: path)
        try StageFiles.check(videos, path: path)
        let codes = try file.uint8s("codes", shape: [videos.count, levels, subspaces])
        let (levels, subspaces, codewords, videos) = (levels, subspaces, codewords, videos)
        if let bad = codes.firstIndex(where: { Int($0) >= codewords }) {
            throw StageFileError(path: path, message: "code \(codes[bad]) of video \(bad / (levels * subspaces)) is not below K = \(codewords)")
        }
        self.codes = codes
        if let info = file.info("embeddings") {
            guard info.shape.count == 3, info.shape[0] == videos.count, info.shape[1] == levels, info.shape[2] > 0 else {
                throw StageFileError(path: path, message: "tensor 'embeddings' has shape \(info.shape), expected (\(videos.count), \(levels), hidden)")
            }
            let values = try file.floats("embeddings")
            let hidden = info.shape[2]
            for (i, v) in videos.enumerated() where v.status != .failed {
                let row = values[(i * levels * hidden)..<((i + 1) * levels * hidden)]
                if let bad = row.firstIndex(where: { !$0.isFinite }) {
                    throw StageFileError(path: path, message: "video '\(v.id)': embedding value \(values[bad]) at level \((bad - i * levels * hidden) / hidden) is not finite")
                }
            }
            embeddings = values
            embeddingWidth = hidden
        } else {
            embeddings = nil
            embeddingWidth = nil
        }
    }

    /// What a codes file's header says, read without its tensors' data: for a first pass
    /// over many files (which videos, made by which bundle) before reading a few of them.
    public struct Header: Sendable {
        public let path: String
        public let bundleFingerprint: String
        public let videos: [VideoRecord]
        /// The `embeddings` tensor's shape, when the file holds one.
        public let embeddingsShape: [Int]?
    }

    /// Reads a codes file's header: its format, bundle and `videos` (checked as the full
    /// reader checks them), and whether it holds embeddings. The data is not read; open
    /// the file with `init(path:)` for that (and for the checks on the values).
    public static func header(path: String) throws -> Header {
        let file = try SafeTensorsFile(path: path)
        let meta = file.metadata
        try StageFiles.checkFormat(meta, path: path, format: CodesFile.format, version: CodesFile.version)
        let videos = try StageFiles.decode([VideoRecord].self, meta["videos"] ?? "", key: "videos", path: path)
        try StageFiles.check(videos, path: path)
        return Header(path: path, bundleFingerprint: meta["bundle_fingerprint"] ?? "", videos: videos,
                      embeddingsShape: file.info("embeddings")?.shape)
    }

    /// Checks the file's shape against a bundle's: levels, M, K and, when the file holds
    /// embeddings, their width (the bundle's hidden size).
    /// - Throws: `StageFileError` naming the file and both shapes.
    public func checkShape(levels: Int, subspaces: Int, codewords: Int, hidden: Int) throws {
        guard self.levels == levels, self.subspaces == subspaces, self.codewords == codewords else {
            throw StageFileError(path: path, message: "codes shape \(self.levels) levels x \(self.subspaces) sub-spaces (K \(self.codewords)) differs from the bundle's \(levels) x \(subspaces) (K \(codewords))")
        }
        if let width = embeddingWidth, width != hidden {
            throw StageFileError(path: path, message: "tensor 'embeddings' is \(width) wide, the bundle's hidden size is \(hidden)")
        }
    }

    /// Writes a codes file.
    /// - Parameters:
    ///   - codes: N x levels x subspaces bytes.
    ///   - embeddings: N x levels x hidden floats, or nil.
    public static func write(to path: String, videos: [VideoRecord], codes: [UInt8], levels: Int, subspaces: Int,
                             codewords: Int, embeddings: [Float]?, hidden: Int,
                             bundleFingerprint: String, featuresBundleFingerprint: String) throws {
        var w = SafeTensorsWriter(metadata: [
            "format": CodesFile.format, "format_version": String(CodesFile.version),
            "bundle_fingerprint": bundleFingerprint, "features_bundle_fingerprint": featuresBundleFingerprint,
            "levels": String(levels), "subspaces": String(subspaces), "codewords": String(codewords),
            "videos": StageFiles.json(videos),
        ])
        w.add("codes", uint8s: codes, shape: [videos.count, levels, subspaces])
        if let embeddings { w.add("embeddings", floats: embeddings, shape: [videos.count, levels, hidden]) }
        try w.write(to: path)
    }
}

enum StageFiles {
    static func checkFormat(_ meta: [String: String], path: String, format: String, version: Int) throws {
        guard meta["format"] == format else {
            throw StageFileError(path: path, message: "not a \(format) file (metadata format is '\(meta["format"] ?? "absent")')")
        }
        guard let v = meta["format_version"].flatMap({ Int($0) }) else {
            throw StageFileError(path: path, message: "metadata format_version is missing or not an integer")
        }
        guard v <= version else {
            throw StageFileError(path: path, message: "format_version \(v) is newer than this build reads (\(version)): upgrade vidx")
        }
    }

    /// The rules every features and codes file's `videos` list follows beyond its types:
    /// ids valid and unique by their UTF-8 bytes (`ExternalID`), an error for every video
    /// that is not `ok`.
    static func check(_ videos: [VideoRecord], path: String) throws {
        var seen = Set<ExternalID>()
        seen.reserveCapacity(videos.count)
        for (i, v) in videos.enumerated() {
            if let problem = ExternalID.problem(v.id) {
                throw StageFileError(path: path, message: "video \(i): \(problem)")
            }
            if !v.contentHash.isEmpty && !StrictDecoding.isLowercaseHex(v.contentHash, count: 64) {
                throw StageFileError(path: path, message: "video '\(v.id)': content_hash is neither empty nor 64 lowercase hex digits")
            }
            if v.status != .ok && v.error == nil {
                throw StageFileError(path: path, message: "video '\(v.id)': status '\(v.status.rawValue)' without an error (every partial or failed video says why)")
            }
            guard seen.insert(ExternalID(v.id)).inserted else {
                throw StageFileError(path: path, message: "video '\(v.id)' appears twice (video \(i)): ids are unique within a file")
            }
        }
    }

    static func decode<T: Decodable>(_ type: T.Type, _ text: String, key: String, path: String) throws -> T {
        do { return try JSONDecoder().decode(T.self, from: Data(text.utf8)) } catch {
            throw StageFileError(path: path, message: "metadata '\(key)' is not valid: \(error)")
        }
    }

    static func json<T: Encodable>(_ value: T) -> String {
        String(decoding: (try? makeJSONEncoder().encode(value)) ?? Data("null".utf8), as: UTF8.self)
    }
}
