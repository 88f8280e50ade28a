import Foundation
import VidxCore
import VidxDecode
import VidxExtract
import VidxHCQ
import VidxIndex
import VidxNumerics

/// The plan stage: what is there, what is indexed, what to do; cut into work units.
///
/// 1. Inputs: directories (scanned for video files by extension, and optionally by probing
///    the others) and upload lists (JSON Lines, the work-unit line format: id, path,
///    optional content_hash). A scanned file's id is its path relative to the scanned root.
/// 2. Content: every file gets its SHA-256, unless the list gives it, or the hash cache
///    holds the same path with the same size and modification time.
/// 3. Diff against the live generation and the quarantine: new, changed, unchanged,
///    removed (`deletions`), duplicate content, quarantined, retried.
/// 4. Units: finished units in the work directory whose videos are all still wanted are
///    kept as they are; the rest of the work, sorted by id bytes, is cut into units of
///    `unit_size`. A unit's name is the hash of its ids and content hashes, the bundle
///    fingerprint and the extraction settings, so the same inputs give the same units.
public struct Planner {
    public struct Request: Sendable {
        public var inputs: [String]
        public var index: String
        public var work: WorkLayout
        public var bundleDirectory: String
        public var config: PipelineConfig
        public var configPath: String?
        /// Ids live in the index whose files are not among the inputs become deletions.
        public var deletions: Bool
        public var mode: String
        public var threads: Int

        public init(inputs: [String], index: String, work: WorkLayout, bundleDirectory: String, config: PipelineConfig,
                    configPath: String?, deletions: Bool, mode: String, threads: Int) {
            self.inputs = inputs
            self.index = index
            self.work = work
            self.bundleDirectory = bundleDirectory
            self.config = config
            self.configPath = configPath
            self.deletions = deletions
            self.mode = mode
            self.threads = threads
        }
    }

    /// One video the inputs name.
    struct Upload {
        var id: String
        var path: String
        var size: Int64 = -1
        var mtimeNanoseconds: Int64 = 0
        var hash: ContentHash?
        var given: Bool = false   // the hash came from the upload list
    }

    public let request: Request
    let note: (String) -> Void

    public init(_ request: Request, note: @escaping (String) -> Void = { _ in }) {
        self.request = request
        self.note = note
    }

