import Foundation
import Testing
import VidxCore
import VidxIndex
import VidxTestSupport
@testable import VidxPipeline

/// A corpus of tiny generated clips, an index and a work directory in a fresh temporary
/// directory, and `vidx-pipeline run` on them.
struct PipelineFixture {
    let root: String
    var corpus: String { root + "/in" }
    var index: String { root + "/index" }
    var work: String { root + "/work" }
    var config: String { root + "/config.json" }

    /// The corpus: `a/one.mp4` (with sound), `a/two.mp4` (no sound), `b/one.mp4` (same
    /// file name in another folder: another video) and `b/broken.mp4` (cut short).
    init(_ label: String, unitSize: Int = 2, extra: String = "") throws {
        root = makeTestDirectory(label)
        for d in ["a", "b"] { try AtomicFile.makeDirectory(corpus + "/" + d) }
        try Self.clip(corpus + "/a/one.mp4", "testsrc2", seconds: 3, audio: true)
        try Self.clip(corpus + "/a/two.mp4", "mandelbrot", seconds: 2, audio: false)
        try Self.clip(corpus + "/b/one.mp4", "smptebars", seconds: 2, audio: true)
        let whole = read(corpus + "/a/one.mp4")
        try whole.prefix(3000).write(to: URL(fileURLWithPath: corpus + "/b/broken.mp4"))
        try Data(#"{"unit_size": \#(unitSize), "shards": 2, "max_shrink": 0.5\#(extra)}"#.utf8)
            .write(to: URL(fileURLWithPath: config))
    }

    /// A small H.264 clip of a lavfi source (`-t` seconds, 160x120, 10 fps).
    static func clip(_ path: String, _ source: String, seconds: Int, audio: Bool, frequency: Int = 440) throws {
        var args = ["-f", "lavfi", "-i", "\(source)=size=160x120:rate=10", "-t", "\(seconds)"]
        if audio { args += ["-f", "lavfi", "-i", "sine=frequency=\(frequency):duration=\(seconds)"] }
        args += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
        if audio { args += ["-c:a", "aac", "-shortest"] }
        try ffmpeg(args + [path])
    }

    func runArguments(mode: String = "index", jobs: Int = 2, deletions: Bool = false, work: String? = nil,
                      inputs: [String]? = nil, metrics: String? = nil, index: String? = nil, bundle: String? = nil) -> [String] {
        var args = ["run", "--mode", mode, "--index", index ?? self.index, "--work", work ?? self.work, "--bundle", bundle ?? Models.starter,
                    "--config", config, "--jobs", "\(jobs)", "--cnn", Models.cnn]
        for i in inputs ?? [corpus] { args += ["--input", i] }
        if deletions { args.append("--deletions") }
        if let metrics { args += ["--metrics-file", metrics] }
        return args
    }

    /// Runs the pipeline; the environment points it at the test build's tools.
    @discardableResult
    func run(mode: String = "index", jobs: Int = 2, deletions: Bool = false, work: String? = nil, inputs: [String]? = nil,
             metrics: String? = nil, environment: [String: String] = [:]) throws -> (status: Int32, stdout: String, stderr: String) {
        try runTool("vidx-pipeline", runArguments(mode: mode, jobs: jobs, deletions: deletions, work: work, inputs: inputs,
                                                  metrics: metrics),
                    timeout: 600, environment: Self.environment(environment))
    }

    /// The test's environment plus `extra`. The tools find vidx-extract beside themselves.
    static func environment(_ extra: [String: String] = [:]) throws -> [String: String] {
        ProcessInfo.processInfo.environment.merging(extra) { $1 }
    }

    func report(work: String? = nil) throws -> RunReport {
        try JSONDecoder().decode(RunReport.self, from: read((work ?? self.work) + "/RUN.json"))
    }

    func quarantine(work: String? = nil) throws -> Quarantine {
        try Quarantine.read(path: WorkLayout(work ?? self.work).quarantine)
    }

    /// CURRENT and every file of every generation: the bytes search nodes get.
    func indexBytes(_ index: String? = nil) -> [String: Data] {
        let dir = index ?? self.index
        var out: [String: Data] = ["CURRENT": read(dir + "/CURRENT")]
        for g in listing(dir) where g.hasPrefix("g") {
            for (name, bytes) in generationFiles(dir + "/" + g) { out[g + "/" + name] = bytes }
        }
        return out
    }

    /// Validates the work directory's files against their schemas: the plan, every unit
    /// record, the quarantine, the plan's failures (when it has some) and the run reports.
    func validateWorkFiles() throws {
        let layout = WorkLayout(work)
        try Python.call("validate_json", layout.plan, "plan.schema.json")
        try Python.call("validate_json", layout.latestRun, "run-report.schema.json")
        for name in try FileManager.default.contentsOfDirectory(atPath: layout.units) where name.hasSuffix(".unit.json") {
            try Python.call("validate_json", layout.units + "/" + name, "unit-record.schema.json")
        }
        if FileManager.default.fileExists(atPath: layout.quarantine) {
            try Python.call("validate_json_lines", layout.quarantine, "quarantine.schema.json")
        }
        if FileManager.default.fileExists(atPath: layout.planFailures) {
            try Python.call("validate_json_lines", layout.planFailures, "plan-failures.schema.json")
        }
    }

    /// The live external ids (vidx-verify --list is not there: search each id by example).
    func isLive(_ id: String) throws -> Bool {
        let r = try runTool("vidx-search", [index, "--like", id, "--k", "1"])
        return r.status == 0 && r.stdout.contains("\"external_id\":\"\(id)\"")
    }
}

@Suite("The pipeline end to end: vidx-pipeline run on generated clips", .serialized)
struct PipelineRunTests {
    init() throws {
        try #require(Models.ready, "make models could not build models/: \(Models.problem ?? "")")
    }

