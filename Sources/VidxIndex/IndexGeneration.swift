import Foundation
import VidxCore
import VidxQuantization

/// One generation of an index, opened for reading: its manifest, its shards (memory-mapped
/// and validated) and its codebooks, with every entry classified live or hidden.
///
/// Live entries follow Schemas/index-shard.md (Generations): for an id, the entry in the
/// shard of highest sequence wins, unless a shard of higher sequence tombstones the id.
public final class IndexGeneration: @unchecked Sendable {
    /// The index directory (holding `CURRENT`).
    public let indexDirectory: String
    /// The generation's name (`g000001`) and directory.
    public let name: String
    public let directory: String
    public let manifest: IndexManifest
    /// The shards in manifest order: by sequence, then shard index.
    public let shards: [Shard]
    /// The bundle's product quantizer, from the generation's codebooks file.
    public let quantizer: ProductQuantizer
    /// Per shard, a bitmask of hidden rows (bit `r % 64` of word `r / 64`), nil when every
    /// row of that shard is live.
    public let hidden: [[UInt64]?]
    public let counts: IndexManifest.Counts

    public static let currentFileName = "CURRENT"

    /// The name of the live generation: the first line of `INDEX/CURRENT`.
    public static func currentName(indexDirectory: String) throws -> String {
        let path = indexDirectory + "/" + currentFileName
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw IndexError(path: path, "cannot read: is \(indexDirectory) an index directory (made by vidx-shard)?")
        }
        let name = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard isGenerationName(name) else {
            throw IndexError(path: path, "does not name a generation (expected g followed by 6 digits, found '\(name.prefix(40))')")
        }
        return name
    }

    /// Whether `s` is a generation's name: `g` and six ASCII digits.
    public static func isGenerationName(_ s: String) -> Bool {
        let b = Array(s.utf8)
        return b.count == 7 && b[0] == UInt8(ascii: "g") && b.dropFirst().allSatisfy { (48...57).contains($0) }
    }

    /// Refuses anything but a generation name (`gNNNNNN`): a path such as `../other/g000001`
    /// would open another index.
    public static func checkName(_ name: String, indexDirectory: String) throws {
        guard isGenerationName(name) else {
            throw IndexError(path: indexDirectory, "'\(name.prefix(80))' is not a generation name (g followed by 6 digits, e.g. g000001)")
        }
    }

    /// Opens generation `generation` (default: the one `CURRENT` names).
    /// - Parameters:
    ///   - verifyChecksums: also check every section's and file's CRC-32C (reads every
    ///     byte); the header and table checksums are always checked.
    ///   - releasePages: drop each shard's pages from this process's resident memory once
    ///     it is validated (they stay in the page cache): for tools that walk a large index
    ///     once (builders, the verifier), so their peak does not grow with the index.
    /// - Throws: `IndexError` or `ShardError` naming the file and the problem.
    public init(indexDirectory: String, generation: String? = nil, verifyChecksums: Bool = false,
                releasePages: Bool = false) throws {
        self.indexDirectory = indexDirectory
        let name = try generation ?? IndexGeneration.currentName(indexDirectory: indexDirectory)
        try IndexGeneration.checkName(name, indexDirectory: indexDirectory)
        self.name = name
        directory = indexDirectory + "/" + name
        manifest = try IndexManifest.read(generationDirectory: directory)
        var shards: [Shard] = []
        for record in manifest.shards {
            let shard = try Shard(path: directory + "/" + record.file, verifyChecksums: verifyChecksums)
            try IndexGeneration.check(shard, against: record, manifest: manifest, path: directory + "/" + record.file)
            if releasePages { shard.releaseResidentPages() }
            shards.append(shard)
        }
        self.shards = shards
        quantizer = try Codebooks.read(path: directory + "/" + manifest.codebooks.file, manifest: manifest)
        (hidden, counts) = IndexGeneration.resolve(shards, sequences: manifest.shards.map(\.sequence))
        if releasePages { releaseResidentPages() }
    }

    /// Drops every shard's pages from resident memory (`Shard.releaseResidentPages`).
    public func releaseResidentPages() {
        for shard in shards { shard.releaseResidentPages() }
    }

    /// Checks that a shard's header agrees with its manifest record and the generation.
    static func check(_ shard: Shard, against record: IndexManifest.ShardRecord, manifest: IndexManifest,
                      path: String) throws {
        let h = shard.header
        var problems: [String] = []
        if SHA256Digest.hexString(h.bundleFingerprint) != manifest.bundleFingerprint {
            problems.append("bundle fingerprint \(SHA256Digest.hexString(h.bundleFingerprint)) differs from the manifest's \(manifest.bundleFingerprint)")
        }
        if Int(h.levels) != manifest.levels || Int(h.subspaces) != manifest.subspaces
            || Int(h.codewords) != manifest.codewords || Int(h.dimension) != manifest.dimension {
            problems.append("shape L \(h.levels) M \(h.subspaces) K \(h.codewords) D \(h.dimension) differs from the manifest's L \(manifest.levels) M \(manifest.subspaces) K \(manifest.codewords) D \(manifest.dimension)")
        }
        if Int(h.shardIndex) != record.shardIndex || Int(h.shardCount) != record.shardCount {
            problems.append("shard \(h.shardIndex) of \(h.shardCount), the manifest says \(record.shardIndex) of \(record.shardCount)")
        }
        if shard.count != record.videos { problems.append("\(shard.count) videos, the manifest says \(record.videos)") }
        if shard.tombstones.count != record.tombstones {
            problems.append("\(shard.tombstones.count) tombstones, the manifest says \(record.tombstones)")
        }
        if !problems.isEmpty { throw IndexError(path: path, problems.joined(separator: "; ")) }
    }

    /// Classifies every row of `shards` (with their sequences) as live or hidden.
    /// - Returns: per shard a hidden-row bitmask (nil when all live), and the counts.
    public static func resolve(_ shards: [Shard], sequences: [Int]) -> (hidden: [[UInt64]?], counts: IndexManifest.Counts) {
        precondition(shards.count == sequences.count)
        var hidden = [[UInt64]?](repeating: nil, count: shards.count)
        var newerEntries = Set<UInt64>(), newerTombstones = Set<UInt64>()
        var entries = 0, superseded = 0, deleted = 0
        let order = Set(sequences).sorted(by: >)
        for (position, sequence) in order.enumerated() {
            let members = shards.indices.filter { sequences[$0] == sequence }
            for s in members {
                let shard = shards[s]
                entries += shard.count
                if newerEntries.isEmpty && newerTombstones.isEmpty { continue }
                var mask: [UInt64]? = nil
                for (row, id) in shard.ids.enumerated() {
                    let isSuperseded = newerEntries.contains(id)
                    let isDeleted = !isSuperseded && newerTombstones.contains(id)
                    guard isSuperseded || isDeleted else { continue }
                    if isSuperseded { superseded += 1 } else { deleted += 1 }
                    if mask == nil { mask = [UInt64](repeating: 0, count: (shard.count + 63) / 64) }
                    mask![row >> 6] |= 1 << UInt64(row & 63)
                }
                hidden[s] = mask
            }
            if position + 1 < order.count {  // older sequences remain: remember this one's ids
                for s in members {
                    newerEntries.formUnion(shards[s].ids)
                    newerTombstones.formUnion(shards[s].tombstones)
                }
            }
        }
        let counts = IndexManifest.Counts(entries: entries, live: entries - superseded - deleted,
                                          superseded: superseded, deleted: deleted)
        return (hidden, counts)
    }

    /// Whether row `row` of shard `shard` is live.
    @inline(__always)
    public func isLive(shard: Int, row: Int) -> Bool {
        guard let mask = hidden[shard] else { return true }
        return mask[row >> 6] & (1 << UInt64(row & 63)) == 0
    }

    /// The external id of row `row` of shard `shard`, checked against the row's stored
    /// 64-bit id (its hash): a damaged byte in either is an error, never a wrong answer.
    /// - Throws: `IndexError` naming the shard file and the row.
    public func checkedExternalID(shard: Int, row: Int) throws -> String {
        let external = shards[shard].externalID(at: row)
        guard VideoID.of(external) == shards[shard].ids[row] else {
            throw IndexError(path: shards[shard].path, "row \(row): the stored id \(shards[shard].ids[row]) is not the hash of the stored external id '\(external.prefix(80))': the shard is damaged (run vidx-verify)")
        }
        return external
    }

    /// The live entry of a video, by external id.
    public func locate(externalID: String) -> (shard: Int, row: Int)? {
        let id = VideoID.of(externalID)
        for s in shards.indices.reversed() {  // newest sequence first
            if let row = shards[s].index(of: id), isLive(shard: s, row: row),
               shards[s].externalID(at: row).utf8.elementsEqual(externalID.utf8) {
                return (s, row)
            }
        }
        return nil
    }

    /// Every live entry, in shard order then row order.
    public func liveEntries() -> [(shard: Int, row: Int)] {
        var out: [(shard: Int, row: Int)] = []
        out.reserveCapacity(counts.live)
        forEachLive { out.append(($0, $1)) }
        return out
    }

    /// Calls `body(shard, row)` for every live entry, in shard order then row order.
    public func forEachLive(_ body: (Int, Int) throws -> Void) rethrows {
        for s in shards.indices {
            for r in 0..<shards[s].count where isLive(shard: s, row: r) { try body(s, r) }
        }
    }

    /// The counts of this generation with one more sequence on top holding entries with
    /// ids `entries` and tombstones `tombstones` (each distinct; no id in both): what
    /// `resolve` would count over all the shards, found from the rows of those ids alone
    /// (a binary search in the one shard of each sequence that can hold an id), so an
    /// append costs what its delta costs.
    public func countsAfterAppending(entries: [UInt64], tombstones: [UInt64]) -> IndexManifest.Counts {
        var c = counts
        c.entries += entries.count
        let sequences = manifest.shards.map(\.sequence)
        func rows(of id: UInt64) -> [(shard: Int, row: Int)] {
            shards.indices.compactMap { s in
                let h = shards[s].header
                guard id % UInt64(h.shardCount) == UInt64(h.shardIndex), let r = shards[s].index(of: id) else { return nil }
                return (s, r)
            }
        }
        for id in entries {
            let found = rows(of: id)
            for (s, r) in found {
                if isLive(shard: s, row: r) {
                    c.superseded += 1                  // was live: the new entry supersedes it
                } else if !found.contains(where: { sequences[$0.shard] > sequences[s] }) {
                    c.deleted -= 1                     // was hidden by a tombstone alone:
                    c.superseded += 1                  // a newer entry now supersedes it
                }
            }
        }
        for id in tombstones {
            for (s, r) in rows(of: id) where isLive(shard: s, row: r) { c.deleted += 1 }
        }
        c.live = c.entries - c.superseded - c.deleted
        return c
    }
}
