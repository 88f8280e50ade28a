import Foundation
import Testing
import VidxTestSupport
import VidxCore
import VidxNumerics
@testable import VidxHCQ

@Suite("Parity with the authors' code and the NumPy reference", .serialized)
struct ParityTests {
    @Test("the authors' fixture: exported checkpoint + features reproduce expected.npz")
    func authorsFixture() throws {
        let fx = try TestData.fixture()
        let bundle = try ModelBundle(directory: fx.bundle)
        #expect(bundle.config.experts.map(\.name) == ["face", "ocr", "rgb", "s3d", "scene", "speech", "vggish"])
        #expect(bundle.config.sequenceLength == 1 + 7 * 7)
        let videos = try loadVideos(fx.features, config: bundle.config)
        let results = HCQEncoder(bundle: bundle, batchSize: 5).encode(videos.map { $0! })
        let expected = try SafeTensorsFile(path: fx.expected)
        let L = bundle.config.levels, h = bundle.config.hiddenSize, M = bundle.config.pq.subspaces
        let embeddings = try expected.floats("embeddings", shape: [videos.count, L, h])
        let codes = try expected.uint8s("codes", shape: [videos.count, L, M])
        var worst: Float = 0
        for (i, r) in results.enumerated() {
            let enc = try r.get()
            for j in 0..<(L * h) { worst = max(worst, abs(enc.embeddings[j] - embeddings[i * L * h + j])) }
            #expect(enc.codes == Array(codes[(i * L * M)..<((i + 1) * L * M)]), "video \(i) codes")
        }
        // 1e-6, not looser: a wrong GELU (tanh instead of erf) moves the fixture by only 3e-6.
        #expect(worst < 1e-6, "max abs difference \(worst)")
        print("fixture parity: max abs embedding difference \(worst)")
    }

    @Test("seeded random bundles: embeddings within 1e-4 of the reference, codes equal but for near ties",
          arguments: ["small", "msrvtt"])
    func randomBundles(_ name: String) throws {
        let data = try TestData.random(name)
        let bundle = try ModelBundle(directory: data.bundle)
        let videos = try loadVideos(data.features, config: bundle.config)
        let reference = try SafeTensorsFile(path: data.reference)
        let L = bundle.config.levels, h = bundle.config.hiddenSize, M = bundle.config.pq.subspaces
        let n = videos.count
        let refEmb = try reference.floats("embeddings", shape: [n, L, h])
        let refCodes = try reference.uint8s("codes", shape: [n, L, M])
        let marginBytes = try reference.bytes("margins")  // float64, possibly unaligned in the file
        #expect(marginBytes.count == n * L * M * 8)
        let margins = (0..<(n * L * M)).map {
            Double(bitPattern: UInt64(littleEndian: marginBytes.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self)))
        }
        let ok = try reference.uint8s("ok", shape: [n])
        let encoder = HCQEncoder(bundle: bundle, batchSize: 4)
        var worst: Float = 0, mismatches = 0, ties = 0, encoded = 0
        for (i, v) in videos.enumerated() {
            guard let v else {
                #expect(ok[i] == 0, "video \(i) failed extraction but the reference encoded it")
                continue
            }
            let result = encoder.encode([v])[0]
            guard case .success(let enc) = result else {
                #expect(ok[i] == 0, "video \(i): Swift refused it (\(result)) but the reference encoded it")
                continue
            }
            #expect(ok[i] == 1, "video \(i): Swift encoded it but the reference refused it")
            encoded += 1
            for j in 0..<(L * h) { worst = max(worst, abs(enc.embeddings[j] - refEmb[i * L * h + j])) }
            for j in 0..<(L * M) where enc.codes[j] != refCodes[i * L * M + j] {
                if margins[i * L * M + j] < 1e-6 { ties += 1 } else { mismatches += 1 }
            }
        }
        #expect(encoded >= 6)
        #expect(worst < 1e-4, "max abs difference \(worst)")
        #expect(mismatches == 0, "\(mismatches) codes differ where the best two codewords are more than 1e-6 apart")
        print("\(name) parity: \(encoded) videos, max abs embedding difference \(worst), \(ties) codes differ at near ties")
    }

    @Test("the same bytes whatever the thread count; the same values (1e-5) whatever the batch size")
    func determinism() throws {
        let data = try TestData.random("msrvtt")
        let bundle = try ModelBundle(directory: data.bundle)
        let videos = try loadVideos(data.features, config: bundle.config).compactMap { $0 }
        func run(batch: Int, threads: Int) -> [Result<VideoEncoding, EncodeError>] {
            BLAS.setThreads(threads)
            return HCQEncoder(bundle: bundle, batchSize: batch).encode(videos)
        }
        let base = run(batch: 1, threads: 1)
        for batch in [1, 5, 64] {
            let one = batch == 1 ? base : run(batch: batch, threads: 1)
            #expect(run(batch: batch, threads: 2) == one, "batch \(batch): 2 threads against 1")
            // Other batches: OpenBLAS's Zen kernels change last bits with a row's position.
            var worst: Float = 0
            for (a, b) in zip(one, base) {
                guard let a = try? a.get(), let b = try? b.get() else { continue }
                worst = max(worst, zip(a.embeddings, b.embeddings).map { abs($0 - $1) }.max() ?? 0)
            }
            #expect(worst <= 1e-5, "batch \(batch) against batch 1: max embedding difference \(worst)")
        }
        BLAS.setThreads(ProcessInfo.processInfo.activeProcessorCount)
    }
}

