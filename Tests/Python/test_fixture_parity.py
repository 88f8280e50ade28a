"""The key test: the authors' checkpoint, exported, plus their features reproduce their outputs."""

import json
import os

import numpy as np
import pytest

import bundle_tools
import export_hcq
import hcq_reference
import safetensors_np
from conftest import FIXTURE

EXPERTS = "face,ocr,rgb,s3d,scene,speech,vggish"


def features_from_npz(npz_path: str, out_path: str, experts_config) -> int:
    """The fixture's features.npz as a features file (Schemas/features.md); n = 0 experts left absent."""
    f = np.load(npz_path)
    n = 1 + max(int(k.split("/")[0][1:]) for k in f.files)
    tensors, videos = {}, []
    for i in range(n):
        videos.append({"content_hash": "", "error": None, "id": f"video-{i}", "status": "ok"})
        for k in f.files:
            if k.startswith(f"v{i}/") and k.endswith("/features") and f[k].shape[0] > 0:
                e = k.split("/")[1]
                tensors[k] = f[k].astype(np.float32)
                tensors[f"v{i}/{e}/times"] = f[f"v{i}/{e}/times"].astype(np.float32)
    meta = {"format": "vidx-features", "format_version": "1", "bundle_fingerprint": "",
            "extractors": json.dumps({e["name"]: e["extractor"] for e in experts_config}, sort_keys=True,
                                     separators=(",", ":")),
            "videos": json.dumps(videos, sort_keys=True, separators=(",", ":"))}
    safetensors_np.save(out_path, tensors, meta)
    return n


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("fixture")
    bundle = str(d / "bundle")
    fp = export_hcq.export(os.path.join(FIXTURE, "checkpoint.pth"), bundle, EXPERTS.split(","),
                           tokens_per_expert=6, heads=4)
    return d, bundle, fp


def test_export_of_the_authors_checkpoint(exported):
    _, bundle, fp = exported
    cfg, w = bundle_tools.load_bundle(bundle)
    assert fp == bundle_tools.fingerprint(bundle)
    assert [(e["name"], e["width"], e["type_id"], e["timing"]) for e in cfg["experts"]] == [
        ("face", 24, 3, "none"), ("ocr", 12, 7, "none"), ("rgb", 40, 5, "windowed"), ("s3d", 32, 1, "windowed"),
        ("scene", 36, 9, "windowed"), ("speech", 12, 6, "none"), ("vggish", 8, 2, "windowed")]
    assert (cfg["hidden_size"], cfg["layers"], cfg["heads"], cfg["ffn_size"], cfg["max_positions"],
            cfg["type_vocab_size"], cfg["tokens_per_expert"], cfg["clusters"], cfg["pq"]) == \
        (64, 4, 4, 128, 32, 19, 6, 7, {"subspaces": 8, "codewords": 16})
    assert len(w) == len(bundle_tools.expected_shapes(cfg))


def test_reference_reproduces_the_authors_outputs(exported):
    d, bundle, _ = exported
    cfg, _ = bundle_tools.load_bundle(bundle)
    features = str(d / "features.safetensors")
    n = features_from_npz(os.path.join(FIXTURE, "features.npz"), features, cfg["experts"])
    out, reasons = hcq_reference.encode_features(bundle, features)
    expected = np.load(os.path.join(FIXTURE, "expected.npz"))
    assert reasons == [] and out["ok"].all() and n == 16
    assert out["embeddings"].shape == expected["embeddings"].shape == (16, 8, 64)
    assert out["codes"].shape == expected["codes"].shape == (16, 8, 8)
    diff = np.abs(out["embeddings"] - expected["embeddings"]).max()
    assert diff < 1e-6, diff  # not looser: a tanh GELU instead of erf moves it by only 3e-6
    np.testing.assert_array_equal(out["codes"], expected["codes"])
    # the codes are not decided by near ties, so the comparison means something
    assert out["margins"].min() > 1e-5
