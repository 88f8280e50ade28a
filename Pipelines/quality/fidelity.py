#!/usr/bin/env python3
"""Codebooks fitted by vidx-fit-codebooks beside FAISS's ProductQuantizer, on the same sample.

usage: fidelity.py --bin BIN --bundle SOURCE --train CODES... --heldout CODES... --out-dir DIR
                   [--iterations 25] [--seed 1234] [--threads N] [--examples 1000] [--queries Q.npy]

1. vidx-fit-codebooks fits SOURCE's codebooks on the --train codes files (with embeddings):
   DIR/fitted, timed, its peak memory measured.
2. faiss.ProductQuantizer (faiss-cpu from PyPI), one per level, M sub-spaces of 8 bits, is
   trained on the same sample: the ids vidx-fit-codebooks drew (SHA-256 of seed and id, the
   smallest first; checked against the ids digest its bundle.json records), sub-vectors
   L2-normalised as HCQ quantizes them, with the same iterations, seed, points per centroid
   and threads. Timed in this process.
3. vidx-quality measures the fitted bundle on the --heldout videos (DIR/vidx.json); this
   script measures FAISS's quantizer with the same definitions (DIR/faiss.json, the same
   schema: Schemas/quality-report.schema.json) and also re-measures the fitted codebooks
   with NumPy, as a check that both sides compute the same figures.
4. DIR/fidelity.json (both reports, the fitting figures, the targets), a table on standard
   output and DIR/recall.png: recall@k against k, all levels, for ours, FAISS's and float.

Definitions (Documentation/Codebooks.md): a level's score is the mean over its sub-spaces of
<q_m / |q_m|, c_m>, c_m the video's codeword (FAISS's codewords are not unit-norm: its own
inner-product ADC), or the video's normalised sub-vector for exact search; recall@k is the
share of queries whose exact top-1 is among the ADC top-k.

Exit status: 0 measured (whether or not the targets are met: the table says); 1 a step failed.
"""
import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "Pipelines", "models"))
sys.path.insert(0, os.path.join(ROOT, "Pipelines", "bench"))

import numpy as np  # noqa: E402
import safetensors_np  # noqa: E402
from bench_common import pip_import, run_once  # noqa: E402

RECALL_DEPTHS = [1, 2, 5, 10, 20, 50, 100]
RERANK_DEPTHS = [100, 1000, 10000]


def fail(msg):
    sys.exit(f"fidelity: {msg}")


# ------------------------------------------------------------------------------ inputs

def read_codes(paths):
    """Usable videos of codes files with embeddings: (ids, (n, L, D) float32, fingerprint)."""
    ids, rows, fingerprints = [], [], set()
    for p in paths:
        tensors, meta = safetensors_np.load(p)
        if "embeddings" not in tensors:
            fail(f"{p}: holds no embeddings (vidx-encode --embeddings)")
        fingerprints.add(meta["bundle_fingerprint"])
        videos = json.loads(meta["videos"])
        ok = [i for i, v in enumerate(videos) if v["status"] != "failed"]
        ids += [videos[i]["id"] for i in ok]
        rows.append(tensors["embeddings"][ok])
    return ids, np.concatenate(rows).astype(np.float32), fingerprints


def sample_order(ids, size, seed):
    """The ids vidx-fit-codebooks and vidx-quality draw: the smallest SHA-256(seed, id) first."""
    def key(i):
        d = hashlib.sha256(f"vidx-sample-v1\n{seed}\n{i}".encode()).digest()
        return (int.from_bytes(d[:8], "big"), i.encode())
    return sorted(ids, key=key)[:size]


def ids_digest(ids):
    return hashlib.sha256("".join(i + "\n" for i in sorted(ids, key=lambda s: s.encode())).encode()).hexdigest()


