import Foundation
import Prometheus
import VidxCore

/// The run's metrics as a Prometheus textfile, for node_exporter's textfile collector
/// (`--collector.textfile.directory`): written to a temporary name and renamed, no
/// timestamps in the file, one `vidx_` prefix, base units, no per-video labels.
///
/// Series (gauges; each run rewrites the file):
///
///     vidx_last_success_timestamp_seconds    the end of the last run that did not fail
///                                            (exit status 0 or 3); alert when it is older
///                                            than two run intervals
///     vidx_last_run_timestamp_seconds        the end of the last run
///     vidx_last_run_exit_status              its exit status (0, 3 or 1)
///     vidx_last_run_success                  1 when it did not fail, else 0
///     vidx_last_run_duration_seconds         its wall clock
///     vidx_last_run_stage_seconds{stage}     plan, extract, encode, publish
///     vidx_last_run_videos{status}           ok, partial, failed
///     vidx_last_run_failed_videos{class}     failed videos per failure class
///     vidx_last_run_units{state}             planned, done, unfinished
///     vidx_quarantine_videos                 the quarantine's size
///     vidx_live_generation                   the live generation's number
///     vidx_live_videos                       its live videos
public enum PipelineMetrics {
    /// The file under `state` that keeps the last success time across failed runs.
    static let lastSuccessFile = "last-success"

    public static func write(report: RunReport, to path: String, state: String) throws {
        let registry = PrometheusCollectorRegistry()
        // Milliseconds, so that the time kept in `state` reads back as the same value.
        let now = (Date().timeIntervalSince1970 * 1000).rounded() / 1000
        let succeeded = report.exitStatus != StageExit.failure
        let keep = state + "/" + lastSuccessFile
        var lastSuccess = (try? String(contentsOfFile: keep, encoding: .utf8)).flatMap { Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        if succeeded {
            lastSuccess = now
            try AtomicFile.write(String(format: "%.3f\n", now), to: keep)
        }
        func gauge(_ name: String, _ help: String, _ value: Double, _ labels: [(String, String)] = []) {
            registry.makeGauge(name: name, labels: labels, help: help).set(value)
        }
        if let lastSuccess {
            gauge("vidx_last_success_timestamp_seconds", "End of the last pipeline run that did not fail (exit 0 or 3).", lastSuccess)
        }
        gauge("vidx_last_run_timestamp_seconds", "End of the last pipeline run.", now)
        gauge("vidx_last_run_exit_status", "Exit status of the last run: 0 all indexed, 3 with failures, 1 failed.", Double(report.exitStatus))
        gauge("vidx_last_run_success", "1 when the last run did not fail, else 0.", succeeded ? 1 : 0)
        gauge("vidx_last_run_duration_seconds", "Wall clock of the last run, plan to report.", report.seconds.total)
        let stages = [("plan", report.seconds.plan), ("extract", report.seconds.extract),
                      ("encode", report.seconds.encode), ("publish", report.seconds.publish)]
        for (stage, seconds) in stages {
            gauge("vidx_last_run_stage_seconds", "Seconds per stage in the last run (extract and encode summed over units).",
                  seconds, [("stage", stage)])
        }
        for (status, n) in [("ok", report.videos.ok), ("partial", report.videos.partial), ("failed", report.videos.failed)] {
            gauge("vidx_last_run_videos", "Videos of the last run's units by status.", Double(n), [("status", status)])
        }
        for cls in FailureClass.pipeline {
            gauge("vidx_last_run_failed_videos", "Failed videos of the last run by failure class.",
                  Double(report.videos.failedByClass[cls.rawValue] ?? 0), [("class", cls.rawValue)])
        }
        for (state, n) in [("planned", report.units.planned), ("done", report.units.done),
                           ("unfinished", report.units.unfinished.count)] {
            gauge("vidx_last_run_units", "Work units of the last run's plan.", Double(n), [("state", state)])
        }
        gauge("vidx_quarantine_videos", "Videos in the quarantine.", Double(report.quarantine.size))
        if let live = report.live {
            gauge("vidx_live_generation", "Number of the live index generation.", Double(Int(live.generation.dropFirst()) ?? 0))
            gauge("vidx_live_videos", "Live videos of the live index generation.", Double(live.videos))
        }
        try AtomicFile.makeDirectory(AtomicFile.directory(of: WorkLayout.absolute(path)))
        try AtomicFile.write(Data(registry.emitToBuffer()), to: path)
    }
}
