#!/usr/bin/env python3
"""Seeded random convolutional networks in the vidx-cnn format, and test images.

    make_cnn_test_net.py OUT.safetensors [--lite0] [--seed S] [--classes N]
                         [--images IMAGES.npy [--count N]]

The format (what Sources/VidxVision/ConvNet.swift reads):
- tensors `layers.{i}.weight` F32 (out, in/groups, kh, kw) and `layers.{i}.bias` F32 (out)
  for every convolution i in execution order (BatchNorm folded in), `classifier.weight`
  F32 (classes, features) and `classifier.bias` F32 (classes);
- metadata `format` = "vidx-cnn", `format_version` = "1", `name`, `input` (JSON
  {"size", "mean": [3], "scale": [3], "layout": "RGB"}; x = (pixel - mean[c]) / scale[c])
  and `architecture` (JSON array: one {"index", "kind": "conv", "in", "out", "kernel",
  "stride", "groups", "pad": [top, bottom, left, right], "activation": "relu6"|"none",
  optional "save_input_as", optional "add_saved"} per convolution, then
  {"kind": "global_average_pool"}, then {"kind": "linear", "name": "classifier", "in", "out"});
  see Schemas/cnn-weights.md.

Two architectures:
- default ("small", input 48): every code path at a few thousand weights: a stride-2 stem
  with TensorFlow-style asymmetric padding [0, 1, 0, 1], a depthwise-separable block with a
  residual, an inverted residual with a 5x5 stride-2 depthwise conv (padding [1, 2, 1, 2]),
  one with odd padding [2, 0, 0, 2] and a residual, a 3x3 standard convolution in mid
  network, a strided 1x1 convolution, a layer that both saves its input and adds it, and
  channel counts that are not multiples of 8 (12, 20, 28, 36, 60);
- --lite0: EfficientNet-Lite0's layer list exactly as models/efficientnet-lite0 has it
  (input 224, stem 3x3/2 to 32, 16 MBConv blocks, head 1x1 to 1280, ReLU6, no
  squeeze-excitation, TensorFlow-"SAME" pads, block numbers as residual ids), random weights.
Weights are He-scaled normals (std sqrt(2 / fan_in) before ReLU6, sqrt(1 / fan_in) for the
linear project convs), biases N(0, 0.1^2), so that activations stay of order one.

--images writes `count` uint8 RGB images (N, size, size, 3), cycling through horizontal,
vertical and diagonal gradients, checkerboards of several cell sizes, uniform noise, and
flat black and white frames. Deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.normpath(os.path.join(_HERE, "..", "..", "Pipelines", "models")))

import safetensors_np  # noqa: E402

__all__ = ["small_architecture", "lite0_architecture", "random_weights", "make_images", "build", "main"]

_INPUT = {"size": 224, "mean": [127.0, 127.0, 127.0], "scale": [128.0, 128.0, 128.0], "layout": "RGB"}


class _Builder:
    """Appends conv entries in execution order."""

    def __init__(self, size: int):
        self.layers = []
        self.size = size  # the running spatial size, for the default ("SAME") pads

    def conv(self, cin, cout, k, stride=1, groups=1, pad=None, act="relu6", save=None, add=None):
        if pad is None:  # TensorFlow "SAME", as EfficientNet-Lite: asymmetric for even sizes, stride 2
            out = -(-self.size // stride)
            total = max((out - 1) * stride + k - self.size, 0)
            pad = [total // 2, total - total // 2] * 2
        self.size = (self.size + pad[0] + pad[1] - k) // stride + 1
        entry = {"index": len(self.layers), "kind": "conv", "name": f"conv{len(self.layers)}",
                 "in": cin, "out": cout, "kernel": k, "stride": stride,
                 "groups": groups, "pad": list(pad), "activation": act}
        if save is not None:
            entry["save_input_as"] = save
        if add is not None:
            entry["add_saved"] = add
        self.layers.append(entry)

    def finish(self, classes: int):
        return self.layers + [{"kind": "global_average_pool"},
                              {"kind": "linear", "name": "classifier", "in": self.layers[-1]["out"], "out": classes}]


def small_architecture(classes: int) -> tuple[dict, list]:
    """The small test network: input 48, features 40 (see the module docstring)."""
    b = _Builder(48)
    b.conv(3, 12, 3, stride=2, pad=[0, 1, 0, 1])                  # 48 -> 24
    b.conv(12, 12, 3, groups=12, save=0)                          # depthwise-separable block
    b.conv(12, 12, 1, act="none", add=0)                          #   with a residual
    b.conv(12, 36, 1)                                             # inverted residual, stride 2
    b.conv(36, 36, 5, stride=2, groups=36, pad=[1, 2, 1, 2])      # 24 -> 12
    b.conv(36, 20, 1, act="none")
    b.conv(20, 60, 1, save=1)                                     # inverted residual
    b.conv(60, 60, 3, groups=60, pad=[2, 0, 0, 2])                # odd pads, still 12 -> 12
    b.conv(60, 20, 1, act="none", add=1)
    b.conv(20, 24, 3)                                             # standard 3x3 convolution
    b.conv(24, 28, 1, stride=2, pad=[0, 0, 0, 0])                 # strided 1x1: 12 -> 6
    b.conv(28, 28, 3, stride=2, groups=28)                        # 6 -> 3
    b.conv(28, 28, 1, act="none", save=2, add=2)                  # one layer saves and adds
    b.conv(28, 40, 1)                                             # head
    return dict(_INPUT, size=48), b.finish(classes)


def lite0_architecture(classes: int) -> tuple[dict, list]:
    """EfficientNet-Lite0's layer list (Schemas/cnn-weights.md): features 1280."""
    b = _Builder(224)
    b.conv(3, 32, 3, stride=2)                                    # stem: 224 -> 112
    # (expand ratio, kernel, stride, out channels, repeats): the Lite0 stages.
    stages = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
              (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
    cin, block = 32, 0
    for expand, k, stride, cout, repeats in stages:
        for r in range(repeats):
            s = stride if r == 0 else 1
            skip = s == 1 and cin == cout
            save = block if skip else None
            mid = cin * expand
            if expand != 1:
                b.conv(cin, mid, 1, save=save)
                save = None
            b.conv(mid, mid, k, stride=s, groups=mid, save=save)
            b.conv(mid, cout, 1, act="none", add=block if skip else None)
            cin, block = cout, block + 1
    b.conv(cin, 1280, 1)                                          # head
    return dict(_INPUT), b.finish(classes)


def random_weights(architecture: list, classes: int, rng: np.random.Generator) -> dict:
    """He-scaled random weights and biases for every layer of `architecture`, float32."""
    tensors = {}
    features = None
    for e in architecture:
        if e["kind"] != "conv":
            continue
        kh = kw = e["kernel"]
        fan_in = e["in"] // e["groups"] * kh * kw
        gain = 2.0 if e["activation"] == "relu6" else 1.0
        w = rng.standard_normal((e["out"], e["in"] // e["groups"], kh, kw)) * np.sqrt(gain / fan_in)
        tensors[f"layers.{e['index']}.weight"] = w.astype(np.float32)
        tensors[f"layers.{e['index']}.bias"] = (rng.standard_normal(e["out"]) * 0.1).astype(np.float32)
        features = e["out"]
    tensors["classifier.weight"] = (rng.standard_normal((classes, features)) / np.sqrt(features)).astype(np.float32)
    tensors["classifier.bias"] = (rng.standard_normal(classes) * 0.1).astype(np.float32)
    return tensors


def make_images(count: int, size: int, seed: int) -> np.ndarray:
    """`count` uint8 RGB images (N, size, size, 3): gradients, checkerboards, noise, flat."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / max(size - 1, 1)
    out = np.empty((count, size, size, 3), dtype=np.uint8)
    for i in range(count):
        kind = i % 7
        if kind == 0:    # horizontal gradient, one channel reversed
            img = np.stack([x, 1 - x, 0.5 * x + 0.25], axis=-1) * 255
        elif kind == 1:  # vertical gradient
            img = np.stack([y, y * y, 1 - y], axis=-1) * 255
        elif kind == 2:  # diagonal colour gradient
            img = np.stack([(x + y) / 2, np.abs(x - y), x * y], axis=-1) * 255
        elif kind == 3:  # checkerboard, cell size varying with the index
            cell = 2 + (i // 7) % 5
            yy, xx = np.mgrid[0:size, 0:size]
            board = ((yy // cell + xx // cell) % 2).astype(np.float64)
            img = np.stack([board, 1 - board, board], axis=-1) * 255
        elif kind == 4:  # uniform noise
            img = rng.integers(0, 256, size=(size, size, 3))
        elif kind == 5:  # flat white
            img = np.full((size, size, 3), 255.0)
        else:            # flat black
            img = np.zeros((size, size, 3))
        out[i] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return out


def build(out_path: str, lite0: bool, seed: int, classes: int) -> dict:
    """Writes the network to `out_path`; returns its `input` metadata."""
    rng = np.random.default_rng(seed)
    inp, arch = lite0_architecture(classes) if lite0 else small_architecture(classes)
    tensors = random_weights(arch, classes, rng)
    metadata = {
        "format": "vidx-cnn", "format_version": "1",
        "name": f"random-{'lite0' if lite0 else 'small'}-seed{seed}",
        "input": json.dumps(inp, separators=(",", ":")),
        "architecture": json.dumps(arch, separators=(",", ":")),
    }
    safetensors_np.save(out_path, tensors, metadata)
    return inp


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="make_cnn_test_net.py", description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="the .safetensors file to write")
    p.add_argument("--lite0", action="store_true", help="EfficientNet-Lite0's shapes (default: the small net)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--classes", type=int, default=None, help="classifier outputs (default 10; 1000 with --lite0)")
    p.add_argument("--images", help="also write test images here (.npy, uint8 (N, size, size, 3))")
    p.add_argument("--count", type=int, default=7, help="number of images (default 7)")
    a = p.parse_args(argv)
    classes = a.classes if a.classes is not None else (1000 if a.lite0 else 10)
    inp = build(a.out, a.lite0, a.seed, classes)
    if a.images:
        images = make_images(a.count, inp["size"], a.seed + 1)
        tmp = a.images + ".tmp.npy"
        np.save(tmp, images)
        os.replace(tmp, a.images)
    return 0


if __name__ == "__main__":
    sys.exit(main())
