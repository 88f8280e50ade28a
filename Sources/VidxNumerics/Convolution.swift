// 2-D convolutions on batches of NHWC frames: dense (im2col + sgemm, or sgemm alone for
// 1x1), depthwise (a direct loop vectorised over channels), bias, ReLU6 and a residual add
// fused into one pass over the output; global average pooling.
//
// Layout: every activation tensor is (frames, height, width, channels), Float32, row-major
// ("NHWC"): a pixel's channels are contiguous. Chosen because (1) a 1x1 convolution over a
// whole batch is then one matrix product, (frames * height * width) x in times in x out,
// with no copy; (2) im2col rows are runs of whole pixels; (3) the depthwise loop and the
// epilogue vectorise over channels, which every EfficientNet layer has in multiples of 16.
//
// Determinism (Documentation/Determinism.md, "The extract stage and its CNN"): every
// sgemm call of a layer covers `tileRows(outputPixels:)` output pixels (whole frames, the
// last tile zero-padded) and runs single-threaded, whole, on one of ``Parallel/threads``
// workers, which also does that tile's im2col and epilogue; the depthwise rows are spread
// the same way, and every loop outside sgemm computes each element in a fixed order.
//
// Why single-threaded calls, besides the bytes: OpenBLAS's idle threads poll (sched_yield)
// after every call, for OPENBLAS_THREAD_TIMEOUT (read only when the library loads), taking
// the cores from the depthwise layers and epilogues between the calls. The cost: a layer
// with fewer tiles than workers leaves workers idle, so batches under 8 frames gain
// nothing, and a single frame (one tile per layer) is slower than with OpenBLAS threading
// each call. `make bench-extract` (`vidx-bench cnn`) prints the CNN's frames/s.

/// The activation fused into a convolution's output, applied to conv + bias.
public enum ConvActivation: String, Sendable, CaseIterable {
    /// The identity.
    case none
    /// min(max(v, 0), 6).
    case relu6
}

/// The shape of a 2-D convolution (a cross-correlation, as PyTorch's `Conv2d`), with
/// explicit zero padding on each side.
public struct ConvGeometry: Sendable, Equatable, CustomStringConvertible {
    /// How a convolution is computed.
    public enum Kind: Sendable, Equatable {
        /// groups == 1, 1x1 kernel, stride 1, no padding: one sgemm over the input as it is.
        case pointwise
        /// groups == 1, any other kernel, stride or padding: im2col, then sgemm.
        case dense
        /// groups == in == out > 1: one filter per channel, a direct loop.
        case depthwise
    }

    public var inChannels: Int
    public var outChannels: Int
    public var kernelHeight: Int
    public var kernelWidth: Int
    public var strideY: Int
    public var strideX: Int
    public var groups: Int
    public var padTop: Int
    public var padBottom: Int
    public var padLeft: Int
    public var padRight: Int

    /// - Parameter pad: [top, bottom, left, right].
    /// - Precondition: positive channels, kernel, strides and groups; four non-negative pads.
    public init(inChannels: Int, outChannels: Int, kernelHeight: Int, kernelWidth: Int,
                strideY: Int, strideX: Int, groups: Int, pad: [Int]) {
        precondition(inChannels >= 1 && outChannels >= 1 && kernelHeight >= 1 && kernelWidth >= 1
                     && strideY >= 1 && strideX >= 1 && groups >= 1,
                     "ConvGeometry needs positive channels, kernel, strides and groups")
        precondition(pad.count == 4 && pad.allSatisfy { $0 >= 0 }, "ConvGeometry needs four non-negative pads")
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.kernelHeight = kernelHeight
        self.kernelWidth = kernelWidth
        self.strideY = strideY
        self.strideX = strideX
        self.groups = groups
        padTop = pad[0]; padBottom = pad[1]; padLeft = pad[2]; padRight = pad[3]
    }

    /// A square kernel with the same stride in both directions.
    public init(inChannels: Int, outChannels: Int, kernel: Int, stride: Int, groups: Int, pad: [Int]) {
        self.init(inChannels: inChannels, outChannels: outChannels, kernelHeight: kernel, kernelWidth: kernel,
                  strideY: stride, strideX: stride, groups: groups, pad: pad)
    }

