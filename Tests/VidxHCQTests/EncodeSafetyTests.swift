import Foundation
import Testing
import VidxCore
import VidxTestSupport
@testable import VidxHCQ

/// Seeded rows for one expert of the small random bundle.
func seededExpert(_ spec: ExpertSpec, rows: Int, seed: UInt64, scale: Float = 1, first: Float? = nil) -> FeatureSeries {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    var values = (0..<(rows * spec.width)).map { _ -> Float in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return (Float(state >> 40) / Float(1 << 24) * 2 - 1) * scale
    }
    if let first, !values.isEmpty { values[0] = first }
    let times: [Float] = spec.isTimed ? (0..<rows).flatMap { [Float($0), Float($0) + 1] }
                                       : [Float](repeating: -1, count: rows * 2)
    return FeatureSeries(rows: rows, width: spec.width, features: values, times: times)
}

/// Writes a features file for `bundle` whose `extractors` declares every bundle expert
/// (plus `alsoDeclared`), unless `extractors` is given.
func writeFeatures(_ videos: [(VideoRecord, [String: FeatureSeries])], bundle: ModelBundle, to path: String,
                   extractors: [String: String]? = nil, alsoDeclared: [String: String] = [:]) throws {
    let declared = extractors ?? Dictionary(uniqueKeysWithValues: bundle.config.experts.map { ($0.name, $0.extractor) })
        .merging(alsoDeclared) { a, _ in a }
    var w = FeaturesWriter(bundleFingerprint: bundle.fingerprint, extractors: declared)
    for (record, experts) in videos { w.add(record, experts: experts) }
    try w.write(to: path)
}

@Suite("vidx-encode: nothing stored ok that is not a real encoding", .serialized)
struct EncodeSafetyTests {
    @Test("a video with no usable expert (none, all 0 rows, all first-value NaN) fails as no_features; NaN-first experts are counted and named")
    func noFeatures() throws {
        let data = try TestData.random("small")
        let bundle = try ModelBundle(directory: data.bundle)
        let specs = bundle.config.experts
        func all(_ seed: UInt64, first: Float? = nil) -> [String: FeatureSeries] {
            Dictionary(uniqueKeysWithValues: specs.enumerated().map {
                ($1.name, seededExpert($1, rows: 3, seed: seed + UInt64($0), first: first))
            })
        }
        var oneMasked = all(40)
        oneMasked[specs[0].name] = seededExpert(specs[0], rows: 3, seed: 99, first: .nan)
        var withoutIt = oneMasked
        withoutIt[specs[0].name] = nil
        let videos: [(VideoRecord, [String: FeatureSeries])] = [
            (VideoRecord(id: "good"), all(10)),
            (VideoRecord(id: "absent"), [:]),
            (VideoRecord(id: "zero-rows"), all(20).mapValues { FeatureSeries(rows: 0, width: $0.width, features: [], times: []) }),
            (VideoRecord(id: "all-nan-first"), all(30, first: .nan)),
            (VideoRecord(id: "one-nan-first"), oneMasked),
            (VideoRecord(id: "same-without-it"), withoutIt),
        ]
        let features = TestData.directory + "/nofeatures.features.safetensors"
        try writeFeatures(videos, bundle: bundle, to: features)
        let out = TestData.directory + "/nofeatures.codes.safetensors"
        let r = try runTool("vidx-encode", ["--bundle", data.bundle, "--features", features, "--out", out, "--embeddings"])
        #expect(r.status == 3, "\(r.stderr)")
        let codes = try CodesFile(path: out)
        #expect(codes.videos.map(\.status) == [.ok, .failed, .failed, .failed, .ok, .ok])
        #expect(codes.videos.map { $0.error?.class } == [nil, .noFeatures, .noFeatures, .noFeatures, nil, nil])
        let perVideo = codes.levels * codes.subspaces
        for i in 1...3 {
            #expect(codes.codes[(i * perVideo)..<((i + 1) * perVideo)].allSatisfy { $0 == 0 }, "video \(i) codes")
            #expect(r.stderr.contains("'\(codes.videos[i].id)'"), "video \(i) not named on stderr: \(r.stderr)")
        }
        // Every NaN-first expert is named with its video on stderr and counted: 3 + 1.
        for s in specs {
            #expect(r.stderr.contains("video 'all-nan-first': expert '\(s.name)'"), "\(r.stderr)")
        }
        #expect(r.stderr.contains("video 'one-nan-first': expert '\(specs[0].name)'"), "\(r.stderr)")
        #expect(!r.stderr.contains("video 'good': expert"))
        #expect(r.stdout.contains("4 expert(s) masked (first value NaN)"), "\(r.stdout)")
        // A masked expert is exactly a missing one (HCQ's parity): encoded alone, the same
        // bytes; in the tool's batch (other rows of a tile), the same values within 1e-5.
        let inputs = try loadVideos(features, config: bundle.config).map { $0! }
        let encoder = HCQEncoder(bundle: bundle)
        let masked = try encoder.encode([inputs[4]])[0].get(), missing = try encoder.encode([inputs[5]])[0].get()
        #expect(masked == missing)
        let e = codes.embeddings!, n = codes.levels * bundle.config.hiddenSize
        #expect(zip(e[(4 * n)..<(5 * n)], masked.embeddings).allSatisfy { abs($0 - $1) <= 1e-5 })

        let json = try runTool("vidx-encode", ["--bundle", data.bundle, "--features", features, "--out", out, "--json"])
        #expect(json.status == 3)
        let summary = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect(summary?["nan_masked_experts"] as? Int == 4 && summary?["failed"] as? Int == 3, "\(json.stdout)")

        // The library says the same.
        let results = encoder.encode([VideoFeatures(experts: [:])])
        guard case .failure(let error) = results[0] else { Issue.record("an empty video was encoded"); return }
        #expect(error.kind == .noFeatures)
    }

