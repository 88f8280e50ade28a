"""Model bundles (Schemas/model-bundle.schema.json): expected tensors, strict loading,
canonical writing, fingerprints and seeded random weights.

A bundle is a directory with `bundle.json` (pretty-printed, sorted keys, trailing newline)
and `weights.safetensors` (float32, canonical layout, see safetensors_np).
"""

from __future__ import annotations

import collections
import hashlib
import json
import os

import numpy as np

import safetensors_np

__all__ = ["BundleError", "expected_shapes", "check_config", "fingerprint", "load_bundle", "write_bundle",
           "random_bundle", "config_json_bytes", "SCHEMA_PATH"]

SCHEMA_PATH = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                            "..", "..", "Schemas", "model-bundle.schema.json"))
CONFIG_NAME = "bundle.json"
WEIGHTS_NAME = "weights.safetensors"


class BundleError(ValueError):
    """A bundle (or a would-be bundle) that is not valid; the message names what is wrong."""


def _layer_shapes(prefix: str, hidden: int, ffn: int):
    h = hidden
    out = []
    for part in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
        out += [(f"{prefix}.{part}.weight", (h, h)), (f"{prefix}.{part}.bias", (h,))]
    out += [(f"{prefix}.attention.output.layer_norm.weight", (h,)), (f"{prefix}.attention.output.layer_norm.bias", (h,))]
    out += [(f"{prefix}.intermediate.dense.weight", (ffn, h)), (f"{prefix}.intermediate.dense.bias", (ffn,))]
    out += [(f"{prefix}.output.dense.weight", (h, ffn)), (f"{prefix}.output.dense.bias", (h,))]
    out += [(f"{prefix}.output.layer_norm.weight", (h,)), (f"{prefix}.output.layer_norm.bias", (h,))]
    return out


def expected_shapes(config: dict) -> "collections.OrderedDict[str, tuple]":
    """Every weight a bundle with `config` holds, name -> shape, in checkpoint order."""
    h = config["hidden_size"]
    m = config["pq"]["subspaces"]
    k = config["pq"]["codewords"]
    c = config["clusters"]
    out = []
    for e in config["experts"]:
        out += [(f"video_dim_reduce.{e['name']}.fc.weight", (h, e["width"])),
                (f"video_dim_reduce.{e['name']}.fc.bias", (h,))]
    out += [("vid_bert.embeddings.position_embeddings.weight", (config["max_positions"], h)),
            ("vid_bert.embeddings.token_type_embeddings.weight", (config["type_vocab_size"], h)),
            ("vid_bert.embeddings.layer_norm.weight", (h,)),
            ("vid_bert.embeddings.layer_norm.bias", (h,))]
    for i in range(config["layers"]):
        out += _layer_shapes(f"vid_bert.encoder.layer.{i}", h, config["ffn_size"])
    out += [("ghost_vlad.clusters", (h, c + 1)), ("ghost_vlad.clusters2", (1, h, c))]
    out += [(f"ghost_vlad.batch_norm.{p}", (c,)) for p in ("weight", "bias", "running_mean", "running_var")]
    dsub = h // m if m else 0
    out += [("cls_pq_layer._C_k", (m, k, dsub))]
    out += [(f"vlad_pq_layers.{i}._C_k", (m, k, dsub)) for i in range(c)]
    return collections.OrderedDict(out)


def check_config(config: dict) -> None:
    """Checks what the schema cannot: expert order and names, divisibility, type ids."""
    problems = []
    if config.get("format") != "vidx-hcq-bundle":
        problems.append(f"format is {config.get('format')!r}, expected 'vidx-hcq-bundle'")
    if config.get("format_version") != 1:
        problems.append(f"format_version is {config.get('format_version')!r}, this reads 1")
    required = ["name", "experts", "tokens_per_expert", "max_positions", "type_vocab_size", "hidden_size", "layers",
                "heads", "ffn_size", "layer_norm_eps", "clusters", "batch_norm_eps", "pq", "provenance"]
    missing = [k for k in required if k not in config]
    if missing:
        raise BundleError("bundle.json lacks " + ", ".join(missing))
    names = [e.get("name") for e in config["experts"]]
    if not names:
        problems.append("no experts")
    if names != sorted(names):
        problems.append(f"experts must be in alphabetical order, got {names}")
    if len(set(names)) != len(names):
        problems.append(f"duplicate expert names in {names}")
    for e in config["experts"]:
        for key in ("name", "width", "type_id", "timing", "extractor"):
            if key not in e:
                problems.append(f"expert {e.get('name')!r} lacks {key}")
        if e.get("timing") not in ("windowed", "none"):
            problems.append(f"expert {e.get('name')!r}: timing {e.get('timing')!r} is not windowed or none")
        tid = e.get("type_id")
        if not isinstance(tid, int) or not 1 <= tid < config["type_vocab_size"]:
            problems.append(f"expert {e.get('name')!r}: type_id {tid!r} outside 1..{config['type_vocab_size'] - 1}")
    h = config["hidden_size"]
    if config["heads"] <= 0 or h % config["heads"]:
        problems.append(f"hidden_size {h} is not a multiple of heads {config['heads']}")
    pq = config["pq"]
    if pq.get("subspaces", 0) <= 0 or h % pq["subspaces"]:
        problems.append(f"hidden_size {h} is not a multiple of pq.subspaces {pq.get('subspaces')}")
    if not 1 <= pq.get("codewords", 0) <= 256:
        problems.append(f"pq.codewords {pq.get('codewords')} outside 1..256")
    if config["max_positions"] < 2:
        problems.append("max_positions must be at least 2 (position 1 marks untimed tokens)")
    if problems:
        raise BundleError("bad bundle.json: " + "; ".join(problems))


