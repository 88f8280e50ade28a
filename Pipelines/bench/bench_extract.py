#!/usr/bin/env python3
"""Extract benchmark: vidx-extract with every built-in expert against vidx-decode alone, in one run.

Generates (once, cached in the work directory) a 60 s 1280x720 25 fps H.264 clip with a
440 Hz AAC tone (x264's defaults: medium preset, B-frames, key frame interval 250, about
4 Mbit/s; film-grain-like noise keeps it from compressing to nothing) and a work unit
holding just that clip. Then times, interleaved (decode, extract, decode, ...) so that
noise from the machine falls on both alike:

  decode-only  vidx-decode --sample fps:4 --size 224 --fit crop --audio --audio-rate 16000
               --threads C CLIP
  extract      vidx-extract --bundle models/starter --unit UNIT --out OUT --workers 1
               (appearance, audio and motion: the starter bundle's three built-in experts)

where C is the core count: vidx-extract with one worker gives FFmpeg cores / 1 threads
and decodes exactly this way (VideoExtractor.decodeOptions: 4 fps, 224 x 224 centre
crop, 16 kHz mono audio); both decode the same frames and audio. vidx-decode without
--out writes nothing but its report, which goes to /dev/null; vidx-extract also hashes
the file (SHA-256, the unit gives no content_hash), loads the bundle and the CNN,
runs the experts and writes the features file and UNIT.stats.json. Each child's wall
time and peak resident memory come from wait4; the table shows medians. Per-expert
seconds are the medians of UNIT.stats.json's over the runs.

Then `vidx-bench cnn` measures the appearance CNN alone (batches of 16 generated
224 x 224 frames, as vidx-extract runs it) and sgemm's peak in the same process.

Targets (issue 5): extraction adds at most 50 % over decode-only time at the default
sampling (appearance at 1 fps), and the CNN reaches at least 40 % of sgemm's peak. This
is a report, not a test: it exits 0 when a target is missed unless --strict is given,
and 1 when a command fails. The machine's load average is printed before and after,
since the figures mean little on a busy machine.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common  # noqa: E402
from bench_common import cpu_model  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CLIP_ARGS = [
    "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25:duration=60",
    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=60",
    "-map", "0:v", "-map", "1:a",
    "-vf", "noise=alls=12:allf=t",
    "-c:v", "libx264", "-preset", "medium", "-b:v", "4M", "-pix_fmt", "yuv420p",
    "-c:a", "aac", "-b:a", "128k", "-shortest",
]
CLIP_NAME = "bench-720p-60s-audio.mp4"
OVERHEAD_TARGET = 0.50   # extract at most 1.5x decode-only
PEAK_TARGET = 0.40       # CNN at least 40 % of sgemm's peak


def make_clip(workdir):
    return bench_common.make_clip(workdir, CLIP_NAME, CLIP_ARGS, "60 s 1280x720 H.264 + AAC")


def make_unit(workdir, clip):
    """A one-video work unit (Schemas/work-unit.schema.json) beside the clip."""
    unit = os.path.join(workdir, "unit.jsonl")
    with open(unit, "w") as f:
        f.write(json.dumps({"id": "bench-720p-60s", "path": os.path.basename(clip)}) + "\n")
    return unit


def run_once(cmd, what):
    return bench_common.run_once(cmd, "bench-extract", what)


def load_average():
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1, 5, 15 min)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True, help="folder with vidx-extract, vidx-decode and vidx-bench")
    ap.add_argument("--workdir", default="bench-out/extract", help="where the clip, the unit and the outputs go")
    ap.add_argument("--bundle", default=os.path.join(ROOT, "models", "starter"), help="model bundle (make models)")
    ap.add_argument("--cnn", default=os.path.join(ROOT, "models", "efficientnet-lite0"),
                    help="EfficientNet-Lite0 folder (make models)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per command")
    ap.add_argument("--cnn-seconds", type=float, default=10, help="how long vidx-bench cnn runs batches")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")

    load_before = load_average()
    cores = os.cpu_count() or 1
    clip = make_clip(args.workdir)
    unit = make_unit(args.workdir, clip)
    out = os.path.join(args.workdir, "unit.features.safetensors")
    stats_path = os.path.join(args.workdir, "unit.stats.json")
    weights = os.path.join(args.cnn, "weights.safetensors")
    for needed in (os.path.join(args.bundle, "bundle.json"), weights):
        if not os.path.exists(needed):
            sys.exit(f"bench-extract: {needed} is missing (run make models)")
    bundle_experts = [e["name"] for e in json.load(open(os.path.join(args.bundle, "bundle.json")))["experts"]]

    commands = {
        "decode-only": [os.path.join(args.bin, "vidx-decode"), "--sample", "fps:4", "--size", "224", "--fit", "crop",
                        "--audio", "--audio-rate", "16000", "--threads", str(cores), clip],
        "extract": [os.path.join(args.bin, "vidx-extract"), "--bundle", args.bundle, "--unit", unit, "--out", out,
                    "--cnn", weights, "--workers", "1"],
    }
    ffmpeg_version = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    print(f"machine: {cores} cores, {cpu_model()}; load average {load_before}")
    print(ffmpeg_version)
    print(f"clip: {clip} ({os.path.getsize(clip) / 1e6:.1f} MB, 60 s 1280x720 25 fps H.264 + AAC), "
          f"{args.runs} interleaved runs each")
    print(f"both: 4 fps, 224 x 224 centre crop, 16 kHz mono audio, FFmpeg {cores} threads; "
          f"vidx-extract --workers 1 (experts on {cores} threads, each sgemm single-threaded), "
          f"experts {', '.join(bundle_experts)}\n")

    for name, cmd in commands.items():   # warm-up: page cache, dynamic loader
        run_once(cmd, name)
    times = {name: [] for name in commands}
    memory = {name: 0.0 for name in commands}
    video_stats = []
    for _ in range(args.runs):
        for name, cmd in commands.items():
            seconds, rss = run_once(cmd, name)
            times[name].append(seconds)
            memory[name] = max(memory[name], rss)
            if name == "extract":
                [video] = json.load(open(stats_path))
                if video["status"] != "ok":
                    sys.exit(f"bench-extract: the clip was not extracted: {video['status']} {video['error']}")
                video_stats.append(video)

    decode_s = statistics.median(times["decode-only"])
    extract_s = statistics.median(times["extract"])
    overhead = extract_s / decode_s - 1
    print(f"{'command':<12} {'median s':>9} {'min s':>8} {'peak MiB':>9}")
    for name in commands:
        print(f"{name:<12} {statistics.median(times[name]):>9.3f} {min(times[name]):>8.3f} {memory[name]:>9.1f}")
    ok_overhead = overhead <= OVERHEAD_TARGET
    print(f"overhead: extract / decode-only - 1 = {100 * overhead:+.1f} %   target <= {100 * OVERHEAD_TARGET:.0f} %   "
          f"{'PASS' if ok_overhead else 'MISS'}")

    # Where vidx-extract's time goes (UNIT.stats.json, medians over the runs).
    def med(key):
        return statistics.median(key(v) for v in video_stats)
    frames = video_stats[-1]["frames"]
    rows = video_stats[-1]["rows"]
    print(f"\nvidx-extract, per video (UNIT.stats.json, medians; {frames} frames sampled, "
          f"{video_stats[-1]['audio_seconds']:.1f} s of audio):")
    print(f"  {'decoding (outside experts, with hashing)':<42} {med(lambda v: v['decode_seconds']):7.3f} s")
    expert_medians = {}
    for expert in sorted(video_stats[-1]["expert_seconds"]):
        expert_medians[expert] = med(lambda v: v["expert_seconds"][expert])
        print(f"  {expert:<42} {expert_medians[expert]:7.3f} s   {rows.get(expert, 0)} rows")
    video_total = med(lambda v: v["total_seconds"])
    print(f"  {'video total':<42} {video_total:7.3f} s")
    print(f"  {'process start, loading, writing':<42} {extract_s - video_total:7.3f} s   (wall median - video total)")

    cnn_cmd = [os.path.join(args.bin, "vidx-bench"), "cnn", "--weights", args.cnn, "--batch", "16",
               "--threads", str(cores), "--seconds", str(args.cnn_seconds)]
    proc = subprocess.run(cnn_cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"bench-extract: vidx-bench cnn failed with status {proc.returncode}: {' '.join(cnn_cmd)}\n{proc.stderr}")
    cnn = json.loads(proc.stdout)
    fraction = cnn["gflops"] / cnn["sgemm_gflops"]
    ok_peak = fraction >= PEAK_TARGET
    print(f"\nCNN alone (vidx-bench cnn: {cnn['network']}, batches of {cnn['batch']}, {cnn['threads']} threads, "
          f"each sgemm single-threaded, {cnn['seconds']:.1f} s):")
    print(f"  {cnn['frames_per_s']:.1f} frames/s x {cnn['gflop_per_frame']:.3f} GFLOP/frame = {cnn['gflops']:.1f} GFLOP/s "
          f"= {100 * fraction:.1f} % of sgemm's peak {cnn['sgemm_gflops']:.1f} GFLOP/s   "
          f"target >= {100 * PEAK_TARGET:.0f} %   {'PASS' if ok_peak else 'MISS'}")
    load_after = load_average()
    print(f"\nload average after: {load_after}")

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"clip": clip, "runs": args.runs, "cpu": cpu_model(), "cores": cores, "ffmpeg": ffmpeg_version,
                       "load_before": load_before, "load_after": load_after,
                       "commands": {n: " ".join(c) for n, c in commands.items()},
                       "times_s": times, "peak_rss_mib": memory,
                       "decode_median_s": decode_s, "extract_median_s": extract_s, "overhead": overhead,
                       "overhead_target": OVERHEAD_TARGET, "expert_seconds": expert_medians,
                       "video_stats": video_stats, "cnn": cnn, "cnn_fraction_of_peak": fraction,
                       "cnn_target": PEAK_TARGET}, f, indent=2)
    missed = [name for name, ok in (("overhead", ok_overhead), ("cnn", ok_peak)) if not ok]
    if missed:
        print(f"missed: {', '.join(missed)}")
        if args.strict:
            sys.exit(1)


if __name__ == "__main__":
    main()
