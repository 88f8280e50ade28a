import Foundation
import Testing
import VidxCore
import VidxTestSupport
@testable import VidxPipeline

/// Debian's prometheus-node-exporter, started on a loopback port with only its textfile
/// collector, pointed at a metrics directory; stopped by pid.
final class NodeExporter {
    static let binary = "/usr/bin/prometheus-node-exporter"
    let process = Process()
    let port: Int
    let log: String

    init(textfileDirectory: String, log: String) throws {
        port = try Self.freePort()
        self.log = log
        FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = ["--web.listen-address=127.0.0.1:\(port)", "--collector.disable-defaults",
                             "--collector.textfile", "--collector.textfile.directory=\(textfileDirectory)"]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    /// A port the kernel just gave out on 127.0.0.1 (closed again before the exporter binds it).
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard ok else { throw TestDataError(message: "cannot get a free loopback port: errno \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// GET /metrics, waiting up to `seconds` for the exporter to listen.
    func scrape(within seconds: Double = 20) throws -> String {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            let r = try runCommand("curl", ["-sf", "--max-time", "5", "http://127.0.0.1:\(port)/metrics"])
            if r.status == 0 { return r.stdout }
            guard process.isRunning, Date() < deadline else {
                let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                throw TestDataError(message: "node_exporter did not answer on 127.0.0.1:\(port) within \(seconds) s (curl status \(r.status)); its log:\n\(output)")
            }
            usleep(200_000)
        }
    }

    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning && Date() < deadline { usleep(50_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// The sample lines of `text` for metric `name` (`name{labels} value` or `name value`).
    static func samples(_ text: String, _ name: String) -> [String: Double] {
        var out: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: " ")
            guard parts.count == 2, let value = Double(parts[1]) else { continue }
            let series = String(parts[0])
            guard series == name || series.hasPrefix(name + "{") else { continue }
            out[String(series.dropFirst(name.count))] = value
        }
        return out
    }
}

@Suite("Metrics read by the real consumer: Debian's prometheus-node-exporter", .serialized)
struct MetricsExporterTests {
    init() throws {
        try #require(Models.ready, "make models could not build models/: \(Models.problem ?? "")")
        try #require(FileManager.default.isExecutableFile(atPath: NodeExporter.binary),
                     "\(NodeExporter.binary) is missing: make setup installs prometheus-node-exporter")
    }

    @Test("the textfile collector takes the run's series without a scrape error; a failed run keeps the last success time")
    func textfileCollector() throws {
        let f = try PipelineFixture("pipeline-metrics")
        let metrics = f.root + "/metrics"
        let first = try f.run(deletions: true, metrics: metrics + "/vidx.prom")
        #expect(first.status == 3, "\(first.stderr)")
        let exporter = try NodeExporter(textfileDirectory: metrics, log: f.root + "/node-exporter.log")
        defer { exporter.stop() }

        let text = try exporter.scrape()
        #expect(NodeExporter.samples(text, "node_textfile_scrape_error") == ["": 0], "\(text)")
        #expect(NodeExporter.samples(text, "vidx_last_run_exit_status") == ["": 3])
        #expect(NodeExporter.samples(text, "vidx_last_run_success") == ["": 1])
        #expect(NodeExporter.samples(text, "vidx_quarantine_videos") == ["": 1])
        #expect(NodeExporter.samples(text, "vidx_live_generation") == ["": 1])
        #expect(NodeExporter.samples(text, "vidx_live_videos") == ["": 3])
        #expect(NodeExporter.samples(text, "vidx_last_run_videos") == [#"{status="failed"}"#: 1, #"{status="ok"}"#: 3, #"{status="partial"}"#: 0])
        #expect(NodeExporter.samples(text, "vidx_last_run_failed_videos")[#"{class="corrupt"}"#] == 1)
        #expect(Set(NodeExporter.samples(text, "vidx_last_run_stage_seconds").keys)
                == Set(["plan", "extract", "encode", "publish"].map { #"{stage="\#($0)"}"# }))
        let success = try #require(NodeExporter.samples(text, "vidx_last_success_timestamp_seconds")[""])
        #expect(abs(success - Date().timeIntervalSince1970) < 600)
        // The textfile collector also reports the file's modification time: the file is there.
        #expect(NodeExporter.samples(text, "node_textfile_mtime_seconds")[#"{file="\#(metrics)/vidx.prom"}"#] != nil
                || NodeExporter.samples(text, "node_textfile_mtime_seconds")[#"{file="vidx.prom"}"#] != nil, "\(text)")

        // A run that fails (it would delete two of three live videos, over max_shrink 0.5):
        // exit 1, the result series say so, the last success time stays.
        for name in ["a/one.mp4", "a/two.mp4"] { try FileManager.default.removeItem(atPath: f.corpus + "/" + name) }
        sleep(1)
        let failed = try f.run(deletions: true, metrics: metrics + "/vidx.prom")
        #expect(failed.status == 1, "\(failed.stderr)")
        let after = try exporter.scrape()
        #expect(NodeExporter.samples(after, "node_textfile_scrape_error") == ["": 0])
        #expect(NodeExporter.samples(after, "vidx_last_run_exit_status") == ["": 1])
        #expect(NodeExporter.samples(after, "vidx_last_run_success") == ["": 0])
        #expect(NodeExporter.samples(after, "vidx_last_success_timestamp_seconds") == ["": success])
        #expect(NodeExporter.samples(after, "vidx_live_generation") == ["": 1])
        #expect(try #require(NodeExporter.samples(after, "vidx_last_run_timestamp_seconds")[""]) > success)
    }
}
