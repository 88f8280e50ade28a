import Foundation
import VidxCore

/// Checks a whole generation: `CURRENT`, the manifest against the files (sizes, SHA-256,
/// CRC-32C), every shard's full validation and checksums, headers against the manifest,
/// the codebooks, counts, and that no id is live twice.
public enum IndexVerifier {
    /// The generation checked (its name, or "?" when `CURRENT` cannot be read) and every
    /// problem found: what `vidx-verify` reports.
    public static func report(indexDirectory: String, generation: String? = nil) -> (generation: String, problems: [String]) {
        let problems = verify(indexDirectory: indexDirectory, generation: generation)
        let name = generation ?? (try? IndexGeneration.currentName(indexDirectory: indexDirectory)) ?? "?"
        return (name, problems)
    }

    /// Every problem found, one line each naming the file; empty when the generation is good.
    /// - Parameter generation: the generation to check (default: the one `CURRENT` names).
    public static func verify(indexDirectory: String, generation: String? = nil) -> [String] {
        var problems: [String] = []
        let name: String
        do {
            name = try generation ?? IndexGeneration.currentName(indexDirectory: indexDirectory)
            try IndexGeneration.checkName(name, indexDirectory: indexDirectory)
        } catch {
            return ["\(error)"]
        }
        let dir = indexDirectory + "/" + name
        let manifest: IndexManifest
        do { manifest = try IndexManifest.read(generationDirectory: dir) } catch { return ["\(error)"] }
        let manifestPath = dir + "/" + IndexManifest.fileName
        if let parent = manifest.parent, Int(parent.dropFirst()).map({ $0 + 1 }) != Int(name.dropFirst()) {
            problems.append("\(manifestPath): parent '\(parent)' is not the generation before '\(name)' (numbers are consecutive along the live chain)")
        }
        // Codebooks.
        let cbPath = dir + "/" + manifest.codebooks.file
        let codebookProblems = checkFile(cbPath, bytes: manifest.codebooks.bytes, sha256: manifest.codebooks.sha256)
        problems += codebookProblems
        if codebookProblems.isEmpty {  // then its contents: format, fingerprint, shape, unit norms
            do { _ = try Codebooks.read(path: cbPath, manifest: manifest) } catch { problems.append("\(error)") }
        }

        // Shards.
        var shards: [Shard] = [], sequences: [Int] = []
        for record in manifest.shards {
            let path = dir + "/" + record.file
            let expectedKind: ShardKind = record.sequence == 0 ? .base : .delta
            if record.kind != expectedKind {
                problems.append("\(manifestPath): shard \(record.file) has kind '\(record.kind)' at sequence \(record.sequence)")
            }
            let fileProblems = checkFile(path, bytes: record.bytes, sha256: record.sha256)
            problems += fileProblems
            if !fileProblems.isEmpty && !FileManager.default.fileExists(atPath: path) { continue }
            do {
                let shard = try Shard(path: path, verifyChecksums: true)
                if String(format: "%08x", shard.fileCRC) != record.crc32c {
                    problems.append("\(path): file CRC-32C \(String(format: "%08x", shard.fileCRC)), the manifest says \(record.crc32c)")
                }
                for row in 0..<shard.count where VideoID.of(shard.externalID(at: row)) != shard.ids[row] {
                    problems.append("\(path): row \(row): id \(shard.ids[row]) is not the hash of its external id '\(shard.externalID(at: row))'")
                    break
                }
                do { try IndexGeneration.check(shard, against: record, manifest: manifest, path: path) } catch {
                    problems.append("\(error)")
                }
                shard.releaseResidentPages()   // one shard resident at a time, however large the index
                shards.append(shard)
                sequences.append(record.sequence)
            } catch {
                problems.append("\(error)")
            }
        }
        // Files present but not listed.
        let listed = Set(manifest.shards.map(\.file) + [manifest.codebooks.file, IndexManifest.fileName])
        for f in ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted() where !listed.contains(f) {
            problems.append("\(dir)/\(f): not listed in the manifest")
        }
        // Within a sequence, shards partition the ids: no id twice, so none is live twice.
        // Shards of one count with distinct indices do by construction (each shard's ids were
        // checked to be its index modulo the count); only a sequence of mixed counts needs
        // the ids compared.
        for sequence in Set(sequences).sorted() {
            let members = shards.indices.filter { sequences[$0] == sequence }
            var seen = Set<UInt64>()
            var indices = Set<UInt32>()
            for s in members where !indices.insert(shards[s].header.shardIndex).inserted {
                problems.append("\(dir): sequence \(sequence) has shard index \(shards[s].header.shardIndex) twice")
            }
            if Set(members.map { shards[$0].header.shardCount }).count <= 1 { continue }
            for s in members {
                for (row, id) in shards[s].ids.enumerated() where !seen.insert(id).inserted {
                    problems.append("\(shards[s].path): id \(id) ('\(shards[s].externalID(at: row))') is also in another shard of sequence \(sequence)")
                }
            }
        }
        if problems.isEmpty {
            let (_, counts) = IndexGeneration.resolve(shards, sequences: sequences)
            if counts != manifest.counts {
                problems.append("\(manifestPath): counts \(manifest.counts) differ from the shards' \(counts)")
            }
        }
        return problems
    }

    static func checkFile(_ path: String, bytes: Int, sha256: String) -> [String] {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
              let size = attributes[.size] as? Int else {
            return ["\(path): listed in the manifest but missing"]
        }
        var problems: [String] = []
        if size != bytes { problems.append("\(path): \(size) bytes, the manifest says \(bytes)") }
        do {
            let digest = try SHA256Digest.hex(fileAt: path)
            if digest != sha256 { problems.append("\(path): SHA-256 \(digest), the manifest says \(sha256)") }
        } catch {
            problems.append("\(error)")
        }
        return problems
    }
}
