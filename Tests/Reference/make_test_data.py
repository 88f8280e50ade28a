#!/usr/bin/env python3
"""Seeded random bundles, features files and reference outputs for the Swift parity tests.

    make_test_data.py OUT_DIR [--seed S] [--only msrvtt|small]

Writes, for each of two configurations,
    OUT_DIR/<name>/bundle/{bundle.json, weights.safetensors}   seeded random weights
    OUT_DIR/<name>/features.safetensors                        12 videos (Schemas/features.md)
    OUT_DIR/<name>/reference.npz                               hcq_reference.py's outputs
    OUT_DIR/<name>/cases.json                                  what each video exercises
- msrvtt: HCQ's MSRVTT shapes (7 experts, widths 512/300/2048/1024/2208/300/128, T 30,
  hidden 512, 4 layers, 4 heads, FFN 3072, 7 clusters, M 32, K 256);
- small: 3 experts (appearance 40 windowed, audio 8 windowed, face 24 untimed), T 6,
  10 positions (so late windows clamp), hidden 64, 2 layers, 4 heads, FFN 128,
  3 clusters (4 levels, to catch a hard-coded 7), M 8, K 16.
The videos cover ragged row counts, more rows than T (subset), fewer, exactly T, a missing
expert (absent tensors), a zero-row expert, untimed experts, a matrix whose first value is
NaN (missing), an infinity elsewhere (refused), a failed video, a wrong width, a partial
video, windows past the last position, and a video with only untimed experts.
Deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
sys.path.insert(0, os.path.normpath(os.path.join(_HERE, "..", "..", "Pipelines", "models")))

import bundle_tools  # noqa: E402
import hcq_reference  # noqa: E402
import safetensors_np  # noqa: E402


def _config(name, experts, *, T, max_pos, hidden, layers, heads, ffn, clusters, M, K, seed):
    return {
        "format": "vidx-hcq-bundle", "format_version": 1, "name": name,
        "experts": [{"name": n, "width": w, "type_id": t, "timing": tm, "extractor": f"imported:{n}"}
                    for n, w, t, tm in sorted(experts)],
        "tokens_per_expert": T, "max_positions": max_pos, "type_vocab_size": 19,
        "hidden_size": hidden, "layers": layers, "heads": heads, "ffn_size": ffn,
        "layer_norm_eps": 1e-12, "clusters": clusters, "batch_norm_eps": 1e-5,
        "pq": {"subspaces": M, "codewords": K},
        "provenance": {"source": "random-test", "trained": False, "seed": seed,
                       "notes": "Tests/Reference/make_test_data.py: seeded random weights for parity tests"},
    }


def configs(seed: int) -> dict:
    return {
        "msrvtt": _config("msrvtt-random", [
            ("face", 512, 3, "none"), ("ocr", 300, 7, "none"), ("rgb", 2048, 5, "windowed"),
            ("s3d", 1024, 1, "windowed"), ("scene", 2208, 9, "windowed"), ("speech", 300, 6, "none"),
            ("vggish", 128, 2, "windowed")],
            T=30, max_pos=32, hidden=512, layers=4, heads=4, ffn=3072, clusters=7, M=32, K=256, seed=seed),
        "small": _config("small-random", [
            ("appearance", 40, 5, "windowed"), ("audio", 8, 2, "windowed"), ("face", 24, 3, "none")],
            T=6, max_pos=10, hidden=64, layers=2, heads=4, ffn=128, clusters=3, M=8, K=16, seed=seed + 1),
    }


def _safe_times(starts: np.ndarray, length: float) -> np.ndarray:
    """(n, 2) float32 windows whose midpoint + 2 is not within 1e-3 of an integer, so float32
    and float64 arithmetic agree on floor()."""
    t = np.stack([starts, starts + length], axis=1).astype(np.float32)
    for _ in range(10):
        mid = (t[:, 0].astype(np.float64) + t[:, 1]) / 2 + 2
        bad = np.abs(mid - np.round(mid)) < 1e-3
        if not bad.any():
            break
        t[bad] += np.float32(0.01)
    return t


def _rows(r: np.random.RandomState, expert: dict, n: int, *, late: bool = False):
    """n feature rows of the expert's width, with times as its extractor would give them."""
    X = r.standard_normal((n, expert["width"])).astype(np.float32)
    if expert["timing"] == "none":
        times = np.full((n, 2), -1.0, dtype=np.float32)
    elif expert["name"] in ("rgb", "appearance"):
        step = 0.2 if expert["name"] == "rgb" else 0.5
        first = 40.0 if late else 0.0
        times = _safe_times(first + step * np.arange(n), step)
    else:
        lo, hi = (35.0, 60.0) if late else (0.0, 40.0)
        times = _safe_times(np.sort(r.uniform(lo, hi, n)), 1.0)
    return X, times


