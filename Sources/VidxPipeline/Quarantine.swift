import Foundation
import VidxCore

/// The videos that failed, kept across runs (`WORK/state/quarantine.jsonl`,
/// Schemas/quarantine.schema.json): one entry per external id.
///
/// The planner consults it: a video failed for a transient reason (`FailureClass.isTransient`)
/// is tried again by later runs until it has been tried `max_attempts` times; one failed
/// for a permanent reason is not tried again until its content hash changes (a new file
/// under the same id) or an operator releases the entry (`vidx-pipeline quarantine release`).
/// The publisher updates it: a failed video is added (or its attempts counted up), a video
/// indexed at last is removed.
public struct Quarantine: Sendable {
    public struct Entry: Codable, Sendable, Equatable {
        public var id: String
        public var path: String
        /// Empty when the file could not be read at all.
        public var contentHash: String
        public var `class`: FailureClass
        public var message: String
        public var attempts: Int
        /// ISO 8601 UTC times of the first and the latest failure.
        public var firstSeen: String
        public var lastSeen: String

        enum CodingKeys: String, CodingKey, CaseIterable {
            case id, path, contentHash = "content_hash", `class`, message, attempts
            case firstSeen = "first_seen", lastSeen = "last_seen"
        }

        public init(id: String, path: String, contentHash: String, class: FailureClass, message: String,
                    attempts: Int, firstSeen: String, lastSeen: String) {
            self.id = id
            self.path = path
            self.contentHash = contentHash
            self.class = `class`
            self.message = message
            self.attempts = attempts
            self.firstSeen = firstSeen
            self.lastSeen = lastSeen
        }

        public init(from decoder: Decoder) throws {
            try StrictDecoding.checkKeys(decoder, allowed: Set(CodingKeys.allCases.map(\.rawValue)))
            let c = try decoder.container(keyedBy: CodingKeys.self)
            id = try c.decode(String.self, forKey: .id)
            path = try c.decode(String.self, forKey: .path)
            contentHash = try c.decode(String.self, forKey: .contentHash)
            self.class = try c.decode(FailureClass.self, forKey: .class)
            message = try c.decode(String.self, forKey: .message)
            attempts = try c.decode(Int.self, forKey: .attempts)
            firstSeen = try c.decode(String.self, forKey: .firstSeen)
            lastSeen = try c.decode(String.self, forKey: .lastSeen)
            guard contentHash.isEmpty || StrictDecoding.isLowercaseHex(contentHash, count: 64) else {
                throw StrictDecoding.Violation("content_hash must be empty or 64 lowercase hex digits")
            }
            guard attempts >= 1 else { throw StrictDecoding.Violation("attempts must be at least 1") }
        }
    }

    /// Entries by external id (compared by UTF-8 bytes).
    public private(set) var entries: [ExternalID: Entry] = [:]

    public init() {}

    public var count: Int { entries.count }

    /// Entries sorted by id bytes: the file's order.
    public var sorted: [Entry] {
        entries.values.sorted { $0.id.utf8.lexicographicallyPrecedes($1.id.utf8) }
    }

    public subscript(id: String) -> Entry? { entries[ExternalID(id)] }

    /// What the planner does with a video the quarantine holds.
    public enum Decision: Equatable, Sendable {
        /// Not quarantined, or quarantined under other content: plan it as usual.
        case plan
        /// Quarantined for a transient reason with attempts left: plan it again.
        case retry(attempts: Int)
        /// Kept out: a permanent failure of this content, or no attempts left.
        case skip(FailureClass)
    }

    /// The decision for `id` whose file now hashes to `contentHash` (nil: unknown).
    public func decision(id: String, contentHash: String?, maxAttempts: Int) -> Decision {
        guard let e = self[id] else { return .plan }
        // New content under the id: the old failure says nothing about it.
        if let contentHash, !e.contentHash.isEmpty, contentHash != e.contentHash { return .plan }
        if e.class.isTransient && e.attempts < maxAttempts { return .retry(attempts: e.attempts) }
        // A file that could not be read at all (no hash then) is tried whenever it can be read now.
        if e.contentHash.isEmpty, contentHash != nil, e.class == .notFound || e.class == .unreadable { return .plan }
        return .skip(e.class)
    }

    /// Records a failure of `id` now: a new entry, or the same content failing again
    /// (attempts counted up, class and message replaced).
    public mutating func recordFailure(id: String, path: String, contentHash: String, class cls: FailureClass,
                                       message: String, now: String) {
        let key = ExternalID(id)
        if var e = entries[key], e.contentHash == contentHash || e.contentHash.isEmpty || contentHash.isEmpty {
            e.attempts += 1
            e.class = cls
            e.message = message
            e.lastSeen = now
            e.path = path
            if !contentHash.isEmpty { e.contentHash = contentHash }
            entries[key] = e
        } else {
            entries[key] = Entry(id: id, path: path, contentHash: contentHash, class: cls, message: message,
                                 attempts: 1, firstSeen: now, lastSeen: now)
        }
    }

    /// Removes `id` (indexed at last, or released). Returns whether it was there.
    @discardableResult
    public mutating func remove(id: String) -> Bool { entries.removeValue(forKey: ExternalID(id)) != nil }

    /// Entries per failure class.
    public var byClass: [FailureClass: Int] {
        entries.values.reduce(into: [:]) { $0[$1.class, default: 0] += 1 }
    }

    // MARK: - File

    public static let fileName = "quarantine.jsonl"

    /// Reads the quarantine file at `path`; a missing file is an empty quarantine.
    /// - Throws: `StageFileError` naming the file and line.
    public static func read(path: String) throws -> Quarantine {
        var q = Quarantine()
        guard FileManager.default.fileExists(atPath: path) else { return q }
        let lines = try JSONLines.readEntries(Entry.self, path: path, maxBytes: 4 << 30, what: "a quarantine entry",
                                               container: "quarantine", schema: "Schemas/quarantine.schema.json",
                                               id: \.id)
        for (_, e) in lines { q.entries[ExternalID(e.id)] = e }
        return q
    }

    /// Writes the quarantine atomically, one entry a line, sorted by id bytes.
    public func write(path: String) throws {
        let encoder = makeJSONEncoder()
        var data = Data()
        for e in sorted {
            data.append(try encoder.encode(e))
            data.append(0x0A)
        }
        try AtomicFile.write(data, to: path)
    }
}

/// The current time as ISO 8601 UTC with seconds (`2026-12-02T23:05:03Z`).
public func utcTimestamp(_ date: Date = Date()) -> String {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime]
    f.timeZone = TimeZone(identifier: "UTC")
    return f.string(from: date)
}