    /// How this convolution is computed, or nil for a grouping other than 1 and depthwise
    /// (groups == in == out), which this module does not implement.
    public var kind: Kind? {
        if groups == 1 {
            let unit = kernelHeight == 1 && kernelWidth == 1 && strideY == 1 && strideX == 1
                && padTop == 0 && padBottom == 0 && padLeft == 0 && padRight == 0
            return unit ? .pointwise : .dense
        }
        return groups == inChannels && groups == outChannels ? .depthwise : nil
    }

    /// The weight's shape in PyTorch's layout: (out, in / groups, kh, kw).
    public var weightShape: [Int] { [outChannels, inChannels / groups, kernelHeight, kernelWidth] }

    /// The output's height and width for an input of `height` x `width`, or nil when the
    /// kernel does not fit the padded input: (height + top + bottom - kh) / strideY + 1.
    public func outputSize(height: Int, width: Int) -> (height: Int, width: Int)? {
        let h = height + padTop + padBottom - kernelHeight
        let w = width + padLeft + padRight - kernelWidth
        guard height >= 1, width >= 1, h >= 0, w >= 0 else { return nil }
        return (h / strideY + 1, w / strideX + 1)
    }

    /// Multiply-adds per output pixel: out x (in / groups) x kh x kw.
    public var multiplyAddsPerOutputPixel: Int { outChannels * (inChannels / groups) * kernelHeight * kernelWidth }

    public var description: String {
        "\(inChannels) -> \(outChannels), kernel \(kernelHeight)x\(kernelWidth), stride \(strideY)x\(strideX), "
            + "groups \(groups), pad [\(padTop), \(padBottom), \(padLeft), \(padRight)]"
    }
}

/// A 2-D convolution with bias (BatchNorm folded in), a fused activation and an optional
/// residual add, run on batches of NHWC frames: out = act(conv(x) + bias) + residual.
///
/// Dense convolutions (groups == 1) are one sgemm per tile of ``tileRows(outputPixels:)``
/// output pixels against the weight, after an im2col of the tile unless the kernel is 1x1
/// with stride 1 and no padding; depthwise convolutions are a direct loop. Other groupings
/// are not supported (``ConvGeometry/kind`` is nil).
public struct Conv2D: Sendable {
    public let geometry: ConvGeometry
    public let activation: ConvActivation
    /// `out` values.
    public let bias: [Float]
    /// Dense: (out, kh, kw, in), row-major, so that row o is the filter in im2col column
    /// order (ky, kx, ci) and the product is im2col (rows x K) times weight^T.
    /// Depthwise: (kh, kw, channels), row-major, so that one tap's weights are contiguous
    /// across channels like the NHWC pixels they multiply.
    let packedWeight: [Float]

    /// Output rows (pixels) that one sgemm call covers at least; tiles are whole frames.
    /// Measured on this project's 2-core machine with EfficientNet-Lite0's 7x7 layers:
    /// one-frame (49-row) calls ran at about two thirds of the throughput of 392-row ones;
    /// 512 (16 frames of 7x7) gained nothing measurable over 256 at batch 16.
    public static let minimumTileRows = 256

