import Foundation
import Testing
import VidxCore
import VidxHCQ
import VidxQuantization
import VidxTestSupport
@testable import VidxCodebooks

@Suite("vidx-quality: recall of ADC against exact search, quantization error, coarse-to-fine agreement", .serialized)
struct QualityTests {
    /// A codes file with 16 usable videos (K = 16), its bundle, and a bundle whose codewords
    /// are exactly those videos' sub-vectors: lossless for them.
    static func lossless() throws -> (fixture: IndexFixture, lossless: String) {
        let f = try IndexFixture("quality", videos: 18, files: 1, embeddings: true)
        let source = try ModelBundle(directory: f.bundle)
        let layout = source.quantizer.layout
        let db = try Fidelity.database(codes: f.codes, bundle: source)
        #expect(db.count == layout.codewords)
        let n = db.count, D = layout.dimension, d = layout.subDimension, M = layout.subspaces
        var books = [Float](repeating: 0, count: layout.codebookCount)
        for l in 0..<layout.levels {
            for m in 0..<M {
                for k in 0..<layout.codewords {
                    for j in 0..<d { books[((l * M + m) * layout.codewords + k) * d + j] = db.vectors[(l * n + k) * D + m * d + j] }
                }
            }
        }
        let record = CodebookProvenance(method: "spherical-kmeans", sourceBundle: source.fingerprint, embeddingsFrom: [source.fingerprint],
                                        sample: .init(videos: n, idsSHA256: String(repeating: "0", count: 64), input: "embeddings", files: 1),
                                        settings: .init(iterations: 1, seed: 0, maxPointsPerCentroid: 256, seedingPoints: 1),
                                        levels: Array(repeating: .init(objective: 1, splits: 0), count: layout.levels), tool: "test")
        let out = f.dir + "/lossless"
        if !FileManager.default.fileExists(atPath: out) {
            try FittedBundle.write(source: source, quantizer: try ProductQuantizer(layout: layout, codebooks: books), provenance: record, to: out)
        }
        return (f, out)
    }

    func report(_ r: (status: Int32, stdout: String, stderr: String)) throws -> Fidelity.Report {
        #expect(r.status == 0, "\(r.stderr)")
        return try JSONDecoder().decode(Fidelity.Report.self, from: Data(r.stdout.utf8))
    }

