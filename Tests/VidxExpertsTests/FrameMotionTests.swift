import Foundation
import Testing
import VidxCore
import VidxExperts
import VidxTestSupport

/// `builtin:motion/framediff-8x8@1` against its definition and the NumPy reference
/// (Tests/Reference/expert_reference.py).
@Suite("Motion expert: frame-difference energy")
struct FrameMotionTests {
    /// A frame of one colour.
    static func plain(_ width: Int, _ height: Int, _ value: UInt8) -> [UInt8] {
        [UInt8](repeating: value, count: width * height * 3)
    }

    /// Seeded noise frame.
    static func noise(_ width: Int, _ height: Int, seed: UInt64) -> [UInt8] {
        var g = SeededGenerator(seed: seed)
        return (0..<(width * height * 3)).map { _ in UInt8(truncatingIfNeeded: g.next()) }
    }

    /// Black frame with a white `size` x `size` square whose top-left corner is (x, y).
    static func square(_ width: Int, _ height: Int, x: Int, y: Int, size: Int) -> [UInt8] {
        var p = plain(width, height, 0)
        for row in y..<min(height, y + size) {
            for col in x..<min(width, x + size) {
                for c in 0..<3 { p[(row * width + col) * 3 + c] = 255 }
            }
        }
        return p
    }

    static func extract(_ segments: [FrameSegment]) -> FeatureSeries {
        let m = FrameMotion()
        for s in segments {
            for (frame, time) in zip(s.frames, s.times) { m.append(frame: frame, width: s.width, height: s.height, time: time) }
        }
        return m.finish()
    }

    @Test("a static video gives exact zeros, one row per 1-second window with pairs")
    func staticVideo() {
        var s = FrameSegment(width: 224, height: 224)
        let frame = Self.noise(224, 224, seed: 3)
        for f in 0..<10 { s.add(frame, time: Double(f) * 0.25) }
        let series = Self.extract([s])
        #expect(series.rows == 3 && series.times == [0, 1, 1, 2, 2, 3])
        #expect(series.features.allSatisfy { $0 == 0 }, "largest \(series.features.max() ?? 0)")
    }

    @Test("a white square moving across black is non-zero exactly in the cells it crosses, with the exact changed share")
    func movingSquare() {
        // 224 x 224: cells are 28 x 28. The square (20 px) stays in cell row 3 (pixel rows 84..<112)
        // and moves right 12 px a frame from x = 10, at 4 fps.
        let side = 224, cell = 28, size = 20, y = 90
        var s = FrameSegment(width: side, height: side)
        let xs = (0..<12).map { 10 + 12 * $0 }
        for (f, x) in xs.enumerated() { s.add(Self.square(side, side, x: x, y: y, size: size), time: Double(f) * 0.25) }
        let series = Self.extract([s])
        // Pairs end at 0.25 ... 2.75 s: windows 0 (frames 1-3), 1 (4-7), 2 (8-11).
        #expect(series.times == [0, 1, 1, 2, 2, 3])
        let windows = [1...3, 4...7, 8...11]
        for (r, later) in windows.enumerated() {
            // Expected: per pair, the changed pixels are the columns [x0, x1) and [x0 + 20, x1 + 20)
            // over the square's 20 rows; each changes by exactly 1 in gray.
            var expected = [Double](repeating: 0, count: 64)
            for f in later {
                for column in Array(xs[f - 1]..<xs[f]) + Array((xs[f - 1] + size)..<(xs[f] + size)) {
                    expected[3 * 8 + column / cell] += Double(size) / Double(cell * cell)
                }
            }
            for c in 0..<64 {
                let value = series.features[r * 64 + c], want = expected[c] / Double(later.count)
                #expect(abs(Double(value) - want) < 1e-6, "window \(r), cell (\(c / 8), \(c % 8)): \(value), expected \(want)")
                #expect((value > 0) == (c / 8 == 3 && want > 0), "window \(r), cell (\(c / 8), \(c % 8))")
            }
        }
        // Over the whole clip the square crossed cell columns 0-5 of cell row 3 (x from 10 to 162).
        let touched = Set((0..<64).filter { c in (0..<3).contains { series.features[$0 * 64 + c] > 0 } })
        #expect(touched == Set((0...5).map { 24 + $0 }))
    }

