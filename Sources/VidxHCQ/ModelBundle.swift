import Foundation
import VidxCore
import VidxNumerics
import VidxQuantization

/// Why a model bundle could not be loaded. Messages name the file and, for weights, the
/// tensor and both shapes.
public struct BundleError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: String, Sendable {
        case notFound = "not_found", badConfig = "bad_config", badWeights = "bad_weights"
        case missingTensor = "missing_tensor", unexpectedTensor = "unexpected_tensor"
        case wrongShape = "wrong_shape", wrongDType = "wrong_dtype"
    }
    public let kind: Kind
    public let path: String
    public let message: String

    public init(_ kind: Kind, path: String, message: String) {
        self.kind = kind
        self.path = path
        self.message = message
    }

    public var description: String { "\(path): \(kind.rawValue): \(message)" }
}

/// An HCQ model bundle: `bundle.json` + `weights.safetensors` in one directory, loaded
/// strictly (every expected tensor with its expected shape, nothing else).
public struct ModelBundle: Sendable {
    public let directory: String
    public let config: BundleConfig
    /// SHA-256("vidx-bundle-v1\n" + SHA-256(bundle.json) + SHA-256(weights.safetensors)), hex.
    public let fingerprint: String
    let weights: HCQWeights
    /// The product quantizer the encoder codes with and search nodes score with: the
    /// checkpoint's codewords L2-normalised as HCQ does, level 0 the coarse level.
    public let quantizer: ProductQuantizer

    public static let configName = "bundle.json"
    /// The largest bundle.json read (a real one is about 1 KB).
    public static let maxConfigBytes = 1 << 20
    public static let weightsName = "weights.safetensors"

    /// Loads and checks a bundle directory.
    /// - Throws: `BundleError` naming the file and the problem.
    public init(directory: String) throws {
        self.directory = directory
        let configPath = directory + "/" + ModelBundle.configName
        let weightsPath = directory + "/" + ModelBundle.weightsName
        guard FileManager.default.fileExists(atPath: configPath) else {
            throw BundleError(.notFound, path: directory, message: "no \(ModelBundle.configName): not a model bundle directory")
        }
        guard FileManager.default.fileExists(atPath: weightsPath) else {
            throw BundleError(.notFound, path: directory, message: "no \(ModelBundle.weightsName) beside \(ModelBundle.configName)")
        }
        // Regular files only (a FIFO would block the read); bundle.json is small.
        let configBytes: Data
        do { configBytes = try InputFiles.read(configPath, maxBytes: ModelBundle.maxConfigBytes) } catch let e as StageFileError {
            throw BundleError(.notFound, path: configPath, message: "cannot read: \(e.message)")
        }
        let config = try BundleConfig.parse(configBytes, path: configPath)
        self.config = config
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: weightsPath) } catch {
            throw BundleError(.badWeights, path: weightsPath, message: "\(error)")
        }
        weights = try HCQWeights(file: file, config: config)
        do { quantizer = try ProductQuantizer(layout: config.quantizerLayout(), codebooks: weights.codebooks) } catch {
            throw BundleError(.badWeights, path: weightsPath, message: "the product quantizer's codebooks: \(error)")
        }
        let configDigest = SHA256Digest.raw(Array(configBytes))
        let weightsDigest = try SHA256Digest.raw(fileAt: weightsPath)
        fingerprint = SHA256Digest.hex(Array("vidx-bundle-v1\n".utf8) + configDigest + weightsDigest)
    }

    /// Whether embeddings made by the bundle with fingerprint `fingerprint` are this
    /// bundle's embeddings: it is this bundle, or one its fitted codebooks list in
    /// `codebooks.embeddings_from` (the same weights but the codebooks).
    public func acceptsEmbeddings(from fingerprint: String) -> Bool {
        fingerprint == self.fingerprint || (config.codebooks?.embeddingsFrom.contains(fingerprint) ?? false)
    }

    /// The weight tensors that hold the codebooks, level 0 first (Schemas/model-bundle.schema.json).
    public var codebookTensorNames: [String] { BundleConfig.codebookTensorNames(clusters: config.clusters) }

    fileprivate static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, let ctx):
            return "missing key '\((ctx.codingPath + [key]).map(\.stringValue).joined(separator: "."))'"
        case DecodingError.typeMismatch(_, let ctx), DecodingError.valueNotFound(_, let ctx):
            return "wrong type at '\(ctx.codingPath.map(\.stringValue).joined(separator: "."))': \(ctx.debugDescription)"
        case DecodingError.dataCorrupted(let ctx):
            return "invalid JSON: \(ctx.debugDescription)"
        default:
            return "\(error)"
        }
    }
}

extension BundleConfig {
    /// Decodes and checks the bytes of a `bundle.json` (Schemas/model-bundle.schema.json):
    /// JSON types, then every rule of `problems()`. What `ModelBundle(directory:)` does
    /// with the file, on bytes (for tests and fuzzing).
    /// - Parameter path: names the file in errors.
    /// - Throws: `BundleError` `badConfig` naming `path` and the problems.
    public static func parse(_ data: Data, path: String) throws -> BundleConfig {
        let config: BundleConfig
        do { config = try JSONDecoder().decode(BundleConfig.self, from: data) } catch {
            throw BundleError(.badConfig, path: path, message: "does not match Schemas/model-bundle.schema.json: \(ModelBundle.describe(error))")
        }
        let problems = config.problems()
        guard problems.isEmpty else {
            throw BundleError(.badConfig, path: path, message: problems.joined(separator: "; "))
        }
        return config
    }
}