def normalise_subvectors(x, dsub):
    s = x.reshape(x.shape[:-1] + (x.shape[-1] // dsub, dsub))
    n = np.sqrt(np.einsum("...d,...d->...", s, s))[..., None]
    return (s / np.where(n > 0, n, 1)).reshape(x.shape).astype(np.float32)


def fitted_codebooks(bundle_dir):
    """(L, M, K, dsub) unit-norm codebooks of a bundle, level 0 first."""
    cfg = json.load(open(os.path.join(bundle_dir, "bundle.json")))
    tensors, _ = safetensors_np.load(os.path.join(bundle_dir, "weights.safetensors"))
    names = ["cls_pq_layer._C_k"] + [f"vlad_pq_layers.{i}._C_k" for i in range(cfg["clusters"])]
    books = np.stack([tensors[n] for n in names]).astype(np.float64)
    books /= np.maximum(np.sqrt((books ** 2).sum(axis=3, keepdims=True)), 1e-12)
    return cfg, books.astype(np.float32)


# -------------------------------------------------------------------------- measuring

def encode_decode(x_level, books_level, faiss_pq=None):
    """Codes and reconstruction (n, D) of one level's sub-normalised vectors."""
    if faiss_pq is not None:
        codes = faiss_pq.compute_codes(np.ascontiguousarray(x_level))
        return faiss_pq.decode(codes)
    M, K, dsub = books_level.shape
    n = x_level.shape[0]
    s = x_level.reshape(n, M, dsub).transpose(1, 0, 2)                 # (M, n, dsub)
    codes = np.matmul(s, books_level.transpose(0, 2, 1)).argmax(axis=2)  # (M, n)
    return np.stack([books_level[m][codes[m]] for m in range(M)], axis=1).reshape(n, M * dsub)


def measure(name, fingerprint, db_ids, x, recon, dsub, examples, seed, text=None):
    """The report vidx-quality writes, for reconstructions `recon` (L, n, D) of `x` (L, n, D)."""
    L, n, D = x.shape
    M = D // dsub
    levels = []
    for l in range(L):
        xs, rs = x[l].reshape(n, M, dsub), recon[l].reshape(n, M, dsub)
        rn = np.sqrt((rs.astype(np.float64) ** 2).sum(axis=2))
        cos = (xs * rs).sum(axis=2) / np.where(rn > 0, rn, 1)
        levels.append({"level": l, "mse": float(((x[l] - recon[l]).astype(np.float64) ** 2).sum(axis=1).mean()),
                       "mean_cosine": float(min(1.0, max(-1.0, cos.mean())))})
    sets = []
    count = min(examples, n)
    position = {v: i for i, v in enumerate(db_ids)}
    if count > 0:
        selves = [position[i] for i in sample_order(db_ids, count, seed)]
        q = x[:, selves].transpose(1, 0, 2)
        sets.append(search("example", q, selves, x, recon, M))
    if text is not None:
        sets.append(search("text", normalise_subvectors(text, dsub), None, x, recon, M))
    return {"format": "vidx-quality", "format_version": 1, "quantizer": name, "bundle_fingerprint": fingerprint,
            "database": n, "recall_depths": RECALL_DEPTHS, "rerank_depths": RERANK_DEPTHS, "levels": levels,
            "query_sets": sets}


def top(scores, k):
    idx = np.argpartition(-scores, min(k, len(scores) - 1))[:k] if k < len(scores) else np.arange(len(scores))
    return idx[np.lexsort((idx, -scores[idx]))]


def search(kind, q, selves, x, recon, M):
    Q, L, D = q.shape
    n = x.shape[1]
    hits = np.zeros((L + 1, len(RECALL_DEPTHS)))
    agree = np.zeros(len(RERANK_DEPTHS))
    for s in range(0, Q, 64):
        e = min(Q, s + 64)
        exact = np.stack([(q[s:e, l] / M) @ x[l].T for l in range(L)])     # (L, b, n)
        adc = np.stack([(q[s:e, l] / M) @ recon[l].T for l in range(L)])
        exact = np.concatenate([exact, exact.sum(axis=0, keepdims=True) / L])
        adc = np.concatenate([adc, adc.sum(axis=0, keepdims=True) / L])
        if selves is not None:
            rows = np.arange(e - s)
            exact[:, rows, np.asarray(selves[s:e])] = -np.inf
            adc[:, rows, np.asarray(selves[s:e])] = -np.inf
        best = exact.argmax(axis=2)                                          # (L+1, b)
        mark = np.take_along_axis(adc, best[..., None], axis=2)
        above = (adc > mark).sum(axis=2)
        for t, k in enumerate(RECALL_DEPTHS):
            hits[:, t] += (above < k).sum(axis=1)
        for r in range(e - s):
            full = adc[L, r]
            reference = set(top(full, 10).tolist())
            for t, depth in enumerate(RERANK_DEPTHS):
                if depth >= n:
                    got = top(full, 10)
                else:
                    kept = top(adc[0, r], depth)
                    got = kept[top(full[kept], 10)]
                agree[t] += len(reference & set(got.tolist())) / max(len(reference), 1)
    return {"kind": kind, "queries": Q, "recall": (hits / Q).tolist(), "coarse_to_fine": (agree / Q).tolist()}


# ------------------------------------------------------------------------------ output

def table(ours, theirs, fit):
    lines = [f"fidelity: {ours['database']} held-out videos; sample {fit['sample']} videos, {fit['iterations']} iterations, "
             f"{fit['threads']} threads"]
    pick = [RECALL_DEPTHS.index(k) for k in (1, 10, 100)]
    for si, (a, b) in enumerate(zip(ours["query_sets"], theirs["query_sets"])):
        lines.append(f"{a['kind']} queries ({a['queries']}):   recall@1/10/100 ours | FAISS        MSE ours | FAISS   "
                     "cosine ours | FAISS")
        for l in range(len(a["recall"])):
            name = f"level {l}" if l < len(ours["levels"]) else "all    "
            ra = " ".join(f"{a['recall'][l][t]:.3f}" for t in pick)
            rb = " ".join(f"{b['recall'][l][t]:.3f}" for t in pick)
            err = ""
            if l < len(ours["levels"]):
                err = (f"   {ours['levels'][l]['mse']:7.3f} | {theirs['levels'][l]['mse']:7.3f}"
                       f"   {ours['levels'][l]['mean_cosine']:.4f} | {theirs['levels'][l]['mean_cosine']:.4f}")
            lines.append(f"  {name}  {ra} | {rb}{err}")
        c2f = ", ".join(f"K={d} {x:.3f} | {y:.3f}" + (" (full scan)" if d >= ours["database"] else "")
                        for d, x, y in zip(RERANK_DEPTHS, a["coarse_to_fine"], b["coarse_to_fine"]))
        lines.append(f"  coarse-to-fine top-10 agreement, ours | FAISS: {c2f}")
    runs = lambda v: ", ".join(f"{t:.1f}" for t in v)  # noqa: E731
    lines.append(f"fitting, median of {fit['repeats']} interleaved runs: ours {fit['vidx_seconds']:.1f} s ({runs(fit['vidx_runs'])}; "
                 f"reading the codes files and writing the bundle included; peak {fit['vidx_peak_mib']:.0f} MiB), "
                 f"FAISS {fit['faiss_seconds']:.1f} s ({runs(fit['faiss_runs'])}; training only; this process's peak "
                 f"{fit['faiss_peak_mib']:.0f} MiB, data included): ours / FAISS = {fit['vidx_seconds'] / fit['faiss_seconds']:.2f}x")
    return "\n".join(lines)


def plot(path, ours, theirs):
    matplotlib = pip_import("matplotlib", "matplotlib", "fidelity")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(ours["query_sets"]), figsize=(6 * len(ours["query_sets"]), 4), squeeze=False)
    for ax, a, b in zip(axes[0], ours["query_sets"], theirs["query_sets"]):
        ax.plot(RECALL_DEPTHS, [1.0] * len(RECALL_DEPTHS), "k--", label="float (exact search)")
        ax.plot(RECALL_DEPTHS, a["recall"][-1], "o-", label="vidx (spherical k-means, HCQ scoring)")
        ax.plot(RECALL_DEPTHS, b["recall"][-1], "s-", label="FAISS ProductQuantizer")
        ax.set_xscale("log")
        ax.set_xlabel("k")
        ax.set_ylabel("recall@k of the exact top-1 (all levels)")
        ax.set_title(f"{a['kind']} queries ({a['queries']}), {ours['database']} videos")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write_json(path, value):
    safetensors_np.atomic_write(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


# -------------------------------------------------------------------------------- main

def run(args):
    faiss = pip_import("faiss", "faiss-cpu", "fidelity")
    os.makedirs(args.out_dir, exist_ok=True)
    fitted = os.path.join(args.out_dir, "fitted")
    threads = args.threads or os.cpu_count()
    common = ["--iterations", str(args.iterations), "--seed", str(args.seed), "--threads", str(threads)]
    train_list = os.path.join(args.out_dir, "train.list")
    with open(train_list, "w") as f:
        f.write("".join(p + "\n" for p in args.train))
    ids, emb, _ = read_codes(args.train)
    faiss.omp_set_num_threads(threads)
    import shutil

    def fit_ours():
        """(seconds, peak RSS MiB) of one vidx-fit-codebooks run. The peak comes from
        /usr/bin/time when present: a child's ru_maxrss also counts the pages of this
        process at the fork, which holds the sample by then."""
        if os.path.exists(fitted):
            shutil.rmtree(fitted)
        cmd = [os.path.join(args.bin, "vidx-fit-codebooks"), "--bundle", args.bundle,
               "--embeddings-list", train_list, "--out", fitted] + common
        if not os.path.exists("/usr/bin/time"):
            return run_once(cmd, "fidelity", "vidx-fit-codebooks")
        start = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            fail(f"vidx-fit-codebooks failed with status {proc.returncode}:\n{proc.stderr}")
        return seconds, int(proc.stderr.strip().splitlines()[-1]) / 1024.0

    def fit_faiss(x, record, L, M, K, D):
        pqs = []
        start = time.perf_counter()
        for l in range(L):
            pq = faiss.ProductQuantizer(D, M, int(np.log2(K)))
            pq.cp.niter = args.iterations
            pq.cp.seed = args.seed
            pq.cp.max_points_per_centroid = record["settings"]["max_points_per_centroid"]
            pq.train(np.ascontiguousarray(x[:, l]))
            pqs.append(pq)
        return time.perf_counter() - start, pqs

    # Interleaved repetitions (ours, FAISS, ours, FAISS, ...): medians, so that the load of
    # the machine falls on both alike.
    ours_s, faiss_s, vidx_mib = [], [], 0.0
    x = None
    for r in range(args.repeats):
        print(f"fidelity: vidx-fit-codebooks (run {r + 1} of {args.repeats}) ...", flush=True)
        seconds, mib = fit_ours()
        ours_s.append(seconds)
        vidx_mib = max(vidx_mib, mib)
        if x is None:
            cfg, books = fitted_codebooks(fitted)
            record = cfg["codebooks"]
            L, M, K, dsub = books.shape
            D = M * dsub
            sample = sample_order(ids, record["sample"]["videos"], args.seed)
            if ids_digest(sample) != record["sample"]["ids_sha256"]:
                fail("the sample drawn here differs from vidx-fit-codebooks' (ids digest): the two would not be comparable")
            position = {v: i for i, v in enumerate(ids)}
            x = normalise_subvectors(emb[[position[i] for i in sample]], dsub)
            del emb
        print(f"fidelity: faiss.ProductQuantizer on the same {len(sample)} videos (run {r + 1} of {args.repeats}) ...", flush=True)
        seconds, pqs = fit_faiss(x, record, L, M, K, D)
        faiss_s.append(seconds)
    faiss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    del x
    vidx_s, faiss_med = float(np.median(ours_s)), float(np.median(faiss_s))

    # The held-out figures: vidx-quality for ours, NumPy for FAISS's (and ours, as a check).
    print("fidelity: vidx-quality ...", flush=True)
    ours_path = os.path.join(args.out_dir, "vidx.json")
    quality = [os.path.join(args.bin, "vidx-quality"), "--bundle", fitted, "--embeddings"] + args.heldout + [
        "--examples", str(args.examples), "--seed", str(args.seed), "--threads", str(threads), "--out", ours_path]
    if args.queries:
        quality += ["--queries", args.queries]
    run_once(quality, "fidelity", "vidx-quality")
    ours = json.load(open(ours_path))
    db_ids, db_emb, _ = read_codes(args.heldout)
    xdb = normalise_subvectors(db_emb, dsub).transpose(1, 0, 2).copy()   # (L, n, D)
    text = np.load(args.queries).astype(np.float32) if args.queries else None
    recon_faiss = np.stack([pqs[l].decode(pqs[l].compute_codes(np.ascontiguousarray(xdb[l]))) for l in range(L)])
    theirs = measure("faiss", ours["bundle_fingerprint"], db_ids, xdb, recon_faiss, dsub, args.examples, args.seed, text)
    recon_ours = np.stack([encode_decode(xdb[l], books[l]) for l in range(L)])
    check = measure("vidx (numpy)", ours["bundle_fingerprint"], db_ids, xdb, recon_ours, dsub, args.examples, args.seed, text)
    worst = max(abs(a - b) for sa, sb in zip(ours["query_sets"], check["query_sets"])
                for ra, rb in zip(sa["recall"], sb["recall"]) for a, b in zip(ra, rb))
    write_json(os.path.join(args.out_dir, "faiss.json"), theirs)

    fit = {"sample": len(sample), "iterations": args.iterations, "threads": threads, "repeats": args.repeats,
           "vidx_seconds": vidx_s, "vidx_runs": ours_s, "vidx_peak_mib": vidx_mib,
           "faiss_seconds": faiss_med, "faiss_runs": faiss_s, "faiss_peak_mib": faiss_mib}
    faiss_s = faiss_med
    recall10 = RECALL_DEPTHS.index(10)
    gaps = [a["recall"][l][recall10] - b["recall"][l][recall10]
            for a, b in zip(ours["query_sets"], theirs["query_sets"]) for l in range(len(a["recall"]))]
    within = min(gaps) >= -0.01 - 1e-9   # one point; the figures are multiples of 1/queries
    targets = {"recall10_within_1_point_every_level": within, "worst_recall10_gap": min(gaps),
               "fitting_no_slower_than_faiss": vidx_s <= faiss_s, "fit_ratio": vidx_s / faiss_s,
               "numpy_check_largest_recall_difference": worst}
    write_json(os.path.join(args.out_dir, "fidelity.json"), {"vidx": ours, "faiss": theirs, "fit": fit, "targets": targets})
    print(table(ours, theirs, fit))
    print(f"targets: recall@10 within 1 point of FAISS on every level: "
          f"{'PASS' if within else 'MISS'} (worst gap {min(gaps):+.3f}); "
          f"fitting no slower than FAISS: {'PASS' if vidx_s <= faiss_s else 'MISS'} ({vidx_s / faiss_s:.2f}x)")
    print(f"check: vidx-quality and this script's NumPy figures for the fitted codebooks differ by at most {worst:.4f} in recall")
    png = os.path.join(args.out_dir, "recall.png")
    plot(png, ours, theirs)
    print(f"fidelity: {os.path.join(args.out_dir, 'fidelity.json')}, {png}")
    return targets


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True, help="directory of vidx-fit-codebooks and vidx-quality")
    ap.add_argument("--bundle", required=True, help="the source bundle")
    ap.add_argument("--train", nargs="+", required=True, help="codes files with embeddings to fit on")
    ap.add_argument("--heldout", nargs="+", required=True, help="codes files with embeddings to measure on")
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--iterations", type=int, default=25)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=0, help="0: every core")
    ap.add_argument("--examples", type=int, default=1000)
    ap.add_argument("--queries", help="text queries (Q, L, D) float32 .npy")
    ap.add_argument("--repeats", type=int, default=1, help="interleaved fitting runs of each (medians reported)")
    run(ap.parse_args(argv))


if __name__ == "__main__":
    main()