    /// Plans, and unless `dryRun`, writes the plan, the unit lists, the unit makefile,
    /// the deletion list and the hash cache (each atomically), after removing stale
    /// temporaries and damaged unit records.
    /// - Throws: `PlanError` for inputs, a bundle, an index or a work directory that cannot be used.
    public func run(dryRun: Bool) throws -> PlanFile {
        let started = Date()
        let config = request.config
        let work = request.work
        let bundle: ModelBundle
        do { bundle = try ModelBundle(directory: request.bundleDirectory) } catch {
            throw PlanError("\(request.bundleDirectory): the bundle cannot be used: \(error)")
        }
        if work.root.contains(" ") || work.root.contains("$") || work.root.contains("#") {
            throw PlanError("\(work.root): the work directory's path may not contain spaces, '$' or '#' (make rules name its files)")
        }
        if !dryRun {
            try work.makeDirectories()
            work.removeTemporaries(note: note)
        }

        // 1. Inputs.
        var counts = PlanFile.Counts()
        var failures: [PlanFile.Failure] = []
        var uploads = try collect(counts: &counts, failures: &failures)
        counts.inputs = uploads.count + failures.count

        // 2. Content hashes.
        let cache = dryRun ? HashCache() : HashCache.read(path: work.hashCache, note: note)
        var newCache = HashCache()
        hashAll(&uploads, cache: cache, newCache: &newCache, failures: &failures, counts: &counts)
        if !dryRun {
            do { try newCache.write(path: work.hashCache) } catch { throw PlanError("\(error)") }
        }

        // 3. Diff against the live generation and the quarantine.
        // A rebuild indexes every input afresh: nothing counts as already live.
        let live = request.mode == "rebuild" ? LiveIndex() : try LiveIndex(index: request.index, note: note)
        let quarantine: Quarantine
        do { quarantine = try Quarantine.read(path: work.quarantine) } catch { throw PlanError("\(error)") }
        var contentOwner: [ContentHash: String] = live.owners
        var wanted: [UnitVideo] = []
        var seen = Set<ExternalID>()
        seen.reserveCapacity(uploads.count)
        for u in uploads {
            guard let hash = u.hash else { continue }
            seen.insert(ExternalID(u.id))
            if let liveHash = live.hashes[ExternalID(u.id)], liveHash == hash {
                counts.unchanged += 1
                continue
            }
            switch quarantine.decision(id: u.id, contentHash: hash.hex, maxAttempts: config.maxAttempts) {
            case .skip:
                counts.quarantined += 1
                continue
            case .retry:
                counts.retried += 1
            case .plan:
                break
            }
            if let owner = contentOwner[hash], !owner.utf8.elementsEqual(u.id.utf8) {
                counts.duplicate += 1
                if config.duplicates == .skip {
                    counts.duplicateSkipped += 1
                    continue
                }
            } else {
                contentOwner[hash] = u.id
            }
            if live.hashes.keys.contains(ExternalID(u.id)) { counts.changed += 1 } else { counts.new += 1 }
            wanted.append(UnitVideo(id: u.id, path: u.path, contentHash: hash.hex))
        }
        for f in failures { seen.insert(ExternalID(f.id)) }
        var deletions: [String] = []
        if request.deletions {
            for id in live.hashes.keys where !seen.contains(id) { deletions.append(id.string) }
            deletions.sort { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        }
        counts.removed = deletions.count

        // 4. Units.
        let keyPrefix = "\(bundle.fingerprint)\n\(config.extractionKey)\n"
        wanted.sort { $0.id.utf8.lexicographicallyPrecedes($1.id.utf8) }
        var units: [(name: String, videos: [UnitVideo], done: Bool, featuresFrom: String?)] = []
        var pending = wanted
        if !dryRun {
            let records = existingRecords()
            let (kept, rest) = keepFinishedUnits(pending, bundle: bundle.fingerprint, records: records)
            units += kept.map { ($0.name, $0.videos, true, nil) }
            counts.inFinishedUnits = kept.reduce(0) { $0 + $1.videos.count }
            // Another bundle's features for the same videos, made the same way: re-encode them.
            let (reused, others) = reusableFeatures(rest, bundle: bundle.fingerprint,
                                                    featuresKey: config.featuresKey(bundle: bundle), records: records)
            units += reused.map { (Self.unitName($0.videos, keyPrefix: keyPrefix), $0.videos, false, $0.source) }
            counts.featuresReused = reused.reduce(0) { $0 + $1.videos.count }
            pending = others
        }
        var i = 0
        while i < pending.count {
            let chunk = Array(pending[i..<min(pending.count, i + config.unitSize)])
            units.append((Self.unitName(chunk, keyPrefix: keyPrefix), chunk, false, nil))
            i += config.unitSize
        }
        units.sort { $0.name < $1.name }

        var plan = PlanFile(
            created: utcTimestamp(started), mode: request.mode, index: WorkLayout.absolute(request.index), work: work.root,
            inputs: request.inputs.map(WorkLayout.absolute),
            bundle: .init(path: WorkLayout.absolute(request.bundleDirectory), fingerprint: bundle.fingerprint),
            config: .init(path: request.configPath.map(WorkLayout.absolute), sha256: config.sha256, values: config),
            liveGeneration: live.generation, liveVideos: live.hashes.count, counts: counts,
            units: [], deletions: deletions.count, failures: failures.count,
            tool: "vidx-plan \(VidxVersion.string)", seconds: 0)

        if dryRun {
            plan.units = units.map { .init(name: $0.name, videos: $0.videos.count, done: $0.done, featuresFrom: $0.featuresFrom) }
            plan.estimate = Estimate.make(for: units.flatMap(\.videos), uploads: uploads, work: work, bundle: bundle)
            plan.seconds = Date().timeIntervalSince(started)
            return plan
        }

        // Write: unit lists (unchanged ones left alone; one sync for all), damaged records removed.
        let configSha256 = config.unitSettingsSha256
        let encoder = makeJSONEncoder()
        do { try AtomicFile.writeAll(try units.compactMap { try unitList($0.name, $0.videos, encoder: encoder) }) } catch {
            throw PlanError("\(error)")
        }
        // Each unit checked once: kept ones were verified already; a damaged one is removed.
        plan.units = units.map { unit in
            var done = unit.done
            if !done {
                switch UnitRecord.verified(unit.name, in: work, bundleFingerprint: bundle.fingerprint, configSha256: configSha256) {
                case .success: done = true
                case .failure(let why) where why.damaged:
                    note("\(why); redoing the unit")
                    for f in work.unitFiles(unit.name) { unlink(f) }
                case .failure: break
                }
            }
            return PlanFile.Unit(name: unit.name, videos: unit.videos.count, done: done, featuresFrom: done ? nil : unit.featuresFrom)
        }
        do {
            try AtomicFile.write(deletions.map { $0 + "\n" }.joined(), to: work.deletions)
            let encoder = makeJSONEncoder()
            var data = Data()
            for f in failures { data.append(try encoder.encode(f)); data.append(0x0A) }
            try AtomicFile.write(data, to: work.planFailures)
            try AtomicFile.write(units.map { $0.name + "\n" }.joined(), to: work.unitList)
            try AtomicFile.write(Self.makefile(units: units.map(\.name), work: work), to: work.unitMakefile)
            plan.seconds = Date().timeIntervalSince(started)
            try AtomicFile.write(try makeJSONEncoder(pretty: true).encode(plan), to: work.plan)
        } catch let e as PlanError { throw e } catch { throw PlanError("\(error)") }
        return plan
    }

    // MARK: - Inputs

    /// The videos the inputs name, in input order (a directory's files sorted by path bytes).
    func collect(counts: inout PlanFile.Counts, failures: inout [PlanFile.Failure]) throws -> [Upload] {
        var out: [Upload] = []
        var ids: [ExternalID: String] = [:]
        func add(_ u: Upload, from input: String) {
            if let first = ids[ExternalID(u.id)] {
                counts.idConflicts += 1
                note("\(input): id '\(u.id)' was already given by \(first); this one (\(u.path)) is ignored")
                return
            }
            ids[ExternalID(u.id)] = input
            out.append(u)
        }
        for input in request.inputs {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: input, isDirectory: &isDirectory) else {
                throw PlanError("\(input): no such directory or upload list")
            }
            if isDirectory.boolValue {
                for (id, path) in try scan(directory: input) { add(Upload(id: id, path: path), from: input) }
            } else {
                let lines: [UnitVideo]
                do { lines = try UnitVideo.readUnit(path: input) } catch { throw PlanError("\(error)") }
                for v in lines {
                    var u = Upload(id: v.id, path: v.path)
                    if let h = v.contentHash {
                        u.hash = ContentHash(hex: h)
                        u.given = u.hash != nil
                    }
                    add(u, from: input)
                }
            }
        }
        return out
    }

