import Foundation
import VidxCore
import VidxHCQ
import VidxIndex

/// The readers under fuzzing, each through its in-memory entry point.
///
/// `run` returns whether the reader accepted the bytes; a reader may refuse any input, but
/// only with its own error type, naming the path it was given. Anything else is a bug and
/// stops the process (`preconditionFailure`), which libFuzzer reports as a crash: a thrown
/// error of another type, an accepted input that breaks the reader's promises (a view out
/// of bounds, counts that disagree, a manifest that does not read back as written), or a
/// memory error under AddressSanitizer.
enum FuzzTarget: String, CaseIterable, Sendable {
    /// `Shard.validate` with and without checksums, then `Shard(copying:)` and every view.
    case shard
    /// `SafeTensorsFile(copying:)`, then every tensor's bytes and elements.
    case safetensors
    /// `NPY.parse`.
    case npy
    /// `BundleConfig.parse`: `bundle.json` decoding and its rules, as `ModelBundle` reads it.
    case bundle
    /// `IndexManifest.parse`, then the accepted manifest written and read back.
    case manifest

    /// How a reader took an input.
    enum Outcome: Sendable {
        case accepted(String)
        case refused(String)
    }

    /// The name errors carry, so a refusal can be checked to name its input.
    static let inputName = "fuzz-input"

    func run(_ bytes: UnsafeRawBufferPointer) -> Outcome {
        switch self {
        case .shard: return runShard(bytes)
        case .safetensors: return runSafeTensors(bytes)
        case .npy: return runNPY(bytes)
        case .bundle: return runBundle(bytes)
        case .manifest: return runManifest(bytes)
        }
    }
}

/// Where the fuzzers fold every byte they read, so that the reads stay in an optimised build
/// (and AddressSanitizer sees them).
nonisolated(unsafe) var fuzzSink: UInt64 = 0

/// Stops the process: the reader broke a promise (libFuzzer keeps the input).
private func bug(_ message: String) -> Never {
    preconditionFailure("vidx-fuzz: reader bug: \(message)")
}

// MARK: - Shard

/// Validates `bytes` without checksums (so mutations reach the content checks, which a
/// CRC would otherwise stop) and with them; when valid, opens a copy and reads every view.
private func runShard(_ bytes: UnsafeRawBufferPointer) -> FuzzTarget.Outcome {
    var outcome = FuzzTarget.Outcome.refused("")
    for verify in [false, true] {
        let parsed: ParsedShard
        do {
            parsed = try Shard.validate(bytes, path: FuzzTarget.inputName, verifyChecksums: verify)
        } catch let error as ShardError {
            guard !error.message.isEmpty, error.path == FuzzTarget.inputName else { bug("malformed error: \(error)") }
            outcome = .refused("\(error)")
            continue
        } catch {
            bug("Shard.validate threw something other than ShardError: \(error)")
        }
        let shard: Shard
        do {
            shard = try Shard(copying: bytes, path: FuzzTarget.inputName, verifyChecksums: verify)
        } catch {
            bug("validate accepted the bytes but Shard(copying:) refused them: \(error)")
        }
        guard shard.parsed == parsed else { bug("Shard(copying:) parsed the bytes differently") }
        touchEveryView(shard)
        outcome = .accepted("\(shard.count) videos, \(shard.sections.count) sections")
    }
    return outcome
}

/// Reads every byte every view exposes and checks the invariants the reader promises.
private func touchEveryView(_ shard: Shard) {
    let h = shard.header
    let n = shard.count, m = Int(h.subspaces), l = Int(h.levels), d = Int(h.dimension)
    guard UInt64(n) == h.videoCount else { bug("count \(n) is not video_count \(h.videoCount)") }
    guard shard.ids.count == n && shard.coarseCodes.count == n * m else { bug("ids or coarse codes miscounted") }
    guard shard.fineCodes.count == n * (l - 1) * m && shard.contentHashes.count == 32 * n else {
        bug("fine codes or content hashes miscounted")
    }
    var sink: UInt64 = 0
    for (i, id) in shard.ids.enumerated() {
        guard i == 0 || shard.ids[i - 1] < id else { bug("ids not ascending") }
        guard id % UInt64(h.shardCount) == UInt64(h.shardIndex) else { bug("id in the wrong shard") }
        guard shard.index(of: id) == i else { bug("index(of:) disagrees") }
        let codes = shard.codes(at: i)
        guard codes.count == l * m && codes.allSatisfy({ UInt32($0) < h.codewords }) else { bug("bad codes") }
        guard shard.contentHash(at: i).count == 32 else { bug("content hash not 32 bytes") }
        let external = shard.externalID(at: i)
        guard !external.isEmpty else { bug("empty external id accepted") }
        sink &+= UInt64(external.utf8.count)
    }
    for (i, t) in shard.tombstones.enumerated() {
        guard i == 0 || shard.tombstones[i - 1] < t else { bug("tombstones not ascending") }
        sink &+= t
    }
    if let embeddings = shard.coarseEmbeddingsF16 {
        guard embeddings.count == n * d else { bug("embeddings miscounted") }
        for v in embeddings { sink &+= UInt64(v) }
    }
    for b in shard.contentHashes { sink &+= UInt64(b) }
    for e in shard.sections {
        guard let section = shard.section(kind: e.kind) else { bug("listed section missing") }
        guard UInt64(section.count) == e.length else { bug("section length differs from its entry") }
        for b in section { sink &+= UInt64(b) }
    }
    shard.releaseResidentPages()
    fuzzSink &+= sink
}

