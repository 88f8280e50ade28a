import VidxCore

/// Why a video could not be decoded. Every error names the file.
public struct DecodeError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The class of the failure, one of `FailureClass.decode`: the strings JSON reports,
    /// logs and the other stages' records carry.
    public let kind: FailureClass
    /// The input's path as given.
    public let path: String
    /// What went wrong, in words a person can act on.
    public let message: String
    /// The FFmpeg function that failed, if any (e.g. `avformat_open_input`).
    public let call: String?
    /// FFmpeg's negative error code, if any.
    public let code: Int32?

    public init(_ kind: FailureClass, path: String, message: String, call: String? = nil, code: Int32? = nil) {
        self.kind = kind
        self.path = path
        self.message = message
        self.call = call
        self.code = code
    }

    public var description: String { "\(path): \(kind.rawValue): \(message)" }
}
