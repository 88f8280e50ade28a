import Foundation
import VidxCore

/// One line of an import list (Schemas/import-list.schema.json): a video and, per expert, its feature matrix and time windows
/// computed elsewhere.
///
/// `{"id": "v1", "experts": {"face": {"features": "v1-face.npy", "times": "v1-face-t.npy"}, ...}}`:
/// `features` is an (n, width) array, `times` an optional (n, 2) array of start and end
/// seconds (absent: the rows are untimed). Each file is a float32/float64 `.npy`, or a
/// safetensors file holding tensors `features` (and `times`), in which case `times` is
/// read from the same file. Paths are relative to the list's directory.
public struct ImportLine: Codable, Sendable {
    public struct Source: Codable, Sendable {
        public var features: String
        public var times: String?

        enum CodingKeys: String, CodingKey { case features, times }

        public init(from decoder: Decoder) throws {
            try StrictDecoding.checkKeys(decoder, allowed: ["features", "times"])
            let c = try decoder.container(keyedBy: CodingKeys.self)
            features = try c.decode(String.self, forKey: .features)
            times = try c.decodeIfPresent(String.self, forKey: .times)
        }
    }
    public var id: String
    public var contentHash: String?
    public var experts: [String: Source]

    enum CodingKeys: String, CodingKey { case id, contentHash = "content_hash", experts }

    public init(from decoder: Decoder) throws {
        try StrictDecoding.checkKeys(decoder, allowed: ["id", "content_hash", "experts"])
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        contentHash = try c.decodeIfPresent(String.self, forKey: .contentHash)
        experts = try c.decode([String: Source].self, forKey: .experts)
        if let h = contentHash, !StrictDecoding.isLowercaseHex(h, count: 64) {
            throw StrictDecoding.Violation("content_hash is not 64 lowercase hex digits (a SHA-256)")
        }
    }
}

/// Turns feature files computed elsewhere into a features file for the encoder.
public enum FeatureImport {
    /// The largest import list read.
    public static let maxListBytes = 256 << 20

    /// Reads an import list: JSON Lines of ``ImportLine`` (Schemas/import-list.schema.json),
    /// lines ending in LF or CRLF, blank lines skipped.
    ///
    /// Ids are checked as the schema says: not empty, at most 4,096 characters, each once,
    /// compared by their UTF-8 bytes (`ExternalID`), as everywhere in the package.
    /// - Throws: `StageFileError` naming the list, the line and the problem; also when the
    ///   list is not a regular file (a FIFO is refused, not waited on).
    public static func readList(path: String) throws -> [ImportLine] {
        try JSONLines.readEntries(ImportLine.self, path: path, maxBytes: maxListBytes, what: "an import entry",
                                  container: "list", schema: "Schemas/import-list.schema.json", id: \.id).map(\.entry)
    }

