#!/usr/bin/env python3
"""Search benchmark: vidx-search (full scan and coarse-to-fine) against FAISS IndexPQ, in one run.

Makes (once, cached in the work directory; remade when missing or when its inputs change)
the seeded random MSRVTT-shaped bundle of bench_encode.py and two datasets of --videos
videos (default 1,000,000), written as codes files (Schemas/codes.md) of --per-file videos
and indexed with vidx-shard (one index directory per dataset):

  random     uniform random codes; the queries are N(0, 1) vectors (no true neighbours)
  clustered  synthetic embeddings: --clusters centres per level in 512-d (a video has one
             cluster, shared by its levels), each video = its cluster's level centre +
             N(0, 0.5^2) noise, quantised as HCQ does (every 16-d sub-vector L2-normalised,
             code = argmax of its dot products with the 256 normalised codewords); the
             queries are copies of some videos' embeddings + N(0, 0.1^2) noise, so every
             query has a true near neighbour (its source video)

Then, with the same thread count everywhere (--threads, default all cores), measures:

  full       vidx-search --k 10, a full scan (256 table reads a video), best of --runs
  c2f        vidx-search --k 10 --rerank 1000 (coarse level only, then re-rank 1000), best of --runs
  faiss      8 faiss.IndexPQ (one a level: the level's normalised codebook, the same codes,
             inner product, the query's sub-vectors normalised), index.search(q, 10) on
             each; the 8 times summed (the work of one full-scan score), best of 3

vidx-search's queries/s are from its own stderr line (--repeats R, R chosen so that a
measurement takes at least --seconds; process start and index opening excluded). Peak
memory is the search process's own ru_maxrss (os.wait4, in a small launcher process, see
LAUNCHER): mostly the touched pages of the memory-mapped shards. Correctness: top-10
agreement of coarse-to-fine with the full scan (low on the random dataset by design: its
coarse codes say nothing about its fine ones), vidx-search's scores against NumPy (tables
from the bundle's codebooks, sums over the codes), vidx-search's top-10 against NumPy's
exact top-10 for a few queries, FAISS's top-1 score per level against NumPy.

Targets: full scan >= FAISS summed over the 8 levels (ratio >= 1.0); coarse-to-fine >= 5x
FAISS. A report, not a test: exits 0 when a target is missed unless --strict, 1 when a
command fails.
"""
import argparse
import hashlib
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "Pipelines", "models"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import bundle_tools  # noqa: E402
import safetensors_np  # noqa: E402
from bench_encode import msrvtt_config  # noqa: E402  (the same bundle shapes)
from bench_common import pip_import, sha256_file  # noqa: E402

L, M, K, D = 8, 32, 256, 512
DSUB = D // M
DATA_VERSION = 1          # bump when the generated data changes meaning
CLUSTER_NOISE = 0.5       # per-dimension noise around a cluster centre (centres ~ N(0, 1))
QUERY_NOISE = 0.1         # per-dimension perturbation of a clustered query's source video


def log(msg):
    print(msg, flush=True)


def fail(msg):
    sys.exit(f"bench-search: {msg}")


# ---------------------------------------------------------------------------------- setup

