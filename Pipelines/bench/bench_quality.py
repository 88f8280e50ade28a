#!/usr/bin/env python3
"""make bench-quality: codebook fitting and the fidelity table, ours beside FAISS's, in one run.

usage: bench_quality.py --bin BIN --workdir DIR [--videos 50000] [--iterations 25] [--threads N]

Data (made once, cached in DIR; remade when its parameters change): the random
MSRVTT-shaped bundle of bench-search (8 levels x 32 sub-spaces x 256 codewords, hidden 512)
and --videos synthetic videos' embeddings, a documented mixture: 4096 topic centres drawn
from N(0, I) at every level, each video a centre plus N(0, 0.6^2 I) noise, levels
independent. (Random transformer weights over random features collapse to nearly one
direction, which no quantizer would be judged fairly on; the mixture gives every sub-space
the spread and neighbourhoods real embeddings have.) They are written as codes files with
embeddings (1,000 videos each, the source bundle's codes), the last 10 % held out. Text
queries: 500 held-out videos plus N(0, 1.5^2 I): far enough from their video that exact
search itself is often uncertain, as with real text queries.

Then Pipelines/quality/fidelity.py: vidx-fit-codebooks on the 90 %, FAISS's
ProductQuantizer on the same sample with the same M, K, iterations, seed and threads,
vidx-quality and the same figures for FAISS on the held-out 10 %: one table, fidelity.json
and recall.png in DIR/fidelity. Targets: recall@10 within 1 point of FAISS's or better on
every level; fitting no slower than FAISS (medians of 3 interleaved runs); peak memory
stated.
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "Pipelines", "models"))
sys.path.insert(0, os.path.join(ROOT, "Pipelines", "quality"))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import safetensors_np  # noqa: E402
import fidelity  # noqa: E402
from bench_common import cpu_model  # noqa: E402
from bench_search import L, D, M, K, make_bundle, quantise  # noqa: E402

DATA_VERSION = 3
TOPICS = 4096
NOISE = 0.6
QUERY_NOISE = 1.5
PER_FILE = 1000
TEXT_QUERIES = 500


def make_data(workdir, videos, fingerprint, books):
    """DIR/data-N: train/ and heldout/ codes files with embeddings, and queries.npy."""
    data = os.path.join(workdir, f"data-{videos}")
    stamp = os.path.join(data, "stamp.json")
    wanted = {"version": DATA_VERSION, "videos": videos, "topics": TOPICS, "noise": NOISE, "bundle": fingerprint}
    if os.path.exists(stamp) and json.load(open(stamp)) == wanted:
        return data
    print(f"bench-quality: generating {videos} videos' embeddings (a mixture of {TOPICS} topics)...", flush=True)
    import shutil
    shutil.rmtree(data, ignore_errors=True)
    os.makedirs(os.path.join(data, "train"))
    os.makedirs(os.path.join(data, "heldout"))
    rng = np.random.default_rng(20261203)
    centres = rng.standard_normal((TOPICS, L, D), dtype=np.float32)
    held_from = videos - videos // 10
    queries = []
    for f, start in enumerate(range(0, videos, PER_FILE)):
        end = min(videos, start + PER_FILE)
        frng = np.random.default_rng([20261203, start])
        emb = centres[frng.integers(0, TOPICS, size=end - start)]
        emb = emb + NOISE * frng.standard_normal(emb.shape, dtype=np.float32)
        records = [{"id": f"video-{i:07d}", "content_hash": "", "status": "ok", "error": None} for i in range(start, end)]
        meta = {"format": "vidx-codes", "format_version": "1", "bundle_fingerprint": fingerprint,
                "features_bundle_fingerprint": "", "levels": str(L), "subspaces": str(M), "codewords": str(K),
                "videos": json.dumps(records, separators=(",", ":"))}
        part = "heldout" if start >= held_from else "train"
        safetensors_np.save(os.path.join(data, part, f"unit-{f:04d}.codes.safetensors"),
                            {"codes": quantise(emb, books), "embeddings": emb.astype(np.float32)}, meta)
        if part == "heldout" and sum(len(q) for q in queries) < TEXT_QUERIES:
            queries.append(emb[:TEXT_QUERIES - sum(len(q) for q in queries)])
    q = np.concatenate(queries)
    q = q + QUERY_NOISE * rng.standard_normal(q.shape, dtype=np.float32)
    np.save(os.path.join(data, "queries.npy"), q.astype(np.float32))
    fidelity.write_json(stamp, wanted)
    return data


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--videos", type=int, default=50000)
    ap.add_argument("--iterations", type=int, default=25)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.videos < 2560:
        sys.exit("bench-quality: --videos must be at least 2560 (a sample of K = 256 or more after holding out 10 %)")
    os.makedirs(a.workdir, exist_ok=True)
    bundle_dir, fingerprint, books = make_bundle(a.workdir)
    data = make_data(a.workdir, a.videos, fingerprint, books)
    train = sorted(os.path.join(data, "train", n) for n in os.listdir(os.path.join(data, "train")))
    held = sorted(os.path.join(data, "heldout", n) for n in os.listdir(os.path.join(data, "heldout")))
    print(f"bench-quality: {cpu_model()}, {os.cpu_count()} cores; {a.videos} videos ({len(train)} train files, "
          f"{len(held)} held out), {a.iterations} iterations", flush=True)
    start = time.perf_counter()
    fidelity.main(["--bin", a.bin, "--bundle", bundle_dir, "--train"] + train + ["--heldout"] + held
                  + ["--out-dir", os.path.join(a.workdir, "fidelity"), "--iterations", str(a.iterations),
                     "--threads", str(a.threads), "--examples", "1000", "--repeats", "3", "--queries", os.path.join(data, "queries.npy")])
    print(f"bench-quality: done in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
