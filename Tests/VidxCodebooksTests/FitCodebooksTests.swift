import Foundation
import Testing
import VidxCore
import VidxHCQ
import VidxQuantization
import VidxTestSupport
@testable import VidxCodebooks

/// The files of a bundle directory, by name.
func bundleFiles(_ dir: String) -> [String: Data] {
    [ModelBundle.configName: read(dir + "/" + ModelBundle.configName), ModelBundle.weightsName: read(dir + "/" + ModelBundle.weightsName)]
}

@Suite("vidx-fit-codebooks and vidx-encode --requantize: codebooks fitted on a corpus, codes without the transformer", .serialized)
struct FitCodebooksTests {
    @Test("a fit at HCQ's shapes writes a new bundle: fitted unit-norm codebooks, every other tensor kept, provenance meeting the schema; the same bytes for another thread count or input order")
    func fitsAndRecords() throws {
        let f = try IndexFixture("fit-full", videos: 400, files: 4, embeddings: true, fullShape: true)
        let out = f.dir + "/fitted"
        let args = ["--bundle", f.bundle, "--embeddings"] + f.codes + ["--iterations", "4", "--seed", "9"]
        let r = try runTool("vidx-fit-codebooks", args + ["--out", out, "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let source = try ModelBundle(directory: f.bundle), fitted = try ModelBundle(directory: out)
        #expect(fitted.fingerprint != source.fingerprint)
        try Python.call("validate_json", out + "/bundle.json", "model-bundle.schema.json")
        let usable = 400 - (0..<400).filter { $0 % 7 == 6 }.count
        let record = try #require(fitted.config.codebooks)
        #expect(record.sourceBundle == source.fingerprint && record.embeddingsFrom == [source.fingerprint])
        #expect(record.sample.videos == usable && record.sample.input == "embeddings" && record.sample.files == 4)
        #expect(record.settings.iterations == 4 && record.settings.seed == 9 && record.levels.count == 8)
        #expect(record.levels.allSatisfy { $0.objective > 0 && $0.objective <= 1 })
        #expect(fitted.config.name == "fitted")
        // Only the codebooks changed.
        let a = try SafeTensorsFile(path: f.bundle + "/weights.safetensors"), b = try SafeTensorsFile(path: out + "/weights.safetensors")
        #expect(a.names == b.names)
        for name in a.names where !source.codebookTensorNames.contains(name) {
            #expect(Array(try a.bytes(name)) == Array(try b.bytes(name)), "tensor \(name) changed")
        }
        #expect(fitted.quantizer.codebooks != source.quantizer.codebooks)
        // The summary's objectives are the bundle's.
        let summary = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        let objectives = summary?["objectives"] as? [[Double]]
        let last = objectives?.map { $0.last! } ?? []
        #expect(last.count == 8 && zip(last, record.levels.map(\.objective)).allSatisfy { abs($0 - $1) < 1e-9 }, "\(last)")

        let one = try runTool("vidx-fit-codebooks", ["--bundle", f.bundle, "--embeddings"] + f.codes.reversed()
                              + ["--iterations", "4", "--seed", "9", "--threads", "1", "--name", "fitted", "--out", f.dir + "/fitted-1"])
        #expect(one.status == 0, "\(one.stderr)")
        #expect(bundleFiles(out) == bundleFiles(f.dir + "/fitted-1"), "another thread count or input order changed the bytes")
        let seeded = try runTool("vidx-fit-codebooks", args + ["--seed", "10", "--name", "fitted", "--out", f.dir + "/fitted-10"])
        #expect(seeded.status == 0 && bundleFiles(out) != bundleFiles(f.dir + "/fitted-10"))
    }

    @Test("refused, naming the input and the numbers: a sample smaller than K, embeddings of another bundle, codes without embeddings, an existing OUT")
    func refusals() throws {
        let f = try IndexFixture("fit-refuse", videos: 120, files: 3, embeddings: true)
        let tiny = try runTool("vidx-fit-codebooks", ["--bundle", f.bundle, "--embeddings"] + f.codes + ["--sample", "10", "--out", f.dir + "/o1"])
        #expect(tiny.status == 1 && tiny.stderr.contains("10 videos") && tiny.stderr.contains("smaller than K = 16"), "\(tiny.stderr)")
        let other = try IndexFixture("fit-other", videos: 60, files: 1, seed: 2, embeddings: true)
        let wrong = try runTool("vidx-fit-codebooks", ["--bundle", f.bundle, "--embeddings", other.codes[0], "--out", f.dir + "/o2"])
        #expect(wrong.status == 1 && wrong.stderr.contains(other.codes[0]) && wrong.stderr.contains("made by bundle"), "\(wrong.stderr)")
        let plain = try IndexFixture("fit-plain", videos: 60, files: 1)
        let none = try runTool("vidx-fit-codebooks", ["--bundle", plain.bundle, "--embeddings", plain.codes[0], "--out", f.dir + "/o3"])
        #expect(none.status == 1 && none.stderr.contains("holds no embeddings"), "\(none.stderr)")
        try FileManager.default.createDirectory(atPath: f.dir + "/o4", withIntermediateDirectories: true)
        let exists = try runTool("vidx-fit-codebooks", ["--bundle", f.bundle, "--embeddings"] + f.codes + ["--out", f.dir + "/o4"])
        #expect(exists.status == 1 && exists.stderr.contains("exists"), "\(exists.stderr)")
        let usage = try runTool("vidx-fit-codebooks", ["--bundle", f.bundle, "--out", f.dir + "/o5"])
        #expect(usage.status == 2)
        #expect(!FileManager.default.fileExists(atPath: f.dir + "/o1") && !FileManager.default.fileExists(atPath: f.dir + "/o2"))
    }

    @Test("--requantize gives the fitted bundle's codes of the stored embeddings, keeps the records, refuses another bundle's file; a refit accepts the original embeddings")
    func requantize() throws {
        let f = try IndexFixture("fit-requant", videos: 120, files: 3, embeddings: true)
        let fitted = f.dir + "/fitted"
        let fit = try runTool("vidx-fit-codebooks", ["--bundle", f.bundle, "--embeddings"] + f.codes + ["--iterations", "3", "--out", fitted])
        #expect(fit.status == 0, "\(fit.stderr)")
        let out = f.dir + "/requantized.codes.safetensors"
        let r = try runTool("vidx-encode", ["--requantize", f.codes[0], "--bundle", fitted, "--out", out])
        #expect(r.status == 0, "\(r.stderr)")
        let bundle = try ModelBundle(directory: fitted)
        let before = try CodesFile(path: f.codes[0]), after = try CodesFile(path: out)
        #expect(after.bundleFingerprint == bundle.fingerprint && after.videos == before.videos && after.embeddings == before.embeddings)
        let width = bundle.quantizer.layout.vectorCount, bytes = bundle.quantizer.layout.codeBytes
        for (i, v) in before.videos.enumerated() {
            let codes = Array(after.codes[(i * bytes)..<((i + 1) * bytes)])
            if v.status == .failed {
                #expect(codes == Array(before.codes[(i * bytes)..<((i + 1) * bytes)]), "a failed video keeps its codes")
            } else {
                #expect(codes == bundle.quantizer.encode(Array(before.embeddings![(i * width)..<((i + 1) * width)])))
            }
        }
        // Codes of the fitted bundle re-quantize with the source again (same embeddings? no:
        // the source does not list the fitted bundle), so that is refused.
        let back = try runTool("vidx-encode", ["--requantize", out, "--bundle", f.bundle, "--out", f.dir + "/back.codes.safetensors"])
        #expect(back.status == 1 && back.stderr.contains("made by bundle"), "\(back.stderr)")
        // A refit from the fitted bundle takes the source's embeddings (its embeddings_from).
        let refit = try runTool("vidx-fit-codebooks", ["--bundle", fitted, "--embeddings"] + f.codes + ["--iterations", "2", "--out", f.dir + "/refit"])
        #expect(refit.status == 0, "\(refit.stderr)")
        let chain = try ModelBundle(directory: f.dir + "/refit").config.codebooks?.embeddingsFrom
        #expect(chain == [bundle.fingerprint, try ModelBundle(directory: f.bundle).fingerprint])
        let plain = try IndexFixture("fit-requant-plain", videos: 20, files: 1)
        let none = try runTool("vidx-encode", ["--requantize", plain.codes[0], "--bundle", plain.bundle, "--out", f.dir + "/x"])
        #expect(none.status == 1 && none.stderr.contains("holds no embeddings"), "\(none.stderr)")
    }

    @Test("re-quantizing a file encoded with --embeddings gives the bytes that encoding the features with the new bundle gives")
    func requantizeEqualsEncode() throws {
        let dir = makeTestDirectory("requantize-encode")
        try Python.run(["Tests/Reference/make_test_data.py", dir, "--seed", "5", "--only", "small"])
        let source = try ModelBundle(directory: dir + "/small/bundle")
        let layout = source.quantizer.layout
        // Other codebooks: unit-norm random codewords, written as a fitted bundle would be.
        var rng = SplitMix64(seed: 77)
        var books = (0..<layout.codebookCount).map { _ in Float(rng.nextUnit() * 2 - 1) }
        let d = layout.subDimension
        for w in stride(from: 0, to: books.count, by: d) {
            let n = books[w..<(w + d)].reduce(0) { $0 + $1 * $1 }.squareRoot()
            for j in 0..<d { books[w + j] /= n }
        }
        let record = CodebookProvenance(method: "spherical-kmeans", sourceBundle: source.fingerprint, embeddingsFrom: [source.fingerprint],
                                        sample: .init(videos: 0, idsSHA256: String(repeating: "0", count: 64), input: "embeddings", files: 0),
                                        settings: .init(iterations: 1, seed: 0, maxPointsPerCentroid: 256, seedingPoints: 1),
                                        levels: Array(repeating: .init(objective: 0, splits: 0), count: layout.levels), tool: "test")
        let other = try FittedBundle.write(source: source, quantizer: try ProductQuantizer(layout: layout, codebooks: books),
                                           provenance: record, to: dir + "/other")
        let features = dir + "/small/features.safetensors"
        let first = try runTool("vidx-encode", ["--bundle", source.directory, "--features", features, "--embeddings", "--out", dir + "/a.codes"])
        let direct = try runTool("vidx-encode", ["--bundle", other.directory, "--features", features, "--embeddings", "--out", dir + "/b.codes"])
        let again = try runTool("vidx-encode", ["--bundle", other.directory, "--requantize", dir + "/a.codes", "--out", dir + "/c.codes"])
        #expect(first.status != 1 && direct.status != 1 && again.status == 0, "\(first.stderr)\(direct.stderr)\(again.stderr)")
        #expect(read(dir + "/b.codes").count > 0 && read(dir + "/b.codes") == read(dir + "/c.codes"))
        #expect(read(dir + "/a.codes") != read(dir + "/c.codes"))
        // --features reads and checks the features files itself; 12 test videos are fewer than K = 16.
        let few = try runTool("vidx-fit-codebooks", ["--bundle", source.directory, "--features", features, "--out", dir + "/f"])
        #expect(few.status == 1 && few.stderr.contains("smaller than K = 16") && few.stderr.contains("usable"), "\(few.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/f"))
    }
}
