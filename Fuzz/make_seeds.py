#!/usr/bin/env python3
"""Write the fuzzing seed corpora of vidx-fuzz's five targets: valid files and near misses.

    python3 Fuzz/make_seeds.py OUT_DIR

Writes OUT_DIR/TARGET/ for TARGET in shard, safetensors, npy, bundle, manifest: files named
`valid-*` (the reader must accept them) and `near-*` (a valid file with exactly one defect:
the reader must refuse it). `make fuzz` starts libFuzzer from them; VidxFuzzTests replays
them through the normally built `vidx-fuzz` and checks both promises.

Standard library only, written from the specs (Schemas/index-shard.md, the safetensors
format, NumPy's .npy format, Schemas/model-bundle.schema.json,
Schemas/index-manifest.schema.json): its own CRC-32C and layout code, so the seeds do not
depend on the Swift writers. Deterministic: the same files on every run.
"""

import hashlib
import json
import os
import struct
import sys

MAGIC = b"VIDXSHRD"
END_MAGIC = b"VIDXEND\x00"
HEADER = struct.Struct("<8sHHIQIIII32sIIIIQ28sI")   # 128 bytes
ENTRY = struct.Struct("<IIQQII")                     # 32 bytes
TRAILER = struct.Struct("<II8s")                     # 16 bytes


# The shard format's CRC-32C and id rule come from the NumPy reader, the reference the
# tests already hold the Swift writer to.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Pipelines", "tools"))
from vidx_index import crc32c, video_id  # noqa: E402


def shard(names, levels, m, k, d, shard_index=0, shard_count=1, tombstones=(), embeddings=False,
          segments=None, hash_bits=None, extra=()):
    """The bytes of a shard holding `names` (ids chosen by the caller to fit the shard)."""
    rows = sorted((video_id(s), s) for s in names)
    assert all(i % shard_count == shard_index for i, _ in rows)
    n = len(rows)
    codes = [[(r * 7 + j * 3) % k for j in range(levels * m)] for r in range(n)]
    blob = [s.encode("utf-8") for _, s in rows]
    offsets = [0]
    for b in blob:
        offsets.append(offsets[-1] + len(b))
    sections = [
        (1, 1, b"".join(struct.pack("<Q", i) for i, _ in rows)),
        (2, 1, b"".join(struct.pack("<Q", o) for o in offsets) + b"".join(blob)),
        (3, 1, b"".join(hashlib.sha256(s.encode()).digest() if r % 2 else bytes(32) for r, (_, s) in enumerate(rows))),
        (4, 1, bytes(c for row in codes for c in row[:m])),
        (5, 1, bytes(c for row in codes for c in row[m:])),
        (6, 1, b"".join(struct.pack("<Q", t) for t in sorted(tombstones))),
    ]
    if embeddings:
        sections.append((16, 0, b"".join(struct.pack("<e", (r + j) / 8) for r in range(n) for j in range(d))))
    if segments is not None:   # per video, a number of segments
        g = [0]
        for count in segments:
            g.append(g[-1] + count)
        total = g[-1]
        payload = struct.pack("<Q", total) + b"".join(struct.pack("<Q", x) for x in g)
        payload += b"".join(struct.pack("<ff", s, s + 1.5) for s in range(total))
        payload += bytes((s + j) % k for s in range(total) for j in range(levels * m))
        sections.append((17, 0, payload))
    if hash_bits is not None:
        width = (hash_bits + 7) // 8
        sections.append((18, 0, struct.pack("<II", hash_bits, 0) + bytes((r * 31 + j) & 0xFF for r in range(n) for j in range(width))))
    sections.extend(extra)

    table_end = 128 + 32 * len(sections)
    placed, pos = [], table_end
    for kind, flags, payload in sections:
        off = (pos + 63) // 64 * 64
        placed.append((kind, flags, off, payload))
        pos = off + len(payload)
    size = pos + 16
    buf = bytearray(size)
    for i, (kind, flags, off, payload) in enumerate(placed):
        ENTRY.pack_into(buf, 128 + 32 * i, kind, flags, off, len(payload), crc32c(payload), 0)
        buf[off:off + len(payload)] = payload
    HEADER.pack_into(buf, 0, MAGIC, 1, 128, 0, n, levels, m, k, d, bytes(range(32)), shard_index, shard_count,
                     len(sections), 0, size, bytes(28), 0)
    struct.pack_into("<I", buf, 124, crc32c(bytes(buf[:124])))
    TRAILER.pack_into(buf, size - 16, crc32c(bytes(buf[:size - 16])), 0, END_MAGIC)
    return bytes(buf)


def names_in_shard(count, shard_index, shard_count, prefix):
    out, i = [], 0
    while len(out) < count:
        name = f"{prefix}-{i}" if i % 3 else f"{prefix}-é{i}"
        if video_id(name) % shard_count == shard_index:
            out.append(name)
        i += 1
    return out


