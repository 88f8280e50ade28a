import Foundation
import Testing
import VidxCore
import VidxTestSupport
@testable import VidxDecode

@Suite("vidx-decode end to end")
struct DecodeCommandTests {
    func clip() throws -> String {
        try Clips.make("cli.mp4", Clips.testsrc(96, 64, rate: 25, seconds: 3) + Clips.tone(seconds: 3)
                       + ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"])
    }

    @Test("all files ok: exit 0, a readable report per file")
    func okRun() throws {
        let r = try runTool("vidx-decode", ["--sample", "fps:1", "--audio", try clip()])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("cli.mp4: ok"))
        #expect(r.stdout.contains("video h264 96x64"))
        #expect(r.stdout.contains("sampled 3 frame(s): #0@0.000 #25@1.000 #50@2.000"))
        #expect(r.stdout.contains("audio decoded"))
        // Not a terminal: no progress line, nothing on stderr.
        #expect(r.stderr.isEmpty)
    }

    @Test("some files failed: exit 3, one JSON line per file that matches the schema")
    func jsonAndFailures() throws {
        let text = try Clips.write("notes.mp4", Array("hello".utf8))
        let missing = Clips.directory + "/missing.mp4"
        let cut = try Clips.truncated(try BadInputTests.goodMP4(faststart: true), fraction: 0.55, name: "cli-cut.mp4")
        let r = try runTool("vidx-decode", ["--json", "--audio", "--sample", "every:1", try clip(), text, missing, cut])
        #expect(r.status == 3)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 4)
        let objects = try lines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        #expect(objects.map { $0["status"] as? String } == ["ok", "failed", "failed", "partial"])
        #expect(objects.map { ($0["error"] as? [String: Any])?["class"] as? String } == [nil, "not_media_file", "not_found", "corrupt"])
        let frames = objects[0]["frames"] as! [[String: Any]]
        #expect(frames.map { $0["index"] as! Int } == [12, 37, 62])
        // Hold the output to the published schema.
        let schema = Python.root + "/Schemas/decode-report.schema.json"
        let report = Clips.directory + "/report.jsonl"
        try r.stdout.write(toFile: report, atomically: true, encoding: .utf8)
        let check = """
        import json, sys, jsonschema
        schema = json.load(open(sys.argv[1]))
        v = jsonschema.Draft202012Validator(schema)
        for n, line in enumerate(open(sys.argv[2]), 1):
            errors = list(v.iter_errors(json.loads(line)))
            for e in errors: print(f"line {n}: {e.json_path}: {e.message}")
            if errors: sys.exit(1)
        print("valid")
        """
        let out = try Clips.run("python3", ["-c", check, schema, report])
        #expect(out.contains("valid"))
    }

    @Test("the schema rejects a report that breaks it")
    func schemaIsStrict() throws {
        let schema = Python.root + "/Schemas/decode-report.schema.json"
        let bad = #"{"file":"x","status":"ok","probe":null,"frames":[],"audio":null,"error":{"class":"corrupt","message":"m"},"stats":null}"#
        let check = """
        import json, sys, jsonschema
        errors = list(jsonschema.Draft202012Validator(json.load(open(sys.argv[1]))).iter_errors(json.loads(sys.argv[2])))
        print("invalid" if errors else "valid")
        """
        #expect(try Clips.run("python3", ["-c", check, schema, bad]).contains("invalid"))
    }

    @Test("usage errors exit 2 and say what is wrong", arguments: [
        ["--sample", "fps:0", "x.mp4"], ["--fit", "zoom", "x.mp4"], ["--size", "0", "x.mp4"], [], ["--bogus", "x.mp4"], ["--jobs", "0", "x.mp4"],
    ])
    func usage(_ args: [String]) throws {
        let r = try runTool("vidx-decode", args)
        #expect(r.status == 2, "\(args): \(r.status) \(r.stderr)")
        #expect(!r.stderr.isEmpty)
        #expect(r.stdout.isEmpty)
    }

    @Test("--help exits 0")
    func help() throws {
        let r = try runTool("vidx-decode", ["--help"])
        #expect(r.status == 0)
        #expect(r.stdout.contains("--sample"))
    }

    @Test("--out writes every sampled frame as a PNG holding exactly the sampled pixels")
    func pngOutput() throws {
        let out = Clips.directory + "/png-out"
        let file = try clip()
        let r = try runTool("vidx-decode", ["--sample", "fps:2", "--size", "40x30", "--fit", "pad", "--out", out, file, file])
        #expect(r.status == 0, "\(r.stderr)")
        let names = try FileManager.default.contentsOfDirectory(atPath: out + "/cli.mp4").sorted()
        #expect(names == ["frame-000000.png", "frame-000012.png", "frame-000025.png", "frame-000037.png", "frame-000050.png", "frame-000062.png"])
        // The same name twice gets two folders.
        #expect(FileManager.default.fileExists(atPath: out + "/cli.mp4-2/frame-000000.png"))
        var o = try options("fps:2", fit: .pad)
        o.width = 40
        o.height = 30
        let (_, frames, _) = try MediaDecoder.decodeAll(path: file, options: o)
        var png = try options("fps:1", fit: .stretch)
        png.width = 40
        png.height = 30
        let (_, back, _) = try MediaDecoder.decodeAll(path: out + "/cli.mp4/frame-000025.png", options: png)
        let decoded = try #require(back.first).image
        #expect(decoded.width == 40 && decoded.height == 30)
        #expect(decoded.pixels == frames.first { $0.info.index == 25 }!.image.pixels)
    }

    @Test("on a terminal, many files get a progress line on standard error")
    func progressOnTerminal() throws {
        // `script` (util-linux) runs the tool on a pseudo-terminal.
        let clip = try clip()
        let command = ([try toolPath("vidx-decode"), "--sample", "keyframes", clip, clip, clip]).joined(separator: " ")
        let out = try Clips.run("script", ["-qec", command, "/dev/null"])
        #expect(out.contains("[3/3] 0 failed"))
        #expect(out.contains("\r"))
        #expect(out.components(separatedBy: ": ok").count == 4)
    }

    @Test("several jobs print the same results in input order")
    func jobs() throws {
        let files = [try clip(), Clips.directory + "/missing.mp4", try clip()]
        let one = try runTool("vidx-decode", ["--json", "--jobs", "1"] + files)
        let two = try runTool("vidx-decode", ["--json", "--jobs", "2", "--threads", "1"] + files)
        func strip(_ s: String) -> [String] {
            // Work counters depend on the thread count; the results must not.
            s.split(separator: "\n").map { $0.replacingOccurrences(of: #""stats":\{[^}]*\}"#, with: "", options: .regularExpression) }
        }
        #expect(one.status == 3 && two.status == 3)
        #expect(strip(one.stdout) == strip(two.stdout))
    }
}
