import Foundation
import VidxCore
import VidxDecode
import VidxNumerics

/// The extract stage on one work unit, callable in-process: what `vidx-extract` runs.
///
/// Every video of the unit is decoded once and fed to the bundle's built-in experts, on
/// `workers` videos at once; the experts the build cannot run come from an import list.
/// The features file and `UNIT.stats.json` are published together, the stats file last
/// (its presence means the unit is done).
public struct UnitExtractor: Sendable {
    /// The bundle's fingerprint, recorded in the features file.
    public let bundleFingerprint: String
    /// The experts run here (name, built-in extractor id) and those imported.
    public let builtin: [(name: String, extractorID: String)]
    public let imported: [FeatureImport.Expert]
    public let registry: ExpertRegistry
    public let workers: Int
    /// Per-video limits (pixels, duration, wall clock) handed to the decoder.
    public let limits: DecodeLimits
    /// The import list's lines by id, and the directory its paths are relative to.
    private let importLines: [ExternalID: ImportLine]
    private let importList: String?

    /// Checks the bundle's experts against this build and reads the import list.
    /// - Parameters:
    ///   - experts: the bundle's experts, in its order.
    ///   - cnnWeights: the appearance CNN's weights (`CNNWeights.locate`), when an expert needs it.
    ///   - importList: features computed elsewhere for the experts this build cannot run.
    /// - Throws: `StageFileError` naming the bundle (an expert that cannot be run or has
    ///   another width) or the list (an expert the list may not name), or the CNN's error.
    public init(bundleFingerprint: String, bundle: String, experts: [FeatureImport.Expert], cnnWeights: String?,
                cnnBatch: Int = 16, workers: Int = 1, importList: String? = nil,
                limits: DecodeLimits = DecodeLimits()) throws {
        self.bundleFingerprint = bundleFingerprint
        self.workers = max(1, workers)
        self.limits = limits
        self.importList = importList
        registry = try ExpertRegistry(cnnWeights: cnnWeights, cnnBatch: cnnBatch)
        var builtin: [(name: String, extractorID: String)] = [], imported: [FeatureImport.Expert] = []
        var problems: [String] = []
        for spec in experts {
            guard ExpertRegistry.builtinIDs.contains(spec.extractor), let probe = registry.make(extractorID: spec.extractor) else {
                if importList != nil {
                    imported.append(spec)
                    continue
                }
                problems.append("expert '\(spec.name)' was trained on '\(spec.extractor)', which vidx-extract cannot run (built in: \(ExpertRegistry.builtinIDs.joined(separator: ", "))); import such features with --import LIST.jsonl (or vidx-import-features)")
                continue
            }
            if probe.descriptor.width != spec.width {
                problems.append("expert '\(spec.name)': the bundle expects width \(spec.width), '\(spec.extractor)' gives \(probe.descriptor.width)")
            }
            builtin.append((spec.name, spec.extractor))
        }
        guard problems.isEmpty else { throw StageFileError(path: bundle, message: problems.joined(separator: "; ")) }
        self.builtin = builtin
        self.imported = imported
        var lines: [ExternalID: ImportLine] = [:]
        if let importList {
            let names = Set(imported.map(\.name))
            let list = try FeatureImport.readList(path: importList)   // ids valid and unique by bytes
            for line in list {
                if let other = line.experts.keys.sorted().first(where: { !names.contains($0) }) {
                    let known = names.isEmpty ? "none: vidx-extract runs all of this bundle's experts" : names.sorted().joined(separator: ", ")
                    throw StageFileError(path: importList, message: "video '\(line.id)' names expert '\(other)', which is not one of the bundle's imported experts (\(known))")
                }
            }
            lines = FeatureImport.byID(list)
        }
        importLines = lines
    }

    /// Whether `extractorID` names the appearance CNN (then `CNNWeights.locate` is needed).
    public static func needsCNN(_ experts: [FeatureImport.Expert]) -> Bool {
        experts.contains { $0.extractor == AppearanceExpert.extractorID }
    }

    /// `UNIT.features.safetensors` -> `UNIT.stats.json`.
    public static func statsPath(forFeatures out: String) -> String {
        out.hasSuffix(".features.safetensors") ? String(out.dropLast(".features.safetensors".count)) + ".stats.json"
                                               : out + ".stats.json"
    }

    /// What a run did.
    public struct Outcome: Sendable {
        public var records: [VideoRecord]
        public var failed: Int { records.filter { $0.status == .failed }.count }
        /// Imported experts a video had no file for (left missing), over the unit.
        public var missingImports: Int
        public var statsPath: String
    }