// MARK: - Safetensors

private func runSafeTensors(_ bytes: UnsafeRawBufferPointer) -> FuzzTarget.Outcome {
    let file: SafeTensorsFile
    do {
        file = try SafeTensorsFile(copying: bytes, path: FuzzTarget.inputName, maxHeaderBytes: 1 << 20)
    } catch let error as SafeTensorsError {
        guard error.path == FuzzTarget.inputName, !error.message.isEmpty else { bug("malformed error: \(error)") }
        guard error.kind != .unreadable else { bug("a buffer was called unreadable: \(error)") }
        return .refused("\(error)")
    } catch {
        bug("SafeTensorsFile threw something other than SafeTensorsError: \(error)")
    }
    var total = 0
    for name in file.names {
        guard let info = file.info(name) else { bug("listed tensor \(name) has no entry") }
        guard info.elementCount * info.dtype.byteSize == info.byteRange.count else { bug("\(name): size disagrees with shape") }
        let raw: UnsafeRawBufferPointer
        do { raw = try file.bytes(name) } catch { bug("\(name): listed but bytes(_:) threw \(error)") }
        guard raw.count == info.byteRange.count else { bug("\(name): view of the wrong length") }
        for b in raw { fuzzSink &+= UInt64(b) }
        switch info.dtype {
        case .f32:
            guard (try? file.floats(name, shape: info.shape))?.count == info.elementCount else { bug("\(name): floats()") }
        case .u8:
            guard (try? file.uint8s(name, shape: info.shape))?.count == info.elementCount else { bug("\(name): uint8s()") }
        default:
            break
        }
        total += raw.count
    }
    file.releaseResidentPages()
    return .accepted("\(file.names.count) tensors, \(total) bytes")
}

// MARK: - NPY

private func runNPY(_ bytes: UnsafeRawBufferPointer) -> FuzzTarget.Outcome {
    do {
        let array = try NPY.parse(bytes, path: FuzzTarget.inputName)
        guard Checked.product(array.shape) == array.values.count else { bug("values do not fill shape \(array.shape)") }
        return .accepted("shape \(array.shape)")
    } catch let error as StageFileError {
        guard error.path == FuzzTarget.inputName else { bug("malformed error: \(error)") }
        return .refused("\(error)")
    } catch {
        bug("NPY.parse threw something other than StageFileError: \(error)")
    }
}

// MARK: - bundle.json

private func runBundle(_ bytes: UnsafeRawBufferPointer) -> FuzzTarget.Outcome {
    do {
        let config = try BundleConfig.parse(Data(bytes), path: FuzzTarget.inputName)
        guard config.problems().isEmpty else { bug("accepted a config with problems") }
        return .accepted("\(config.experts.count) experts")
    } catch let error as BundleError {
        guard error.path == FuzzTarget.inputName, error.kind == .badConfig else { bug("malformed error: \(error)") }
        return .refused("\(error)")
    } catch {
        bug("BundleConfig.parse threw something other than BundleError: \(error)")
    }
}

// MARK: - MANIFEST.json

private func runManifest(_ bytes: UnsafeRawBufferPointer) -> FuzzTarget.Outcome {
    let manifest: IndexManifest
    do {
        manifest = try IndexManifest.parse(Data(bytes), path: FuzzTarget.inputName)
    } catch let error as IndexError {
        guard error.path == FuzzTarget.inputName else { bug("malformed error: \(error)") }
        return .refused("\(error)")
    } catch {
        bug("IndexManifest.parse threw something other than IndexError: \(error)")
    }
    guard manifest.validate() == nil else { bug("accepted a manifest that breaks its schema") }
    // vidx writes manifests: what it accepts, it must write so that it reads back the same.
    do {
        let again = try IndexManifest.parse(try manifest.encoded(), path: FuzzTarget.inputName)
        guard again == manifest else { bug("the manifest reads back differently after writing") }
    } catch {
        bug("an accepted manifest, written again, is refused: \(error)")
    }
    return .accepted("generation \(manifest.generation), \(manifest.shards.count) shards")
}
