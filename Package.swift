// swift-tools-version:6.1
// The production indexer for text-to-video retrieval (HCQ).
//
// Layers, bottom up (targets are listed in this order):
//   C modules        CFFmpeg, CFFmpegShim, COpenBLAS, CVidxScan, CVidxCluster (the only C; FFmpeg and
//                    OpenBLAS are imported by one Swift module each)
//   plumbing         VidxBytes: the byte layer under every reader (mapped files, checked
//                    cursor, checked sizes, UTF-8); VidxCore: files, formats of the stage
//                    files, vocabulary, hashing
//   model pieces     VidxQuantization (product quantizer), VidxNumerics (dense math on
//                    OpenBLAS), VidxVision (the CNN), VidxExperts (audio, motion)
//   stage libraries  VidxDecode (1), VidxExtract (2), VidxHCQ (3), VidxIndex (4),
//                    VidxSearch (query side): each stage callable in-process
//   pipeline         VidxPipeline: plan, work units, publication, quarantine, run reports,
//                    metrics, the index lock (what make and Slurm drive)
//   command line     VidxCLI (the entry funnel, shared options, typed arguments), then one
//                    thin executable per stage: options plus one call into its library
// Linux only (built and tested on Debian 12): no platform is claimed that is not tested.
import PackageDescription

let argumentParser = Target.Dependency.product(name: "ArgumentParser", package: "swift-argument-parser")