def validate_schema(config: dict) -> bool:
    """Validates against the JSON schema when `jsonschema` is importable; returns whether it ran."""
    try:
        import jsonschema
    except ImportError:
        return False
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        schema = json.load(f)
    try:
        jsonschema.validate(config, schema)
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise BundleError(f"bundle.json does not match the schema at {where}: {e.message}") from None
    return True


def config_json_bytes(config: dict) -> bytes:
    """bundle.json's canonical bytes: indent 2, sorted keys, UTF-8, trailing newline."""
    return (json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _sha256_file(path: str) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.digest()


def fingerprint(bundle_dir: str) -> str:
    """SHA-256("vidx-bundle-v1\\n" + SHA-256(bundle.json) + SHA-256(weights.safetensors)), hex."""
    h = hashlib.sha256(b"vidx-bundle-v1\n")
    h.update(_sha256_file(os.path.join(bundle_dir, CONFIG_NAME)))
    h.update(_sha256_file(os.path.join(bundle_dir, WEIGHTS_NAME)))
    return h.hexdigest()


def check_weights(config: dict, weights: dict, where: str = WEIGHTS_NAME) -> None:
    """Strict: every expected tensor present, float32, expected shape; nothing else."""
    expected = expected_shapes(config)
    missing = [f"{n} {list(s)}" for n, s in expected.items() if n not in weights]
    unexpected = sorted(n for n in weights if n not in expected)
    wrong = [f"{n} is {list(np.shape(weights[n]))}, expected {list(s)}"
             for n, s in expected.items() if n in weights and tuple(np.shape(weights[n])) != s]
    dtypes = [f"{n} is {np.asarray(weights[n]).dtype}" for n in expected
              if n in weights and np.asarray(weights[n]).dtype != np.float32]
    problems = []
    if missing:
        problems.append("missing tensors: " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected tensors: " + ", ".join(unexpected))
    if wrong:
        problems.append("wrong shapes: " + "; ".join(wrong))
    if dtypes:
        problems.append("not float32: " + ", ".join(dtypes))
    if problems:
        raise BundleError(f"{where}: " + "; ".join(problems))


def load_bundle(bundle_dir: str) -> tuple[dict, dict]:
    """(config, name -> float32 array), checked strictly against each other."""
    cpath = os.path.join(bundle_dir, CONFIG_NAME)
    wpath = os.path.join(bundle_dir, WEIGHTS_NAME)
    try:
        with open(cpath, encoding="utf-8") as f:
            config = json.load(f)
    except FileNotFoundError:
        raise BundleError(f"{cpath}: not found (not a model bundle)") from None
    except json.JSONDecodeError as e:
        raise BundleError(f"{cpath}: not valid JSON: {e}") from None
    check_config(config)
    validate_schema(config)
    if not os.path.exists(wpath):
        raise BundleError(f"{wpath}: not found")
    weights, _ = safetensors_np.load(wpath)
    check_weights(config, weights, wpath)
    return config, weights


def write_bundle(bundle_dir: str, config: dict, weights: dict) -> str:
    """Checks and writes bundle.json and weights.safetensors (each atomically); returns the fingerprint."""
    check_config(config)
    validate_schema(config)
    weights = {n: np.ascontiguousarray(w, dtype=np.float32) for n, w in weights.items()}
    check_weights(config, weights)
    os.makedirs(bundle_dir, exist_ok=True)
    # Weights first: a reader that sees the new bundle.json also sees the new weights.
    safetensors_np.save(os.path.join(bundle_dir, WEIGHTS_NAME), weights, None)
    safetensors_np.atomic_write(os.path.join(bundle_dir, CONFIG_NAME), config_json_bytes(config))
    return fingerprint(bundle_dir)


def _rng(seed: int, name: str) -> np.random.RandomState:
    # One stream per tensor, derived from the seed and the name, so a tensor's values do not
    # depend on which other tensors exist. RandomState's streams are frozen across NumPy versions.
    digest = hashlib.sha256(f"{seed}\n{name}".encode()).digest()
    return np.random.RandomState(int.from_bytes(digest[:4], "little"))


def random_bundle(config: dict, seed: int) -> dict:
    """Deterministic seeded weights of the right shapes and sane scales for `config`.

    Linear and embedding weights ~ N(0, 0.02), biases ~ N(0, 0.02), LayerNorm gamma ~ 1 + N(0, 0.05),
    GhostVLAD clusters ~ N(0, 1/sqrt(hidden)) as HCQ initialises them, BatchNorm weight ~ 1 + N(0, 0.1),
    running_mean ~ N(0, 0.1), running_var ~ U(0.5, 1.5), codewords ~ N(0, 1).
    """
    h = config["hidden_size"]
    out = {}
    for name, shape in expected_shapes(config).items():
        r = _rng(seed, name)
        if name.endswith("layer_norm.weight"):
            a = 1.0 + 0.05 * r.standard_normal(shape)
        elif name.startswith("ghost_vlad.clusters"):
            a = r.standard_normal(shape) / np.sqrt(h)
        elif name == "ghost_vlad.batch_norm.weight":
            a = 1.0 + 0.1 * r.standard_normal(shape)
        elif name == "ghost_vlad.batch_norm.running_var":
            a = r.uniform(0.5, 1.5, shape)
        elif name in ("ghost_vlad.batch_norm.bias", "ghost_vlad.batch_norm.running_mean"):
            a = 0.1 * r.standard_normal(shape)
        elif name.endswith("._C_k"):
            a = r.standard_normal(shape)
        else:
            a = 0.02 * r.standard_normal(shape)
        out[name] = a.astype(np.float32)
    return out
