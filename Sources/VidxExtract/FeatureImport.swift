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
        var missing: [String] = []
        do {
            for (name, width) in wanted {
                guard let source = line?.experts[name] else { missing.append(name); continue }
                let stored = try load(source, base: base, width: width)
                video.experts[name] = stored
                video.stats.rows[name] = stored.rows
            }
        } catch {
            video.fail(.init(class: .badFeatures, message: "\(error)"))
            return []
        }
        return missing
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
