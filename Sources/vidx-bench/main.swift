// vidx-bench: measurements the benchmark scripts need from inside the process (not a
// pipeline stage). Each subcommand prints one JSON line on standard output.
//
//   vidx-bench sgemm-peak [--threads N] [--size N] [--seconds S]
//       cblas_sgemm's sustained GFLOP/s on this machine.
//   vidx-bench cnn --weights DIR|FILE [--batch 16] [--threads N] [--seconds S]
//       the appearance CNN's frames/s and achieved GFLOP/s, against sgemm's peak measured
//       in the same process with N threads. The CNN runs as vidx-extract runs it: on N
//       workers of its own (Parallel), OpenBLAS single-threaded.
import Foundation
import VidxCore
import VidxNumerics
import VidxVision

let usage = """
    usage: vidx-bench sgemm-peak [--threads N] [--size N] [--seconds S]
           vidx-bench cnn --weights DIR|FILE [--batch 16] [--threads N] [--seconds S]
    """

func usageError(_ message: String) -> Never {
    printError("vidx-bench: \(message)")
    printError(usage)
    exit(StageExit.usage)
}

/// `--name value` pairs after the subcommand; each name must be one of `allowed`.
func parseOptions(_ words: ArraySlice<String>, allowed: Set<String>) -> [String: String] {
    var options: [String: String] = [:]
    var i = words.startIndex
    while i < words.endIndex {
        let name = words[i]
        guard allowed.contains(name) else { usageError("unknown option '\(name)'") }
        guard i + 1 < words.endIndex else { usageError("\(name) needs a value") }
        options[name] = words[i + 1]
        i += 2
    }
    return options
}

func intOption(_ options: [String: String], _ name: String, default value: Int, in range: ClosedRange<Int>) -> Int {
    guard let text = options[name] else { return value }
    guard let v = Int(text), range.contains(v) else {
        usageError("\(name) must be an integer in \(range.lowerBound)...\(range.upperBound), got '\(text)'")
    }
    return v
}

func secondsOption(_ options: [String: String], default value: Double) -> Double {
    guard let text = options["--seconds"] else { return value }
    guard let v = Double(text), v > 0, v <= 3600 else { usageError("--seconds must be a number in (0, 3600], got '\(text)'") }
    return v
}

let cores = ProcessInfo.processInfo.activeProcessorCount
let args = CommandLine.arguments.dropFirst()
guard let command = args.first else { usageError("give a subcommand") }
let rest = args.dropFirst()

switch command {
case "sgemm-peak":
    let options = parseOptions(rest, allowed: ["--threads", "--size", "--seconds"])
    let threads = intOption(options, "--threads", default: cores, in: 1...256)
    let size = intOption(options, "--size", default: 1024, in: 16...8192)
    let seconds = secondsOption(options, default: 2)
    BLAS.setThreads(threads)
    let gflops = BLAS.measurePeakGFLOPS(size: size, seconds: seconds)
    print(String(format: #"{"threads":%d,"size":%d,"sgemm_gflops":%.2f}"#, threads, size, gflops))

case "cnn":
    let options = parseOptions(rest, allowed: ["--weights", "--batch", "--threads", "--seconds"])
    guard let weightsOption = options["--weights"] else { usageError("cnn needs --weights DIR|FILE") }
    let threads = intOption(options, "--threads", default: cores, in: 1...256)
    let batch = intOption(options, "--batch", default: ConvNet.defaultFramesPerPass, in: 1...1024)
    let seconds = secondsOption(options, default: 10)
    var isDirectory: ObjCBool = false
    let weights = FileManager.default.fileExists(atPath: weightsOption, isDirectory: &isDirectory) && isDirectory.boolValue
        ? weightsOption + "/weights.safetensors" : weightsOption
    runCNN(weights: weights, batch: batch, threads: threads, seconds: seconds)

default:
    usageError("unknown subcommand '\(command)'")
}

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
        exit(StageExit.failure)
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
