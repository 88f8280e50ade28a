import Foundation
import Testing
import VidxCore
@testable import VidxExperts
import VidxTestSupport

/// `builtin:audio/logmel64-stats@1` against its definition and the NumPy reference
/// (Tests/Reference/expert_reference.py).
@Suite("Audio expert: log-mel statistics")
struct AudioLogMelTests {
    static let rate = 16000

    /// Sum of sines (frequency Hz, amplitude) over `seconds`, plus uniform noise of `noise` amplitude.
    static func signal(seconds: Double, tones: [(Double, Double)], noise: Float = 0, seed: UInt64 = 1) -> [Float] {
        var g = SeededGenerator(seed: seed)
        let n = Int(seconds * Double(rate))
        return (0..<n).map { i in
            let t = Double(i) / Double(rate)
            var v = 0.0
            for (f, a) in tones { v += a * sin(2 * Double.pi * f * t) }
            return Float(v) + noise * g.uniform()
        }
    }

    static func extract(_ samples: [Float]) -> FeatureSeries {
        let x = LogMelStats()
        x.append(samples)
        return x.finish()
    }

    static func reference(_ samples: [Float], _ label: String) throws -> FeatureSeries {
        let dir = makeTestDirectory("audio-\(label)")
        try writeNPY(dir + "/samples.npy", floats: samples)
        try Python.run(["Tests/Reference/expert_reference.py", "audio", dir + "/samples.npy",
                        dir + "/features.npy", dir + "/times.npy"])
        return try readReference(features: dir + "/features.npy", times: dir + "/times.npy", width: LogMelStats.width)
    }

    @Test("matches the NumPy reference within 1e-3 of the log values' magnitude", arguments: [
        ("tones", 3.5, [(440.0, 0.5), (3000, 0.25), (7000, 0.1)], Float(0)),
        ("pure 1 kHz", 2.0, [(1000.0, 0.9)], 0),
        ("noise", 2.5, [], 0.3),
        ("quiet tone in noise", 4.21, [(250.0, 0.05), (5123, 0.02)], 0.01),
    ] as [(String, Double, [(Double, Double)], Float)])
    func matchesReference(label: String, seconds: Double, tones: [(Double, Double)], noise: Float) throws {
        let samples = Self.signal(seconds: seconds, tones: tones, noise: noise, seed: UInt64(label.utf8.count))
        let got = Self.extract(samples)
        let want = try Self.reference(samples, label.replacingOccurrences(of: " ", with: "-"))
        let frames = (samples.count - 400) / 160 + 1
        #expect(got.rows == frames / 96 + (frames % 96 >= 48 ? 1 : 0), "\(label): \(got.rows) rows for \(frames) frames")
        expectClose(got, want, relative: 1e-3, label)
    }

    @Test("a 1 kHz sine peaks in the mel band whose triangle is highest at 1 kHz")
    func sinePeak() {
        // The HTK triangles, from the definition: edges equally spaced in mel from 0 to 8 kHz.
        func mel(_ f: Double) -> Double { 2595 * log10(1 + f / 700) }
        func hz(_ m: Double) -> Double { 700 * (pow(10, m / 2595) - 1) }
        let edges = (0...65).map { hz(Double($0) * mel(8000) / 65) }
        var weights: [Double] = []
        for b in 0..<64 {
            let rising = (1000 - edges[b]) / (edges[b + 1] - edges[b])
            let falling = (edges[b + 2] - 1000) / (edges[b + 2] - edges[b + 1])
            weights.append(max(0, min(rising, falling)))
        }
        let band = weights.indices.max { weights[$0] < weights[$1] }!
        #expect(edges[band] < 1000 && 1000 < edges[band + 2])

        let series = Self.extract(Self.signal(seconds: 3, tones: [(1000, 0.5)]))
        #expect(series.rows == 3)
        for r in 0..<series.rows {
            let means = Array(series.features[(r * 128)..<(r * 128 + 64)])
            let peak = means.indices.max { means[$0] < means[$1] }!
            #expect(peak == band, "row \(r): loudest band \(peak), expected \(band)")
            // Far from the tone the bands sit near the floor, ln(1e-6) = -13.8.
            #expect(means[band] > 8 && means[5] < -5 && means[60] < -5, "row \(r): \(means[band]), \(means[5]), \(means[60])")
        }
    }

