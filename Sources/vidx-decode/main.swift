// vidx-decode: probe videos and sample their frames (and audio) the way the indexer's
// extract stage will, printing what was sampled and optionally writing the frames as PNG.
import ArgumentParser
import VidxCLI
import Foundation
import VidxCore
import VidxDecode

struct DecodeCommand: StageCommand {
    static let configuration = CommandConfiguration(
        commandName: "vidx-decode",
        abstract: "Probe videos and sample frames and audio through FFmpeg.",
        discussion: """
        Prints, per file, the probe, the sampled frames and the status (ok, partial, failed).
        Exit status: 0 every file ok; 3 finished but some files failed or were only partly \
        decoded; 2 usage error; 1 an output could not be written.
        """)

    @Option(name: .long, help: "Sampling policy: fps:R, uniform:N, keyframes or every:S.")
    var sample: SamplingPolicy = .fps(1)

    @Option(name: .long, help: "Output size: N (N x N) or WxH, 1 to 8192 pixels a side.")
    var size = FrameSize(width: 224, height: 224)

    @Option(name: .long, help: "How frames fit the output: crop, pad or stretch.")
    var fit: FitMode = .crop

    @Flag(name: .long, help: "Also decode the best audio stream to mono float32.")
    var audio = false

    @Option(name: .customLong("audio-rate"), help: "Sample rate of the decoded audio, Hz.")
    var audioRate: Int = 16_000

    @Flag(name: .long, help: "One JSON object per file per line (see Schemas/decode-report.schema.json).")
    var json = false

    @Option(name: .long, help: "Write every sampled frame as a PNG under DIR/<file name>/.")
    var out: String?

    @Flag(name: .long, help: "Fast mode: skip non-reference frames; a sample may be a neighbouring frame.")
    var fast = false

    @Flag(name: .customLong("no-seek"), help: "Decode every group of pictures, even those without a sample.")
    var noSeek = false

    @Flag(name: .customLong("no-partial"), help: "Fail damaged files instead of keeping the frames before the damage.")
    var noPartial = false

    @Option(name: .long, help: "Files decoded at once.")
    var jobs: Int = 1

    @Option(name: .long, help: "FFmpeg threads per file (default: cores / jobs).")
    var threads: Int?

    @OptionGroup var limitOptions: LimitOptions

    @Argument(help: "Video files.")
    var files: [String] = []

    func validate() throws {
        guard !files.isEmpty else { throw ValidationError("give at least one FILE") }
        guard jobs >= 1, jobs <= 64 else { throw ValidationError("--jobs must be between 1 and 64") }
        if let threads, threads < 1 || threads > 64 { throw ValidationError("--threads must be between 1 and 64") }
        guard audioRate >= 1000, audioRate <= 384_000 else { throw ValidationError("--audio-rate must be between 1000 and 384000") }
    }

    var decodeOptions: DecodeOptions {
        var o = DecodeOptions()
        o.sampling = sample
        (o.width, o.height) = (size.width, size.height)
        o.fit = fit
        o.audio = audio
        o.audioSampleRate = audioRate
        o.fast = fast
        o.seekAhead = !noSeek
        o.allowPartial = !noPartial
        o.threads = threads ?? max(1, ProcessInfo.processInfo.activeProcessorCount / jobs)
        o.limits = limitOptions.limits
        return o
    }

    func run() throws {
        let progress = ProgressLine(total: files.count)
        let encoder = makeJSONEncoder(), json = self.json
        nonisolated(unsafe) var done = 0, failedOrPartial = 0, writeFailures = 0
        // Lines arrive one at a time, in input order.
        try DecodeBatch.run(files, options: decodeOptions, jobs: jobs, out: out) { line in
            if line.status != .ok { failedOrPartial += 1 }
            var text = line.text
            if json, let data = try? encoder.encode(line) { text = String(decoding: data, as: UTF8.self) }
            progress.printAbove(text)
            if let w = line.writeError {
                writeFailures += 1
                printError("vidx-decode: \(line.file): \(w)")
            }
            done += 1
            progress.update(done: done, failed: failedOrPartial, current: line.file, force: true)
        }
        progress.finish()
        if writeFailures > 0 { throw ExitCode(StageExit.failure) }
        if failedOrPartial > 0 { throw ExitCode(StageExit.someFailed) }
    }
}

DecodeCommand.main()
