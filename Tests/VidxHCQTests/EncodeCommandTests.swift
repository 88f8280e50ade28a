import Foundation
import Testing
import VidxCore
import VidxTestSupport
@testable import VidxHCQ

@Suite("vidx-encode end to end", .serialized)
struct EncodeCommandTests {
    @Test("encodes a unit, records per-video failures, exits 3, and matches the library")
    func unit() throws {
        let data = try TestData.random("small")
        let out = TestData.directory + "/small.codes.safetensors"
        let r = try runTool("vidx-encode", ["--bundle", data.bundle, "--features", data.features, "--out", out, "--embeddings"])
        #expect(r.status == 3, "\(r.stderr)")
        #expect(r.stdout.contains("videos"))
        let codes = try CodesFile(path: out)
        let bundle = try ModelBundle(directory: data.bundle)
        #expect(codes.bundleFingerprint == bundle.fingerprint)
        #expect(codes.levels == bundle.config.levels && codes.subspaces == bundle.config.pq.subspaces)
        let unit = try FeaturesFile(path: data.features)
        #expect(codes.videos.map(\.id) == unit.videos.map(\.id))
        let failed = codes.videos.filter { $0.status == .failed }
        #expect(!failed.isEmpty)
        #expect(failed.allSatisfy { $0.error != nil })
        let classes = Set(failed.compactMap { $0.error?.class })
        #expect(classes.contains(.wrongWidth))
        for f in failed { #expect(r.stderr.contains(f.id)) }
        // Every encoded video equals the library's encoding of it, batched as vidx-encode
        // batches (chunks of 4 x 16 videos, the readable ones in batches of 16): on AMD Zen,
        // OpenBLAS's last bits depend on a row's position in its tile, so the same bytes
        // need the same batches. Alone, a video gets the same values within 1e-5.
        let videos = try loadVideos(data.features, config: bundle.config)
        let encoder = HCQEncoder(bundle: bundle)
        var library: [Int: VideoEncoding] = [:]
        for chunk in Swift.stride(from: 0, to: videos.count, by: 64) {
            let indices = (chunk..<min(videos.count, chunk + 64)).filter { videos[$0] != nil }
            for (i, r) in zip(indices, encoder.encode(indices.map { videos[$0]! })) { library[i] = try? r.get() }
        }
        let perVideo = codes.levels * codes.subspaces
        let perEmbedding = codes.levels * bundle.config.hiddenSize
        for (i, record) in codes.videos.enumerated() where record.status != .failed {
            let enc = try #require(library[i], "video \(i) encoded by the tool, not by the library")
            #expect(Array(codes.codes[(i * perVideo)..<((i + 1) * perVideo)]) == enc.codes)
            #expect(Array(codes.embeddings![(i * perEmbedding)..<((i + 1) * perEmbedding)]) == enc.embeddings)
            let alone = try encoder.encode([videos[i]!])[0].get()
            #expect(zip(alone.embeddings, enc.embeddings).allSatisfy { abs($0 - $1) <= 1e-5 }, "video \(i) alone")
        }
        // The file follows Schemas/codes.md, as read by an independent Python checker.
        let checked = try Python.run(["Tests/Reference/check_codes_file.py", out, data.features, data.bundle])
        #expect(checked.hasPrefix("ok \(codes.videos.count) videos"))
        // Deterministic output bytes, whatever the thread count.
        let again = TestData.directory + "/small.codes-2.safetensors"
        _ = try runTool("vidx-encode", ["--bundle", data.bundle, "--features", data.features, "--out", again, "--embeddings",
                                        "--threads", "1"])
        #expect(try Data(contentsOf: URL(fileURLWithPath: out)) == Data(contentsOf: URL(fileURLWithPath: again)))
    }

    @Test("NaN, infinity and unknown experts fail only their video")
    func badVideos() throws {
        let data = try TestData.random("small")
        let bundle = try ModelBundle(directory: data.bundle)
        let spec = bundle.config.experts[0]
        func expert(_ fill: Float, at: Int = 5) -> FeatureSeries {
            var f = [Float](repeating: 0.5, count: 3 * spec.width)
            f[at] = fill
            return FeatureSeries(rows: 3, width: spec.width, features: f, times: [0, 1, 1, 2, 2, 3])
        }
        // Every expert present is declared in `extractors` (an undeclared one refuses the file).
        var declared = Dictionary(uniqueKeysWithValues: bundle.config.experts.map { ($0.name, $0.extractor) })
        declared["no_such_expert"] = "imported:no_such_expert"
        var w = FeaturesWriter(extractors: declared)
        let other = bundle.config.experts[1]
        let otherRows = FeatureSeries(rows: 2, width: other.width, features: [Float](repeating: 0.5, count: 2 * other.width),
                                     times: [0, 1, 1, 2])
        w.add(VideoRecord(id: "good"), experts: [spec.name: expert(0.25)])
        w.add(VideoRecord(id: "nan"), experts: [spec.name: expert(.nan)])
        w.add(VideoRecord(id: "inf"), experts: [spec.name: expert(.infinity)])
        // HCQ: a first value NaN makes the expert missing, fine while another has features.
        w.add(VideoRecord(id: "nan-first"), experts: [spec.name: expert(.nan, at: 0), other.name: otherRows])
        w.add(VideoRecord(id: "alien"), experts: ["no_such_expert": expert(1)])
        w.add(VideoRecord(id: "lost", status: .failed, error: .init(class: .corrupt, message: "truncated")), experts: [:])
        let features = TestData.directory + "/bad.features.safetensors"
        try w.write(to: features)
        let out = TestData.directory + "/bad.codes.safetensors"
        let r = try runTool("vidx-encode", ["--bundle", data.bundle, "--features", features, "--out", out])
        #expect(r.status == 3)
        let codes = try CodesFile(path: out)
        #expect(codes.videos.map(\.status) == [.ok, .failed, .failed, .ok, .failed, .failed])
        #expect(codes.videos.map { $0.error?.class } == [nil, .badFeatures, .badFeatures, nil, .unknownExpert, .corrupt])
    }

    @Test("refuses features extracted for other experts, naming both extractors")
    func extractorMismatch() throws {
        let data = try TestData.random("small")
        let bundle = try ModelBundle(directory: data.bundle)
        let name = bundle.config.experts[0].name
        var w = FeaturesWriter(extractors: [name: "builtin:something-else@9"])
        w.add(VideoRecord(id: "a"), experts: [:])
        let features = TestData.directory + "/mismatch.features.safetensors"
        try w.write(to: features)
        let out = TestData.directory + "/mismatch.codes.safetensors"
        let r = try runTool("vidx-encode", ["--bundle", data.bundle, "--features", features, "--out", out])
        #expect(r.status == 1)
        #expect(r.stderr.contains("builtin:something-else@9") && r.stderr.contains(bundle.config.experts[0].extractor))
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    @Test("unusable inputs exit 1 and write nothing; usage errors exit 2")
    func inputErrors() throws {
        let data = try TestData.random("small")
        let out = TestData.directory + "/none.codes.safetensors"
        let noBundle = try runTool("vidx-encode", ["--bundle", "/nonexistent", "--features", data.features, "--out", out])
        #expect(noBundle.status == 1 && noBundle.stderr.contains("/nonexistent"))
        let garbage = TestData.directory + "/garbage.safetensors"
        try Data("not a safetensors file".utf8).write(to: URL(fileURLWithPath: garbage))
        let badFeatures = try runTool("vidx-encode", ["--bundle", data.bundle, "--features", garbage, "--out", out])
        #expect(badFeatures.status == 1 && badFeatures.stderr.contains(garbage))
        #expect(!FileManager.default.fileExists(atPath: out))
        #expect(try runTool("vidx-encode", ["--bundle", data.bundle]).status == 2)
        #expect(try runTool("vidx-encode", ["--bundle", data.bundle, "--features", data.features, "--out", out, "--batch", "0"]).status == 2)
    }
}
