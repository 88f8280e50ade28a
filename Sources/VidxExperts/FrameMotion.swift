// The built-in motion expert `builtin:motion/framediff-8x8@1`: mean absolute frame
// differences on an 8 x 8 grid, averaged over 1-second windows.
//
// Definition (Tests/Reference/expert_reference.py implements it independently in NumPy):
//
// - Input: the sampled video frames (4 fps in the pipeline, but any rate works) in
//   presentation order, each as 8-bit RGB (layout (height, width, 3), no row padding) of
//   any size, with its presentation time t in seconds.
// - Gray: Y = (0.299 R + 0.587 G + 0.114 B) / 255 per pixel, from the 0...255 values
//   (so Y is in [0, 1]).
// - Grid: an H x W frame is cut into 8 x 8 cells; cell (i, j) (i = row, j = column, both
//   0..<8) holds the pixel rows floor(i H / 8) ..< floor((i + 1) H / 8) and the pixel
//   columns floor(j W / 8) ..< floor((j + 1) W / 8). Cells are numbered i * 8 + j.
// - Pairs: each frame forms a pair with the frame before it when both have the same size.
//   The pair's value in a cell is the mean over the cell's pixels of |Y_later - Y_earlier|
//   (0 for a cell with no pixels, which only frames smaller than 8 pixels have): 64 values.
// - Rows: a pair belongs to the window [k, k + 1) with k = floor(time of its later frame).
//   Each window with at least one pair gives a row: the mean of its pairs' 64 values, timed
//   [k, k + 1]. Windows without pairs give no row. Rows are in time order.
// - Size changes: a frame whose size differs from the previous frame's forms no pair (the
//   previous frame is dropped); it starts a new chain. The current window is unaffected.
// - Time order: times must not decrease. A frame earlier than the last accepted frame is
//   ignored entirely (it neither forms a pair nor replaces the previous frame); equal
//   times are accepted.
// - So no frames or a single frame give zero rows; a static video gives rows of exact zeros.

import VidxCore

/// Streams sampled video frames into frame-difference energy rows
/// (`builtin:motion/framediff-8x8@1`, 64 values a row: the mean absolute gray-level change
/// in each cell of an 8 x 8 grid, averaged over 1-second windows; the full definition is at
/// the top of FrameMotion.swift).
///
/// Feed the frames in presentation order with
/// ``append(frame:width:height:time:)-(UnsafeBufferPointer<UInt8>,_,_,_)``, then call ``finish()``.
///
/// Gray levels are kept as the exact integers 299 R + 587 G + 114 B (= 255,000 Y), and the
/// per-cell sums of absolute differences as exact 64-bit integers; the only rounding is the
/// final division and the window mean (in Double). Memory is bounded: the previous frame's
/// gray levels (4 bytes a pixel), the current window's 64 sums, and the output rows.
/// Not thread-safe: one instance per stream.
public final class FrameMotion {
    /// The extractor id recorded in features files and bundles.
    public static let extractorID = "builtin:motion/framediff-8x8@1"
    /// Values per row: one per cell, cell (i, j) at i * 8 + j.
    public static let width = 64
    /// Cells along each side.
    public static let grid = 8
    /// The integer gray level of a white pixel: 299 + 587 + 114 = 1000 per unit of 8-bit value.
    static let grayScale = 255_000.0

    /// The previous frame's gray levels (299 R + 587 G + 114 B), (previousHeight, previousWidth).
    private var previous: [Int32] = []
    private var previousWidth = 0, previousHeight = 0
    private var lastTime: Double?
    private var windowSums = [Double](repeating: 0, count: FrameMotion.width)
    private var windowPairs = 0
    private var windowIndex = 0
    private var series = FeatureSeries(width: FrameMotion.width)

    /// A fresh extractor.
    public init() {}

    /// Appends the next sampled frame.
    /// - Parameters:
    ///   - pixels: RGB, layout (height, width, 3), UInt8, row-major, no padding.
    ///   - width, height: the frame's size in pixels, at least 1 each.
    ///   - time: its presentation time in seconds (finite, below 1e12 in magnitude). A frame
    ///     earlier than the last accepted one is ignored.
    public func append(frame pixels: UnsafeBufferPointer<UInt8>, width: Int, height: Int, time: Double) {
        precondition(width >= 1 && height >= 1, "FrameMotion: frame size \(width) x \(height) is empty")
        precondition(pixels.count == width * height * 3,
                     "FrameMotion: \(pixels.count) bytes for a \(width) x \(height) RGB frame")
        precondition(time.isFinite && abs(time) < 1e12, "FrameMotion: frame time \(time) is not a finite time in seconds")
        if let last = lastTime, time < last { return }
        lastTime = time
        let rgb = pixels.baseAddress!
        guard width == previousWidth && height == previousHeight else {
            // First frame, or a new size: start a new chain.
            previousWidth = width
            previousHeight = height
            previous = [Int32](repeating: 0, count: width * height)
            Self.grayTerms.withUnsafeBufferPointer { terms in
                previous.withUnsafeMutableBufferPointer { gray in
                    Self.grayRow(rgb, width * height, into: gray.baseAddress!, terms: terms.baseAddress!)
                }
            }
            return
        }
        let sums = differenceSums(rgb, width: width, height: height)
        let k = Int(time.rounded(.down))
        if windowPairs > 0 && k != windowIndex { closeWindow() }
        windowIndex = k
        windowPairs += 1
        for i in 0..<Self.grid {
            let rows = Self.boundary(i + 1, height) - Self.boundary(i, height)
            for j in 0..<Self.grid {
                let count = rows * (Self.boundary(j + 1, width) - Self.boundary(j, width))
                let c = i * Self.grid + j
                if count > 0 { windowSums[c] += Double(sums[c]) / (Self.grayScale * Double(count)) }
            }
        }
    }

