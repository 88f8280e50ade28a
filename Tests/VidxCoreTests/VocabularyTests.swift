import Foundation
import Testing
import VidxCore
import VidxTestSupport

@Suite("One vocabulary: every schema's enum equals the Swift enum")
struct VocabularyTests {
    @Test("statuses: video records, decode reports, extract stats")
    func statuses() throws {
        let swift = VideoStatus.allCases.map(\.rawValue)
        #expect(try schemaEnum("video-record.schema.json", ["properties", "status"]) == swift)
        #expect(try schemaEnum("decode-report.schema.json", ["properties", "status"]) == swift)
        #expect(try schemaEnum("extract-stats.schema.json", ["items", "properties", "status"]) == swift)
    }

    @Test("failure classes: all of them in video records, each stage's own in its report")
    func classes() throws {
        #expect(try schemaEnum("video-record.schema.json", ["properties", "error", "oneOf", "*", "properties", "class"])
                == FailureClass.allCases.map(\.rawValue))
        #expect(try schemaEnum("decode-report.schema.json", ["$defs", "error", "properties", "class"])
                == FailureClass.decodeReport.map(\.rawValue))
        #expect(try schemaEnum("extract-stats.schema.json", ["items", "properties", "error", "oneOf", "*", "properties", "class"])
                == FailureClass.extract.map(\.rawValue))
        // Each stage's list is part of the whole, and the encoder's own classes are in a codes file's.
        for list: [FailureClass] in [FailureClass.decode, FailureClass.decodeReport, FailureClass.extract, FailureClass.encoder, FailureClass.encode] {
            #expect(Set(list).isSubset(of: Set(FailureClass.allCases)))
        }
        #expect(Set(FailureClass.encoder).isSubset(of: Set(FailureClass.encode)))
        #expect(FailureClass.allCases.filter(\.isTransient) == [.unreadable, .timedOut])
    }

    @Test("expert timing: the bundle schema's")
    func timing() throws {
        #expect(try schemaEnum("model-bundle.schema.json", ["properties", "experts", "items", "properties", "timing"])
                == ExpertTiming.allCases.map(\.rawValue))
    }

    @Test("video records: the reader refuses what the schema refuses, and the writer's records meet it",
          arguments: recordMutations)
    func records(_ m: (name: String, json: String, valid: Bool)) throws {
        let schemaValid: Bool
        do {
            try Python.call("validate_json_text", m.json, "video-record.schema.json")
            schemaValid = true
        } catch {
            schemaValid = false
        }
        #expect(schemaValid == m.valid, "\(m.name): the schema says \(schemaValid)")
        // The reader: JSON decoding, then the file-level rules (StageFiles.check) via a features file.
        var swiftValid = false
        if let record = try? JSONDecoder().decode(VideoRecord.self, from: Data(m.json.utf8)) {
            let dir = makeTestDirectory("records")
            var writer = FeaturesWriter(bundleFingerprint: "", extractors: [:])
            writer.add(record, experts: [:])
            try writer.write(to: dir + "/f.safetensors")
            swiftValid = (try? FeaturesFile(path: dir + "/f.safetensors")) != nil
            if swiftValid {  // what the writer wrote round-trips unchanged
                #expect(try FeaturesFile(path: dir + "/f.safetensors").videos == [record], "\(m.name)")
            }
        }
        #expect(swiftValid == schemaValid, "\(m.name): the reader says \(swiftValid), the schema \(schemaValid)")
    }
}

let recordMutations: [(name: String, json: String, valid: Bool)] = {
    let hash = String(repeating: "ab", count: 32)
    return [
        ("ok", #"{"id":"v1","content_hash":"\#(hash)","status":"ok","error":null}"#, true),
        ("unknown hash", #"{"id":"v1","content_hash":"","status":"ok","error":null}"#, true),
        ("partial with its damage", #"{"id":"v1","content_hash":"","status":"partial","error":{"class":"corrupt","message":"x"}}"#, true),
        ("failed, every class", #"{"id":"v1","content_hash":"","status":"failed","error":{"class":"no_features","message":"x"}}"#, true),
        ("empty id", #"{"id":"","content_hash":"","status":"ok","error":null}"#, false),
        ("status done", #"{"id":"v1","content_hash":"","status":"done","error":null}"#, false),
        ("failed without an error", #"{"id":"v1","content_hash":"","status":"failed","error":null}"#, false),
        ("an unknown class", #"{"id":"v1","content_hash":"","status":"failed","error":{"class":"oops","message":"x"}}"#, false),
        ("an unknown field", #"{"id":"v1","content_hash":"","status":"ok","error":null,"extra":1}"#, false),
        ("an unknown error field", #"{"id":"v1","content_hash":"","status":"failed","error":{"class":"corrupt","message":"x","at":2}}"#, false),
        ("hash upper case", #"{"id":"v1","content_hash":"\#(hash.uppercased())","status":"ok","error":null}"#, false),
        ("hash short", #"{"id":"v1","content_hash":"abc","status":"ok","error":null}"#, false),
        ("missing error key", #"{"id":"v1","content_hash":"","status":"ok"}"#, false),
    ]
}()