def read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_json(path, value):
    safetensors_np.atomic_write(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def make_bundle(workdir):
    bundle_dir = os.path.join(workdir, "bundle")
    if not os.path.exists(os.path.join(bundle_dir, "weights.safetensors")):
        log("generating the random MSRVTT-shaped bundle...")
        cfg = msrvtt_config()
        bundle_tools.write_bundle(bundle_dir, cfg, bundle_tools.random_bundle(cfg, seed=7))
    cfg, weights = bundle_tools.load_bundle(bundle_dir)
    assert cfg["hidden_size"] == D and cfg["pq"] == {"subspaces": M, "codewords": K} and cfg["clusters"] == L - 1
    names = ["cls_pq_layer._C_k"] + [f"vlad_pq_layers.{i}._C_k" for i in range(L - 1)]
    books = np.stack([weights[n].reshape(M, K, DSUB) for n in names]).astype(np.float32)
    norms = np.sqrt((books.astype(np.float64) ** 2).sum(axis=3, keepdims=True))
    books = (books / np.maximum(norms, 1e-12)).astype(np.float32)   # (L, M, K, dsub), as the index stores them
    return bundle_dir, bundle_tools.fingerprint(bundle_dir), books


# ------------------------------------------------------------------------------- datasets

def normalise_subvectors(x):
    """(..., D) -> the same with every DSUB-wide sub-vector L2-normalised (zero stays zero)."""
    s = np.asarray(x, dtype=np.float32).reshape(x.shape[:-1] + (M, DSUB))
    n = np.sqrt(np.einsum("...d,...d->...", s, s))[..., None]
    return (s / np.where(n > 0, n, 1)).reshape(x.shape)


def quantise(emb, books):
    """(n, L, D) float32 -> (n, L, M) uint8: HCQ's codes (argmax of normalised dot products)."""
    n = emb.shape[0]
    out = np.empty((n, L, M), dtype=np.uint8)
    sub = normalise_subvectors(emb).reshape(n, L, M, DSUB)
    for l in range(L):
        s = np.ascontiguousarray(sub[:, l].transpose(1, 0, 2))         # (M, n, dsub)
        dots = np.matmul(s, books[l].transpose(0, 2, 1))               # (M, n, K)
        out[:, l, :] = dots.argmax(axis=2).T
    return out


def write_codes_files(ds_dir, name, codes, fingerprint, per_file):
    n = codes.shape[0]
    paths = []
    for f, start in enumerate(range(0, n, per_file)):
        end = min(n, start + per_file)
        records = [{"id": f"{name}-{i:07d}", "content_hash": "", "status": "ok", "error": None}
                   for i in range(start, end)]
        meta = {"format": "vidx-codes", "format_version": "1", "bundle_fingerprint": fingerprint,
                "features_bundle_fingerprint": "", "levels": str(L), "subspaces": str(M), "codewords": str(K),
                "videos": json.dumps(records, separators=(",", ":"))}
        path = os.path.join(ds_dir, f"unit-{f:04d}.codes.safetensors")
        safetensors_np.save(path, {"codes": np.ascontiguousarray(codes[start:end])}, meta)
        paths.append(path)
    return paths


def gen_random(n, queries, seed):
    rng = np.random.default_rng(seed)
    codes = np.empty((n, L, M), dtype=np.uint8)
    step = 1 << 18
    for s in range(0, n, step):
        codes[s:s + step] = rng.integers(0, 256, size=(min(n, s + step) - s, L, M), dtype=np.uint8)
    q = rng.standard_normal((queries, L, D), dtype=np.float32)
    return codes, q, None


def gen_clustered(n, queries, seed, books, clusters):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, L, D), dtype=np.float32)     # centre of cluster c at level l
    assign = rng.integers(0, clusters, size=n)
    sources = np.sort(rng.choice(n, size=queries, replace=False))
    source_emb = np.empty((queries, L, D), dtype=np.float32)
    codes = np.empty((n, L, M), dtype=np.uint8)
    chunk = 8192
    t0 = time.perf_counter()
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        crng = np.random.default_rng([seed, s])                       # one stream a chunk
        emb = centres[assign[s:e]]                                     # (c, L, D), C-contiguous
        noise = crng.standard_normal(emb.shape, dtype=np.float32)
        noise *= CLUSTER_NOISE
        emb += noise
        codes[s:e] = quantise(emb, books)
        inside = (sources >= s) & (sources < e)
        source_emb[inside] = emb[sources[inside] - s]
        if (s // chunk) % 32 == 31:
            done = e / n
            el = time.perf_counter() - t0
            print(f"\r  {e}/{n} videos quantised, {el:.0f} s, ~{el / done - el:.0f} s left   ", end="", flush=True)
    print("", flush=True)
    q = source_emb + QUERY_NOISE * rng.standard_normal(source_emb.shape, dtype=np.float32)
    return codes, q.astype(np.float32), sources


def make_dataset(workdir, name, args, fingerprint, books):
    """Codes files, all codes (codes.npy), queries (queries.npy): cached, remade when stale."""
    ds_dir = os.path.join(workdir, f"{name}-{args.videos}")
    stamp_path = os.path.join(ds_dir, "data.json")
    want = {"version": DATA_VERSION, "bundle_fingerprint": fingerprint, "videos": args.videos,
            "queries": args.queries, "per_file": args.per_file, "clusters": args.clusters, "seed": args.seed}
    stamp = read_json(stamp_path)
    files = sorted(f for f in os.listdir(ds_dir) if f.endswith(".codes.safetensors")) if os.path.isdir(ds_dir) else []
    if stamp is None or stamp.get("params") != want or len(files) != stamp.get("files") or \
            not all(os.path.exists(os.path.join(ds_dir, f)) for f in ("codes.npy", "queries.npy")):
        shutil.rmtree(ds_dir, ignore_errors=True)
        os.makedirs(ds_dir)
        t0 = time.perf_counter()
        log(f"generating the {name} dataset: {args.videos} videos...")
        if name == "random":
            codes, q, sources = gen_random(args.videos, args.queries, args.seed)
        else:
            codes, q, sources = gen_clustered(args.videos, args.queries, args.seed + 1, books, args.clusters)
        np.save(os.path.join(ds_dir, "codes.npy"), codes)
        np.save(os.path.join(ds_dir, "queries.npy"), q)
        if sources is not None:
            np.save(os.path.join(ds_dir, "sources.npy"), sources)
        paths = write_codes_files(ds_dir, name, codes, fingerprint, args.per_file)
        write_json(stamp_path, {"params": want, "files": len(paths), "seconds": round(time.perf_counter() - t0, 1)})
        log(f"  {len(paths)} codes files in {time.perf_counter() - t0:.1f} s")
        del codes
    stamp = read_json(stamp_path)
    files = sorted(os.path.join(ds_dir, f) for f in os.listdir(ds_dir) if f.endswith(".codes.safetensors"))
    sources = np.load(os.path.join(ds_dir, "sources.npy")) if name == "clustered" else None
    return {"name": name, "dir": ds_dir, "files": files, "stamp": stamp,
            "codes": np.load(os.path.join(ds_dir, "codes.npy"), mmap_mode="r"),
            "query_path": os.path.join(ds_dir, "queries.npy"),
            "queries": np.load(os.path.join(ds_dir, "queries.npy")), "sources": sources}


# ---------------------------------------------------------------------------------- tools

# A process's ru_maxrss starts at its parent's resident size: fork copies the parent's
# high-water mark and vfork (subprocess, posix_spawn) shares the parent's memory until exec,
# whose peak then counts. This script holds gigabytes of codes, so it starts every measured
# command through a small fresh Python process, which forks, execs and reports the
# command's own wait4 figures (its baseline is the launcher's few MiB).
LAUNCHER = """
import json, os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execv(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
with open(sys.argv[1], "w") as f:
    json.dump({"code": os.waitstatus_to_exitcode(status), "maxrss_kib": usage.ru_maxrss, "seconds": seconds}, f)
"""


def run(cmd, workdir, tag):
    """Runs cmd with stdout and stderr to files (no pipe to fill); (seconds, peak RSS MiB, out, err)."""
    out_path = os.path.join(workdir, f".{tag}.out")
    err_path = os.path.join(workdir, f".{tag}.err")
    res_path = os.path.join(workdir, f".{tag}.rusage")
    if os.path.exists(res_path):
        os.remove(res_path)
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, res_path] + cmd, stdout=out, stderr=err)
    with open(out_path, encoding="utf-8", errors="replace") as f:
        out = f.read()
    with open(err_path, encoding="utf-8", errors="replace") as f:
        err = f.read()
    res = read_json(res_path)
    if proc.returncode != 0 or res is None or res["code"] != 0:
        code = res["code"] if res else proc.returncode
        fail(f"command failed ({code}): {' '.join(cmd)}\n{err[-4000:]}")
    return res["seconds"], res["maxrss_kib"] / 1024.0, out, err


