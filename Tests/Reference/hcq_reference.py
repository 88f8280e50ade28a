#!/usr/bin/env python3
"""Independent NumPy reference of HCQ's video side, written from Documentation/HCQ-inference.md.

    hcq_reference.py BUNDLE_DIR FEATURES.safetensors OUT.npz

Reads a model bundle and a features file (Schemas/features.md) and writes OUT.npz with
- `embeddings` (N, L, D) float32: level 0 the mean of the L2-normalised [AGG] outputs (not
  re-normalised), levels 1..clusters the L2-normalised GhostVLAD vectors;
- `codes` (N, L, M) uint8: argmax over codewords of <normalised sub-vector, normalised codeword>;
- `margins` (N, L, M) float64: best minus second-best codeword similarity (near ties);
- `ok` (N,) uint8 flag (uint8, not bool: the Swift tests read it with `uint8s`, which
  refuses BOOL): 0, with zero rows, for videos that failed extraction, have an expert of
  the wrong width, an expert the bundle does not know, malformed tensors, or NaN/infinity
  anywhere except as the first value of a matrix (which makes that expert missing, as in
  the reference's data loader); non-finite times count only for windowed experts.
Everything is computed in float64. Refused videos are listed on stderr.

Checked against the authors' fixture (Tests/Fixtures/hcq-small): embeddings within 1.4e-7,
all codes equal. Each of these alternatives breaks it (share of codes that change): temporal
tokens of type 0 (40%) or 1 (38%), padded tokens of type 0 (14%) or position 0 (21%), padded
rows as zero vectors instead of normalise(bias) (51%), VLAD weight 0 instead of logit 0 on
masked tokens (50%), max-pool over the kept subset (4%), positions from the window start (3%)
or without the +2 (9%), the first T rows instead of the RandomState(0) subset (24%), one
RandomState for all experts (20%), coarse level over present experts only (2%), [AGG] mask
always 1 (0.2%). Sorting the subset changes nothing (attention is order-free; positions come
from the times), but is kept.

Nothing here comes from the Swift encoder: this is the yardstick it is measured against.
"""

from __future__ import annotations

import json
import math
import os
import sys

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.normpath(os.path.join(_HERE, "..", "..", "Pipelines", "models")))

import bundle_tools  # noqa: E402
import safetensors_np  # noqa: E402

__all__ = ["erf", "gelu", "encode_video", "encode_features", "read_features", "main"]


# ---------------------------------------------------------------------------------------
# erf to double precision, vectorised: piecewise Chebyshev interpolants of math.erf on
# [0, 6] (erf(6) = 1 - 2e-17), built once at import. np.frompyfunc(math.erf) is exact
# but several times slower, and NumPy has no erf of its own.
_ERF_STEP = 0.25
_ERF_DEGREE = 10
# Row j: Chebyshev coefficients of erf on [j*step, (j+1)*step] in u = 2 (x - j*step) / step - 1
# (max error 2e-15); the last row (the constant 1) stands for |x| >= 6. Stored transposed.
_ERF_COEF = np.ascontiguousarray(np.array([np.polynomial.chebyshev.Chebyshev.interpolate(
    np.vectorize(math.erf), _ERF_DEGREE, domain=[a, a + _ERF_STEP]).coef
    for a in np.arange(0.0, 6.0, _ERF_STEP)] + [[1.0] + [0.0] * _ERF_DEGREE]).T)


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, elementwise, float64, within ~2e-15 of math.erf."""
    x = np.asarray(x, dtype=np.float64)
    shape = x.shape
    x = x.reshape(-1)
    last = _ERF_COEF.shape[1] - 1
    q = np.abs(x) * (1.0 / _ERF_STEP)
    q[np.isnan(q)] = np.inf
    np.minimum(q, last, out=q)
    piece = q.astype(np.int64)
    u = q - piece
    u *= 2.0
    u -= 1.0
    u2 = 2.0 * u
    b1 = _ERF_COEF[_ERF_DEGREE].take(piece)
    b2 = np.zeros_like(u)
    for k in range(_ERF_DEGREE - 1, 0, -1):  # Clenshaw, coefficients gathered per element
        t = u2 * b1
        t -= b2
        t += _ERF_COEF[k].take(piece)
        b1, b2 = t, b1
    out = u * b1
    out -= b2
    out += _ERF_COEF[0].take(piece)
    out = np.copysign(out, x)
    out[np.isnan(x)] = np.nan
    return out.reshape(shape)


def gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU: x * (1 + erf(x / sqrt 2)) / 2."""
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def l2n(x: np.ndarray) -> np.ndarray:
    """torch.nn.functional.normalize along the last axis (norm clamped at 1e-12)."""
    n = np.sqrt(np.sum(x * x, axis=-1, keepdims=True))
    return x / np.maximum(n, 1e-12)


