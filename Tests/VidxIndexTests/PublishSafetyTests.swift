import Foundation
import Testing
import VidxCore
import VidxIndex
import VidxTestSupport

@Suite("vidx-shard refuses to publish what would harm the live index", .serialized)
struct PublishSafetyTests {
    @Test("a build in which every video failed is refused (exit 4, the classes named); the live generation stays")
    func allFailed() throws {
        let inputs = try IndexFixture("all-failed", videos: 40, files: 2)
        let index = inputs.dir + "/index"
        #expect(try runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle] + inputs.codes).status == 0)
        let failed = try inputs.codes.enumerated().map { try editCodes($1, inputs.dir + "/failed-\($0).safetensors", "all-failed", "not_found") }
        let r = try runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle] + failed)
        #expect(r.status == 4, "\(r.stdout) \(r.stderr)")
        #expect(r.stderr.contains("refused") && r.stderr.contains("not_found 40") && r.stderr.contains("CURRENT unchanged"), "\(r.stderr)")
        #expect(current(index) == "g000001")
        #expect(listing(index) == [".lock", "CURRENT", "g000001"])
        #expect(try runTool("vidx-verify", [index]).status == 0)
        // On a new index: nothing at all is published.
        let fresh = inputs.dir + "/fresh"
        let f = try runTool("vidx-shard", ["--index", fresh, "--bundle", inputs.bundle] + failed)
        #expect(f.status == 4, "\(f.stderr)")
        #expect(!listing(fresh).contains("CURRENT") && !listing(fresh).contains("g000001"))
    }

    @Test("a build whose codes files are all unreadable is refused, with or without --allow-missing-inputs")
    func onlyUnreadableInputs() throws {
        let inputs = try IndexFixture("unreadable", videos: 30, files: 1)
        let index = inputs.dir + "/index"
        #expect(try runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle] + inputs.codes).status == 0)
        let garbage = inputs.dir + "/garbage.codes.safetensors"
        try Data("not a safetensors file".utf8).write(to: URL(fileURLWithPath: garbage))
        let missing = inputs.dir + "/no-such.codes.safetensors"
        let r = try runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle, garbage, missing])
        #expect(r.status == 4 && r.stderr.contains("2 of the 2 codes files could not be read"), "\(r.stderr)")
        let r2 = try runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle, "--allow-missing-inputs", garbage, missing])
        #expect(r2.status == 4 && r2.stderr.contains("never published"), "\(r2.stderr)")
        #expect(current(index) == "g000001")
        #expect(listing(index) == [".lock", "CURRENT", "g000001"])
    }

    @Test("a rebuild or an append that drops more than --max-shrink of the live videos is refused; --allow-shrink publishes")
    func shrink() throws {
        let inputs = try IndexFixture("shrink", videos: 120, files: 3)
        let index = inputs.dir + "/index"
        #expect(try runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle] + inputs.codes).status == 0)
        let live = try IndexGeneration(indexDirectory: index).counts.live
        // A rebuild from one of the three codes files drops two thirds of the index.
        let r = try runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle, inputs.codes[0]])
        #expect(r.status == 4, "\(r.stderr)")
        let kept = try CodesFile(path: inputs.codes[0]).videos.filter { $0.status != .failed }.count
        #expect(r.stderr.contains("would drop \(live - kept) of the \(live) videos live in g000001"), "\(r.stderr)")
        #expect(r.stderr.contains("--allow-shrink"))
        #expect(current(index) == "g000001" && listing(index) == [".lock", "CURRENT", "g000001"])
        // A small loss is within the default limit: one more video failed.
        let two = try editCodes(inputs.codes[1], inputs.dir + "/one-failed.safetensors", "set-status", "0", "failed")
        let small = try runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle, inputs.codes[0], two, inputs.codes[2]])
        #expect(small.status == 0, "\(small.stderr)")
        #expect(current(index) == "g000002")
        #expect(try IndexGeneration(indexDirectory: index).counts.live == live - 1)
        // A higher limit, or --allow-shrink, publishes the large loss.
        let limit = try runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle, "--max-shrink", "0.5", inputs.codes[0]])
        #expect(limit.status == 4, "\(limit.stderr)")
        let allowed = try runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle, "--allow-shrink", inputs.codes[0]])
        #expect(allowed.status == 0, "\(allowed.stderr)")
        #expect(current(index) == "g000003")
        #expect(try IndexGeneration(indexDirectory: index).counts.live == kept)
        // An append whose deletions remove more than 10 % of the live videos.
        let gen = try IndexGeneration(indexDirectory: index)
        let ids = gen.liveEntries().prefix(kept / 4).map { gen.shards[$0.shard].externalID(at: $0.row) }
        let list = inputs.dir + "/delete.txt"
        try (ids.joined(separator: "\r\n") + "\r\n").write(toFile: list, atomically: true, encoding: .utf8)
        let d = try runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle, "--append", "--delete", list])
        #expect(d.status == 4 && d.stderr.contains("this append would drop \(ids.count) of the \(kept)"), "\(d.stderr)")
        let d2 = try runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle, "--append", "--delete", list, "--allow-shrink"])
        #expect(d2.status == 0, "\(d2.stderr)")
        #expect(try IndexGeneration(indexDirectory: index).counts.live == kept - ids.count)  // CRLF list: every id found
        #expect(try runTool("vidx-verify", [index]).status == 0)
        // Deleting every live video would leave an empty index: refused even with --allow-shrink.
        let all = try IndexGeneration(indexDirectory: index)
        let rest = all.liveEntries().map { all.shards[$0.shard].externalID(at: $0.row) }
        try rest.joined(separator: "\n").write(toFile: list, atomically: true, encoding: .utf8)
        let empty = try runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle, "--append", "--delete", list, "--allow-shrink"])
        #expect(empty.status == 4 && empty.stderr.contains("no live video"), "\(empty.stderr)")
        #expect(current(index) == "g000004")
        #expect(try runTool("vidx-shard", ["--index", index, "--compact"]).status == 0)
    }

    @Test("embeddings narrower or wider than the bundle's hidden size, or not finite, are refused naming the file",
          arguments: ["0", "32", "65", "128", "nan"])
    func embeddingWidths(_ width: String) throws {
        let inputs = try IndexFixture("width-\(width)", videos: 24, files: 2, embeddings: true)
        let index = inputs.dir + "/index"
        let bad = inputs.dir + "/bad.safetensors"
        if width == "nan" { try editCodes(inputs.codes[1], bad, "embeddings-nan") }
        else { try editCodes(inputs.codes[1], bad, "embeddings-width", width) }
        let r = try runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle, "--embeddings", inputs.codes[0], bad])
        #expect(r.status == 4, "\(r.stderr)")
        let expected = width == "nan" ? "is not finite" : width == "0" ? "has shape" : "is \(width) wide, the bundle's hidden size is 64"
        #expect(r.stderr.contains("bad.safetensors") && r.stderr.contains(expected), "\(r.stderr)")
        // Left out on request: the rest is published with its embeddings, and verifies.
        let r2 = try runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle, "--embeddings",
                                            "--allow-missing-inputs", inputs.codes[0], bad])
        #expect(r2.status == 3, "\(r2.stderr)")
        let gen = try IndexGeneration(indexDirectory: index, verifyChecksums: true)
        #expect(gen.shards.allSatisfy { $0.coarseEmbeddingsF16 != nil })
        #expect(try runTool("vidx-verify", [index]).status == 0)
    }

    @Test("ids: an empty one or a status outside ok/partial/failed refuses the file; NFC and NFD spellings are two videos")
    func identity() throws {
        let inputs = try IndexFixture("identity", videos: 20, files: 1)
        let index = inputs.dir + "/index"
        let empty = try editCodes(inputs.codes[0], inputs.dir + "/empty-id.safetensors", "set-id", "0", "")
        let r = try runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle, empty])
        #expect(r.status == 4 && r.stderr.contains("the id is empty"), "\(r.stderr)")
        let status = try editCodes(inputs.codes[0], inputs.dir + "/status.safetensors", "set-status", "0", "done")
        let r2 = try runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle, status])
        #expect(r2.status == 4 && r2.stderr.contains("status 'done'"), "\(r2.stderr)")
        let long = try editCodes(inputs.codes[0], inputs.dir + "/long.safetensors", "set-id", "0", String(repeating: "é", count: 4097))
        let r3 = try runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle, long])
        #expect(r3.status == 4 && r3.stderr.contains("over the limit of 4096"), "\(r3.stderr)")
        // café in NFC (U+00E9) and in NFD (e + U+0301): two ids, two videos, deleted apart.
        let nfc = "caf\u{E9}", nfd = "cafe\u{301}"
        #expect(nfc == nfd)  // Swift's String equality: canonical equivalence, which the index does not use
        let one = try editCodes(inputs.codes[0], inputs.dir + "/one.safetensors", "set-id", "0", nfc)
        let both = try editCodes(one, inputs.dir + "/both.safetensors", "set-id", "1", nfd)
        let b = try runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle, both])
        #expect(b.status == 0, "\(b.stderr)")
        let gen = try IndexGeneration(indexDirectory: index)
        let a = try #require(gen.locate(externalID: nfc)), c = try #require(gen.locate(externalID: nfd))
        #expect(a.shard != c.shard || a.row != c.row)
        let list = inputs.dir + "/delete.txt"
        try (nfd + "\n").write(toFile: list, atomically: true, encoding: .utf8)
        let d = try runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle, "--append", "--delete", list])
        #expect(d.status == 0, "\(d.stderr)")
        let after = try IndexGeneration(indexDirectory: index)
        #expect(after.locate(externalID: nfc) != nil && after.locate(externalID: nfd) == nil)
    }
}