SECTION_NAMES = {1: "ids", 2: "external ids", 3: "content hashes", 4: "coarse codes", 5: "fine codes",
                 6: "tombstones", 16: "coarse embeddings", 17: "segments", 18: "hash codes"}


def build_index(ds, args, bundle_dir, fingerprint):
    """vidx-shard into DS/index, unless the index there was built from these codes by this vidx-shard."""
    shard_bin = os.path.join(args.bin, "vidx-shard")
    index = os.path.join(ds["dir"], "index")
    stamp_path = os.path.join(ds["dir"], "index.json")
    want = {"vidx_shard": sha256_file(shard_bin), "data": ds["stamp"], "shards": args.shards,
            "bundle_fingerprint": fingerprint}
    stamp = read_json(stamp_path)
    if stamp is None or stamp.get("params") != want or not os.path.exists(os.path.join(index, "CURRENT")):
        shutil.rmtree(index, ignore_errors=True)
        if os.path.exists(stamp_path):
            os.remove(stamp_path)
        log(f"vidx-shard: indexing {args.videos} {ds['name']} videos ({len(ds['files'])} codes files, {args.shards} shards)...")
        seconds, rss, out, _ = run([shard_bin, "--index", index, "--bundle", bundle_dir, "--shards", str(args.shards)]
                                   + ds["files"], args.workdir, "shard")
        log(f"  {out.strip()}")
        log(f"  {seconds:.1f} s ({args.videos / seconds:,.0f} videos/s), peak memory {rss:.0f} MiB")
        write_json(stamp_path, {"params": want, "seconds": round(seconds, 2), "peak_rss_mib": round(rss)})
    stamp = read_json(stamp_path)
    with open(os.path.join(index, "CURRENT"), encoding="utf-8") as f:
        gen = os.path.join(index, f.read().strip())
    shards = [os.path.join(gen, f) for f in os.listdir(gen) if f.endswith(".vidx")]
    shard_bytes = sum(os.path.getsize(p) for p in shards)
    sections = {}
    for p in shards:                       # the section table (Schemas/index-shard.md)
        with open(p, "rb") as f:
            head = f.read(128 + 64 * 32)
        count = struct.unpack_from("<I", head, 80)[0]
        for i in range(count):
            kind, _, _, length = struct.unpack_from("<IIQQ", head, 128 + 32 * i)
            name = SECTION_NAMES.get(kind, f"kind {kind}")
            sections[name] = sections.get(name, 0) + length
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(index) for f in fs)
    return {"path": index, "generation": gen, "shard_bytes": shard_bytes, "bytes": total, "sections": sections,
            "build_seconds": stamp.get("seconds"), "build_rss": stamp.get("peak_rss_mib")}


