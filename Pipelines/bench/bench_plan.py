#!/usr/bin/env python3
"""Planning benchmark: vidx-plan on a synthetic upload list against a synthetic index.

Makes (once, cached in the work directory; remade when missing or when vidx-shard
changes) an index of --videos videos (default 1,000,000) for the starter bundle: ids
v-0000000 ..., content hash SHA-256 of the id, random codes, written as codes files and
built with vidx-shard (8 shards). Then, for each size N of --sizes (default 100,000 and
1,000,000), an upload list (Schemas/work-unit.schema.json, content_hash given, so nothing
is hashed: the issue's "hashing aside") of N uploads:

  80 %  new ids (v-1000000 ... upwards)
  10 %  changed: a live id with new content
  10 %  unchanged: a live id with its indexed content

in a random order, and times, each in a fresh work directory:

  plan      vidx-plan --input LIST --index INDEX --work WORK --bundle models/starter
            (read the live generation's ids and hashes, diff, cut units of 32, write
            plan.json, units.list, units.mk and one UNIT.jsonl per unit)
  replan    the same list shuffled again, into the same work directory: the unit list
            must come out identical (unit names depend on content, not on listing order)
  sort      GNU sort of the same list's lines (LC_ALL=C, --parallel=cores): the floor
            for any planner, which must at least order the ids (the reference)

Wall time and peak resident memory of each child come from wait4. Reported: seconds,
uploads/s, peak RSS and RSS per upload, plan / sort, and how time and memory grow from
the smallest to the largest N (linear growth: bounded per upload).

Target (issue 12): planning 1,000,000 uploads against an index of 1,000,000 videos takes
well under a minute (we take 30 s as the line) with memory proportional to the work. A
report, not a test: exits 0 when the target is missed unless --strict; 1 when a command
fails or a re-plan changes the units.
"""
import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "Pipelines", "models"))
sys.path.insert(0, os.path.join(ROOT, "Tests", "Reference"))
import bundle_tools  # noqa: E402
import safetensors_np  # noqa: E402
import bench_common  # noqa: E402
from bench_common import cpu_model, sha256_file  # noqa: E402

TARGET_SECONDS = 30.0
PER_FILE = 50_000


def log(msg):
    print(msg, flush=True)


def content_hash(vid, version=0):
    return hashlib.sha256(f"{vid}/{version}".encode()).hexdigest()


def vid(i):
    return f"v-{i:07d}"


def make_index(workdir, bin_dir, bundle, n):
    """The live index of n videos (cached; stamped with vidx-shard's hash and n)."""
    index = os.path.join(workdir, "index")
    stamp_path = os.path.join(workdir, "index.json")
    want = {"videos": n, "vidx_shard": sha256_file(os.path.join(bin_dir, "vidx-shard")),
            "bundle": bundle_tools.fingerprint(bundle)}
    if os.path.exists(stamp_path) and json.load(open(stamp_path)) == want and os.path.exists(index + "/CURRENT"):
        return index
    shutil.rmtree(index, ignore_errors=True)
    codes_dir = os.path.join(workdir, "codes")
    shutil.rmtree(codes_dir, ignore_errors=True)
    os.makedirs(codes_dir)
    cfg, _ = bundle_tools.load_bundle(bundle)
    levels, m = cfg["clusters"] + 1, cfg["pq"]["subspaces"]
    rng = np.random.default_rng(12)
    log(f"making the live index: {n} videos for the starter bundle ({levels} levels x {m} codes)...")
    t0 = time.perf_counter()
    files = []
    for f, start in enumerate(range(0, n, PER_FILE)):
        end = min(n, start + PER_FILE)
        records = [{"id": vid(i), "content_hash": content_hash(vid(i)), "status": "ok", "error": None}
                   for i in range(start, end)]
        meta = {"format": "vidx-codes", "format_version": "1", "bundle_fingerprint": want["bundle"],
                "features_bundle_fingerprint": "", "levels": str(levels), "subspaces": str(m),
                "codewords": str(cfg["pq"]["codewords"]), "videos": json.dumps(records, separators=(",", ":"))}
        path = os.path.join(codes_dir, f"part-{f:04d}.codes.safetensors")
        codes = rng.integers(0, 256, size=(end - start, levels, m), dtype=np.uint8)
        safetensors_np.save(path, {"codes": codes}, meta)
        files.append(path)
    subprocess.run([os.path.join(bin_dir, "vidx-shard"), "--index", index, "--bundle", bundle, "--shards", "8"] + files,
                   check=True, stdout=subprocess.DEVNULL)
    shutil.rmtree(codes_dir)
    with open(stamp_path, "w") as f:
        json.dump(want, f)
    log(f"  built in {time.perf_counter() - t0:.1f} s")
    return index


