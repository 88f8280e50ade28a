import Foundation
import Testing
import VidxCore
import VidxTestSupport
@testable import VidxIndex

@Suite("Shard files: what the path names")
struct ShardFileTests {
    /// Before the byte layer, `Shard(path:)` opened without O_NONBLOCK and waited for a
    /// writer on a FIFO forever; it now refuses it at once (`MappedFile`, `RegularFile.open`).
    @Test("a FIFO or a device is refused at once as unreadable, never waited on")
    func fifoAndDevice() throws {
        let dir = makeTestDirectory("shard-file")
        let fifo = dir + "/pipe.vidx"
        #expect(mkfifo(fifo, 0o644) == 0)
        let refusal = returnsWithin(10) { () -> ShardError? in
            do { _ = try Shard(path: fifo); return nil } catch { return error as? ShardError }
        }
        #expect(refusal == .some(ShardError(.unreadable, path: fifo, "not a regular file")), "blocked, or not refused")
        #expect(throws: ShardError(.unreadable, path: "/dev/null", "not a regular file")) { try Shard(path: "/dev/null") }
    }

    @Test("an empty buffer is a truncated shard, from a file and from memory alike")
    func empty() throws {
        let e = try #require(validationError([]))
        #expect(e.kind == .truncated && e.message == "file is 0 bytes, shorter than the 128-byte header")
    }
}
