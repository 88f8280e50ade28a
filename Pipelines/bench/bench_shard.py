#!/usr/bin/env python3
"""Publishing at scale: vidx-shard on a synthetic index of --videos videos (default 10,000,000).

Makes (once, cached in the work directory; remade when missing or when --videos or
--per-file change) codes files of synthetic videos for the starter bundle: ids
v-00000000 ..., a random SHA-256-shaped content hash, random codes (8 levels x 32), in
files of --per-file videos; and a nightly delta of --delta videos (default 100,000): half
new ids, half live ids with new content and codes. Then times, each in a fresh index
directory:

  disk      this process writing the same number of bytes as the generation holds, in
            8 MiB blocks, then fsync: the disk's sequential write speed (the reference)
  build     vidx-shard --shards 64 over every codes file (a fresh generation)
  verify    vidx-verify of that generation (every byte re-read and checked)
  append    vidx-shard --append of the delta to it
  append-s  the same delta appended to an index of the first --small videos (default
            1,000,000), built the same way: an append whose cost grows with the delta
            and not with the index takes about as long on both
  compact   vidx-shard --compact of the appended generation (every live entry rewritten)

Wall time and peak resident memory of each child come from wait4 (resident memory counts
the pages of memory-mapped shards a tool touches, so it is what the machine sees).
Reported: seconds, videos/s, peak RSS, bytes written per second against the disk's, and
append / append-s.

Targets (issue 13): peak memory under 1.5 GB for build, append and compaction of 10 M
videos in 64 shards; the append's time grows with the delta, not the index (we take
append / append-s <= 1.5 with an index 10x larger). A report, not a test: exits 0 when a
target is missed unless --strict; 1 when a command fails or a count is wrong.
"""
import argparse
import json
import os
import shutil
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "Pipelines", "models"))
import bundle_tools  # noqa: E402
import safetensors_np  # noqa: E402
import bench_common  # noqa: E402
from bench_common import cpu_model  # noqa: E402

DATA_VERSION = 1
TARGET_MIB = 1500
TARGET_APPEND_RATIO = 1.5
SHARDS = 64


def log(msg):
    print(msg, flush=True)


def vid(i):
    return f"v-{i:08d}"


def write_part(path, ids, rng, shape, meta_base):
    """One codes file: ids, random content hashes and codes."""
    n = len(ids)
    hashes = rng.bytes(32 * n).hex()
    records = ",".join(f'{{"id":"{x}","content_hash":"{hashes[64 * k:64 * k + 64]}","status":"ok","error":null}}'
                       for k, x in enumerate(ids))
    meta = dict(meta_base, videos="[" + records + "]")
    codes = rng.integers(0, 256, size=(n,) + shape, dtype=np.uint8)
    safetensors_np.save(path, {"codes": codes}, meta)


