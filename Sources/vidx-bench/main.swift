// vidx-bench: measurements the benchmark scripts need from inside the process
// (not a pipeline stage). `vidx-bench sgemm-peak [--threads N]` prints cblas_sgemm's
// sustained GFLOP/s on this machine as JSON.
import Foundation
import VidxCore
import VidxNumerics

let args = Array(CommandLine.arguments.dropFirst())
func option(_ name: String) -> String? {
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
    return args[i + 1]
}
guard args.first == "sgemm-peak" else {
    printError("usage: vidx-bench sgemm-peak [--threads N] [--size N] [--seconds S]")
    exit(StageExit.usage)
}
let threads = option("--threads").flatMap(Int.init) ?? ProcessInfo.processInfo.activeProcessorCount
let size = option("--size").flatMap(Int.init) ?? 1024
let seconds = option("--seconds").flatMap(Double.init) ?? 2
BLAS.setThreads(threads)
let gflops = BLAS.measurePeakGFLOPS(size: size, seconds: seconds)
print(String(format: #"{"threads":%d,"size":%d,"sgemm_gflops":%.2f}"#, threads, size, gflops))
