"""Checks a codes file against Schemas/codes.md, independently of the Swift reader.

usage: check_codes_file.py CODES.safetensors FEATURES.safetensors BUNDLE_DIR

Exit 0 and prints "ok N videos" when every rule of the spec holds; exit 1 with the list
of violations otherwise.
"""
import hashlib
import json
import sys

import numpy as np

import safetensors_np


def bundle_fingerprint(bundle_dir):
    inner = b""
    for name in ("bundle.json", "weights.safetensors"):
        with open(f"{bundle_dir}/{name}", "rb") as f:
            inner += hashlib.sha256(f.read()).digest()
    return hashlib.sha256(b"vidx-bundle-v1\n" + inner).hexdigest()


def check(codes_path, features_path, bundle_dir):
    problems = []
    tensors, meta = safetensors_np.load(codes_path)
    _, fmeta = safetensors_np.load(features_path)
    with open(f"{bundle_dir}/bundle.json") as f:
        cfg = json.load(f)
    levels, M, K, D = 1 + cfg["clusters"], cfg["pq"]["subspaces"], cfg["pq"]["codewords"], cfg["hidden_size"]

    def want(cond, message):
        if not cond:
            problems.append(message)

    want(meta.get("format") == "vidx-codes", f"format is {meta.get('format')!r}")
    want(meta.get("format_version") == "1", f"format_version is {meta.get('format_version')!r}")
    want(meta.get("bundle_fingerprint") == bundle_fingerprint(bundle_dir), "bundle_fingerprint is not the bundle's")
    want(meta.get("features_bundle_fingerprint") == fmeta.get("bundle_fingerprint", ""),
         "features_bundle_fingerprint differs from the features file's")
    for key, value in (("levels", levels), ("subspaces", M), ("codewords", K)):
        want(meta.get(key) == str(value), f"{key} is {meta.get(key)!r}, expected {value}")
    videos = json.loads(meta["videos"])
    feature_videos = json.loads(fmeta["videos"])
    want([v["id"] for v in videos] == [v["id"] for v in feature_videos], "video ids or order differ from the features file")
    for v, fv in zip(videos, feature_videos):
        want(set(v) >= {"id", "content_hash", "status", "error"}, f"video {v.get('id')}: missing keys")
        want(v["content_hash"] == fv.get("content_hash", ""), f"video {v['id']}: content_hash not copied")
        want(v["status"] in ("ok", "partial", "failed"), f"video {v['id']}: status {v['status']!r}")
        if v["status"] == "ok":
            want(v["error"] is None, f"video {v['id']}: ok with an error")
        else:
            want(isinstance(v["error"], dict) and set(v["error"]) == {"class", "message"},
                 f"video {v['id']}: {v['status']} without a class and message")
        if fv.get("status") == "failed":
            want(v["status"] == "failed", f"video {v['id']}: failed extraction but not failed here")
    N = len(videos)
    codes = tensors.get("codes")
    want(codes is not None and codes.dtype == np.uint8 and codes.shape == (N, levels, M),
         f"codes: {None if codes is None else (codes.dtype, codes.shape)}, expected uint8 {(N, levels, M)}")
    emb = tensors.get("embeddings")
    if emb is not None:
        want(emb.dtype == np.float32 and emb.shape == (N, levels, D), f"embeddings: {emb.dtype} {emb.shape}")
    if codes is not None and codes.shape == (N, levels, M):
        want(int(codes.max(initial=0)) < K, "a code is >= K")
        for i, v in enumerate(videos):
            if v["status"] == "failed":
                want(not codes[i].any(), f"video {v['id']}: failed but has codes")
                if emb is not None:
                    want(not emb[i].any(), f"video {v['id']}: failed but has embeddings")
            elif emb is not None:
                norms = np.linalg.norm(emb[i, 1:], axis=1)
                want(np.allclose(norms, 1, atol=1e-5), f"video {v['id']}: fine levels are not unit-norm")
    want(set(tensors) <= {"codes", "embeddings"}, f"unexpected tensors {sorted(set(tensors) - {'codes', 'embeddings'})}")
    return N, problems


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    n, problems = check(*sys.argv[1:])
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)
    print(f"ok {n} videos")
