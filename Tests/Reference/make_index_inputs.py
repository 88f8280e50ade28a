"""Writes inputs for the shard stage's tests: a small random bundle and codes files.

usage: make_index_inputs.py OUT_DIR [--videos N] [--files F] [--seed S] [--embeddings]
                            [--prefix P] [--bundle-only] [--full-shape]

OUT_DIR/bundle/             a random bundle (hidden 64, M 8, K 16, 3 clusters: 4 levels; with
                            --full-shape HCQ's own: hidden 512, M 32, K 256, 7 clusters: 8 levels)
OUT_DIR/codes-NN.safetensors  F codes files (Schemas/codes.md) with N videos in all:
                            random codes; every 7th video status failed (zero codes);
                            external ids P-00000 ...; content hashes from the id and seed.
Deterministic for a given seed.
"""
import argparse
import hashlib
import json
import os
import sys

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.normpath(os.path.join(_HERE, "..", "..", "Pipelines", "models")))
sys.path.insert(0, _HERE)

import bundle_tools  # noqa: E402
import safetensors_np  # noqa: E402
from make_test_data import _config  # noqa: E402


def small_config(seed, full_shape=False):
    if full_shape:  # the index's shape at HCQ's sizes; the network itself stays small
        return _config("index-test-full", [("appearance", 12, 5, "windowed"), ("audio", 6, 2, "windowed")],
                       T=4, max_pos=8, hidden=512, layers=1, heads=4, ffn=64, clusters=7, M=32, K=256, seed=seed)
    return _config("index-test", [("appearance", 12, 5, "windowed"), ("audio", 6, 2, "windowed")],
                   T=4, max_pos=8, hidden=64, layers=1, heads=4, ffn=64, clusters=3, M=8, K=16, seed=seed)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--videos", type=int, default=200)
    ap.add_argument("--files", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--embeddings", action="store_true")
    ap.add_argument("--prefix", default="video")
    ap.add_argument("--bundle-only", action="store_true")
    ap.add_argument("--full-shape", action="store_true")
    a = ap.parse_args()
    cfg = small_config(a.seed, a.full_shape)
    bundle_dir = os.path.join(a.out, "bundle")
    if not os.path.exists(os.path.join(bundle_dir, "weights.safetensors")):
        bundle_tools.write_bundle(bundle_dir, cfg, bundle_tools.random_bundle(cfg, seed=a.seed))
    fp = bundle_tools.fingerprint(bundle_dir)
    if a.bundle_only:
        print(fp)
        return
    L, M, K, D = 1 + cfg["clusters"], cfg["pq"]["subspaces"], cfg["pq"]["codewords"], cfg["hidden_size"]
    rng = np.random.default_rng(a.seed + 100)
    ids = [f"{a.prefix}-{i:05d}" for i in range(a.videos)]
    for f in range(a.files):
        mine = ids[f::a.files]
        n = len(mine)
        codes = rng.integers(0, K, size=(n, L, M), dtype=np.uint8)
        emb = rng.standard_normal((n, L, D)).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=2, keepdims=True)
        videos = []
        for j, vid in enumerate(mine):
            failed = int(vid.rsplit("-", 1)[1]) % 7 == 6
            h = hashlib.sha256(f"{vid}/{a.seed}".encode()).hexdigest()
            if failed:
                codes[j] = 0
                emb[j] = 0
                videos.append({"id": vid, "content_hash": h, "status": "failed",
                               "error": {"class": "corrupt", "message": "test"}})
            else:
                videos.append({"id": vid, "content_hash": h, "status": "ok", "error": None})
        meta = {"format": "vidx-codes", "format_version": "1", "bundle_fingerprint": fp,
                "features_bundle_fingerprint": "", "levels": str(L), "subspaces": str(M), "codewords": str(K),
                "videos": json.dumps(videos, separators=(",", ":"))}
        tensors = {"codes": codes}
        if a.embeddings:
            tensors["embeddings"] = emb
        safetensors_np.save(os.path.join(a.out, f"codes-{f:02d}.safetensors"), tensors, meta)
    print(fp)


if __name__ == "__main__":
    main()
