import Foundation
import VidxCore

/// Codes for another bundle from the embeddings a codes file carries, without running the
/// transformer again (`vidx-encode --requantize`): what a rebuild with fitted codebooks
/// needs (Documentation/Codebooks.md).
///
/// The output is the codes file that `vidx-encode --embeddings` with `bundle` writes from
/// the same features: the same records and embeddings, the codes of `bundle`'s quantizer,
/// its fingerprint.
public enum Requantizer {
    /// What one file gave.
    public struct Outcome: Sendable, Equatable {
        /// Videos in the file, and those with codes (the failed keep their record).
        public var videos: Int, coded: Int
        /// Videos whose codes changed at one sub-space or more.
        public var changed: Int
    }

    /// Re-quantizes the codes file at `path` with `bundle`, writing `out` atomically.
    /// - Throws: `StageFileError` naming the file when it holds no embeddings, was made by
    ///   a bundle whose embeddings `bundle` does not share, or has another shape; the
    ///   reader's errors; `FileWriteError`.
    public static func requantize(codes path: String, bundle: ModelBundle, to out: String) throws -> Outcome {
        let file = try CodesFile(path: path)
        let layout = bundle.quantizer.layout
        try file.checkShape(levels: layout.levels, subspaces: layout.subspaces, codewords: layout.codewords,
                            hidden: layout.dimension)
        guard let embeddings = file.embeddings else {
            throw StageFileError(path: path, message: "holds no embeddings to re-quantize: write codes files with vidx-encode --embeddings (or encode the features again)")
        }
        try checkEmbeddings(file, bundle: bundle)
        var codes = file.codes
        var coded = 0, changed = 0
        let perVideo = layout.codeBytes, width = layout.vectorCount
        for (i, video) in file.videos.enumerated() where video.status != .failed {
            let new = bundle.quantizer.encode(Array(embeddings[(i * width)..<((i + 1) * width)]))
            if !new.elementsEqual(codes[(i * perVideo)..<((i + 1) * perVideo)]) { changed += 1 }
            codes.replaceSubrange((i * perVideo)..<((i + 1) * perVideo), with: new)
            coded += 1
        }
        try CodesFile.write(to: out, videos: file.videos, codes: codes, levels: layout.levels, subspaces: layout.subspaces,
                            codewords: layout.codewords, embeddings: embeddings, hidden: layout.dimension,
                            bundleFingerprint: bundle.fingerprint, featuresBundleFingerprint: file.featuresBundleFingerprint)
        return Outcome(videos: file.videos.count, coded: coded, changed: changed)
    }

    /// Refuses a codes file whose embeddings are not `bundle`'s: made by a bundle that is
    /// neither `bundle` nor one its fitted codebooks list in `embeddings_from`.
    /// - Throws: `StageFileError` naming both fingerprints.
    public static func checkEmbeddings(_ file: CodesFile, bundle: ModelBundle) throws {
        guard bundle.acceptsEmbeddings(from: file.bundleFingerprint) else {
            throw StageFileError(path: file.path, message: foreignEmbeddings(madeBy: file.bundleFingerprint, bundle: bundle))
        }
    }

    /// Why embeddings made by the bundle `fingerprint` are not `bundle`'s.
    public static func foreignEmbeddings(madeBy fingerprint: String, bundle: ModelBundle) -> String {
        "its embeddings were made by bundle \(fingerprint.prefix(16)), not by bundle \(bundle.directory) (\(bundle.fingerprint.prefix(16))) nor by a bundle its codebooks were fitted from: encode the features with \(bundle.directory) instead"
    }
}
