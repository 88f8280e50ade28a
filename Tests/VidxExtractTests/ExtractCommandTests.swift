import Foundation
import Testing
import VidxCore
import VidxExtract
import VidxTestSupport

/// Checks every line of a JSON Lines file against a schema under Schemas/ (with Python's
/// jsonschema): the files the tests feed the tools are the files the schemas describe.
func validateLines(_ path: String, schema: String) throws {
    try Python.call("validate_json_lines", path, schema)
}

@Suite("vidx-extract and vidx-import-features end to end", .serialized)
struct ExtractCommandTests {
    @Test("a unit with a good clip, a missing file and a non-video: features for the clip, errors for the rest, then encode, shard, search")
    func unitThroughThePipeline() throws {
        try #require(Models.ready, "make models could not build models/ (starter bundle, EfficientNet-Lite0): \(Models.problem ?? "")")
        let dir = makeTestDirectory("extract")
        let clip = dir + "/clip.mp4", still = dir + "/still.mp4"
        try ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=6", "-f", "lavfi",
                    "-i", "sine=frequency=1000:duration=6", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-shortest", clip])
        try ffmpeg(["-f", "lavfi", "-i", "color=c=gray:size=160x120:rate=25:duration=3", "-c:v", "libx264",
                    "-preset", "veryfast", "-pix_fmt", "yuv420p", still])
        try Data("not a video".utf8).write(to: URL(fileURLWithPath: dir + "/notes.txt"))
        let unit = dir + "/unit.jsonl"
        try """
            {"id": "clip", "path": "clip.mp4"}
            {"id": "gone", "path": "missing.mp4"}
            {"id": "notes", "path": "notes.txt"}
            {"id": "still", "path": "still.mp4"}
            """.write(toFile: unit, atomically: true, encoding: .utf8)
        try validateLines(unit, schema: "work-unit.schema.json")
        let features = dir + "/unit.features.safetensors"
        let r = try runTool("vidx-extract", ["--bundle", Models.starter, "--unit", unit, "--out", features,
                                             "--cnn", Models.cnn, "--workers", "2"])
        #expect(r.status == 3, "\(r.stderr)")
        #expect(r.stderr.contains("gone") && r.stderr.contains("notes"))
        let file = try FeaturesFile(path: features)
        #expect(file.videos.map(\.id) == ["clip", "gone", "notes", "still"])
        #expect(file.videos.map(\.status) == [.ok, .failed, .failed, .ok])
        #expect(file.videos[1].error?.class == .notFound && file.videos[2].error?.class == .notMediaFile)
        #expect(file.extractors["appearance"] == "builtin:appearance/efficientnet-lite0@1")
        let clipExperts = try file.experts(of: 0)
        #expect(clipExperts["appearance"]?.rows == 6 && clipExperts["appearance"]?.width == 1280)
        #expect(clipExperts["audio"]?.width == 128 && (clipExperts["audio"]?.rows ?? 0) >= 5)
        #expect(clipExperts["motion"]?.width == 64 && (clipExperts["motion"]?.rows ?? 0) >= 5)
        #expect(file.videos[0].contentHash == (try SHA256Digest.hex(fileAt: clip)))
        // The still clip: no audio stream, no motion.
        let stillExperts = try file.experts(of: 3)
        #expect(stillExperts["audio"] == nil)
        #expect((stillExperts["motion"]?.features.max() ?? 1) < 1e-6)
        // The moving test pattern moves.
        #expect((clipExperts["motion"]?.features.max() ?? 0) > 1e-3)
        // Stats beside the features, valid against their schema.
        let stats = dir + "/unit.stats.json"
        try Python.call("validate_json", stats, "extract-stats.schema.json")

        // Same unit again: the same bytes (one worker this time).
        let again = dir + "/again.features.safetensors"
        #expect(try runTool("vidx-extract", ["--bundle", Models.starter, "--unit", unit, "--out", again, "--cnn", Models.cnn]).status == 3)
        #expect(FileManager.default.contents(atPath: again) == FileManager.default.contents(atPath: features))

        // The rest of the pipeline on these features.
        let codes = dir + "/unit.codes.safetensors", index = dir + "/index"
        #expect(try runTool("vidx-encode", ["--bundle", Models.starter, "--features", features, "--out", codes]).status == 3)
        let s = try runTool("vidx-shard", ["--index", index, "--bundle", Models.starter, "--shards", "2", codes])
        #expect(s.status == 0, "\(s.stderr)")
        let q = try runTool("vidx-search", [index, "--like", "clip", "--k", "2"])
        #expect(q.status == 0 && q.stdout.hasPrefix("{\"query\":0,\"rank\":1,\"id\":"), "\(q.stderr)")
        #expect(q.stdout.split(separator: "\n").first?.contains("\"external_id\":\"clip\"") == true)
    }

