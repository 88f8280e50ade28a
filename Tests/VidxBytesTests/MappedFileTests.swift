import Foundation
import Testing
import VidxBytes
import VidxTestSupport

/// The reason `MappedFile(path:)` refuses `path`, or nil if it maps it.
func refusal(_ path: String, maxBytes: Int = .max) -> FileAccessError.Reason? {
    do {
        _ = try MappedFile(path: path, maxBytes: maxBytes)
        return nil
    } catch {
        #expect(error.path == path)
        return error.reason
    }
}

@Suite("MappedFile: regular files only, mapped whole, owned")
struct MappedFileTests {
    let dir = makeTestDirectory("mapped")

    @Test("a regular file maps whole and reads back; madvise keeps every byte")
    func regular() throws {
        let path = dir + "/data"
        let content = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        try Data(content).write(to: URL(fileURLWithPath: path))
        let file = try MappedFile(path: path)
        withExtendedLifetime(file) {
            #expect(file.isMapped && file.bytes.count == content.count)
            #expect(Array(file.bytes) == content)
            #expect(UInt(bitPattern: file.bytes.baseAddress) % 4096 == 0)
            file.releaseResidentPages()
            #expect(Array(file.bytes) == content)
        }
    }

    @Test("an empty file maps to an empty buffer")
    func empty() throws {
        let path = dir + "/empty"
        #expect(FileManager.default.createFile(atPath: path, contents: Data()))
        let file = try MappedFile(path: path)
        #expect(file.bytes.isEmpty)
        file.releaseResidentPages()
    }

    @Test("a FIFO is refused at once, never waited on")
    func fifo() throws {
        let path = dir + "/pipe"
        #expect(mkfifo(path, 0o644) == 0)
        let reason = returnsWithin(10) { refusal(path) }
        #expect(reason == .some(.notRegular(.fifo)))
        #expect(FileAccessError(path: path, .notRegular(.fifo)).description == "\(path): is a pipe (FIFO), not a regular file")
    }

    @Test("a directory, a missing file and a file over the limit are refused, naming the path")
    func refusals() throws {
        #expect(refusal(dir) == .notRegular(.directory))
        #expect(refusal(dir + "/none") == .open(errno: ENOENT))
        #expect(FileAccessError(path: "x", .open(errno: ENOENT)).message == "no such file")
        let path = dir + "/ten"
        try Data(count: 10).write(to: URL(fileURLWithPath: path))
        #expect(refusal(path, maxBytes: 9) == .tooLarge(size: 10, limit: 9))
        #expect(refusal(path, maxBytes: 10) == nil)
        #expect(FileAccessError(path: path, .tooLarge(size: 10, limit: 9)).message == "is 10 bytes, over the limit of 9 for this kind of file")
        #expect(refusal("/dev/null") == .notRegular(.device))
    }

    @Test("a file replaced by rename while mapped: the mapping keeps the old bytes")
    func replacedWhileMapped() throws {
        let path = dir + "/replaced"
        try Data([1, 2, 3, 4]).write(to: URL(fileURLWithPath: path))
        let file = try MappedFile(path: path)
        try Data([9, 9]).write(to: URL(fileURLWithPath: dir + "/next"))
        #expect(rename(dir + "/next", path) == 0)
        withExtendedLifetime(file) { #expect(Array(file.bytes) == [1, 2, 3, 4]) }
        let replacement = try MappedFile(path: path)
        withExtendedLifetime(replacement) { #expect(Array(replacement.bytes) == [9, 9]) }
    }

    @Test("copies are aligned as asked, equal to the source, and not mapped")
    func copies() {
        let source: [UInt8] = (0..<100).map { UInt8($0) }
        for alignment in [1, 8, 64, 4096] {
            let copy = source.withUnsafeBytes { MappedFile(copying: $0, alignment: alignment) }
            withExtendedLifetime(copy) {
                #expect(!copy.isMapped && Array(copy.bytes) == source)
                #expect(UInt(bitPattern: copy.bytes.baseAddress) % UInt(alignment) == 0)
                copy.releaseResidentPages()   // does nothing for a copy
            }
        }
        let empty = MappedFile(copying: UnsafeRawBufferPointer(start: nil, count: 0))
        #expect(empty.bytes.isEmpty)
    }
}
