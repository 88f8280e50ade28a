import Foundation
import VidxCore
import VidxQuantization

/// The codebooks file published with every generation: the bundle's product quantizer
/// (`ProductQuantizer.write`: one F32 tensor `codebooks` (levels, M, K, dsub), every
/// codeword L2-normalised, metadata `format` = `vidx-codebooks`, `format_version` = 1,
/// `bundle_fingerprint`), named after the bundle.
public enum Codebooks {
    /// `codebooks-<first 16 hex digits of the fingerprint>.safetensors`.
    public static func fileName(bundleFingerprint: String) -> String {
        "codebooks-\(bundleFingerprint.prefix(16)).safetensors"
    }

    /// Reads a generation's codebooks file and checks it against the manifest: its size and
    /// SHA-256 first (a changed byte would change every score silently), then the
    /// quantizer's own checks (format, fingerprint, the manifest's layout, unit norms).
    /// - Throws: `IndexError` naming the file and the problem.
    public static func read(path: String, manifest: IndexManifest) throws -> ProductQuantizer {
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? -1
        guard size == manifest.codebooks.bytes else {
            throw IndexError(path: path, "\(size < 0 ? "missing or unreadable" : "\(size) bytes"), the manifest says \(manifest.codebooks.bytes)")
        }
        let digest: String
        do { digest = try SHA256Digest.hex(fileAt: path) } catch { throw IndexError(path: path, "\(error)") }
        guard digest == manifest.codebooks.sha256 else {
            throw IndexError(path: path, "SHA-256 \(digest), the manifest says \(manifest.codebooks.sha256): the codebooks changed since the generation was published")
        }
        do {
            return try ProductQuantizer(contentsOf: path, layout: try manifest.layout(),
                                        bundleFingerprint: manifest.bundleFingerprint)
        } catch let e as QuantizerError {
            throw IndexError(path: path, e.message.hasPrefix(path) ? String(e.message.dropFirst(path.count + 2)) : e.message)
        } catch {
            throw IndexError(path: path, "\(error)")
        }
    }
}
