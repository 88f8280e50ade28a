import ArgumentParser
import Foundation
import VidxCore
#if canImport(Glibc)
import Glibc
#endif

/// A stage executable's command: options, and one call into the stage's library.
///
/// `main()` is the one entry funnel: it parses the command line (ArgumentParser runs
/// `validate()` once, there), runs the command, and turns whatever ends the run into the
/// documented exit status (README.md, each stage's table):
/// - `ExitCode` thrown by `run()`: that status (`StageExit.someFailed` for a run that
///   finished with failed inputs);
/// - a usage error (unknown option, `ValidationError`): its message and usage on standard
///   error, `StageExit.usage` (2);
/// - `--help` and `--version`: their text on standard output, 0;
/// - any other error: one line `NAME: ERROR` on standard error and `exitStatus(for:)`
///   (`StageExit.failure`, 1, unless the command says otherwise).
public protocol StageCommand: ParsableCommand {
    /// The exit status for an error that ended the run (default: `StageExit.failure`).
    static func exitStatus(for error: Error) -> Int32
}

extension StageCommand {
    public static func exitStatus(for error: Error) -> Int32 { StageExit.failure }

    /// Parses, runs and exits with the documented status. Never returns.
    public static func main() -> Never {
        var command: ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            terminate(usageStatus(error))
        }
        // Commands ArgumentParser makes itself (`--help`, `help SUB`) end by throwing what
        // it renders: usage handling, not a failure of the stage.
        let builtIn = String(reflecting: type(of: command)).hasPrefix("ArgumentParser.")
        do {
            try command.run()
            terminate(StageExit.ok)
        } catch where builtIn {
            terminate(usageStatus(error))
        } catch let code as ExitCode {
            terminate(code.rawValue)
        } catch let error as ValidationError {
            terminate(usageStatus(error))
        } catch let error as CleanExit {  // a command without run() of its own: its help
            terminate(usageStatus(error))
        } catch {
            printError("\(configuration.commandName ?? "vidx"): \(error)")
            terminate(exitStatus(for: error))
        }
    }

    /// Prints a parse or help result as ArgumentParser would, and returns its status:
    /// `StageExit.usage` instead of ArgumentParser's 64 for a usage error.
    private static func usageStatus(_ error: Error) -> Int32 {
        let code = exitCode(for: error)
        if code == .success {
            print(fullMessage(for: error))
            return StageExit.ok
        }
        printError(fullMessage(for: error))
        if code == .validationFailure {
            printError("Run '\(configuration.commandName ?? "vidx") --help' for usage.")
            return StageExit.usage
        }
        return code.rawValue
    }
}

/// `--json`: one JSON summary line on standard output instead of the text line.
public struct SummaryOptions: ParsableArguments {
    @Flag(name: .long, help: "Print a JSON summary line instead of text.")
    public var json = false

    public init() {}

    /// Prints `summary` as one JSON line (sorted keys) with `--json`, else `text`.
    public func print<S: Encodable>(_ summary: S, text: @autoclosure () -> String) throws {
        if json {
            Swift.print(String(decoding: try makeJSONEncoder().encode(summary), as: UTF8.self))
        } else {
            Swift.print(text())
        }
    }
}

/// `--threads N`: the threads a stage's own work uses; outputs never depend on it.
public struct ThreadOptions: ParsableArguments {
    @Option(name: .long, help: "Threads (default: all cores); the output bytes do not depend on it.")
    public var threads: Int?

    public init() {}

    public func validate() throws {
        if let threads, threads < 1 || threads > 256 { throw ValidationError("--threads must be between 1 and 256") }
    }

    /// The thread count to use: `--threads`, or every core.
    public var resolved: Int { threads ?? ProcessInfo.processInfo.activeProcessorCount }
}

/// `exit(3)`, named apart from ParsableCommand's `exit(withError:)`.
private func terminate(_ status: Int32) -> Never {
    exit(status)
}
