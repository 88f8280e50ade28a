import Foundation

/// What JSONDecoder does not check but the schemas require.
public enum StrictDecoding {
    /// Refuses object keys the schema does not allow (`additionalProperties: false`),
    /// which JSONDecoder would otherwise ignore. Call first in `init(from:)`.
    /// - Throws: `StrictDecoding.Violation` naming the first unknown key.
    public static func checkKeys(_ decoder: Decoder, allowed: Set<String>) throws {
        let unknown = try decoder.container(keyedBy: AnyKey.self).allKeys.map(\.stringValue).filter { !allowed.contains($0) }
        if let extra = unknown.min() {
            throw Violation("unknown field '\(extra)' (allowed: \(allowed.sorted().joined(separator: ", ")))")
        }
    }

    /// Whether `s` is exactly `count` lowercase hex digits (a SHA-256 is 64).
    public static func isLowercaseHex(_ s: String, count: Int) -> Bool {
        s.utf8.count == count && s.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    /// A value that breaks its schema, found while decoding (thrown from `init(from:)`;
    /// JSONDecoder passes it through unchanged).
    public struct Violation: Error, CustomStringConvertible, Sendable {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
}