    @Test("silence gives ln(1e-6) means and zero standard deviations, exactly")
    func silence() {
        let series = Self.extract([Float](repeating: 0, count: 2 * Self.rate))
        #expect(series.rows == 2)  // 198 frames: two windows, 6 left over
        let floor = logf(1e-6 as Float)
        for r in 0..<series.rows {
            #expect(series.features[(r * 128)..<(r * 128 + 64)].allSatisfy { $0 == floor })
            #expect(series.features[(r * 128 + 64)..<(r * 128 + 128)].allSatisfy { $0 == 0 })
        }
    }

    @Test("appending in random chunks gives the same bytes as one append")
    func chunking() {
        let samples = Self.signal(seconds: 7.3, tones: [(330, 0.3), (2500, 0.2)], noise: 0.1, seed: 9)
        let whole = Self.extract(samples)
        #expect(whole.rows == 8)
        for seed in [1, 2, 3] as [UInt64] {
            var g = SeededGenerator(seed: seed)
            let x = LogMelStats()
            var i = 0
            samples.withUnsafeBufferPointer { buffer in
                while i < samples.count {
                    // Mostly small and odd sizes, sometimes empty, sometimes larger than a batch.
                    let size = i < 1000 ? g.below(3) : [g.below(7), g.below(400), g.below(5000), 50_000][g.below(4)]
                    let end = min(samples.count, i + size)
                    x.append(UnsafeBufferPointer(rebasing: buffer[i..<end]))
                    i = end
                }
            }
            let chunked = x.finish()
            #expect(chunked == whole, "seed \(seed): \(maxDifference(chunked, whole)) largest difference")
        }
    }

    @Test("a frame's log-mel bytes do not depend on the frames computed with it (SIMD lane, group, batch size)")
    func laneInvariance() {
        let samples = Self.signal(seconds: 0.5, tones: [(1234, 0.4)], noise: 0.2, seed: 5)
        let frames = (samples.count - 400) / 160 + 1  // 48
        func logMel(from first: Int, count: Int) -> [Float] {
            var out = [Float](repeating: .nan, count: count * 64)
            samples.withUnsafeBufferPointer { s in
                out.withUnsafeMutableBufferPointer { o in
                    LogMelTables.shared.logMel(samples: s.baseAddress! + first * 160, count: count, into: o.baseAddress!)
                }
            }
            return out
        }
        let all = logMel(from: 0, count: frames)
        #expect(!all.contains { $0.isNaN })
        for (first, count) in [(3, 45), (1, 1), (7, 9), (20, 28)] {
            #expect(logMel(from: first, count: count) == Array(all[(first * 64)..<((first + count) * 64)]),
                    "frames \(first)..<\(first + count)")
        }
    }

    @Test("row count: windows of 96 frames, a last one only from 48 frames, timed to the end of the audio")
    func rowRule() {
        // n samples make (n - 400) / 160 + 1 frames.
        let cases: [(samples: Int, times: [Float])] = [
            (0, []), (399, []), (7919, []),          // 47 frames
            (7920, [0, 0.495]),                      // 48 frames: a partial window ending with the audio
            (15_600, [0, 0.96]),                     // 96 frames: exactly one window
            (23_120, [0, 0.96]),                     // 143 frames: 47 left over, dropped
            (23_280, [0, 0.96, 0.96, 1.455]),        // 144 frames: 48 left over, kept
        ]
        for (count, times) in cases {
            let series = Self.extract(Self.signal(seconds: Double(count) / Double(Self.rate), tones: [(700, 0.5)]))
            #expect(series.times == times, "\(count) samples")
            #expect(series.rows * 2 == times.count && series.features.count == series.rows * 128)
        }
    }

    @Test("finish resets the extractor for the next stream")
    func reuse() {
        let a = Self.signal(seconds: 2.1, tones: [(500, 0.4)]), b = Self.signal(seconds: 1.3, tones: [], noise: 0.2)
        let x = LogMelStats()
        x.append(a)
        let first = x.finish()
        x.append(b)
        #expect(x.finish() == Self.extract(b))
        #expect(first == Self.extract(a))
        #expect(x.finish().rows == 0)
    }
}
