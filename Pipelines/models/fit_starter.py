#!/usr/bin/env python3
"""The starter bundle's codebooks, fitted on generated sample clips (part of `make models`).

usage: fit_starter.py --bin BIN --source DIR --cnn FILE --out DIR --workdir DIR [--clips 320]

The untrained starter (make_starter.py, written to --source) has random codebooks. This
generates --clips short clips with FFmpeg's test sources (testsrc2, SMPTE bars, Mandelbrot,
Game of Life, cellular automata, ... each with its own hue, brightness and tone; every
fifth without sound), extracts their features with vidx-extract, encodes them with
vidx-encode --embeddings, and fits every level's codebooks with vidx-fit-codebooks (seed
20221, 25 iterations). The result, --out, is the starter bundle the demo and the tests use:
the same weights, codebooks fitted on what the built-in experts make of such clips, and a
README saying so. Deterministic for a machine: the same clips, features and fit on every
run. Skips the work when --out is already the fit of --source with these settings.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bundle_tools  # noqa: E402
import safetensors_np  # noqa: E402

STAMP_VERSION = 1
SEED = 20221
ITERATIONS = 25
UNIT = 32

SOURCES = [
    "testsrc2=size=160x120:rate=10",
    "smptebars=size=160x120:rate=10",
    "rgbtestsrc=size=160x120:rate=10",
    "mandelbrot=size=160x120:rate=10:start_scale={scale}",
    "life=size=160x120:rate=10:seed={seed}:mold=10",
    "cellauto=size=160x120:rate=10:seed={seed}:rule={rule}",
    "testsrc=size=160x120:rate=10",
    "yuvtestsrc=size=160x120:rate=10",
]


def clip_args(i):
    """FFmpeg arguments for clip i: a source, a hue, a brightness, a tone or silence."""
    src = SOURCES[i % len(SOURCES)].format(scale=1 + (i % 7), seed=1000 + i, rule=18 + 2 * (i % 50))
    hue = (i * 47) % 360
    bright = ((i * 13) % 9 - 4) / 20
    args = ["-f", "lavfi", "-i", src]
    audio = i % 5 != 4
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency={180 + (i * 37) % 1800}:duration=2"]
    args += ["-t", "2", "-vf", f"hue=h={hue},eq=brightness={bright:.2f},format=yuv420p",
             "-c:v", "libx264", "-preset", "veryfast", "-g", "10"]
    if audio:
        args += ["-c:a", "aac", "-shortest"]
    return args


def run(cmd, what):
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if proc.returncode not in (0, 3):
        sys.exit(f"fit_starter: {what} failed with status {proc.returncode}:\n{proc.stderr[-2000:]}")
    return proc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--cnn", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--clips", type=int, default=320)
    a = ap.parse_args()
    source_fp = bundle_tools.fingerprint(a.source)
    wanted = {"version": STAMP_VERSION, "source": source_fp, "clips": a.clips, "seed": SEED, "iterations": ITERATIONS}
    stamp = os.path.join(a.out, "fit.json")
    if os.path.exists(stamp) and json.load(open(stamp)) == wanted:
        print(f"fit_starter: {a.out} is up to date ({bundle_tools.fingerprint(a.out)})")
        return

    clips = os.path.join(a.workdir, "clips")
    os.makedirs(clips, exist_ok=True)
    print(f"fit_starter: {a.clips} sample clips for the starter's codebooks...", flush=True)
    paths = []
    for i in range(a.clips):
        path = os.path.join(clips, f"clip-{i:04d}.mp4")
        args = clip_args(i)
        sidecar = path + ".args"
        if not (os.path.exists(path) and os.path.exists(sidecar) and open(sidecar).read() == " ".join(args)):
            run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y"] + args + [path], f"ffmpeg (clip {i})")
            with open(sidecar, "w") as f:
                f.write(" ".join(args))
        paths.append(path)

    units = os.path.join(a.workdir, "units")
    shutil.rmtree(units, ignore_errors=True)
    os.makedirs(units)
    codes = []
    for u, start in enumerate(range(0, len(paths), UNIT)):
        name = os.path.join(units, f"u{u:03d}")
        with open(name + ".jsonl", "w") as f:
            for p in paths[start:start + UNIT]:
                f.write(json.dumps({"id": os.path.basename(p), "path": os.path.abspath(p)}) + "\n")
        run([os.path.join(a.bin, "vidx-extract"), "--bundle", a.source, "--unit", name + ".jsonl",
             "--out", name + ".features.safetensors", "--cnn", a.cnn], f"vidx-extract ({name})")
        run([os.path.join(a.bin, "vidx-encode"), "--bundle", a.source, "--features", name + ".features.safetensors",
             "--embeddings", "--out", name + ".codes.safetensors"], f"vidx-encode ({name})")
        codes.append(name + ".codes.safetensors")
        print(f"\r  {min(len(paths), start + UNIT)}/{len(paths)} clips extracted and encoded", end="", flush=True)
    print("", flush=True)

    fitted = a.out + ".fitting"
    shutil.rmtree(fitted, ignore_errors=True)
    proc = run([os.path.join(a.bin, "vidx-fit-codebooks"), "--bundle", a.source, "--embeddings"] + codes
               + ["--out", fitted, "--name", "starter", "--seed", str(SEED), "--iterations", str(ITERATIONS)],
               "vidx-fit-codebooks")
    print(proc.stdout.strip())
    cfg = json.load(open(os.path.join(fitted, "bundle.json")))
    record = cfg["codebooks"]
    fp = bundle_tools.fingerprint(fitted)
    with open(os.path.join(fitted, "README.md"), "w") as f:
        f.write(README.format(videos=record["sample"]["videos"], clips=a.clips, seed=SEED, iterations=ITERATIONS,
                              source=source_fp, fingerprint=fp,
                              objectives=", ".join(f"{lv['objective']:.3f}" for lv in record["levels"])))
    with open(os.path.join(fitted, "fit.json"), "w") as f:
        json.dump(wanted, f, indent=2, sort_keys=True)
        f.write("\n")
    # Swap the bundle in: the old one out of the way first, so a crash leaves one of them.
    old = a.out + ".old"
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(a.out):
        os.rename(a.out, old)
    os.rename(fitted, a.out)
    shutil.rmtree(old, ignore_errors=True)
    print(f"fit_starter: {a.out} ({fp})")


README = """# Starter model bundle (untrained encoder, codebooks fitted on sample clips)