    /// The lines of a list by id (`ExternalID`: UTF-8 bytes), for merging into a unit.
    /// `readList` has refused duplicates already.
    public static func byID(_ lines: [ImportLine]) -> [ExternalID: ImportLine] {
        Dictionary(lines.map { (ExternalID($0.id), $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// Adds imported experts to a video vidx-extract has decoded: for each of `wanted`
    /// (name, width), the matrix `line` names. An expert the line does not name (or no line
    /// for the video) stays missing, as the features format allows and HCQ's masks handle;
    /// a file that cannot be used fails the video (`bad_features`), as in
    /// vidx-import-features. A video that already failed is left as it is.
    /// - Returns: the names of the wanted experts that stayed missing.
    @discardableResult
    public static func merge(into video: inout ExtractedVideo, line: ImportLine?, wanted: [(name: String, width: Int)],
                             base: String) -> [String] {
        guard video.record.status != .failed else { return [] }
        let missing = wanted.map(\.name).filter { line?.experts[$0] == nil }
        guard let line else { return missing }
        do {
            for (name, stored) in try experts(of: line, wanted: wanted, base: base) {
                video.experts[name] = stored
                video.stats.rows[name] = stored.rows
            }
        } catch {
            video.fail(.init(class: .badFeatures, message: "\(error)"))
            return []
        }
        return missing
    }

    /// The experts `line` names among `wanted` (name, width), each loaded and checked
    /// (`load`); an expert of `wanted` the line does not name is absent from the result.
    /// - Throws: `StageFileError` for the first file that cannot be used.
    public static func experts(of line: ImportLine, wanted: [(name: String, width: Int)],
                               base: String) throws -> [String: FeatureSeries] {
        var out: [String: FeatureSeries] = [:]
        for (name, width) in wanted {
            guard let source = line.experts[name] else { continue }
            out[name] = try load(source, base: base, width: width)
        }
        return out
    }

    /// One expert a list may name: its bundle name, width and extractor id.
    public struct Expert: Sendable {
        public var name: String, width: Int, extractor: String
        public init(name: String, width: Int, extractor: String) {
            self.name = name
            self.width = width
            self.extractor = extractor
        }
    }

    /// What `vidx-import-features` does, callable in-process: every video of the list at
    /// `path` read into a features file at `out` (atomically). A video whose files cannot be
    /// used is `failed` (`bad_features`), one with no feature row at all `failed`
    /// (`no_features`); the others go on.
    /// - Parameters:
    ///   - experts: the bundle's experts; a list naming any other fails that video.
    ///   - note: receives one line per failed video.
    /// - Returns: every video's record, in list order.
    /// - Throws: `StageFileError` for a list that cannot be read, `FileWriteError` when the
    ///   output cannot be written.
    public static func run(list path: String, experts: [Expert], bundleFingerprint: String, out: String,
                           note: (String) -> Void = { _ in }) throws -> [VideoRecord] {
        let lines = try readList(path: path)
        let specs = Dictionary(uniqueKeysWithValues: experts.map { ($0.name, $0) })
        let base = URL(fileURLWithPath: path).deletingLastPathComponent().path
        var writer = FeaturesWriter(bundleFingerprint: bundleFingerprint, extractors: [:])
        var extractors: [String: String] = [:]
        for line in lines {
            var record = VideoRecord(id: line.id, contentHash: line.contentHash ?? "")
            var loaded: [String: FeatureSeries] = [:]
            do {
                // In name order, each expert's extractor declared once its file is read.
                for name in line.experts.keys.sorted() {
                    guard let spec = specs[name] else {
                        throw StageFileError(path: path, message: "expert '\(name)' is not one of the bundle's (\(specs.keys.sorted().joined(separator: ", ")))")
                    }
                    loaded[name] = try load(line.experts[name]!, base: base, width: spec.width)
                    extractors[name] = spec.extractor
                }
            } catch {
                record.fail(.badFeatures, "\(error)")
                note("\(line.id): \(error)")
            }
            // Stored ok, a video without a single row would get the same codes as every
            // other such video: it fails instead.
            if record.status != .failed && loaded.values.allSatisfy({ $0.rows == 0 }) {
                let named = loaded.isEmpty ? "names no expert" : "gives 0 rows for every expert it names (\(loaded.keys.sorted().joined(separator: ", ")))"
                record.fail(.noFeatures, "the list \(named): no feature row to encode")
                note("\(line.id): no_features: \(record.error!.message)")
            }
            writer.add(record, experts: record.status == .failed ? [:] : loaded)
        }
        writer.extractors = extractors
        try writer.write(to: out)
        return writer.videos
    }

    /// Reads one expert's matrix and times; checks the width, the row counts and that every
    /// value is finite.
    /// - Throws: `StageFileError` naming the file and the problem.
    public static func load(_ source: ImportLine.Source, base: String, width: Int) throws -> FeatureSeries {
        func resolve(_ p: String) -> String { p.hasPrefix("/") ? p : base + "/" + p }
        let path = resolve(source.features)
        var shape: [Int], values: [Float], times: [Float]? = nil
        if path.hasSuffix(".npy") {
            let a = try NPY.read(path: path)
            (shape, values) = (a.shape, a.values)
        } else {
            let file = try SafeTensorsFile(path: path)
            guard let info = file.info("features") else { throw StageFileError(path: path, message: "no tensor 'features'") }
            shape = info.shape
            values = try file.floats("features")
            if source.times == nil, file.info("times") != nil { times = try file.floats("times") }
        }
        guard shape.count == 2 else { throw StageFileError(path: path, message: "features have shape \(shape), expected (rows, \(width))") }
        guard shape[1] == width else {
            throw StageFileError(path: path, message: "features are \(shape[1]) wide, the bundle's expert expects \(width)")
        }
        guard values.allSatisfy({ $0.isFinite }) else { throw StageFileError(path: path, message: "features hold NaN or infinity") }
        let rows = shape[0]
        if let t = source.times {
            let tp = resolve(t)
            let a = try NPY.read(path: tp)
            guard a.shape == [rows, 2] else {
                throw StageFileError(path: tp, message: "times have shape \(a.shape), expected (\(rows), 2)")
            }
            times = a.values
        }
        if let t = times {
            guard t.count == rows * 2 else { throw StageFileError(path: path, message: "times do not have \(rows) x 2 values") }
            guard t.allSatisfy({ $0.isFinite }) else { throw StageFileError(path: path, message: "times hold NaN or infinity") }
        }
        return FeatureSeries(rows: rows, width: width, features: values,
                            times: times ?? [Float](repeating: -1, count: rows * 2))
    }
}
