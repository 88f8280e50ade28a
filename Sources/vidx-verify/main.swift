// vidx-verify: check a whole index generation.
import ArgumentParser
import Foundation
import VidxCore
import VidxIndex

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vidx-verify",
        abstract: "Check an index generation: manifest against files, checksums, counts, fingerprints, duplicate ids.",
        discussion: "Exit status: 0 the generation is good; 1 problems were found (one per line on stderr); 2 usage error.")

    @Argument(help: "Index directory (holds CURRENT).")
    var index: String

    @Option(name: .long, help: "Generation to check (default: the one CURRENT names).")
    var generation: String?

    @Flag(name: .long, help: "Print a JSON summary line.")
    var json = false

    func run() throws {
        let problems = IndexVerifier.verify(indexDirectory: index, generation: generation)
        for p in problems { printError("vidx-verify: \(p)") }
        let name = generation ?? (try? IndexGeneration.currentName(indexDirectory: index)) ?? "?"
        if json {
            struct Summary: Encodable { let index: String, generation: String, ok: Bool, problems: [String] }
            print(String(decoding: try makeJSONEncoder().encode(Summary(index: index, generation: name, ok: problems.isEmpty,
                                                                        problems: problems)), as: UTF8.self))
        } else if problems.isEmpty {
            print("\(index)/\(name): ok")
        } else {
            print("\(index)/\(name): \(problems.count) problem\(problems.count == 1 ? "" : "s")")
        }
        if !problems.isEmpty { throw ExitCode(StageExit.failure) }
    }
}

do {
    var command = try VerifyCommand.parse()
    try command.validate()
    try command.run()
} catch let code as ExitCode {
    exit(code.rawValue)
} catch {
    let exitCode = VerifyCommand.exitCode(for: error)
    if exitCode == .success {
        print(VerifyCommand.fullMessage(for: error))
        exit(0)
    }
    printError(VerifyCommand.fullMessage(for: error))
    exit(exitCode == .validationFailure ? StageExit.usage : exitCode.rawValue)
}
