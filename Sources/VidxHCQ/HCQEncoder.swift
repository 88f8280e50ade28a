import Foundation
import VidxCore
import VidxNumerics

/// All experts' features for one video, by expert name. An expert absent from the map,
/// with no rows, or whose first value is NaN (`isMaskedByNaN`) is missing for this video
/// (HCQ handles that); a video with every expert missing is not encoded (`no_features`).
public struct VideoFeatures: Sendable, Equatable {
    public var experts: [String: FeatureSeries]
    public init(experts: [String: FeatureSeries]) { self.experts = experts }

    /// The experts that have rows but whose first value is NaN, sorted by name: HCQ's
    /// reference treats such a matrix as missing, so the encoder does too. Callers report
    /// them: a broken extractor or importer writing NaN rows is otherwise invisible.
    public var nanMaskedExperts: [String] {
        experts.filter { $0.value.isMaskedByNaN }.map(\.key).sorted()
    }
}

/// A video's HCQ output.
public struct VideoEncoding: Sendable, Equatable {
    /// levels x M codes (level 0 coarse, then the fine levels), one byte each.
    public var codes: [UInt8]
    /// levels x hidden floats: level 0 is the coarse embedding as the quantizer receives
    /// it (mean of the normalised [AGG] outputs, not re-normalised), then the
    /// L2-normalised GhostVLAD vectors.
    public var embeddings: [Float]
}

/// Why one video could not be encoded (the others go on).
public struct EncodeError: Error, CustomStringConvertible, Sendable, Equatable {
    /// One of `FailureClass.encoder`: `wrongWidth` (an expert's width differs from the
    /// bundle's), `badFeatures` (NaN or infinity in the features or times, but a first
    /// value NaN, which masks the expert; malformed tensors; an encoder output that is not
    /// finite), `unknownExpert` (an expert the bundle does not have), `noFeatures` (every
    /// expert missing: absent, 0 rows, or NaN-masked; HCQ would give every such video the
    /// same embedding, so they would all match each other with score 1.0).
    public let kind: FailureClass
    public let message: String
    public var description: String { "\(kind.rawValue): \(message)" }
}

/// HCQ's video side at inference: token building, the BERT-style transformer, the coarse
/// level, GhostVLAD fine levels and product quantization, exactly as the authors' code
/// (Documentation/HCQ-inference.md). Videos are encoded in batches: every dense product
/// covers all tokens of the batch. The bytes do not depend on the thread count; on AMD Zen
/// the batch size can change their last bits (Documentation/Determinism.md, "The encoder").
public final class HCQEncoder: @unchecked Sendable {
    public let bundle: ModelBundle
    public let batchSize: Int
    private let config: BundleConfig
    private let w: HCQWeights

    /// - Parameter batchSize: videos per transformer pass (memory grows linearly:
    ///   about 3 MB per video at the MSRVTT shapes).
    public init(bundle: ModelBundle, batchSize: Int = 16) {
        self.bundle = bundle
        self.batchSize = max(1, batchSize)
        config = bundle.config
        w = bundle.weights
    }

    /// Encodes videos; element i of the result belongs to video i.
    ///
    /// A video fails alone: on its inputs (`prepare`), or when any of its outputs is not
    /// finite (extreme but finite features can overflow float32 inside the network, and
    /// NaN would quantize to all-zero codes). Rows of a batch do not mix, so one video's
    /// overflow leaves the others' values as they would be.
    public func encode(_ videos: [VideoFeatures]) -> [Result<VideoEncoding, EncodeError>] {
        var results = [Result<VideoEncoding, EncodeError>?](repeating: nil, count: videos.count)
        var valid: [(index: Int, tokens: VideoTokens)] = []
        for (i, v) in videos.enumerated() {
            switch prepare(v) {
            case .success(let t): valid.append((i, t))
            case .failure(let e): results[i] = .failure(e)
            }
        }
        var start = 0
        while start < valid.count {
            let chunk = Array(valid[start..<min(valid.count, start + batchSize)])
            let encoded = run(chunk.map(\.tokens))
            for (j, item) in chunk.enumerated() { results[item.index] = checked(encoded[j]) }
            start += batchSize
        }
        return results.map { $0! }
    }

    /// `encoding`, or a `bad_features` failure naming the first level whose embedding is
    /// not finite.
    func checked(_ encoding: VideoEncoding) -> Result<VideoEncoding, EncodeError> {
        guard let bad = encoding.embeddings.firstIndex(where: { !$0.isFinite }) else { return .success(encoding) }
        let level = bad / config.hiddenSize
        return .failure(EncodeError(kind: .badFeatures, message: "the encoder's output was not finite (\(encoding.embeddings[bad]) at level \(level) of its embedding): features this large overflow float32 inside the network; check their scale"))
    }

    // MARK: Token building

    /// One video's inputs to the transformer, before projection.
    struct VideoTokens {
        /// Per expert: (T + 1) x width raw rows: the max-pool, then T temporal rows
        /// (subset or zero-padded).
        var raw: [[Float]]
        /// Per expert: whether it has any feature.
        var present: [Bool]
        /// Per expert: T positions and T masks of the temporal tokens.
        var positions: [[Int]]
        var masks: [[Float]]
    }