    /// - Parameters:
    ///   - weight: PyTorch's layout (out, in / groups, kh, kw), row-major (`geometry.weightShape`).
    ///   - bias: `out` values.
    /// - Precondition: a supported grouping (``ConvGeometry/kind`` not nil) and matching counts.
    public init(geometry: ConvGeometry, weight: [Float], bias: [Float], activation: ConvActivation) {
        guard let kind = geometry.kind else {
            preconditionFailure("Conv2D supports groups 1 and depthwise (groups == in == out), not \(geometry)")
        }
        let g = geometry
        precondition(weight.count == g.weightShape.reduce(1, *),
                     "Conv2D weight has \(weight.count) values, expected \(g.weightShape)")
        precondition(bias.count == g.outChannels, "Conv2D bias has \(bias.count) values for \(g.outChannels) outputs")
        self.geometry = g
        self.activation = activation
        self.bias = bias
        let kh = g.kernelHeight, kw = g.kernelWidth, taps = kh * kw
        switch kind {
        case .pointwise:
            packedWeight = weight
        case .dense:
            let cin = g.inChannels
            var packed = [Float](repeating: 0, count: weight.count)
            for o in 0..<g.outChannels {
                for ci in 0..<cin {
                    for t in 0..<taps {  // t = ky * kw + kx in both layouts
                        packed[(o * taps + t) * cin + ci] = weight[(o * cin + ci) * taps + t]
                    }
                }
            }
            packedWeight = packed
        case .depthwise:
            let c = g.outChannels
            var packed = [Float](repeating: 0, count: weight.count)
            for ch in 0..<c {
                for t in 0..<taps { packed[t * c + ch] = weight[ch * taps + t] }
            }
            packedWeight = packed
        }
    }

    /// Output pixels (rows of the product) per sgemm call, for an output of `outputPixels`
    /// (height x width) per frame: whole frames, the smallest power of two of them covering
    /// ``minimumTileRows`` (a power of two so that the usual batch sizes fill every tile).
    /// A function of the layer's output size only, never of the batch.
    ///
    /// Whole frames rather than a fixed row count: one call per frame is what the large
    /// early layers run fastest with (on EfficientNet-Lite0's 112x112 and 56x56 layers,
    /// L2-sized calls of several hundred rows were slower than one call per frame: the
    /// per-call overhead outweighs the cache misses), and frame-aligned tiles need no
    /// padding when the batch is a multiple of the frames per tile.
    public func tileRows(outputPixels: Int) -> Int {
        precondition(outputPixels >= 1, "tileRows needs at least one output pixel")
        var frames = 1
        while frames * outputPixels < Self.minimumTileRows { frames *= 2 }
        return frames * outputPixels
    }

    /// The scratch floats one worker of
    /// ``apply(frames:height:width:input:output:residual:scratch:threads:)`` needs for
    /// inputs of `height` x `width` (any number of frames); 0 if none.
    public func scratchCount(height: Int, width: Int) -> Int {
        guard let kind = geometry.kind, kind != .depthwise,
              let (oh, ow) = geometry.outputSize(height: height, width: width) else { return 0 }
        let pixels = oh * ow
        let tile = tileRows(outputPixels: pixels)
        let padded = tile > pixels  // tiles of several frames: the last may need zero padding
        let k = geometry.inChannels * geometry.kernelHeight * geometry.kernelWidth
        return (kind == .dense || padded ? tile * k : 0) + (padded ? tile * geometry.outChannels : 0)
    }

    /// Runs the convolution on `frames` NHWC frames.
    ///
    /// - Parameters:
    ///   - input: (frames, height, width, in), Float32, row-major.
    ///   - output: (frames, outHeight, outWidth, out) (see ``ConvGeometry/outputSize(height:width:)``);
    ///     write-only, must not overlap `input`.
    ///   - residual: nil, or a tensor of the output's shape added after the activation.
    ///   - scratch: at least `threads` x ``scratchCount(height:width:)`` floats (one slot per
    ///     worker; nil when that is 0).
    ///   - threads: the workers (see the file's comment on threads); nil: ``Parallel/threads``.
    /// - Precondition: the kernel fits the padded input.
    public func apply(frames: Int, height: Int, width: Int,
                      input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                      residual: UnsafePointer<Float>? = nil, scratch: UnsafeMutablePointer<Float>?,
                      threads: Int? = nil) {
        guard let (oh, ow) = geometry.outputSize(height: height, width: width) else {
            preconditionFailure("Conv2D \(geometry) does not fit a \(height) x \(width) input")
        }
        precondition(frames >= 0, "frame count must not be negative")
        let workers = threads ?? Parallel.threads
        precondition(workers >= 1, "Conv2D needs at least one thread")
        if frames == 0 { return }
        packedWeight.withUnsafeBufferPointer { w in
            bias.withUnsafeBufferPointer { b in
                if geometry.kind == .depthwise {
                    depthwise(frames: frames, height: height, width: width, outHeight: oh, outWidth: ow,
                              input: input, output: output, residual: residual, weight: w.baseAddress!, bias: b.baseAddress!,
                              threads: workers)
                } else {
                    precondition(scratchCount(height: height, width: width) == 0 || scratch != nil,
                                 "Conv2D \(geometry) needs scratch")
                    tiledProduct(frames: frames, height: height, width: width, outHeight: oh, outWidth: ow,
                                 input: input, output: output, residual: residual, scratch: scratch,
                                 weight: w.baseAddress!, bias: b.baseAddress!, threads: workers)
                }
            }
        }
    }

