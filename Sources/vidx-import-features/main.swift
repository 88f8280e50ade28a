// vidx-import-features: per-video feature files computed elsewhere -> a features file.
import ArgumentParser
import Foundation
import VidxCore
import VidxExtract
import VidxHCQ

struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vidx-import-features",
        abstract: "Turn per-video feature files (.npy or .safetensors) into a features file for vidx-encode.",
        discussion: """
        LIST.jsonl has one line a video: {"id": ..., "experts": {"NAME": {"features": "F.npy",
        "times": "T.npy"}}} with (n, width) features and optional (n, 2) time windows in
        seconds; paths relative to the list. Widths are checked against the bundle's experts.
        Ids must be non-empty, at most 4,096 characters and unique (compared by their UTF-8
        bytes); lines may end in LF or CRLF. A video whose files are missing, malformed, not
        regular files, of the wrong width or hold NaN is recorded as failed (bad_features),
        one with no feature row at all as failed (no_features), and the others go on.
        Exit status: 0 all imported; 3 some videos failed; 2 usage error; 1 the bundle, the
        list or the output could not be used.
        """)

    @Option(name: .long, help: "Model bundle the features are for.")
    var bundle: String

    @Option(name: .long, help: "Import list (JSON Lines).")
    var list: String

    @Option(name: .long, help: "Features file to write.")
    var out: String

    func run() throws {
        let model: ModelBundle
        let lines: [ImportLine]
        do {
            model = try ModelBundle(directory: bundle)
            lines = try FeatureImport.readList(path: list)
        } catch {
            printError("vidx-import-features: \(error)")
            throw ExitCode(StageExit.failure)
        }
        let specs = Dictionary(uniqueKeysWithValues: model.config.experts.map { ($0.name, $0) })
        let base = URL(fileURLWithPath: list).deletingLastPathComponent().path
        var writer = FeaturesWriter(bundleFingerprint: model.fingerprint, extractors: [:])
        var extractors: [String: String] = [:]
        var failed = 0
        for line in lines {
            var record = VideoRecord(id: line.id, contentHash: line.contentHash ?? "")
            var experts: [String: FeatureSeries] = [:]
            do {
                for (name, source) in line.experts.sorted(by: { $0.key < $1.key }) {
                    guard let spec = specs[name] else {
                        throw StageFileError(path: list, message: "expert '\(name)' is not one of the bundle's (\(specs.keys.sorted().joined(separator: ", ")))")
                    }
                    experts[name] = try FeatureImport.load(source, base: base, width: spec.width)
                    extractors[name] = spec.extractor
                }
            } catch {
                record.status = .failed
                record.error = .init(class: .badFeatures, message: "\(error)")
                experts = [:]
                failed += 1
                printError("vidx-import-features: \(line.id): \(error)")
            }
            // Stored ok, a video without a single row would get the same codes as every
            // other such video: it fails instead.
            if record.status != .failed && experts.values.allSatisfy({ $0.rows == 0 }) {
                let named = experts.isEmpty ? "names no expert" : "gives 0 rows for every expert it names (\(experts.keys.sorted().joined(separator: ", ")))"
                record.status = .failed
                record.error = .init(class: .noFeatures, message: "the list \(named): no feature row to encode")
                experts = [:]
                failed += 1
                printError("vidx-import-features: \(line.id): no_features: \(record.error!.message)")
            }
            writer.add(record, experts: experts)
        }
        writer.extractors = extractors
        do { try writer.write(to: out) } catch {
            printError("vidx-import-features: \(error)")
            throw ExitCode(StageExit.failure)
        }
        print("\(out): \(lines.count) videos, \(failed) failed")
        if failed > 0 { throw ExitCode(StageExit.someFailed) }
    }
}

do {
    var command = try ImportCommand.parse()
    try command.validate()
    try command.run()
} catch let code as ExitCode {
    exit(code.rawValue)
} catch {
    let exitCode = ImportCommand.exitCode(for: error)
    if exitCode == .success {
        print(ImportCommand.fullMessage(for: error))
        exit(0)
    }
    printError(ImportCommand.fullMessage(for: error))
    exit(exitCode == .validationFailure ? StageExit.usage : exitCode.rawValue)
}