    func prepare(_ video: VideoFeatures) -> Result<VideoTokens, EncodeError> {
        for name in video.experts.keys.sorted() where !config.experts.contains(where: { $0.name == name }) {
            return .failure(EncodeError(kind: .unknownExpert,
                                        message: "expert '\(name)' is not one of the bundle's experts \(config.experts.map(\.name))"))
        }
        let T = config.tokensPerExpert
        var tokens = VideoTokens(raw: [], present: [], positions: [], masks: [])
        for spec in config.experts {
            let width = spec.width
            var raw = [Float](repeating: 0, count: (T + 1) * width)
            var positions = [Int](repeating: 1, count: T)
            var masks = [Float](repeating: 0, count: T)
            var present = false
            if let f = video.experts[spec.name], f.rows > 0 {
                guard f.width == width else {
                    return .failure(EncodeError(kind: .wrongWidth,
                                                message: "expert '\(spec.name)' has width \(f.width), the bundle expects \(width)"))
                }
                guard f.features.count == f.rows * width, f.times.count == f.rows * 2 else {
                    return .failure(EncodeError(kind: .badFeatures,
                                                message: "expert '\(spec.name)': \(f.features.count) values for \(f.rows) rows of width \(width)"))
                }
                // HCQ's reference treats a matrix whose first value is NaN as missing.
                if !f.isMaskedByNaN {
                    if let bad = f.features.firstIndex(where: { !$0.isFinite }) {
                        return .failure(EncodeError(kind: .badFeatures,
                                                    message: "expert '\(spec.name)' has \(f.features[bad]) at row \(bad / width), column \(bad % width)"))
                    }
                    // Times matter (and are checked) only for timed experts.
                    if spec.isTimed, f.times.contains(where: { !$0.isFinite }) {
                        return .failure(EncodeError(kind: .badFeatures, message: "expert '\(spec.name)' has a non-finite time"))
                    }
                    present = true
                    // Max-pool over every row, before any subsetting.
                    for c in 0..<width { raw[c] = f.features[c] }
                    for r in 1..<f.rows {
                        for c in 0..<width { raw[c] = max(raw[c], f.features[r * width + c]) }
                    }
                    let chosen = f.rows > T ? LegacyRandom.sortedChoice(n: f.rows, size: T) : Array(0..<f.rows)
                    for (t, r) in chosen.enumerated() {
                        let dst = (1 + t) * width
                        for c in 0..<width { raw[dst + c] = f.features[r * width + c] }
                        masks[t] = 1
                        if spec.isTimed {
                            let mid = Double(f.times[2 * r] + f.times[2 * r + 1]) / 2
                            let clamped = min(max(mid + 2, 0), Double(config.maxPositions - 1))
                            positions[t] = Int(clamped.rounded(.down))
                        }
                    }
                }
            }
            tokens.raw.append(raw)
            tokens.present.append(present)
            tokens.positions.append(positions)
            tokens.masks.append(masks)
        }
        guard tokens.present.contains(true) else {
            let masked = video.nanMaskedExperts
            let why = masked.isEmpty ? "" : " (first value NaN, which HCQ treats as missing: \(masked.joined(separator: ", ")))"
            return .failure(EncodeError(kind: .noFeatures,
                                        message: "no expert has features\(why): every expert is absent, has 0 rows or is masked; such a video would get the same codes as every other empty one"))
        }
        return .success(tokens)
    }

    // MARK: The network

