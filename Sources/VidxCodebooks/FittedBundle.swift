import Foundation
import VidxCore
import VidxHCQ
import VidxQuantization

/// Writes a bundle that is `source` with other codebooks: the same weights but the
/// codebook tensors, the same `bundle.json` (free-form provenance included) with `name`
/// and `codebooks` set. It is a new bundle with a new fingerprint.
public enum FittedBundle {
    /// Writes the bundle directory `out`, which must not exist: both files are written into
    /// a temporary sibling directory, synced, and the directory renamed into place, so a
    /// crash leaves either no `out` or a whole bundle.
    /// - Returns: the written bundle, loaded back (its checks applied).
    /// - Throws: `FitError` when `out` exists; `FileWriteError`; the loader's `BundleError`.
    @discardableResult
    public static func write(source: ModelBundle, quantizer: ProductQuantizer, provenance: CodebookProvenance,
                             name: String? = nil, to out: String) throws -> ModelBundle {
        guard quantizer.layout == source.quantizer.layout else {
            throw FitError("the codebooks are \(quantizer.layout), bundle \(source.directory) needs \(source.quantizer.layout)")
        }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: out, isDirectory: &isDirectory) {
            throw FitError("\(out) exists: a bundle is never overwritten; give a new --out")
        }
        let config = try configBytes(source: source, provenance: provenance,
                                     name: name ?? (out as NSString).lastPathComponent)
        let weights = try weightsBytes(source: source, quantizer: quantizer)

        let parent = AtomicFile.directory(of: out)
        try AtomicFile.makeDirectory(parent)
        let temporary = parent + "/." + (out as NSString).lastPathComponent + ".tmp-\(getpid())"
        try? FileManager.default.removeItem(atPath: temporary)
        try AtomicFile.makeDirectory(temporary)
        do {
            try AtomicFile.write(weights, to: temporary + "/" + ModelBundle.weightsName)
            try AtomicFile.write(config, to: temporary + "/" + ModelBundle.configName)
            AtomicFile.syncDirectory(temporary)
            guard rename(temporary, out) == 0 else { throw FileWriteError(path: out, operation: "rename", errno: errno) }
            AtomicFile.syncDirectory(parent)
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw error
        }
        return try ModelBundle(directory: out)
    }

    /// The source's `bundle.json` as a JSON object with `name` and `codebooks` replaced,
    /// keys sorted, two-space indented.
    static func configBytes(source: ModelBundle, provenance: CodebookProvenance, name: String) throws -> Data {
        let path = source.directory + "/" + ModelBundle.configName
        let original = try InputFiles.read(path, maxBytes: ModelBundle.maxConfigBytes)
        guard var object = try JSONSerialization.jsonObject(with: original) as? [String: Any] else {
            throw FitError("\(path): not a JSON object")
        }
        object["name"] = name
        let encoded = try JSONEncoder().encode(provenance)
        object["codebooks"] = try JSONSerialization.jsonObject(with: encoded)
        var data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        data.append(0x0A)
        return data
    }

    /// The source's weights with the codebook tensors replaced, its metadata kept.
    static func weightsBytes(source: ModelBundle, quantizer: ProductQuantizer) throws -> Data {
        let file = try SafeTensorsFile(path: source.directory + "/" + ModelBundle.weightsName)
        var writer = SafeTensorsWriter(metadata: file.metadata)
        let names = source.codebookTensorNames
        let layout = quantizer.layout
        let perLevel = layout.subspaces * layout.codewords * layout.subDimension
        for name in file.names {
            guard let info = file.info(name) else { continue }
            if let level = names.firstIndex(of: name) {
                writer.add(name, floats: Array(quantizer.codebooks[(level * perLevel)..<((level + 1) * perLevel)]),
                           shape: [layout.subspaces, layout.codewords, layout.subDimension])
            } else {
                writer.add(name, dtype: info.dtype, shape: info.shape, bytes: Array(try file.bytes(name)))
            }
        }
        return Data(writer.serialized())
    }
}