def parse_hits(out, queries, k):
    """vidx-search's JSON lines -> (ids (Q, k) int64 row numbers, scores (Q, k), raw (Q, k) ids, ext ids)."""
    rows = np.full((queries, k), -1, dtype=np.int64)
    scores = np.full((queries, k), np.nan)
    raw = [[None] * k for _ in range(queries)]
    ext = [[None] * k for _ in range(queries)]
    for line in out.splitlines():
        if not line.strip():
            continue
        h = json.loads(line)
        q, r = h["query"], h["rank"] - 1
        if not (0 <= q < queries and 0 <= r < k):
            fail(f"vidx-search printed a hit outside {queries} queries x {k} ranks: {line}")
        rows[q, r] = int(h["external_id"].rsplit("-", 1)[1])
        scores[q, r] = h["score"]
        raw[q][r] = h["id"]
        ext[q][r] = h["external_id"]
    if (rows < 0).any():
        fail(f"vidx-search printed {(rows >= 0).sum()} hits, expected {queries} queries x {k}")
    return rows, scores, raw, ext


def search(index, ds, args, rerank=None, tag="full"):
    """Calibrates --repeats so the measured run takes >= args.seconds; returns its figures and hits."""
    Q = ds["queries"].shape[0]
    base = [os.path.join(args.bin, "vidx-search"), index["path"], "--query", ds["query_path"], "--k", str(args.k),
            "--threads", str(args.threads)]
    if rerank:
        base += ["--rerank", str(rerank)]

    def once(repeats):
        wall, rss, out, err = run(base + ["--repeats", str(repeats)], args.workdir, f"search-{tag}")
        lines = [ln for ln in err.splitlines() if "queries/s" in ln]
        if not lines:
            fail(f"no 'queries/s' line on vidx-search's stderr with --repeats {repeats}:\n{err[-2000:]}")
        words = lines[-1].split()
        try:
            seconds = float(words[words.index("s:") - 1])
            qps = float(words[words.index("queries/s") - 1])
        except (ValueError, IndexError):
            fail(f"cannot read vidx-search's timing line: {lines[-1]!r}")
        return {"repeats": repeats, "seconds": seconds, "qps": qps, "wall": wall, "rss": rss, "out": out,
                "line": lines[-1]}

    first = once(2)                                   # also warms the page cache
    repeats = max(2, math.ceil(args.seconds * first["qps"] / Q * 1.1))
    runs = [once(repeats) for _ in range(args.runs)]
    best = max(runs, key=lambda r: r["qps"])
    best["rss"] = max(r["rss"] for r in runs)
    best["all_qps"] = [r["qps"] for r in runs]
    best["calibration_qps"] = first["qps"]
    best["hits"] = parse_hits(best["out"], Q, args.k)
    return best


