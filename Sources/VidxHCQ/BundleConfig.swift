import Foundation
import VidxCore
import VidxQuantization

/// One expert of a bundle: a named feature stream the model was trained on.
public struct ExpertSpec: Codable, Sendable, Equatable {
    public var name: String
    /// Feature width d_m.
    public var width: Int
    /// Token-type id of the expert's tokens.
    public var typeId: Int
    /// `windowed`: rows carry time windows; `untimed` (`none` in the file): every temporal
    /// token gets position 1.
    public var timing: ExpertTiming
    /// The extractor whose features the model was trained on.
    public var extractor: String

    public var isTimed: Bool { timing == .windowed }

    public init(name: String, width: Int, typeId: Int, timing: ExpertTiming, extractor: String) {
        self.name = name
        self.width = width
        self.typeId = typeId
        self.timing = timing
        self.extractor = extractor
    }

    enum CodingKeys: String, CodingKey { case name, width, typeId = "type_id", timing, extractor }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        width = try c.decode(Int.self, forKey: .width)
        typeId = try c.decode(Int.self, forKey: .typeId)
        let t = try c.decode(String.self, forKey: .timing)
        guard let known = ExpertTiming(rawValue: t) else {
            throw StrictDecoding.Violation("expert \(name): timing '\(t)' is not \(ExpertTiming.allCases.map(\.rawValue).joined(separator: " or "))")
        }
        timing = known
        extractor = try c.decode(String.self, forKey: .extractor)
    }
}

/// Product-quantization sizes: M sub-codebooks of K codewords per level.
public struct PQConfig: Codable, Sendable, Equatable {
    public var subspaces: Int
    public var codewords: Int
}

/// Where a bundle's weights come from.
public struct Provenance: Codable, Sendable, Equatable {
    public var source: String
    public var checkpoint: String?
    public var checkpointSHA256: String?
    public var trained: Bool?
    public var seed: Int?
    public var notes: String?

    enum CodingKeys: String, CodingKey {
        case source, checkpoint, checkpointSHA256 = "checkpoint_sha256", trained, seed, notes
    }
}

/// How a bundle's codebooks were fitted (`vidx-fit-codebooks`), in `bundle.json`'s
/// `codebooks`; absent for codebooks that came with the checkpoint.
public struct CodebookProvenance: Codable, Sendable, Equatable {
    public struct Sample: Codable, Sendable, Equatable {
        /// Videos in the sample (one point per sub-space and level each).
        public var videos: Int
        /// SHA-256 (hex) of the sample's ids sorted by their UTF-8 bytes, one per line.
        public var idsSHA256: String
        /// `embeddings` (codes files with embeddings) or `features` (encoded while fitting).
        public var input: String
        /// Input files the sample was drawn from.
        public var files: Int

        public init(videos: Int, idsSHA256: String, input: String, files: Int) {
            self.videos = videos
            self.idsSHA256 = idsSHA256
            self.input = input
            self.files = files
        }

        enum CodingKeys: String, CodingKey { case videos, idsSHA256 = "ids_sha256", input, files }
    }
    public struct Level: Codable, Sendable, Equatable {
        /// The last iteration's mean cosine between a sub-vector and its codeword.
        public var objective: Double
        /// Empty clusters split over the fit.
        public var splits: Int

        public init(objective: Double, splits: Int) {
            self.objective = objective
            self.splits = splits
        }
    }
    public struct Settings: Codable, Sendable, Equatable {
        public var iterations: Int
        public var seed: UInt64
        public var maxPointsPerCentroid: Int
        public var seedingPoints: Int

        public init(iterations: Int, seed: UInt64, maxPointsPerCentroid: Int, seedingPoints: Int) {
            self.iterations = iterations
            self.seed = seed
            self.maxPointsPerCentroid = maxPointsPerCentroid
            self.seedingPoints = seedingPoints
        }

