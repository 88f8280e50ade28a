import Testing
import VidxNumerics

/// Direct double-precision convolution, NHWC in and out, PyTorch weight layout
/// (out, in / groups, kh, kw): the definition, written as plainly as possible.
func referenceConvolution(_ g: ConvGeometry, _ x: [Float], frames: Int, height: Int, width: Int,
                          weight: [Float], bias: [Float], activation: ConvActivation, residual: [Float]?) -> [Double] {
    let (oh, ow) = g.outputSize(height: height, width: width)!
    let cin = g.inChannels, cout = g.outChannels, cg = cin / g.groups, og = cout / g.groups
    var out = [Double](repeating: 0, count: frames * oh * ow * cout)
    for n in 0..<frames {
        for oy in 0..<oh {
            for ox in 0..<ow {
                for o in 0..<cout {
                    var s = Double(bias[o])
                    let group = o / og
                    for ci in 0..<cg {
                        for ky in 0..<g.kernelHeight {
                            for kx in 0..<g.kernelWidth {
                                let iy = oy * g.strideY - g.padTop + ky, ix = ox * g.strideX - g.padLeft + kx
                                guard iy >= 0, iy < height, ix >= 0, ix < width else { continue }
                                let c = group * cg + ci
                                let w = weight[((o * cg + ci) * g.kernelHeight + ky) * g.kernelWidth + kx]
                                s += Double(w) * Double(x[((n * height + iy) * width + ix) * cin + c])
                            }
                        }
                    }
                    if activation == .relu6 { s = min(max(s, 0), 6) }
                    let at = ((n * oh + oy) * ow + ox) * cout + o
                    if let residual { s += Double(residual[at]) }
                    out[at] = s
                }
            }
        }
    }
    return out
}

extension VisionTests {
    @Suite("Conv2D against the direct definition")
    struct Convolution {
        struct Case: Sendable, CustomTestStringConvertible {
            let name: String
            let geometry: ConvGeometry
            let frames: Int, height: Int, width: Int
            let activation: ConvActivation
            let residual: Bool
            var testDescription: String { name }
        }

        static let cases: [Case] = [
            Case(name: "pointwise 20 -> 36, 5x7 (8-frame tiles, one partial)",
                 geometry: ConvGeometry(inChannels: 20, outChannels: 36, kernel: 1, stride: 1, groups: 1, pad: [0, 0, 0, 0]),
                 frames: 3, height: 5, width: 7, activation: .relu6, residual: false),
            Case(name: "pointwise 48 -> 16, 20x20, residual (one-frame tiles)",
                 geometry: ConvGeometry(inChannels: 48, outChannels: 16, kernel: 1, stride: 1, groups: 1, pad: [0, 0, 0, 0]),
                 frames: 2, height: 20, width: 20, activation: .none, residual: true),
            Case(name: "pointwise 8 -> 600, 19x29 (one 551-pixel tile per frame)",
                 geometry: ConvGeometry(inChannels: 8, outChannels: 600, kernel: 1, stride: 1, groups: 1, pad: [0, 0, 0, 0]),
                 frames: 3, height: 19, width: 29, activation: .relu6, residual: true),
            Case(name: "dense 3x3 stride 1, 4 -> 600, 17x17 (one 289-pixel im2col tile per frame)",
                 geometry: ConvGeometry(inChannels: 4, outChannels: 600, kernel: 3, stride: 1, groups: 1, pad: [1, 1, 1, 1]),
                 frames: 2, height: 17, width: 17, activation: .relu6, residual: false),
            Case(name: "dense 3x3 stride 2, pad [0, 1, 0, 1], 3 -> 12",
                 geometry: ConvGeometry(inChannels: 3, outChannels: 12, kernel: 3, stride: 2, groups: 1, pad: [0, 1, 0, 1]),
                 frames: 3, height: 16, width: 16, activation: .relu6, residual: false),
            Case(name: "dense 5x3 stride 2x1, odd pads, 7 -> 9, residual",
                 geometry: ConvGeometry(inChannels: 7, outChannels: 9, kernelHeight: 5, kernelWidth: 3, strideY: 2, strideX: 1,
                                        groups: 1, pad: [2, 1, 0, 2]),
                 frames: 2, height: 9, width: 6, activation: .relu6, residual: true),
            Case(name: "dense 1x1 stride 2 (im2col path, 32-frame tiles, padded)",
                 geometry: ConvGeometry(inChannels: 24, outChannels: 28, kernel: 1, stride: 2, groups: 1, pad: [0, 0, 0, 0]),
                 frames: 5, height: 7, width: 8, activation: .none, residual: false),
            Case(name: "depthwise 3x3 stride 1, 20 channels (16 + a tail of 4), residual",
                 geometry: ConvGeometry(inChannels: 20, outChannels: 20, kernel: 3, stride: 1, groups: 20, pad: [1, 1, 1, 1]),
                 frames: 2, height: 6, width: 5, activation: .relu6, residual: true),
            Case(name: "depthwise 5x5 stride 2, pad [1, 2, 1, 2], 48 channels",
                 geometry: ConvGeometry(inChannels: 48, outChannels: 48, kernel: 5, stride: 2, groups: 48, pad: [1, 2, 1, 2]),
                 frames: 2, height: 10, width: 9, activation: .relu6, residual: false),
            Case(name: "depthwise 3x3 stride 2, pad [2, 0, 0, 2], 7 channels (tail only)",
                 geometry: ConvGeometry(inChannels: 7, outChannels: 7, kernel: 3, stride: 2, groups: 7, pad: [2, 0, 0, 2]),
                 frames: 1, height: 5, width: 5, activation: .none, residual: false),
            Case(name: "depthwise 3x3 stride 1, 32 channels, 9x11 (interior pairs, odd leftovers), residual",
                 geometry: ConvGeometry(inChannels: 32, outChannels: 32, kernel: 3, stride: 1, groups: 32, pad: [1, 1, 1, 1]),
                 frames: 2, height: 9, width: 11, activation: .relu6, residual: true),
            Case(name: "depthwise 3x3 stride 2, pad [0, 1, 0, 1], 16 channels, 12x12 (pairs)",
                 geometry: ConvGeometry(inChannels: 16, outChannels: 16, kernel: 3, stride: 2, groups: 16, pad: [0, 1, 0, 1]),
                 frames: 2, height: 12, width: 12, activation: .none, residual: false),
            Case(name: "depthwise 3x3 on a 1x1 input (every tap but the centre in the padding)",
                 geometry: ConvGeometry(inChannels: 32, outChannels: 32, kernel: 3, stride: 1, groups: 32, pad: [1, 1, 1, 1]),
                 frames: 3, height: 1, width: 1, activation: .relu6, residual: false),
        ]

