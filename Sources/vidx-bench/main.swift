// vidx-bench: measurements the benchmark scripts need from inside the process (not a
// pipeline stage). Each subcommand prints one JSON line on standard output.
//
//   vidx-bench sgemm-peak [--threads N] [--size N] [--seconds S]
//       cblas_sgemm's sustained GFLOP/s on this machine.
//   vidx-bench cnn --weights DIR|FILE [--batch 16] [--threads N] [--seconds S]
//       the appearance CNN's frames/s and achieved GFLOP/s, against sgemm's peak measured
//       in the same process with N threads. The CNN runs as vidx-extract runs it: on N
//       workers of its own (Parallel), OpenBLAS single-threaded.
import ArgumentParser
import Foundation
import VidxCLI
import VidxCore
import VidxNumerics
import VidxVision

struct BenchCommand: StageCommand {
    static let configuration = CommandConfiguration(
        commandName: "vidx-bench",
        abstract: "Measurements for the benchmark scripts; each subcommand prints one JSON line.",
        subcommands: [SgemmPeak.self, CNN.self])

    func run() throws { throw ValidationError("give a subcommand: sgemm-peak or cnn") }
}

/// `--seconds S`: how long to measure, in (0, 3600].
func checkSeconds(_ seconds: Double) throws {
    guard seconds > 0, seconds <= 3600 else { throw ValidationError("--seconds must be a number in (0, 3600]") }
}

struct SgemmPeak: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sgemm-peak", abstract: "cblas_sgemm's sustained GFLOP/s.")

    @OptionGroup var threads: ThreadOptions

    @Option(name: .long, help: "Square matrix size, 16 to 8192.")
    var size = 1024

    @Option(name: .long, help: "Seconds to measure.")
    var seconds = 2.0

    func validate() throws {
        guard (16...8192).contains(size) else { throw ValidationError("--size must be an integer in 16...8192") }
        try checkSeconds(seconds)
    }

    func run() {
        BLAS.setThreads(threads.resolved)
        let gflops = BLAS.measurePeakGFLOPS(size: size, seconds: seconds)
        print(String(format: #"{"threads":%d,"size":%d,"sgemm_gflops":%.2f}"#, threads.resolved, size, gflops))
    }
}

struct CNN: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cnn", abstract: "The appearance CNN's frames/s and GFLOP/s.")

    @Option(name: .long, help: "Converted CNN weights: a weights file, or a directory holding weights.safetensors.")
    var weights: String

    @Option(name: .long, help: "Frames per pass, 1 to 1024.")
    var batch = ConvNet.defaultFramesPerPass

    @OptionGroup var threads: ThreadOptions

    @Option(name: .long, help: "Seconds to measure.")
    var seconds = 10.0

    func validate() throws {
        guard (1...1024).contains(batch) else { throw ValidationError("--batch must be an integer in 1...1024") }
        try checkSeconds(seconds)
    }

    func run() {
        var isDirectory: ObjCBool = false
        let file = FileManager.default.fileExists(atPath: weights, isDirectory: &isDirectory) && isDirectory.boolValue
            ? weights + "/weights.safetensors" : weights
        runCNN(weights: file, batch: batch, threads: threads.resolved, seconds: seconds)
    }
}

/// `exit(3)`, named apart from ParsableCommand's `exit(withError:)`.
func terminate(_ status: Int32) -> Never { exit(status) }

BenchCommand.main()

/// Loads the network, measures sgemm's peak with `threads` OpenBLAS threads, then runs
/// batches of `batch` generated frames through the network for about `seconds` seconds
/// after a one-batch warm-up, the way the appearance expert calls it in vidx-extract with
/// one worker: one `features` call per batch, on `threads` workers, each sgemm call
/// single-threaded.
func runCNN(weights: String, batch: Int, threads: Int, seconds: Double) {
    let net: ConvNet
    do {
        net = try ConvNet(path: weights, framesPerPass: batch)
    } catch {
        printError("vidx-bench: \(error)")
        terminate(StageExit.failure)
    }
    MemoryTuning.reuseLargeAllocations()
    BLAS.setThreads(threads)
    let peak = BLAS.measurePeakGFLOPS(size: 1024, seconds: 2)

    let frames = (0..<batch).map { syntheticFrame(size: net.inputSize, seed: $0) }
    let first = net.features(frames)  // warm-up: workspace, page faults, OpenBLAS buffers
    let checksum = first.withUnsafeBytes { SHA256Digest.hex($0) }
    let clock = ContinuousClock()
    var batches = 0
    var elapsed = Duration.zero
    let start = clock.now
    repeat {
        let out = net.features(frames)
        precondition(out.count == batch * net.featureWidth)
        batches += 1
        elapsed = clock.now - start
    } while elapsed < .seconds(seconds) || batches < 2
    let (s, atto) = elapsed.components
    let wall = Double(s) + Double(atto) * 1e-18
    let framesPerSecond = Double(batches * batch) / wall
    let gflops = framesPerSecond * net.flopsPerFrame / 1e9
    print(String(format: #"{"network":"%@","threads":%d,"batch":%d,"frames":%d,"seconds":%.3f,"#
                 + #""frames_per_s":%.2f,"gflop_per_frame":%.4f,"gflops":%.2f,"sgemm_gflops":%.2f,"#
                 + #""percent_of_peak":%.1f,"features_sha256":"%@"}"#,
                 net.name, threads, batch, batches * batch, wall, framesPerSecond, net.flopsPerFrame / 1e9,
                 gflops, peak, 100 * gflops / peak, checksum))
}

/// A deterministic `size` x `size` test image: smooth gradients plus per-pixel noise from a
/// 64-bit LCG seeded by `seed`, so every frame of a batch differs.
func syntheticFrame(size: Int, seed: Int) -> RGBImage {
    var state = UInt64(truncatingIfNeeded: seed) &* 6364136223846793005 &+ 1442695040888963407
    var pixels = [UInt8](repeating: 0, count: size * size * 3)
    for y in 0..<size {
        for x in 0..<size {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let noise = Int(truncatingIfNeeded: state >> 59)  // 0..<32
            let p = 3 * (y * size + x)
            pixels[p] = UInt8(truncatingIfNeeded: (x * 255 / size + seed * 37 + noise) & 255)
            pixels[p + 1] = UInt8(truncatingIfNeeded: (y * 255 / size + noise) & 255)
            pixels[p + 2] = UInt8(truncatingIfNeeded: ((x + y) * 127 / size + seed * 11 + noise) & 255)
        }
    }
    return RGBImage(width: size, height: size, pixels: pixels)
}
