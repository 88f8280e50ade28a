import Testing
import VidxCore
import VidxNumerics
import VidxVision

extension VisionTests {
    @Suite("Determinism: a frame's bytes depend only on the frame")
    struct Determinism {
        /// `net` over `frames` in consecutive calls of `batch` frames, outputs concatenated.
        static func batched(_ net: ConvNet, _ frames: [RGBImage], _ batch: Int) -> (features: [Float], logits: [Float]) {
            var features: [Float] = [], logits: [Float] = []
            var start = 0
            while start < frames.count {
                let out = net.featuresAndLogits(Array(frames[start..<min(frames.count, start + batch)]))
                features += out.features
                logits += out.logits
                start += batch
            }
            return (features, logits)
        }

        /// The frames and (batch, pass) cases of the invariance tests.
        static func cases(_ name: String) throws -> (data: TestNets.Case, frames: [RGBImage], cases: [(batch: Int, pass: Int)]) {
            let data = try TestNets.random(name)
            let frames = name == "small"
                ? data.frames + (0..<6).map { noiseFrame(size: 48, seed: 100 + UInt64($0)) }
                : Array(data.frames.prefix(5))
            let cases = name == "small"
                ? [(batch: 1, pass: 16), (3, 16), (frames.count, 1), (frames.count, 3), (5, 2), (frames.count, 32)]
                : [(batch: 1, pass: 16), (frames.count, 2)]
            return (data, frames, cases)
        }

        /// The small net's sgemm tiles are 1, 2, 8 and 32 frames (outputs 24x24 down to 3x3)
        /// and Lite0's 1, 2 and 8 (7x7 layers), so these batches and pass sizes leave partial,
        /// padded tiles at every position.
        ///
        /// The same bytes only where OpenBLAS gives a row the same bytes wherever it sits in a
        /// call of a given shape. OpenBLAS 0.3.21's Zen kernels do not (measured: the same row
        /// one or more positions further down gets other last bits), so the values are held to
        /// 1e-4 (relative above 1), which any real bug breaks (see Convolution.swift).
        @Test("the same values for any batch size, pass size and frame order",
              arguments: ["small", "lite0"])
        func batchPassAndOrderInvariance(_ name: String) throws {
            let (data, frames, cases) = try Self.cases(name)
            let net = try ConvNet(path: data.weights)
            let (f, k) = (net.featureWidth, net.classes)
            try withCNNWorkers(2) {
                let whole = net.featuresAndLogits(frames)
                for (batch, pass) in cases {
                    let variant = try ConvNet(path: data.weights, framesPerPass: pass)
                    let out = Self.batched(variant, frames, batch)
                    let label = "\(name): batches of \(batch), passes of \(pass)"
                    expectClose(out.features, whole.features, label + ", features")
                    expectClose(out.logits, whole.logits, label + ", logits")
                }
                // Reversed order: every frame lands at another position in every tile.
                let reversed = net.featuresAndLogits(frames.reversed())
                for i in frames.indices {
                    let j = frames.count - 1 - i
                    expectClose(Array(reversed.features[(j * f)..<((j + 1) * f)]),
                                       Array(whole.features[(i * f)..<((i + 1) * f)]),
                                       "\(name): frame \(i) reversed, features")
                    expectClose(Array(reversed.logits[(j * k)..<((j + 1) * k)]),
                                       Array(whole.logits[(i * k)..<((i + 1) * k)]),
                                       "\(name): frame \(i) reversed, logits")
                }
            }
        }

        /// Every sgemm call is single-threaded and the same whatever the workers, so this
        /// holds on any machine (OpenBLAS's own results may depend on its thread count: they
        /// do on AMD Zen). 3 workers split the tiles unevenly.
        @Test("the same bytes for 1, 2 or 3 workers", arguments: ["small", "lite0"])
        func workerInvariance(_ name: String) throws {
            let (data, frames, cases) = try Self.cases(name)
            for (batch, pass) in cases {
                let net = try ConvNet(path: data.weights, framesPerPass: pass)
                let want = withCNNWorkers(1) { Self.batched(net, frames, batch) }
                for workers in [2, 3] {
                    let got = withCNNWorkers(workers) { Self.batched(net, frames, batch) }
                    let label = "\(name): batches of \(batch), passes of \(pass), \(workers) workers"
                    expectBitIdentical(got.features, want.features, label + ", features")
                    expectBitIdentical(got.logits, want.logits, label + ", logits")
                }
            }
        }

        @Test("concurrent calls on one network give the same bytes as serial ones")
        func concurrentCalls() async throws {
            let data = try TestNets.random("small")
            let net = try ConvNet(path: data.weights, framesPerPass: 4)
            let previous = BLAS.threads
            BLAS.setThreads(2)  // as withCNNWorkers(2), which takes no async body
            defer { BLAS.setThreads(previous) }
            let want = net.features(data.frames)
            try await withThrowingTaskGroup(of: [Float].self) { group in
                for _ in 0..<4 { group.addTask { net.features(data.frames) } }
                for try await got in group { expectBitIdentical(got, want, "concurrent call") }
            }
        }
    }
}
