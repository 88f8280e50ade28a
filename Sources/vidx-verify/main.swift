// vidx-verify: check a whole index generation.
import ArgumentParser
import VidxCLI
import VidxCore
import VidxIndex

struct VerifyCommand: StageCommand {
    static let configuration = CommandConfiguration(
        commandName: "vidx-verify",
        abstract: "Check an index generation: manifest against files, checksums, counts, fingerprints, duplicate ids.",
        discussion: "Exit status: 0 the generation is good; 1 problems were found (one per line on stderr); 2 usage error.")

    @Argument(help: "Index directory (holds CURRENT).")
    var index: String

    @Option(name: .long, help: "Generation to check, by name (gNNNNNN; default: the one CURRENT names).")
    var generation: String?

    @OptionGroup var summary: SummaryOptions

    /// What `--json` prints.
    struct Summary: Encodable {
        let index: String, generation: String, ok: Bool, problems: [String]
    }

    func run() throws {
        let report = IndexVerifier.report(indexDirectory: index, generation: generation)
        for p in report.problems { printError("vidx-verify: \(p)") }
        let s = Summary(index: index, generation: report.generation, ok: report.problems.isEmpty, problems: report.problems)
        let count = report.problems.count
        try summary.print(s, text: count == 0 ? "\(index)/\(report.generation): ok"
                                              : "\(index)/\(report.generation): \(count) problem\(count == 1 ? "" : "s")")
        if count > 0 { throw ExitCode(StageExit.failure) }
    }
}

VerifyCommand.main()
