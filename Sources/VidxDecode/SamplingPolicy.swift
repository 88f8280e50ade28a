import Foundation

/// Which frames of a video to sample, by presentation time in seconds from the start
/// of the file.
///
/// Every policy except `keyframes` turns into a sorted list of target times; the frame
/// sampled for a target time t is the frame on screen at t: the last frame whose
/// timestamp is at most t (the first frame of the video for targets before it).
/// A frame is emitted at most once, so a video with fewer frames than targets gives
/// fewer samples than targets.
public enum SamplingPolicy: Sendable, Equatable, CustomStringConvertible {
    /// R frames per second: targets 0, 1/R, 2/R, ... before the end of the video.
    case fps(Double)
    /// N frames spread over the duration: the middles of N equal segments,
    /// (k + 0.5) * D / N for k in 0..<N.
    case uniform(Int)
    /// Every key frame, and nothing else (only key frames are decoded: fastest).
    case keyframes
    /// One frame per S-second segment [kS, (k+1)S), taken at the segment's middle
    /// (for the last, shorter segment: the middle of what remains). Segment k's frame
    /// is what per-segment (moment) indexing uses.
    case every(Double)

    /// Parses `fps:R`, `uniform:N`, `keyframes` or `every:S`.
    public init(parsing text: String) throws {
        let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        func number(_ what: String) throws -> Double {
            guard parts.count == 2, let v = Double(parts[1]), v.isFinite, v > 0 else {
                throw SamplingPolicyError(text: text, reason: "\(parts[0]) needs a positive \(what), e.g. \(parts[0]):\(what == "count" ? "8" : "1")")
            }
            return v
        }
        switch parts[0] {
        case "fps": self = .fps(try number("rate"))
        case "every": self = .every(try number("interval in seconds"))
        case "uniform":
            let n = try number("count")
            guard n == n.rounded(), n <= 1_000_000 else {
                throw SamplingPolicyError(text: text, reason: "uniform needs a whole number of frames (1 to 1000000)")
            }
            self = .uniform(Int(n))
        case "keyframes":
            guard parts.count == 1 else { throw SamplingPolicyError(text: text, reason: "keyframes takes no parameter") }
            self = .keyframes
        default:
            throw SamplingPolicyError(text: text, reason: "unknown policy; use fps:R, uniform:N, keyframes or every:S")
        }
    }

    public var description: String {
        switch self {
        case .fps(let r): return "fps:\(SamplingPolicy.format(r))"
        case .uniform(let n): return "uniform:\(n)"
        case .keyframes: return "keyframes"
        case .every(let s): return "every:\(SamplingPolicy.format(s))"
        }
    }

    private static func format(_ v: Double) -> String {
        v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : String(v)
    }

    /// The spacing between consecutive targets in seconds, if the policy has one.
    public func interval(duration: Double?) -> Double? {
        switch self {
        case .fps(let r): return 1 / r
        case .every(let s): return s
        case .uniform(let n): return duration.map { $0 / Double(n) }
        case .keyframes: return nil
        }
    }

    /// The target times, in increasing order.
    /// - Parameter duration: the video's duration in seconds, if known. `uniform` needs
    ///   it; `fps` and `every` without it produce targets until the caller stops asking.
    func targets(duration: Double?) -> TargetSequence {
        TargetSequence(policy: self, duration: duration)
    }

    /// The first target at or after `time` (nil: none), used to decide whether a
    /// frame at `time` could be a sample. Consistent with `targets(duration:)`.
    func firstTarget(atOrAfter time: Double, duration: Double?) -> Double? {
        let eps = SamplingPolicy.epsilon
        var seq = targets(duration: duration)
        let k: Double
        switch self {
        case .fps(let r): k = (time * r - eps * r).rounded(.up)
        case .every(let s): k = ((time - s / 2) / s - eps).rounded(.up)
        case .uniform(let n):
            guard let d = seq.duration else { return nil }
            k = (time * Double(n) / d - 0.5 - eps).rounded(.up)
        case .keyframes: return nil
        }
        seq.skip(to: Int(max(0, min(k, 1e12))))
        // At most two steps: rounding can land one target early.
        while let t = seq.next() { if t + eps >= time { return t } }
        return nil
    }

