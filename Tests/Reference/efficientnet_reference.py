#!/usr/bin/env python3
"""Independent NumPy reference of the appearance expert's CNN (EfficientNet-Lite0).

    efficientnet_reference.py WEIGHTS_DIR IMAGES.npy OUT.npz [--original PTH]

IMAGES.npy holds uint8 RGB images (N, 224, 224, 3); OUT.npz gets `features` (N, 1280) and
`logits` (N, 1000), float32 (computed in float64). WEIGHTS_DIR holds the converted
`weights.safetensors` (Schemas/cnn-weights.md); with --original, the unfolded original
checkpoint is run instead (WEIGHTS_DIR is then not read).

Two independent paths:
- `FoldedModel` runs the converted file generically from its `architecture` metadata:
  explicit pads, conv + bias, ReLU6, residual adds by id, global average pool, classifier;
  nothing about EfficientNet is hard-coded there.
- `OriginalModel` runs the original `.pth` state dict (read with torch_checkpoint, no
  PyTorch) as the model definition (PyPI efficientnet-lite-pytorch 0.1.0) does: conv with
  TF-"SAME" padding computed from the actual input size (Conv2dDynamicSamePadding's formula,
  not the converter's stored pads), then BatchNorm with the running statistics (eps 1e-3),
  ReLU6, the MBConv skip where stride 1 and in == out channels. Structure is read from the
  state dict's keys and shapes; the only fact taken from the model definition is which
  blocks have stride 2 (the first of stages 2, 3, 4 and 6: blocks 1, 3, 5, 11).
Agreement of the two proves the folding, the pads and the residual wiring of the file.

Preprocessing: x' = (x - 127) / 128 per RGB channel, NCHW (the Lite models' MEAN_RGB and
STDDEV_RGB in tensorflow/tpu efficientnet_lite_builder.py; the PyTorch package does none).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(_HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "Pipelines", "models"))

import safetensors_np  # noqa: E402
import torch_checkpoint  # noqa: E402

DEFAULT_WEIGHTS_DIR = os.path.join(ROOT, "models", "efficientnet-lite0")
MEAN = 127.0
SCALE = 128.0
SIZE = 224
BN_EPS = 1e-3
STRIDE2_BLOCKS = {1, 3, 5, 11}
CHUNK = 8


def preprocess(rgb_uint8, mean=MEAN, scale=SCALE) -> np.ndarray:
    """(N, 224, 224, 3) uint8 RGB -> (N, 3, 224, 224) float32, (x - mean) / scale."""
    x = np.asarray(rgb_uint8)
    if x.ndim == 3:
        x = x[None]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (SIZE, SIZE, 3):
        raise ValueError(f"expected uint8 images (N, {SIZE}, {SIZE}, 3), got {x.dtype} {x.shape}")
    mean = np.broadcast_to(np.asarray(mean, np.float32), (3,))
    scale = np.broadcast_to(np.asarray(scale, np.float32), (3,))
    y = (x.astype(np.float32) - mean) / scale
    return np.ascontiguousarray(y.transpose(0, 3, 1, 2))


def _as_input(images) -> np.ndarray:
    x = np.asarray(images)
    if x.dtype == np.uint8:
        return preprocess(x)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected uint8 (N, H, W, 3) or preprocessed (N, 3, H, W) input, got {x.dtype} {x.shape}")
    return x


def conv2d(x, w, b, stride, pad, groups) -> np.ndarray:
    """Cross-correlation as torch's conv2d: x (N, C, H, W), w (O, C/groups, kh, kw), b (O,) or
    None, pad = (top, bottom, left, right) zeros. groups is 1 or C (depthwise, O == C)."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    top, bottom, left, right = pad
    if top or bottom or left or right:
        x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    hp, wp = x.shape[2], x.shape[3]
    ho, wo = (hp - kh) // stride + 1, (wp - kw) // stride + 1

    def tap(i, j):
        return x[:, :, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]

    if groups == 1:
        if cg != c:
            raise ValueError(f"conv weight {w.shape} does not fit {c} input channels")
        if kh == kw == 1:
            cols = tap(0, 0).reshape(n, c, ho * wo)
        else:
            cols = np.empty((n, c, kh, kw, ho, wo), dtype=x.dtype)
            for i in range(kh):
                for j in range(kw):
                    cols[:, :, i, j] = tap(i, j)
            cols = cols.reshape(n, c * kh * kw, ho * wo)
        out = np.matmul(w.reshape(o, cg * kh * kw).astype(x.dtype), cols).reshape(n, o, ho, wo)
    elif groups == c == o and cg == 1:
        wf = w.astype(x.dtype)
        out = np.zeros((n, o, ho, wo), dtype=x.dtype)
        for i in range(kh):
            for j in range(kw):
                out += wf[None, :, 0, i, j, None, None] * tap(i, j)
    else:
        raise ValueError(f"groups={groups} with weight {w.shape} and {c} channels: only 1 or depthwise")
    if b is not None:
        out += b.astype(x.dtype)[None, :, None, None]
    return out


