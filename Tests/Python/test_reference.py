import json
import math
import os
import subprocess
import sys

import numpy as np

import bundle_tools
import hcq_reference as ref
import make_test_data
import safetensors_np
from conftest import ROOT


def test_erf_matches_math_erf():
    x = np.concatenate([np.linspace(-7, 7, 20001), [0.0, -0.0, 6.0, np.inf, -np.inf, 1e300]])
    want = np.array([math.erf(v) for v in x])
    assert np.abs(ref.erf(x) - want).max() < 1e-14
    assert np.isnan(ref.erf(np.array([np.nan]))[0])
    assert ref.erf(np.float64(0.5)).shape == ()


def test_small_test_data(small_test_data):
    d = small_test_data
    cfg, _ = bundle_tools.load_bundle(str(d / "bundle"))
    r = np.load(d / "reference.npz")
    cases = json.load(open(d / "cases.json"))
    assert len(cases) == 12
    L, M = 1 + cfg["clusters"], cfg["pq"]["subspaces"]
    assert r["embeddings"].shape == (12, L, cfg["hidden_size"]) and r["embeddings"].dtype == np.float32
    assert r["codes"].shape == (12, L, M) and r["codes"].dtype == np.uint8
    assert r["margins"].shape == (12, L, M) and r["margins"].dtype == np.float64
    assert r["ok"].dtype == np.uint8     # a 0/1 flag; the Swift tests read it as U8
    assert r["ok"].tolist() == [int(c["expect_ok"]) for c in cases]
    bad = r["ok"] == 0
    assert not r["embeddings"][bad].any() and not r["codes"][bad].any()
    good = r["embeddings"][r["ok"] == 1]
    np.testing.assert_allclose(np.linalg.norm(good[:, 1:], axis=-1), 1.0, atol=1e-6)   # fine levels unit norm
    assert (np.linalg.norm(good[:, 0], axis=-1) < 1.0 + 1e-6).all()                    # coarse: a mean of unit vectors
    tensors, meta = safetensors_np.load(str(d / "features.safetensors"))
    assert meta["format"] == "vidx-features" and meta["bundle_fingerprint"] == bundle_tools.fingerprint(str(d / "bundle"))
    T = cfg["tokens_per_expert"]
    by_case = {c["case"]: c["video"] for c in cases}
    assert any(v.shape[0] > T for k, v in tensors.items() if k.startswith(f"v{by_case['more-than-T']}/"))
    assert tensors[f"v{by_case['zero-rows']}/audio/features"].shape[0] == 0
    assert np.isnan(tensors[f"v{by_case['nan-first-value']}/appearance/features"][0, 0])
    assert not any(k.startswith(f"v{by_case['failed']}/") for k in tensors)


def test_make_test_data_is_deterministic(small_test_data, tmp_path):
    make_test_data.build(str(tmp_path), 5, only="small")
    for name in ("bundle/bundle.json", "bundle/weights.safetensors", "features.safetensors", "reference.npz",
                 "cases.json"):
        assert (tmp_path / "small" / name).read_bytes() == (small_test_data / name).read_bytes(), name


def test_nan_first_value_is_missing_and_zero_rows_too(small_test_data, tmp_path):
    """A NaN first value, zero rows and absent tensors all encode as the same missing expert."""
    d = small_test_data
    cfg, W = bundle_tools.load_bundle(str(d / "bundle"))
    items = ref.read_features(str(d / "features.safetensors"), cfg)
    rec, experts, _ = items[4]
    assert rec["id"].endswith("nan-first-value") and "appearance" not in experts
    r = np.random.RandomState(0)
    base = {"audio": (r.standard_normal((3, 8)), np.array([[0.0, 1.0], [1.0, 2.0], [5.0, 6.0]])),
            "face": (r.standard_normal((2, 24)), -np.ones((2, 2)))}
    absent, _, _ = ref.encode_video(cfg, W, base)
    nan_first = r.standard_normal((4, 40))
    nan_first[0, 0] = np.nan
    nan_first[2, 3] = np.inf          # ignored with the rest of the matrix
    tensors = {}
    for i, X in enumerate([nan_first, np.zeros((0, 40))]):
        for name, (F, t) in base.items():
            tensors[f"v{i}/{name}/features"] = F.astype(np.float32)
            tensors[f"v{i}/{name}/times"] = t.astype(np.float32)
        tensors[f"v{i}/appearance/features"] = X.astype(np.float32)
        tensors[f"v{i}/appearance/times"] = np.zeros((X.shape[0], 2), np.float32)
    videos = [{"id": v, "content_hash": "", "status": "ok", "error": None} for v in ("nan", "zero")]
    path = str(tmp_path / "nan.safetensors")
    safetensors_np.save(path, tensors, {"format": "vidx-features", "format_version": "1", "videos": json.dumps(videos)})
    out, reasons = ref.encode_features(str(d / "bundle"), path)
    assert reasons == [] and out["ok"].all()
    for i in range(2):
        np.testing.assert_allclose(out["embeddings"][i], absent.astype(np.float32), atol=1e-6)


def test_cli(small_test_data, tmp_path):
    d = small_test_data
    script = os.path.join(ROOT, "Tests", "Reference", "hcq_reference.py")
    out = tmp_path / "out.npz"
    r = subprocess.run([sys.executable, script, str(d / "bundle"), str(d / "features.safetensors"), str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "failed extraction" in r.stderr and "wrong_width" in r.stderr and "bad_features" in r.stderr
    a, b = np.load(out), np.load(d / "reference.npz")
    for k in ("embeddings", "codes", "margins", "ok"):
        np.testing.assert_array_equal(a[k], b[k])


def test_msrvtt_size_reference_on_a_few_videos():
    """The MSRVTT configuration end to end on two videos: 218 tokens, shapes, norms, determinism."""
    cfg = make_test_data.configs(5)["msrvtt"]
    W = bundle_tools.random_bundle(cfg, 11)
    r = np.random.RandomState(2)
    T = cfg["tokens_per_expert"]
    experts = {}
    for e in cfg["experts"]:
        n = {"rgb": 2 * T + 5, "face": 0}.get(e["name"], 7)
        if n:
            experts[e["name"]] = make_test_data._rows(r, e, n)
    feats, pos, typ, mask, vmask, agg = ref.build_tokens(cfg, W, {k: (x.astype(np.float64), t.astype(np.float64))
                                                               for k, (x, t) in experts.items()})
    assert feats.shape == (218, 512) and agg == [1 + j * 31 for j in range(7)]
    assert mask[agg].tolist() == [0, 1, 1, 1, 1, 1, 1]               # face missing
    assert (typ[1:32] == 3).all() and (typ[63:94] == 5).all()        # every token of an expert: its type id
    assert (pos[2:32] == 1).all() and pos.max() <= 31                # missing/untimed -> 1; clamped
    assert vmask.sum() == T + 7 * 5                                  # rgb keeps T of 65 rows
    emb, codes, margins = ref.encode_video(cfg, W, experts)
    assert emb.shape == (8, 512) and codes.shape == (8, 32) and margins.shape == (8, 32)
    np.testing.assert_allclose(np.linalg.norm(emb[1:], axis=1), 1.0, atol=1e-12)
    emb2, codes2, _ = ref.encode_video(cfg, W, experts)
    assert np.array_equal(emb, emb2) and np.array_equal(codes, codes2)