    func run(_ videos: [VideoTokens]) -> [VideoEncoding] {
        let B = videos.count, T = config.tokensPerExpert, E = config.experts.count
        let L = config.sequenceLength, h = config.hiddenSize
        var x = Matrix(rows: B * L, cols: h)
        var positions = [Int](repeating: 0, count: B * L)
        var types = [Int](repeating: 0, count: B * L)
        var keyMask = [Float](repeating: 0, count: B * L)
        var vladMask = [Float](repeating: 0, count: B * L)

        // Project every expert's rows for the whole batch at once, then L2-normalise.
        for (m, spec) in config.experts.enumerated() {
            var raw = Matrix(rows: B * (T + 1), cols: spec.width)
            raw.data.withUnsafeMutableBufferPointer { dst in
                for (b, v) in videos.enumerated() {
                    v.raw[m].withUnsafeBufferPointer { src in
                        (dst.baseAddress! + b * (T + 1) * spec.width).update(from: src.baseAddress!, count: src.count)
                    }
                }
            }
            var projected = w.projections[m](raw)
            l2NormalizeRows(&projected, eps: 1e-12)
            for (b, v) in videos.enumerated() {
                let agg = b * L + 1 + m * (T + 1)
                for t in 0...T {
                    let row = agg + t
                    let src = (b * (T + 1) + t) * h
                    for c in 0..<h { x.data[row * h + c] = projected.data[src + c] }
                    types[row] = spec.typeId
                    if t == 0 {
                        positions[row] = 0
                        keyMask[row] = v.present[m] ? 1 : 0
                    } else {
                        positions[row] = v.positions[m][t - 1]
                        keyMask[row] = v.masks[m][t - 1]
                        vladMask[row] = v.masks[m][t - 1]
                    }
                }
            }
            _ = E
        }
        // [CLS]: zero feature, position 0, type 0, attended to.
        for b in 0..<B { keyMask[b * L] = 1 }

        // Embeddings: feature + position + type, then LayerNorm.
        for r in 0..<(B * L) {
            let p = positions[r] * h, t = types[r] * h
            for c in 0..<h {
                x.data[r * h + c] += w.positionEmbeddings.data[p + c] + w.typeEmbeddings.data[t + c]
            }
        }
        layerNorm(&x, gamma: w.embeddingNorm.gamma, beta: w.embeddingNorm.beta, eps: Float(config.layerNormEps))

        // Post-LayerNorm BERT layers.
        let eps = Float(config.layerNormEps)
        for layer in w.layers {
            let qkv = layer.qkv(x)
            let (q, k, v) = split3(qkv, h)
            var attended = layer.attentionOutput(
                multiHeadAttention(q: q, k: k, v: v, heads: config.heads, sequenceLength: L, keyMask: keyMask))
            add(&attended, x)
            layerNorm(&attended, gamma: layer.attentionNorm.gamma, beta: layer.attentionNorm.beta, eps: eps)
            var inner = layer.intermediate(attended)
            geluErf(&inner)
            var out = layer.output(inner)
            add(&out, attended)
            layerNorm(&out, gamma: layer.outputNorm.gamma, beta: layer.outputNorm.beta, eps: eps)
            x = out
        }

        // Fine levels: GhostVLAD over every token.
        let c = config.clusters
        var logits = BLAS.matmul(x, w.vladAssign)
        for r in 0..<(B * L) { for j in 0..<c { logits.data[r * c + j] *= vladMask[r] } }
        batchNormInference(&logits, weight: w.vladNorm.weight, bias: w.vladNorm.bias,
                           runningMean: w.vladNorm.mean, runningVar: w.vladNorm.variance, eps: Float(config.batchNormEps))
        softmaxRows(&logits)

        var encodings: [VideoEncoding] = []
        encodings.reserveCapacity(B)
        for b in 0..<B {
            var levels = Matrix(rows: config.levels, cols: h)
            // Coarse: mean over all experts of the normalised [AGG] outputs.
            var aggs = Matrix(rows: E, cols: h)
            for m in 0..<E {
                let row = b * L + 1 + m * (T + 1)
                for col in 0..<h { aggs.data[m * h + col] = x.data[row * h + col] }
            }
            l2NormalizeRows(&aggs, eps: 1e-12)
            for col in 0..<h {
                var s: Float = 0
                for m in 0..<E { s += aggs.data[m * h + col] }
                levels.data[col] = s / Float(E)
            }
            // v_k = sum_n s_nk h_n - (sum_n s_nk) c_k, then L2-normalised.
            var assignT = Matrix(rows: c, cols: L)
            var hb = Matrix(rows: L, cols: h)
            for n in 0..<L {
                for k in 0..<c { assignT.data[k * L + n] = logits.data[(b * L + n) * c + k] }
            }
            hb.data.withUnsafeMutableBufferPointer { dst in
                x.data.withUnsafeBufferPointer { src in
                    dst.baseAddress!.update(from: src.baseAddress! + b * L * h, count: L * h)
                }
            }
            var vlad = BLAS.matmul(assignT, hb)
            for k in 0..<c {
                var mass: Float = 0
                for n in 0..<L { mass += assignT.data[k * L + n] }
                for col in 0..<h { vlad.data[k * h + col] -= mass * w.vladCentres.data[k * h + col] }
            }
            l2NormalizeRows(&vlad, eps: 1e-12)
            for i in 0..<(c * h) { levels.data[h + i] = vlad.data[i] }
            encodings.append(VideoEncoding(codes: bundle.quantizer.encode(levels.data), embeddings: levels.data))
        }
        return encodings
    }

    private func split3(_ qkv: Matrix, _ h: Int) -> (Matrix, Matrix, Matrix) {
        var q = Matrix(rows: qkv.rows, cols: h), k = q, v = q
        qkv.data.withUnsafeBufferPointer { src in
            q.data.withUnsafeMutableBufferPointer { qd in
                k.data.withUnsafeMutableBufferPointer { kd in
                    v.data.withUnsafeMutableBufferPointer { vd in
                        for r in 0..<qkv.rows {
                            let s = src.baseAddress! + r * 3 * h
                            (qd.baseAddress! + r * h).update(from: s, count: h)
                            (kd.baseAddress! + r * h).update(from: s + h, count: h)
                            (vd.baseAddress! + r * h).update(from: s + 2 * h, count: h)
                        }
                    }
                }
            }
        }
        return (q, k, v)
    }

    private func add(_ a: inout Matrix, _ b: Matrix) {
        a.data.withUnsafeMutableBufferPointer { ad in
            b.data.withUnsafeBufferPointer { bd in
                for i in 0..<ad.count { ad[i] += bd[i] }
            }
        }
    }
}
