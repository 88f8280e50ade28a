import Foundation
import VidxCore

/// Where the pipeline keeps its files under a work directory (Documentation/Pipeline.md):
///
///     WORK/plan.json                  the latest plan (Schemas/plan.schema.json)
///     WORK/units.list                 its units, one name a line (line i = unit i)
///     WORK/units.mk                   one make rule per unit, included by Pipelines/index.mk
///     WORK/deletions.txt              ids the plan deletes (one a line)
///     WORK/plan-failures.jsonl        videos the plan could not read (quarantined at publish)
///     WORK/units/U.jsonl              unit U's videos (Schemas/work-unit.schema.json)
///     WORK/units/U.features.safetensors, U.stats.json, U.codes.safetensors
///     WORK/units/U.unit.json          written last: unit U is done (Schemas/unit-record.schema.json)
///     WORK/state/files.jsonl          the hash cache: path, size, mtime -> SHA-256
///     WORK/state/quarantine.jsonl     failed videos (Schemas/quarantine.schema.json)
///     WORK/RUN.json, WORK/runs/ID.json  run reports (Schemas/run-report.schema.json)
///
/// Unit names are content hashes, so the files of every unit any run made can share one
/// directory: a finished unit is found again by name and never redone.
public struct WorkLayout: Sendable {
    public let root: String

    public init(_ root: String) { self.root = Self.absolute(root) }

    public var plan: String { root + "/plan.json" }
    public var unitList: String { root + "/units.list" }
    public var unitMakefile: String { root + "/units.mk" }
    public var deletions: String { root + "/deletions.txt" }
    public var planFailures: String { root + "/plan-failures.jsonl" }
    public var units: String { root + "/units" }
    public var state: String { root + "/state" }
    public var hashCache: String { state + "/files.jsonl" }
    public var quarantine: String { state + "/" + Quarantine.fileName }
    public var runs: String { root + "/runs" }
    public var latestRun: String { root + "/RUN.json" }

    public func unitVideos(_ u: String) -> String { "\(units)/\(u).jsonl" }
    public func features(_ u: String) -> String { "\(units)/\(u).features.safetensors" }
    public func stats(_ u: String) -> String { "\(units)/\(u).stats.json" }
    public func codes(_ u: String) -> String { "\(units)/\(u).codes.safetensors" }
    public func record(_ u: String) -> String { "\(units)/\(u).unit.json" }
    public func journal(_ u: String) -> String { "\(units)/\(u).journal" }
    /// The reduced unit a crash retry runs (the unit without the videos that crashed).
    public func retryVideos(_ u: String) -> String { "\(units)/\(u).retry.jsonl" }

    /// Every file name unit `u` may own (its outputs, record, journal and retry list).
    public func unitFiles(_ u: String) -> [String] {
        [features(u), stats(u), codes(u), record(u), journal(u), retryVideos(u)]
    }

    /// Whether `name` is a valid unit name (`u` and 24 lowercase hex digits).
    public static func isUnitName(_ name: String) -> Bool {
        name.utf8.count == 25 && name.hasPrefix("u") && StrictDecoding.isLowercaseHex(String(name.dropFirst()), count: 24)
    }

    /// `path` made absolute against the working directory and standardised.
    public static func absolute(_ path: String) -> String {
        let p = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        return URL(fileURLWithPath: p).standardizedFileURL.path
    }

    /// Creates the work directory's folders.
    public func makeDirectories() throws {
        for d in [root, units, state, runs] { try AtomicFile.makeDirectory(d) }
    }

    /// Removes temporary names (`AtomicFile` staging, `.tmp-` files) that killed runs left in
    /// the work directory's folders; returns how many.
    @discardableResult
    public func removeTemporaries(note: (String) -> Void = { _ in }) -> Int {
        var removed = 0
        for dir in [root, units, state, runs] {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] where AtomicFile.isTemporaryName(name) {
                if unlink(dir + "/" + name) == 0 {
                    removed += 1
                    note("removed the stale temporary file \(dir)/\(name)")
                }
            }
        }
        return removed
    }
}