    @Test("a bundle trained on experts vidx-extract cannot run is refused, naming them")
    func refusesImportedExperts() throws {
        let dir = makeTestDirectory("extract-refuse")
        _ = try Python.run(["Tests/Reference/make_index_inputs.py", dir, "--bundle-only"])
        let unit = dir + "/unit.jsonl"
        try "{\"id\": \"a\", \"path\": \"a.mp4\"}\n".write(toFile: unit, atomically: true, encoding: .utf8)
        let r = try runTool("vidx-extract", ["--bundle", dir + "/bundle", "--unit", unit, "--out", dir + "/f.safetensors"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("imported:appearance") && r.stderr.contains("--import"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/f.safetensors"))
        #expect(try runTool("vidx-extract", ["--bundle", dir + "/bundle"]).status == 2)
    }

    @Test("a bundle mixing built-in and imported experts: --import merges them into the unit's one features file")
    func mixedBundle() throws {
        try #require(Models.ready, "make models could not build models/ (starter bundle, EfficientNet-Lite0): \(Models.problem ?? "")")
        let dir = makeTestDirectory("extract-mixed")
        // The starter's audio and motion experts plus an imported 8-wide "speech" expert.
        try Python.call("mixed_bundle", dir)
        try ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=4", "-f", "lavfi",
                    "-i", "sine=frequency=500:duration=4", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-shortest", dir + "/clip.mp4"])
        let unit = dir + "/unit.jsonl", list = dir + "/speech.jsonl", out = dir + "/unit.features.safetensors"
        try """
            {"id": "clip", "path": "clip.mp4"}
            {"id": "unlisted", "path": "clip.mp4"}
            {"id": "wide", "path": "clip.mp4"}
            """.write(toFile: unit, atomically: true, encoding: .utf8)
        try """
            {"id": "clip", "experts": {"speech": {"features": "clip-speech.npy", "times": "clip-speech-t.npy"}}}
            {"id": "wide", "experts": {"speech": {"features": "wide-speech.npy"}}}
            {"id": "elsewhere", "experts": {"speech": {"features": "clip-speech.npy"}}}
            """.write(toFile: list, atomically: true, encoding: .utf8)
        try validateLines(unit, schema: "work-unit.schema.json")
        try validateLines(list, schema: "import-list.schema.json")

        // Without the list the bundle is refused, pointing at --import.
        let refused = try runTool("vidx-extract", ["--bundle", dir + "/bundle", "--unit", unit, "--out", out])
        #expect(refused.status == 1 && refused.stderr.contains("speech") && refused.stderr.contains("--import"), "\(refused.stderr)")

        let r = try runTool("vidx-extract", ["--bundle", dir + "/bundle", "--unit", unit, "--out", out, "--import", list])
        #expect(r.status == 3, "\(r.stderr)")
        #expect(r.stderr.contains("wide") && r.stderr.contains("wide-speech.npy") && r.stderr.contains("9"), "\(r.stderr)")
        let file = try FeaturesFile(path: out)
        #expect(file.videos.map(\.status) == [.ok, .ok, .failed])
        #expect(file.videos[2].error?.class == .badFeatures)
        #expect(file.extractors["speech"] == "imported:speech/asr-embed@3" && file.extractors["audio"] != nil)
        let clip = try file.experts(of: 0), unlisted = try file.experts(of: 1)
        #expect(clip["speech"]?.rows == 3 && clip["speech"]?.times[3] == 4 && clip["audio"]?.width == 128)
        #expect(unlisted["speech"] == nil && unlisted["motion"]?.width == 64)  // missing, not failed
        let codes = dir + "/unit.codes.safetensors"
        #expect(try runTool("vidx-encode", ["--bundle", dir + "/bundle", "--features", out, "--out", codes]).status == 3)

        // A list naming an expert the bundle does not import is refused before any work.
        try "{\"id\": \"clip\", \"experts\": {\"audio\": {\"features\": \"clip-speech.npy\"}}}\n"
            .write(toFile: list, atomically: true, encoding: .utf8)
        let wrong = try runTool("vidx-extract", ["--bundle", dir + "/bundle", "--unit", unit, "--out", dir + "/x.safetensors", "--import", list])
        #expect(wrong.status == 1 && wrong.stderr.contains("'audio'") && wrong.stderr.contains("speech.jsonl"), "\(wrong.stderr)")
    }

    @Test("vidx-import-features: npy and safetensors per video, widths checked, a bad video fails alone")
    func importFeatures() throws {
        let dir = makeTestDirectory("import")
        _ = try Python.run(["Tests/Reference/make_index_inputs.py", dir, "--bundle-only"])  // experts appearance 12, audio 6
        try Python.call("import_features", dir)
        let list = dir + "/list.jsonl"
        try """
            {"id": "a", "experts": {"appearance": {"features": "a-app.npy", "times": "a-app-t.npy"}, "audio": {"features": "a-audio.safetensors"}}}
            {"id": "b", "experts": {"appearance": {"features": "b-app.npy"}}}
            {"id": "c", "experts": {"audio": {"features": "c-audio.npy"}}}
            """.write(toFile: list, atomically: true, encoding: .utf8)
        try validateLines(list, schema: "import-list.schema.json")
        let out = dir + "/imported.features.safetensors"
        let r = try runTool("vidx-import-features", ["--bundle", dir + "/bundle", "--list", list, "--out", out])
        #expect(r.status == 3, "\(r.stderr)")
        #expect(r.stderr.contains("b-app.npy") && r.stderr.contains("11") && r.stderr.contains("c-audio.npy"))
        let file = try FeaturesFile(path: out)
        #expect(file.videos.map(\.status) == [.ok, .failed, .failed])
        let a = try file.experts(of: 0)
        #expect(a["appearance"]?.rows == 5 && a["appearance"]?.times[2] == 1 && a["audio"]?.rows == 3)
        #expect(file.extractors == ["appearance": "imported:appearance", "audio": "imported:audio"])
        // The encoder takes the imported features.
        let codes = dir + "/imported.codes.safetensors"
        #expect(try runTool("vidx-encode", ["--bundle", dir + "/bundle", "--features", out, "--out", codes]).status == 3)
    }
}