        @Test("within 1e-5 (relative to the sum of |terms|) of the direct double-precision convolution", arguments: cases)
        func matchesDefinition(_ c: Case) {
            let g = c.geometry
            let (oh, ow) = g.outputSize(height: c.height, width: c.width)!
            let x = randomFloats(c.frames * c.height * c.width * g.inChannels, seed: 1, scale: 2)
            let weight = randomFloats(g.weightShape.reduce(1, *), seed: 2, scale: 0.5)
            let bias = randomFloats(g.outChannels, seed: 3, scale: 0.5)
            let residual = c.residual ? randomFloats(c.frames * oh * ow * g.outChannels, seed: 4) : nil
            let conv = Conv2D(geometry: g, weight: weight, bias: bias, activation: c.activation)
            let got = conv(x, frames: c.frames, height: c.height, width: c.width, residual: residual)
            let want = referenceConvolution(g, x, frames: c.frames, height: c.height, width: c.width,
                                            weight: weight, bias: bias, activation: c.activation, residual: residual)
            #expect(got.count == want.count)
            let termScale = Double(g.inChannels / g.groups * g.kernelHeight * g.kernelWidth) * 2 * 0.5 + 3
            let worst = zip(got, want).map { abs(Double($0) - $1) }.max() ?? 0
            #expect(worst <= 1e-5 * termScale, "\(c.name): max abs difference \(worst)")
            // One frame at a time gives the same values as the batch (the same bytes where
            // OpenBLAS's kernels do not depend on a row's position in a call; Zen's do).
            let perFrame = (0..<c.frames).flatMap { n -> [Float] in
                let size = c.height * c.width * g.inChannels, outSize = oh * ow * g.outChannels
                return conv(Array(x[(n * size)..<((n + 1) * size)]), frames: 1, height: c.height, width: c.width,
                            residual: residual.map { Array($0[(n * outSize)..<((n + 1) * outSize)]) })
            }
            expectClose(perFrame, got, "\(c.name): frame by frame", tolerance: Float(1e-5 * termScale))
        }

        @Test("global average pooling: the mean over pixels, per frame and channel")
        func pooling() {
            let (frames, pixels, channels) = (3, 10, 21)
            let x = randomFloats(frames * pixels * channels, seed: 9)
            var out = [Float](repeating: .nan, count: frames * channels)
            x.withUnsafeBufferPointer { xp in
                out.withUnsafeMutableBufferPointer { op in
                    globalAveragePool(frames: frames, pixels: pixels, channels: channels, input: xp.baseAddress!, output: op.baseAddress!)
                }
            }
            for n in 0..<frames {
                for c in 0..<channels {
                    let mean = (0..<pixels).map { Double(x[(n * pixels + $0) * channels + c]) }.reduce(0, +) / Double(pixels)
                    #expect(abs(Double(out[n * channels + c]) - mean) < 1e-6)
                }
            }
        }

        @Test("sgemm tiles: whole frames, the smallest power of two of them covering 256 pixels")
        func tileSizes() {
            let g = ConvGeometry(inChannels: 16, outChannels: 96, kernel: 1, stride: 1, groups: 1, pad: [0, 0, 0, 0])
            let conv = Conv2D(geometry: g, weight: [Float](repeating: 0, count: 16 * 96), bias: [Float](repeating: 0, count: 96),
                              activation: .none)
            #expect(conv.tileRows(outputPixels: 112 * 112) == 112 * 112)
            #expect(conv.tileRows(outputPixels: 256) == 256)
            #expect(conv.tileRows(outputPixels: 14 * 14) == 2 * 196)
            #expect(conv.tileRows(outputPixels: 7 * 7) == 8 * 49)
            #expect(conv.tileRows(outputPixels: 1) == 256)
            #expect(conv.scratchCount(height: 20, width: 20) == 0)  // one-frame tiles: never padded
            #expect(conv.scratchCount(height: 7, width: 7) == 392 * (16 + 96))
        }
    }
}