@Suite("Interrupted runs: leftovers are removed, generation numbers stay consecutive", .serialized)
struct InterruptedRunTests {
    @Test("a generation left by a kill before CURRENT switched, and temporary names, are removed by the next run")
    func orphans() throws {
        let inputs = try IndexFixture("orphans", videos: 30, files: 2)
        let index = inputs.dir + "/index"
        #expect(try runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle, inputs.codes[0]]).status == 0)
        #expect(try runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle, "--append", inputs.codes[1]]).status == 0)
        // What a kill after the rename and before CURRENT leaves: a complete g000003, not live.
        try FileManager.default.copyItem(atPath: index + "/g000002", toPath: index + "/g000003")
        try Data("g000003\n".utf8).write(to: URL(fileURLWithPath: index + "/.CURRENT.tmp-999-12345"))
        try FileManager.default.createDirectory(atPath: index + "/.tmp-g000003", withIntermediateDirectories: true)
        let c = try runTool("vidx-shard", ["--index", index, "--compact"])
        #expect(c.status == 0, "\(c.stderr)")
        #expect(c.stderr.contains("g000003: neither CURRENT"), "\(c.stderr)")
        #expect(listing(index) == [".lock", "CURRENT", "g000001", "g000002", "g000003"])
        let g3 = try IndexGeneration(indexDirectory: index)
        #expect(g3.name == "g000003" && g3.manifest.parent == "g000002" && g3.manifest.config.mode == .compact)
        #expect(try runTool("vidx-verify", [index]).status == 0)
        // An older version's gap: a generation below CURRENT and off the chain goes too.
        try FileManager.default.copyItem(atPath: index + "/g000001", toPath: index + "/g000000")
        #expect(try runTool("vidx-shard", ["--index", index, "--compact"]).status == 0)
        #expect(listing(index) == [".lock", "CURRENT", "g000001", "g000002", "g000003", "g000004"])
    }