    /// The array form of ``apply(frames:height:width:input:output:residual:scratch:threads:)``
    /// on ``Parallel/threads`` workers: (frames, height, width, in) in, (frames, outHeight,
    /// outWidth, out) out, NHWC.
    public func callAsFunction(_ input: [Float], frames: Int, height: Int, width: Int,
                               residual: [Float]? = nil) -> [Float] {
        precondition(input.count == frames * height * width * geometry.inChannels,
                     "Conv2D input has \(input.count) values, expected \(frames) x \(height) x \(width) x \(geometry.inChannels)")
        guard let (oh, ow) = geometry.outputSize(height: height, width: width) else {
            preconditionFailure("Conv2D \(geometry) does not fit a \(height) x \(width) input")
        }
        let count = frames * oh * ow * geometry.outChannels
        precondition(residual == nil || residual!.count == count, "Conv2D residual has the wrong size")
        if count == 0 { return [] }
        let threads = Parallel.threads
        var scratch = [Float](repeating: 0, count: max(scratchCount(height: height, width: width) * threads, 1))
        return [Float](unsafeUninitializedCapacity: count) { out, initialized in
            input.withUnsafeBufferPointer { x in
                scratch.withUnsafeMutableBufferPointer { s in
                    if let residual {
                        residual.withUnsafeBufferPointer { r in
                            apply(frames: frames, height: height, width: width, input: x.baseAddress!,
                                  output: out.baseAddress!, residual: r.baseAddress!, scratch: s.baseAddress!,
                                  threads: threads)
                        }
                    } else {
                        apply(frames: frames, height: height, width: width, input: x.baseAddress!,
                              output: out.baseAddress!, residual: nil, scratch: s.baseAddress!, threads: threads)
                    }
                }
            }
            initialized = count
        }
    }

    // MARK: Dense: im2col + sgemm

    /// One sgemm per tile of ``tileRows(outputPixels:)`` output pixels (im2col rows, or the
    /// input's own rows for a pointwise convolution) against the packed weight, then the
    /// bias, activation and residual on that tile while it is still in cache. The tiles are
    /// spread over `threads` workers, each with its own slot of `scratch`.
    private func tiledProduct(frames: Int, height: Int, width: Int, outHeight: Int, outWidth: Int,
                              input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                              residual: UnsafePointer<Float>?, scratch: UnsafeMutablePointer<Float>?,
                              weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, threads: Int) {
        let g = geometry
        let pixels = outHeight * outWidth, cout = g.outChannels, total = frames * pixels
        let k = g.inChannels * g.kernelHeight * g.kernelWidth
        let tile = tileRows(outputPixels: pixels)
        let im2col = g.kind == .dense
        let slot = scratchCount(height: height, width: width)
        let aOffset = (im2col || tile > pixels) ? tile * k : 0  // see scratchCount
        let relu6 = activation == .relu6
        let tiles = (total + tile - 1) / tile
        Parallel.forEachTask(tiles, threads: threads) { task, range in
            let aScratch = scratch.map { $0 + task * slot }
            let cScratch = aScratch.map { $0 + aOffset }
            for t in range {
                let first = t * tile
                let rows = min(tile, total - first)
                let full = rows == tile
                let a: UnsafePointer<Float>
                if im2col {
                    fillIm2col(rows: first..<(first + rows), height: height, width: width,
                               outHeight: outHeight, outWidth: outWidth, input: input, into: aScratch!)
                    if !full { (aScratch! + rows * k).initialize(repeating: 0, count: (tile - rows) * k) }
                    a = UnsafePointer(aScratch!)
                } else if full {
                    a = input + first * k
                } else {  // a padded last tile: the call keeps the shape of all the others
                    aScratch!.update(from: input + first * k, count: rows * k)
                    (aScratch! + rows * k).initialize(repeating: 0, count: (tile - rows) * k)
                    a = UnsafePointer(aScratch!)
                }
                let destination = output + first * cout
                let c = full ? destination : cScratch!
                BLAS.gemm(m: tile, n: cout, k: k, a: a, lda: k, b: weight, ldb: k, transposeB: true, c: c, ldc: cout)
                let res = residual.map { $0 + first * cout }
                for r in 0..<rows {
                    finishRow(c + r * cout, into: destination + r * cout, bias: bias, count: cout,
                              relu6: relu6, residual: res.map { $0 + r * cout })
                }
            }
        }
    }

