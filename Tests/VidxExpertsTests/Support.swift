import Foundation
import Testing
import VidxCore
import VidxExperts
import VidxTestSupport

/// Writes a NumPy .npy file (format 1.0, C order) holding `bytes` as an array of `shape`
/// with dtype `descr` (e.g. `<f4`, `<f8`, `|u1`); the data is the host's bytes, little-endian.
func writeNPY(_ path: String, descr: String, shape: [Int], bytes: [UInt8]) throws {
    let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
    var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shapeText), }"
    header += String(repeating: " ", count: (64 - (10 + header.utf8.count + 1) % 64) % 64) + "\n"
    let length = header.utf8.count
    var file: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(length & 0xFF), UInt8(length >> 8)]
    file += Array(header.utf8)
    file += bytes
    try Data(file).write(to: URL(fileURLWithPath: path))
}

func writeNPY(_ path: String, floats: [Float]) throws {
    try writeNPY(path, descr: "<f4", shape: [floats.count], bytes: floats.withUnsafeBytes { Array($0) })
}

func writeNPY(_ path: String, doubles: [Double]) throws {
    try writeNPY(path, descr: "<f8", shape: [doubles.count], bytes: doubles.withUnsafeBytes { Array($0) })
}

/// A test video: RGB frames of one size, layout (height, width, 3), with their times.
struct FrameSegment {
    var width: Int
    var height: Int
    var frames: [[UInt8]] = []
    var times: [Double] = []

    mutating func add(_ pixels: [UInt8], time: Double) {
        precondition(pixels.count == width * height * 3)
        frames.append(pixels)
        times.append(time)
    }

    /// Writes FRAMES.npy (n, H, W, 3) uint8 and TIMES.npy (n,) float64 under `prefix`.
    func write(_ prefix: String) throws -> [String] {
        try writeNPY(prefix + "-frames.npy", descr: "|u1", shape: [frames.count, height, width, 3],
                     bytes: frames.flatMap { $0 })
        try writeNPY(prefix + "-times.npy", doubles: times)
        return [prefix + "-frames.npy", prefix + "-times.npy"]
    }
}

/// The reference's output for one expert, as an FeatureSeries.
func readReference(features: String, times: String, width: Int) throws -> FeatureSeries {
    let f = try NPY.read(path: features), t = try NPY.read(path: times)
    let rows = f.shape.first ?? 0
    try #require(f.shape == [rows, width] && t.shape == [rows, 2], "reference shapes \(f.shape), \(t.shape)")
    return FeatureSeries(rows: rows, width: width, features: f.values, times: t.values)
}

/// Expects the same shape and times, and features within `relative * max(1, |want|)` plus
/// `absolute`, reporting the worst element.
func expectClose(_ got: FeatureSeries, _ want: FeatureSeries, relative: Float = 0, absolute: Float = 0,
                 _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(got.width == want.width && got.rows == want.rows,
            "\(what): shape \(got.rows) x \(got.width), expected \(want.rows) x \(want.width)", sourceLocation: sourceLocation)
    guard got.width == want.width && got.rows == want.rows else { return }
    #expect(got.times == want.times, "\(what): times \(got.times) vs \(want.times)", sourceLocation: sourceLocation)
    var worst = (excess: Float(0), index: -1)
    for i in got.features.indices {
        let allowed = relative * max(1, abs(want.features[i])) + absolute
        let excess = abs(got.features[i] - want.features[i]) / allowed
        if !(excess <= 1) && (worst.index < 0 || !(excess <= worst.excess)) { worst = (excess, i) }
    }
    if worst.index >= 0 {
        let i = worst.index
        let message = "\(what): feature \(i) (row \(i / got.width), column \(i % got.width)) is \(got.features[i]), "
            + "reference \(want.features[i]) (\(worst.excess) x the tolerance)"
        Issue.record(Comment(rawValue: message), sourceLocation: sourceLocation)
    }
}

/// Largest |got - want| over the features (shapes must match), for reporting.
func maxDifference(_ a: FeatureSeries, _ b: FeatureSeries) -> Float {
    zip(a.features, b.features).reduce(0) { max($0, abs($1.0 - $1.1)) }
}
