#!/usr/bin/env python3
"""Build the starter model bundle for the built-in experts (untrained, seeded random weights).

    make_starter.py OUT_DIR

Writes OUT_DIR/bundle.json, OUT_DIR/weights.safetensors and OUT_DIR/README.md, and prints
the bundle fingerprint. Deterministic: the same bytes on every run and machine.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bundle_tools  # noqa: E402
import safetensors_np  # noqa: E402

SEED = 20221

STARTER_CONFIG = {
    "format": "vidx-hcq-bundle",
    "format_version": 1,
    "name": "starter",
    "experts": [
        {"name": "appearance", "width": 1280, "type_id": 5, "timing": "windowed",
         "extractor": "builtin:appearance/efficientnet-lite0@1"},
        {"name": "audio", "width": 128, "type_id": 2, "timing": "windowed",
         "extractor": "builtin:audio/logmel64-stats@1"},
        {"name": "motion", "width": 64, "type_id": 1, "timing": "windowed",
         "extractor": "builtin:motion/framediff-8x8@1"},
    ],
    "tokens_per_expert": 30,
    "max_positions": 32,
    "type_vocab_size": 19,
    "hidden_size": 512,
    "layers": 4,
    "heads": 4,
    "ffn_size": 3072,
    "layer_norm_eps": 1e-12,
    "clusters": 7,
    "batch_norm_eps": 1e-5,
    "pq": {"subspaces": 32, "codewords": 256},
    "provenance": {
        "source": "starter",
        "trained": False,
        "seed": SEED,
        "notes": "Untrained: seeded random weights (bundle_tools.random_bundle). Codes are deterministic "
                 "but carry no retrieval quality; export a trained HCQ checkpoint with export_hcq.py for that.",
    },
}

README = """# Starter model bundle (untrained)

This bundle lets the pipeline run end to end on the built-in experts before a trained
model exists. **Its transformer, projections, GhostVLAD and codebooks are untrained:
seeded random weights** (seed {seed}, `bundle_tools.random_bundle`), made by
`Pipelines/models/make_starter.py`.

- The codes it produces are deterministic (same input, same bytes) but carry
  **no retrieval quality**: text-to-video search over them is no better than chance.
- Real quality comes from a trained HCQ checkpoint exported with
  `Pipelines/models/export_hcq.py` (the video side of the authors' model; see
  Documentation/HCQ-inference.md). Such a bundle needs features from the extractors it was trained on.

| expert | width | type id | timing | extractor |
|---|---|---|---|---|
{rows}

T = {T} tokens per expert, {layers} layers, hidden {hidden}, {heads} heads, FFN {ffn},
{clusters} GhostVLAD clusters, PQ M = {M}, K = {K}. Fingerprint: `{fingerprint}`.
"""


def build(out_dir: str) -> str:
    """Writes the starter bundle and its README into `out_dir`; returns the fingerprint."""
    config = STARTER_CONFIG
    fp = bundle_tools.write_bundle(out_dir, config, bundle_tools.random_bundle(config, SEED))
    rows = "\n".join(f"| {e['name']} | {e['width']} | {e['type_id']} | {e['timing']} | `{e['extractor']}` |"
                     for e in config["experts"])
    text = README.format(seed=SEED, rows=rows, T=config["tokens_per_expert"], layers=config["layers"],
                         hidden=config["hidden_size"], heads=config["heads"], ffn=config["ffn_size"],
                         clusters=config["clusters"], M=config["pq"]["subspaces"], K=config["pq"]["codewords"],
                         fingerprint=fp)
    safetensors_np.atomic_write(os.path.join(out_dir, "README.md"), text.encode("utf-8"))
    return fp


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: make_starter.py OUT_DIR", file=sys.stderr)
        return 2
    try:
        print(build(argv[0]))
    except (bundle_tools.BundleError, OSError) as e:
        print(f"make_starter.py: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