def layer_norm(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def softmax(x, axis=-1):
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


# ---------------------------------------------------------------------------------------
def build_tokens(cfg: dict, W: dict, experts: dict):
    """The transformer input for one video.

    `experts` maps an expert name to (features (n, width), times (n, 2)) for the experts that
    are present (n >= 1); absent names are missing. Returns (input features (S, D),
    positions (S,), types (S,), attention mask (S,), VLAD mask (S,), [AGG] indices).
    """
    D = cfg["hidden_size"]
    T = cfg["tokens_per_expert"]
    E = len(cfg["experts"])
    S = 1 + E * (T + 1)
    max_pos = cfg["max_positions"]
    feats = np.zeros((S, D))
    pos = np.zeros(S, dtype=np.int64)
    typ = np.zeros(S, dtype=np.int64)
    mask = np.zeros(S)
    vmask = np.zeros(S)
    mask[0] = 1.0                       # [CLS]: zero feature, position 0, type 0, mask 1
    agg = []
    for j, e in enumerate(cfg["experts"]):
        a = 1 + j * (T + 1)
        agg.append(a)
        w = e["width"]
        Wp = W[f"video_dim_reduce.{e['name']}.fc.weight"].astype(np.float64)
        bp = W[f"video_dim_reduce.{e['name']}.fc.bias"].astype(np.float64)
        rows = np.zeros((T, w))         # raw features; zero rows are padding
        k = 0
        maxpool = np.zeros(w)
        if e["name"] in experts:
            X, times = experts[e["name"]]
            n = X.shape[0]
            maxpool = X.max(axis=0)     # over ALL rows, before subsetting
            if n > T:
                idx = np.sort(np.random.RandomState(0).choice(n, T, replace=False))
                X, times = X[idx], times[idx]
            k = X.shape[0]
            rows[:k] = X
            mask[a] = 1.0
        # The projection (Linear then L2-normalise) applies to the max-pool and to every
        # temporal row, padding included: padded rows become normalise(bias).
        feats[a] = l2n(maxpool @ Wp.T + bp)
        feats[a + 1:a + 1 + T] = l2n(rows @ Wp.T + bp)
        typ[a:a + 1 + T] = e["type_id"]  # [AGG] and all T temporal tokens, padded ones too (as in MMT)
        pos[a] = 0
        pos[a + 1:a + 1 + T] = 1         # untimed experts and padded tokens: MMT's "unknown" position
        # (0 = no position, for [CLS]/[AGG]; 1 = unknown; >= 2 a time: hence the +2, and why the
        # features file's -1, -1 times of untimed rows would also land on 1)
        if k and e["timing"] == "windowed":
            mid = (times[:k, 0] + times[:k, 1]) / 2.0
            pos[a + 1:a + 1 + k] = np.floor(np.clip(mid + 2.0, 0, max_pos - 1)).astype(np.int64)
        mask[a + 1:a + 1 + k] = 1.0
        vmask[a + 1:a + 1 + k] = 1.0
    return feats, pos, typ, mask, vmask, agg


def transformer(cfg: dict, W: dict, feats, pos, typ, mask) -> np.ndarray:
    """BERT encoder without word embeddings, post-LN, erf-GELU, -10000 on masked keys."""
    f64 = lambda k: W[k].astype(np.float64)  # noqa: E731
    eps = cfg["layer_norm_eps"]
    D = cfg["hidden_size"]
    H = cfg["heads"]
    dh = D // H
    x = feats + f64("vid_bert.embeddings.position_embeddings.weight")[pos] \
        + f64("vid_bert.embeddings.token_type_embeddings.weight")[typ]
    x = layer_norm(x, f64("vid_bert.embeddings.layer_norm.weight"), f64("vid_bert.embeddings.layer_norm.bias"), eps)
    S = x.shape[0]
    bias = (1.0 - mask)[None, None, :] * -10000.0
    for i in range(cfg["layers"]):
        p = f"vid_bert.encoder.layer.{i}."
        lin = lambda t, name: t @ f64(p + name + ".weight").T + f64(p + name + ".bias")  # noqa: E731
        q = lin(x, "attention.self.query").reshape(S, H, dh).transpose(1, 0, 2)
        k = lin(x, "attention.self.key").reshape(S, H, dh).transpose(1, 0, 2)
        v = lin(x, "attention.self.value").reshape(S, H, dh).transpose(1, 0, 2)
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(dh) + bias
        ctx = (softmax(scores) @ v).transpose(1, 0, 2).reshape(S, D)
        a = layer_norm(lin(ctx, "attention.output.dense") + x,
                       f64(p + "attention.output.layer_norm.weight"), f64(p + "attention.output.layer_norm.bias"), eps)
        h = gelu(lin(a, "intermediate.dense"))
        x = layer_norm(lin(h, "output.dense") + a,
                       f64(p + "output.layer_norm.weight"), f64(p + "output.layer_norm.bias"), eps)
    return x


def ghost_vlad(cfg: dict, W: dict, H: np.ndarray, vmask: np.ndarray) -> np.ndarray:
    """(clusters, D) L2-normalised GhostVLAD vectors."""
    C = cfg["clusters"]
    f64 = lambda k: W[k].astype(np.float64)  # noqa: E731
    logits = (H @ f64("ghost_vlad.clusters"))[:, :C]      # drop the ghost column first
    logits = logits * vmask[:, None]                       # masked tokens get logit 0, not weight 0
    logits = (logits - f64("ghost_vlad.batch_norm.running_mean")) \
        / np.sqrt(f64("ghost_vlad.batch_norm.running_var") + cfg["batch_norm_eps"]) \
        * f64("ghost_vlad.batch_norm.weight") + f64("ghost_vlad.batch_norm.bias")
    s = softmax(logits, axis=1)                            # (S, C)
    centres = f64("ghost_vlad.clusters2")[0].T             # (C, D): c_k = clusters2[0, :, k]
    v = s.T @ H - s.sum(axis=0)[:, None] * centres
    return l2n(v)


def quantize(cfg: dict, W: dict, emb: np.ndarray):
    """Codes (L, M) and margins (L, M) of the (L, D) embeddings."""
    M = cfg["pq"]["subspaces"]
    L, D = emb.shape
    codes = np.zeros((L, M), dtype=np.uint8)
    margins = np.zeros((L, M))
    for level in range(L):
        key = "cls_pq_layer._C_k" if level == 0 else f"vlad_pq_layers.{level - 1}._C_k"
        cb = l2n(W[key].astype(np.float64))                # (M, K, dsub)
        x = l2n(emb[level].reshape(M, D // M))             # (M, dsub)
        sims = np.einsum("md,mkd->mk", x, cb)
        codes[level] = np.argmax(sims, axis=1)
        if sims.shape[1] > 1:
            top2 = np.sort(sims, axis=1)[:, -2:]
            margins[level] = top2[:, 1] - top2[:, 0]
        else:
            margins[level] = np.inf
    return codes, margins


def encode_video(cfg: dict, W: dict, experts: dict):
    """(embeddings (L, D), codes (L, M), margins (L, M)) of one video; see build_tokens for `experts`."""
    feats, pos, typ, mask, vmask, agg = build_tokens(cfg, W, experts)
    H = transformer(cfg, W, feats, pos, typ, mask)
    coarse = l2n(H[agg]).mean(axis=0)   # all experts, missing ones included; not re-normalised
    emb = np.concatenate([coarse[None, :], ghost_vlad(cfg, W, H, vmask)], axis=0)
    codes, margins = quantize(cfg, W, emb)
    return emb, codes, margins


# ---------------------------------------------------------------------------------------
def read_features(path: str, cfg: dict):
    """[(video record, experts dict or None, reason)] from a features file.

    experts maps name -> (features float64 (n, w), times float64 (n, 2)) for present experts;
    None (with a reason) for a video the encoder must refuse.
    """
    tensors, meta = safetensors_np.load(path)
    if meta.get("format") != "vidx-features":
        raise ValueError(f"{path}: not a vidx-features file (format {meta.get('format')!r})")
    if int(meta.get("format_version", "0")) > 1:
        raise ValueError(f"{path}: format_version {meta['format_version']} is newer than 1")
    videos = json.loads(meta.get("videos", "[]"))
    extractors = json.loads(meta.get("extractors", "{}"))
    for e in cfg["experts"]:
        if e["name"] in extractors and extractors[e["name"]] != e["extractor"]:
            raise ValueError(f"{path}: expert {e['name']} was extracted by {extractors[e['name']]!r}, "
                             f"the bundle needs {e['extractor']!r}")
    by_name = {e["name"]: e for e in cfg["experts"]}
    per_video: dict = {}
    for name in tensors:
        parts = name.split("/")
        if len(parts) == 3 and parts[0].startswith("v") and parts[0][1:].isdigit() and parts[2] in ("features", "times"):
            per_video.setdefault(int(parts[0][1:]), {}).setdefault(parts[1], {})[parts[2]] = tensors[name]
    out = []
    for i, rec in enumerate(videos):
        found = per_video.get(i, {})
        if rec.get("status") == "failed":
            out.append((rec, None, "failed extraction"))
            continue
        experts = {}
        reason = None
        for ename in sorted(found):
            pair = found[ename]
            if ename not in by_name:
                reason = f"unknown_expert: {ename}"
                break
            if "features" not in pair or "times" not in pair:
                reason = f"bad_features: {ename} lacks its features or times tensor"
                break
            X, tm = pair["features"], pair["times"]
            width = by_name[ename]["width"]
            if X.ndim != 2 or X.shape[1] != width:
                reason = f"wrong_width: {ename} has shape {list(X.shape)}, width {width} expected"
                break
            if tm.shape != (X.shape[0], 2):
                reason = f"bad_features: {ename} times shape {list(tm.shape)} for {X.shape[0]} rows"
                break
            if X.shape[0] == 0:
                continue                                   # zero rows: missing
            if np.isnan(X[0, 0]):
                continue                                   # first value NaN: missing (reference loader)
            if not np.isfinite(X).all():
                reason = f"bad_features: {ename} has NaN or infinity"
                break
            if by_name[ename]["timing"] == "windowed" and not np.isfinite(tm).all():
                reason = f"bad_features: {ename} has non-finite times"
                break
            experts[ename] = (X.astype(np.float64), tm.astype(np.float64))
        out.append((rec, None, reason) if reason else (rec, experts, None))
    return out


def encode_features(bundle_dir: str, features_path: str):
    """Encodes a features file: dict of embeddings, codes, margins, ok, plus the reasons list."""
    cfg, W = bundle_tools.load_bundle(bundle_dir)
    items = read_features(features_path, cfg)
    N = len(items)
    L = 1 + cfg["clusters"]
    D = cfg["hidden_size"]
    M = cfg["pq"]["subspaces"]
    emb = np.zeros((N, L, D), dtype=np.float32)
    codes = np.zeros((N, L, M), dtype=np.uint8)
    margins = np.zeros((N, L, M), dtype=np.float64)
    ok = np.zeros(N, dtype=np.uint8)
    reasons = []
    for i, (rec, experts, reason) in enumerate(items):
        if experts is None:
            reasons.append((i, rec.get("id"), reason))
            continue
        e, c, m = encode_video(cfg, W, experts)
        emb[i], codes[i], margins[i], ok[i] = e, c, m, 1
    return {"embeddings": emb, "codes": codes, "margins": margins, "ok": ok}, reasons


def save_npz(path: str, arrays: dict) -> None:
    """np.savez through a temporary file and a rename."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        print("usage: hcq_reference.py BUNDLE_DIR FEATURES.safetensors OUT.npz", file=sys.stderr)
        return 2
    try:
        arrays, reasons = encode_features(argv[0], argv[1])
    except (ValueError, OSError) as e:
        print(f"hcq_reference.py: error: {e}", file=sys.stderr)
        return 1
    for i, vid, reason in reasons:
        print(f"video {i} ({vid}): not encoded: {reason}", file=sys.stderr)
    save_npz(argv[2], arrays)
    return 0


if __name__ == "__main__":
    sys.exit(main())
