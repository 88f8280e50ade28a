import Foundation
import VidxCore

/// A SHA-256 content hash held as four words: a cheap dictionary key for millions of videos.
public struct ContentHash: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64

    /// From 32 raw bytes; nil for any other length, or for the all-zero "unknown" hash of a shard.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 32, bytes.contains(where: { $0 != 0 }) else { return nil }
        func word(_ i: Int) -> UInt64 { bytes[(i * 8)..<(i * 8 + 8)].reduce(0) { $0 << 8 | UInt64($1) } }
        (w0, w1, w2, w3) = (word(0), word(1), word(2), word(3))
    }

    /// From 64 lowercase hex digits; nil otherwise.
    public init?(hex: String) {
        guard StrictDecoding.isLowercaseHex(hex, count: 64), let b = SHA256Digest.bytes(fromHex: hex) else { return nil }
        self.init(bytes: b)
    }

    public var hex: String {
        [w0, w1, w2, w3].map { w in
            let s = String(w, radix: 16)
            return String(repeating: "0", count: 16 - s.count) + s
        }.joined()
    }

    public var description: String { hex }

    public static func < (a: ContentHash, b: ContentHash) -> Bool {
        (a.w0, a.w1, a.w2, a.w3) < (b.w0, b.w1, b.w2, b.w3)
    }
}
