import Foundation
import VidxCore

/// The codebooks file published with every generation: a safetensors file with one F32
/// tensor `codebooks` (levels, M, K, dsub), every codeword L2-normalised, and metadata
/// `format` = `vidx-codebooks`, `format_version` = 1, `bundle_fingerprint`.
public enum Codebooks {
    public static let format = "vidx-codebooks"

    /// `codebooks-<first 16 hex digits of the fingerprint>.safetensors`.
    public static func fileName(bundleFingerprint: String) -> String {
        "codebooks-\(bundleFingerprint.prefix(16)).safetensors"
    }

    /// Writes the file atomically.
    public static func write(_ codebooks: [Float], levels: Int, subspaces: Int, codewords: Int, dimension: Int,
                             bundleFingerprint: String, to path: String) throws {
        var w = SafeTensorsWriter(metadata: ["format": format, "format_version": "1",
                                             "bundle_fingerprint": bundleFingerprint])
        w.add("codebooks", floats: codebooks, shape: [levels, subspaces, codewords, dimension / subspaces])
        try w.write(to: path)
    }

    /// Reads the file and checks it against the manifest.
    /// Reads the file and checks it against the manifest: its size and SHA-256 first (a
    /// changed byte would change every score silently), then format, fingerprint, shape.
    public static func read(path: String, manifest: IndexManifest) throws -> [Float] {
        let file = try SafeTensorsFile(path: path)
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? -1
        guard size == manifest.codebooks.bytes else {
            throw IndexError(path: path, "\(size) bytes, the manifest says \(manifest.codebooks.bytes)")
        }
        let digest = try SHA256Digest.hex(fileAt: path)
        guard digest == manifest.codebooks.sha256 else {
            throw IndexError(path: path, "SHA-256 \(digest), the manifest says \(manifest.codebooks.sha256): the codebooks changed since the generation was published")
        }
        guard file.metadata["format"] == format else {
            throw IndexError(path: path, "not a codebooks file (metadata format is '\(file.metadata["format"] ?? "absent")')")
        }
        guard file.metadata["bundle_fingerprint"] == manifest.bundleFingerprint else {
            throw IndexError(path: path, "made for bundle \(file.metadata["bundle_fingerprint"] ?? "?"), the manifest says \(manifest.bundleFingerprint)")
        }
        guard manifest.subspaces > 0, manifest.dimension % manifest.subspaces == 0 else {
            throw IndexError(path: path, "the manifest's dimension \(manifest.dimension) is not a multiple of its \(manifest.subspaces) subspaces")
        }
        return try file.floats("codebooks", shape: [manifest.levels, manifest.subspaces, manifest.codewords,
                                                    manifest.dimension / manifest.subspaces])
    }
}
