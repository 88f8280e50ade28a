import json
import os
import subprocess
import sys

import numpy as np

import bundle_tools
import make_starter
import safetensors_np
from conftest import ROOT


def test_starter_is_deterministic_valid_and_says_untrained(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    fa = make_starter.build(a)
    script = os.path.join(ROOT, "Pipelines", "models", "make_starter.py")
    r = subprocess.run([sys.executable, script, b], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == fa == bundle_tools.fingerprint(b)
    for name in ("bundle.json", "weights.safetensors", "README.md"):
        assert open(os.path.join(a, name), "rb").read() == open(os.path.join(b, name), "rb").read(), name

    cfg, w = bundle_tools.load_bundle(a)
    assert bundle_tools.validate_schema(cfg)   # jsonschema is installed here
    import jsonschema
    with open(bundle_tools.SCHEMA_PATH) as f:
        jsonschema.validate(json.load(open(os.path.join(a, "bundle.json"))), json.load(f))
    assert [(e["name"], e["width"], e["type_id"], e["timing"], e["extractor"]) for e in cfg["experts"]] == [
        ("appearance", 1280, 5, "windowed", "builtin:appearance/efficientnet-lite0@1"),
        ("audio", 128, 2, "windowed", "builtin:audio/logmel64-stats@1"),
        ("motion", 64, 1, "windowed", "builtin:motion/framediff-8x8@1")]
    assert (cfg["tokens_per_expert"], cfg["max_positions"], cfg["type_vocab_size"], cfg["hidden_size"], cfg["layers"],
            cfg["heads"], cfg["ffn_size"], cfg["clusters"], cfg["pq"]) == \
        (30, 32, 19, 512, 4, 4, 3072, 7, {"subspaces": 32, "codewords": 256})
    assert cfg["layer_norm_eps"] == 1e-12 and cfg["batch_norm_eps"] == 1e-5
    assert cfg["provenance"]["trained"] is False and cfg["provenance"]["seed"] == 20221
    # sane scales
    assert abs(float(w["vid_bert.encoder.layer.0.attention.self.query.weight"].std()) - 0.02) < 0.001
    assert abs(float(w["vid_bert.embeddings.layer_norm.weight"].mean()) - 1.0) < 0.02
    assert (w["ghost_vlad.batch_norm.running_var"] > 0).all()
    assert all(np.isfinite(v).all() and v.dtype == np.float32 for v in w.values())
    readme = open(os.path.join(a, "README.md")).read().lower()
    assert "untrained" in readme and "seeded random weights" in readme
    assert "no retrieval quality" in readme and "export_hcq.py" in readme and "deterministic" in readme
    _, meta = safetensors_np.load(os.path.join(a, "weights.safetensors"))
    assert meta == {}