    @Test("codebooks holding the database's own sub-vectors are lossless: error 0, cosine 1, every recall 1; the JSON meets its schema")
    func losslessIsPerfect() throws {
        let (f, lossless) = try Self.lossless()
        let queries = f.dir + "/copies.npy"
        // Text queries that are the database's own embeddings: their exact and ADC top-1 is themselves.
        try Python.run(["-c", """
            import sys, json, numpy as np, safetensors_np
            t, m = safetensors_np.load(sys.argv[1])
            ok = [i for i, v in enumerate(json.loads(m["videos"])) if v["status"] != "failed"]
            np.save(sys.argv[2], np.ascontiguousarray(t["embeddings"][ok[:5]]).astype(np.float32))
            """, f.codes[0], queries])
        let out = f.dir + "/quality.json"
        let r = try report(runTool("vidx-quality", ["--bundle", lossless, "--embeddings", f.codes[0], "--examples", "16",
                                                   "--queries", queries, "--json", "--out", out]))
        try Python.call("validate_json", out, "quality-report.schema.json")
        #expect(r.database == 16 && r.levels.count == 4 && r.querySets.map(\.kind) == ["example", "text"])
        #expect(r.levels.allSatisfy { $0.mse < 1e-8 && abs($0.meanCosine - 1) < 1e-5 }, "\(r.levels)")
        for set in r.querySets { #expect(set.recall.allSatisfy { $0.allSatisfy { $0 == 1 } }, "\(set.kind): \(set.recall)") }
        // The text queries' top-10 is 10 of the 16: every depth here is a full scan or keeps them.
        #expect(r.querySets[1].queries == 5)
        let table = try runTool("vidx-quality", ["--bundle", lossless, "--embeddings", f.codes[0], "--examples", "16"])
        #expect(table.status == 0 && table.stdout.contains("R@10") && table.stdout.contains("coarse-to-fine"), "\(table.stdout)")
    }

    @Test("with random codebooks the figures are honest: error above 0, recall below 1 at k = 1, never decreasing in k, 1 once k covers the database")
    func randomCodebooks() throws {
        let (f, _) = try Self.lossless()
        let r = try report(runTool("vidx-quality", ["--bundle", f.bundle, "--embeddings", f.codes[0], "--examples", "16", "--json"]))
        #expect(r.levels.allSatisfy { $0.mse > 0.01 && $0.meanCosine < 0.99 })
        let set = r.querySets[0]
        #expect(set.recall.contains { $0[0] < 1 }, "\(set.recall)")
        for row in set.recall {
            #expect(zip(row, row.dropFirst()).allSatisfy { $0 <= $1 })
            for (t, k) in r.recallDepths.enumerated() where k >= 15 { #expect(row[t] == 1) }
        }
        #expect(set.coarseToFine.last == 1, "a depth past the database is a full scan")
        // The same inputs give the same report, whatever the threads.
        let again = try report(runTool("vidx-quality", ["--bundle", f.bundle, "--embeddings", f.codes[0], "--examples", "16",
                                                      "--json", "--threads", "1"]))
        #expect(again == r)
    }

    @Test("Pipelines/quality/fidelity.py measures with the same definitions: its NumPy figures for a bundle's codebooks are vidx-quality's")
    func scriptAgrees() throws {
        let (f, _) = try Self.lossless()
        let r = try report(runTool("vidx-quality", ["--bundle", f.bundle, "--embeddings", f.codes[0], "--examples", "12", "--json"]))
        let out = f.dir + "/numpy.json"
        try Python.run(["-c", """
            import sys, json
            sys.path[:0] = ["Pipelines/quality", "Pipelines/bench"]
            import numpy as np, fidelity
            bundle, codes, out = sys.argv[1:4]
            cfg, books = fidelity.fitted_codebooks(bundle)
            ids, emb, _ = fidelity.read_codes([codes])
            dsub = books.shape[3]
            x = fidelity.normalise_subvectors(emb, dsub).transpose(1, 0, 2).copy()
            recon = np.stack([fidelity.encode_decode(x[l], books[l]) for l in range(x.shape[0])])
            json.dump(fidelity.measure("vidx (numpy)", "0" * 64, ids, x, recon, dsub, 12, 1234), open(out, "w"))
            """, f.bundle, f.codes[0], out])
        let numpy = try JSONDecoder().decode(Fidelity.Report.self, from: read(out))
        #expect(numpy.querySets.map(\.recall) == r.querySets.map(\.recall))
        #expect(numpy.querySets.map(\.coarseToFine) == r.querySets.map(\.coarseToFine))
        for (a, b) in zip(numpy.levels, r.levels) {
            #expect(abs(a.mse - b.mse) < 1e-4 && abs(a.meanCosine - b.meanCosine) < 1e-5, "\(a) vs \(b)")
        }
    }

    @Test("refused with a clear message: queries of the wrong shape, embeddings of another bundle")
    func refusals() throws {
        let (f, _) = try Self.lossless()
        let bad = f.dir + "/bad.npy"
        try Python.call("random_queries", bad, "3", "2", "64", "1")
        let shape = try runTool("vidx-quality", ["--bundle", f.bundle, "--embeddings", f.codes[0], "--queries", bad])
        #expect(shape.status == 1 && shape.stderr.contains("expected (Q, 4, 64)"), "\(shape.stderr)")
        let other = try IndexFixture("quality-other", videos: 20, files: 1, seed: 3, embeddings: true)
        let wrong = try runTool("vidx-quality", ["--bundle", f.bundle, "--embeddings", other.codes[0]])
        #expect(wrong.status == 1 && wrong.stderr.contains("made by bundle"), "\(wrong.stderr)")
    }
}