    /// Writes the im2col rows `rows` (output pixels counted across frames, relative to the
    /// range's start) into `out`, on the calling thread: row (frame, oy, ox) holds, for each
    /// tap (ky, kx) in order, the input pixel's `in` channels, or zeros where the tap falls
    /// in the padding.
    private func fillIm2col(rows: Range<Int>, height: Int, width: Int, outHeight: Int, outWidth: Int,
                            input: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>) {
        let g = geometry
        let cin = g.inChannels, kh = g.kernelHeight, kw = g.kernelWidth
        let k = cin * kh * kw, pixels = outHeight * outWidth
        let first = rows.lowerBound
        for item in 0..<rows.count {
            let r = first + item
            let frame = r / pixels, oy = r % pixels / outWidth, ox = r % outWidth
            let plane = input + frame * height * width * cin
            let row = out + item * k
            let ix0 = ox * g.strideX - g.padLeft
            let kxLow = max(0, -ix0), kxHigh = min(kw, width - ix0)
            for ky in 0..<kh {
                let iy = oy * g.strideY - g.padTop + ky
                let dst = row + ky * kw * cin
                if iy < 0 || iy >= height || kxLow >= kxHigh {
                    dst.initialize(repeating: 0, count: kw * cin)
                    continue
                }
                if kxLow > 0 { dst.initialize(repeating: 0, count: kxLow * cin) }
                // Taps kxLow..<kxHigh are one contiguous run of pixels in NHWC.
                let src = plane + (iy * width + ix0 + kxLow) * cin
                let run = (kxHigh - kxLow) * cin
                let d = dst + kxLow * cin
                for i in 0..<run { d[i] = src[i] }
                if kxHigh < kw { (dst + kxHigh * cin).initialize(repeating: 0, count: (kw - kxHigh) * cin) }
            }
        }
    }

    // MARK: Depthwise