def fix_crcs(buf):
    """Recomputes every section CRC, the header CRC and the file CRC of a shard (after an
    edit that only a content check must catch)."""
    buf = bytearray(buf)
    count = struct.unpack_from("<I", buf, 80)[0]
    for i in range(count):
        off, length = struct.unpack_from("<QQ", buf, 128 + 32 * i + 8)
        struct.pack_into("<I", buf, 128 + 32 * i + 24, crc32c(bytes(buf[off:off + length])))
    struct.pack_into("<I", buf, 124, crc32c(bytes(buf[:124])))
    struct.pack_into("<I", buf, len(buf) - 16, crc32c(bytes(buf[:len(buf) - 16])))
    return bytes(buf)


def shard_seeds():
    small = shard(names_in_shard(3, 1, 2, "video"), levels=3, m=4, k=16, d=8, shard_index=1, shard_count=2,
                  tombstones=[video_id("gone")])
    seeds = {
        "valid-empty.vidx": shard([], levels=2, m=2, k=4, d=4, tombstones=[5, 9]),
        "valid-small.vidx": small,
        "valid-optional.vidx": shard(names_in_shard(4, 0, 1, "clip"), levels=2, m=2, k=5, d=4, embeddings=True,
                                     segments=[2, 0, 1, 3], hash_bits=12, extra=[(99, 0, b"future")]),
    }
    damaged = bytearray(small)
    damaged[50] ^= 1
    seeds["near-header-crc.vidx"] = bytes(damaged)
    seeds["near-truncated.vidx"] = small[:-1]
    coarse = struct.unpack_from("<Q", small, 128 + 32 * 3 + 8)[0]   # table entry 3: coarse_codes
    code = bytearray(small)
    code[coarse] = 16   # K is 16
    seeds["near-code-above-k.vidx"] = fix_crcs(code)
    return seeds