    /// Timestamps within this many seconds count as equal (rational time bases turned
    /// into doubles are not exact).
    static let epsilon = 1e-6
}

/// A sampling policy string that could not be parsed.
public struct SamplingPolicyError: Error, CustomStringConvertible, Sendable {
    public let text: String
    public let reason: String
    public var description: String { "invalid sampling policy '\(text)': \(reason)" }
}

/// The target times of a policy, generated lazily (an `fps` policy on a 10-hour video
/// has 36,000 of them; an unknown duration has no end).
struct TargetSequence: IteratorProtocol {
    let policy: SamplingPolicy
    let duration: Double?
    private var k = 0

    init(policy: SamplingPolicy, duration: Double?) {
        self.policy = policy
        self.duration = duration.flatMap { $0 > 0 && $0.isFinite ? $0 : nil }
    }

    mutating func skip(to index: Int) { k = max(k, index) }

    mutating func next() -> Double? {
        defer { k += 1 }
        switch policy {
        case .fps(let r):
            let t = Double(k) / r
            if let d = duration, t >= d { return nil }
            return t
        case .every(let s):
            let start = Double(k) * s
            guard let d = duration else { return start + s / 2 }
            if start >= d { return nil }
            return (start + min(start + s, d)) / 2
        case .uniform(let n):
            guard let d = duration, k < n else { return nil }
            return (Double(k) + 0.5) * d / Double(n)
        case .keyframes:
            return nil
        }
    }
}

/// Decides, frame by frame in presentation order, which frames are samples.
///
/// The selector sees only times; the caller keeps the frame it last offered ("pending")
/// and converts it when the selector says so. A frame is the sample for target t when
/// it is the last frame with time <= t, which is known once the next frame (time > t)
/// arrives or the stream ends.
struct FrameSelector {
    private var targets: TargetSequence
    /// The earliest target not yet resolved (nil: all resolved).
    private(set) var nextTarget: Double?
    private(set) var hasPending = false
    private var pendingTime = -Double.infinity
    private var pendingEmitted = false
    /// Whether any frame has been offered yet.
    private(set) var hasSeenFrame = false

    init(policy: SamplingPolicy, duration: Double?) {
        targets = policy.targets(duration: duration)
        nextTarget = targets.next()
    }

    /// The outcome of offering a frame.
    struct Decision: Equatable {
        /// Emit the previously pending frame now: it is the sample for this target.
        var emitPending: Double? = nil
        /// Emit the offered frame now: it is the sample for this target (before it,
        /// because no earlier frame exists).
        var emitOffered: Double? = nil
        /// Keep the offered frame as the new pending frame (otherwise drop it).
        var keepOffered = false
        /// The frame was ignored: its time does not increase.
        var ignored = false
    }

    /// Offers the next frame in presentation order.
    mutating func offer(time: Double) -> Decision {
        var d = Decision()
        if hasSeenFrame && time <= pendingTime {
            d.ignored = true
            return d
        }
        while let t = nextTarget, time > t + SamplingPolicy.epsilon {
            if hasPending {
                if !pendingEmitted { d.emitPending = t; pendingEmitted = true }
            } else if d.emitOffered == nil {
                d.emitOffered = t
            }
            nextTarget = targets.next()
        }
        hasSeenFrame = true
        // The offered frame becomes pending; if it was emitted just now, remember that.
        hasPending = true
        pendingTime = time
        pendingEmitted = d.emitOffered != nil
        d.keepOffered = nextTarget != nil && !pendingEmitted
        return d
    }

    /// Ends the stream. Returns the target for which the pending frame is a sample, if
    /// any: it serves every remaining target before `endTime` (the end of the last
    /// frame; nil: unknown, then only the next target is served).
    mutating func finish(endTime: Double?) -> Double? {
        guard hasPending else { nextTarget = nil; return nil }
        var emit: Double? = nil
        while let t = nextTarget {
            if let end = endTime, t >= end - SamplingPolicy.epsilon { break }
            if !pendingEmitted { emit = t; pendingEmitted = true }
            nextTarget = targets.next()
            if endTime == nil { break }
        }
        return emit
    }

    /// True once every target is resolved (a finite policy is done).
    var isDone: Bool { nextTarget == nil }
}