    /// Appends the next sampled frame (see ``append(frame:width:height:time:)-(UnsafeBufferPointer<UInt8>,_,_,_)``).
    public func append(frame pixels: [UInt8], width: Int, height: Int, time: Double) {
        pixels.withUnsafeBufferPointer { append(frame: $0, width: width, height: height, time: time) }
    }

    /// Ends the stream: closes the last window if it has pairs and returns all the rows.
    /// The extractor is then reset, ready for a new stream.
    public func finish() -> FeatureSeries {
        if windowPairs > 0 { closeWindow() }
        let result = series
        series = FeatureSeries(width: Self.width)
        previous = []
        previousWidth = 0
        previousHeight = 0
        lastTime = nil
        return result
    }

    private func closeWindow() {
        let n = Double(windowPairs)
        series.append(windowSums.lazy.map { Float($0 / n) }, start: Double(windowIndex), end: Double(windowIndex + 1))
        for c in 0..<Self.width { windowSums[c] = 0 }
        windowPairs = 0
    }

    /// floor(i * size / 8): the first pixel of cell `i` along a side of `size` pixels.
    @inline(__always)
    static func boundary(_ i: Int, _ size: Int) -> Int { i * size / grid }

    /// 299 v, 587 v and 114 v for v = 0...255 (768 values): the gray level is three table
    /// reads and two additions, faster than three multiplications (the loop does not
    /// vectorise on the baseline x86-64 target, which lacks byte shuffles).
    static let grayTerms: [Int32] = (0..<768).map { i in Int32(i % 256) * [299, 587, 114][i / 256] }

    /// The integer gray levels (299 R + 587 G + 114 B, at most 255,000) of `count` pixels
    /// from `rgb` into `gray`.
    @inline(__always)
    static func grayRow(_ rgb: UnsafePointer<UInt8>, _ count: Int, into gray: UnsafeMutablePointer<Int32>,
                        terms: UnsafePointer<Int32>) {
        var p = rgb
        for x in 0..<count {
            gray[x] = terms[Int(p[0])] &+ terms[256 &+ Int(p[1])] &+ terms[512 &+ Int(p[2])]
            p += 3
        }
    }

    /// Per cell, the sum of |gray(frame) - previous| over its pixels (exact), replacing
    /// `previous` with the frame's gray levels as it goes.
    private func differenceSums(_ rgb: UnsafePointer<UInt8>, width: Int, height: Int) -> [Int64] {
        var sums = [Int64](repeating: 0, count: Self.width)
        let row = UnsafeMutablePointer<Int32>.allocate(capacity: width)
        defer { row.deallocate() }
        Self.grayTerms.withUnsafeBufferPointer { terms in
            previous.withUnsafeMutableBufferPointer { previous in
                for i in 0..<Self.grid {
                    for y in Self.boundary(i, height)..<Self.boundary(i + 1, height) {
                        let old = previous.baseAddress! + y * width
                        Self.grayRow(rgb + 3 * y * width, width, into: row, terms: terms.baseAddress!)
                        for j in 0..<Self.grid {
                            sums[i * Self.grid + j] += Self.absoluteDifferenceSum(
                                row, old, from: Self.boundary(j, width), to: Self.boundary(j + 1, width))
                        }
                        old.update(from: row, count: width)
                    }
                }
            }
        }
        return sums
    }

    /// The sum of |a[x] - b[x]| over x in `start..<end`, for gray levels (|difference| <=
    /// 255,000). Summed in Int32 over runs short enough never to overflow, so that the loop
    /// vectorises, and the runs in Int64.
    @inline(__always)
    static func absoluteDifferenceSum(_ a: UnsafePointer<Int32>, _ b: UnsafePointer<Int32>,
                                      from start: Int, to end: Int) -> Int64 {
        let run = Int(Int32.max) / 255_000
        var total: Int64 = 0
        var x = start
        while x < end {
            let stop = min(end, x + run)
            var sum: Int32 = 0
            while x < stop {
                let d = a[x] &- b[x]
                sum &+= d < 0 ? 0 &- d : d
                x += 1
            }
            total += Int64(sum)
        }
        return total
    }
}