def make_list(path, n, live, seed):
    """n uploads: 80 % new, 10 % changed, 10 % unchanged (live ids), in a seeded random order."""
    changed, unchanged = n // 10, n // 10
    new = n - changed - unchanged
    rows = [(vid(live + i), content_hash(vid(live + i))) for i in range(new)]
    rows += [(vid(i), content_hash(vid(i), 1)) for i in range(changed)]
    rows += [(vid(i), content_hash(vid(i))) for i in range(changed, changed + unchanged)]
    random.Random(seed).shuffle(rows)
    with open(path, "w") as f:
        for i, h in rows:
            f.write(f'{{"id":"{i}","path":"/uploads/{i}.mp4","content_hash":"{h}"}}\n')
    return {"new": new, "changed": changed, "unchanged": unchanged}


def run(cmd, what, env=None):
    """(seconds, the child's peak RSS in MiB) of cmd; exits naming it when it fails."""
    return bench_common.run_once(cmd, "bench-plan", what, env=env)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, ".build", "release"))
    ap.add_argument("--workdir", default=os.path.join(ROOT, "bench-out", "plan"))
    ap.add_argument("--videos", type=int, default=1_000_000, help="videos in the live index")
    ap.add_argument("--sizes", default="100000,1000000", help="upload list sizes")
    ap.add_argument("--bundle", default=os.path.join(ROOT, "models", "starter"))
    ap.add_argument("--strict", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    cores = os.cpu_count() or 1
    index = make_index(args.workdir, args.bin, args.bundle, args.videos)
    sizes = [int(s) for s in args.sizes.split(",")]
    log(f"machine: {cpu_model()}, {cores} cores; index of {args.videos} videos")
    rows = []
    for n in sizes:
        lst = os.path.join(args.workdir, f"uploads-{n}.jsonl")
        mix = make_list(lst, n, args.videos, seed=n)
        work = os.path.join(args.workdir, f"work-{n}")
        shutil.rmtree(work, ignore_errors=True)
        plan_cmd = [os.path.join(args.bin, "vidx-plan"), "--input", lst, "--index", index, "--work", work,
                    "--bundle", args.bundle]
        t_plan, rss_plan = run(plan_cmd, "vidx-plan")
        with open(os.path.join(work, "plan.json")) as f:
            plan = json.load(f)
        c = plan["counts"]
        if (c["new"], c["changed"], c["unchanged"]) != (mix["new"], mix["changed"], mix["unchanged"]):
            sys.exit(f"bench-plan: the plan's counts {c} are not the list's {mix}")
        units = open(os.path.join(work, "units.list")).read()
        shuffled = lst + ".shuffled"
        lines = open(lst).readlines()
        random.Random(n + 1).shuffle(lines)
        open(shuffled, "w").writelines(lines)
        t_replan, rss_replan = run(plan_cmd[:2] + [shuffled] + plan_cmd[3:], "vidx-plan (re-plan)")
        if open(os.path.join(work, "units.list")).read() != units:
            sys.exit("bench-plan: re-planning the shuffled list changed the units")
        t_sort, rss_sort = run(["sort", f"--parallel={cores}", "-o", lst + ".sorted", lst], "sort",
                                    dict(os.environ, LC_ALL="C"))
        for p in (shuffled, lst + ".sorted"):
            os.remove(p)
        rows.append({"n": n, "plan": t_plan, "rss": rss_plan, "replan": t_replan, "rss_replan": rss_replan,
                     "sort": t_sort, "rss_sort": rss_sort, "units": len(plan["units"])})
        log(f"  {n} uploads: plan {t_plan:.2f} s ({rss_plan:.0f} MiB), re-plan {t_replan:.2f} s, "
            f"sort {t_sort:.2f} s; {len(plan['units'])} units")

    print()
    print(f"index: {args.videos} live videos; uploads: 80 % new, 10 % changed, 10 % unchanged; content hashes given")
    print(f"{'uploads':>10}{'plan s':>9}{'uploads/s':>12}{'peak MiB':>10}{'B/upload':>10}{'re-plan s':>11}"
          f"{'sort s':>8}{'plan/sort':>11}{'units':>8}")
    for r in rows:
        print(f"{r['n']:>10}{r['plan']:>9.2f}{r['n'] / r['plan']:>12.0f}{r['rss']:>10.0f}"
              f"{r['rss'] * 1048576 / (r['n'] + args.videos):>10.0f}{r['replan']:>11.2f}{r['sort']:>8.2f}"
              f"{r['plan'] / r['sort']:>10.1f}x{r['units']:>8}")
    print("(B/upload: peak RSS over uploads + live videos)")
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        print(f"growth {a['n']} -> {b['n']} uploads ({b['n'] / a['n']:.0f}x): time {b['plan'] / a['plan']:.1f}x, "
              f"peak memory {b['rss'] / a['rss']:.1f}x (the live index's {args.videos} ids are read either way)")
    big = max(rows, key=lambda r: r["n"])
    verdict = "PASS" if big["plan"] <= TARGET_SECONDS else "MISS"
    print(f"{big['n']} uploads against {args.videos} videos: {big['plan']:.2f} s (target <= {TARGET_SECONDS:.0f} s): {verdict}")
    if args.strict and verdict != "PASS":
        sys.exit(1)


if __name__ == "__main__":
    main()
