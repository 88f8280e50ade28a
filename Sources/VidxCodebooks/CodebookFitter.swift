import Foundation
import VidxCore
import VidxHCQ
import VidxNumerics
import VidxQuantization

/// Why codebooks could not be fitted: too small a sample, embeddings of another bundle,
/// an input that cannot be used. Messages name the input and the numbers.
public struct FitError: Error, CustomStringConvertible, Sendable, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A sample of videos' float embeddings, every level: the points codebooks are fitted on.
public struct EmbeddingSample: Sendable {
    /// The sampled ids, in sample order (by keyed hash: see `CodebookFitter.select`).
    public var ids: [String]
    /// (n, L, D) Float32: each video's levels as the quantizer receives them.
    public var embeddings: [Float]
    public var levels: Int, dimension: Int
    /// `embeddings` or `features`.
    public var input: String
    public var files: Int
    /// Usable videos found in the inputs (the sample is drawn from these).
    public var available: Int

    public var count: Int { ids.count }

    /// SHA-256 (hex) of the ids sorted by their UTF-8 bytes, each followed by a newline.
    public var idsDigest: String {
        let sorted = ids.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        return SHA256Digest.hex(Array(sorted.map { $0 + "\n" }.joined().utf8))
    }
}

/// `vidx-fit-codebooks` in-process: samples embeddings from codes files (or encodes
/// features files), fits every level's codebooks by spherical k-means and writes a new
/// bundle whose `bundle.json` records how (Documentation/Codebooks.md).
public struct CodebookFitter: Sendable {
    public let bundle: ModelBundle
    public let settings: SphericalKMeans.Settings
    /// Videos to sample; nil: every usable video, up to the cap.
    public let sampleSize: Int?

    public init(bundle: ModelBundle, settings: SphericalKMeans.Settings = .init(), sampleSize: Int? = nil) {
        self.bundle = bundle
        self.settings = settings
        self.sampleSize = sampleSize
    }

    /// The most videos a fit uses: K x max points per centroid (FAISS's cap).
    public var cap: Int { bundle.quantizer.layout.codewords * settings.maxPointsPerCentroid }

    // MARK: The sample

    /// The sample's ids out of `candidates`: the `size` with the smallest
    /// SHA-256(seed, id), so the sample depends on the seed and the set of ids, not on the
    /// order of the inputs.
    public static func select(_ candidates: [String], size: Int, seed: UInt64) -> [String] {
        let keyed = candidates.map { id -> (UInt64, String) in
            let digest = SHA256Digest.raw(Array("vidx-sample-v1\n\(seed)\n\(id)".utf8))
            var key: UInt64 = 0
            for b in digest.prefix(8) { key = key << 8 | UInt64(b) }
            return (key, id)
        }
        return keyed.sorted { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1.utf8.lexicographicallyPrecedes($1.1.utf8) }
            .prefix(size).map(\.1)
    }

    /// The usable videos of the inputs, each with the file and row that hold it.
    struct Candidates {
        var owner: [String: (file: Int, row: Int)] = [:]
        var ids: [String] = []

        /// Adds the videos of `paths[file]` that did not fail.
        /// - Throws: `FitError` for a video already given by another file.
        mutating func add(_ videos: [VideoRecord], file: Int, paths: [String]) throws {
            for (row, v) in videos.enumerated() where v.status != .failed {
                if let first = owner[v.id] {
                    throw FitError("video '\(v.id)' is in both \(paths[first.file]) and \(paths[file]): give each video once")
                }
                owner[v.id] = (file, row)
                ids.append(v.id)
            }
        }
    }

    /// How many videos to sample out of `available`, refusing fewer than K.
    func sampleCount(available: Int, note: (String) -> Void) throws -> Int {
        let K = bundle.quantizer.layout.codewords
        var n = min(sampleSize ?? available, available)
        if let asked = sampleSize, asked > available {
            note("--sample \(asked) is more than the \(available) usable videos: fitting on all of them")
        }
        if n > cap {
            note("sampling \(cap) of \(n) videos: K \(K) x \(settings.maxPointsPerCentroid) points per centroid is the most a fit uses")
            n = cap
        }
        guard n >= K else {
            throw FitError("a sample of \(n) videos (of \(available) usable) is smaller than K = \(K) codewords per sub-space: fitting needs at least \(K) videos")
        }
        return n
    }