# ---------------------------------------------------------------------------------- NumPy

def numpy_tables(queries, books):
    """(Q, L, D) -> (Q, L, M, K) float64 tables: <normalised query sub-vector, normalised codeword>."""
    q = normalise_subvectors(queries).reshape(queries.shape[0], L, M, DSUB).astype(np.float64)
    return np.einsum("qlmd,lmkd->qlmk", q, books.astype(np.float64))


def numpy_scores(tables_q, codes, rows):
    """HCQ scores (mean over L * M) of the given rows for one query's (L, M, K) tables."""
    c = np.asarray(codes[rows]).astype(np.int64)          # (n, L, M)
    flat = tables_q.reshape(-1)
    idx = (np.arange(L * M).reshape(L, M) * K)[None] + c
    return flat[idx].sum(axis=(1, 2)) / (L * M)


def numpy_topk(tables_q, codes, k, chunk=131072):
    """Exact top-k (rows, scores) over all videos for one query, best first (float32 tables, as the index)."""
    flat = tables_q.astype(np.float32).reshape(-1)
    offs = (np.arange(L * M, dtype=np.int32) * K).reshape(1, L * M)
    best_r, best_s = np.empty(0, np.int64), np.empty(0, np.float32)
    for s in range(0, codes.shape[0], chunk):
        c = np.asarray(codes[s:s + chunk]).reshape(-1, L * M).astype(np.int32) + offs
        sc = flat[c].sum(axis=1, dtype=np.float32) / (L * M)
        part = np.argpartition(-sc, min(k, len(sc) - 1))[:k] if len(sc) > k else np.arange(len(sc))
        best_r = np.concatenate([best_r, part + s])
        best_s = np.concatenate([best_s, sc[part]])
    order = np.argsort(-best_s, kind="stable")[:k]
    return best_r[order], best_s[order]


# ---------------------------------------------------------------------------------- FAISS