@Suite("Model bundles load strictly")
struct BundleTests {
    /// Copies the small random bundle, applying `change` to its config and tensors.
    func variant(_ name: String, config change: (inout [String: Any]) -> Void = { _ in },
                 tensors: (inout [String: (TensorDType, [Int], [UInt8])]) -> Void = { _ in }) throws -> String {
        let source = try TestData.random("small").bundle
        let dir = TestData.directory + "/bundle-\(name)"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: source + "/bundle.json"))) as! [String: Any]
        change(&json)
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: dir + "/bundle.json"))
        let file = try SafeTensorsFile(path: source + "/weights.safetensors")
        var all: [String: (TensorDType, [Int], [UInt8])] = [:]
        for n in file.names {
            let info = file.info(n)!
            all[n] = (info.dtype, info.shape, Array(try file.bytes(n)))
        }
        tensors(&all)
        var w = SafeTensorsWriter()
        for (n, t) in all { w.add(n, dtype: t.0, shape: t.1, bytes: t.2) }
        try w.write(to: dir + "/weights.safetensors")
        return dir
    }

    func expectError(_ dir: String, _ kind: BundleError.Kind, mentioning words: [String]) {
        do {
            _ = try ModelBundle(directory: dir)
            Issue.record("expected \(kind)")
        } catch let e as BundleError {
            #expect(e.kind == kind, "\(e)")
            for w in words { #expect(e.description.contains(w), "'\(w)' not in: \(e)") }
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test("a valid bundle loads, with a stable fingerprint")
    func valid() throws {
        let dir = try variant("same")
        let a = try ModelBundle(directory: dir), b = try ModelBundle(directory: try TestData.random("small").bundle)
        #expect(a.fingerprint.count == 64)
        #expect(a.fingerprint == (try ModelBundle(directory: dir)).fingerprint)
        // Same tensors and config, written anew: the same weights bytes, the same fingerprint
        // only if bundle.json is byte-identical, which a re-serialisation need not be.
        #expect(a.config == b.config)
    }

    @Test("a missing tensor is named with its expected shape")
    func missing() throws {
        let dir = try variant("missing", tensors: { $0["ghost_vlad.clusters"] = nil })
        expectError(dir, .missingTensor, mentioning: ["ghost_vlad.clusters", "weights.safetensors"])
    }

    @Test("an unused tensor is named")
    func unexpected() throws {
        let dir = try variant("extra", tensors: { $0["vid_bert.pooler.dense.bias"] = (.f32, [2], [UInt8](repeating: 0, count: 8)) })
        expectError(dir, .unexpectedTensor, mentioning: ["vid_bert.pooler.dense.bias"])
    }

    @Test("a wrong shape names the tensor and both shapes")
    func wrongShape() throws {
        let dir = try variant("shape", tensors: { t in
            let b = t["vid_bert.embeddings.layer_norm.bias"]!
            t["vid_bert.embeddings.layer_norm.bias"] = (.f32, [b.1[0] / 2, 2], b.2)
        })
        expectError(dir, .wrongShape, mentioning: ["vid_bert.embeddings.layer_norm.bias", "expected"])
    }

    @Test("a non-float32 tensor is refused")
    func wrongDType() throws {
        let dir = try variant("dtype", tensors: { t in
            let b = t["ghost_vlad.batch_norm.bias"]!
            t["ghost_vlad.batch_norm.bias"] = (.i32, b.1, b.2)
        })
        expectError(dir, .wrongDType, mentioning: ["ghost_vlad.batch_norm.bias", "I32"])
    }

    @Test("a bad bundle.json is refused with the reason")
    func badConfig() throws {
        expectError(try variant("unsorted", config: { c in
            var e = c["experts"] as! [[String: Any]]
            e.reverse()
            c["experts"] = e
        }), .badConfig, mentioning: ["alphabetical"])
        expectError(try variant("heads", config: { $0["heads"] = 7 }), .badConfig, mentioning: ["multiple of heads"])
        expectError(try variant("nokey", config: { $0["clusters"] = nil }), .badConfig, mentioning: ["clusters"])
        expectError(try variant("version", config: { $0["format_version"] = 2 }), .badConfig, mentioning: ["format_version"])
        expectError(TestData.directory + "/no-such-bundle", .notFound, mentioning: ["bundle.json"])
    }

    @Test("bundles written by the Python tools validate against the schema")
    func schema() throws {
        let bundle = try TestData.random("msrvtt").bundle
        try Python.call("validate_json", bundle + "/bundle.json", "model-bundle.schema.json")
    }
}
