import Foundation
import Testing
import VidxTestSupport
import VidxCore
@testable import VidxDecode

/// The JSON lines of a `vidx-decode --json` run, each checked against the published schema.
func schemaCheckedLines(_ stdout: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> [[String: Any]] {
    let schema = Python.root + "/Schemas/decode-report.schema.json"
    let report = Clips.directory + "/report-\(UUID().uuidString).jsonl"
    try stdout.write(toFile: report, atomically: true, encoding: .utf8)
    defer { unlink(report) }
    let check = """
    import json, sys, jsonschema
    v = jsonschema.Draft202012Validator(json.load(open(sys.argv[1])))
    bad = 0
    for n, line in enumerate(open(sys.argv[2]), 1):
        for e in v.iter_errors(json.loads(line)):
            print(f"line {n}: {e.json_path}: {e.message}"); bad += 1
    print("invalid" if bad else "valid")
    """
    let out = try Clips.run("python3", ["-c", check, schema, report])
    #expect(out.hasSuffix("valid\n") && !out.contains("invalid"), "\(out)", sourceLocation: sourceLocation)
    return try stdout.split(separator: "\n").map {
        try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
    }
}

extension [String: Any] {
    var status: String? { self["status"] as? String }
    var errorClass: String? { (self["error"] as? [String: Any])?["class"] as? String }
    var errorMessage: String { ((self["error"] as? [String: Any])?["message"] as? String) ?? "" }
}

@Suite("vidx-decode end to end: failures a scheduler can act on")
struct DecodeCommandFailureTests {
    /// About 850 KB (27 reads of 32 KB): room for a read to fail well after the headers.
    static func bigClip() throws -> String {
        try Clips.make("cli-big.mp4", Clips.testsrc(320, 240, rate: 25, seconds: 8)
                       + ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "25", "-b:v", "1M", "-movflags", "+faststart"])
    }

    /// Runs `vidx-decode args` under strace, which makes every `read(2)` of `file` from
    /// the `from`-th on fail with `injection` (e.g. `error=EIO`, `delay_enter=1500000`).
    static func withFailingReads(of file: String, from: Int, _ injection: String, _ args: [String]) throws
        -> (status: Int32, stdout: String, stderr: String) {
        try runCommand("strace", ["-f", "-qq", "-o", "/dev/null", "-P", file, "-e", "trace=read",
                                  "-e", "inject=read:\(injection):when=\(from)+", try toolPath("vidx-decode")] + args)
    }

    @Test("the operating system failing a read is unreadable (at open and mid-file), never corrupt or partial")
    func osReadError() throws {
        let file = try Self.bigClip()
        let clean = try runTool("vidx-decode", ["--json", file])
        #expect(clean.status == 0)
        for (from, when) in [(1, "opening"), (10, "decoding")] {
            let r = try Self.withFailingReads(of: file, from: from, "error=EIO", ["--json", file])
            #expect(r.status == 3, "\(r.stderr)")
            let line = try #require(try schemaCheckedLines(r.stdout).first)
            #expect(line.status == "failed")
            #expect(line.errorClass == "unreadable", "\(line.errorMessage)")
            #expect(line.errorMessage.contains("operating system failed to read the file while \(when)"), "\(line.errorMessage)")
            #expect(line.errorMessage.contains("Input/output error"))
        }
        // The same reads failing with partial results off: still unreadable, not corrupt.
        let r = try Self.withFailingReads(of: file, from: 10, "error=EIO", ["--json", "--no-partial", file])
        #expect(try schemaCheckedLines(r.stdout).first?.errorClass == "unreadable")
    }

    @Test("a read that stalls mid-file: timed_out, after the start")
    func stalledRead() throws {
        let file = try Self.bigClip()
        // From the 8th read on (well after the headers), every read takes 1.5 s.
        let r = try Self.withFailingReads(of: file, from: 8, "delay_enter=1500000", ["--json", "--timeout", "1", file])
        #expect(r.status == 3, "\(r.stderr)")
        let line = try #require(try schemaCheckedLines(r.stdout).first)
        #expect(line.status == "failed")
        #expect(line.errorClass == "timed_out", "\(line.errorMessage)")
        #expect(line.errorMessage.contains("decoding took longer than the 1 s limit"), "\(line.errorMessage)")
        #expect(!line.errorMessage.contains("the start"), "\(line.errorMessage)")
    }

    @Test("--out gives every input its own folder, whatever the inputs are named")
    func frameFoldersNeverCollide() throws {
        // Different clips (colour, length) under names that the old "<name>-2" rule mixed
        // up; the last differs only in case (one folder on a case-insensitive disk).
        let root = Clips.directory + "/names"
        var inputs: [String] = []
        for (dir, color, seconds, name) in [("a", "red", 1, "x.mp4"), ("b", "blue", 2, "x.mp4"), ("c", "lime", 3, "x.mp4-2"),
                                            ("d", "white", 4, "x.mp4"), ("e", "yellow", 5, "X.mp4")] {
            try FileManager.default.createDirectory(atPath: "\(root)/\(dir)", withIntermediateDirectories: true)
            let src = try Clips.make("names-\(color).mp4", ["-f", "lavfi", "-i", "color=c=\(color):s=64x48:r=10:d=\(seconds)",
                                                             "-c:v", "libx264", "-pix_fmt", "yuv420p"])
            let path = "\(root)/\(dir)/\(name)"
            unlink(path)
            #expect(link(src, path) == 0)
            inputs.append(path)
        }
        let out = Clips.directory + "/names-out"
        try? FileManager.default.removeItem(atPath: out)
        let r = try runTool("vidx-decode", ["--json", "--out", out, "--size", "16"] + inputs)
        #expect(r.status == 0, "\(r.stderr)")
        let folders = try FileManager.default.contentsOfDirectory(atPath: out).sorted()
        #expect(folders == ["X.mp4-5", "x.mp4", "x.mp4-2", "x.mp4-3", "x.mp4-4"])
        // Each folder holds its own input's frames: count and colour.
        let expected: [(folder: String, frames: Int, rgb: (Double, Double, Double))] = [
            ("x.mp4", 1, (255, 0, 0)), ("x.mp4-3", 2, (0, 0, 255)), ("x.mp4-2", 3, (0, 255, 0)), ("x.mp4-4", 4, (255, 255, 255)),
            ("X.mp4-5", 5, (255, 255, 0)),
        ]
        for e in expected {
            let names = try FileManager.default.contentsOfDirectory(atPath: "\(out)/\(e.folder)").sorted()
            #expect(names.count == e.frames, "\(e.folder): \(names)")
            for name in names {
                let (_, frames, _) = try MediaDecoder.decodeAll(path: "\(out)/\(e.folder)/\(name)", options: options("fps:1", size: 16))
                let m = try #require(frames.first).image.meanColor()
                #expect(abs(m.0 - e.rgb.0) < 12 && abs(m.1 - e.rgb.1) < 12 && abs(m.2 - e.rgb.2) < 12, "\(e.folder)/\(name): \(m)")
            }
        }
    }

    @Test("a full disk under --out: the record says write_failed, the run exits 1")
    func fullDisk() throws {
        // A 160 KB tmpfs in a private mount namespace (no trace outside this one command):
        // one 224 x 224 frame fits, a few do not.
        let small = try Clips.make("disk-1frame.mp4", Clips.testsrc(96, 64, rate: 25, seconds: 0.5)
                                   + ["-c:v", "libx264", "-pix_fmt", "yuv420p"])
        let big = try Clips.make("disk-8frames.mp4", Clips.testsrc(96, 64, rate: 25, seconds: 8)
                                 + ["-c:v", "libx264", "-pix_fmt", "yuv420p"])
        let mnt = Clips.directory + "/tiny-disk"
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        let script = "mount -t tmpfs -o size=160k vidx-test \"$1\" && shift && exec \"$@\""
        let r = try runCommand("unshare", ["-rm", "sh", "-c", script, "sh", mnt, try toolPath("vidx-decode"),
                                           "--json", "--out", mnt + "/out", small, big])
        try #require(!r.stderr.contains("mount:") && !r.stderr.contains("unshare:"),
                     "this test needs a private tmpfs (unshare -rm, user namespaces): \(r.stderr)")
        #expect(r.status == 1, "\(r.stderr)")
        let lines = try schemaCheckedLines(r.stdout)
        #expect(lines.map(\.status) == ["ok", "failed"])
        #expect(lines.map(\.errorClass) == [nil, "write_failed"])
        #expect(lines[1].errorMessage.contains("No space left on device"), "\(lines[1].errorMessage)")
        #expect((lines[1]["frames"] as? [Any])?.isEmpty == true)
        #expect(r.stderr.contains("vidx-decode: \(big): cannot write the sampled frames"), "\(r.stderr)")
        // Nothing was mounted here.
        #expect(try FileManager.default.contentsOfDirectory(atPath: mnt).isEmpty)
    }

    @Test("a frame that cannot be written (its name taken by a directory): write_failed, exit 1, other inputs ok")
    func frameWriteFailure() throws {
        let file = try Clips.make("cli-wf.mp4", Clips.testsrc(96, 64, rate: 25, seconds: 3)
                                  + ["-c:v", "libx264", "-pix_fmt", "yuv420p"])
        let other = try Clips.make("cli-wf-other.mp4", Clips.testsrc(96, 64, rate: 25, seconds: 2)
                                   + ["-c:v", "libx264", "-pix_fmt", "yuv420p"])
        let out = Clips.directory + "/wf-out"
        try? FileManager.default.removeItem(atPath: out)
        // Root can write anywhere, but no one can rename a file over a directory.
        try FileManager.default.createDirectory(atPath: out + "/cli-wf.mp4/frame-000025.png", withIntermediateDirectories: true)
        for json in [true, false] {
            let r = try runTool("vidx-decode", (json ? ["--json"] : []) + ["--out", out, file, other])
            #expect(r.status == 1, "\(r.stderr)")
            #expect(r.stderr.contains("vidx-decode: \(file): cannot write the sampled frames"), "\(r.stderr)")
            if json {
                let lines = try schemaCheckedLines(r.stdout)
                #expect(lines.map(\.status) == ["failed", "ok"])
                #expect(lines.map(\.errorClass) == ["write_failed", nil])
                #expect(lines[0].errorMessage.contains("frame-000025.png"), "\(lines[0].errorMessage)")
            } else {
                #expect(r.stdout.contains("\(file): failed [write_failed] cannot write the sampled frames"), "\(r.stdout)")
            }
        }
        // The other input's frames are all there.
        #expect(try FileManager.default.contentsOfDirectory(atPath: out + "/cli-wf-other.mp4").count == 2)
    }

    @Test("damaged audio makes the record partial, with the count in the audio summary")
    func audioDamageInReport() throws {
        let good = try DamageTests.mp4(faststart: true)
        let packets = try Clips.run("ffprobe", ["-v", "error", "-select_streams", "a:0", "-show_entries",
                                                "packet=size,pos", "-of", "csv=p=0", good])
            .split(separator: "\n").compactMap { line -> (Int, Int)? in
                let f = line.split(separator: ",").compactMap { Int($0) }
                return f.count == 2 ? (f[0], f[1]) : nil
            }
        let file = try Clips.patched(good, name: "cli-audio-damage.mp4") { b in
            for (size, pos) in packets[150..<153] { for i in pos..<(pos + size) { b[i] = 0xff } }
        }
        let r = try runTool("vidx-decode", ["--json", "--audio", good, file])
        #expect(r.status == 3, "\(r.stderr)")
        let lines = try schemaCheckedLines(r.stdout)
        #expect(lines.map(\.status) == ["ok", "partial"])
        #expect(lines.map(\.errorClass) == [nil, "corrupt"])
        #expect(lines[1].errorMessage.contains("audio"), "\(lines[1].errorMessage)")
        let errors = try #require((lines[1]["audio"] as? [String: Any])?["errors"] as? Int)
        #expect(errors >= 1 && errors <= 3)
        #expect((lines[0]["audio"] as? [String: Any])?["errors"] == nil)
        #expect((lines[1]["frames"] as? [Any])?.count == 6)
        #expect(try runTool("vidx-decode", ["--json", "--audio", "--no-partial", file]).status == 3)
        #expect(try runTool("vidx-decode", ["--json", file]).status == 0)
    }
}
