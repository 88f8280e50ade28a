import Foundation
import Testing
import VidxCore
import VidxExtract
import VidxTestSupport

/// The café of the identity tests: precomposed é (NFC) and e + combining acute (NFD).
let cafeNFC = "caf\u{E9}", cafeNFD = "cafe\u{301}"

@Suite("extract and import: inputs checked as their specs say, outputs together", .serialized)
struct ExtractSafetyTests {
    @Test("CRLF units and lists are read; ids are their UTF-8 bytes (café in NFC and NFD are two videos)")
    func crlfAndIdentity() throws {
        let dir = makeTestDirectory("extract-crlf")
        let bundle = try makeBundle(dir + "/bundle", builtin: ["audio", "motion"], imported: [("speech", 8)])
        try Clips.tone(dir + "/clip.mp4")
        try saveNPY(dir + "/speech.npy", rows: 3, width: 8, seed: 1, times: dir + "/speech-t.npy")
        let unit = dir + "/unit.jsonl", list = dir + "/list.jsonl", out = dir + "/unit.features.safetensors"
        try [#"{"id": "\#(cafeNFC)", "path": "clip.mp4"}"#, #"{"id": "\#(cafeNFD)", "path": "clip.mp4"}"#,
             #"{"id": "plain", "path": "clip.mp4"}"#].joined(separator: "\r\n").appending("\r\n")
            .write(toFile: unit, atomically: true, encoding: .utf8)
        try [#"{"id": "\#(cafeNFC)", "experts": {"speech": {"features": "speech.npy", "times": "speech-t.npy"}}}"#,
             #"{"id": "plain", "experts": {"speech": {"features": "speech.npy"}}}"#].joined(separator: "\r\n")
            .write(toFile: list, atomically: true, encoding: .utf8)
        try validateLines(unit, schema: "work-unit.schema.json")
        try validateLines(list, schema: "import-list.schema.json")
        let r = try runBounded("vidx-extract", ["--bundle", bundle, "--unit", unit, "--out", out, "--import", list])
        #expect(r.status == 0, "\(r.stderr)")
        let file = try FeaturesFile(path: out)
        #expect(file.videos.map { Array($0.id.utf8) } == [cafeNFC, cafeNFD, "plain"].map { Array($0.utf8) })
        #expect(file.videos.map(\.status) == [.ok, .ok, .ok])
        // The list's NFC line belongs to the NFC video only.
        #expect(try file.experts(of: 0)["speech"]?.rows == 3)
        #expect(try file.experts(of: 1)["speech"] == nil)
        #expect(try file.experts(of: 2)["speech"]?.rows == 3)

        // vidx-import-features: a CRLF list with both spellings gives two videos.
        try [#"{"id": "\#(cafeNFC)", "experts": {"speech": {"features": "speech.npy"}}}"#,
             #"{"id": "\#(cafeNFD)", "experts": {"speech": {"features": "speech.npy"}}}"#].joined(separator: "\r\n")
            .write(toFile: list, atomically: true, encoding: .utf8)
        let imported = dir + "/imported.features.safetensors"
        let i = try runBounded("vidx-import-features", ["--bundle", bundle, "--list", list, "--out", imported])
        #expect(i.status == 0, "\(i.stderr)")
        #expect(try FeaturesFile(path: imported).videos.map { Array($0.id.utf8) } == [cafeNFC, cafeNFD].map { Array($0.utf8) })
    }

    @Test("ids the schemas forbid are refused, naming the file, the line and the problem; nothing is written")
    func invalidIDs() throws {
        let dir = makeTestDirectory("extract-ids")
        let builtin = try makeBundle(dir + "/builtin", builtin: ["audio"])
        let bundle = try makeBundle(dir + "/bundle", builtin: ["audio"], imported: [("speech", 8)])
        try saveNPY(dir + "/speech.npy", rows: 2, width: 8, seed: 2)
        let long = String(repeating: "x", count: 4097)
        let out = dir + "/out.features.safetensors"
        let unit = dir + "/unit.jsonl", list = dir + "/list.jsonl"
        let cases: [(lines: [String], words: [String])] = [
            ([#"{"id": "a", "path": "a.mp4"}"#, #"{"id": "", "path": "b.mp4"}"#], ["line 2", "empty"]),
            ([#"{"id": "a", "path": "a.mp4"}"#, #"{"id": "\#(long)", "path": "b.mp4"}"#], ["line 2", "4097", "4096"]),
            ([#"{"id": "\#(cafeNFC)", "path": "a.mp4"}"#, #"{"id": "b", "path": "b.mp4"}"#, #"{"id": "\#(cafeNFC)", "path": "c.mp4"}"#],
             ["line 3", "twice"]),
        ]
        for (lines, words) in cases {
            try lines.joined(separator: "\n").write(toFile: unit, atomically: true, encoding: .utf8)
            try? FileManager.default.removeItem(atPath: out)
            let r = try runBounded("vidx-extract", ["--bundle", builtin, "--unit", unit, "--out", out])
            #expect(r.status == 1, "\(words): \(r.stderr)")
            for w in words + [unit] { #expect(r.stderr.contains(w), "'\(w)' not in: \(r.stderr)") }
            #expect(!FileManager.default.fileExists(atPath: out))
        }
        let speech = #"{"speech": {"features": "speech.npy"}}"#
        let listCases: [(lines: [String], words: [String])] = [
            ([#"{"id": "a", "experts": \#(speech)}"#, #"{"id": "", "experts": \#(speech)}"#], ["line 2", "empty"]),
            ([#"{"id": "\#(long)", "experts": \#(speech)}"#], ["line 1", "4097"]),
            ([#"{"id": "\#(cafeNFD)", "experts": \#(speech)}"#, #"{"id": "\#(cafeNFD)", "experts": \#(speech)}"#], ["line 2", "twice"]),
        ]
        try #"{"id": "a", "path": "a.mp4"}"#.write(toFile: unit, atomically: true, encoding: .utf8)
        for (lines, words) in listCases {
            try lines.joined(separator: "\n").write(toFile: list, atomically: true, encoding: .utf8)
            try? FileManager.default.removeItem(atPath: out)
            let r = try runBounded("vidx-import-features", ["--bundle", bundle, "--list", list, "--out", out])
            #expect(r.status == 1, "\(words): \(r.stderr)")
            for w in words + [list] { #expect(r.stderr.contains(w), "import: '\(w)' not in: \(r.stderr)") }
            #expect(!FileManager.default.fileExists(atPath: out))
            let e = try runBounded("vidx-extract", ["--bundle", bundle, "--unit", unit, "--out", out, "--import", list])
            #expect(e.status == 1, "\(words): \(e.stderr)")
            for w in words + [list] { #expect(e.stderr.contains(w), "extract --import: '\(w)' not in: \(e.stderr)") }
            #expect(!FileManager.default.fileExists(atPath: out))
        }
    }

    @Test("a video from which no expert got a row is failed as no_features, never ok, in extract, import and encode")
    func noFeatures() throws {
        let dir = makeTestDirectory("extract-nofeatures")
        let bundle = try makeBundle(dir + "/bundle", builtin: ["audio"])   // audio only: a silent clip yields nothing
        try Clips.tone(dir + "/tone.mp4")
        try Clips.silent(dir + "/silent.mp4")
        let unit = dir + "/unit.jsonl", out = dir + "/unit.features.safetensors"
        try """
            {"id": "tone", "path": "tone.mp4"}
            {"id": "silent", "path": "silent.mp4"}
            """.write(toFile: unit, atomically: true, encoding: .utf8)
        let r = try runBounded("vidx-extract", ["--bundle", bundle, "--unit", unit, "--out", out])
        #expect(r.status == 3, "\(r.stderr)")
        #expect(r.stderr.contains("silent") && r.stderr.contains("no_features"), "\(r.stderr)")
        let file = try FeaturesFile(path: out)
        #expect(file.videos.map(\.status) == [.ok, .failed])
        #expect(file.videos[1].error?.class == .noFeatures)
        #expect(try file.experts(of: 1).isEmpty)
        let stats = dir + "/unit.stats.json"
        let statuses = try Python.call("stats_statuses", stats).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(statuses == #"[["ok", null], ["failed", "no_features"]]"#, "\(statuses)")
        // The encoder keeps the extraction's class.
        let codes = dir + "/unit.codes.safetensors"
        #expect(try runBounded("vidx-encode", ["--bundle", bundle, "--features", out, "--out", codes]).status == 3)
        #expect(try CodesFile(path: codes).videos.map { $0.error?.class } == [nil, .noFeatures])

        // vidx-import-features: a line naming no expert, or only 0-row matrices.
        let speechBundle = try makeBundle(dir + "/speech-bundle", builtin: [], imported: [("speech", 8)])
        try saveNPY(dir + "/rows.npy", rows: 2, width: 8, seed: 3)
        try saveNPY(dir + "/empty.npy", rows: 0, width: 8, seed: 3)
        let list = dir + "/list.jsonl", imported = dir + "/imported.features.safetensors"
        try """
            {"id": "some", "experts": {"speech": {"features": "rows.npy"}}}
            {"id": "none", "experts": {}}
            {"id": "zero", "experts": {"speech": {"features": "empty.npy"}}}
            """.write(toFile: list, atomically: true, encoding: .utf8)
        let i = try runBounded("vidx-import-features", ["--bundle", speechBundle, "--list", list, "--out", imported])
        #expect(i.status == 3, "\(i.stderr)")
        let importedFile = try FeaturesFile(path: imported)
        #expect(importedFile.videos.map(\.status) == [.ok, .failed, .failed])
        #expect(importedFile.videos.map { $0.error?.class } == [nil, .noFeatures, .noFeatures])
    }

    @Test("a unit's outputs appear together or not at all: an unwritable stats path leaves no features file")
    func outputsTogether() throws {
        let dir = makeTestDirectory("extract-together")
        let bundle = try makeBundle(dir + "/bundle", builtin: ["audio"])
        try Clips.tone(dir + "/tone.mp4")
        let unit = dir + "/unit.jsonl", out = dir + "/unit.features.safetensors", stats = dir + "/unit.stats.json"
        try #"{"id": "tone", "path": "tone.mp4"}"#.write(toFile: unit, atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: stats, withIntermediateDirectories: false)
        let r = try runBounded("vidx-extract", ["--bundle", bundle, "--unit", unit, "--out", out])
        #expect(r.status == 1, "\(r.stderr)")
        #expect(r.stderr.contains(stats), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out))
        #expect(temporaryNames(in: dir).isEmpty, "\(temporaryNames(in: dir))")

        // An older unit's outputs are replaced, stats last.
        try FileManager.default.removeItem(atPath: stats)
        try "[]".write(toFile: stats, atomically: true, encoding: .utf8)
        try "old".write(toFile: out, atomically: true, encoding: .utf8)
        let again = try runBounded("vidx-extract", ["--bundle", bundle, "--unit", unit, "--out", out])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(try FeaturesFile(path: out).videos.map(\.id) == ["tone"])
        let written = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: stats))) as? [[String: Any]]
        #expect(written?.first?["id"] as? String == "tone")
        #expect(temporaryNames(in: dir).isEmpty)
    }

    @Test("killed at every rename, unlink and fsync: stats never stand beside features that are not theirs; the rerun completes")
    func killAtEveryStep() throws {
        try #require(straceMissing == nil, "\(straceMissing ?? "")")
        let dir = makeTestDirectory("extract-kill")
        let bundle = try makeBundle(dir + "/bundle", builtin: ["audio", "motion"])
        try Clips.tone(dir + "/tone.mp4")
        let unit = dir + "/unit.jsonl"
        try #"{"id": "tone", "path": "tone.mp4"}"#.write(toFile: unit, atomically: true, encoding: .utf8)
        // The reference: an uninterrupted run's features.
        let cleanOut = dir + "/clean.features.safetensors"
        #expect(try runTool("vidx-extract", ["--bundle", bundle, "--unit", unit, "--out", cleanOut]).status == 0)
        let reference = try Data(contentsOf: URL(fileURLWithPath: cleanOut))
        var points = 0
        for syscall in ["rename", "unlink", "fsync"] {
            let (status, n) = try syscallCount("vidx-extract", ["--bundle", bundle, "--unit", unit,
                                                                "--out", dir + "/count-\(syscall).features.safetensors"], of: syscall)
            #expect(status == 0 && n >= 1, "\(syscall): \(n) calls")
            for k in 1...n {
                let out = dir + "/\(syscall)-\(k).features.safetensors", stats = dir + "/\(syscall)-\(k).stats.json"
                // An older unit's outputs, distinguishable from the new ones.
                try "old".write(toFile: out, atomically: true, encoding: .utf8)
                try "[]".write(toFile: stats, atomically: true, encoding: .utf8)
                let killed = try runKilled("vidx-extract", ["--bundle", bundle, "--unit", unit, "--out", out], at: k, of: syscall)
                #expect(killed != 0, "\(syscall) #\(k): the run was not killed")
                if let text = try? String(contentsOfFile: stats, encoding: .utf8) {
                    let features = (try? Data(contentsOf: URL(fileURLWithPath: out))) ?? Data()
                    if text == "[]" {
                        #expect(features == Data("old".utf8), "\(syscall) #\(k): old stats beside new features")
                    } else {
                        #expect(features == reference, "\(syscall) #\(k): new stats beside features that are not theirs")
                    }
                }
                let rerun = try runTool("vidx-extract", ["--bundle", bundle, "--unit", unit, "--out", out])
                #expect(rerun.status == 0, "\(syscall) #\(k): \(rerun.stderr)")
                #expect(try Data(contentsOf: URL(fileURLWithPath: out)) == reference, "\(syscall) #\(k)")
                #expect(try String(contentsOfFile: stats, encoding: .utf8) != "[]", "\(syscall) #\(k)")
                points += 1
            }
        }
        #expect(points >= 5)
    }

    @Test("--cnn defaults: found from any working directory, in $VIDX_MODELS, or in an installed prefix; every place named when absent")
    func cnnResolution() throws {
        try #require(Models.ready, "make models could not build models/ (starter bundle, EfficientNet-Lite0): \(Models.problem ?? "")")
        let dir = makeTestDirectory("extract-cnn")
        try Clips.tone(dir + "/clip.mp4", seconds: 1)
        let unit = dir + "/unit.jsonl", out = dir + "/unit.features.safetensors"
        try #"{"id": "clip", "path": "clip.mp4"}"#.write(toFile: unit, atomically: true, encoding: .utf8)
        var env = ProcessInfo.processInfo.environment
        env["VIDX_MODELS"] = nil
        let args = ["--bundle", Models.starter, "--unit", unit, "--out", out]

        // From another working directory: found beside the build (walking up to ./models).
        let elsewhere = try runBounded("vidx-extract", args, in: dir, environment: env)
        #expect(elsewhere.status == 0, "\(elsewhere.stderr)")
        #expect(try FeaturesFile(path: out).experts(of: 0)["appearance"]?.rows == 1)

        // $VIDX_MODELS, when set, is where it looks.
        var set = env
        set["VIDX_MODELS"] = dir + "/no-models"
        let missing = try runBounded("vidx-extract", args, in: dir, environment: set)
        #expect(missing.status == 1)
        #expect(missing.stderr.contains(dir + "/no-models/efficientnet-lite0/weights.safetensors") && missing.stderr.contains("VIDX_MODELS"),
                "\(missing.stderr)")
        let models = dir + "/models-here/efficientnet-lite0"
        try FileManager.default.createDirectory(atPath: models, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: models + "/weights.safetensors", withDestinationPath: Models.cnn)
        set["VIDX_MODELS"] = dir + "/models-here"
        #expect(try runBounded("vidx-extract", args, in: dir, environment: set).status == 0)

        // An installed copy: PREFIX/bin/vidx-extract finds PREFIX/share/vidx/models.
        let prefix = dir + "/prefix"
        try FileManager.default.createDirectory(atPath: prefix + "/bin", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: try toolPath("vidx-extract"), toPath: prefix + "/bin/vidx-extract")
        let absent = try runBounded(prefix + "/bin/vidx-extract", args, in: dir, environment: env)
        #expect(absent.status == 1)
        for place in [prefix + "/bin/models/efficientnet-lite0/weights.safetensors",
                      prefix + "/models/efficientnet-lite0/weights.safetensors",
                      prefix + "/share/vidx/models/efficientnet-lite0/weights.safetensors", "--cnn", "VIDX_MODELS"] {
            #expect(absent.stderr.contains(place), "'\(place)' not in: \(absent.stderr)")
        }
        let shared = prefix + "/share/vidx/models/efficientnet-lite0"
        try FileManager.default.createDirectory(atPath: shared, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: shared + "/weights.safetensors", withDestinationPath: Models.cnn)
        let installed = try runBounded(prefix + "/bin/vidx-extract", args, in: dir, environment: env)
        #expect(installed.status == 0, "\(installed.stderr)")
    }

    @Test("a FIFO given as a unit, a list, a .npy or a bundle.json is refused at once, not waited on")
    func fifos() throws {
        let dir = makeTestDirectory("extract-fifo")
        let builtin = try makeBundle(dir + "/builtin", builtin: ["audio"])
        let bundle = try makeBundle(dir + "/bundle", builtin: ["audio"], imported: [("speech", 8)])
        let fifo = dir + "/pipe"
        try makeFIFO(fifo)
        let out = dir + "/out.features.safetensors"
        func expectRefused(_ r: (status: Int32, stdout: String, stderr: String), _ what: String) {
            #expect(r.status == 1, "\(what): status \(r.status) (124: it waited on the FIFO): \(r.stderr)")
            #expect(r.stderr.contains(fifo) && r.stderr.contains("FIFO"), "\(what): \(r.stderr)")
        }
        expectRefused(try runBounded("vidx-extract", ["--bundle", builtin, "--unit", fifo, "--out", out], seconds: 20), "unit")
        let unit = dir + "/unit.jsonl"
        try #"{"id": "a", "path": "a.mp4"}"#.write(toFile: unit, atomically: true, encoding: .utf8)
        expectRefused(try runBounded("vidx-extract", ["--bundle", bundle, "--unit", unit, "--out", out, "--import", fifo],
                                     seconds: 20), "--import list")
        expectRefused(try runBounded("vidx-import-features", ["--bundle", bundle, "--list", fifo, "--out", out], seconds: 20),
                      "import list")
        #expect(!FileManager.default.fileExists(atPath: out))

        // A FIFO as one video's .npy fails that video only.
        try saveNPY(dir + "/speech.npy", rows: 2, width: 8, seed: 4)
        try makeFIFO(dir + "/pipe.npy")
        let list = dir + "/list.jsonl"
        try """
            {"id": "good", "experts": {"speech": {"features": "speech.npy"}}}
            {"id": "piped", "experts": {"speech": {"features": "pipe.npy"}}}
            {"id": "piped-times", "experts": {"speech": {"features": "speech.npy", "times": "pipe.npy"}}}
            {"id": "piped-safetensors", "experts": {"speech": {"features": "pipe"}}}
            """.write(toFile: list, atomically: true, encoding: .utf8)
        let r = try runBounded("vidx-import-features", ["--bundle", bundle, "--list", list, "--out", out], seconds: 20)
        #expect(r.status == 3, "status \(r.status) (124: it waited on the FIFO): \(r.stderr)")
        let file = try FeaturesFile(path: out)
        #expect(file.videos.map(\.status) == [.ok, .failed, .failed, .failed])
        #expect(file.videos.dropFirst().allSatisfy { $0.error?.class == .badFeatures && $0.error?.message.contains("FIFO") == true })

        // vidx-encode: a bundle whose bundle.json is a FIFO; a FIFO as the features file.
        let piped = dir + "/piped-bundle"
        try FileManager.default.createDirectory(atPath: piped, withIntermediateDirectories: true)
        try makeFIFO(piped + "/bundle.json")
        try FileManager.default.createSymbolicLink(atPath: piped + "/weights.safetensors", withDestinationPath: bundle + "/weights.safetensors")
        let codes = dir + "/out.codes.safetensors"
        let b = try runBounded("vidx-encode", ["--bundle", piped, "--features", out, "--out", codes], seconds: 20)
        #expect(b.status == 1 && b.stderr.contains(piped + "/bundle.json") && b.stderr.contains("FIFO"),
                "status \(b.status) (124: it waited on the FIFO): \(b.stderr)")
        let f = try runBounded("vidx-encode", ["--bundle", bundle, "--features", fifo, "--out", codes], seconds: 20)
        #expect(f.status == 1 && f.stderr.contains(fifo), "status \(f.status): \(f.stderr)")
        #expect(!FileManager.default.fileExists(atPath: codes))
    }
}
