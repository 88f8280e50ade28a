#!/usr/bin/env python3
"""Decode benchmark: vidx-decode against the ffmpeg command line, in one run.

Generates (once, cached in the work directory) a 60 s 1280x720 25 fps H.264 clip with
x264's defaults (medium preset, B-frames, key frame interval 250) at about 4 Mbit/s;
film-grain-like noise keeps it from compressing to nothing. Then times, several runs
each:

  reference  ffmpeg -threads 1 -i CLIP -vf fps=1,scale=224:224 -pix_fmt rgb24 -f rawvideo -
  default    vidx-decode --threads 1 --sample fps:1 --size 224 CLIP
  fast       vidx-decode --threads 1 --sample fps:1 --size 224 --fast CLIP
  keyframes  vidx-decode --threads 1 --sample keyframes --size 224 CLIP

The runs are interleaved (ref, default, fast, keyframes, ref, ...) so that noise from
the machine (another process, frequency changes) falls on all commands alike. Each
child's wall time and its own peak resident memory (wait4's rusage) are recorded; the
table shows medians and the speed-up against the reference median.

Targets (issue 2): default no slower than ffmpeg, fast at least 1.5x faster, keyframes
at least 5x faster. This is a report, not a test: it exits 0 when a target is missed
unless --strict is given, and 1 when a command fails.
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

CLIP_ARGS = [
    "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25:duration=60",
    "-vf", "noise=alls=12:allf=t",
    "-c:v", "libx264", "-preset", "medium", "-b:v", "4M", "-pix_fmt", "yuv420p",
]
TARGETS = {"default": 1.0, "fast": 1.5, "keyframes": 5.0}


def make_clip(workdir):
    return bench_common.make_clip(workdir, "bench-720p-60s.mp4", CLIP_ARGS, "60 s 1280x720 H.264")


def run_once(cmd):
    return bench_common.run_once(cmd, "bench-decode", "command")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vidx", required=True, help="path to the vidx-decode executable")
    ap.add_argument("--workdir", default="bench-out", help="where the clip is generated and kept")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per command")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args()

    clip = make_clip(args.workdir)
    vidx = [args.vidx, "--threads", "1", "--size", "224"]
    commands = {
        "ffmpeg": ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-threads", "1", "-i", clip,
                   "-vf", "fps=1,scale=224:224", "-pix_fmt", "rgb24", "-f", "rawvideo", "-"],
        "default": vidx + ["--sample", "fps:1", clip],
        "fast": vidx + ["--sample", "fps:1", "--fast", clip],
        "keyframes": vidx + ["--sample", "keyframes", clip],
    }
    ffmpeg_version = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}")
    print(f"{ffmpeg_version}")
    print(f"clip: {clip} ({os.path.getsize(clip) / 1e6:.1f} MB), {args.runs} interleaved runs each, 1 thread\n")

    for cmd in commands.values():   # warm-up: page cache, dynamic loader
        run_once(cmd)
    times = {name: [] for name in commands}
    memory = {name: 0.0 for name in commands}
    for _ in range(args.runs):
        for name, cmd in commands.items():
            seconds, rss = run_once(cmd)
            times[name].append(seconds)
            memory[name] = max(memory[name], rss)

    ref = statistics.median(times["ffmpeg"])
    print(f"{'command':<11} {'median s':>9} {'min s':>8} {'peak MiB':>9} {'speed-up':>9}  target")
    results, missed = {}, []
    for name in commands:
        med = statistics.median(times[name])
        speedup = ref / med
        target = TARGETS.get(name)
        verdict = ""
        if target is not None:
            ok = speedup >= target
            verdict = f">= {target:.1f}x  {'PASS' if ok else 'MISS'}"
            if not ok:
                missed.append(name)
        print(f"{name:<11} {med:>9.3f} {min(times[name]):>8.3f} {memory[name]:>9.1f} {speedup:>8.2f}x  {verdict}")
        results[name] = {"median_s": med, "min_s": min(times[name]), "runs_s": times[name],
                         "peak_rss_mib": memory[name], "speedup_vs_ffmpeg": speedup, "target": target}
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"clip": clip, "runs": args.runs, "cpu": cpu_model(), "ffmpeg": ffmpeg_version,
                       "results": results}, f, indent=2)
    if missed:
        print(f"\nmissed: {', '.join(missed)}")
        if args.strict:
            sys.exit(1)


if __name__ == "__main__":
    main()