/// The weights of an HCQ video encoder, in the layouts the encoder uses.
struct HCQWeights: Sendable {
    struct Layer: Sendable {
        /// Query, key and value projections fused: weight (3h x h), bias 3h.
        let qkv: Linear
        let attentionOutput: Linear
        let attentionNorm: (gamma: [Float], beta: [Float])
        let intermediate: Linear
        let output: Linear
        let outputNorm: (gamma: [Float], beta: [Float])
    }
    /// One projection per expert, in config order.
    let projections: [Linear]
    /// (max_positions x h) and (type_vocab x h).
    let positionEmbeddings: Matrix
    let typeEmbeddings: Matrix
    let embeddingNorm: (gamma: [Float], beta: [Float])
    let layers: [Layer]
    /// GhostVLAD assignment weights without the ghost column: (h x clusters).
    let vladAssign: Matrix
    /// Cluster centres, one per row: (clusters x h).
    let vladCentres: Matrix
    let vladNorm: (weight: [Float], bias: [Float], mean: [Float], variance: [Float])
    /// (levels, M, K, dsub), row-major, coarse level first: every codeword L2-normalised.
    let codebooks: [Float]

    init(file: SafeTensorsFile, config: BundleConfig) throws {
        let path = file.path
        let expected = config.expectedTensors()
        let expectedNames = Set(expected.map(\.name))
        for (name, shape) in expected {
            guard let info = file.info(name) else {
                throw BundleError(.missingTensor, path: path, message: "tensor '\(name)' is missing (expected shape \(shape))")
            }
            guard info.dtype == .f32 else {
                throw BundleError(.wrongDType, path: path, message: "tensor '\(name)' is \(info.dtype.rawValue), expected F32")
            }
            guard info.shape == shape else {
                throw BundleError(.wrongShape, path: path, message: "tensor '\(name)' has shape \(info.shape), expected \(shape)")
            }
        }
        if let extra = file.names.first(where: { !expectedNames.contains($0) }) {
            throw BundleError(.unexpectedTensor, path: path,
                              message: "unexpected tensor '\(extra)' (shape \(file.info(extra)?.shape ?? [])): not part of this architecture")
        }
        func f(_ name: String) throws -> [Float] { try file.floats(name) }
        func matrix(_ name: String, _ rows: Int, _ cols: Int) throws -> Matrix {
            Matrix(rows: rows, cols: cols, data: try f(name))
        }
        func linear(_ prefix: String, out: Int, in: Int) throws -> Linear {
            Linear(weight: try matrix(prefix + ".weight", out, `in`), bias: try f(prefix + ".bias"))
        }
        let h = config.hiddenSize
        projections = try config.experts.map { try linear("video_dim_reduce.\($0.name).fc", out: h, in: $0.width) }
        positionEmbeddings = try matrix("vid_bert.embeddings.position_embeddings.weight", config.maxPositions, h)
        typeEmbeddings = try matrix("vid_bert.embeddings.token_type_embeddings.weight", config.typeVocabSize, h)
        embeddingNorm = (try f("vid_bert.embeddings.layer_norm.weight"), try f("vid_bert.embeddings.layer_norm.bias"))
        layers = try (0..<config.layers).map { i in
            let l = "vid_bert.encoder.layer.\(i)"
            let q = try linear("\(l).attention.self.query", out: h, in: h)
            let k = try linear("\(l).attention.self.key", out: h, in: h)
            let v = try linear("\(l).attention.self.value", out: h, in: h)
            let qkv = Linear(weight: Matrix(rows: 3 * h, cols: h, data: q.weight.data + k.weight.data + v.weight.data),
                             bias: q.bias + k.bias + v.bias)
            return Layer(qkv: qkv,
                         attentionOutput: try linear("\(l).attention.output.dense", out: h, in: h),
                         attentionNorm: (try f("\(l).attention.output.layer_norm.weight"), try f("\(l).attention.output.layer_norm.bias")),
                         intermediate: try linear("\(l).intermediate.dense", out: config.ffnSize, in: h),
                         output: try linear("\(l).output.dense", out: h, in: config.ffnSize),
                         outputNorm: (try f("\(l).output.layer_norm.weight"), try f("\(l).output.layer_norm.bias")))
        }
        // ghost_vlad.clusters is (h x (clusters+1)); the ghost column is dropped.
        let c = config.clusters
        let assign = try f("ghost_vlad.clusters")
        var dropped = Matrix(rows: h, cols: c)
        for r in 0..<h { for j in 0..<c { dropped[r, j] = assign[r * (c + 1) + j] } }
        vladAssign = dropped
        // ghost_vlad.clusters2 is (1 x h x clusters): centre k is column k.
        let centres = try f("ghost_vlad.clusters2")
        var rows = Matrix(rows: c, cols: h)
        for k in 0..<c { for r in 0..<h { rows[k, r] = centres[r * c + k] } }
        vladCentres = rows
        vladNorm = (try f("ghost_vlad.batch_norm.weight"), try f("ghost_vlad.batch_norm.bias"),
                    try f("ghost_vlad.batch_norm.running_mean"), try f("ghost_vlad.batch_norm.running_var"))
        let names = BundleConfig.codebookTensorNames(clusters: c)
        let d = config.subDimension
        codebooks = try names.flatMap { name in
            var words = Matrix(rows: config.pq.subspaces * config.pq.codewords, cols: d, data: try f(name))
            l2NormalizeRows(&words, eps: 1e-12)
            return words.data
        }
    }
}
