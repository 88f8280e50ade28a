import Foundation
import Testing
import VidxTestSupport
@testable import VidxCore

@Suite("Atomic file writes")
struct AtomicFileTests {
    let dir = makeTestDirectory("core")

    @Test("writes, then replaces, leaving no temporary files behind")
    func writeAndReplace() throws {
        let path = dir + "/a.txt"
        try AtomicFile.write("first", to: path)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "first")
        try AtomicFile.write("second, longer", to: path)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "second, longer")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["a.txt"])
    }

    @Test("a failed write names the path and keeps the old file intact")
    func failureKeepsOld() throws {
        let path = dir + "/missing-dir/b.txt"
        #expect(throws: FileWriteError.self) { try AtomicFile.write("x", to: path) }
        do { try AtomicFile.write("x", to: path) } catch let e as FileWriteError {
            #expect(e.description.contains(path))
        }
        // Replacing a directory fails at rename; the directory and its content survive.
        let target = dir + "/adir"
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        try "keep".write(toFile: target + "/inner", atomically: false, encoding: .utf8)
        #expect(throws: FileWriteError.self) { try AtomicFile.write("x", to: target) }
        #expect(try String(contentsOfFile: target + "/inner", encoding: .utf8) == "keep")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["adir"])
    }

    @Test("JSON output is stable: sorted keys")
    func stableJSON() throws {
        struct S: Encodable { var b = 1; var a = "x/y" }
        let s = String(decoding: try makeJSONEncoder().encode(S()), as: UTF8.self)
        #expect(s == #"{"a":"x/y","b":1}"#)
    }
}