    /// out[n, oy, ox, c] = act(bias[c] + sum over (ky, kx) in order of w[ky, kx, c] *
    /// in[n, oy * sy - top + ky, ox * sx - left + kx, c]) (+ residual), taps in the padding
    /// skipped. Output columns whose taps all lie inside the input go two at a time
    /// (``depthwisePair``: each weight load serves both); the others, and channel counts that
    /// are not a multiple of 16, one pixel at a time (``depthwisePixel``). Both sum in the
    /// same order, so the split changes no bytes.
    ///
    /// Pairs were the fastest on EfficientNet-Lite0's depthwise layers; one pixel at a time,
    /// and blocks of 4 or 8 pixels of 4 channels (more reuse of each weight, but 16-byte
    /// loads scattered over many cache lines), were slower (`vidx-bench cnn` measures it).
    private func depthwise(frames: Int, height: Int, width: Int, outHeight: Int, outWidth: Int,
                           input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                           residual: UnsafePointer<Float>?, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
                           threads: Int) {
        let g = geometry
        let c = g.outChannels, kw = g.kernelWidth, sx = g.strideX
        // Interior columns: ox * sx - left >= 0 and ox * sx - left + kw <= width.
        let interiorStart = min(outWidth, (g.padLeft + sx - 1) / sx)
        let lastInterior = width - kw + g.padLeft >= 0 ? (width - kw + g.padLeft) / sx : -1
        let interiorEnd = c % Lanes.scalarCount == 0 ? max(interiorStart, min(outWidth, lastInterior + 1)) : interiorStart
        let grain = max(1, 8192 / max(1, outWidth * c))
        Parallel.forEachRange(frames * outHeight, grain: grain, threads: threads) { items in
            for item in items {
                let frame = item / outHeight, oy = item % outHeight
                let plane = input + frame * height * width * c
                var ox = 0
                while ox < outWidth {
                    if ox >= interiorStart && ox + 2 <= interiorEnd {
                        depthwisePair(oy: oy, ox: ox, row: item, height: height, width: width, outWidth: outWidth,
                                      plane: plane, output: output, residual: residual, weight: weight, bias: bias)
                        ox += 2
                    } else {
                        depthwisePixel(oy: oy, ox: ox, row: item, height: height, width: width, outWidth: outWidth,
                                       plane: plane, output: output, residual: residual, weight: weight, bias: bias)
                        ox += 1
                    }
                }
            }
        }
    }

    /// Two pixels (oy, ox..<ox + 2), 16 channels at a time (`c % 16 == 0`): whole cache lines
    /// per load, as ``depthwisePixel``, with each weight load serving two pixels.
    @inline(__always)
    private func depthwisePair(oy: Int, ox: Int, row: Int, height: Int, width: Int, outWidth: Int,
                               plane: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                               residual: UnsafePointer<Float>?, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>) {
        let g = geometry
        let c = g.outChannels, kh = g.kernelHeight, kw = g.kernelWidth
        let iy0 = oy * g.strideY - g.padTop
        let kyLow = max(0, -iy0), kyHigh = min(kh, height - iy0)
        let ix0 = ox * g.strideX - g.padLeft
        let step = g.strideX * c
        let rowStride = width * c, tapRows = max(0, kyHigh - kyLow)
        let firstSource = plane + ((iy0 + kyLow) * width + ix0) * c
        let firstWeight = weight + kyLow * kw * c
        let dst = output + (row * outWidth + ox) * c
        let res = residual.map { $0 + (row * outWidth + ox) * c }
        let relu6 = activation == .relu6
        var ch = 0
        while ch < c {
            let b = loadLanes(bias + ch)
            var a0 = b, a1 = b
            var srcRow = firstSource + ch, wRow = firstWeight + ch
            for _ in 0..<tapRows {
                var x = srcRow, w = wRow
                for _ in 0..<kw {
                    let wv = loadLanes(w)
                    a0 += wv * loadLanes(x)
                    a1 += wv * loadLanes(x + step)
                    x += c
                    w += c
                }
                srcRow += rowStride
                wRow += kw &* c
            }
            if relu6 { a0 = VidxNumerics.relu6(a0); a1 = VidxNumerics.relu6(a1) }
            if let res { a0 += loadLanes(res + ch); a1 += loadLanes(res + c + ch) }
            storeLanes(a0, dst + ch)
            storeLanes(a1, dst + c + ch)
            ch += Lanes.scalarCount
        }
    }

