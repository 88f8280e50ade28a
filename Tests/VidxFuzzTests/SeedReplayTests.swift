import Foundation
import Testing
import VidxTestSupport

/// The seed corpora (Fuzz/make_seeds.py) through the normally built `vidx-fuzz`, which runs
/// each file through the same reader entry points as the fuzz build.
@Suite("vidx-fuzz replays every target's seeds")
struct SeedReplayTests {
    static let targets = ["shard", "safetensors", "npy", "bundle", "manifest"]

    /// One corpus directory per target, written once per test process.
    static let seeds: String = {
        let dir = makeTestDirectory("fuzz-seeds")
        do { try Python.run(["Fuzz/make_seeds.py", dir]) } catch { return "" }
        return dir
    }()

    @Test("every seed is handled without a crash; valid seeds accepted, near misses refused", arguments: targets)
    func replay(_ target: String) throws {
        let dir = Self.seeds + "/" + target
        let names = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        #expect(names.contains { $0.hasPrefix("valid-") } && names.contains { $0.hasPrefix("near-") }, "\(names)")
        let run = try runTool("vidx-fuzz", [target, dir])
        #expect(run.status == 0, "\(run.stderr)")
        let lines = run.stdout.split(separator: "\n").map(String.init)
        for name in names {
            let path = dir + "/" + name
            let line = lines.first { $0.hasPrefix("ok \(path):") || $0.hasPrefix("refused \(path):") }
            let outcome = try #require(line, "\(name) was not reported:\n\(run.stdout)")
            if name.hasPrefix("valid-") {
                #expect(outcome.hasPrefix("ok "), "\(outcome)")
            } else {
                #expect(outcome.hasPrefix("refused "), "\(outcome)")
                // The refusal is the reader's own error, naming the input.
                #expect(outcome.contains("fuzz-input"), "\(outcome)")
            }
        }
        let accepted = names.filter { $0.hasPrefix("valid-") }.count
        #expect(lines.last == "\(names.count) files: \(accepted) accepted, \(names.count - accepted) refused")
    }

    @Test("usage errors exit 2 and say what is wrong")
    func usage() throws {
        let none = try runTool("vidx-fuzz", [])
        #expect(none.status == 2 && none.stderr.contains("no target given"), "\(none.stderr)")
        let unknown = try runTool("vidx-fuzz", ["zip", "x"])
        #expect(unknown.status == 2 && unknown.stderr.contains("unknown target 'zip'"), "\(unknown.stderr)")
        let missing = try runTool("vidx-fuzz", ["npy", Self.seeds + "/none.npy"])
        #expect(missing.status == 2 && missing.stderr.contains("no such file"), "\(missing.stderr)")
    }
}