    @Test("a damaged CURRENT stops the run before anything is removed")
    func damagedCurrent() throws {
        let inputs = try IndexFixture("bad-current", videos: 20, files: 1)
        let index = inputs.dir + "/index"
        #expect(try runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle] + inputs.codes).status == 0)
        try FileManager.default.copyItem(atPath: index + "/g000001", toPath: index + "/g000002")
        try Data("garbage\n".utf8).write(to: URL(fileURLWithPath: index + "/CURRENT"))
        let r = try runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle] + inputs.codes)
        #expect(r.status == 1 && r.stderr.contains("CURRENT"), "\(r.stderr)")
        #expect(listing(index) == [".lock", "CURRENT", "g000001", "g000002"])
    }

    @Test("killed at every rename and fsync of an append: CURRENT always verifies; the rerun gives the clean run's bytes")
    func killAtEveryStep() throws {
        try #require(straceMissing == nil, "\(straceMissing ?? "")")
        let inputs = try IndexFixture("kill", videos: 40, files: 2)
        let seed = inputs.dir + "/seed"
        #expect(try runTool("vidx-shard", ["--index", seed, "--bundle", inputs.bundle, "--shards", "2", inputs.codes[0]]).status == 0)
        let append = ["--bundle", inputs.bundle, "--append", inputs.codes[1]]
        // The reference: the same append, never interrupted.
        let clean = inputs.dir + "/clean"
        try FileManager.default.copyItem(atPath: seed, toPath: clean)
        #expect(try runTool("vidx-shard", ["--index", clean] + append).status == 0)
        let reference = generationFiles(clean + "/g000002")
        var points = 0
        for syscall in ["rename", "fsync"] {
            let counting = inputs.dir + "/count-" + syscall
            try FileManager.default.copyItem(atPath: seed, toPath: counting)
            let (countStatus, n) = try syscallCount("vidx-shard", ["--index", counting] + append, of: syscall)
            #expect(countStatus == 0)
            #expect(n >= (syscall == "rename" ? 4 : 6), "\(syscall): \(n) calls")
            for k in 1...n {
                let index = inputs.dir + "/\(syscall)-\(k)"
                try FileManager.default.copyItem(atPath: seed, toPath: index)
                let status = try runKilled("vidx-shard", ["--index", index] + append, at: k, of: syscall)
                #expect(status != 0, "\(syscall) #\(k): the run was not killed")
                let live = current(index)
                #expect(live == "g000001" || live == "g000002", "\(syscall) #\(k): CURRENT is \(live)")
                #expect(IndexVerifier.verify(indexDirectory: index).isEmpty, "\(syscall) #\(k): CURRENT does not verify")
                let rerun = try runTool("vidx-shard", ["--index", index] + append)
                #expect(rerun.status == 0, "\(syscall) #\(k): \(rerun.stderr)")
                #expect(current(index) == "g000002", "\(syscall) #\(k)")
                #expect(listing(index) == [".lock", "CURRENT", "g000001", "g000002"], "\(syscall) #\(k): \(listing(index))")
                #expect(generationFiles(index + "/g000002") == reference, "\(syscall) #\(k): bytes differ from the clean run")
                points += 1
            }
        }
        #expect(points >= 10)
    }
}