    /// Output pixel (oy, ox) of one frame, taps in the padding skipped; 16 channels at a
    /// time, then one at a time.
    @inline(__always)
    private func depthwisePixel(oy: Int, ox: Int, row: Int, height: Int, width: Int, outWidth: Int,
                                plane: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                                residual: UnsafePointer<Float>?, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>) {
        let g = geometry
        let c = g.outChannels, kh = g.kernelHeight, kw = g.kernelWidth
        let iy0 = oy * g.strideY - g.padTop
        let kyLow = max(0, -iy0), kyHigh = max(kyLow, min(kh, height - iy0))
        let ix0 = ox * g.strideX - g.padLeft
        let kxLow = max(0, -ix0), kxHigh = max(kxLow, min(kw, width - ix0))
        let dst = output + (row * outWidth + ox) * c
        let res = residual.map { $0 + (row * outWidth + ox) * c }
        let relu6 = activation == .relu6
        let vectorEnd = c / Lanes.scalarCount * Lanes.scalarCount
        var ch = 0
        while ch < vectorEnd {
            var acc = loadLanes(bias + ch)
            for ky in kyLow..<kyHigh {
                let src = plane + ((iy0 + ky) * width + ix0) * c + ch
                let wRow = weight + ky * kw * c + ch
                for kx in kxLow..<kxHigh { acc += loadLanes(wRow + kx * c) * loadLanes(src + kx * c) }
            }
            if relu6 { acc = VidxNumerics.relu6(acc) }
            if let res { acc += loadLanes(res + ch) }
            storeLanes(acc, dst + ch)
            ch += Lanes.scalarCount
        }
        while ch < c {
            var acc = bias[ch]
            for ky in kyLow..<kyHigh {
                let src = plane + ((iy0 + ky) * width + ix0) * c + ch
                let wRow = weight + ky * kw * c + ch
                for kx in kxLow..<kxHigh { acc += wRow[kx * c] * src[kx * c] }
            }
            if relu6 { acc = min(max(acc, 0), 6) }
            if let res { acc += res[ch] }
            dst[ch] = acc
            ch += 1
        }
    }
}

/// dst[i] = act(src[i] + bias[i]) (+ residual[i]) over `0..<count`; `src` may equal `dst`.
/// Explicit SIMD: written as plain loops the compiler keeps it scalar, unable to rule out
/// aliasing between the four pointers.
@inline(__always)
private func finishRow(_ src: UnsafeMutablePointer<Float>, into dst: UnsafeMutablePointer<Float>,
                       bias: UnsafePointer<Float>, count: Int, relu6 clamp: Bool, residual: UnsafePointer<Float>?) {
    var i = 0
    while i + Lanes.scalarCount <= count {
        var v = loadLanes(src + i) + loadLanes(bias + i)
        if clamp { v = relu6(v) }
        if let residual { v += loadLanes(residual + i) }
        storeLanes(v, dst + i)
        i += Lanes.scalarCount
    }
    while i < count {
        var v = src[i] + bias[i]
        if clamp { v = min(max(v, 0), 6) }
        if let residual { v += residual[i] }
        dst[i] = v
        i += 1
    }
}

/// min(max(v, 0), 6) lane-wise, in compare-and-select form, which vectorises (see
/// `finishRow`). Not generic over SIMD: a generic body binds to the protocol's lane-by-lane
/// default implementations, which specialisation does not replace.
@inline(__always)
private func relu6(_ v: Lanes) -> Lanes {
    var x = v
    x.replace(with: 0, where: x .< 0)
    x.replace(with: 6, where: x .> 6)
    return x
}

/// Global average pooling of NHWC frames: out[n, c] = (sum over pixels, in row-major order,
/// of in[n, pixel, c]) / pixels.
///
/// - Parameters:
///   - input: (frames, pixels, channels), Float32, row-major (pixels = height x width).
///   - output: (frames, channels).
///   - threads: the most threads to use; nil: ``Parallel/threads``.
public func globalAveragePool(frames: Int, pixels: Int, channels: Int,
                              input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, threads: Int? = nil) {
    precondition(frames >= 0 && pixels >= 1 && channels >= 0, "globalAveragePool needs at least one pixel")
    let divisor = Float(pixels)
    Parallel.forEachRange(frames, grain: max(1, 65536 / max(1, pixels * channels)), threads: threads) { range in
        for n in range {
            let out = output + n * channels
            out.initialize(repeating: 0, count: channels)
            let plane = input + n * pixels * channels
            for p in 0..<pixels {
                let src = plane + p * channels
                var i = 0
                while i + Lanes.scalarCount <= channels {
                    storeLanes(loadLanes(out + i) + loadLanes(src + i), out + i)
                    i += Lanes.scalarCount
                }
                while i < channels { out[i] += src[i]; i += 1 }
            }
            rowDivide(out, channels, by: divisor)
        }
    }
}
