// libFuzzer target for the index shard reader (Schemas/index-shard.md).
//
// Built without SwiftPM, from the reader's four files only (they import nothing but
// Foundation and the C library), with `make fuzz-shard`:
//
//     swiftc -sanitize=fuzzer,address -parse-as-library -O -module-name ShardReaderFuzz \
//       Fuzz/ShardReaderFuzz/main.swift Sources/VidxIndex/ShardFormat.swift \
//       Sources/VidxIndex/CRC32C.swift Sources/VidxIndex/ShardError.swift \
//       Sources/VidxIndex/Shard+Read.swift -o .build-fuzz/shard-fuzz
//     python3 Fuzz/make_seeds.py .build-fuzz/corpus
//     .build-fuzz/shard-fuzz -max_total_time=60 -dict=Fuzz/shard.dict .build-fuzz/corpus
//
// Every input is validated twice: without checksums (so mutations reach the content
// checks, which a CRC would otherwise stop) and with them. Any crash, sanitizer report or
// failed precondition is a bug: the reader must throw `ShardError` on bad input and,
// when it accepts one, every view must be readable within its bounds.

/// Validates `data` as a shard file; when valid, opens a copy and reads every view.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: size > 0 ? data : nil, count: size)
    for verify in [false, true] {
        let parsed: ParsedShard
        do {
            parsed = try Shard.validate(bytes, path: "fuzz-input", verifyChecksums: verify)
        } catch let error as ShardError {
            precondition(!error.message.isEmpty && error.path == "fuzz-input", "malformed error: \(error)")
            continue
        } catch {
            fatalError("validate threw something other than ShardError: \(error)")
        }
        let shard: Shard
        do {
            shard = try Shard(copying: bytes, path: "fuzz-input", verifyChecksums: verify)
        } catch {
            fatalError("validate accepted the bytes but Shard(copying:) refused them: \(error)")
        }
        precondition(shard.parsed == parsed, "Shard(copying:) parsed the bytes differently")
        touchEveryView(shard)
    }
    return 0
}

/// Reads every byte every view exposes and checks the invariants the reader promises.
private func touchEveryView(_ shard: Shard) {
    let h = shard.header
    let n = shard.count, m = Int(h.subspaces), l = Int(h.levels), d = Int(h.dimension)
    precondition(UInt64(n) == h.videoCount)
    precondition(shard.ids.count == n && shard.coarseCodes.count == n * m)
    precondition(shard.fineCodes.count == n * (l - 1) * m && shard.contentHashes.count == 32 * n)
    var sink: UInt64 = 0
    for (i, id) in shard.ids.enumerated() {
        precondition(i == 0 || shard.ids[i - 1] < id, "ids not ascending")
        precondition(id % UInt64(h.shardCount) == UInt64(h.shardIndex), "id in the wrong shard")
        precondition(shard.index(of: id) == i, "index(of:) disagrees")
        let codes = shard.codes(at: i)
        precondition(codes.count == l * m && codes.allSatisfy { UInt32($0) < h.codewords }, "bad codes")
        precondition(shard.contentHash(at: i).count == 32)
        sink &+= UInt64(shard.externalID(at: i).utf8.count)
    }
    for (i, t) in shard.tombstones.enumerated() {
        precondition(i == 0 || shard.tombstones[i - 1] < t, "tombstones not ascending")
        sink &+= t
    }
    if let embeddings = shard.coarseEmbeddingsF16 {
        precondition(embeddings.count == n * d)
        for v in embeddings { sink &+= UInt64(v) }
    }
    for b in shard.contentHashes { sink &+= UInt64(b) }
    for e in shard.sections {
        guard let section = shard.section(kind: e.kind) else { preconditionFailure("listed section missing") }
        precondition(UInt64(section.count) == e.length)
        for b in section { sink &+= UInt64(b) }
    }
    shard.releaseResidentPages()
    if sink == 0x5EED_5EED_5EED_5EED { print("") }  // keep the reads
}