@Suite("The manifest reader and the JSON Schema agree", .serialized)
struct ManifestSchemaTests {
    @Test("every manifest rule of the JSON Schema is enforced by the Swift reader, and nothing else",
          arguments: manifestMutations)
    func manifestAgreesWithSchema(_ mutation: ManifestMutation) throws {
        let manifest = Self.sampleManifest
        var object = try JSONSerialization.jsonObject(with: manifest) as! [String: Any]
        mutation.apply(&object)
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        let schemaValid: Bool
        do {
            try Python.call("validate_json_text", String(decoding: data, as: UTF8.self), "index-manifest.schema.json")
            schemaValid = true
        } catch {
            schemaValid = false
        }
        let swiftValid = (try? IndexManifest.parse(data, path: "MANIFEST.json")) != nil
        #expect(schemaValid == mutation.valid, "\(mutation.name): the schema says \(schemaValid)")
        #expect(swiftValid == schemaValid, "\(mutation.name): the Swift reader says \(swiftValid), the schema \(schemaValid)")
    }

    static let sampleManifest: Data = {
        let inputs = try! IndexFixture("sample-manifest", videos: 20, files: 1)
        let index = inputs.dir + "/index"
        _ = try! runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle] + inputs.codes)
        _ = try! runTool("vidx-shard", ["--index", index, "--bundle", inputs.bundle, "--allow-shrink", "--shards", "3"] + inputs.codes)
        return read(index + "/g000002/MANIFEST.json")
    }()

}

/// One change to a valid manifest, and whether Schemas/index-manifest.schema.json allows it.
struct ManifestMutation: Sendable, CustomTestStringConvertible {
    let name: String
    let valid: Bool
    let apply: @Sendable (inout [String: Any]) -> Void
    var testDescription: String { name }