    /// The small random bundle with the first expert's projection weights scaled by 16, as
    /// a wider trained projection (the starter's 1280 inputs) would sum them: then 3e38 in
    /// every feature overflows float32 in the projection, and inf / inf gives NaN.
    static func overflowingBundle() throws -> String {
        let source = try TestData.random("small").bundle
        let dir = TestData.directory + "/bundle-overflowing"
        guard !FileManager.default.fileExists(atPath: dir + "/weights.safetensors") else { return dir }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: source + "/bundle.json", toPath: dir + "/bundle.json")
        let file = try SafeTensorsFile(path: source + "/weights.safetensors")
        let first = try ModelBundle(directory: source).config.experts[0].name
        var w = SafeTensorsWriter()
        for name in file.names {
            let info = file.info(name)!
            let scale: Float = name == "video_dim_reduce.\(first).fc.weight" ? 16 : 1
            w.add(name, floats: try file.floats(name).map { $0 * scale }, shape: info.shape)
        }
        try w.write(to: dir + "/weights.safetensors")
        return dir
    }

    @Test("finite but extreme features (3e38) fail their video: the encoder's output is checked; the rest of the batch is untouched")
    func extremeFeatures() throws {
        let bundleDirectory = try Self.overflowingBundle()
        let bundle = try ModelBundle(directory: bundleDirectory)
        let specs = bundle.config.experts
        func all(_ seed: UInt64) -> [String: FeatureSeries] {
            Dictionary(uniqueKeysWithValues: specs.enumerated().map {
                ($1.name, seededExpert($1, rows: 4, seed: seed + UInt64($0)))
            })
        }
        var extreme = all(2)
        let big = specs[0]
        extreme[big.name] = FeatureSeries(rows: 4, width: big.width, features: [Float](repeating: 3e38, count: 4 * big.width),
                                         times: [0, 1, 1, 2, 2, 3, 3, 4])
        let videos: [(VideoRecord, [String: FeatureSeries])] = [
            (VideoRecord(id: "before"), all(1)), (VideoRecord(id: "extreme"), extreme), (VideoRecord(id: "after"), all(3)),
        ]
        let features = TestData.directory + "/extreme.features.safetensors"
        try writeFeatures(videos, bundle: bundle, to: features)
        let out = TestData.directory + "/extreme.codes.safetensors"
        let r = try runTool("vidx-encode", ["--bundle", bundleDirectory, "--features", features, "--out", out, "--embeddings"])
        #expect(r.status == 3, "\(r.stderr)")
        let codes = try CodesFile(path: out)   // refuses non-finite embeddings of videos not failed
        #expect(codes.videos.map(\.status) == [.ok, .failed, .ok])
        #expect(codes.videos[1].error?.class == .badFeatures)
        #expect(codes.videos[1].error?.message.contains("output was not finite") == true, "\(codes.videos[1].error?.message ?? "")")
        #expect(r.stderr.contains("'extreme'") && r.stderr.contains("not finite"), "\(r.stderr)")
        let perVideo = codes.levels * codes.subspaces, n = codes.levels * bundle.config.hiddenSize
        #expect(codes.codes[perVideo..<(2 * perVideo)].allSatisfy { $0 == 0 })
        #expect(codes.embeddings![n..<(2 * n)].allSatisfy { $0 == 0 })
        // The other videos: what the library gives for the same batch, bytes for bytes.
        let inputs = try loadVideos(features, config: bundle.config).map { $0! }
        let library = HCQEncoder(bundle: bundle).encode(inputs)
        guard case .failure(let e) = library[1] else { Issue.record("the library encoded the extreme video"); return }
        #expect(e.kind == .badFeatures)
        for i in [0, 2] {
            let enc = try library[i].get()
            #expect(Array(codes.codes[(i * perVideo)..<((i + 1) * perVideo)]) == enc.codes)
            #expect(Array(codes.embeddings![(i * n)..<((i + 1) * n)]) == enc.embeddings)
            #expect(enc.embeddings.allSatisfy { $0.isFinite })
        }
    }

    @Test("features with an expert their `extractors` does not declare are refused, naming the file, the video and the expert")
    func undeclaredExpert() throws {
        let data = try TestData.random("small")
        let bundle = try ModelBundle(directory: data.bundle)
        let specs = bundle.config.experts
        let hidden = specs[1]   // a bundle expert, present in a video, absent from `extractors`
        var declared = Dictionary(uniqueKeysWithValues: specs.map { ($0.name, $0.extractor) })
        declared[hidden.name] = nil
        let videos: [(VideoRecord, [String: FeatureSeries])] = [
            (VideoRecord(id: "fine"), [specs[0].name: seededExpert(specs[0], rows: 2, seed: 1)]),
            (VideoRecord(id: "sneaky"), [specs[0].name: seededExpert(specs[0], rows: 2, seed: 2),
                                         hidden.name: seededExpert(hidden, rows: 2, seed: 3)]),
        ]
        let features = TestData.directory + "/undeclared.features.safetensors"
        try writeFeatures(videos, bundle: bundle, to: features, extractors: declared)
        let out = TestData.directory + "/undeclared.codes.safetensors"
        try? FileManager.default.removeItem(atPath: out)
        let r = try runTool("vidx-encode", ["--bundle", data.bundle, "--features", features, "--out", out])
        #expect(r.status == 1, "\(r.stdout) \(r.stderr)")
        #expect(r.stderr.contains(features) && r.stderr.contains("'sneaky'") && r.stderr.contains("'\(hidden.name)'")
                && r.stderr.contains("extractors"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    @Test("Schemas/codes.md names every error class the encoder writes")
    func classesDocumented() throws {
        let spec = try String(contentsOfFile: Python.root + "/Schemas/codes.md", encoding: .utf8)
        for kind in FailureClass.encoder {
            #expect(spec.contains("`\(kind.rawValue)`"), "Schemas/codes.md does not name `\(kind.rawValue)`")
        }
    }
}