def safetensors_file(tensors, metadata=None, header_text=None, length=None, tail=b""):
    """A safetensors file: [(name, dtype, shape, raw bytes)], back to back in name order,
    the header padded with spaces so that the data section starts 8-aligned."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in sorted(tensors):
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = (header_text if header_text is not None else json.dumps(header, separators=(",", ":"))).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)
    return struct.pack("<Q", len(text) if length is None else length) + text + data + tail


def safetensors_seeds():
    tensors = [
        ("alpha", "F32", [2, 3], struct.pack("<6f", 0, 0.5, -1, 2, 3.25, 1e-3)),
        ("beta", "U8", [4], bytes([1, 2, 250, 255])),
        ("gamma", "I64", [2], struct.pack("<2q", -5, 1 << 40)),
        ("empty", "F32", [0, 4], b""),
        ("scalar", "F64", [], struct.pack("<d", 3.5)),
        ("名前", "BF16", [2], bytes([0x80, 0x3F, 0x00, 0xC0])),
    ]
    meta = {"format": "test", "ünï": "välue"}
    good = safetensors_file(tensors, meta)
    overlapping = json.dumps({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
                              "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}})
    return {
        "valid-tensors.safetensors": good,
        "valid-no-tensors.safetensors": safetensors_file([]),
        "near-header-length.safetensors": safetensors_file(tensors, meta, length=len(good)),
        "near-trailing-byte.safetensors": good + b"\0",
        "near-overlap.safetensors": safetensors_file([], header_text=overlapping, tail=bytes(6)),
        "near-dtype.safetensors": safetensors_file([("w", "U16", [2], bytes(4))]),
    }


def npy_file(descr, shape, raw, version=1, fortran=False, magic=b"\x93NUMPY"):
    """An .npy file as numpy.save writes it: the header dict padded with spaces and a
    newline so that the data starts 64-aligned."""
    dims = f"({shape[0]},)" if len(shape) == 1 else "(" + ", ".join(str(d) for d in shape) + ")"
    text = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {dims}, }}"
    prefix = 10 if version == 1 else 12
    text += " " * (-(prefix + len(text) + 1) % 64) + "\n"
    length = struct.pack("<H", len(text)) if version == 1 else struct.pack("<I", len(text))
    return magic + bytes([version, 0]) + length + text.encode("utf-8") + raw


def npy_seeds():
    floats = struct.pack("<12f", *[i / 4 for i in range(12)])
    return {
        "valid-f4-matrix.npy": npy_file("<f4", [3, 4], floats),
        "valid-f8-vector-v2.npy": npy_file("<f8", [5], struct.pack("<5d", 1, -2, 3.5, 1e300, -0.0), version=2),
        "valid-f4-scalar-v3.npy": npy_file("<f4", [], struct.pack("<f", 7), version=3),
        "valid-f4-empty.npy": npy_file("<f4", [0, 8], b""),
        "near-fortran.npy": npy_file("<f4", [3, 4], floats, fortran=True),
        "near-int32.npy": npy_file("<i4", [3, 4], floats),
        "near-short-data.npy": npy_file("<f4", [3, 4], floats[:-1]),
        "near-version-4.npy": npy_file("<f4", [3, 4], floats, version=4),
    }


def bundle_config(**changes):
    """A bundle.json that follows Schemas/model-bundle.schema.json (the starter's shape, small)."""
    config = {
        "batch_norm_eps": 1e-05, "clusters": 3,
        "experts": [
            {"extractor": "builtin:audio/logmel64-stats@1", "name": "audio", "timing": "windowed", "type_id": 2, "width": 128},
            {"extractor": "builtin:motion/framediff-8x8@1", "name": "motion", "timing": "none", "type_id": 1, "width": 64},
        ],
        "ffn_size": 64, "format": "vidx-hcq-bundle", "format_version": 1, "heads": 4, "hidden_size": 32,
        "layer_norm_eps": 1e-12, "layers": 2, "max_positions": 32, "name": "seed",
        "pq": {"codewords": 16, "subspaces": 8},
        "provenance": {"notes": "fuzzing seed", "seed": 1, "source": "starter", "trained": False},
        "tokens_per_expert": 4, "type_vocab_size": 19,
    }
    config.update(changes)
    return (json.dumps(config, indent=2, sort_keys=True) + "\n").encode("utf-8")


def bundle_seeds():
    unsorted = json.loads(bundle_config())["experts"][::-1]
    timing = json.loads(bundle_config())["experts"]
    timing[0]["timing"] = "sometimes"
    missing = json.loads(bundle_config())
    del missing["heads"]
    return {
        "valid-bundle.json": bundle_config(),
        "valid-compact.json": json.dumps(json.loads(bundle_config()), separators=(",", ":")).encode("utf-8"),
        "near-unsorted-experts.json": bundle_config(experts=unsorted),
        "near-unknown-timing.json": bundle_config(experts=timing),
        "near-missing-heads.json": json.dumps(missing).encode("utf-8"),
        "near-codewords-257.json": bundle_config(pq={"codewords": 257, "subspaces": 8}),
    }


def manifest(**changes):
    """A MANIFEST.json that follows Schemas/index-manifest.schema.json: two base shards."""
    def record(index, videos):
        return {"bytes": 1040, "crc32c": "8210409e", "file": f"base-{index:04d}.vidx", "kind": "base", "sequence": 0,
                "sha256": hashlib.sha256(bytes([index])).hexdigest(), "shard_count": 2, "shard_index": index,
                "tombstones": 0, "videos": videos}
    m = {
        "bundle_fingerprint": hashlib.sha256(b"bundle").hexdigest(),
        "codebooks": {"bytes": 4194544, "file": "codebooks-159d80a47dc2deed.safetensors",
                      "sha256": hashlib.sha256(b"codebooks").hexdigest()},
        "codewords": 256,
        "config": {"inputs": [{"sha256": hashlib.sha256(b"codes").hexdigest(), "videos": 3}], "mode": "build", "shards": 2},
        "counts": {"deleted": 0, "entries": 3, "live": 3, "superseded": 0},
        "dimension": 512, "format": "vidx-index-manifest", "format_version": 1, "generation": "g000001",
        "levels": 8, "parent": None, "shards": [record(0, 2), record(1, 1)], "subspaces": 32,
        "tool": {"name": "vidx-shard", "version": "0.4.0"},
    }
    m.update(changes)
    return (json.dumps(m, indent=2, sort_keys=True) + "\n").encode("utf-8")


def manifest_seeds():
    no_parent = json.loads(manifest())
    del no_parent["parent"]
    return {
        "valid-manifest.json": manifest(),
        "valid-child.json": manifest(generation="g000002", parent="g000001",
                                     config={"mode": "append", "shards": 2, "deleted_ids": 1}),
        "near-generation-name.json": manifest(generation="gen1"),
        "near-unknown-key.json": manifest(extra=1),
        "near-no-parent.json": json.dumps(no_parent).encode("utf-8"),
        "near-version-2.json": manifest(format_version=2),
    }


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_seeds.py OUT_DIR")
    out = sys.argv[1]
    corpora = {"shard": shard_seeds(), "safetensors": safetensors_seeds(), "npy": npy_seeds(),
               "bundle": bundle_seeds(), "manifest": manifest_seeds()}
    for target, seeds in corpora.items():
        os.makedirs(os.path.join(out, target), exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(out, target, name), "wb") as f:
                f.write(data)
    total = sum(len(s) for s in corpora.values())
    print(f"make_seeds: wrote {total} seeds for {len(corpora)} targets to {out}")


if __name__ == "__main__":
    main()