    /// The video files under `root` (hidden names skipped), sorted by relative path bytes:
    /// (id = the path relative to `root`, absolute path).
    func scan(directory root: String) throws -> [(String, String)] {
        let base = WorkLayout.absolute(root)
        guard let walker = FileManager.default.enumerator(atPath: base) else {
            throw PlanError("\(root): cannot list the directory")
        }
        var found: [(String, String)] = []
        let extensions = Set(request.config.extensions)
        while let rel = walker.nextObject() as? String {
            let name = (rel as NSString).lastPathComponent
            if name.hasPrefix(".") {
                walker.skipDescendants()
                continue
            }
            let path = base + "/" + rel
            var st = stat()
            guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
            let ext = (name as NSString).pathExtension.lowercased()
            if extensions.contains("." + ext) {
                found.append((rel, path))
            } else if request.config.probeUnknownExtensions, st.st_size > 0,
                      let probe = try? MediaDecoder.probe(path: path), probe.video != nil {
                found.append((rel, path))
            }
        }
        return found.sorted { $0.0.utf8.lexicographicallyPrecedes($1.0.utf8) }
    }

    // MARK: - Hashing

    func hashAll(_ uploads: inout [Upload], cache: HashCache, newCache: inout HashCache,
                 failures: inout [PlanFile.Failure], counts: inout PlanFile.Counts) {
        var toHash: [Int] = []
        var keep = [Bool](repeating: true, count: uploads.count)
        for i in uploads.indices {
            if uploads[i].given { continue }   // the upload list's hash is trusted (vidx-extract records it)
            var st = stat()
            guard stat(uploads[i].path, &st) == 0 else {
                let e = errno
                keep[i] = false
                failures.append(.init(id: uploads[i].id, path: uploads[i].path, class: e == ENOENT ? .notFound : .unreadable,
                                      message: e == ENOENT ? "no such file" : String(cString: strerror(e))))
                continue
            }
            guard (st.st_mode & S_IFMT) == S_IFREG else {
                keep[i] = false
                failures.append(.init(id: uploads[i].id, path: uploads[i].path, class: .unreadable,
                                      message: "not a regular file (a directory, pipe or device)"))
                continue
            }
            uploads[i].size = Int64(st.st_size)
            uploads[i].mtimeNanoseconds = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
            if let h = cache.lookup(path: uploads[i].path, size: uploads[i].size, mtime: uploads[i].mtimeNanoseconds) {
                uploads[i].hash = h
                counts.hashCached += 1
            } else {
                toHash.append(i)
            }
        }
        // SHA-256 of the rest, several files at once.
        var results = [Result<ContentHash, FileReadError>?](repeating: nil, count: toHash.count)
        let progress = ProgressLine(total: toHash.count, minimumItems: 16)
        let lock = NSLock()
        nonisolated(unsafe) var done = 0
        let paths = toHash.map { uploads[$0].path }
        results.withUnsafeMutableBufferPointer { buffer in
            nonisolated(unsafe) let slots = buffer
            Parallel.forEachDynamically(paths.count, workers: max(1, request.threads)) { j in
                let r: Result<ContentHash, FileReadError>
                do {
                    let bytes = try SHA256Digest.raw(fileAt: paths[j])
                    // An all-zero SHA-256 would read as "unknown"; SHA-256 gives none in practice.
                    if let h = ContentHash(bytes: bytes) { r = .success(h) } else {
                        r = .failure(FileReadError(path: paths[j], operation: "hash (an all-zero SHA-256)", errno: EINVAL))
                    }
                } catch let e as FileReadError { r = .failure(e) } catch {
                    r = .failure(FileReadError(path: paths[j], operation: "read", errno: EIO))
                }
                lock.lock()
                slots[j] = r
                done += 1
                progress.update(done: done, failed: 0, current: paths[j])
                lock.unlock()
            }
        }
        progress.finish()
        counts.hashed = toHash.count
        for (j, i) in toHash.enumerated() {
            switch results[j]! {
            case .success(let h): uploads[i].hash = h
            case .failure(let e):
                keep[i] = false
                failures.append(.init(id: uploads[i].id, path: uploads[i].path,
                                      class: e.errno == ENOENT ? .notFound : .unreadable, message: "\(e)"))
            }
        }
        for i in uploads.indices where keep[i] && !uploads[i].given {
            newCache.insert(path: uploads[i].path, size: uploads[i].size, mtime: uploads[i].mtimeNanoseconds, hash: uploads[i].hash!)
        }
        uploads = uploads.indices.filter { keep[$0] }.map { uploads[$0] }
        counts.missing = failures.filter { $0.class == .notFound }.count
        counts.unreadable = failures.filter { $0.class == .unreadable }.count
    }

