import Foundation
import Testing
@testable import VidxIndex
import VidxCore
import VidxQuantization
import VidxTestSupport

/// The bounded-memory builder: entries spilled by shard and read back, counts of an append
/// found from the delta alone, and nothing left behind by a refused or failed run.
@Suite("vidx-shard in bounded memory", .serialized)
struct StreamingBuildTests {
    static let layout = try! ProductQuantizer.Layout(levels: 2, subspaces: 2, codewords: 16, dimension: 4)

    static func model() throws -> IndexModel {
        var rng = SeededGenerator(seed: 9)
        var books: [Float] = []
        for _ in 0..<(layout.levels * layout.subspaces * layout.codewords) {
            let v = (0..<2).map { _ in Float(rng.next() % 1000) / 500 - 1 + 0.001 }
            let n = (v[0] * v[0] + v[1] * v[1]).squareRoot()
            books += v.map { $0 / n }
        }
        return IndexModel(bundleFingerprint: String(repeating: "ab", count: 32),
                          quantizer: try ProductQuantizer(layout: layout, codebooks: books))
    }

    static func entry(_ i: Int, version: UInt8 = 0, embedding: Bool = false) -> IndexEntry {
        let name = i % 11 == 0 ? "vidéo-\(i)" : "video-\(i)"
        let codes = (0..<4).map { UInt8((i * 7 + $0 * 3 + Int(version)) % 16) }
        return IndexEntry(externalID: name, contentHash: i % 5 == 0 ? [] : [UInt8](repeating: UInt8(i % 251) ^ version, count: 32),
                          codes: codes, coarseEmbedding: embedding ? (0..<4).map { UInt16(i + $0) } : nil)
    }

    static let tool = IndexManifest.Tool(name: "test", version: "0")

    @Test("every entry comes back from its shard's run, in the order added, through many buffer flushes")
    func runsRoundTrip() throws {
        let dir = temporaryDirectory()
        let runs = try ShardRuns(directory: dir + "/runs", count: 3, dimension: 4, bufferLimit: 256)
        let added = (0..<2000).map { Self.entry($0, embedding: $0 % 3 != 0) }
        for e in added { try runs.add(e) }
        try runs.finish()
        #expect(runs.added == 2000)
        #expect(runs.withEmbedding == added.filter { $0.coarseEmbedding != nil }.count)
        #expect(runs.firstWithoutEmbedding == added.first { $0.coarseEmbedding == nil }?.entry.externalID)
        for s in 0..<3 {
            let back = try runs.take(s)
            let expected = added.filter { Int($0.entry.id % 3) == s }
            #expect(!back.isEmpty && back == expected)
            #expect(!FileManager.default.fileExists(atPath: runs.path(s)), "a run is removed once read")
        }
        runs.remove()
        #expect(!FileManager.default.fileExists(atPath: dir + "/runs"))
    }

    @Test("an append's counts, found from the rows of the delta's ids, agree with resolving every shard")
    func appendCounts() throws {
        let model = try Self.model()
        let index = temporaryDirectory() + "/index"
        let policy = PublishPolicy(maxShrink: 1, verify: true)
        _ = try IndexBuilder.build(index: index, model: model, entries: (0..<200).map { Self.entry($0) }, inputs: [],
                                   shards: 4, tool: Self.tool, policy: policy)
        // Sequence 1 (3 shards, another count): 30 changed, 20 new, 10 deleted.
        let first = (0..<30).map { Self.entry($0, version: 1) } + (200..<220).map { Self.entry($0) }
        let r1 = try IndexBuilder.append(index: index, model: model, entries: first,
                                         deletions: (100..<110).map { Self.entry($0).entry.externalID } + ["absent"],
                                         inputs: [], shards: 3, tool: Self.tool, policy: policy)
        #expect(r1.notFound == ["absent"])
        #expect(r1.manifest?.counts == IndexManifest.Counts(entries: 250, live: 210, superseded: 30, deleted: 10))
        // Sequence 2: 5 deleted ids come back (deleted -> superseded), 5 superseded twice,
        // 5 of sequence 1's new videos deleted, 5 unchanged.
        let second = (100..<105).map { Self.entry($0, version: 2) } + (0..<5).map { Self.entry($0, version: 2) }
            + (30..<35).map { Self.entry($0) }
        let r2 = try IndexBuilder.append(index: index, model: model, entries: second,
                                         deletions: (200..<205).map { Self.entry($0).entry.externalID },
                                         inputs: [], shards: nil, tool: Self.tool, policy: policy)
        #expect(r2.unchanged == 5)
        let counts = try #require(r2.manifest?.counts)
        #expect(counts == IndexManifest.Counts(entries: 260, live: 210, superseded: 40, deleted: 10))
        // Opening the generation resolves every shard; the verifier does too (it passed:
        // policy.verify), and both agree with the manifest's counts.
        #expect(try IndexGeneration(indexDirectory: index).counts == counts)
        #expect(IndexVerifier.verify(indexDirectory: index).isEmpty)
        // Compacting keeps exactly the live videos.
        let c = try IndexBuilder.compact(index: index, shards: 2, tool: Self.tool, policy: policy)
        #expect(c.manifest?.counts == IndexManifest.Counts(entries: 210, live: 210, superseded: 0, deleted: 0))
    }

    @Test("a refused, failed or empty run leaves no temporary directory and CURRENT as it was")
    func nothingLeftBehind() throws {
        let model = try Self.model()
        let index = temporaryDirectory() + "/index"
        _ = try IndexBuilder.build(index: index, model: model, entries: (0..<100).map { Self.entry($0) }, inputs: [],
                                   shards: 4, tool: Self.tool)
        func leftovers() -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: index)) ?? []).filter { $0.hasPrefix(".tmp") }.sorted()
        }
        // Refused: the build would drop half the live videos.
        #expect(throws: PublishRefusal.self) {
            try IndexBuilder.build(index: index, model: model, entries: (0..<50).map { Self.entry($0) }, inputs: [],
                                   shards: 4, tool: Self.tool)
        }
        #expect(leftovers().isEmpty)
        // Failed half-way through reading the inputs.
        struct Broken: Error {}
        #expect(throws: Broken.self) {
            try IndexBuilder.build(index: index, model: model, feed: { add in
                for i in 0..<80 { try add(Self.entry(i)) }
                throw Broken()
            }, shards: 4, tool: Self.tool)
        }
        #expect(leftovers().isEmpty)
        // Conflicting duplicates found in one shard's run.
        #expect(throws: IndexError.self) {
            try IndexBuilder.build(index: index, model: model, entries: (0..<100).map { Self.entry($0) } + [Self.entry(7, version: 3)],
                                   inputs: [], shards: 4, tool: Self.tool)
        }
        #expect(leftovers().isEmpty)
        // Embeddings for some videos only.
        #expect(throws: IndexError.self) {
            try IndexBuilder.build(index: index, model: model, entries: (0..<100).map { Self.entry($0, embedding: $0 != 42) },
                                   inputs: [], shards: 4, tool: Self.tool)
        }
        // Nothing new to append.
        let same = try IndexBuilder.append(index: index, model: model, entries: (0..<10).map { Self.entry($0) }, deletions: [],
                                           inputs: [], shards: nil, tool: Self.tool)
        #expect(same.manifest == nil && same.unchanged == 10)
        #expect(leftovers().isEmpty)
        #expect(try IndexGeneration.currentName(indexDirectory: index) == "g000001")
        #expect(IndexVerifier.verify(indexDirectory: index).isEmpty)
    }
}
