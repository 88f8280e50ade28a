"""Rewrites a codes file (Schemas/codes.md) with one deliberate change, for the tests of
the shard stage's input checks.

usage: edit_codes_file.py IN OUT CHANGE [ARG]

CHANGE:
  all-failed CLASS      every video status failed with error class CLASS, codes zero
  embeddings-width W    replace the embeddings tensor by one W wide (seeded values)
  embeddings-nan        the first ok video's coarse embedding gets a NaN
  set-id INDEX ID       video INDEX gets external id ID
  set-status INDEX S    video INDEX gets status S
"""
import json
import sys

import numpy as np

import safetensors_np


def main():
    src, dst, change, *args = sys.argv[1:]
    tensors, meta = safetensors_np.load(src)
    videos = json.loads(meta["videos"])
    if change == "all-failed":
        for v in videos:
            v["status"] = "failed"
            v["error"] = {"class": args[0], "message": "no such file (the storage mount is missing)"}
        tensors["codes"] = np.zeros_like(tensors["codes"])
    elif change == "embeddings-width":
        n, levels = len(videos), int(meta["levels"])
        width = int(args[0])
        tensors["embeddings"] = np.random.default_rng(3).standard_normal((n, levels, width)).astype(np.float32)
    elif change == "embeddings-nan":
        first = next(i for i, v in enumerate(videos) if v["status"] != "failed")
        e = tensors["embeddings"].copy()
        e[first, 0, 0] = np.nan
        tensors["embeddings"] = e
    elif change == "set-id":
        videos[int(args[0])]["id"] = args[1]
    elif change == "set-status":
        v = videos[int(args[0])]
        v["status"] = args[1]
        if args[1] in ("partial", "failed") and v.get("error") is None:
            v["error"] = {"class": "corrupt", "message": "set by edit_codes_file.py"}
    else:
        sys.exit(f"unknown change {change!r}")
    meta["videos"] = json.dumps(videos, separators=(",", ":"), ensure_ascii=False)
    safetensors_np.save(dst, tensors, meta)


if __name__ == "__main__":
    main()