    /// Samples from codes files written with `vidx-encode --embeddings`.
    /// - Throws: `FitError` for a file without embeddings, made by another bundle, with
    ///   another shape, a duplicate id or too small a sample; the reader's errors.
    public func sample(codes paths: [String], note: (String) -> Void = { _ in }) throws -> EmbeddingSample {
        let layout = bundle.quantizer.layout
        var found = Candidates()
        // First pass: the headers only (ids and bundles); the data of the sampled files is
        // read once, in the second.
        var headers: [CodesFile.Header] = []
        for (f, path) in paths.enumerated() {
            let header = try CodesFile.header(path: path)
            headers.append(header)
            guard header.embeddingsShape != nil else {
                throw FitError("\(path): holds no embeddings: write codes files with vidx-encode --embeddings, or give --features")
            }
            guard bundle.acceptsEmbeddings(from: header.bundleFingerprint) else {
                throw FitError("\(path): " + Requantizer.foreignEmbeddings(madeBy: header.bundleFingerprint, bundle: bundle))
            }
            try found.add(header.videos, file: f, paths: paths)
        }
        let ids = Self.select(found.ids, size: try sampleCount(available: found.ids.count, note: note), seed: settings.seed)
        let width = layout.vectorCount
        var embeddings = [Float](repeating: 0, count: ids.count * width)
        var byFile: [Int: [(position: Int, row: Int)]] = [:]
        for (p, id) in ids.enumerated() { byFile[found.owner[id]!.file, default: []].append((p, found.owner[id]!.row)) }
        // Second pass: only the sampled rows of each file's embeddings are copied (and checked).
        for f in byFile.keys.sorted() {
            let file = try SafeTensorsFile(path: paths[f])
            let expected = [headers[f].videos.count, layout.levels, layout.dimension]
            guard let info = file.info("embeddings"), info.dtype == .f32, info.shape == expected else {
                throw FitError("\(paths[f]): tensor 'embeddings' is \(file.info("embeddings").map { "\($0.dtype.rawValue) \($0.shape)" } ?? "absent"), expected F32 \(expected)")
            }
            let raw = try file.bytes("embeddings")
            try embeddings.withUnsafeMutableBufferPointer { out in
                for (p, row) in byFile[f]! {
                    let dst = out.baseAddress! + p * width
                    for j in 0..<width {
                        let v = raw.loadUnaligned(fromByteOffset: (row * width + j) * 4, as: Float.self)
                        guard v.isFinite else {
                            throw FitError("\(paths[f]): video '\(headers[f].videos[row].id)': embedding value \(v) at level \(j / layout.dimension) is not finite")
                        }
                        dst[j] = v
                    }
                }
            }
            file.releaseResidentPages()
        }
        return EmbeddingSample(ids: ids, embeddings: embeddings, levels: layout.levels, dimension: layout.dimension,
                               input: "embeddings", files: paths.count, available: found.ids.count)
    }

    func check(_ file: CodesFile) throws {
        let layout = bundle.quantizer.layout
        do {
            try file.checkShape(levels: layout.levels, subspaces: layout.subspaces, codewords: layout.codewords, hidden: layout.dimension)
        } catch let e as StageFileError { throw FitError(e.description) }
        guard file.embeddings != nil else {
            throw FitError("\(file.path): holds no embeddings: write codes files with vidx-encode --embeddings, or give --features")
        }
        do { try Requantizer.checkEmbeddings(file, bundle: bundle) } catch let e as StageFileError { throw FitError(e.description) }
    }

    /// Samples from features files, encoding the sampled videos with the bundle.
    /// A video the encoder fails is left out (named by `note`).
    public func sample(features paths: [String], batchSize: Int = 16, note: (String) -> Void = { _ in }) throws -> EmbeddingSample {
        let layout = bundle.quantizer.layout
        let checker = UnitEncoder(bundle: bundle)
        var found = Candidates()
        for (f, path) in paths.enumerated() {
            let unit = try FeaturesFile(path: path)
            try checker.check(unit)
            try found.add(unit.videos, file: f, paths: paths)
        }
        let chosen = Self.select(found.ids, size: try sampleCount(available: found.ids.count, note: note), seed: settings.seed)
        let width = layout.vectorCount
        var vectors: [String: [Float]] = [:]
        var byFile: [Int: [Int]] = [:]
        for id in chosen { byFile[found.owner[id]!.file, default: []].append(found.owner[id]!.row) }
        let encoder = HCQEncoder(bundle: bundle, batchSize: batchSize)
        let progress = ProgressLine(total: chosen.count, minimumItems: 64)
        defer { progress.finish() }
        var done = 0, failed = 0
        for f in byFile.keys.sorted() {
            let unit = try FeaturesFile(path: paths[f])
            let rows = byFile[f]!.sorted()
            for start in stride(from: 0, to: rows.count, by: batchSize * 4) {
                let part = Array(rows[start..<min(rows.count, start + batchSize * 4)])
                var inputs: [VideoFeatures] = [], kept: [Int] = []
                for row in part {
                    do { inputs.append(VideoFeatures(experts: try unit.experts(of: row))); kept.append(row) } catch {
                        progress.finish()
                        note("\(paths[f]): video '\(unit.videos[row].id)' left out: \(error)")
                        failed += 1
                    }
                }
                for (j, result) in encoder.encode(inputs).enumerated() {
                    switch result {
                    case .success(let e): vectors[unit.videos[kept[j]].id] = e.embeddings
                    case .failure(let e):
                        progress.finish()
                        note("\(paths[f]): video '\(unit.videos[kept[j]].id)' left out: \(e)")
                        failed += 1
                    }
                }
                unit.releaseResidentPages()
                done += part.count
                progress.update(done: done, failed: failed, current: paths[f])
            }
        }
        let ids = chosen.filter { vectors[$0] != nil }
        guard ids.count >= layout.codewords else {
            throw FitError("only \(ids.count) of the \(chosen.count) sampled videos could be encoded: fewer than K = \(layout.codewords)")
        }
        var embeddings = [Float](repeating: 0, count: ids.count * width)
        for (p, id) in ids.enumerated() { embeddings.replaceSubrange((p * width)..<((p + 1) * width), with: vectors[id]!) }
        return EmbeddingSample(ids: ids, embeddings: embeddings, levels: layout.levels, dimension: layout.dimension,
                               input: "features", files: paths.count, available: found.ids.count)
    }