    // MARK: - Units

    /// A unit's name: `u` and the first 24 hex digits of the SHA-256 of the bundle
    /// fingerprint, the extraction settings and each member's id and content hash.
    static func unitName(_ videos: [UnitVideo], keyPrefix: String) -> String {
        var bytes = Array(keyPrefix.utf8)
        for v in videos {
            bytes += Array(v.id.utf8)
            bytes.append(0)
            bytes += Array((v.contentHash ?? "").utf8)
            bytes.append(0x0A)
        }
        return "u" + String(SHA256Digest.hex(bytes).prefix(24))
    }

    /// The units of the work directory that have a record, by name, with their members
    /// (units whose list cannot be read are left out).
    func existingRecords() -> [(name: String, members: [UnitVideo])] {
        let work = request.work
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: work.units)) ?? [])
            .filter { $0.hasSuffix(".unit.json") }.map { String($0.dropLast(".unit.json".count)) }
            .filter(WorkLayout.isUnitName).sorted()
        return names.compactMap { name in
            guard let members = try? UnitVideo.readUnit(path: work.unitVideos(name)), !members.isEmpty else { return nil }
            return (name, members)
        }
    }

    /// The indices in `wanted` of a unit's members, when every one is wanted with the
    /// same content and not already taken.
    static func match(_ members: [UnitVideo], in wanted: [UnitVideo], byID: [ExternalID: Int], taken: [Bool]) -> [Int]? {
        var out: [Int] = []
        for m in members {
            guard let i = byID[ExternalID(m.id)], wanted[i].contentHash == m.contentHash, !taken[i] else { return nil }
            out.append(i)
        }
        return out
    }

    /// Finished units (a verified record) whose every video is still wanted with the same
    /// content: kept whole, so a listing that changed does not redo them.
    func keepFinishedUnits(_ wanted: [UnitVideo], bundle: String, records: [(name: String, members: [UnitVideo])])
        -> (kept: [(name: String, videos: [UnitVideo])], rest: [UnitVideo]) {
        guard !records.isEmpty else { return ([], wanted) }
        var byID: [ExternalID: Int] = [:]
        for (i, v) in wanted.enumerated() { byID[ExternalID(v.id)] = i }
        var taken = [Bool](repeating: false, count: wanted.count)
        var kept: [(name: String, videos: [UnitVideo])] = []
        let configSha256 = request.config.unitSettingsSha256
        for (name, members) in records {
            guard let indices = Self.match(members, in: wanted, byID: byID, taken: taken) else { continue }
            guard case .success = UnitRecord.verified(name, in: request.work, bundleFingerprint: bundle,
                                                      configSha256: configSha256) else { continue }
            for i in indices { taken[i] = true }
            kept.append((name, indices.map { wanted[$0] }))
        }
        return (kept, wanted.indices.filter { !taken[$0] }.map { wanted[$0] })
    }

    /// Units made with another bundle whose features key is `featuresKey` (the same experts,
    /// extractors and extraction settings): the wanted videos each holds with the same
    /// content (not one that crashed it) form a new unit that re-encodes those features.
    /// The runner checks the source's outputs against its record first, and extracts when
    /// they fail.
    func reusableFeatures(_ wanted: [UnitVideo], bundle: String, featuresKey: String,
                          records: [(name: String, members: [UnitVideo])])
        -> (reused: [(source: String, videos: [UnitVideo])], rest: [UnitVideo]) {
        guard !records.isEmpty, !wanted.isEmpty else { return ([], wanted) }
        var byID: [ExternalID: Int] = [:]
        for (i, v) in wanted.enumerated() { byID[ExternalID(v.id)] = i }
        var taken = [Bool](repeating: false, count: wanted.count)
        var reused: [(source: String, videos: [UnitVideo])] = []
        for (name, members) in records {
            let candidates = members.compactMap { m -> Int? in
                guard let i = byID[ExternalID(m.id)], wanted[i].contentHash == m.contentHash, !taken[i] else { return nil }
                return i
            }
            guard !candidates.isEmpty,
                  let data = try? InputFiles.read(request.work.record(name), maxBytes: 64 << 20),
                  let record = try? JSONDecoder().decode(UnitRecord.self, from: data),
                  record.bundleFingerprint != bundle, record.featuresKey == featuresKey,
                  record.features != nil, record.stats != nil else { continue }
            let crashed = Set(record.crashed.map { ExternalID($0.id) })
            let indices = candidates.filter { !crashed.contains(ExternalID(wanted[$0].id)) }
            guard !indices.isEmpty else { continue }
            for i in indices { taken[i] = true }
            reused.append((name, indices.map { wanted[$0] }))
        }
        return (reused, wanted.indices.filter { !taken[$0] }.map { wanted[$0] })
    }

    /// Unit `u`'s list, unless the same bytes are there already (a rewrite would be
    /// harmless, but costs a write per unit). Written with the others by `writeAll`.
    func unitList(_ u: String, _ videos: [UnitVideo], encoder: JSONEncoder) throws -> (data: Data, path: String)? {
        var data = Data()
        for v in videos {
            data.append(try encoder.encode(v))
            data.append(0x0A)
        }
        let path = request.work.unitVideos(u)
        if let old = try? Data(contentsOf: URL(fileURLWithPath: path)), old == data { return nil }
        return (data, path)
    }

    /// The generated makefile fragment: one rule per unit (Pipelines/index.mk includes it).
    static func makefile(units: [String], work: WorkLayout) -> String {
        var s = """
        # Generated by vidx-plan: one rule per work unit. Do not edit; re-plan instead.
        # A unit is done when its record exists; vidx-plan removed the records that do not verify.
        VIDX_PIPELINE ?= vidx-pipeline
        VIDX_UNIT_FLAGS ?=
        WORK_DIR := \(work.root)
        UNITS :=
        """
        s += "\n"
        for u in units { s += "UNITS += \(u)\n" }
        s += """
        UNIT_RECORDS := $(UNITS:%=$(WORK_DIR)/units/%.unit.json)

        .DELETE_ON_ERROR:
        .PHONY: units
        units: $(UNIT_RECORDS)

        $(WORK_DIR)/units/%.unit.json: | $(WORK_DIR)/units/%.jsonl
        \t$(VIDX_PIPELINE) unit --work $(WORK_DIR) $(VIDX_UNIT_FLAGS) $*

        """
        return s
    }
}

