import ArgumentParser
import VidxDecode

// Typed command-line arguments of the decode options: parsed once, by ArgumentParser,
// into the library's own types.

extension FitMode: ExpressibleByArgument {}

extension SamplingPolicy: ExpressibleByArgument {
    /// `fps:R`, `uniform:N`, `every:S` or `keyframes` (SamplingPolicy(parsing:)).
    public init?(argument: String) {
        guard let policy = try? SamplingPolicy(parsing: argument) else { return nil }
        self = policy
    }

    public var defaultValueDescription: String { description }
}

/// An output frame size: `N` (N x N) or `WxH`, each side 1 to 8192 pixels.
public struct FrameSize: ExpressibleByArgument, Sendable, Equatable, CustomStringConvertible {
    public let width: Int
    public let height: Int

    public static let maxSide = 8192

    public init(width: Int, height: Int) {
        self.width = width
        self.height = height
    }

    public init?(argument: String) {
        let parts = argument.lowercased().split(separator: "x").map { Int($0) }
        let valid = { (v: Int?) in v.map { $0 >= 1 && $0 <= FrameSize.maxSide } ?? false }
        if parts.count == 1, valid(parts[0]) { self.init(width: parts[0]!, height: parts[0]!); return }
        if parts.count == 2, valid(parts[0]), valid(parts[1]) { self.init(width: parts[0]!, height: parts[1]!); return }
        return nil
    }

    public var description: String { width == height ? "\(width)" : "\(width)x\(height)" }
    public var defaultValueDescription: String { description }
}