        enum CodingKeys: String, CodingKey {
            case iterations, seed, maxPointsPerCentroid = "max_points_per_centroid", seedingPoints = "seeding_points"
        }
    }
    /// `spherical-kmeans`.
    public var method: String
    /// The fingerprint of the bundle the codebooks replace (its other weights are copied).
    public var sourceBundle: String
    /// Fingerprints of bundles whose embeddings equal this bundle's (same weights but the
    /// codebooks): the source and what the source listed. Their codes files with
    /// embeddings may be re-quantized with this bundle or refitted from.
    public var embeddingsFrom: [String]
    public var sample: Sample
    public var settings: Settings
    /// One per level, level 0 first.
    public var levels: [Level]
    /// The program that fitted them, with its version.
    public var tool: String

    public init(method: String, sourceBundle: String, embeddingsFrom: [String], sample: Sample, settings: Settings,
                levels: [Level], tool: String) {
        self.method = method
        self.sourceBundle = sourceBundle
        self.embeddingsFrom = embeddingsFrom
        self.sample = sample
        self.settings = settings
        self.levels = levels
        self.tool = tool
    }

    enum CodingKeys: String, CodingKey {
        case method, sourceBundle = "source_bundle", embeddingsFrom = "embeddings_from", sample, settings, levels, tool
    }
}

/// `bundle.json` (Schemas/model-bundle.schema.json): the architecture of an HCQ video encoder.
public struct BundleConfig: Codable, Sendable, Equatable {
    public var format: String
    public var formatVersion: Int
    public var name: String
    /// In HCQ's processing order: alphabetical by name.
    public var experts: [ExpertSpec]
    /// T: temporal tokens per expert.
    public var tokensPerExpert: Int
    public var maxPositions: Int
    public var typeVocabSize: Int
    public var hiddenSize: Int
    public var layers: Int
    public var heads: Int
    public var ffnSize: Int
    public var layerNormEps: Double
    /// Fine levels (GhostVLAD clusters, the ghost excluded).
    public var clusters: Int
    public var batchNormEps: Double
    public var pq: PQConfig
    public var provenance: Provenance
    /// Present when the codebooks were fitted by `vidx-fit-codebooks`.
    public var codebooks: CodebookProvenance?

    enum CodingKeys: String, CodingKey {
        case format, formatVersion = "format_version", name, experts
        case tokensPerExpert = "tokens_per_expert", maxPositions = "max_positions", typeVocabSize = "type_vocab_size"
        case hiddenSize = "hidden_size", layers, heads, ffnSize = "ffn_size", layerNormEps = "layer_norm_eps"
        case clusters, batchNormEps = "batch_norm_eps", pq, provenance, codebooks
    }

    /// Levels of codes: the coarse level and one per cluster.
    public var levels: Int { 1 + clusters }
    /// Tokens per video: [CLS], then per expert an [AGG] and T temporal tokens.
    public var sequenceLength: Int { 1 + experts.count * (tokensPerExpert + 1) }
    /// Dimensions of a PQ sub-vector.
    public var subDimension: Int { hiddenSize / pq.subspaces }
    /// The product quantizer's layout: `levels` x M x K over vectors of `hidden_size`.
    /// - Throws: `QuantizerError` when the sizes break its rules (`problems()` reports them too).
    public func quantizerLayout() throws -> ProductQuantizer.Layout {
        try ProductQuantizer.Layout(levels: levels, subspaces: pq.subspaces, codewords: pq.codewords, dimension: hiddenSize)
    }

