import Foundation
import Testing
import VidxCore
import VidxTestSupport
@testable import VidxHCQ

extension Python {
    /// Converts an .npz file's arrays into a safetensors file Swift can read.
    static func npzToSafetensors(_ npz: String, _ out: String) throws {
        try call("npz_to_safetensors", npz, out)
    }
}

/// Test data made once per test process by the project's Python tools.
enum TestData {
    static let directory = makeTestDirectory("hcq")
    private static let lock = NSLock()
    nonisolated(unsafe) private static var done: Set<String> = []

    private static func once(_ key: String, _ make: () throws -> Void) throws {
        lock.lock(); defer { lock.unlock() }
        if done.contains(key) { return }
        try make()
        done.insert(key)
    }

    /// The authors' fixture exported to a bundle, its features as a features file, and
    /// its expected outputs as safetensors.
    static func fixture() throws -> (bundle: String, features: String, expected: String) {
        let dir = directory + "/fixture"
        try once("fixture") {
            let fx = Python.root + "/Tests/Fixtures/hcq-small"
            try Python.run(["Pipelines/models/export_hcq.py", fx + "/checkpoint.pth", dir + "/bundle",
                            "--experts", "face,ocr,rgb,s3d,scene,speech,vggish", "--tokens-per-expert", "6", "--heads", "4"])
            try Python.call("fixture_features", fx + "/features.npz", dir + "/features.safetensors")
            try Python.npzToSafetensors(fx + "/expected.npz", dir + "/expected.safetensors")
        }
        return (dir + "/bundle", dir + "/features.safetensors", dir + "/expected.safetensors")
    }

    /// Seeded random bundles and features (msrvtt and small) with reference outputs.
    static func random(_ name: String) throws -> (bundle: String, features: String, reference: String) {
        let dir = directory + "/random"
        try once("random") {
            try Python.run(["Tests/Reference/make_test_data.py", dir, "--seed", "5"])
            for n in ["msrvtt", "small"] {
                try Python.npzToSafetensors(dir + "/\(n)/reference.npz", dir + "/\(n)/reference.safetensors")
            }
        }
        return (dir + "/\(name)/bundle", dir + "/\(name)/features.safetensors", dir + "/\(name)/reference.safetensors")
    }
}

/// Reads every video of a features file into encoder inputs (nil for failed videos).
func loadVideos(_ path: String, config: BundleConfig) throws -> [VideoFeatures?] {
    let unit = try FeaturesFile(path: path)
    return try unit.videos.indices.map { i in
        if unit.videos[i].status == .failed { return nil }
        return VideoFeatures(experts: try unit.experts(of: i))
    }
}
