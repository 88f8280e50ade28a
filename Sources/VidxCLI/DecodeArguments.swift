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

/// The per-video limits, shared by `vidx-decode` and `vidx-extract`: a file over them
/// fails with `too_large` or `timed_out` and the run goes on.
public struct LimitOptions: ParsableArguments, Sendable {
    @Option(name: .customLong("max-pixels"), help: "Refuse videos over this many pixels a frame (0: no limit).")
    public var maxPixels: Int = DecodeLimits().maxPixels

    @Option(name: .customLong("max-duration"), help: "Refuse videos longer than this many seconds (0: no limit).")
    public var maxDuration: Double = DecodeLimits().maxDuration

    @Option(name: .long, help: "Give up on a file after this many seconds of wall-clock time (0: no limit).")
    public var timeout: Double = 600

    public init() {}

    public func validate() throws {
        guard maxPixels >= 0, maxDuration >= 0, timeout >= 0 else { throw ValidationError("limits must not be negative") }
    }

    public var limits: DecodeLimits { DecodeLimits(maxPixels: maxPixels, maxDuration: maxDuration, timeout: timeout) }
}