/// A plan that cannot be made; exit status 1 (2 for usage).
public struct PlanError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The live generation's videos: external id -> content hash, and content -> first id.
struct LiveIndex {
    var generation: String?
    /// nil for a video indexed without a content hash.
    var hashes: [ExternalID: ContentHash?] = [:]
    var owners: [ContentHash: String] = [:]

    init() {}

    init(index: String, note: (String) -> Void) throws {
        guard FileManager.default.fileExists(atPath: index + "/" + IndexGeneration.currentFileName) else { return }
        let g: IndexGeneration
        do { g = try IndexGeneration(indexDirectory: index) } catch {
            throw PlanError("\(index): the live generation cannot be read: \(error); run vidx-verify")
        }
        generation = g.name
        let live = g.liveEntries()
        hashes.reserveCapacity(live.count)
        owners.reserveCapacity(live.count)
        for (s, r) in live {
            let id: String
            do { id = try g.checkedExternalID(shard: s, row: r) } catch { throw PlanError("\(error)") }
            // An unknown (zero) hash never equals a file's: such a video counts as changed.
            let hash = ContentHash(bytes: g.shards[s].contentHash(at: r))
            hashes[ExternalID(id)] = .some(hash)
            if let hash, owners[hash] == nil { owners[hash] = id }
        }
    }
}
