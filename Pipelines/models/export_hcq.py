#!/usr/bin/env python3
"""Export an HCQ checkpoint (torch.save, read without PyTorch) into a model bundle.

    export_hcq.py CHECKPOINT.pth OUT_BUNDLE/ --experts face,ocr,rgb,s3d,scene,speech,vggish
        [--type-ids name=id,...] [--timing name=windowed|none,...] [--extractor name=ID,...]
        [--tokens-per-expert 30] [--heads 4] [--name NAME] [--allow-opaque-objects]

The checkpoint is a dict with 'state_dict' (as the HCQ trainer saves it) or a bare state
dict; a 'module.' prefix (DataParallel) is stripped. Only the video side is exported, under
the same names (see the schema); widths, hidden size, FFN size, layers, positions, the
type vocabulary, clusters and M/K are read from the shapes. T and the number of heads are
not in the weights: give them (defaults 30 and 4). Type ids and timing default to HCQ's
expert table for its expert names; extractors default to `imported:<name>`.

Ignored: `*.num_batches_tracked`, the PQ layers' BatchNorm buffers, `vid_bert.pooler.*`,
the text side (`txt_bert.*`, `text_GU.*`, `text_vlad_proj.*`, `moe_fc_txt.*`) and the
aliased `_C_v` codebooks (checked equal to `_C_k`). Anything else must be exactly the
expected video-side set with consistent shapes, and the checkpoint's experts must be
exactly --experts; otherwise nothing is written and the exit status is 1, with a message
naming the keys or experts.

On success prints the bundle fingerprint (64 hex digits) on stdout. Exit status: 0 done,
1 refused or failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bundle_tools  # noqa: E402
import torch_checkpoint  # noqa: E402

#: HCQ's experts (Documentation/HCQ-inference.md, Experts): name -> (type id, timing).
HCQ_EXPERTS = {
    "face": (3, "none"), "ocr": (7, "none"), "rgb": (5, "windowed"), "s3d": (1, "windowed"),
    "scene": (9, "windowed"), "speech": (6, "none"), "vggish": (2, "windowed"),
}
LAYER_NORM_EPS = 1e-12
BATCH_NORM_EPS = 1e-5

_IGNORED = [
    re.compile(r".*\.num_batches_tracked$"),
    re.compile(r"^cls_pq_layer\.BatchNorm\.(running_mean|running_var|weight|bias)$"),
    re.compile(r"^vlad_pq_layers\.\d+\.BatchNorm\.(running_mean|running_var|weight|bias)$"),
    re.compile(r"^vid_bert\.pooler\."),
    re.compile(r"^(txt_bert|text_GU|text_gu|text_vlad_proj|moe_fc_txt)\."),
]
_ALIAS = re.compile(r"^(cls_pq_layer|vlad_pq_layers\.\d+)\._C_v$")


class ExportError(Exception):
    """A checkpoint or a command line the exporter refuses; the message says why."""


def _kv_list(text: str | None, what: str) -> dict:
    out: dict = {}
    if not text:
        return out
    for item in text.split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise ExportError(f"{what}: '{item}' is not name=value")
        k, v = item.split("=", 1)
        k, v = k.strip(), v.strip()
        if k in out:
            raise ExportError(f"{what}: '{k}' given twice")
        out[k] = v
    return out


def state_dict_of(obj) -> dict:
    """The state dict inside a loaded checkpoint, with any 'module.' prefix removed."""
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        sd = obj["state_dict"]
    elif isinstance(obj, dict):
        sd = obj
    else:
        raise ExportError(f"the checkpoint holds a {type(obj).__name__}, not a dict or a dict with 'state_dict'")
    out = {}
    for k, v in sd.items():
        if not isinstance(k, str):
            raise ExportError(f"state dict key {k!r} is not a string")
        name = k[len("module."):] if k.startswith("module.") else k
        if name in out:
            raise ExportError(f"'{name}' appears both with and without the 'module.' prefix")
        out[name] = v
    return out


def _array(sd: dict, name: str) -> np.ndarray:
    v = sd[name]
    if not isinstance(v, np.ndarray):
        raise ExportError(f"'{name}' is a {type(v).__name__}, not a tensor")
    return v


def infer_config(sd: dict, experts: list[str], *, type_ids: dict, timing: dict, extractors: dict,
                 tokens_per_expert: int, heads: int, name: str, provenance: dict) -> dict:
    """A bundle config from the video-side shapes of `sd` and the command line."""
    found = sorted({m.group(1) for k in sd for m in [re.match(r"^video_dim_reduce\.([^.]+)\.fc\.weight$", k)] if m})
    asked = sorted(experts)
    lacking = [e for e in asked if e not in found]
    extra = [e for e in found if e not in asked]
    if lacking or extra:
        parts = []
        if lacking:
            parts.append("experts given on the command line but not in the checkpoint: " + ", ".join(lacking))
        if extra:
            parts.append("experts in the checkpoint but not given with --experts: " + ", ".join(extra))
        raise ExportError("; ".join(parts) + f" (checkpoint has {', '.join(found) or 'none'})")
    for what, given in (("--type-ids", type_ids), ("--timing", timing), ("--extractor", extractors)):
        unknown = sorted(set(given) - set(asked))
        if unknown:
            raise ExportError(f"{what} names experts not in --experts: {', '.join(unknown)}")

    def need(key):
        if key not in sd:
            raise ExportError(f"missing video-side key: {key}")
        return _array(sd, key)

    pos = need("vid_bert.embeddings.position_embeddings.weight")
    typ = need("vid_bert.embeddings.token_type_embeddings.weight")
    if pos.ndim != 2 or typ.ndim != 2:
        raise ExportError(f"inconsistent shapes: position embeddings {list(pos.shape)}, type embeddings {list(typ.shape)}")
    hidden = pos.shape[1]
    layer_ids = sorted({int(m.group(1)) for k in sd for m in [re.match(r"^vid_bert\.encoder\.layer\.(\d+)\.", k)] if m})
    if not layer_ids:
        raise ExportError("missing video-side keys: no vid_bert.encoder.layer.<i>.* found")
    if layer_ids != list(range(len(layer_ids))):
        raise ExportError(f"encoder layers are not numbered 0..n-1: {layer_ids}")
    ffn_w = need("vid_bert.encoder.layer.0.intermediate.dense.weight")
    c2 = need("ghost_vlad.clusters2")
    ck = need("cls_pq_layer._C_k")
    if c2.ndim != 3 or ck.ndim != 3 or ffn_w.ndim != 2:
        raise ExportError(f"inconsistent shapes: ghost_vlad.clusters2 {list(c2.shape)}, "
                          f"cls_pq_layer._C_k {list(ck.shape)}, intermediate {list(ffn_w.shape)}")
    m, k, dsub = ck.shape
    if m * dsub != hidden:
        raise ExportError(f"inconsistent shapes: cls_pq_layer._C_k is {list(ck.shape)}, "
                          f"{m} x {dsub} != hidden size {hidden}")
    if heads < 1 or hidden % heads:
        raise ExportError(f"--heads {heads} does not divide the hidden size {hidden}")
    if k > 256:
        raise ExportError(f"cls_pq_layer._C_k has {k} codewords; codes must fit a byte (<= 256)")

    expert_cfg = []
    for e in asked:
        w = need(f"video_dim_reduce.{e}.fc.weight")
        if w.ndim != 2:
            raise ExportError(f"inconsistent shapes: video_dim_reduce.{e}.fc.weight is {list(w.shape)}")
        if e in type_ids:
            try:
                tid = int(type_ids[e])
            except ValueError:
                raise ExportError(f"--type-ids: '{type_ids[e]}' for {e} is not an integer") from None
        elif e in HCQ_EXPERTS:
            tid = HCQ_EXPERTS[e][0]
        else:
            raise ExportError(f"expert '{e}' is not one of HCQ's ({', '.join(HCQ_EXPERTS)}): give --type-ids {e}=ID")
        if not 1 <= tid < typ.shape[0]:
            raise ExportError(f"type id {tid} of expert '{e}' is outside 1..{typ.shape[0] - 1} "
                              f"(the type vocabulary has {typ.shape[0]} rows)")
        if e in timing:
            t = timing[e]
            if t not in ("windowed", "none"):
                raise ExportError(f"--timing: '{t}' for {e} is not windowed or none")
        elif e in HCQ_EXPERTS:
            t = HCQ_EXPERTS[e][1]
        else:
            raise ExportError(f"expert '{e}' is not one of HCQ's: give --timing {e}=windowed|none")
        if not re.match(r"^[a-z][a-z0-9_]*$", e):
            raise ExportError(f"expert name '{e}' must match ^[a-z][a-z0-9_]*$")
        expert_cfg.append({"name": e, "width": int(w.shape[1]), "type_id": tid, "timing": t,
                           "extractor": extractors.get(e, f"imported:{e}")})
    return {
        "format": "vidx-hcq-bundle", "format_version": 1, "name": name,
        "experts": expert_cfg,
        "tokens_per_expert": tokens_per_expert,
        "max_positions": int(pos.shape[0]), "type_vocab_size": int(typ.shape[0]),
        "hidden_size": int(hidden), "layers": len(layer_ids), "heads": heads, "ffn_size": int(ffn_w.shape[0]),
        "layer_norm_eps": LAYER_NORM_EPS, "clusters": int(c2.shape[2]), "batch_norm_eps": BATCH_NORM_EPS,
        "pq": {"subspaces": int(m), "codewords": int(k)},
        "provenance": provenance,
    }


def video_weights(sd: dict, config: dict) -> dict:
    """The bundle's tensors from `sd` (float32), refusing missing, unexpected or misshapen keys."""
    expected = bundle_tools.expected_shapes(config)
    kept = {}
    unexpected = []
    aliases = []
    for key in sd:
        if any(p.match(key) for p in _IGNORED):
            continue
        if _ALIAS.match(key):
            aliases.append(key)
            continue
        if key in expected:
            kept[key] = sd[key]
        else:
            unexpected.append(key)
    missing = [f"{k} {list(s)}" for k, s in expected.items() if k not in kept]
    wrong = []
    for k, s in expected.items():
        if k in kept:
            v = kept[k]
            if not isinstance(v, np.ndarray):
                wrong.append(f"{k} is a {type(v).__name__}, not a tensor")
            elif tuple(v.shape) != s:
                wrong.append(f"{k} is {list(v.shape)}, expected {list(s)}")
            elif v.dtype.kind != "f":
                wrong.append(f"{k} has dtype {v.dtype}, expected floating point")
    problems = []
    if missing:
        problems.append("missing video-side keys: " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected video-side keys: " + ", ".join(sorted(unexpected)))
    if wrong:
        problems.append("inconsistent shapes: " + "; ".join(wrong))
    for a in sorted(aliases):
        twin = a[:-len("_C_v")] + "_C_k"
        if twin not in kept:
            continue  # reported as missing
        va, vk = sd[a], kept[twin]
        if not isinstance(va, np.ndarray) or va.shape != vk.shape or not np.array_equal(va, vk):
            problems.append(f"{a} differs from {twin} (dual codebooks are not supported: the video side uses _C_k)")
    if problems:
        raise ExportError("; ".join(problems))
    out = {}
    bad = []
    for k in expected:
        a = np.ascontiguousarray(kept[k], dtype=np.float32)
        if not np.isfinite(a).all():
            bad.append(k)
        out[k] = a
    if bad:
        raise ExportError("non-finite values (NaN or infinity) in: " + ", ".join(bad))
    return out


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export(checkpoint: str, out_dir: str, experts: list[str], *, type_ids=None, timing=None, extractors=None,
           tokens_per_expert: int = 30, heads: int = 4, name: str | None = None,
           allow_opaque: bool = False) -> str:
    """Exports `checkpoint` into the bundle directory `out_dir`; returns its fingerprint."""
    if not experts:
        raise ExportError("--experts is empty")
    if len(set(experts)) != len(experts):
        raise ExportError(f"--experts names an expert twice: {','.join(experts)}")
    if tokens_per_expert < 1:
        raise ExportError("--tokens-per-expert must be at least 1")
    try:
        obj = torch_checkpoint.load(checkpoint, allow_opaque=allow_opaque)
    except torch_checkpoint.UnsafeCheckpointError as e:
        raise ExportError(f"{checkpoint}: {e} (the exporter's --allow-opaque-objects does that)") from None
    except (torch_checkpoint.CheckpointError, OSError) as e:
        raise ExportError(f"{checkpoint}: {e}") from None
    sd = state_dict_of(obj)
    if name is None:
        stem = os.path.splitext(os.path.basename(checkpoint))[0]
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem) or "hcq"
    provenance = {"source": "export_hcq.py", "checkpoint": os.path.basename(checkpoint),
                  "checkpoint_sha256": _sha256(checkpoint), "trained": True}
    config = infer_config(sd, experts, type_ids=type_ids or {}, timing=timing or {}, extractors=extractors or {},
                          tokens_per_expert=tokens_per_expert, heads=heads, name=name, provenance=provenance)
    weights = video_weights(sd, config)
    try:
        return bundle_tools.write_bundle(out_dir, config, weights)
    except bundle_tools.BundleError as e:
        raise ExportError(str(e)) from None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="export_hcq.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="torch.save file (zip or legacy format)")
    p.add_argument("out_bundle", help="bundle directory to write (bundle.json + weights.safetensors)")
    p.add_argument("--experts", required=True, help="comma-separated expert names, e.g. face,ocr,rgb,s3d,scene,speech,vggish")
    p.add_argument("--type-ids", default="", help="name=id,... (default: HCQ's table for its expert names)")
    p.add_argument("--timing", default="", help="name=windowed|none,... (default: HCQ's table)")
    p.add_argument("--extractor", default="", help="name=ID,... (default: imported:<name>)")
    p.add_argument("--tokens-per-expert", type=int, default=30, help="T (30 for MSRVTT/LSMDC, 100 for ActivityNet)")
    p.add_argument("--heads", type=int, default=4, help="attention heads (4)")
    p.add_argument("--name", default=None, help="bundle name (default: the checkpoint's file stem)")
    p.add_argument("--allow-opaque-objects", action="store_true",
                   help="keep objects of unknown classes outside the weights (a saved config, say) as inert "
                        "placeholders instead of refusing the file; nothing is imported or run either way")
    args = p.parse_args(argv)
    try:
        experts = [e.strip() for e in args.experts.split(",") if e.strip()]
        fp = export(args.checkpoint, args.out_bundle, experts,
                    type_ids=_kv_list(args.type_ids, "--type-ids"), timing=_kv_list(args.timing, "--timing"),
                    extractors=_kv_list(args.extractor, "--extractor"),
                    tokens_per_expert=args.tokens_per_expert, heads=args.heads, name=args.name,
                    allow_opaque=args.allow_opaque_objects)
    except (ExportError, OSError) as e:
        print(f"export_hcq.py: error: {e}", file=sys.stderr)
        return 1
    print(fp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