def make_videos(cfg: dict, r: np.random.RandomState, prefix: str):
    """(video records, tensors, case descriptions) for the 12 test videos of one configuration."""
    T = cfg["tokens_per_expert"]
    ex = {e["name"]: e for e in cfg["experts"]}
    names = [e["name"] for e in cfg["experts"]]
    timed = [n for n in names if ex[n]["timing"] == "windowed"]
    untimed = [n for n in names if ex[n]["timing"] == "none"]
    videos, tensors, cases = [], {}, []

    def add(case, rows: dict, status="ok", error=None, edit=None, ok=True, late=False):
        i = len(videos)
        vid = f"{prefix}-{i:02d}-{case}"
        videos.append({"id": vid, "content_hash": hashlib.sha256(vid.encode()).hexdigest(),
                       "status": status, "error": error})
        for n, count in rows.items():
            X, tm = _rows(r, ex[n], count, late=late)
            if edit and n in edit:
                X, tm = edit[n](X, tm)
            tensors[f"v{i}/{n}/features"] = X
            tensors[f"v{i}/{n}/times"] = tm
        cases.append({"video": i, "id": vid, "case": case, "rows": rows, "expect_ok": ok})

    add("ragged", {n: int(r.randint(1, T)) for n in names})
    add("more-than-T", {n: T + 1 + int(r.randint(0, 2 * T)) for n in names})
    add("missing-expert", {n: (T if j % 2 else int(r.randint(1, T + 5))) for j, n in enumerate(names) if n != timed[0]})
    add("zero-rows", {n: (0 if n == timed[-1] else int(r.randint(1, 2 * T))) for n in names})

    def nan_first(X, tm):
        X = X.copy()
        X[0, 0] = np.nan
        return X, tm
    add("nan-first-value", {n: int(r.randint(2, 2 * T)) for n in names}, edit={timed[0]: nan_first})
    add("failed", {}, status="failed", error={"class": "corrupt", "message": "invalid data found when processing input"},
        ok=False)

    def wrong_width(X, tm):
        return np.concatenate([X, np.ones((X.shape[0], 3), np.float32)], axis=1), tm
    add("wrong-width", {n: int(r.randint(1, T)) for n in names}, edit={names[-1]: wrong_width}, ok=False)

    def inf_inside(X, tm):
        X = X.copy()
        X[min(1, X.shape[0] - 1), min(2, X.shape[1] - 1)] = np.inf
        return X, tm
    add("infinity-inside", {n: int(r.randint(2, T)) for n in names}, edit={untimed[0]: inf_inside}, ok=False)
    add("partial", {n: 1 for n in names[:2]}, status="partial",
        error={"class": "corrupt", "message": "end of file after 3.2 s"})
    add("late-windows", {n: int(r.randint(T // 2, 2 * T)) for n in names}, late=True)
    add("untimed-only", {n: int(r.randint(1, 2 * T)) for n in untimed})
    add("exactly-T", {n: T for n in names})
    return videos, tensors, cases


def build(out_dir: str, seed: int, only: str | None = None) -> None:
    for k, (name, cfg) in enumerate(sorted(configs(seed).items())):
        if only and name != only:
            continue
        d = os.path.join(out_dir, name)
        os.makedirs(d, exist_ok=True)
        fp = bundle_tools.write_bundle(os.path.join(d, "bundle"), cfg, bundle_tools.random_bundle(cfg, cfg["provenance"]["seed"]))
        r = np.random.RandomState(seed * 1000 + k)
        videos, tensors, cases = make_videos(cfg, r, name)
        meta = {
            "format": "vidx-features", "format_version": "1", "bundle_fingerprint": fp,
            "extractors": json.dumps({e["name"]: e["extractor"] for e in cfg["experts"]},
                                     sort_keys=True, separators=(",", ":"), ensure_ascii=False),
            "videos": json.dumps(videos, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
        }
        features = os.path.join(d, "features.safetensors")
        safetensors_np.save(features, tensors, meta)
        arrays, _ = hcq_reference.encode_features(os.path.join(d, "bundle"), features)
        expected = [int(c["expect_ok"]) for c in cases]
        if arrays["ok"].tolist() != expected:
            raise SystemExit(f"{name}: the reference encoded {arrays['ok'].tolist()}, the cases expect {expected}")
        hcq_reference.save_npz(os.path.join(d, "reference.npz"), arrays)
        safetensors_np.atomic_write(os.path.join(d, "cases.json"),
                                    (json.dumps(cases, indent=2, sort_keys=True) + "\n").encode())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="make_test_data.py", description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--only", choices=["msrvtt", "small"], help="build one configuration only")
    args = p.parse_args(argv)
    build(args.out_dir, args.seed, args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