def make_data(workdir, bundle, n, per_file, delta):
    """(base files, delta files), cached with a stamp of what made them."""
    data = os.path.join(workdir, "codes")
    stamp_path = os.path.join(workdir, "codes.json")
    fingerprint = bundle_tools.fingerprint(bundle)
    want = {"version": DATA_VERSION, "videos": n, "per_file": per_file, "delta": delta, "bundle": fingerprint}
    cfg, _ = bundle_tools.load_bundle(bundle)
    levels, m, k = cfg["clusters"] + 1, cfg["pq"]["subspaces"], cfg["pq"]["codewords"]
    base_files = [os.path.join(data, f"part-{f:05d}.codes.safetensors") for f in range((n + per_file - 1) // per_file)]
    delta_files = [os.path.join(data, f"delta-{f:05d}.codes.safetensors") for f in range((delta + per_file - 1) // per_file)]
    stamp = None
    if os.path.exists(stamp_path):
        with open(stamp_path) as f:
            stamp = json.load(f)
    if stamp == want and all(os.path.exists(p) for p in base_files + delta_files):
        return base_files, delta_files
    shutil.rmtree(data, ignore_errors=True)
    os.makedirs(data)
    meta = {"format": "vidx-codes", "format_version": "1", "bundle_fingerprint": fingerprint,
            "features_bundle_fingerprint": "", "levels": str(levels), "subspaces": str(m), "codewords": str(k)}
    log(f"generating {n:,} synthetic videos ({len(base_files)} codes files of {per_file:,}) and a delta of {delta:,}...")
    t0 = time.perf_counter()
    rng = np.random.default_rng(13)
    for f, path in enumerate(base_files):
        start = f * per_file
        write_part(path, [vid(i) for i in range(start, min(n, start + per_file))], rng, (levels, m), meta)
        if f % 100 == 99:
            log(f"  {min(n, start + per_file):,} videos ({time.perf_counter() - t0:.0f} s)")
    changed = delta // 2
    ids = [vid(n + i) for i in range(delta - changed)] + [vid(i * (n // max(1, changed))) for i in range(changed)]
    for f, path in enumerate(delta_files):
        write_part(path, ids[f * per_file:(f + 1) * per_file], rng, (levels, m), meta)
    with open(stamp_path, "w") as f:
        json.dump(want, f)
    log(f"  generated in {time.perf_counter() - t0:.0f} s")
    return base_files, delta_files


def tree_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def generation(index):
    with open(os.path.join(index, "CURRENT")) as f:
        name = f.read().strip()
    with open(os.path.join(index, name, "MANIFEST.json")) as f:
        return os.path.join(index, name), json.load(f)


def disk_reference(workdir, nbytes):
    """Seconds to write nbytes in 8 MiB blocks and fsync them, on the work directory's disk."""
    path = os.path.join(workdir, "disk-reference.tmp")
    block = os.urandom(8 << 20)
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        left = nbytes
        while left > 0:
            f.write(block[:min(left, len(block))])
            left -= len(block)
        f.flush()
        os.fsync(f.fileno())
    seconds = time.perf_counter() - t0
    os.remove(path)
    return seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, ".build", "release"))
    ap.add_argument("--workdir", default=os.path.join(ROOT, "bench-out", "shard"))
    ap.add_argument("--videos", type=int, default=10_000_000)
    ap.add_argument("--small", type=int, default=1_000_000, help="videos in the index of the comparison append")
    ap.add_argument("--delta", type=int, default=100_000)
    ap.add_argument("--per-file", type=int, default=10_000)
    ap.add_argument("--bundle", default=os.path.join(ROOT, "models", "starter"))
    ap.add_argument("--keep", action="store_true", help="keep the indexes afterwards (default: removed)")
    ap.add_argument("--strict", action="store_true")
    args = ap.parse_args()
    if args.small % args.per_file or args.small >= args.videos:
        sys.exit("bench-shard: --small must be a multiple of --per-file and below --videos")
    os.makedirs(args.workdir, exist_ok=True)
    shard = os.path.join(args.bin, "vidx-shard")
    verify = os.path.join(args.bin, "vidx-verify")
    base_files, delta_files = make_data(args.workdir, args.bundle, args.videos, args.per_file, args.delta)
    input_bytes = sum(os.path.getsize(p) for p in base_files)
    log(f"machine: {cpu_model()}, {os.cpu_count()} cores; {args.videos:,} videos in {len(base_files)} codes files "
        f"({input_bytes / 1e9:.2f} GB), {SHARDS} shards")

    def run(cmd, what):
        return bench_common.run_once(cmd, "bench-shard", what)

    big = os.path.join(args.workdir, "index")
    small = os.path.join(args.workdir, "index-small")
    for p in (big, small):
        shutil.rmtree(p, ignore_errors=True)
    rows = {}
    problems = []

    def expect(index, live, what):
        _, m = generation(index)
        if m["counts"]["live"] != live:
            problems.append(f"{what}: {m['counts']['live']} live videos, expected {live}")

    log("build ...")
    rows["build"] = run([shard, "--index", big, "--bundle", args.bundle, "--shards", str(SHARDS)] + base_files, "build")
    gen_dir, _ = generation(big)
    gen_bytes = tree_bytes(gen_dir)
    expect(big, args.videos, "build")
    log("disk reference ...")
    t_disk = disk_reference(args.workdir, gen_bytes)
    log("verify ...")
    rows["verify"] = run([verify, big], "verify")
    changed = args.delta // 2
    log("append ...")
    rows["append"] = run([shard, "--index", big, "--bundle", args.bundle, "--append"] + delta_files, "append")
    expect(big, args.videos + args.delta - changed, "append")
    append_bytes = sum(r["bytes"] for r in generation(big)[1]["shards"] if r["sequence"] == 1)
    log("compact ...")
    rows["compact"] = run([shard, "--index", big, "--compact"], "compact")
    expect(big, args.videos + args.delta - changed, "compact")
    compact_bytes = tree_bytes(generation(big)[0])
    log(f"index of {args.small:,} for the comparison append ...")
    small_files = base_files[:args.small // args.per_file]
    run([shard, "--index", small, "--bundle", args.bundle, "--shards", str(SHARDS)] + small_files, "small build")
    in_small = sum(1 for i in range(changed) if i * (args.videos // max(1, changed)) < args.small)
    rows["append-s"] = run([shard, "--index", small, "--bundle", args.bundle, "--append"] + delta_files, "small append")
    expect(small, args.small + args.delta - in_small, "small append")
    if not args.keep:
        for p in (big, small):
            shutil.rmtree(p, ignore_errors=True)

    print()
    print(f"{args.videos:,} synthetic videos, {SHARDS} shards; delta {args.delta:,} ({args.delta - changed:,} new, "
          f"{changed:,} changed); comparison index {args.small:,}")
    print(f"disk reference: {gen_bytes / 1e9:.2f} GB written + fsync in {t_disk:.1f} s = {gen_bytes / t_disk / 1e6:.0f} MB/s")
    print(f"{'step':<10}{'seconds':>9}{'videos/s':>12}{'peak MiB':>10}{'written':>11}{'MB/s':>8}{'of disk':>9}")
    written = {"build": gen_bytes, "append": append_bytes, "compact": compact_bytes}
    count = {"build": args.videos, "verify": args.videos, "append": args.delta, "append-s": args.delta,
             "compact": args.videos + args.delta - changed}
    for step in ("build", "verify", "append", "append-s", "compact"):
        seconds, rss = rows[step]
        w = written.get(step)
        rate = f"{w / seconds / 1e6:>8.0f}{w / seconds / (gen_bytes / t_disk):>8.2f}x" if w else f"{'':>8}{'':>9}"
        wtext = f"{w / 1e9:>9.2f} GB" if w else f"{'':>11}"
        print(f"{step:<10}{seconds:>9.1f}{count[step] / seconds:>12,.0f}{rss:>10.0f}{wtext}{rate}")
    peak = max(rows[s][1] for s in ("build", "append", "compact"))
    ratio = rows["append"][0] / rows["append-s"][0]
    mem_ok = peak < TARGET_MIB
    append_ok = ratio <= TARGET_APPEND_RATIO
    print(f"peak memory of build, append, compact: {peak:.0f} MiB (target < {TARGET_MIB} MiB): {'PASS' if mem_ok else 'MISS'}")
    print(f"append of {args.delta:,} to {args.videos:,} / to {args.small:,}: {ratio:.2f}x for a "
          f"{args.videos / args.small:.0f}x larger index (target <= {TARGET_APPEND_RATIO}x): {'PASS' if append_ok else 'MISS'}")
    if problems:
        sys.exit("bench-shard: " + "; ".join(problems))
    if args.strict and not (mem_ok and append_ok):
        sys.exit(1)


if __name__ == "__main__":
    main()
