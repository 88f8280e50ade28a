import Foundation
import VidxCore

/// The encode stage on one work unit, callable in-process: a features file in, a codes
/// file out (Schemas/codes.md), what `vidx-encode` runs.
///
/// The file is read and encoded in chunks of 4 batches, so memory stays near one chunk
/// whatever the unit's size. A video whose features cannot be used, or whose encoding is
/// not finite, is recorded `failed` with its class and the others go on; a video that
/// failed an earlier stage keeps its record.
public struct UnitEncoder: Sendable {
    public let bundle: ModelBundle
    /// Videos per transformer pass.
    public let batchSize: Int
    /// Also store the float embeddings (levels x hidden per video).
    public let keepEmbeddings: Bool

    public init(bundle: ModelBundle, batchSize: Int = 16, keepEmbeddings: Bool = false) {
        self.bundle = bundle
        self.batchSize = max(1, batchSize)
        self.keepEmbeddings = keepEmbeddings
    }

    /// What one run did.
    public struct Outcome: Sendable {
        /// Every video's record, as written.
        public var records: [VideoRecord]
        public var failed: Int { records.filter { $0.status == .failed }.count }
        /// (video, expert) pairs treated as missing because their first value is NaN.
        public var nanMaskedExperts: [(video: String, expert: String)]
        public var seconds: Double
    }

    /// Refuses a features file the bundle cannot encode: an expert extracted with another
    /// extractor than the bundle was trained on, or one the file's `extractors` does not
    /// declare (its extractor would go unchecked).
    /// - Throws: `StageFileError` naming the file, the video and the expert.
    public func check(_ unit: FeaturesFile) throws {
        for spec in bundle.config.experts {
            if let id = unit.extractors[spec.name], id != spec.extractor {
                throw StageFileError(path: unit.path, message: "expert '\(spec.name)' was extracted with '\(id)', but bundle \(bundle.directory) was trained on '\(spec.extractor)'")
            }
        }
        if let (video, expert) = unit.firstUndeclaredExpert() {
            let declared = unit.extractors.keys.sorted().joined(separator: ", ")
            throw StageFileError(path: unit.path, message: "video '\(unit.videos[video].id)' holds expert '\(expert)', which the file's 'extractors' metadata does not declare (it declares: \(declared.isEmpty ? "none" : declared)): its extractor cannot be checked against the bundle (Schemas/features.md)")
        }
    }

    /// Encodes the features file at `features` into the codes file `out` (atomically).
    /// - Parameter warn: receives one line per NaN-masked expert as it is met.
    /// - Throws: `StageFileError` or `SafeTensorsError` for a features file that cannot be
    ///   used (see `check`), `FileWriteError` when the output cannot be written.
    public func encode(features: String, to out: String, warn: (String) -> Void = { _ in }) throws -> Outcome {
        let started = Date()
        let unit = try FeaturesFile(path: features)
        try check(unit)
        let encoder = HCQEncoder(bundle: bundle, batchSize: batchSize)
        let layout = bundle.quantizer.layout
        let perVideo = layout.codeBytes, count = unit.videos.count
        var codes = [UInt8](repeating: 0, count: count * perVideo)
        var floats: [Float]? = keepEmbeddings ? [Float](repeating: 0, count: count * layout.vectorCount) : nil
        var records = unit.videos
        var masked: [(video: String, expert: String)] = []
        var failed = 0
        let progress = ProgressLine(total: count, minimumItems: 64)
        defer { progress.finish() }
        var start = 0
        while start < count {
            let end = min(count, start + batchSize * 4)
            var inputs: [VideoFeatures] = []
            var positions: [Int] = []
            for i in start..<end {
                if records[i].status == .failed { failed += 1; continue }
                do {
                    let video = VideoFeatures(experts: try unit.experts(of: i))
                    for name in video.nanMaskedExperts {
                        masked.append((records[i].id, name))
                        progress.finish()
                        warn("warning: \(features): video '\(records[i].id)': expert '\(name)' has NaN as its first value: treated as missing (HCQ's rule; NaN elsewhere fails the video); check the extractor or importer that wrote it")
                    }
                    inputs.append(video)
                    positions.append(i)
                } catch {
                    records[i].fail(.badFeatures, "\(error)")
                    failed += 1
                }
            }
            for (j, result) in encoder.encode(inputs).enumerated() {
                let i = positions[j]
                switch result {
                case .success(let enc):
                    codes.replaceSubrange((i * perVideo)..<((i + 1) * perVideo), with: enc.codes)
                    if floats != nil {
                        let n = enc.embeddings.count
                        floats!.replaceSubrange((i * n)..<((i + 1) * n), with: enc.embeddings)
                    }
                case .failure(let e):
                    records[i].fail(e.kind, e.message)
                    failed += 1
                }
            }
            start = end
            unit.releaseResidentPages()  // the chunk's features were copied; keep RSS near one chunk
            progress.update(done: start, failed: failed, current: features)
        }
        try CodesFile.write(to: out, videos: records, codes: codes, levels: layout.levels, subspaces: layout.subspaces,
                            codewords: layout.codewords, embeddings: floats, hidden: layout.dimension,
                            bundleFingerprint: bundle.fingerprint, featuresBundleFingerprint: unit.bundleFingerprint)
        return Outcome(records: records, nanMaskedExperts: masked, seconds: Date().timeIntervalSince(started))
    }
}
