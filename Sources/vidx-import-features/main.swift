// vidx-import-features: per-video feature files computed elsewhere -> a features file.
import ArgumentParser
import VidxCLI
import Foundation
import VidxCore
import VidxExtract
import VidxHCQ

struct ImportCommand: StageCommand {
    static let configuration = CommandConfiguration(
        commandName: "vidx-import-features",
        abstract: "Turn per-video feature files (.npy or .safetensors) into a features file for vidx-encode.",
        discussion: """
        LIST.jsonl has one line a video: {"id": ..., "experts": {"NAME": {"features": "F.npy", \
        "times": "T.npy"}}} with (n, width) features and optional (n, 2) time windows in \
        seconds; paths relative to the list. Widths are checked against the bundle's experts.
        Ids must be non-empty, at most 4,096 characters and unique (compared by their UTF-8 \
        bytes); lines may end in LF or CRLF. A video whose files are missing, malformed, not \
        regular files, of the wrong width or hold NaN is recorded as failed (bad_features), \
        one with no feature row at all as failed (no_features), and the others go on.
        Exit status: 0 all imported; 3 some videos failed; 2 usage error; 1 the bundle, the \
        list or the output could not be used.
        """)

    @Option(name: .long, help: "Model bundle the features are for.")
    var bundle: String

    @Option(name: .long, help: "Import list (JSON Lines).")
    var list: String

    @Option(name: .long, help: "Features file to write.")
    var out: String

    func run() throws {
        let model = try ModelBundle(directory: bundle)
        let experts = model.config.experts.map { FeatureImport.Expert(name: $0.name, width: $0.width, extractor: $0.extractor) }
        let records = try FeatureImport.run(list: list, experts: experts, bundleFingerprint: model.fingerprint, out: out,
                                            note: { printError("vidx-import-features: \($0)") })
        let failed = records.filter { $0.status == .failed }.count
        print("\(out): \(records.count) videos, \(failed) failed")
        if failed > 0 { throw ExitCode(StageExit.someFailed) }
    }
}

ImportCommand.main()