def faiss_bench(faiss, ds, books, args):
    codes = ds["codes"]
    n = codes.shape[0]
    Q = ds["queries"].shape[0]
    faiss.omp_set_num_threads(args.threads)
    qn = normalise_subvectors(ds["queries"])                 # (Q, L, D)
    indexes = []
    for l in range(L):
        index = faiss.IndexPQ(D, M, 8, faiss.METRIC_INNER_PRODUCT)
        faiss.copy_array_to_vector(np.ascontiguousarray(books[l]).reshape(-1), index.pq.centroids)
        faiss.copy_array_to_vector(np.ascontiguousarray(codes[:, l, :]).reshape(-1), index.codes)
        index.ntotal = n
        index.is_trained = True
        indexes.append(index)
    queries = [np.ascontiguousarray(qn[:, l, :]) for l in range(L)]
    indexes[0].search(queries[0], args.k)                     # warm-up
    totals, results = [], None
    for _ in range(3):
        total, res = 0.0, []
        for l in range(L):
            t0 = time.perf_counter()
            Dl, Il = indexes[l].search(queries[l], args.k)
            total += time.perf_counter() - t0
            res.append((Dl, Il))
        totals.append(total)
        results = res
    # Sanity: FAISS's top-1 score for level l = NumPy's level-l table sum for that video.
    tables = numpy_tables(ds["queries"], books)                # (Q, L, M, K)
    worst = 0.0
    for l, (Dl, Il) in enumerate(results):
        rows = Il[:, 0]
        c = np.asarray(codes[rows, l, :]).astype(np.int64)    # (Q, M)
        ref = tables[np.arange(Q)[:, None], l, np.arange(M)[None, :], c].sum(axis=1)
        worst = max(worst, float(np.abs(ref - Dl[:, 0]).max()))
    del indexes
    best = min(totals)
    return {"seconds": best, "qps": Q / best, "all": totals, "top1_max_err": worst}


# ---------------------------------------------------------------------------------- checks

def correctness(ds, full, c2f, books, args):
    Q = ds["queries"].shape[0]
    f_rows, f_scores, f_raw, f_ext = full["hits"]
    c_rows, _, _, _ = c2f["hits"]
    same = float(np.mean([np.array_equal(f_rows[q], c_rows[q]) for q in range(Q)]))
    overlap = float(np.mean([len(set(f_rows[q]) & set(c_rows[q])) / args.k for q in range(Q)]))
    tables = numpy_tables(ds["queries"], books)
    codes = ds["codes"]
    checked = min(Q, args.check_queries)
    err = 0.0
    for q in range(checked):
        ref = numpy_scores(tables[q], codes, f_rows[q])
        err = max(err, float(np.abs(ref - f_scores[q]).max()))
    # Ids: the first 8 bytes of SHA-256(external id), little-endian.
    bad_ids = sum(1 for q in range(checked) for r in range(args.k)
                  if int.from_bytes(hashlib.sha256(f_ext[q][r].encode()).digest()[:8], "little") != f_raw[q][r])
    # Exact top-k for a few queries (NumPy over every video).
    exact_same, exact_err = 0, 0.0
    exact_n = min(Q, args.exact_queries)
    for q in range(exact_n):
        rows, scores = numpy_topk(tables[q], codes, args.k)
        exact_err = max(exact_err, float(np.abs(np.sort(scores)[::-1] - f_scores[q]).max()))
        exact_same += int(set(rows.tolist()) == set(f_rows[q].tolist()))
    out = {"c2f_same": same, "c2f_overlap": overlap, "score_err": err, "score_checked": checked * args.k,
           "bad_ids": bad_ids, "exact_n": exact_n, "exact_same": exact_same, "exact_err": exact_err}
    if ds["sources"] is not None:
        out["source_full"] = float(np.mean([ds["sources"][q] in set(f_rows[q]) for q in range(Q)]))
        out["source_c2f"] = float(np.mean([ds["sources"][q] in set(c_rows[q]) for q in range(Q)]))
        out["source_top1"] = float(np.mean([ds["sources"][q] == f_rows[q, 0] for q in range(Q)]))
    return out


