import Foundation
import Testing
import VidxCore
import VidxIndex
import VidxTestSupport

@Suite("vidx-shard, vidx-verify and vidx-search end to end", .serialized)
struct IndexCommandTests {
    @Test("build: every ok video indexed once, failed ones left out; verify passes; the manifest meets its schema")
    func build() throws {
        let inputs = try IndexFixture("build")
        let index = inputs.dir + "/index"
        let r = try runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle, "--shards", "3"] + inputs.codes)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(current(index) == "g000001")
        let gen = try IndexGeneration(indexDirectory: index, verifyChecksums: true)
        let failed = (0..<120).filter { $0 % 7 == 6 }.count
        #expect(gen.counts.live == 120 - failed)
        #expect(gen.shards.count == 3)
        #expect(gen.manifest.bundleFingerprint == inputs.fingerprint)
        #expect(gen.locate(externalID: "video-00006") == nil)  // failed at encoding
        #expect(gen.locate(externalID: "video-00005") != nil)
        let v = try runTool("vidx-verify", [index])
        #expect(v.status == 0, "\(v.stderr)")
        try Python.call("validate_json", index + "/g000001/MANIFEST.json", "index-manifest.schema.json")
    }

    @Test("a build in steps (parts, shards, publish) gives the one-process build's bytes; steps re-run; a missing step is named")
    func stagedBuild() throws {
        let inputs = try IndexFixture("staged", videos: 150, files: 5, embeddings: true)
        let direct = inputs.dir + "/direct", staged = inputs.dir + "/staged", stage = inputs.dir + "/stage"
        #expect(try runTool("vidx-shard", ["--index", direct, "--bundle", inputs.bundle, "--shards", "4", "--embeddings"] + inputs.codes).status == 0)
        let list = inputs.dir + "/codes.list"
        try (inputs.codes.joined(separator: "\n") + "\n").write(toFile: list, atomically: true, encoding: .utf8)
        for k in 0..<2 {
            let r = try runTool("vidx-shard", ["--stage", stage, "--part", "\(k)", "--parts", "2", "--bundle", inputs.bundle,
                                               "--shards", "4", "--embeddings", "--codes-list", list])
            #expect(r.status == 0, "\(r.stderr)")
        }
        // Publishing before every shard is built names the missing one and changes nothing.
        #expect(try runTool("vidx-shard", ["--stage", stage, "--build-shard", "0", "--bundle", inputs.bundle]).status == 0)
        let early = try runTool("vidx-shard", ["--stage", stage, "--index", staged, "--bundle", inputs.bundle])
        #expect(early.status == 1 && early.stderr.contains("shard 1 of 4 is not built"), "\(early.stderr)")
        #expect(!FileManager.default.fileExists(atPath: staged + "/CURRENT"))
        for s in 0..<4 {   // shard 0 again: a re-run of a finished step is a no-op
            #expect(try runTool("vidx-shard", ["--stage", stage, "--build-shard", "\(s)", "--bundle", inputs.bundle]).status == 0)
        }
        // A part re-run with other settings is refused.
        let other = try runTool("vidx-shard", ["--stage", stage, "--part", "1", "--parts", "2", "--bundle", inputs.bundle,
                                               "--shards", "5", "--codes-list", list])
        #expect(other.status == 1 && other.stderr.contains("fresh stage directory"), "\(other.stderr)")
        let r = try runTool("vidx-shard", ["--stage", stage, "--index", staged, "--bundle", inputs.bundle, "--verify"])
        #expect(r.status == 0, "\(r.stderr)")
        let files = try FileManager.default.contentsOfDirectory(atPath: direct + "/g000001").sorted()
        #expect(try FileManager.default.contentsOfDirectory(atPath: staged + "/g000001").sorted() == files)
        for f in files { #expect(read(direct + "/g000001/" + f) == read(staged + "/g000001/" + f), "\(f) differs") }
        for f in try FileManager.default.contentsOfDirectory(atPath: stage) where f.hasSuffix(".json") {
            try Python.call("validate_json", stage + "/" + f, "shard-stage.schema.json")
        }
    }

    @Test("the same inputs in another order give byte-identical generations")
    func deterministic() throws {
        let inputs = try IndexFixture("order")
        let a = inputs.dir + "/a", b = inputs.dir + "/b"
        #expect(try runTool("vidx-shard", ["--index", a, "--bundle", inputs.bundle, "--shards", "4"] + inputs.codes).status == 0)
        #expect(try runTool("vidx-shard", ["--index", b, "--bundle", inputs.bundle, "--shards", "4"] + inputs.codes.reversed()).status == 0)
        let files = try FileManager.default.contentsOfDirectory(atPath: a + "/g000001").sorted()
        #expect(files.count == 6)  // 4 shards, codebooks, manifest
        #expect(try FileManager.default.contentsOfDirectory(atPath: b + "/g000001").sorted() == files)
        for f in files { #expect(read(a + "/g000001/" + f) == read(b + "/g000001/" + f), "\(f) differs") }
    }

    @Test("append: deltas supersede changed videos, tombstones hide deleted ones, parents stay intact; compact folds them")
    func appendAndCompact() throws {
        let base = try IndexFixture("base", videos: 60, files: 2)
        let index = base.dir + "/index"
        #expect(try runTool("vidx-shard", ["--index", index, "--bundle", base.bundle, "--shards", "2"] + base.codes).status == 0)
        let g1 = try IndexGeneration(indexDirectory: index)
        // The nightly batch: videos 40..79 with new content (another seed), same bundle.
        let nightly = try IndexFixture("nightly", videos: 80, files: 1, seed: 2, in: base.dir)
        try FileManager.default.removeItem(atPath: nightly.bundle)
        try FileManager.default.copyItem(atPath: base.bundle, toPath: nightly.bundle)
        // Rewrite the nightly codes with the base bundle's fingerprint, keeping videos 40..79.
        try Python.call("keep_videos_from", nightly.codes[0], "40", base.fingerprint)
        let deletions = base.dir + "/deleted.txt"
        try "video-00001\nvideo-00002\nno-such-video\n".write(toFile: deletions, atomically: true, encoding: .utf8)
        let r = try runTool("vidx-shard", ["--index", index, "--bundle", base.bundle, "--append", "--delete", deletions] + nightly.codes)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("no-such-video"))
        #expect(current(index) == "g000002")
        let g2 = try IndexGeneration(indexDirectory: index)
        #expect(g2.manifest.parent == "g000001")
        #expect(g2.manifest.shards.contains { $0.kind == .delta && $0.sequence == 1 })
        // Base shards are kept as they were (hard links: same bytes, same inode).
        for record in g2.manifest.shards where record.kind == .base {
            let a = try FileManager.default.attributesOfItem(atPath: g1.directory + "/" + record.file)
            let b = try FileManager.default.attributesOfItem(atPath: g2.directory + "/" + record.file)
            #expect(a[.systemFileNumber] as? Int == b[.systemFileNumber] as? Int)
        }
        #expect(g2.locate(externalID: "video-00001") == nil && g2.locate(externalID: "video-00002") == nil)
        let live50 = try #require(g2.locate(externalID: "video-00050"))
        #expect(g2.manifest.shards[live50.shard].kind == .delta)
        let live10 = try #require(g2.locate(externalID: "video-00010"))
        #expect(g2.manifest.shards[live10.shard].kind == .base)
        let okNightly = (40..<80).filter { $0 % 7 != 6 }.count
        let okBaseOld = (0..<60).filter { $0 % 7 != 6 }.count
        let supersededCount = (40..<60).filter { $0 % 7 != 6 }.count
        #expect(g2.counts.superseded == supersededCount)
        #expect(g2.counts.deleted == 2)
        #expect(g2.counts.live == okBaseOld - supersededCount - 2 + okNightly)
        #expect(try runTool("vidx-verify", [index]).status == 0)
        // The previous generation is untouched and still verifies.
        #expect(try runTool("vidx-verify", [index, "--generation", "g000001"]).status == 0)

        // Re-running the same nightly batch changes nothing.
        let again = try runTool("vidx-shard", ["--index", index, "--bundle", base.bundle, "--append"] + nightly.codes)
        #expect(again.status == 0 && again.stdout.contains("nothing new"), "\(again.stdout) \(again.stderr)")
        #expect(current(index) == "g000002")

        // Compaction: same live set, same search results, no deltas.
        let query = base.dir + "/q.npy"
        try Python.call("random_queries", query, "3", "4", "64", "5")
        let before = try runTool("vidx-search", [index, "--query", query, "--k", "15"])
        #expect(before.status == 0, "\(before.stderr)")
        let c = try runTool("vidx-shard", ["--index", index, "--compact", "--shards", "3"])
        #expect(c.status == 0, "\(c.stderr)")
        let g3 = try IndexGeneration(indexDirectory: index)
        #expect(g3.name == "g000003" && g3.manifest.parent == "g000002")
        #expect(g3.manifest.shards.allSatisfy { $0.kind == .base } && g3.manifest.shards.count == 3)
        #expect(g3.counts.live == g2.counts.live && g3.counts.entries == g2.counts.live)
        let after = try runTool("vidx-search", [index, "--query", query, "--k", "15"])
        #expect(try hits(after.stdout).map(\.id) == hits(before.stdout).map(\.id))
        #expect(try runTool("vidx-verify", [index]).status == 0)
    }

    @Test("codes from another bundle are refused, naming both fingerprints; the live generation stays")
    func mixedBundles() throws {
        let a = try IndexFixture("mix-a", seed: 1)
        let b = try IndexFixture("mix-b", seed: 9, in: a.dir)
        let index = a.dir + "/index"
        #expect(try runTool("vidx-shard", ["--index", index, "--bundle", a.bundle] + a.codes).status == 0)
        let r = try runTool("vidx-shard", ["--index", index, "--bundle", a.bundle, "--append"] + b.codes)
        #expect(r.status == 1)
        #expect(r.stderr.contains(a.fingerprint) && r.stderr.contains(b.fingerprint), "\(r.stderr)")
        let r2 = try runTool("vidx-shard", ["--index", index, "--bundle", b.bundle, "--append"] + b.codes)
        #expect(r2.status == 1 && r2.stderr.contains(a.fingerprint) && r2.stderr.contains(b.fingerprint), "\(r2.stderr)")
        #expect(current(index) == "g000001")
        #expect(try runTool("vidx-verify", [index]).status == 0)
    }

    @Test("an interrupted run's leftovers are cleaned up and never live; an unreadable codes file refuses the run (exit 4) unless --allow-missing-inputs (exit 3)")
    func interruptedAndBadInputs() throws {
        let inputs = try IndexFixture("interrupt")
        let index = inputs.dir + "/index"
        #expect(try runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle] + inputs.codes).status == 0)
        // A run killed half-way leaves a temporary generation directory behind.
        let leftover = index + "/.tmp-g000002"
        try FileManager.default.createDirectory(atPath: leftover, withIntermediateDirectories: true)
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: leftover + "/base-0000.vidx"))
        #expect(current(index) == "g000001")
        #expect(try runTool("vidx-verify", [index]).status == 0)
        let garbage = inputs.dir + "/garbage.codes.safetensors"
        try Data("not a safetensors file".utf8).write(to: URL(fileURLWithPath: garbage))
        let refused = try runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle, "--shards", "2"] + inputs.codes + [garbage])
        #expect(refused.status == 4, "\(refused.stderr)")
        #expect(refused.stderr.contains("garbage.codes.safetensors") && refused.stderr.contains("--allow-missing-inputs"))
        #expect(!FileManager.default.fileExists(atPath: leftover))
        #expect(current(index) == "g000001")
        let r = try runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle, "--shards", "2", "--allow-missing-inputs"]
                            + inputs.codes + [garbage])
        #expect(r.status == 3, "\(r.stderr)")
        #expect(r.stderr.contains("garbage.codes.safetensors"))
        #expect(current(index) == "g000002")
        #expect(try runTool("vidx-verify", [index]).status == 0)
        // Usage errors.
        #expect(try runTool("vidx-shard", ["--index", index]).status == 2)
        #expect(try runTool("vidx-shard", ["--index", index, "--compact", "--append"]).status == 2)
        #expect(try runTool("vidx-search", [index]).status == 2)
        #expect(try runTool("vidx-verify", []).status == 2)
    }

    @Test("vidx-verify names each problem: a flipped byte, a missing shard, an unlisted file, wrong counts")
    func verifyFindsProblems() throws {
        let inputs = try IndexFixture("verify")
        let index = inputs.dir + "/index"
        #expect(try runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle, "--shards", "3"] + inputs.codes).status == 0)
        let gen = index + "/g000001"
        func copyIndex(_ name: String) throws -> String {
            let d = inputs.dir + "/" + name
            try FileManager.default.copyItem(atPath: index, toPath: d)
            return d
        }
        // A flipped byte inside a section.
        let flipped = try copyIndex("flipped")
        var bytes = [UInt8](read(flipped + "/g000001/base-0001.vidx"))
        bytes[bytes.count - 40] ^= 0x5A
        try Data(bytes).write(to: URL(fileURLWithPath: flipped + "/g000001/base-0001.vidx"))
        let r1 = try runTool("vidx-verify", [flipped])
        #expect(r1.status == 1 && r1.stderr.contains("base-0001.vidx"), "\(r1.stderr)")
        // A missing shard.
        let missing = try copyIndex("missing")
        try FileManager.default.removeItem(atPath: missing + "/g000001/base-0002.vidx")
        let r2 = try runTool("vidx-verify", [missing])
        #expect(r2.status == 1 && r2.stderr.contains("base-0002.vidx") && r2.stderr.contains("missing"), "\(r2.stderr)")
        // A file the manifest does not list.
        let extra = try copyIndex("extra")
        try Data().write(to: URL(fileURLWithPath: extra + "/g000001/base-0009.vidx"))
        let r3 = try runTool("vidx-verify", [extra])
        #expect(r3.status == 1 && r3.stderr.contains("not listed"), "\(r3.stderr)")
        // Counts that disagree with the shards.
        let counts = try copyIndex("counts")
        let text = String(decoding: read(counts + "/g000001/MANIFEST.json"), as: UTF8.self)
        let live = try IndexGeneration(indexDirectory: index).counts.live
        try text.replacingOccurrences(of: "\"live\" : \(live)", with: "\"live\" : \(live + 1)")
            .write(toFile: counts + "/g000001/MANIFEST.json", atomically: true, encoding: .utf8)
        let r4 = try runTool("vidx-verify", [counts])
        #expect(r4.status == 1 && r4.stderr.contains("counts"), "\(r4.stderr)")
        // No CURRENT.
        let r5 = try runTool("vidx-verify", [inputs.dir])
        #expect(r5.status == 1 && r5.stderr.contains("CURRENT"))
        _ = gen
    }
}
