import Foundation
import Testing
import VidxCore
import VidxIndex
import VidxTestSupport

@Suite("vidx-search and vidx-verify trust nothing they map", .serialized)
struct SearchTrustTests {
    /// A built index of 60 videos in 2 shards and a query file of `queries` random queries.
    func fixture(_ label: String, queries: Int = 2) throws -> (inputs: IndexFixture, index: String, query: String) {
        let inputs = try IndexFixture(label, videos: 60, files: 2)
        let index = inputs.dir + "/index"
        #expect(try runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle, "--shards", "2"] + inputs.codes).status == 0)
        let query = inputs.dir + "/q.npy"
        try Python.call("random_queries", query, String(queries), "4", "64", "5")
        return (inputs, index, query)
    }

    func copy(_ index: String, _ name: String) throws -> String {
        let d = (index as NSString).deletingLastPathComponent + "/" + name
        try FileManager.default.copyItem(atPath: index, toPath: d)
        return d
    }

    @Test("codebooks that no longer match the manifest's SHA-256 are refused when the generation is opened")
    func codebooks() throws {
        let (_, index, query) = try fixture("trust-codebooks")
        let damaged = try copy(index, "damaged")
        let gen = try IndexGeneration(indexDirectory: damaged)
        let path = gen.directory + "/" + gen.manifest.codebooks.file
        var bytes = [UInt8](read(path))
        bytes[bytes.count - 3] ^= 0x01  // a low mantissa bit of the last codeword: every format check still passes
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        for args in [[damaged, "--query", query], [damaged, "--query", query, "--skip-checksums"]] {
            let r = try runTool("vidx-search", args)
            #expect(r.status == 1 && r.stderr.contains("SHA-256") && r.stdout.isEmpty, "\(r.stderr)")
        }
        #expect(try runTool("vidx-verify", [damaged]).status == 1)
    }

    @Test("a flipped byte in an external id or in codes is an error, never an answer")
    func flippedBytes() throws {
        let (_, index, query) = try fixture("trust-flips")
        let good = try runTool("vidx-search", [index, "--query", query, "--k", "100"])
        #expect(good.status == 0, "\(good.stderr)")
        // An external id: caught by the section checksum, and without it by the per-hit check.
        let ids = try copy(index, "ids")
        try Python.run(["Tests/Reference/flip_shard_byte.py", ids + "/g000001/base-0001.vidx", "external_ids", "-1"])
        let r1 = try runTool("vidx-search", [ids, "--query", query, "--k", "100"])
        #expect(r1.status == 1 && r1.stderr.contains("base-0001.vidx") && r1.stderr.contains("external_ids"), "\(r1.stderr)")
        let r2 = try runTool("vidx-search", [ids, "--query", query, "--k", "100", "--skip-checksums"])
        #expect(r2.status == 1 && r2.stderr.contains("is not the hash of the stored external id"), "\(r2.stderr)")
        #expect(!r2.stdout.contains("\"query\":0,"), "hits of the damaged batch were printed")
        // A code: caught by the section checksum when the generation is opened.
        let codes = try copy(index, "codes")
        try Python.run(["Tests/Reference/flip_shard_byte.py", codes + "/g000001/base-0000.vidx", "fine_codes", "5"])
        let r3 = try runTool("vidx-search", [codes, "--query", query])
        #expect(r3.status == 1 && r3.stderr.contains("fine_codes"), "\(r3.stderr)")
        #expect(try runTool("vidx-verify", [codes]).status == 1)
    }

    @Test("--generation takes a generation name only, never a path to another index")
    func generationNames() throws {
        let (inputs, index, query) = try fixture("trust-names")
        let other = try IndexFixture("other", videos: 20, files: 1, seed: 4, in: inputs.dir)
        let otherIndex = inputs.dir + "/other-index"
        #expect(try runTool("vidx-shard", ["--index", otherIndex, "--bundle", other.bundle] + other.codes).status == 0)
        for name in ["../other-index/g000001", "g000001/", "g00001", "/tmp", "g0000001"] {
            let r = try runTool("vidx-search", [index, "--query", query, "--generation", name])
            #expect(r.status == 1 && r.stderr.contains("is not a generation name"), "\(name): \(r.stderr)")
            let v = try runTool("vidx-verify", [index, "--generation", name])
            #expect(v.status == 1 && v.stderr.contains("is not a generation name"), "\(name): \(v.stderr)")
        }
        #expect(try runTool("vidx-search", [index, "--query", query, "--generation", "g000001"]).status == 0)
    }

    @Test("a manifest that breaks its schema is refused by every reader (a parent of g00000D among them)")
    func manifestSchema() throws {
        let (_, index, query) = try fixture("trust-manifest")
        let bad = try copy(index, "bad-parent")
        let path = bad + "/g000001/MANIFEST.json"
        let text = String(decoding: read(path), as: UTF8.self)
        try text.replacingOccurrences(of: "\"parent\" : null", with: "\"parent\" : \"g00000D\"")
            .write(toFile: path, atomically: true, encoding: .utf8)
        let v = try runTool("vidx-verify", [bad])
        #expect(v.status == 1 && v.stderr.contains("parent 'g00000D'"), "\(v.stderr)")
        let s = try runTool("vidx-search", [bad, "--query", query])
        #expect(s.status == 1 && s.stderr.contains("parent 'g00000D'"), "\(s.stderr)")
    }

    @Test("vidx-search scans queries in bounded batches: 2,048 queries at HCQ's shape fit in a few hundred MB")
    func boundedQueries() throws {
        let inputs = try IndexFixture("trust-memory", videos: 60, files: 1, fullShape: true)
        let index = inputs.dir + "/index"
        #expect(try runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle] + inputs.codes).status == 0)
        let query = inputs.dir + "/q.npy"
        try Python.call("random_queries", query, "2048", "8", "512", "5")
        // Peak RSS from GNU time (installed by make setup), which reads it from wait4.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/time")
        p.arguments = ["-f", "peak-kb %M", try toolPath("vidx-search"), index, "--query", query, "--k", "5"]
        p.standardInput = FileHandle.nullDevice
        let (stdout, stderr) = try runCollecting(p)
        let line = String(decoding: stderr, as: UTF8.self).split(separator: "\n").last { $0.hasPrefix("peak-kb ") } ?? ""
        let peakMiB = (Int(line.dropFirst(8)) ?? Int.max) / 1024
        let f = [Int(p.terminationStatus), String(decoding: stdout, as: UTF8.self).split(separator: "\n").count, peakMiB]
        let out = String(decoding: stderr, as: UTF8.self)
        #expect(f[0] == 0 && f[1] == 2048 * 5, "\(out)")
        // The queries themselves are 32 MB; unbatched, the tables alone took 256 KB a query (512 MB).
        #expect(f[2] < 300, "peak RSS \(f[2]) MiB for 2048 queries")
    }
}

