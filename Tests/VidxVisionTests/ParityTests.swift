import Foundation
import Testing
import VidxCore
import VidxNumerics
import VidxTestSupport
import VidxVision

extension VisionTests {
    @Suite("Parity with the NumPy reference (cnn_reference.py)")
    struct Parity {
        @Test("seeded random networks: features and logits within 1e-3, top-1 classes equal",
              arguments: ["small", "lite0"])
        func randomNetworks(_ name: String) throws {
            let data = try TestNets.random(name)
            let net = try ConvNet(path: data.weights)
            if name == "lite0" {
                #expect(net.convolutionCount == 49 && net.featureWidth == 1280 && net.classes == 1000 && net.inputSize == 224)
                #expect(abs(net.flopsPerFrame - 770_375_104) < 1, "Lite0 FLOPs: \(net.flopsPerFrame)")
            } else {
                #expect(net.convolutionCount == 14 && net.featureWidth == 40 && net.classes == 10 && net.inputSize == 48)
            }
            try expectParity(net, data, "random \(name)")
        }

        /// Not optional: `make test` runs `make models` first, so an absent file is a failure
        /// (run `make models`), never a silent pass.
        @Test("the converted EfficientNet-Lite0: features and logits within 1e-3, top-1 classes equal")
        func convertedLite0() throws {
            let data = try TestNets.realLite0()
            let net = try ConvNet(path: data.weights)
            #expect(net.name == "efficientnet-lite0")
            #expect(net.featureWidth == 1280 && net.classes == 1000 && net.inputSize == 224)
            try expectParity(net, data, "efficientnet-lite0")
        }

        @Test("features(_:) and logits(_:) are the two halves of featuresAndLogits(_:)")
        func entryPointsAgree() throws {
            let data = try TestNets.random("small")
            let net = try ConvNet(path: data.weights)
            let both = net.featuresAndLogits(data.frames)
            expectBitIdentical(net.features(data.frames), both.features, "features")
            expectBitIdentical(net.logits(data.frames), both.logits, "logits")
            #expect(net.features([]).isEmpty && net.logits([]).isEmpty)
        }

        /// Runs `net` on the case's frames and compares with the reference: shapes, then max
        /// absolute differences, then top-1 classes (where the reference's top two are not
        /// within the tolerance of each other).
        private func expectParity(_ net: ConvNet, _ data: TestNets.Case, _ what: String) throws {
            let n = data.frames.count
            let (features, logits) = net.featuresAndLogits(data.frames)
            #expect(features.count == n * net.featureWidth && data.features.count == features.count, "\(what): features shape")
            #expect(logits.count == n * net.classes && data.logits.count == logits.count, "\(what): logits shape")
            let featureError = maxAbsDifference(features, data.features)
            let logitError = maxAbsDifference(logits, data.logits)
            #expect(featureError < 1e-3, "\(what): features differ by up to \(featureError)")
            #expect(logitError < 1e-3, "\(what): logits differ by up to \(logitError)")
            let k = net.classes
            var compared = 0
            for i in 0..<n {
                let ours = Array(logits[(i * k)..<((i + 1) * k)]), theirs = Array(data.logits[(i * k)..<((i + 1) * k)])
                let best = theirs.indices.max { theirs[$0] < theirs[$1] }!
                let runnerUp = theirs.indices.filter { $0 != best }.map { theirs[$0] }.max() ?? -.infinity
                guard theirs[best] - runnerUp > 2e-3 else { continue }  // a near tie: either is right
                compared += 1
                #expect(ours.indices.max { ours[$0] < ours[$1] } == best, "\(what): frame \(i) top-1 class")
            }
            print("\(what): \(n) frames, max abs difference features \(featureError), logits \(logitError); top-1 equal on \(compared) of \(n) (rest near ties)")
        }
    }
}
