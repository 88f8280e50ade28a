// swift-tools-version:6.1
// The production indexer for text-to-video retrieval (HCQ). One folder per target;
// C only in C* targets; one thin executable per pipeline stage.
// Linux only (built and tested on Debian 12): no platform is claimed that is not tested.
import PackageDescription

let package = Package(
    name: "vidx",
    products: [
        .executable(name: "vidx-decode", targets: ["vidx-decode"]),
        .executable(name: "vidx-encode", targets: ["vidx-encode"]),
        .executable(name: "vidx-bench", targets: ["vidx-bench"]),
        .executable(name: "vidx-shard", targets: ["vidx-shard"]),
        .executable(name: "vidx-verify", targets: ["vidx-verify"]),
        .executable(name: "vidx-search", targets: ["vidx-search"]),
        .executable(name: "vidx-extract", targets: ["vidx-extract"]),
        .executable(name: "vidx-import-features", targets: ["vidx-import-features"]),
        .library(name: "VidxDecode", targets: ["VidxDecode"]),
        .library(name: "VidxCore", targets: ["VidxCore"]),
        .library(name: "VidxNumerics", targets: ["VidxNumerics"]),
        .library(name: "VidxVision", targets: ["VidxVision"]),
        .library(name: "VidxQuantization", targets: ["VidxQuantization"]),
        .library(name: "VidxHCQ", targets: ["VidxHCQ"]),
        .library(name: "VidxIndex", targets: ["VidxIndex"]),
        .library(name: "VidxSearch", targets: ["VidxSearch"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
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

        // Shared plumbing: atomic files, progress, exit codes, safetensors files, hashing.
        .target(name: "VidxCore", dependencies: [.product(name: "Crypto", package: "swift-crypto")],
                path: "Sources/VidxCore"),
        // HCQ's product quantizer: layout, unit-norm codebooks, encoding, reconstruction,
        // lookup tables, the codebook file. Where the encoder, the index and search meet.
        .target(name: "VidxQuantization", dependencies: ["VidxCore"], path: "Sources/VidxQuantization"),
        // Dense math on OpenBLAS: matrices, layers, attention. The only module that imports it.
        .target(name: "VidxNumerics", dependencies: ["COpenBLAS"], path: "Sources/VidxNumerics"),
        // Image CNNs from vidx-cnn weights files (Schemas/cnn-weights.md): the appearance expert.
        .target(name: "VidxVision", dependencies: ["VidxCore", "VidxNumerics"], path: "Sources/VidxVision"),
        // Stage 3 library: HCQ model bundles and the video encoder (embeddings, PQ codes).
        .target(name: "VidxHCQ", dependencies: ["VidxCore", "VidxQuantization", "VidxNumerics"], path: "Sources/VidxHCQ"),
        // Stage 4 library: the index shard format (Schemas/index-shard.md), generations, verification.
        .target(name: "VidxIndex", dependencies: ["VidxCore", "VidxQuantization"], path: "Sources/VidxIndex"),
        // Query side: lookup tables, full and coarse-to-fine scans over a generation.
        .target(name: "VidxSearch", dependencies: ["VidxIndex", "VidxQuantization", "CVidxScan"], path: "Sources/VidxSearch"),
        // The scan's inner loop in C: 8 queries per 32-byte table read, AVX2 chosen at run time.
        .target(name: "CVidxScan", path: "Sources/CVidxScan", cSettings: [.unsafeFlags(["-O3"])]),
        // Built-in experts: streaming audio (log-mel statistics) and motion (frame differences) features.
        .target(name: "VidxExperts", dependencies: ["VidxNumerics", "VidxCore"], path: "Sources/VidxExperts"),
        // Stage 2 library: one decode per video fanned out to every expert, a unit at a time.
        .target(name: "VidxExtract", dependencies: ["VidxDecode", "VidxExperts", "VidxVision", "VidxCore"],
                path: "Sources/VidxExtract"),
        // Stage 1 library: probe, sample frames and audio. The only module that imports FFmpeg.
        .target(name: "VidxDecode", dependencies: ["VidxCore", "CFFmpeg", "CFFmpegShim"],
                path: "Sources/VidxDecode"),

        .executableTarget(
            name: "vidx-decode",
            dependencies: ["VidxDecode", "VidxCore",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/vidx-decode"
        ),

        .executableTarget(
            name: "vidx-encode",
            dependencies: ["VidxHCQ", "VidxCore",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/vidx-encode"
        ),

        // Measurements for the benchmark scripts (not a pipeline stage).
        .executableTarget(name: "vidx-bench", dependencies: ["VidxNumerics", "VidxVision", "VidxCore"],
                          path: "Sources/vidx-bench"),

        .executableTarget(
            name: "vidx-shard",
            dependencies: ["VidxIndex", "VidxHCQ", "VidxCore",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/vidx-shard"
        ),
        .executableTarget(
            name: "vidx-verify",
            dependencies: ["VidxIndex", "VidxCore", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/vidx-verify"
        ),
        .executableTarget(
            name: "vidx-search",
            dependencies: ["VidxSearch", "VidxIndex", "VidxCore",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/vidx-search"
        ),

        .executableTarget(
            name: "vidx-extract",
            dependencies: ["VidxExtract", "VidxHCQ", "VidxNumerics", "VidxCore",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/vidx-extract"
        ),
        .executableTarget(
            name: "vidx-import-features",
            dependencies: ["VidxExtract", "VidxHCQ", "VidxCore",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/vidx-import-features"
        ),

        .testTarget(name: "VidxCoreTests", dependencies: ["VidxCore", "VidxTestSupport"], path: "Tests/VidxCoreTests"),
        .testTarget(name: "VidxNumericsTests", dependencies: ["VidxNumerics"], path: "Tests/VidxNumericsTests"),
        .testTarget(name: "VidxVisionTests", dependencies: ["VidxVision", "VidxCore", "VidxNumerics", "VidxTestSupport"],
                    path: "Tests/VidxVisionTests"),
        // Shared by the test targets: running the Python tools and the built executables.
        .target(name: "VidxTestSupport", path: "Tests/VidxTestSupport"),
        .testTarget(name: "VidxHCQTests", dependencies: ["VidxHCQ", "VidxCore", "VidxNumerics", "vidx-encode", "VidxTestSupport"],
                    path: "Tests/VidxHCQTests"),
        .testTarget(name: "VidxQuantizationTests", dependencies: ["VidxQuantization", "VidxCore", "VidxTestSupport"],
                    path: "Tests/VidxQuantizationTests"),
        .testTarget(name: "VidxIndexTests", dependencies: ["VidxIndex", "VidxCore", "VidxTestSupport"], path: "Tests/VidxIndexTests"),
        .testTarget(name: "VidxSearchTests",
                    dependencies: ["VidxSearch", "CVidxScan", "VidxIndex", "VidxHCQ", "VidxCore", "VidxTestSupport",
                                   "vidx-shard", "vidx-verify", "vidx-search"],
                    path: "Tests/VidxSearchTests"),
        .testTarget(name: "VidxExpertsTests", dependencies: ["VidxExperts", "VidxCore", "VidxTestSupport"],
                    path: "Tests/VidxExpertsTests"),
        .testTarget(name: "VidxExtractTests",
                    dependencies: ["VidxExtract", "VidxCore", "VidxTestSupport", "vidx-extract", "vidx-import-features",
                                   "vidx-encode", "vidx-shard", "vidx-search"],
                    path: "Tests/VidxExtractTests"),
        .testTarget(name: "VidxDecodeTests", dependencies: ["VidxDecode", "VidxCore", "vidx-decode"],
                    path: "Tests/VidxDecodeTests"),
    ],
    swiftLanguageModes: [.v6]
)
