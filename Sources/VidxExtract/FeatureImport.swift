import Foundation
import VidxCore

/// One line of an import list: a video and, per expert, its feature matrix and time windows
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
    }
    public var id: String
    public var contentHash: String?
    public var experts: [String: Source]

    enum CodingKeys: String, CodingKey { case id, contentHash = "content_hash", experts }
}

/// Turns feature files computed elsewhere into a features file for the encoder.
public enum FeatureImport {
    /// Reads one expert's matrix and times; checks the width, the row counts and that every
    /// value is finite.
    /// - Throws: `StageFileError` naming the file and the problem.
    public static func load(_ source: ImportLine.Source, base: String, width: Int) throws -> StoredExpert {
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
        return StoredExpert(rows: rows, width: width, features: values,
                            times: times ?? [Float](repeating: -1, count: rows * 2))
    }
}