    init(_ name: String, valid: Bool = false, _ apply: @escaping @Sendable (inout [String: Any]) -> Void) {
        self.name = name
        self.valid = valid
        self.apply = apply
    }
}

let manifestMutations: [ManifestMutation] = {
    func sub(_ key: String, _ edit: @escaping @Sendable (inout [String: Any]) -> Void) -> @Sendable (inout [String: Any]) -> Void {
        { o in var d = o[key] as! [String: Any]; edit(&d); o[key] = d }
    }
    func shard0(_ edit: @escaping @Sendable (inout [String: Any]) -> Void) -> @Sendable (inout [String: Any]) -> Void {
        { o in var list = o["shards"] as! [Any]; var d = list[0] as! [String: Any]; edit(&d); list[0] = d; o["shards"] = list }
    }
    return [
        ManifestMutation("unchanged", valid: true) { _ in },
        ManifestMutation("parent null", valid: true) { $0["parent"] = NSNull() },
        ManifestMutation("an unknown tool key", valid: true, sub("tool") { $0["host"] = "x" }),
        ManifestMutation("parent g00000D") { $0["parent"] = "g00000D" },
        ManifestMutation("parent missing") { $0.removeValue(forKey: "parent") },
        ManifestMutation("generation G000002") { $0["generation"] = "G000002" },
        ManifestMutation("generation g0000020") { $0["generation"] = "g0000020" },
        ManifestMutation("an unknown top-level key") { $0["extra"] = 1 },
        ManifestMutation("format_version 2") { $0["format_version"] = 2 },
        ManifestMutation("format other") { $0["format"] = "vidx-index" },
        ManifestMutation("fingerprint upper case") { $0["bundle_fingerprint"] = ($0["bundle_fingerprint"] as! String).uppercased() },
        ManifestMutation("fingerprint short") { $0["bundle_fingerprint"] = "abc" },
        ManifestMutation("levels 0") { $0["levels"] = 0 },
        ManifestMutation("codewords 257") { $0["codewords"] = 257 },
        ManifestMutation("levels as a string") { $0["levels"] = "4" },
        ManifestMutation("codebooks file name", sub("codebooks") { $0["file"] = "codebooks.safetensors" }),
        ManifestMutation("codebooks sha256", sub("codebooks") { $0["sha256"] = "xyz" }),
        ManifestMutation("codebooks bytes negative", sub("codebooks") { $0["bytes"] = -1 }),
        ManifestMutation("codebooks unknown key", sub("codebooks") { $0["extra"] = "1" }),
        ManifestMutation("shard file name", shard0 { $0["file"] = "../base-0000.vidx" }),
        ManifestMutation("shard kind", shard0 { $0["kind"] = "extra" }),
        ManifestMutation("shard crc32c upper case", shard0 { $0["crc32c"] = ($0["crc32c"] as! String).uppercased() + "0" }),
        ManifestMutation("shard count 0", shard0 { $0["shard_count"] = 0 }),
        ManifestMutation("shard sequence negative", shard0 { $0["sequence"] = -1 }),
        ManifestMutation("shard missing sha256", shard0 { $0.removeValue(forKey: "sha256") }),
        ManifestMutation("shard unknown key", shard0 { $0["note"] = "x" }),
        ManifestMutation("counts negative", sub("counts") { $0["live"] = -3 }),
        ManifestMutation("counts unknown key", sub("counts") { $0["extra"] = 0 }),
        ManifestMutation("config mode", sub("config") { $0["mode"] = "rebuild" }),
        ManifestMutation("config shards 0", sub("config") { $0["shards"] = 0 }),
        ManifestMutation("config deleted_ids negative", sub("config") { $0["deleted_ids"] = -1 }),
        ManifestMutation("tool without version", sub("tool") { $0.removeValue(forKey: "version") }),
        ManifestMutation("an input's sha256 damaged", sub("config") { c in
            var inputs = c["inputs"] as! [[String: Any]]; inputs[0]["sha256"] = "zz" + (inputs[0]["sha256"] as! String).dropFirst(2); c["inputs"] = inputs }),
        ManifestMutation("an input's video count negative", sub("config") { c in
            var inputs = c["inputs"] as! [[String: Any]]; inputs[0]["videos"] = -1; c["inputs"] = inputs }),
    ]
}()