def relu6(x):
    return np.clip(x, 0.0, 6.0, out=x)


def same_pad(size, kernel, stride):
    """Conv2dDynamicSamePadding: (before, after) for one spatial dimension."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _Model:
    dtype = np.float64

    def _forward(self, x):  # -> (features, logits)
        raise NotImplementedError

    def forward(self, images):
        """(features (N, 1280), logits (N, 1000)) float32 for uint8 or preprocessed images."""
        x = _as_input(images)
        feats, logits = [], []
        for s in range(0, x.shape[0], CHUNK):
            f, l = self._forward(x[s:s + CHUNK].astype(self.dtype))
            feats.append(f)
            logits.append(l)
        if not feats:
            return np.zeros((0, self.width), np.float32), np.zeros((0, self.classes), np.float32)
        return (np.concatenate(feats).astype(np.float32), np.concatenate(logits).astype(np.float32))

    def features(self, images):
        return self.forward(images)[0]

    def logits(self, images):
        return self.forward(images)[1]


class FoldedModel(_Model):
    """The converted file, run generically from its metadata."""

    def __init__(self, weights, dtype=np.float64):
        path = os.path.join(weights, "weights.safetensors") if os.path.isdir(weights) else weights
        self.tensors, self.meta = safetensors_np.load(path)
        if self.meta.get("format") != "vidx-cnn" or self.meta.get("format_version") != "1":
            raise ValueError(f"{path}: not a vidx-cnn version 1 file: {self.meta.get('format')!r} "
                             f"{self.meta.get('format_version')!r}")
        self.input = json.loads(self.meta["input"])
        self.arch = json.loads(self.meta["architecture"])
        self.dtype = dtype
        cls = self.tensors["classifier.weight"]
        self.classes, self.width = cls.shape

    def _forward(self, x):
        saved = {}
        pooled = None
        for layer in self.arch:
            kind = layer["kind"]
            if kind == "conv":
                i = layer["index"]
                if "save_input_as" in layer:
                    saved[layer["save_input_as"]] = x
                w = self.tensors[f"layers.{i}.weight"]
                b = self.tensors[f"layers.{i}.bias"]
                if w.shape != (layer["out"], layer["in"] // layer["groups"], layer["kernel"], layer["kernel"]):
                    raise ValueError(f"layers.{i}.weight has shape {w.shape}, architecture says {layer}")
                x = conv2d(x, w, b, layer["stride"], layer["pad"], layer["groups"])
                if layer["activation"] == "relu6":
                    relu6(x)
                elif layer["activation"] != "none":
                    raise ValueError(f"layer {i}: unknown activation {layer['activation']!r}")
                if "add_saved" in layer:
                    x = x + saved.pop(layer["add_saved"])
            elif kind == "global_average_pool":
                pooled = x.mean(axis=(2, 3))
                x = pooled
            elif kind == "linear":
                name = layer["name"]
                x = x @ self.tensors[f"{name}.weight"].astype(self.dtype).T + self.tensors[f"{name}.bias"]
            else:
                raise ValueError(f"unknown layer kind {kind!r}")
        return pooled, x


class OriginalModel(_Model):
    """The original state dict, conv then BatchNorm, as the PyTorch model definition runs it."""

    def __init__(self, pth_path, dtype=np.float64, eps=BN_EPS):
        self.sd = torch_checkpoint.load(pth_path)
        self.dtype = dtype
        self.eps = eps
        self.blocks = 1 + max(int(k.split(".")[1]) for k in self.sd if k.startswith("_blocks."))
        self.classes, self.width = self.sd["_fc.weight"].shape

    def _conv_bn(self, x, conv, bn, stride, act):
        w = self.sd[conv + ".weight"]
        o, cg, kh, kw = w.shape
        groups = 1 if cg == x.shape[1] else x.shape[1]
        pt, pb = same_pad(x.shape[2], kh, stride)
        pl, pr = same_pad(x.shape[3], kw, stride)
        y = conv2d(x, w, None, stride, (pt, pb, pl, pr), groups)
        gamma, beta, mean, var = (self.sd[f"{bn}.{f}"].astype(self.dtype)[None, :, None, None]
                                  for f in ("weight", "bias", "running_mean", "running_var"))
        y = (y - mean) / np.sqrt(var + self.eps) * gamma + beta
        return relu6(y) if act else y

    def _forward(self, x):
        x = self._conv_bn(x, "_conv_stem", "_bn0", 2, True)
        for b in range(self.blocks):
            p = f"_blocks.{b}."
            stride = 2 if b in STRIDE2_BLOCKS else 1
            inputs = x
            if p + "_expand_conv.weight" in self.sd:
                x = self._conv_bn(x, p + "_expand_conv", p + "_bn0", 1, True)
            x = self._conv_bn(x, p + "_depthwise_conv", p + "_bn1", stride, True)
            x = self._conv_bn(x, p + "_project_conv", p + "_bn2", 1, False)
            if stride == 1 and x.shape[1] == inputs.shape[1]:
                x = x + inputs  # drop connect is the identity in eval mode
        x = self._conv_bn(x, "_conv_head", "_bn1", 1, True)
        pooled = x.mean(axis=(2, 3))
        logits = pooled @ self.sd["_fc.weight"].astype(self.dtype).T + self.sd["_fc.bias"]
        return pooled, logits


_DEFAULT = {}


def _default_model():
    if "m" not in _DEFAULT:
        _DEFAULT["m"] = FoldedModel(DEFAULT_WEIGHTS_DIR)
    return _DEFAULT["m"]


def features(images, model=None) -> np.ndarray:
    """(N, 1280) float32 appearance features (global average pool) of uint8 (N, 224, 224, 3) images."""
    return (model or _default_model()).features(images)


def logits(images, model=None) -> np.ndarray:
    """(N, 1000) float32 ImageNet logits of uint8 (N, 224, 224, 3) images."""
    return (model or _default_model()).logits(images)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    original = None
    if "--original" in argv:
        k = argv.index("--original")
        if k + 1 >= len(argv):
            argv = []
        else:
            original = argv[k + 1]
            del argv[k:k + 2]
    if len(argv) != 3:
        print("usage: efficientnet_reference.py WEIGHTS_DIR IMAGES.npy OUT.npz [--original PTH]", file=sys.stderr)
        return 2
    weights_dir, images_path, out_path = argv
    try:
        model = OriginalModel(original) if original else FoldedModel(weights_dir)
        images = np.load(images_path)
        f, l = model.forward(images)
    except (OSError, ValueError, KeyError) as e:
        print(f"efficientnet_reference.py: error: {e}", file=sys.stderr)
        return 1
    np.savez(out_path, features=f, logits=l)
    return 0


if __name__ == "__main__":
    sys.exit(main())