    @Test("index, then nightly: a broken file is quarantined (exit 3), a second run changes nothing (exit 0); a changed file supersedes its entry and a deleted one is tombstoned")
    func lifecycle() throws {
        // No compaction here (PipelineRunTests.compaction): the third run's append is kept.
        let f = try PipelineFixture("pipeline-life", extra: #", "compact_after_dead_share": 0.9"#)
        let first = try f.run(deletions: true)
        #expect(first.status == 3, "\(first.stderr)")
        let r1 = try f.report()
        #expect(r1.result == "published_with_failures" && r1.exitStatus == 3)
        #expect(r1.videos.ok + r1.videos.partial == 3 && r1.videos.failed == 1 && r1.videos.failedByClass == ["corrupt": 1])
        #expect(r1.plan.new == 4 && r1.publication.generation == "g000001" && r1.live?.videos == 3)
        let q1 = try f.quarantine()
        #expect(q1.count == 1 && q1["b/broken.mp4"]?.class == .corrupt && q1["b/broken.mp4"]?.attempts == 1)
        #expect(try runTool("vidx-verify", [f.index]).status == 0)
        // Ids come from the path relative to the scanned root: two one.mp4 are two videos.
        #expect(try f.isLive("a/one.mp4") && f.isLive("b/one.mp4") && f.isLive("a/two.mp4"))
        try f.validateWorkFiles()

        // The same inputs again: nothing to do, nothing published, exit 0; the broken file is
        // not retried (a permanent failure of the same content).
        let before = f.indexBytes()
        let second = try f.run(mode: "nightly")
        #expect(second.status == 0, "\(second.stderr)")
        let r2 = try f.report()
        #expect(r2.result == "nothing_to_do" && r2.plan.unchanged == 3 && r2.plan.quarantined == 1 && r2.units.planned == 0)
        #expect(f.indexBytes() == before)
        #expect(try f.quarantine()["b/broken.mp4"]?.attempts == 1)

        // A changed file, a new one and a deleted one.
        try PipelineFixture.clip(f.corpus + "/b/one.mp4", "cellauto", seconds: 2, audio: true, frequency: 660)
        try PipelineFixture.clip(f.corpus + "/a/three.mp4", "life", seconds: 2, audio: false)
        try FileManager.default.removeItem(atPath: f.corpus + "/a/two.mp4")
        let third = try f.run(deletions: true)
        #expect(third.status == 0, "\(third.stderr)")
        let r3 = try f.report()
        #expect(r3.plan.new == 1 && r3.plan.changed == 1 && r3.plan.removed == 1 && r3.plan.unchanged == 1)
        #expect(r3.publication.mode == "append" && r3.publication.generation == "g000002" && r3.live?.videos == 3)
        #expect(try f.isLive("a/three.mp4") && !f.isLive("a/two.mp4"))
        let g = try IndexGeneration(indexDirectory: f.index)
        let row = try #require(g.locate(externalID: "b/one.mp4"))
        #expect(SHA256Digest.hexString(g.shards[row.shard].contentHash(at: row.row)) == (try SHA256Digest.hex(fileAt: f.corpus + "/b/one.mp4")))
        #expect(g.counts.superseded == 1 && g.counts.deleted == 1)
        #expect(try runTool("vidx-verify", [f.index]).status == 0)
        try f.validateWorkFiles()
    }

    @Test("a rebuild with a retrained bundle (same experts and extractors) re-encodes the kept features, decoding nothing, into the shards a fresh run with that bundle writes")
    func rebuildReusesFeatures() throws {
        let f = try PipelineFixture("pipeline-reuse")
        #expect(try f.run().status == 3)
        let retrained = f.root + "/retrained"
        try Python.call("retrained_bundle", Models.starter, retrained, "3")
        let env = try PipelineFixture.environment()
        let rebuild = try runTool("vidx-pipeline", f.runArguments(mode: "rebuild", bundle: retrained), timeout: 600, environment: env)
        #expect(rebuild.status == 0, "\(rebuild.stderr)")
        let r = try f.report()
        #expect(r.plan.featuresReused == 3 && r.frames == 0 && r.audioSeconds == 0, "\(r.plan)")
        #expect(r.publication.mode == "build" && r.publication.generation == "g000002" && r.live?.videos == 3)
        let plan = try PlanFile.read(WorkLayout(f.work))
        #expect(!plan.units.isEmpty && plan.units.allSatisfy { $0.featuresFrom != nil })
        for u in plan.units {
            let record = try JSONDecoder().decode(UnitRecord.self, from: read(WorkLayout(f.work).record(u.name)))
            #expect(record.featuresFrom == u.featuresFrom && record.seconds.extract == 0)
        }
        try f.validateWorkFiles()
        #expect(try runTool("vidx-verify", [f.index]).status == 0)

        // From nothing with the retrained bundle: the same shards and codebooks.
        let fresh = try runTool("vidx-pipeline", f.runArguments(work: f.root + "/fresh-work", index: f.root + "/fresh-index",
                                                                  bundle: retrained), timeout: 600, environment: env)
        #expect(fresh.status == 3, "\(fresh.stderr)")
        let rebuilt = generationFiles(f.index + "/g000002").filter { $0.key != IndexManifest.fileName }
        let scratch = generationFiles(f.root + "/fresh-index/g000001").filter { $0.key != IndexManifest.fileName }
        #expect(rebuilt.count > 2 && rebuilt == scratch)
        // And the codes differ from the first bundle's: the features were really re-encoded.
        let first = generationFiles(f.index + "/g000001").filter { $0.key != IndexManifest.fileName }
        #expect(first != rebuilt)
    }

    @Test("an append past compact_after_dead_share is compacted into fresh base shards")
    func compaction() throws {
        let f = try PipelineFixture("pipeline-compact", extra: #", "compact_after_dead_share": 0.2"#)
        #expect(try f.run().status == 3)
        try PipelineFixture.clip(f.corpus + "/a/two.mp4", "rgbtestsrc", seconds: 2, audio: false)
        let second = try f.run()
        #expect(second.status == 0, "\(second.stderr)")
        let r = try f.report()
        // The append (g000002) supersedes one of four entries (25 % > 20 %): compacted as g000003.
        #expect(r.publication.mode == "append" && r.publication.generation == "g000003", "\(r.publication)")
        #expect(r.publication.compacted?.contains("compact_after_dead_share") == true)
        let g = try IndexGeneration(indexDirectory: f.index)
        #expect(g.name == "g000003" && g.counts.live == 3 && g.counts.superseded == 0 && g.shards.count == 2)
        #expect(try runTool("vidx-verify", [f.index]).status == 0)
    }

    @Test("-j 1 and -j 4, and another work directory, give the same index bytes")
    func deterministic() throws {
        let f = try PipelineFixture("pipeline-j", unitSize: 1)
        #expect(try f.run(jobs: 1).status == 3)
        let one = f.indexBytes()
        try FileManager.default.removeItem(atPath: f.index)
        #expect(try f.run(jobs: 4, work: f.root + "/other-work").status == 3)
        #expect(f.indexBytes() == one)
        #expect(one.count > 3)
    }

    @Test("a staged build (partition and shard steps, as Slurm array tasks run them) publishes the bytes of a build in one process; with a step missing the publisher builds in-process, naming the step")
    func stagedPublication() throws {
        let f = try PipelineFixture("pipeline-staged", unitSize: 1)
        #expect(try f.run().status == 3)
        let reference = f.indexBytes()
        let work = WorkLayout(f.work)
        let plan = try PlanFile.read(work)
        let codes = Publisher.codesFiles(Publisher.unitStates(plan: plan, work: work), work: work)
        #expect(codes.count == 4)  // one per clip at unit size 1: the broken clip's unit has a codes file too, with the video failed

        func publish(shards: [Int]) throws -> (RunReport, [String]) {
            try FileManager.default.removeItem(atPath: f.index)
            try Slurm.prepareStage(work: work, codes: codes)
            for k in 0..<2 { try Slurm.stagePartition(work: work, part: k, of: 2) }
            for s in shards { try Slurm.stageShard(work: work, shard: s) }
            nonisolated(unsafe) var notes: [String] = []
            let report = try Publisher(work: work, stage: Slurm.stageDirectory(work), note: { notes.append($0) }).run()
            return (report, notes)
        }

        let (staged, _) = try publish(shards: [0, 1])
        #expect(staged.publication.staged == true && staged.exitStatus == 3, "\(staged.publication)")
        #expect(f.indexBytes() == reference)
        #expect(!FileManager.default.fileExists(atPath: Slurm.stageDirectory(work)), "the published stage is removed")
        try Python.call("validate_json", work.latestRun, "run-report.schema.json")

        let (fallback, notes) = try publish(shards: [0])
        #expect(fallback.publication.staged == false && fallback.publication.generation != nil, "\(fallback.publication)")
        #expect(notes.contains { $0.contains("shard tasks 1 did not finish") }, "\(notes)")
        #expect(f.indexBytes() == reference)
    }

    @Test("a second run while one holds the index lock exits 75 at once, naming the holder")
    func lockHeld() throws {
        let f = try PipelineFixture("pipeline-lock")
        let lock = try IndexLock(index: f.index, command: ["the-test"])
        defer { lock.release() }
        let r = try f.run()
        #expect(r.status == 75)
        #expect(r.stderr.contains("pid \(getpid())") && r.stderr.contains("the-test"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: f.work + "/plan.json"))
    }

    @Test("kill -9 at the k-th rename of a run, then the same command: the index equals an uninterrupted run's")
    func killAndResume() throws {
        if let missing = straceMissing { Issue.record("\(missing)"); return }
        let clean = try PipelineFixture("pipeline-clean", unitSize: 1)
        #expect(try clean.run().status == 3)
        let expected = clean.indexBytes()
        let counted = try PipelineFixture("pipeline-count", unitSize: 1)
        let (_, renames) = try syscallCount("vidx-pipeline", counted.runArguments(), of: "rename")
        #expect(renames > 10)
        // Kill points spread over the run: planning, units, publication.
        let points = Array(Set([1, 2, renames / 4, renames / 2, (3 * renames) / 4, renames - 2, renames - 1])).filter { $0 >= 1 }.sorted()
        for k in points {
            let f = try PipelineFixture("pipeline-kill-\(k)", unitSize: 1)
            _ = try runKilled("vidx-pipeline", f.runArguments(), at: k, of: "rename")
            let resumed = try f.run()
            // 3 while the broken file's failure is still news; 0 when the killed run had
            // already published and quarantined it.
            #expect(resumed.status == 3 || resumed.status == 0, "kill at rename \(k): \(resumed.stderr)")
            #expect(f.indexBytes() == expected, "kill at rename \(k): the resumed index differs")
            let leftovers = try FileManager.default.subpathsOfDirectory(atPath: f.work).filter {
                AtomicFile.isTemporaryName(($0 as NSString).lastPathComponent)
            }
            #expect(leftovers.isEmpty, "kill at rename \(k): temporaries left: \(leftovers)")
        }
    }

    @Test("a damaged unit record, a damaged output and a stale temporary are found and the unit redone")
    func damagedLeftovers() throws {
        let f = try PipelineFixture("pipeline-damage", unitSize: 1)
        let clean = try PipelineFixture("pipeline-damage-clean", unitSize: 1)
        #expect(try clean.run().status == 3)
        // Plan and run the units by hand (a run killed before publishing), then damage them.
        let env = try PipelineFixture.environment()
        let plan = try runTool("vidx-plan", ["--input", f.corpus, "--index", f.index, "--work", f.work, "--bundle", Models.starter,
                                             "--config", f.config], environment: env)
        #expect(plan.status == 0, "\(plan.stderr)")
        let units = try String(contentsOfFile: f.work + "/units.list", encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(units.count == 4)
        for u in units {
            let r = try runTool("vidx-pipeline", ["unit", "--work", f.work, "--cnn", Models.cnn, u], environment: env)
            #expect(r.status == 0, "\(r.stderr)")
        }
        let layout = WorkLayout(f.work)
        var record = read(layout.record(units[0]))
        record[record.count / 2] ^= 0x20
        try record.write(to: URL(fileURLWithPath: layout.record(units[0])))
        var codes = read(layout.codes(units[1]))
        codes[codes.count - 1] ^= 0xFF
        try codes.write(to: URL(fileURLWithPath: layout.codes(units[1])))
        let stale = layout.units + "/.\(units[2]).features.safetensors.tmp-1-2"
        try Data("half".utf8).write(to: URL(fileURLWithPath: stale))
        let r = try f.run()
        #expect(r.status == 3, "\(r.stderr)")
        #expect(r.stderr.contains(units[1]) && r.stderr.contains("SHA-256"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: stale))
        #expect(f.indexBytes() == clean.indexBytes())
        #expect(try f.report().units.done == 4)
    }

    @Test("a video that crashes the extract process is quarantined as crashed; the rest of its unit is indexed")
    func crashIsolation() throws {
        if let missing = straceMissing { Issue.record("\(missing)"); return }
        let f = try PipelineFixture("pipeline-crash", unitSize: 4, extra: #", "extract_workers": 2"#)
        // strace delivers SIGSEGV to the process that opens this file: a decoder crash.
        let launcher = "strace -f -qq -o /dev/null -P \(f.corpus)/a/two.mp4 -e trace=openat -e inject=openat:signal=SIGSEGV"
        let r = try f.run(environment: ["VIDX_EXTRACT_LAUNCHER": launcher])
        #expect(r.status == 3, "\(r.stderr)")
        let report = try f.report()
        #expect(report.videos.failedByClass == ["corrupt": 1, "crashed": 1], "\(report.videos)")
        #expect(report.units.done == 1 && report.live?.videos == 2)
        #expect(try f.quarantine()["a/two.mp4"]?.class == .crashed)
        #expect(try f.isLive("a/one.mp4") && f.isLive("b/one.mp4"))
    }

    @Test("a file that cannot be read (a FIFO in an upload list) is quarantined as unreadable and indexed once readable")
    func transientRetried() throws {
        let f = try PipelineFixture("pipeline-retry")
        let list = f.root + "/uploads.jsonl"
        let path = f.root + "/later.mp4"
        #expect(mkfifo(path, 0o644) == 0)
        try Data((#"{"id": "up/1", "path": "\#(f.corpus)/a/one.mp4"}"# + "\n" + #"{"id": "up/later", "path": "later.mp4"}"# + "\n").utf8)
            .write(to: URL(fileURLWithPath: list))
        let first = try f.run(mode: "nightly", inputs: [list])
        #expect(first.status == 3, "\(first.stderr)")
        #expect(try f.quarantine()["up/later"]?.class == .unreadable)
        #expect(try f.report().videos.failedByClass == ["unreadable": 1])
        try FileManager.default.removeItem(atPath: path)
        try FileManager.default.copyItem(atPath: f.corpus + "/a/two.mp4", toPath: path)
        let second = try f.run(mode: "nightly", inputs: [list])
        #expect(second.status == 0, "\(second.stderr)")
        #expect(try f.quarantine().count == 0)
        #expect(try f.isLive("up/later") && f.isLive("up/1"))
        #expect(try f.report().plan.unchanged == 1 && f.report().plan.new == 1)
    }
}
