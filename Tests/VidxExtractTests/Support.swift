import Foundation
import Testing
import VidxCore
import VidxTestSupport

/// A built tool (or a path) under `timeout(1)`: a tool that blocks fails the test instead
/// of hanging it (`runTool` with a timeout).
func runBounded(_ executable: String, _ args: [String], seconds: Int = 120, in directory: String? = nil,
                environment: [String: String]? = nil) throws -> (status: Int32, stdout: String, stderr: String) {
    try runTool(executable, args, timeout: seconds, in: directory, environment: environment)
}

/// Makes a FIFO at `path`.
func makeFIFO(_ path: String) throws {
    guard mkfifo(path, 0o644) == 0 else { throw TestDataError(message: "mkfifo \(path) failed: errno \(errno)") }
}

/// Small generated clips (160 x 120, 10 fps): cheap to decode.
enum Clips {
    /// A moving test pattern with a 1 kHz tone.
    static func tone(_ path: String, seconds: Int = 2) throws {
        try ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10:duration=\(seconds)", "-f", "lavfi",
                    "-i", "sine=frequency=1000:duration=\(seconds)", "-c:v", "libx264", "-preset", "veryfast",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", path])
    }

    /// A moving test pattern without an audio stream.
    static func silent(_ path: String, seconds: Int = 2) throws {
        try ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10:duration=\(seconds)", "-c:v", "libx264",
                    "-preset", "veryfast", "-pix_fmt", "yuv420p", path])
    }
}

/// A one-layer bundle with seeded weights: the starter's built-in experts `builtin` (by
/// name: appearance, audio, motion) and imported experts (name, width), windowed.
@discardableResult
func makeBundle(_ dir: String, builtin: [String], imported: [(name: String, width: Int)] = []) throws -> String {
    let extra = imported.map { "[\"\($0.name)\", \($0.width)]" }.joined(separator: ",")
    try Python.call("extract_bundle", dir, builtin.joined(separator: ","), "[\(extra)]")
    return dir
}

/// Saves seeded (rows, width) float32 features as .npy (and times [k, k+1) as `times`).
func saveNPY(_ path: String, rows: Int, width: Int, seed: Int, times: String? = nil) throws {
    try Python.run(["Tests/Reference/test_data.py", "random_features", path, String(rows), String(width), String(seed)]
                   + (times.map { [$0] } ?? []))
}

/// The names in `dir` that `AtomicFile` uses for files not yet committed.
func temporaryNames(in dir: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter(AtomicFile.isTemporaryName)
}