    // MARK: Fitting

    /// What a fit gives: the quantizer and what `bundle.json` records.
    public struct Fit: Sendable {
        public var quantizer: ProductQuantizer
        public var provenance: CodebookProvenance
        /// Every level's objective per iteration, level 0 first.
        public var objectives: [[Double]]
        public var seconds: Double
    }

    /// Fits every level on `sample`, one level after the other (each on every thread).
    /// - Parameter progress: (level, iteration, objective) after every iteration.
    public func fit(_ sample: EmbeddingSample, progress: (Int, Int, Double) -> Void = { _, _, _ in }) throws -> Fit {
        let started = Date()
        let layout = bundle.quantizer.layout
        let L = layout.levels, M = layout.subspaces, K = layout.codewords, d = layout.subDimension, D = layout.dimension
        let n = sample.count
        guard sample.levels == L, sample.dimension == D else {
            throw FitError("the sample is \(sample.levels) levels x \(sample.dimension), the bundle's quantizer \(layout)")
        }
        guard n >= K else { throw FitError("a sample of \(n) videos is smaller than K = \(K) codewords per sub-space") }
        guard n <= cap else { throw FitError("a sample of \(n) videos is more than K x max points per centroid = \(cap)") }
        var codebooks: [Float] = []
        codebooks.reserveCapacity(layout.codebookCount)
        var levels: [CodebookProvenance.Level] = []
        var objectives: [[Double]] = []
        var points = [Float](repeating: 0, count: n * D)  // one buffer for every level
        for l in 0..<L {
            // Level l of every video as (M, n, d), each sub-vector L2-normalised as HCQ quantizes it.
            sample.embeddings.withUnsafeBufferPointer { eb in
                points.withUnsafeMutableBufferPointer { pb in
                    nonisolated(unsafe) let e = eb.baseAddress!, p = pb.baseAddress!
                    Parallel.forEachRange(n) { range in
                        for i in range {
                            let src = e + (i * L + l) * D
                            for m in 0..<M {
                                var norm: Float = 0
                                for j in 0..<d { norm += src[m * d + j] * src[m * d + j] }
                                let scale = 1 / max(norm.squareRoot(), 1e-12)
                                let dst = p + (m * n + i) * d
                                for j in 0..<d { dst[j] = src[m * d + j] * scale }
                            }
                        }
                    }
                }
            }
            let result = SphericalKMeans.fit(points: points, count: n, subspaces: M, codewords: K, subDimension: d,
                                             settings: settings, level: l, progress: { progress(l, $0, $1) })
            codebooks += result.codewords
            levels.append(.init(objective: result.objective.last ?? 0, splits: result.splits))
            objectives.append(result.objective)
        }
        let quantizer: ProductQuantizer
        do { quantizer = try ProductQuantizer(layout: layout, codebooks: codebooks) } catch {
            throw FitError("the fitted codebooks break the quantizer's rules: \(error)")
        }
        let provenance = CodebookProvenance(
            method: "spherical-kmeans", sourceBundle: bundle.fingerprint,
            embeddingsFrom: [bundle.fingerprint] + (bundle.config.codebooks?.embeddingsFrom ?? []),
            sample: .init(videos: n, idsSHA256: sample.idsDigest, input: sample.input, files: sample.files),
            settings: .init(iterations: settings.iterations, seed: settings.seed,
                            maxPointsPerCentroid: settings.maxPointsPerCentroid, seedingPoints: settings.seedingPoints),
            levels: levels, tool: "vidx-fit-codebooks \(VidxVersion.string)")
        return Fit(quantizer: quantizer, provenance: provenance, objectives: objectives, seconds: Date().timeIntervalSince(started))
    }
}