# ----------------------------------------------------------------------------------- main

def mib(b):
    return b / (1 << 20)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True, help="folder with vidx-shard and vidx-search")
    ap.add_argument("--workdir", default="bench-out/search")
    ap.add_argument("--videos", type=int, default=1_000_000)
    ap.add_argument("--per-file", type=int, default=62_500, help="videos per codes file")
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--queries", type=int, default=64)
    ap.add_argument("--clusters", type=int, default=1000, help="cluster centres per level (clustered dataset)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--rerank", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seconds", type=float, default=3.0, help="minimum length of a vidx-search measurement")
    ap.add_argument("--runs", type=int, default=2, help="vidx-search measurements (best taken) after the calibration run")
    ap.add_argument("--check-queries", type=int, default=8, help="queries whose full-scan scores NumPy re-computes")
    ap.add_argument("--exact-queries", type=int, default=2, help="queries whose exact top-k NumPy computes")
    ap.add_argument("--datasets", default="random,clustered")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--strict", action="store_true")
    args = ap.parse_args()
    for tool in ("vidx-shard", "vidx-search"):
        if not os.access(os.path.join(args.bin, tool), os.X_OK):
            fail(f"{os.path.join(args.bin, tool)} not found (swift build -c release)")
    os.makedirs(args.workdir, exist_ok=True)
    faiss = pip_import("faiss", "faiss-cpu", "bench-search")
    bundle_dir, fingerprint, books = make_bundle(args.workdir)

    results = []
    for name in args.datasets.split(","):
        ds = make_dataset(args.workdir, name, args, fingerprint, books)
        index = build_index(ds, args, bundle_dir, fingerprint)
        log(f"[{name}] vidx-search full scan...")
        full = search(index, ds, args, None, "full")
        log(f"  best: {full['line']}  (runs {', '.join(f'{q:.2f}' for q in full['all_qps'])} queries/s; "
            f"peak memory {full['rss']:.0f} MiB)")
        log(f"[{name}] vidx-search coarse-to-fine (--rerank {args.rerank})...")
        c2f = search(index, ds, args, args.rerank, "c2f")
        log(f"  best: {c2f['line']}  (runs {', '.join(f'{q:.2f}' for q in c2f['all_qps'])} queries/s; "
            f"peak memory {c2f['rss']:.0f} MiB)")
        log(f"[{name}] FAISS IndexPQ x {L} levels...")
        fz = faiss_bench(faiss, ds, books, args)
        log(f"  8 levels: {fz['seconds']:.3f} s for {ds['queries'].shape[0]} queries = {fz['qps']:.1f} queries/s "
            f"(runs {', '.join(f'{t:.3f}' for t in fz['all'])} s)")
        log(f"[{name}] correctness checks...")
        chk = correctness(ds, full, c2f, books, args)
        results.append({"name": name, "index": index, "full": full, "c2f": c2f, "faiss": fz, "check": chk})
        del ds

    n, Q = args.videos, args.queries
    print(f"\nmachine: {os.cpu_count()} cores; threads {args.threads}; {n:,} videos x {L} levels x {M} bytes; "
          f"{Q} queries, top {args.k}; coarse-to-fine re-ranks {args.rerank}")
    hdr = (f"{'dataset':<10} {'full q/s':>9} {'c2f q/s':>9} {'FAISS q/s':>10} {'full/FAISS':>10} {'c2f/FAISS':>10} "
           f"{'c2f=full':>8} {'overlap':>8} {'RSS full':>9} {'RSS c2f':>8} {'index':>9}")
    print(hdr)
    print("-" * len(hdr))
    for r in results:
        f, c, z, k = r["full"], r["c2f"], r["faiss"], r["check"]
        print(f"{r['name']:<10} {f['qps']:>9.1f} {c['qps']:>9.1f} {z['qps']:>10.1f} {f['qps'] / z['qps']:>10.2f} "
              f"{c['qps'] / z['qps']:>10.2f} {100 * k['c2f_same']:>7.1f}% {100 * k['c2f_overlap']:>7.1f}% "
              f"{f['rss']:>6.0f}MiB {c['rss']:>5.0f}MiB {mib(r['index']['bytes']):>6.0f}MiB")
    print()
    for r in results:
        f, c, z, k, ix = r["full"], r["c2f"], r["faiss"], r["check"], r["index"]
        print(f"[{r['name']}] vidx-search full: {f['repeats']} repeats in {f['seconds']:.2f} s "
              f"({1000 * f['seconds'] / (f['repeats'] * Q):.2f} ms a query, {n * L * M * f['qps'] / 1e9:.2f} G table reads/s); "
              f"coarse-to-fine: {c['repeats']} repeats in {c['seconds']:.2f} s; "
              f"FAISS: {z['seconds']:.3f} s for the 8 levels")
        parts = ", ".join(f"{name} {mib(b):.1f}" for name, b in ix["sections"].items() if b)
        print(f"[{r['name']}] index {mib(ix['bytes']):.1f} MiB on disk: {mib(ix['shard_bytes']):.1f} MiB of shards "
              f"({parts} MiB), the rest codebooks and manifest; peak RSS full scan "
              f"{f['rss']:.0f} MiB, coarse-to-fine {c['rss']:.0f} MiB (the touched pages of the mmapped shards + heap)"
              + (f"; built by vidx-shard in {ix['build_seconds']:.1f} s, peak {ix['build_rss']} MiB"
                 if ix.get("build_seconds") else ""))
        print(f"[{r['name']}] top-{args.k}: coarse-to-fine = full scan (ids in order) for {100 * k['c2f_same']:.1f}% of "
              f"queries, mean overlap {100 * k['c2f_overlap']:.1f}%"
              + (f"; source video in full-scan top-{args.k} {100 * k['source_full']:.1f}% (top-1 "
                 f"{100 * k['source_top1']:.1f}%), in c2f top-{args.k} {100 * k['source_c2f']:.1f}%"
                 if "source_full" in k else ""))
        ok_s = k["score_err"] <= 1e-5
        ok_x = k["exact_same"] == k["exact_n"] and k["exact_err"] <= 1e-5
        ok_f = z["top1_max_err"] <= 1e-4
        print(f"[{r['name']}] checks: {k['score_checked']} full-scan scores vs NumPy max |diff| {k['score_err']:.2e} "
              f"{'ok' if ok_s else 'WRONG'}; ids = SHA-256(external id) {'ok' if k['bad_ids'] == 0 else 'WRONG (%d)' % k['bad_ids']}; "
              f"exact top-{args.k} (NumPy, {k['exact_n']} queries) {k['exact_same']}/{k['exact_n']} same sets, "
              f"max score diff {k['exact_err']:.2e} {'ok' if ok_x else 'WRONG'}; "
              f"FAISS top-1 vs NumPy max |diff| {z['top1_max_err']:.2e} {'ok' if ok_f else 'WRONG'}")
    print()
    all_ok = True
    for r in results:
        f, c, z = r["full"], r["c2f"], r["faiss"]
        a, b = f["qps"] / z["qps"], c["qps"] / z["qps"]
        print(f"target [{r['name']}] full scan >= FAISS (8 levels summed): {a:.2f}x {'PASS' if a >= 1.0 else 'MISS'}")
        print(f"target [{r['name']}] coarse-to-fine >= 5x FAISS:           {b:.2f}x {'PASS' if b >= 5.0 else 'MISS'}")
        all_ok = all_ok and a >= 1.0 and b >= 5.0
    if args.strict and not all_ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