    /// Checks what the schema cannot: consistent sizes, sorted unique experts.
    /// - Returns: the problems found (empty: valid).
    public func problems() -> [String] {
        var p: [String] = []
        if format != "vidx-hcq-bundle" { p.append("format is '\(format)', expected 'vidx-hcq-bundle'") }
        if formatVersion != 1 { p.append("format_version \(formatVersion) is not supported (this build reads 1)") }
        if experts.isEmpty { p.append("no experts") }
        let names = experts.map(\.name)
        if names != names.sorted() { p.append("experts must be in alphabetical order (HCQ's processing order): \(names)") }
        if Set(names).count != names.count { p.append("duplicate expert names: \(names)") }
        for e in experts {
            if e.width < 1 { p.append("expert \(e.name): width \(e.width) < 1") }
            if e.typeId < 1 || e.typeId >= typeVocabSize { p.append("expert \(e.name): type_id \(e.typeId) outside 1..<\(typeVocabSize)") }
        }
        for (what, v) in [("tokens_per_expert", tokensPerExpert), ("max_positions", maxPositions), ("hidden_size", hiddenSize),
                          ("layers", layers), ("heads", heads), ("ffn_size", ffnSize), ("clusters", clusters)] where v < 1 {
            p.append("\(what) \(v) < 1")
        }
        if maxPositions < 2 { p.append("max_positions \(maxPositions) < 2 (positions 0 and 1 are always used)") }
        if heads > 0 && hiddenSize % heads != 0 { p.append("hidden_size \(hiddenSize) is not a multiple of heads \(heads)") }
        if pq.subspaces < 1 || hiddenSize % max(1, pq.subspaces) != 0 {
            p.append("hidden_size \(hiddenSize) is not a multiple of pq.subspaces \(pq.subspaces)")
        }
        if pq.codewords < 1 || pq.codewords > 256 { p.append("pq.codewords \(pq.codewords) outside 1...256 (a code is one byte)") }
        if !(layerNormEps > 0) || !(batchNormEps > 0) { p.append("epsilons must be positive") }
        return p
    }

    /// Every weight tensor the bundle must hold, with its shape.
    public func expectedTensors() -> [(name: String, shape: [Int])] {
        let h = hiddenSize
        var t: [(String, [Int])] = []
        for e in experts {
            t.append(("video_dim_reduce.\(e.name).fc.weight", [h, e.width]))
            t.append(("video_dim_reduce.\(e.name).fc.bias", [h]))
        }
        t.append(("vid_bert.embeddings.position_embeddings.weight", [maxPositions, h]))
        t.append(("vid_bert.embeddings.token_type_embeddings.weight", [typeVocabSize, h]))
        t.append(("vid_bert.embeddings.layer_norm.weight", [h]))
        t.append(("vid_bert.embeddings.layer_norm.bias", [h]))
        for i in 0..<layers {
            let l = "vid_bert.encoder.layer.\(i)"
            for proj in ["query", "key", "value"] {
                t.append(("\(l).attention.self.\(proj).weight", [h, h]))
                t.append(("\(l).attention.self.\(proj).bias", [h]))
            }
            t.append(("\(l).attention.output.dense.weight", [h, h]))
            t.append(("\(l).attention.output.dense.bias", [h]))
            t.append(("\(l).attention.output.layer_norm.weight", [h]))
            t.append(("\(l).attention.output.layer_norm.bias", [h]))
            t.append(("\(l).intermediate.dense.weight", [ffnSize, h]))
            t.append(("\(l).intermediate.dense.bias", [ffnSize]))
            t.append(("\(l).output.dense.weight", [h, ffnSize]))
            t.append(("\(l).output.dense.bias", [h]))
            t.append(("\(l).output.layer_norm.weight", [h]))
            t.append(("\(l).output.layer_norm.bias", [h]))
        }
        t.append(("ghost_vlad.clusters", [h, clusters + 1]))
        t.append(("ghost_vlad.clusters2", [1, h, clusters]))
        for b in ["weight", "bias", "running_mean", "running_var"] {
            t.append(("ghost_vlad.batch_norm.\(b)", [clusters]))
        }
        let codebook = [pq.subspaces, pq.codewords, subDimension]
        for name in Self.codebookTensorNames(clusters: clusters) { t.append((name, codebook)) }
        return t
    }

    /// The codebook tensors, level 0 (the coarse level) first.
    public static func codebookTensorNames(clusters: Int) -> [String] {
        ["cls_pq_layer._C_k"] + (0..<clusters).map { "vlad_pq_layers.\($0)._C_k" }
    }
}