    @Test("matches the NumPy reference within 1e-5 (uneven cells, jittered times, gaps, a backward frame, size changes)")
    func matchesReference() throws {
        var g = SeededGenerator(seed: 11)
        // 70 x 45: cells of 8 or 9 columns and 5 or 6 rows. Noise plus a moving blob.
        var a = FrameSegment(width: 70, height: 45)
        for f in 0..<26 {
            var frame = Self.noise(70, 45, seed: UInt64(100 + f))
            let bx = 3 * f % 60, by = f % 35
            for row in by..<(by + 10) { for col in bx..<(bx + 10) { frame[(row * 70 + col) * 3 + 1] = 255 } }
            var t = Double(f) * 0.25 + Double(g.uniform()) * 0.05
            if f >= 18 { t += 2 }  // a gap: windows with no pairs give no row
            a.add(frame, time: f == 10 ? 0.3 : t)  // frame 10 goes back in time: ignored
        }
        var b = FrameSegment(width: 50, height: 37)  // a new size: no pair across the change
        for f in 0..<9 { b.add(Self.noise(50, 37, seed: UInt64(200 + f / 2)), time: 9.1 + Double(f) * 0.25) }
        var c = FrameSegment(width: 5, height: 3)  // smaller than the grid: empty cells are 0
        for f in 0..<6 { c.add(Self.noise(5, 3, seed: UInt64(300 + f)), time: 11.9 + Double(f) * 0.25) }

        let dir = makeTestDirectory("motion")
        var args = ["Tests/Reference/expert_reference.py", "motion", dir + "/features.npy", dir + "/times.npy"]
        for (i, s) in [a, b, c].enumerated() { args += try s.write(dir + "/segment\(i)") }
        try Python.run(args)
        let want = try readReference(features: dir + "/features.npy", times: dir + "/times.npy", width: FrameMotion.width)
        let got = Self.extract([a, b, c])
        #expect(got.rows >= 8)
        expectClose(got, want, absolute: 1e-5, "motion")
    }

    @Test("a size change drops the previous frame: no pair across it, windows continue")
    func sizeChange() {
        var black = FrameSegment(width: 32, height: 32), white = FrameSegment(width: 40, height: 24)
        for f in 0..<3 { black.add(Self.plain(32, 32, 0), time: Double(f) * 0.25) }
        for f in 3..<6 { white.add(Self.plain(40, 24, 255), time: Double(f) * 0.25) }
        let series = Self.extract([black, white])
        // Pairs at 0.25, 0.5 (black) and 1.0, 1.25 (white); the frame at 0.75 starts the new chain.
        #expect(series.times == [0, 1, 1, 2])
        #expect(series.features.allSatisfy { $0 == 0 })
    }

    @Test("windows without pairs are skipped; a frame earlier than the last is ignored; 0 or 1 frame gives no rows")
    func windowRules() {
        let m = FrameMotion()
        #expect(m.finish().rows == 0)
        m.append(frame: Self.plain(16, 16, 9), width: 16, height: 16, time: 0)
        #expect(m.finish().rows == 0)

        for (value, time) in [(0, 0.0), (255, 0.25), (0, 3.0), (0, 3.25)] as [(UInt8, Double)] {
            m.append(frame: Self.plain(16, 16, value), width: 16, height: 16, time: time)
        }
        let gaps = m.finish()
        #expect(gaps.times == [0, 1, 3, 4])
        #expect(gaps.features[0..<64].allSatisfy { $0 == 1 } && gaps.features[64...].allSatisfy { $0 == 0.5 })

        // A (0 s), B (0.5 s), C (0.25 s: earlier, ignored), D = B (0.75 s): pairs (A, B) and (B, D).
        for (value, time) in [(0, 0.0), (200, 0.5), (90, 0.25), (200, 0.75)] as [(UInt8, Double)] {
            m.append(frame: Self.plain(16, 16, value), width: 16, height: 16, time: time)
        }
        let backward = m.finish()
        let change = Float(Double(200) * (0.299 + 0.587 + 0.114) / 255)
        #expect(backward.rows == 1 && backward.features.allSatisfy { abs($0 - change / 2) < 1e-7 })
    }
}
