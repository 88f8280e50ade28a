import VidxCore

/// A CNN weights file (Schemas/cnn-weights.md) that cannot be run.
public struct ConvNetError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: String, Sendable {
        /// The safetensors container itself is unreadable or corrupt (see `cause`).
        case unreadable
        /// `format` is missing or not `vidx-cnn`: not a CNN weights file.
        case notConvNet
        /// `format_version` is newer than this reader (upgrade vidx) or not a positive integer.
        case unsupportedVersion
        /// `input` is missing, not JSON, or has a bad size, mean, scale or layout.
        case badInput
        /// `architecture` is missing, not JSON, malformed, out of order, or inconsistent
        /// (channel chain, kernel larger than its padded input, residual ids and shapes).
        case badArchitecture
        /// A layer kind, activation or `groups` value this reader does not implement.
        case unsupportedLayer
        /// A tensor the architecture needs is absent.
        case missingTensor
        /// A tensor is not F32, or its shape is not what the architecture says.
        case wrongTensor
    }

    public let kind: Kind
    /// The file, as given to the reader.
    public let path: String
    /// The conv layer's index, if one is concerned.
    public let layer: Int?
    /// What is wrong, and where useful what to do.
    public let message: String
    /// The container error, for `unreadable`.
    public let cause: SafeTensorsError?

    init(_ kind: Kind, path: String, layer: Int? = nil, _ message: String, cause: SafeTensorsError? = nil) {
        self.kind = kind
        self.path = path
        self.layer = layer
        self.message = message
        self.cause = cause
    }

    /// "path: layer i: message", or "path: message" when no layer is concerned.
    public var description: String {
        if let layer { return "\(path): layer \(layer): \(message)" }
        return "\(path): \(message)"
    }
}
