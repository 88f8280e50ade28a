import Foundation
import Testing
import VidxCore
import VidxTestSupport
@testable import VidxPipeline

@Suite("Pipeline configuration and quarantine rules")
struct PipelineConfigTests {
    func parse(_ json: String) throws -> PipelineConfig {
        try JSONDecoder().decode(PipelineConfig.self, from: Data(json.utf8))
    }

    @Test("missing fields take the defaults; Pipelines/default.json parses")
    func defaults() throws {
        #expect(try parse("{}") == PipelineConfig())
        let shipped = try PipelineConfig.load(path: Python.root + "/Pipelines/default.json")
        #expect(shipped.unitSize == 32 && shipped.shards == 8)
    }

    @Test("unknown fields and out-of-range values are refused, naming the field", arguments: [
        (#"{"unit_sise": 4}"#, "unit_sise"),
        (#"{"unit_size": 0}"#, "unit_size"),
        (#"{"max_shrink": 1.5}"#, "max_shrink"),
        (#"{"duplicates": "maybe"}"#, "duplicates"),
        (#"{"extensions": ["mp4"]}"#, "extensions"),
        (#"{"slurm": {"partiton": "cpu"}}"#, "partiton"),
        (#"{"slurm": {"array_cap": 0}}"#, "array_cap"),
        (#"{"slurm": {"time_limit": "2 hours"}}"#, "time_limit"),
        (#"{"slurm": {"partition": "a,b"}}"#, "partition"),
    ])
    func refused(json: String, field: String) throws {
        let dir = makeTestDirectory("config")
        let path = dir + "/c.json"
        try Data(json.utf8).write(to: URL(fileURLWithPath: path))
        do {
            _ = try PipelineConfig.load(path: path)
            Issue.record("accepted \(json)")
        } catch {
            #expect("\(error)".contains(path) && "\(error)".contains(field), "\(error)")
        }
    }

    @Test("every configuration field is in the JSON Schema, and only those")
    func schemaKeys() throws {
        let schema = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Python.root + "/Schemas/pipeline-config.schema.json"))) as! [String: Any]
        let properties = (schema["properties"] as! [String: Any]).keys.sorted()
        #expect(properties == PipelineConfig.CodingKeys.allCases.map(\.rawValue).sorted())
        #expect(schema["additionalProperties"] as? Bool == false)
        let slurm = (schema["properties"] as! [String: Any])["slurm"] as! [String: Any]
        #expect((slurm["properties"] as! [String: Any]).keys.sorted() == PipelineConfig.Slurm.CodingKeys.allCases.map(\.rawValue).sorted())
        #expect(slurm["additionalProperties"] as? Bool == false)
    }

    @Test("only the settings that change a unit's outputs change the units' settings hash")
    func unitSettings() {
        let base = PipelineConfig()
        var other = base
        other.unitSize = 7
        other.shards = 3
        other.maxAttempts = 9
        other.slurm.arrayCap = 5
        #expect(other.unitSettingsSha256 == base.unitSettingsSha256 && other.sha256 != base.sha256)
        for change in [{ (c: inout PipelineConfig) in c.cnnBatch = 8 }, { $0.encodeBatch = 8 }, { $0.timeoutSeconds = 5 },
                       { $0.embeddings = true }] {
            var c = base
            change(&c)
            #expect(c.unitSettingsSha256 != base.unitSettingsSha256)
        }
    }

    @Test("changing an extraction setting changes the units' key; the unit size does not")
    func extractionKey() {
        var a = PipelineConfig(), b = PipelineConfig()
        b.unitSize = 7
        #expect(a.extractionKey == b.extractionKey)
        a.timeoutSeconds = 5
        #expect(a.extractionKey != b.extractionKey)
    }

    @Test("quarantine: transient failures are retried up to max_attempts; permanent ones wait for new content")
    func decisions() {
        var q = Quarantine()
        let h1 = String(repeating: "a", count: 64), h2 = String(repeating: "b", count: 64)
        q.recordFailure(id: "t", path: "/t", contentHash: h1, class: .timedOut, message: "slow", now: "2026-01-01T00:00:00Z")
        q.recordFailure(id: "p", path: "/p", contentHash: h1, class: .corrupt, message: "bad", now: "2026-01-01T00:00:00Z")
        q.recordFailure(id: "m", path: "/m", contentHash: "", class: .notFound, message: "gone", now: "2026-01-01T00:00:00Z")
        #expect(q.decision(id: "t", contentHash: h1, maxAttempts: 2) == .retry(attempts: 1))
        q.recordFailure(id: "t", path: "/t", contentHash: h1, class: .timedOut, message: "slow", now: "2026-01-02T00:00:00Z")
        #expect(q["t"]?.attempts == 2 && q["t"]?.firstSeen == "2026-01-01T00:00:00Z" && q["t"]?.lastSeen == "2026-01-02T00:00:00Z")
        #expect(q.decision(id: "t", contentHash: h1, maxAttempts: 2) == .skip(.timedOut))
        #expect(q.decision(id: "p", contentHash: h1, maxAttempts: 9) == .skip(.corrupt))
        #expect(q.decision(id: "p", contentHash: h2, maxAttempts: 9) == .plan)
        #expect(q.decision(id: "m", contentHash: h2, maxAttempts: 9) == .plan)
        #expect(q.decision(id: "x", contentHash: h2, maxAttempts: 9) == .plan)
        #expect(q.remove(id: "p") && !q.remove(id: "p"))
    }

    @Test("the quarantine file round-trips, sorted by id bytes, and refuses unknown fields")
    func quarantineFile() throws {
        var q = Quarantine()
        for id in ["b", "a", "é"] {
            q.recordFailure(id: id, path: "/\(id)", contentHash: "", class: .unreadable, message: "EIO", now: "2026-01-01T00:00:00Z")
        }
        let dir = makeTestDirectory("quarantine")
        try q.write(path: dir + "/q.jsonl")
        let back = try Quarantine.read(path: dir + "/q.jsonl")
        #expect(back.sorted == q.sorted && back.sorted.map(\.id) == ["a", "b", "é"])
        try Data(#"{"id":"a","path":"","content_hash":"","class":"corrupt","message":"","attempts":1,"first_seen":"","last_seen":"","x":1}"#.utf8)
            .write(to: URL(fileURLWithPath: dir + "/bad.jsonl"))
        #expect(throws: (any Error).self) { try Quarantine.read(path: dir + "/bad.jsonl") }
    }
}
