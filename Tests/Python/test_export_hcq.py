import collections
import copy
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import bundle_tools
import export_hcq
import torch_save_mimic as ts
from conftest import ROOT

EXPERTS = ["rgb", "s3d", "speech"]


def _config():
    return {
        "format": "vidx-hcq-bundle", "format_version": 1, "name": "synthetic",
        "experts": [{"name": "rgb", "width": 16, "type_id": 5, "timing": "windowed", "extractor": "imported:rgb"},
                    {"name": "s3d", "width": 8, "type_id": 1, "timing": "windowed", "extractor": "imported:s3d"},
                    {"name": "speech", "width": 4, "type_id": 6, "timing": "none", "extractor": "imported:speech"}],
        "tokens_per_expert": 5, "max_positions": 12, "type_vocab_size": 19, "hidden_size": 32, "layers": 2,
        "heads": 4, "ffn_size": 48, "layer_norm_eps": 1e-12, "clusters": 3, "batch_norm_eps": 1e-5,
        "pq": {"subspaces": 4, "codewords": 8}, "provenance": {"source": "test"},
    }


def _state_dict(prefix=""):
    """A state dict laid out like HCQ's: video side, aliased _C_v, BN buffers, pooler, text side."""
    cfg = _config()
    w = bundle_tools.random_bundle(cfg, 7)
    sd = collections.OrderedDict()
    for k, v in w.items():
        sd[k] = ts.tensor(v)
    h = cfg["hidden_size"]
    sd["vid_bert.pooler.dense.weight"] = ts.tensor(np.ones((h, h), np.float32))
    sd["vid_bert.pooler.dense.bias"] = ts.tensor(np.ones(h, np.float32))
    sd["ghost_vlad.batch_norm.num_batches_tracked"] = ts.tensor(np.array(12, np.int64))
    for layer in ["cls_pq_layer"] + [f"vlad_pq_layers.{i}" for i in range(cfg["clusters"])]:
        ck = sd[f"{layer}._C_k"]
        sd[f"{layer}._C_v"] = ts.Tensor(ck.storage, 0, ck.size, ck.stride)    # aliased, shared storage
        sd[f"{layer}.BatchNorm.running_mean"] = ts.tensor(np.zeros(4, np.float32))
        sd[f"{layer}.BatchNorm.running_var"] = ts.tensor(np.ones(4, np.float32))
        sd[f"{layer}.BatchNorm.num_batches_tracked"] = ts.tensor(np.array(3, np.int64))
    sd["txt_bert.embeddings.word_embeddings.weight"] = ts.tensor(np.ones((10, 8), np.float32))
    for e in EXPERTS:
        sd[f"text_GU.{e}.fc.weight"] = ts.tensor(np.ones((h, 8), np.float32))
        sd[f"text_GU.{e}.cg.batch_norm.num_batches_tracked"] = ts.tensor(np.array(1, np.int64))
        sd[f"moe_fc_txt.{e}.weight"] = ts.tensor(np.ones((1, 8), np.float32))
    sd["text_vlad_proj.weight"] = ts.tensor(np.ones((h, 8), np.float32))
    if prefix:
        sd = collections.OrderedDict((prefix + k, v) for k, v in sd.items())
    return sd, w


