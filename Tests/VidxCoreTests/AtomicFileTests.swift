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

    @Test("writeAll: many files in several directories with one sync; a failure renames none and leaves no temporaries")
    func writeAll() throws {
        let sub = dir + "/sub"
        try AtomicFile.makeDirectory(sub)
        try AtomicFile.write("old", to: dir + "/0.txt")
        let files = (0..<20).map { i in (data: Data("file \(i)".utf8), path: (i % 2 == 0 ? dir : sub) + "/\(i).txt") }
        try AtomicFile.writeAll(files)
        for f in files { #expect(read(f.path) == f.data) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).count == 11)   // 10 files and sub/
        #expect(try FileManager.default.contentsOfDirectory(atPath: sub).count == 10)
        // One destination cannot be written (its directory is missing): nothing is renamed.
        let bad = files.map { (data: Data("new".utf8), path: $0.path) } + [(data: Data("x".utf8), path: dir + "/missing/x.txt")]
        do {
            try AtomicFile.writeAll(bad)
            Issue.record("writeAll into a missing directory succeeded")
        } catch let e as FileWriteError {
            #expect(e.description.contains(dir + "/missing/x.txt"))
        }
        for f in files { #expect(read(f.path) == f.data) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).allSatisfy { !AtomicFile.isTemporaryName($0) })
        #expect(try FileManager.default.contentsOfDirectory(atPath: sub).allSatisfy { !AtomicFile.isTemporaryName($0) })
    }

    @Test("JSON output is stable: sorted keys")
    func stableJSON() throws {
        struct S: Encodable { var b = 1; var a = "x/y" }
        let s = String(decoding: try makeJSONEncoder().encode(S()), as: UTF8.self)
        #expect(s == #"{"a":"x/y","b":1}"#)
    }
}
