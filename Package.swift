// swift-tools-version:6.1
// The production indexer for text-to-video retrieval (HCQ). One folder per target;
// C only in C* targets; one thin executable per pipeline stage.
import PackageDescription

let package = Package(
    name: "vidx",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "vidx-decode", targets: ["vidx-decode"]),
        .library(name: "VidxDecode", targets: ["VidxDecode"]),
        .library(name: "VidxCore", targets: ["VidxCore"]),
        .library(name: "VidxNumerics", targets: ["VidxNumerics"]),
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
        // Dense math on OpenBLAS: matrices, layers, attention. The only module that imports it.
        .target(name: "VidxNumerics", dependencies: ["COpenBLAS"], path: "Sources/VidxNumerics"),
        // Stage 1 library: probe, sample frames and audio. The only module that imports FFmpeg.
        .target(name: "VidxDecode", dependencies: ["VidxCore", "CFFmpeg", "CFFmpegShim"],
                path: "Sources/VidxDecode"),

        .executableTarget(
            name: "vidx-decode",
            dependencies: ["VidxDecode", "VidxCore",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/vidx-decode"
        ),

        .testTarget(name: "VidxCoreTests", dependencies: ["VidxCore"], path: "Tests/VidxCoreTests"),
        .testTarget(name: "VidxNumericsTests", dependencies: ["VidxNumerics"], path: "Tests/VidxNumericsTests"),
        .testTarget(name: "VidxDecodeTests", dependencies: ["VidxDecode", "VidxCore", "vidx-decode"],
                    path: "Tests/VidxDecodeTests"),
    ],
    swiftLanguageModes: [.v6]
)