def _save(tmp_path, sd, name="ckpt.pth", wrap=True, legacy=False):
    path = str(tmp_path / name)
    obj = {"state_dict": sd, "arch": "HCQ", "epoch": 9, "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}} \
        if wrap else sd
    (ts.save_legacy if legacy else ts.save_zip)(obj, path)
    return path


def _run(args, capsys):
    code = export_hcq.main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("variant", ["plain", "module-prefix", "bare-state-dict", "legacy-format"])
def test_happy_path(tmp_path, capsys, variant):
    sd, w = _state_dict("module." if variant == "module-prefix" else "")
    path = _save(tmp_path, sd, wrap=variant != "bare-state-dict", legacy=variant == "legacy-format")
    out_dir = str(tmp_path / "bundle")
    code, out, err = _run([path, out_dir, "--experts", "speech,rgb,s3d", "--tokens-per-expert", "5"], capsys)
    assert code == 0, err
    fp = out.strip()
    assert fp == bundle_tools.fingerprint(out_dir) and len(fp) == 64
    cfg, weights = bundle_tools.load_bundle(out_dir)
    expected = _config()
    for k in ("tokens_per_expert", "max_positions", "type_vocab_size", "hidden_size", "layers", "heads",
              "ffn_size", "clusters", "pq", "layer_norm_eps", "batch_norm_eps", "experts"):
        assert cfg[k] == expected[k], k
    assert cfg["name"] == "ckpt"
    prov = cfg["provenance"]
    assert prov["source"] == "export_hcq.py" and prov["trained"] is True and prov["checkpoint"] == "ckpt.pth"
    import hashlib
    assert prov["checkpoint_sha256"] == hashlib.sha256(open(path, "rb").read()).hexdigest()
    assert set(weights) == set(w)
    for k in w:
        np.testing.assert_array_equal(weights[k], w[k])
    text = open(os.path.join(out_dir, "bundle.json"), encoding="utf-8").read()
    assert text.endswith("}\n") and text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    # re-exporting gives the same bytes
    code, out2, _ = _run([path, str(tmp_path / "again"), "--experts", "rgb,s3d,speech", "--tokens-per-expert", "5"], capsys)
    assert code == 0 and out2 == out


def test_overrides(tmp_path, capsys):
    sd, _ = _state_dict()
    path = _save(tmp_path, sd)
    code, out, err = _run([path, str(tmp_path / "b"), "--experts", "rgb,s3d,speech", "--type-ids", "rgb=11",
                           "--timing", "speech=windowed", "--extractor", "rgb=builtin:appearance/x@1",
                           "--heads", "8", "--name", "msrvtt-hcq"], capsys)
    assert code == 0, err
    cfg, _ = bundle_tools.load_bundle(str(tmp_path / "b"))
    rgb = cfg["experts"][0]
    assert (rgb["type_id"], rgb["extractor"]) == (11, "builtin:appearance/x@1")
    assert cfg["experts"][2]["timing"] == "windowed"
    assert cfg["heads"] == 8 and cfg["name"] == "msrvtt-hcq" and cfg["tokens_per_expert"] == 30


def _refused(tmp_path, capsys, sd, experts="rgb,s3d,speech", extra=()):
    path = _save(tmp_path, sd)
    out_dir = tmp_path / "refused"
    code, out, err = _run([path, str(out_dir), "--experts", experts, *extra], capsys)
    assert code == 1
    assert out == ""
    assert not out_dir.exists() or not os.listdir(out_dir)
    return err


def test_refuses_missing_key(tmp_path, capsys):
    sd, _ = _state_dict()
    del sd["vid_bert.encoder.layer.1.output.dense.bias"]
    del sd["ghost_vlad.batch_norm.running_var"]
    err = _refused(tmp_path, capsys, sd)
    assert "missing video-side keys" in err
    assert "vid_bert.encoder.layer.1.output.dense.bias" in err and "ghost_vlad.batch_norm.running_var" in err


def test_refuses_unexpected_key(tmp_path, capsys):
    sd, _ = _state_dict()
    sd["moe_fc_vid.rgb.weight"] = ts.tensor(np.ones((1, 32), np.float32))
    sd["vlad_pq_layers.3._C_k"] = ts.tensor(np.ones((4, 8, 8), np.float32))
    err = _refused(tmp_path, capsys, sd)
    assert "unexpected video-side keys" in err
    assert "moe_fc_vid.rgb.weight" in err and "vlad_pq_layers.3._C_k" in err


def test_refuses_inconsistent_shapes(tmp_path, capsys):
    sd, _ = _state_dict()
    sd["vid_bert.encoder.layer.1.intermediate.dense.weight"] = ts.tensor(np.ones((64, 32), np.float32))
    sd["ghost_vlad.clusters"] = ts.tensor(np.ones((32, 5), np.float32))
    err = _refused(tmp_path, capsys, sd)
    assert "inconsistent shapes" in err
    assert "vid_bert.encoder.layer.1.intermediate.dense.weight is [64, 32], expected [48, 32]" in err
    assert "ghost_vlad.clusters is [32, 5], expected [32, 4]" in err


def test_refuses_expert_mismatch(tmp_path, capsys):
    sd, _ = _state_dict()
    err = _refused(tmp_path, capsys, sd, experts="rgb,s3d,speech,vggish")
    assert "not in the checkpoint: vggish" in err
    err = _refused(tmp_path, capsys, sd, experts="rgb,s3d")
    assert "not given with --experts: speech" in err


def test_refuses_dual_codebooks(tmp_path, capsys):
    sd, _ = _state_dict()
    sd["vlad_pq_layers.1._C_v"] = ts.tensor(np.zeros((4, 8, 8), np.float32))
    err = _refused(tmp_path, capsys, sd)
    assert "vlad_pq_layers.1._C_v differs from vlad_pq_layers.1._C_k" in err


def test_refuses_bad_options(tmp_path, capsys):
    sd, _ = _state_dict()
    assert "--type-ids names experts not in --experts: vggish" in _refused(
        tmp_path, capsys, sd, extra=["--type-ids", "vggish=2"])
    assert "type id 19 of expert 'rgb'" in _refused(tmp_path, capsys, sd, extra=["--type-ids", "rgb=19"])
    assert "--heads 5 does not divide the hidden size 32" in _refused(tmp_path, capsys, sd, extra=["--heads", "5"])
    # an expert HCQ does not know needs its type id and timing
    sd2 = collections.OrderedDict((k.replace("video_dim_reduce.speech.", "video_dim_reduce.voice."), v)
                                  for k, v in sd.items())
    err = _refused(tmp_path, capsys, sd2, experts="rgb,s3d,voice")
    assert "give --type-ids voice=ID" in err


def test_refuses_unsafe_checkpoint(tmp_path, capsys):
    sd, _ = _state_dict()
    path = str(tmp_path / "evil.pth")
    ts.save_zip({"state_dict": sd, "hook": os.system}, path)
    code, out, err = _run([path, str(tmp_path / "b"), "--experts", "rgb,s3d,speech"], capsys)
    assert code == 1 and "system" in err and "--allow-opaque-objects" in err


def test_cli_end_to_end(tmp_path):
    sd, _ = _state_dict()
    path = _save(tmp_path, sd)
    script = os.path.join(ROOT, "Pipelines", "models", "export_hcq.py")
    r = subprocess.run([sys.executable, script, path, str(tmp_path / "b"), "--experts", "rgb,s3d,speech"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == bundle_tools.fingerprint(str(tmp_path / "b"))
    r = subprocess.run([sys.executable, script, path, str(tmp_path / "c"), "--experts", "rgb"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "s3d, speech" in r.stderr
    r = subprocess.run([sys.executable, script, path], capture_output=True, text=True)
    assert r.returncode == 2


def test_load_bundle_is_strict(tmp_path):
    cfg = _config()
    w = bundle_tools.random_bundle(cfg, 1)
    d = str(tmp_path / "b")
    bundle_tools.write_bundle(d, cfg, w)
    bundle_tools.load_bundle(d)
    for change, words in [
        (lambda w: w.pop("ghost_vlad.clusters2"), ["missing", "ghost_vlad.clusters2"]),
        (lambda w: w.update({"vid_bert.pooler.dense.bias": np.zeros(32, np.float32)}), ["unexpected", "pooler"]),
        (lambda w: w.update({"ghost_vlad.clusters": np.zeros((32, 3), np.float32)}), ["ghost_vlad.clusters", "expected [32, 4]"]),
    ]:
        w2 = copy.deepcopy(w)
        change(w2)
        with pytest.raises(bundle_tools.BundleError) as e:
            bundle_tools.write_bundle(str(tmp_path / "x"), cfg, w2)
        for word in words:
            assert word in str(e.value)
    # on disk: a tampered weights file or bundle.json is refused by load_bundle
    import safetensors_np
    extra = dict(w, **{"vid_bert.pooler.dense.bias": np.zeros(32, np.float32)})
    safetensors_np.save(os.path.join(d, "weights.safetensors"), extra, None)
    with pytest.raises(bundle_tools.BundleError, match="unexpected tensors: vid_bert.pooler.dense.bias"):
        bundle_tools.load_bundle(d)
    as_f64 = {k: v.astype(np.float64) for k, v in w.items()}
    safetensors_np.save(os.path.join(d, "weights.safetensors"), as_f64, None)
    with pytest.raises(bundle_tools.BundleError, match="not float32"):
        bundle_tools.load_bundle(d)
    bundle_tools.write_bundle(d, cfg, w)
    with open(os.path.join(d, "bundle.json"), "w") as f:
        json.dump(dict(cfg, heads=7), f)
    with pytest.raises(bundle_tools.BundleError, match="multiple of heads"):
        bundle_tools.load_bundle(d)
    bad = copy.deepcopy(cfg)
    bad["experts"].reverse()
    with pytest.raises(bundle_tools.BundleError, match="alphabetical"):
        bundle_tools.write_bundle(str(tmp_path / "y"), bad, w)