    /// Extracts the work unit at `unit` into the features file `out` and its stats file.
    /// - Parameters:
    ///   - journal: a file that gets `start N` before and `end N` after video N (0-based,
    ///     in unit order) is processed, written straight to the kernel, so that a run
    ///     killed by a crash in a decoder or an expert tells which videos were in flight
    ///     (`UnitJournal`); truncated first.
    ///   - note: receives one line per failed video as it fails.
    /// - Throws: `StageFileError` for a unit that cannot be read, `FileWriteError` when an
    ///   output (or the journal) cannot be written (then neither output is new).
    public func run(unit: String, out: String, journal: String? = nil,
                    note: @escaping @Sendable (String) -> Void = { _ in }) throws -> Outcome {
        let videos = try UnitVideo.readUnit(path: unit)
        let log = try journal.map { try UnitJournal(writingTo: $0) }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let threadsPerWorker = max(1, cores / workers)
        // Per-worker threads for the experts' loops and the CNN's tiles; OpenBLAS stays
        // single-threaded (Documentation/Determinism.md).
        BLAS.setThreads(threadsPerWorker)
        let extractor = VideoExtractor(registry: registry, experts: builtin, decodeThreads: threadsPerWorker, limits: limits)

        // Workers take the next video in unit order; results land in their slot.
        var results = [ExtractedVideo?](repeating: nil, count: videos.count)
        let progress = ProgressLine(total: videos.count, minimumItems: 2)
        let lock = NSLock()
        nonisolated(unsafe) var done = 0, failed = 0
        results.withUnsafeMutableBufferPointer { buffer in
            nonisolated(unsafe) let slots = buffer
            Parallel.forEachDynamically(videos.count, workers: workers) { i in
                log?.record("start", i)
                let result = extractor.extract(videos[i])
                log?.record("end", i)
                lock.lock()
                defer { lock.unlock() }
                slots[i] = result
                done += 1
                if result.record.status == .failed {
                    failed += 1
                    progress.finish()
                    note(Self.describeFailure(videos[i], result.record))
                }
                progress.update(done: done, failed: failed, current: videos[i].path)
            }
        }
        progress.finish()

        let extractors = builtin.map { ($0.name, $0.extractorID) } + imported.map { ($0.name, $0.extractor) }
        var writer = FeaturesWriter(bundleFingerprint: bundleFingerprint, extractors: Dictionary(uniqueKeysWithValues: extractors))
        var stats: [VideoExtractStats] = []
        let importBase = importList.map { URL(fileURLWithPath: $0).deletingLastPathComponent().path } ?? ""
        var missingImports = 0
        for i in videos.indices {
            var r = results[i]!
            let wasFailed = r.record.status == .failed
            if !imported.isEmpty {
                let missing = FeatureImport.merge(into: &r, line: importLines[ExternalID(videos[i].id)],
                                                  wanted: imported.map { ($0.name, $0.width) }, base: importBase)
                missingImports += missing.count
            }
            r.failIfNoFeatures()
            if !wasFailed && r.record.status == .failed { note(Self.describeFailure(videos[i], r.record)) }
            writer.add(r.record, experts: r.experts)
            stats.append(r.stats)
        }
        let statsPath = Self.statsPath(forFeatures: out)
        try Self.publish(features: writer, to: out, stats: try makeJSONEncoder(pretty: true).encode(stats), at: statsPath)
        return Outcome(records: writer.videos, missingImports: missingImports, statsPath: statsPath)
    }

    static func describeFailure(_ video: UnitVideo, _ record: VideoRecord) -> String {
        "\(video.id) (\(video.path)): \(record.error?.class.rawValue ?? "failed"): \(record.error?.message ?? "")"
    }

    /// Publishes the unit's two outputs together: both staged (written and fsynced under
    /// temporary names, where a full disk fails), the older stats file removed, then the
    /// features file committed and the stats file last. The stats file's presence means
    /// the unit is done, so a kill at any point never pairs new features with old stats;
    /// if the stats file cannot be committed, the new features file is removed again.
    /// - Throws: `FileWriteError` naming the file and the failed call; nothing new is
    ///   left at either path then.
    static func publish(features writer: FeaturesWriter, to out: String, stats: Data, at statsPath: String) throws {
        let stagedFeatures = try writer.stage(to: out)
        let stagedStats = try AtomicFile.stage(stats, to: statsPath)
        if unlink(statsPath) != 0 && errno != ENOENT {
            let e = errno
            throw FileWriteError(path: statsPath, operation: "remove the older stats file", errno: e)
        }
        try stagedFeatures.commit()
        do { try stagedStats.commit() } catch {
            unlink(out)
            AtomicFile.syncDirectory(AtomicFile.directory(of: out))
            throw error
        }
    }
}

/// Where the appearance expert's CNN weights are found when none is given.
public enum CNNWeights {
    /// The weights file's path below a models directory.
    public static let relative = "efficientnet-lite0/weights.safetensors"

    /// `explicit` if given; else `$VIDX_MODELS/efficientnet-lite0/weights.safetensors`
    /// if `VIDX_MODELS` is set; else the first of `models/...` and `share/vidx/models/...`
    /// found in the executable's directory or one above it.
    /// - Throws: `StageFileError` naming every place looked at.
    public static func locate(explicit: String?) throws -> String {
        if let explicit { return explicit }   // ConvNet names it if it cannot be read
        if let models = ProcessInfo.processInfo.environment["VIDX_MODELS"], !models.isEmpty {
            let path = models + "/" + relative
            guard isRegularFile(path) else {
                throw StageFileError(path: path, message: "no EfficientNet-Lite0 weights here (looked here because VIDX_MODELS=\(models); make models builds them, or pass --cnn PATH)")
            }
            return path
        }
        var looked: [String] = []
        var dir = URL(fileURLWithPath: executablePath()).deletingLastPathComponent().standardizedFileURL.path
        while true {
            for candidate in [dir + "/models/" + relative, dir + "/share/vidx/models/" + relative] {
                let path = candidate.hasPrefix("//") ? String(candidate.dropFirst()) : candidate
                if isRegularFile(path) { return path }
                looked.append(path)
            }
            let parent = (dir as NSString).deletingLastPathComponent
            if parent == dir || parent.isEmpty { break }
            dir = parent
        }
        throw StageFileError(path: relative, message: "EfficientNet-Lite0 weights not found (no --cnn PATH, VIDX_MODELS not set); looked in: \(looked.joined(separator: ", ")). Run make models, or pass --cnn PATH, or set VIDX_MODELS to a directory holding \(relative)")
    }

    /// This executable's real path (symbolic links resolved), so that an installed
    /// PREFIX/bin finds PREFIX/share/vidx/models.
    static func executablePath() -> String {
        if let real = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return real }
        let given = Bundle.main.executablePath ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: given).resolvingSymlinksInPath().path
    }

    static func isRegularFile(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }
}
