// vidx-fuzz built normally: a corpus replayer.
//
//     vidx-fuzz TARGET FILE_OR_DIRECTORY...
//
// Runs every file (a directory: every file in it, by name) through TARGET's reader, as the
// fuzz build does, and prints one line per file: `ok FILE: ...` or `refused FILE: error`.
// Exit status 0 when every file was handled (accepted or refused), 2 for a usage error or an
// unreadable file; a reader bug stops the process (a trap, as under libFuzzer).
//
// A `@main` type rather than main.swift: the fuzz build compiles with -parse-as-library
// (libFuzzer supplies `main`), which refuses top-level code even in an inactive `#if`.
#if !FUZZING
import Foundation
import VidxCore

@main
enum Replayer {
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        guard let name = arguments.first else { usage("no target given") }
        guard let target = FuzzTarget(rawValue: name) else { usage("unknown target '\(name)'") }
        guard arguments.count > 1 else { usage("no input files given") }
        var accepted = 0
        let files = expand(arguments.dropFirst())
        for file in files {
            let data: Data
            do { data = try InputFiles.read(file, maxBytes: 64 << 20) } catch { usage("cannot read an input: \(error)") }
            switch data.withUnsafeBytes({ target.run($0) }) {
            case .accepted(let summary):
                accepted += 1
                print("ok \(file): \(summary)")
            case .refused(let error):
                print("refused \(file): \(error.replacingOccurrences(of: "\n", with: " "))")
            }
        }
        print("\(files.count) files: \(accepted) accepted, \(files.count - accepted) refused")
    }

    /// The files named, a directory standing for the files in it (sorted, no dot files).
    static func expand(_ paths: ArraySlice<String>) -> [String] {
        var files: [String] = []
        for path in paths {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
                let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
                files += names.sorted().filter { !$0.hasPrefix(".") }.map { path + "/" + $0 }
            } else {
                files.append(path)
            }
        }
        return files
    }
}

private func usage(_ problem: String) -> Never {
    let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: " | ")
    FileHandle.standardError.write(Data("vidx-fuzz: \(problem)\nusage: vidx-fuzz \(names) FILE_OR_DIRECTORY...\n".utf8))
    exit(2)
}

#endif
