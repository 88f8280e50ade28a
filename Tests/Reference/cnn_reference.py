#!/usr/bin/env python3
"""Independent NumPy reference of a vidx-cnn network's forward pass (float64, NCHW).

    cnn_reference.py WEIGHTS.safetensors IMAGES.npy OUT.npz

Reads a network in the vidx-cnn format (see make_cnn_test_net.py) and uint8 RGB images
(N, size, size, 3), and writes OUT.npz with
- `features` (N, C) float32: the last convolution's output after global average pooling;
- `logits` (N, classes) float32: the classifier applied to the features.
Everything is computed in float64, generically over the `architecture` list: each
convolution is zero padding [top, bottom, left, right], an im2col of the padded input and
one matrix product per group (PyTorch's Conv2d cross-correlation), then bias, then the
activation (ReLU6 = clip to [0, 6], or none), then the residual: a layer with `add_saved`
adds the tensor that an earlier layer saved, with `save_input_as`, from its input.
The input is (pixel - mean[c]) / scale[c] with the channels in the `layout` order.

Nothing here comes from the Swift code (which works in NHWC with its own loops): this is
the yardstick it is measured against.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.normpath(os.path.join(_HERE, "..", "..", "Pipelines", "models")))

import safetensors_np  # noqa: E402

__all__ = ["load_network", "conv2d", "forward", "main"]


def _pair(v):
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def load_network(path: str):
    """(tensors, input spec, architecture) of a vidx-cnn file, with basic format checks."""
    tensors, meta = safetensors_np.load(path)
    if meta.get("format") != "vidx-cnn" or meta.get("format_version") != "1":
        raise ValueError(f"{path}: not a vidx-cnn version 1 file (format {meta.get('format')!r}, "
                         f"version {meta.get('format_version')!r})")
    return tensors, json.loads(meta["input"]), json.loads(meta["architecture"])


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride, pad, groups: int) -> np.ndarray:
    """Cross-correlation of x (N, C, H, W) with w (O, C / groups, kh, kw), plus b; float64.

    im2col: cols[n, c, i, j, p, q] = padded[n, c, i + sh * p, j + sw * q], then per group
    (O / groups, C / groups * kh * kw) x (C / groups * kh * kw, Ho * Wo).
    """
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    sh, sw = stride
    top, bottom, left, right = pad
    if c != cg * groups or o % groups:
        raise ValueError(f"conv2d: input has {c} channels, weight {w.shape}, groups {groups}")
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    ho = (h + top + bottom - kh) // sh + 1
    wo = (wd + left + right - kw) // sw + 1
    cols = np.empty((n, c, kh, kw, ho, wo), dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
    og = o // groups
    cols = cols.reshape(n, groups, cg * kh * kw, ho * wo)
    wg = w.astype(np.float64).reshape(groups, og, cg * kh * kw)
    out = np.matmul(wg[None], cols)  # (n, groups, og, ho * wo)
    return out.reshape(n, o, ho, wo) + b.astype(np.float64)[None, :, None, None]


def forward(tensors: dict, inp: dict, arch: list, images: np.ndarray):
    """(features, logits), float64, for uint8 images (N, size, size, 3)."""
    size = int(inp["size"])
    if images.ndim != 4 or images.shape[1:] != (size, size, 3) or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N, {size}, {size}, 3), got {images.dtype} {images.shape}")
    order = {"RGB": [0, 1, 2], "BGR": [2, 1, 0]}[inp["layout"]]
    x = images[..., order].astype(np.float64)
    x = (x - np.asarray(inp["mean"], np.float64)) / np.asarray(inp["scale"], np.float64)
    x = x.transpose(0, 3, 1, 2)  # NCHW
    saved = {}
    pooled = logits = None
    for e in arch:
        kind = e["kind"]
        if kind == "conv":
            i = e["index"]
            if "save_input_as" in e:
                saved[e["save_input_as"]] = x
            w = tensors[f"layers.{i}.weight"]
            y = conv2d(x, w, tensors[f"layers.{i}.bias"], _pair(e["stride"]), e["pad"], int(e["groups"]))
            if y.shape[1] != e["out"]:
                raise ValueError(f"layer {i}: {y.shape[1]} output channels, architecture says {e['out']}")
            if e["activation"] == "relu6":
                y = np.clip(y, 0.0, 6.0)
            elif e["activation"] != "none":
                raise ValueError(f"layer {i}: unknown activation {e['activation']!r}")
            if "add_saved" in e:
                y = y + saved.pop(e["add_saved"])
            x = y
        elif kind == "global_average_pool":
            pooled = x.mean(axis=(2, 3))
        elif kind == "linear":
            w = tensors[f"{e['name']}.weight"].astype(np.float64)
            logits = pooled @ w.T + tensors[f"{e['name']}.bias"].astype(np.float64)
        else:
            raise ValueError(f"unknown layer kind {kind!r}")
    return pooled, logits


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
        print("usage: cnn_reference.py WEIGHTS.safetensors IMAGES.npy OUT.npz", file=sys.stderr)
        return 2
    tensors, inp, arch = load_network(argv[0])
    images = np.load(argv[1])
    features, logits = [], []
    for start in range(0, len(images), 4):  # bounds the im2col buffers (224 x 224: ~30 MB per image)
        f, l = forward(tensors, inp, arch, images[start:start + 4])
        features.append(f)
        logits.append(l)
    save_npz(argv[2], {"features": np.concatenate(features).astype(np.float32),
                       "logits": np.concatenate(logits).astype(np.float32)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
