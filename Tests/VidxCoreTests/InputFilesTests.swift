import Foundation
import Testing
import VidxTestSupport
@testable import VidxCore

@Suite("Input files: regular files only, JSON Lines with LF or CRLF, ids compared by bytes")
struct InputFilesTests {
    let dir = TensorTestSupport.makeDirectory("input-files")

    @Test("a FIFO is refused at once by every reader, never waited on")
    func fifo() throws {
        let path = dir + "/pipe"
        #expect(mkfifo(path, 0o644) == 0)
        let read = returnsWithin(10) { () -> String in
            do { _ = try InputFiles.read(path); return "read" } catch { return "\(error)" }
        }
        #expect(read == "\(path): is a pipe (FIFO), not a regular file")
        let tensors = returnsWithin(10) { () -> SafeTensorsError.Kind? in
            do { _ = try SafeTensorsFile(path: path); return nil } catch let e as SafeTensorsError { return e.kind } catch { return nil }
        }
        #expect(tensors == .unreadable)
        let hash = returnsWithin(10) { () -> Bool in (try? SHA256Digest.hex(fileAt: path)) == nil }
        #expect(hash == true)
    }

    @Test("a directory, a missing file and an oversized file are refused, naming the path")
    func otherRefusals() throws {
        #expect(throws: StageFileError(path: dir, message: "is a directory, not a regular file")) { try InputFiles.read(dir) }
        #expect(throws: StageFileError(path: dir + "/none", message: "no such file")) { try InputFiles.read(dir + "/none") }
        let big = dir + "/big"
        try Data(count: 100).write(to: URL(fileURLWithPath: big))
        #expect(throws: StageFileError.self) { try InputFiles.read(big, maxBytes: 99) }
        #expect(try InputFiles.read(big, maxBytes: 100).count == 100)
    }

    @Test("JSON Lines: LF and CRLF endings, blank lines skipped, line numbers kept, no final newline needed")
    func jsonLines() {
        let text = "{\"a\":1}\r\n\r\n  {\"b\":2} \r\n{\"c\":\"x\\ry\"}\n\t\n{\"d\":4}"
        let lines = JSONLines.lines(Data(text.utf8))
        #expect(lines.map(\.number) == [1, 3, 4, 6])
        #expect(lines.map { String($0.text) } == ["{\"a\":1}", "{\"b\":2}", "{\"c\":\"x\\ry\"}", "{\"d\":4}"])
        #expect(JSONLines.lines(Data()).isEmpty)
        // Two lines with CRLF: two entries (Swift's "\r\n" is one Character, so splitting on
        // Character "\n" would have found one line).
        #expect(JSONLines.lines(Data("{}\r\n{}\r\n".utf8)).count == 2)
        // Multi-byte UTF-8 survives the byte-level split and trim.
        #expect(JSONLines.lines(Data(" {\"id\":\"caf\u{E9} \u{1F3AC}\"}\t\r\n".utf8)).map { String($0.text) }
                == ["{\"id\":\"caf\u{E9} \u{1F3AC}\"}"])
    }

    @Test("external ids are compared by their UTF-8 bytes: NFC and NFD spellings are two ids")
    func externalIDs() {
        let nfc = "caf\u{E9}", nfd = "cafe\u{301}"
        #expect(nfc == nfd)  // Swift's own String equality is canonical equivalence
        #expect(ExternalID(nfc) != ExternalID(nfd))
        #expect(Set([ExternalID(nfc), ExternalID(nfd), ExternalID("caf\u{E9}")]).count == 2)
        #expect(ExternalID.problem("") == "the id is empty")
        #expect(ExternalID.problem(String(repeating: "é", count: 4096)) == nil)
        #expect(ExternalID.problem(String(repeating: "é", count: 4097))?.contains("over the limit of 4096") == true)
        #expect(ExternalID.problem(String(repeating: "e\u{301}", count: 2049))?.contains("4098 characters") == true)
    }
}

@Suite("Atomic file writes: staged outputs and real errors")
struct StagedWriteTests {
    let dir = TensorTestSupport.makeDirectory("staged")

    @Test("staged files are invisible until committed; a failed commit leaves no temporary behind")
    func staged() throws {
        let a = try AtomicFile.stage(Data("a".utf8), to: dir + "/a.out")
        let b = try AtomicFile.stage(Data("b".utf8), to: dir + "/b.done")
        #expect(!FileManager.default.fileExists(atPath: dir + "/a.out"))
        try AtomicFile.commit([a, b])
        #expect(try String(contentsOfFile: dir + "/b.done", encoding: .utf8) == "b")
        // The marker's destination cannot be replaced (a non-empty directory): it is never
        // committed, and nothing temporary stays.
        try FileManager.default.createDirectory(atPath: dir + "/c.done/x", withIntermediateDirectories: true)
        let c1 = try AtomicFile.stage(Data("c".utf8), to: dir + "/c.out")
        let c2 = try AtomicFile.stage(Data("c".utf8), to: dir + "/c.done")
        #expect(throws: FileWriteError.self) { try AtomicFile.commit([c1, c2]) }
        do {  // dropped without a commit
            _ = try AtomicFile.stage(Data("d".utf8), to: dir + "/d.out")
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        #expect(names == ["a.out", "b.done", "c.done", "c.out"], "\(names)")
        #expect(!names.contains { AtomicFile.isTemporaryName($0) })
    }

    @Test("makeDirectory reports the errno of the mkdir that failed, not EACCES for everything")
    func makeDirectoryErrno() throws {
        let file = dir + "/plain"
        try Data().write(to: URL(fileURLWithPath: file))
        do {
            try AtomicFile.makeDirectory(file + "/sub/dir")
            Issue.record("created a directory under a file")
        } catch let e as FileWriteError {
            #expect(e.errno == ENOTDIR, "\(e)")
            #expect(e.description == file + "/sub/dir: create directory failed: Not a directory")
        }
        do {
            try AtomicFile.makeDirectory(file)
            Issue.record("accepted a file as a directory")
        } catch let e as FileWriteError {
            #expect(e.errno == EEXIST, "\(e)")
        }
        try AtomicFile.makeDirectory(dir + "/x/y/z")
        try AtomicFile.makeDirectory(dir + "/x/y/z")  // idempotent
        #expect(FileManager.default.fileExists(atPath: dir + "/x/y/z"))
    }
}