This bundle lets the pipeline run end to end on the built-in experts before a trained
model exists. **Its transformer, projections and GhostVLAD are untrained: seeded random
weights** (`Pipelines/models/make_starter.py`, the bundle {source}).
Its **codebooks are fitted** (`Pipelines/models/fit_starter.py`, run by `make models`): on
the embeddings of {videos} of {clips} generated sample clips (FFmpeg test sources such as
testsrc2, SMPTE bars, Mandelbrot and the Game of Life, each with its own hue, brightness and
tone), extracted with the built-in experts and encoded by this encoder, by
`vidx-fit-codebooks` (spherical k-means, seed {seed}, {iterations} iterations; mean cosine
per level: {objectives}). So the demo's codes use codewords where such content lands,
and `bundle.json`'s `codebooks` records how they were fitted.

- The codes are deterministic (same input, same bytes) but carry **no retrieval quality**:
  the encoder is untrained, so text-to-video search over them is no better than chance.
- Real quality comes from a trained HCQ checkpoint exported with
  `Pipelines/models/export_hcq.py` (see Documentation/HCQ-inference.md); its codebooks can
  be refitted on your corpus the same way (Documentation/Codebooks.md).

| expert | width | type id | timing | extractor |
|---|---|---|---|---|
| appearance | 1280 | 5 | windowed | `builtin:appearance/efficientnet-lite0@1` |
| audio | 128 | 2 | windowed | `builtin:audio/logmel64-stats@1` |
| motion | 64 | 1 | windowed | `builtin:motion/framediff-8x8@1` |

T = 30 tokens per expert, 4 layers, hidden 512, 4 heads, FFN 3072,
7 GhostVLAD clusters, PQ M = 32, K = 256. Fingerprint: `{fingerprint}`.
"""

if __name__ == "__main__":
    main()
