import Foundation
import Testing
import VidxCore
import VidxTestSupport
@testable import VidxPipeline

/// The pipeline's own files against their schemas: the vocabularies agree with the Swift
/// enums, and the readers refuse what the schemas refuse (the outputs of real runs are
/// validated by PipelineRunTests).
@Suite("Pipeline files and their schemas")
struct PipelineSchemaTests {
    @Test("failure classes: the quarantine's and the run report's are the whole vocabulary")
    func classes() throws {
        let all = FailureClass.pipeline.map(\.rawValue)
        #expect(try schemaEnum("quarantine.schema.json", ["properties", "class"]) == all)
        #expect(try schemaEnum("run-report.schema.json", ["properties", "videos", "properties", "failed_by_class", "propertyNames"]) == all)
        #expect(try schemaEnum("run-report.schema.json", ["properties", "quarantine", "properties", "by_class", "propertyNames"]) == all)
        #expect(try schemaEnum("plan-failures.schema.json", ["properties", "class"]) == [FailureClass.notFound, .unreadable].map(\.rawValue))
    }

    static let hash = String(repeating: "ab", count: 32)

    static let entry = #"{"id":"a/clip.mp4","path":"/videos/a/clip.mp4","content_hash":"\#(hash)","class":"corrupt","message":"/videos/a/clip.mp4: invalid data","attempts":1,"first_seen":"2026-12-01T02:00:00Z","last_seen":"2026-12-01T02:00:00Z"}"#

    static let entryMutations: [(name: String, json: String, valid: Bool)] = [
        ("as written", entry, true),
        ("unreadable file: empty hash", entry.replacingOccurrences(of: hash, with: ""), true),
        ("unknown field", entry.replacingOccurrences(of: #""attempts":1"#, with: #""attempts":1,"tries":1"#), false),
        ("unknown class", entry.replacingOccurrences(of: #""corrupt""#, with: #""weird""#), false),
        ("zero attempts", entry.replacingOccurrences(of: #""attempts":1"#, with: #""attempts":0"#), false),
        ("short hash", entry.replacingOccurrences(of: hash, with: "abcd"), false),
        ("uppercase hash", entry.replacingOccurrences(of: hash, with: hash.uppercased()), false),
        ("no message", entry.replacingOccurrences(of: #","message":"/videos/a/clip.mp4: invalid data""#, with: ""), false),
    ]

    @Test("quarantine entries: the reader refuses what the schema refuses", arguments: entryMutations)
    func quarantineEntries(_ m: (name: String, json: String, valid: Bool)) throws {
        let schemaValid = (try? Python.call("validate_json_text", m.json, "quarantine.schema.json")) != nil
        #expect(schemaValid == m.valid, "\(m.name): the schema says \(schemaValid)")
        let swiftValid = (try? JSONDecoder().decode(Quarantine.Entry.self, from: Data(m.json.utf8))) != nil
        #expect(swiftValid == m.valid, "\(m.name): the reader says \(swiftValid)")
    }

    static let unit = "u0123456789abcdef01234567"
    static let record = #"{"format":"vidx-unit-record","format_version":1,"unit":"\#(unit)","bundle_fingerprint":"\#(hash)","config_sha256":"\#(hash)","tool":"vidx-pipeline 0.1.0","features":{"file":"\#(unit).features.safetensors","bytes":10,"sha256":"\#(hash)"},"stats":{"file":"\#(unit).stats.json","bytes":10,"sha256":"\#(hash)"},"codes":{"file":"\#(unit).codes.safetensors","bytes":10,"sha256":"\#(hash)"},"crashed":[],"counts":{"videos":2,"ok":1,"partial":0,"failed":1},"frames":60,"audio_seconds":2.0,"seconds":{"extract":1.5,"encode":0.25}}"#

    static let recordMutations: [(name: String, json: String, valid: Bool)] = [
        ("as written", record, true),
        ("every video crashed: no outputs", record.replacing(#/"features":.*"crashed":\[\]/#,
            with: #""crashed":[{"id":"x","path":"/x","content_hash":"","message":"signal 11"}]"#), true),
        ("another format version", record.replacingOccurrences(of: #""format_version":1"#, with: #""format_version":2"#), false),
        ("unknown field", record.replacingOccurrences(of: #""frames":60"#, with: #""frames":60,"extra":1"#), false),
        ("codes without features", record.replacing(#/"features":\{[^}]*\},/#, with: ""), false),
        ("no crashed list", record.replacingOccurrences(of: #""crashed":[],"#, with: ""), false),
    ]

    @Test("unit records: the reader refuses what the schema refuses", arguments: recordMutations)
    func unitRecords(_ m: (name: String, json: String, valid: Bool)) throws {
        let schemaValid = (try? Python.call("validate_json_text", m.json, "unit-record.schema.json")) != nil
        #expect(schemaValid == m.valid, "\(m.name): the schema says \(schemaValid)")
        let swiftValid = (try? JSONDecoder().decode(UnitRecord.self, from: Data(m.json.utf8))) != nil
        #expect(swiftValid == m.valid, "\(m.name): the reader says \(swiftValid)")
    }
}