let package = Package(
    name: "vidx",
    products: [
        .executable(name: "vidx-decode", targets: ["vidx-decode"]),
        .executable(name: "vidx-extract", targets: ["vidx-extract"]),
        .executable(name: "vidx-import-features", targets: ["vidx-import-features"]),
        .executable(name: "vidx-encode", targets: ["vidx-encode"]),
        .executable(name: "vidx-shard", targets: ["vidx-shard"]),
        .executable(name: "vidx-verify", targets: ["vidx-verify"]),
        .executable(name: "vidx-search", targets: ["vidx-search"]),
        .executable(name: "vidx-plan", targets: ["vidx-plan"]),
        .executable(name: "vidx-pipeline", targets: ["vidx-pipeline"]),
        .executable(name: "vidx-fit-codebooks", targets: ["vidx-fit-codebooks"]),
        .executable(name: "vidx-quality", targets: ["vidx-quality"]),
        .executable(name: "vidx-bench", targets: ["vidx-bench"]),
        .library(name: "VidxBytes", targets: ["VidxBytes"]),
        .library(name: "VidxCore", targets: ["VidxCore"]),
        .library(name: "VidxQuantization", targets: ["VidxQuantization"]),
        .library(name: "VidxNumerics", targets: ["VidxNumerics"]),
        .library(name: "VidxVision", targets: ["VidxVision"]),
        .library(name: "VidxDecode", targets: ["VidxDecode"]),
        .library(name: "VidxExtract", targets: ["VidxExtract"]),
        .library(name: "VidxHCQ", targets: ["VidxHCQ"]),
        .library(name: "VidxIndex", targets: ["VidxIndex"]),
        .library(name: "VidxSearch", targets: ["VidxSearch"]),
        .library(name: "VidxPipeline", targets: ["VidxPipeline"]),
        .library(name: "VidxCodebooks", targets: ["VidxCodebooks"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // MARK: C modules
        // FFmpeg's libraries, found with pkg-config; installed by `make setup`.
        .systemLibrary(
            name: "CFFmpeg",
            path: "Sources/CFFmpeg",
            pkgConfig: "libavformat",
            providers: [.apt(["libavformat-dev", "libavcodec-dev", "libavutil-dev",
                              "libswscale-dev", "libswresample-dev"])]
        ),
        // What Swift cannot import from FFmpeg's headers (function-like macros).
        .target(name: "CFFmpegShim", dependencies: ["CFFmpeg"], path: "Sources/CFFmpegShim"),
        // OpenBLAS's CBLAS interface, found with pkg-config; installed by `make setup`.
        .systemLibrary(
            name: "COpenBLAS",
            path: "Sources/COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        // The scan's inner loop in C: 8 queries per 32-byte table read, AVX2 chosen at run time.
        .target(name: "CVidxScan", path: "Sources/CVidxScan", cSettings: [.unsafeFlags(["-O3"])]),
        // Codebook fitting's inner loops in C (score-row argmax, k-means++ distances), AVX2 chosen at run time.
        .target(name: "CVidxCluster", path: "Sources/CVidxCluster", cSettings: [.unsafeFlags(["-O3", "-Wno-psabi"])]),

        // MARK: Plumbing
        // The byte layer under every reader: mapped files, a bounds-checked cursor, checked sizes, UTF-8.
        .target(name: "VidxBytes", path: "Sources/VidxBytes"),
        // Files (regular inputs, atomic and staged writes), safetensors and NPY, the stage
        // files (features, codes), the shared vocabulary (statuses, failure classes), SHA-256.
        .target(name: "VidxCore", dependencies: ["VidxBytes", .product(name: "Crypto", package: "swift-crypto")],
                path: "Sources/VidxCore"),

        // MARK: Model pieces
        // HCQ's product quantizer: layout, unit-norm codebooks, encoding, reconstruction,
        // lookup tables, the codebook file. Where the encoder, the index and search meet.
        .target(name: "VidxQuantization", dependencies: ["VidxCore"], path: "Sources/VidxQuantization"),
        // Dense math on OpenBLAS: matrices, layers, attention. The only module that imports it.
        .target(name: "VidxNumerics", dependencies: ["COpenBLAS"], path: "Sources/VidxNumerics"),
        // Image CNNs from vidx-cnn weights files (Schemas/cnn-weights.md): the appearance expert.
        .target(name: "VidxVision", dependencies: ["VidxCore", "VidxNumerics"], path: "Sources/VidxVision"),
        // Built-in experts: streaming audio (log-mel statistics) and motion (frame differences).
        .target(name: "VidxExperts", dependencies: ["VidxCore", "VidxNumerics"], path: "Sources/VidxExperts"),

        // MARK: Stage libraries
        // Stage 1: probe, sample frames and audio. The only module that imports FFmpeg.
        .target(name: "VidxDecode", dependencies: ["VidxCore", "CFFmpeg", "CFFmpegShim"], path: "Sources/VidxDecode"),
        // Stage 2: a work unit's videos decoded once each and fanned out to every expert.
        .target(name: "VidxExtract", dependencies: ["VidxCore", "VidxNumerics", "VidxDecode", "VidxExperts", "VidxVision"],
                path: "Sources/VidxExtract"),
        // Stage 3: HCQ model bundles and the video encoder (embeddings, PQ codes).
        .target(name: "VidxHCQ", dependencies: ["VidxCore", "VidxQuantization", "VidxNumerics"], path: "Sources/VidxHCQ"),
        // Stage 4: the index shard format (Schemas/index-shard.md), generations, verification.
        .target(name: "VidxIndex", dependencies: ["VidxCore", "VidxQuantization"], path: "Sources/VidxIndex"),
        // Query side: lookup-table scans (full and coarse-to-fine) over a generation.
        .target(name: "VidxSearch", dependencies: ["VidxCore", "VidxQuantization", "VidxIndex", "CVidxScan"],
                path: "Sources/VidxSearch"),

        // Codebooks fitted on a corpus (spherical k-means) and what quantization costs.
        .target(name: "VidxCodebooks", dependencies: ["VidxCore", "VidxQuantization", "VidxNumerics", "VidxHCQ", "CVidxCluster"],
                path: "Sources/VidxCodebooks"),

        // MARK: Pipeline
        // Plan, work units (extract in a child process, encode), publication, quarantine,
        // run reports, Prometheus textfile metrics, the index lock.
        .target(name: "VidxPipeline",
                dependencies: ["VidxCore", "VidxDecode", "VidxExtract", "VidxHCQ", "VidxIndex", "VidxNumerics",
                               .product(name: "Logging", package: "swift-log"),
                               .product(name: "Prometheus", package: "swift-prometheus")],
                path: "Sources/VidxPipeline"),

        // MARK: Command line
        // The entry funnel (exit statuses), shared option groups, typed arguments.
        .target(name: "VidxCLI", dependencies: ["VidxCore", "VidxDecode", argumentParser], path: "Sources/VidxCLI"),
        .executableTarget(name: "vidx-decode", dependencies: ["VidxCLI", "VidxDecode", "VidxCore"],
                          path: "Sources/vidx-decode"),
        .executableTarget(name: "vidx-extract", dependencies: ["VidxCLI", "VidxExtract", "VidxHCQ", "VidxCore"],
                          path: "Sources/vidx-extract"),
        .executableTarget(name: "vidx-import-features", dependencies: ["VidxCLI", "VidxExtract", "VidxHCQ", "VidxCore"],
                          path: "Sources/vidx-import-features"),
        .executableTarget(name: "vidx-encode", dependencies: ["VidxCLI", "VidxHCQ", "VidxCore"],
                          path: "Sources/vidx-encode"),
        .executableTarget(name: "vidx-shard", dependencies: ["VidxCLI", "VidxIndex", "VidxHCQ", "VidxCore"],
                          path: "Sources/vidx-shard"),
        .executableTarget(name: "vidx-verify", dependencies: ["VidxCLI", "VidxIndex", "VidxCore"],
                          path: "Sources/vidx-verify"),
        .executableTarget(name: "vidx-search", dependencies: ["VidxCLI", "VidxSearch", "VidxIndex", "VidxCore"],
                          path: "Sources/vidx-search"),
        .executableTarget(name: "vidx-plan", dependencies: ["VidxCLI", "VidxPipeline", "VidxCore"], path: "Sources/vidx-plan"),
        .executableTarget(name: "vidx-pipeline", dependencies: ["VidxCLI", "VidxPipeline", "VidxCore"],
                          path: "Sources/vidx-pipeline"),
        .executableTarget(name: "vidx-fit-codebooks", dependencies: ["VidxCLI", "VidxCodebooks", "VidxHCQ", "VidxNumerics", "VidxCore"],
                          path: "Sources/vidx-fit-codebooks"),
        .executableTarget(name: "vidx-quality", dependencies: ["VidxCLI", "VidxCodebooks", "VidxHCQ", "VidxNumerics", "VidxCore"],
                          path: "Sources/vidx-quality"),
        // Measurements for the benchmark scripts (not a pipeline stage).
        .executableTarget(name: "vidx-bench", dependencies: ["VidxCLI", "VidxNumerics", "VidxVision", "VidxCore"],
                          path: "Sources/vidx-bench"),

        // MARK: Fuzzing
        // libFuzzer entry over every reader (VIDX_FUZZ_TARGET picks one); built normally, a corpus replayer.
        .executableTarget(name: "vidx-fuzz", dependencies: ["VidxIndex", "VidxHCQ", "VidxCore"], path: "Fuzz/vidx-fuzz"),

        // MARK: Tests (one target per library; VidxTestSupport is shared by all)
        .target(name: "VidxTestSupport", path: "Tests/VidxTestSupport"),
        .testTarget(name: "VidxBytesTests", dependencies: ["VidxBytes", "VidxTestSupport"], path: "Tests/VidxBytesTests"),
        .testTarget(name: "VidxCoreTests", dependencies: ["VidxCore", "VidxTestSupport"], path: "Tests/VidxCoreTests"),
        .testTarget(name: "VidxQuantizationTests", dependencies: ["VidxQuantization", "VidxCore", "VidxTestSupport"],
                    path: "Tests/VidxQuantizationTests"),
        .testTarget(name: "VidxNumericsTests", dependencies: ["VidxNumerics", "VidxTestSupport"], path: "Tests/VidxNumericsTests"),
        .testTarget(name: "VidxVisionTests", dependencies: ["VidxVision", "VidxCore", "VidxNumerics", "VidxTestSupport"],
                    path: "Tests/VidxVisionTests"),
        .testTarget(name: "VidxExpertsTests", dependencies: ["VidxExperts", "VidxCore", "VidxTestSupport"],
                    path: "Tests/VidxExpertsTests"),
        .testTarget(name: "VidxDecodeTests", dependencies: ["VidxDecode", "VidxCore", "VidxTestSupport", "vidx-decode"],
                    path: "Tests/VidxDecodeTests"),
        .testTarget(name: "VidxExtractTests",
                    dependencies: ["VidxExtract", "VidxCore", "VidxTestSupport", "vidx-extract", "vidx-import-features",
                                   "vidx-encode", "vidx-shard", "vidx-search"],
                    path: "Tests/VidxExtractTests"),
        .testTarget(name: "VidxHCQTests", dependencies: ["VidxHCQ", "VidxCore", "VidxNumerics", "VidxTestSupport", "vidx-encode"],
                    path: "Tests/VidxHCQTests"),
        .testTarget(name: "VidxIndexTests", dependencies: ["VidxIndex", "VidxCore", "VidxTestSupport",
                                                       "vidx-shard", "vidx-verify", "vidx-search"],
                    path: "Tests/VidxIndexTests"),
        .testTarget(name: "VidxSearchTests",
                    dependencies: ["VidxSearch", "CVidxScan", "VidxIndex", "VidxHCQ", "VidxCore", "VidxTestSupport",
                                   "vidx-shard", "vidx-verify", "vidx-search"],
                    path: "Tests/VidxSearchTests"),
        .testTarget(name: "VidxPipelineTests",
                    dependencies: ["VidxPipeline", "VidxIndex", "VidxCore", "VidxTestSupport", "vidx-plan", "vidx-pipeline",
                                   "vidx-extract", "vidx-shard", "vidx-verify", "vidx-search"],
                    path: "Tests/VidxPipelineTests"),
        .testTarget(name: "VidxCodebooksTests",
                    dependencies: ["VidxCodebooks", "CVidxCluster", "VidxHCQ", "VidxQuantization", "VidxNumerics", "VidxCore", "VidxTestSupport",
                                   "vidx-fit-codebooks", "vidx-quality", "vidx-encode"],
                    path: "Tests/VidxCodebooksTests"),
        .testTarget(name: "VidxFuzzTests", dependencies: ["VidxTestSupport", "vidx-fuzz"], path: "Tests/VidxFuzzTests"),
    ],
    swiftLanguageModes: [.v6]
)
