"""Write index shards (`*.vidx`) and index generations from Schemas/index-shard.md alone,
for the tests of Pipelines/tools/vidx_index.py (the reader). Test-only: small files, plain
Python CRC-32C, and knobs to write files that break one rule at a time.

    data = build_shard(external_ids, codes, codewords=K, dimension=D, fingerprint=fp, ...)
    write_generation(index_dir, "g000001", rounds=[{"entries": {...}, "shard_count": 2}], ...)

Independent of the reader on purpose: its own CRC, its own layout code, its own live-entry
resolution (for the manifest's counts).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct

import numpy as np

MAGIC = b"VIDXSHRD"
END_MAGIC = b"VIDXEND\x00"
HEADER = struct.Struct("<8sHHIQIIII32sIIIIQ28sI")
ENTRY = struct.Struct("<IIQQII")
TRAILER = struct.Struct("<II8s")


def _table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        t.append(c)
    return t


_T = _table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in bytes(data):
        c = (c >> 8) ^ _T[(c ^ b) & 0xFF]
    return c ^ 0xFFFFFFFF


def video_id(external_id: str) -> int:
    return int.from_bytes(hashlib.sha256(external_id.encode("utf-8")).digest()[:8], "little")


def _pad(n: int, align: int) -> int:
    return (n + align - 1) // align * align


def build_shard(external_ids, codes, *, codewords, dimension, fingerprint: bytes, shard_index=0, shard_count=1,
                content_hashes=None, tombstones=(), coarse_embeddings=None, segments=None, hash_codes=None,
                extra_sections=(), sort=True, align=64, pad_trailer=False, format_version=1, ids=None,
                required_flags=True) -> bytes:
    """The bytes of one shard.

    external_ids: list of str; codes: (N, L, M) uint8 in the same order. sort=True sorts the
    rows by id (as the format requires); sort=False keeps the given order. ids overrides the
    computed ids. tombstones: ids (ints) or external ids (str). segments: per video a list of
    (start, end, codes (L, M)). hash_codes: (bits, (N, ceil(bits/8)) uint8). extra_sections:
    (kind, flags, payload bytes), placed after the known ones. align: section alignment
    (64 in a valid file).
    """
    codes = np.asarray(codes, dtype=np.uint8)
    n = len(external_ids)
    if n == 0:
        codes = codes.reshape(0, *codes.shape[1:]) if codes.ndim == 3 else codes
    levels, m = codes.shape[1], codes.shape[2]
    ids_ = [video_id(e) for e in external_ids] if ids is None else list(ids)
    order = sorted(range(n), key=lambda i: ids_[i]) if sort else list(range(n))
    ext = [external_ids[i] for i in order]
    idv = [ids_[i] for i in order]
    codes = codes[order] if n else codes
    if content_hashes is None:
        hashes = [hashlib.sha256(b"content:" + e.encode("utf-8")).digest() for e in ext]
    else:
        hashes = [content_hashes[i] for i in order]
    tomb = sorted(video_id(t) if isinstance(t, str) else int(t) for t in tombstones)

    blobs = [e.encode("utf-8") for e in ext]
    offs = [0]
    for b in blobs:
        offs.append(offs[-1] + len(b))
    sections = [
        (1, b"".join(struct.pack("<Q", i) for i in idv)),
        (2, b"".join(struct.pack("<Q", o) for o in offs) + b"".join(blobs)),
        (3, b"".join(hashes)),
        (4, codes[:, 0, :].tobytes() if n else b""),
        (5, codes[:, 1:, :].tobytes() if n else b""),
        (6, b"".join(struct.pack("<Q", t) for t in tomb)),
    ]
    sections = [(k, 1 if required_flags else 0, p) for k, p in sections]
    if coarse_embeddings is not None:
        emb = np.asarray(coarse_embeddings, dtype="<f2")[order]
        sections.append((16, 0, emb.tobytes()))
    if segments is not None:
        segs = [segments[i] for i in order]
        g = [0]
        for s in segs:
            g.append(g[-1] + len(s))
        payload = struct.pack("<Q", g[-1]) + b"".join(struct.pack("<Q", x) for x in g)
        payload += b"".join(struct.pack("<ff", a, b) for s in segs for a, b, _ in s)
        payload += b"".join(np.asarray(c, dtype=np.uint8).tobytes() for s in segs for _, _, c in s)
        sections.append((17, 0, payload))
    if hash_codes is not None:
        bits, arr = hash_codes
        sections.append((18, 0, struct.pack("<II", bits, 0) + np.asarray(arr, dtype=np.uint8)[order].tobytes()))
    sections.extend(extra_sections)

    table_end = 128 + 32 * len(sections)
    placed, pos = [], table_end
    for kind, flags, payload in sections:
        off = _pad(pos, align)
        placed.append((kind, flags, off, payload))
        pos = off + len(payload)
    trailer_at = _pad(pos, 64) if pad_trailer else pos
    file_size = trailer_at + 16
    buf = bytearray(file_size)
    for i, (kind, flags, off, payload) in enumerate(placed):
        ENTRY.pack_into(buf, 128 + 32 * i, kind, flags, off, len(payload), crc32c(payload), 0)
        buf[off:off + len(payload)] = payload
    HEADER.pack_into(buf, 0, MAGIC, format_version, 128, 0, n, levels, m, codewords, dimension, fingerprint,
                     shard_index, shard_count, len(sections), 0, file_size, b"\0" * 28, 0)
    TRAILER.pack_into(buf, file_size - 16, 0, 0, END_MAGIC)
    return bytes(refresh_checksums(buf))


def refresh_checksums(buf) -> bytearray:
    """Recompute every section CRC, the header CRC and the file CRC (after a deliberate edit)."""
    buf = bytearray(buf)
    count = struct.unpack_from("<I", buf, 80)[0]
    for i in range(count):
        at = 128 + 32 * i
        kind, flags, off, length, _, res = ENTRY.unpack_from(buf, at)
        if off + length <= len(buf):
            ENTRY.pack_into(buf, at, kind, flags, off, length, crc32c(buf[off:off + length]), res)
    struct.pack_into("<I", buf, 124, crc32c(buf[:124]))
    size = len(buf)
    struct.pack_into("<I", buf, size - 16, crc32c(buf[:size - 16]))
    return buf


def table_entry(buf, index):
    kind, flags, off, length, crc, res = ENTRY.unpack_from(buf, 128 + 32 * index)
    return {"kind": kind, "flags": flags, "offset": off, "length": length, "crc": crc, "reserved": res}


def set_table_entry(buf, index, **fields) -> bytearray:
    """Rewrite fields of a table entry, then refresh the checksums."""
    buf = bytearray(buf)
    e = table_entry(buf, index)
    e.update(fields)
    ENTRY.pack_into(buf, 128 + 32 * index, e["kind"], e["flags"], e["offset"], e["length"], e["crc"], e["reserved"])
    return refresh_checksums(buf)


def find_section(buf, kind):
    count = struct.unpack_from("<I", buf, 80)[0]
    for i in range(count):
        e = table_entry(buf, i)
        if e["kind"] == kind:
            return i, e
    raise KeyError(kind)


# -- codebooks and generations ---------------------------------------------------------------

def random_codebooks(levels, subspaces, codewords, dimension, seed=0) -> np.ndarray:
    """(L, M, K, D/M) float32, every codeword L2-normalised (distinct with probability 1)."""
    r = np.random.RandomState(seed)
    c = r.standard_normal((levels, subspaces, codewords, dimension // subspaces))
    c /= np.linalg.norm(c, axis=-1, keepdims=True)
    return c.astype(np.float32)


def codebooks_bytes(codebooks, fingerprint_hex: str) -> bytes:
    """A safetensors file: one F32 tensor `codebooks`, metadata as the manifest schema says."""
    c = np.ascontiguousarray(codebooks, dtype="<f4")
    meta = {"bundle_fingerprint": fingerprint_hex, "format": "vidx-codebooks", "format_version": "1"}
    header = {"__metadata__": meta,
              "codebooks": {"dtype": "F32", "shape": list(c.shape), "data_offsets": [0, c.nbytes]}}
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (_pad(len(h), 8) - len(h))
    return struct.pack("<Q", len(h)) + h + c.tobytes()


def resolve(rounds):
    """Live entries by the spec's rule, with dicts: {id: (round, external id, codes)}, and the counts.
    rounds: list of {"entries": {external_id: codes}, "tombstones": [external ids or ids]}; round k
    has sequence k."""
    newest, tomb_max, entries = {}, {}, 0
    for seq, rnd in enumerate(rounds):
        for ext, c in rnd["entries"].items():
            newest[video_id(ext)] = (seq, ext, np.asarray(c, dtype=np.uint8))
            entries += 1
        for t in rnd.get("tombstones", ()):
            vid = video_id(t) if isinstance(t, str) else int(t)
            tomb_max[vid] = max(tomb_max.get(vid, -1), seq)
    live = {vid: v for vid, v in newest.items() if tomb_max.get(vid, -1) <= v[0]}
    counts = {"entries": entries, "live": len(live), "superseded": entries - len(newest),
              "deleted": len(newest) - len(live)}
    return live, counts


def write_generation(index_dir, name, rounds, *, codebooks, fingerprint_hex, parent=None, set_current=True,
                     coarse_embeddings=False):
    """Write index_dir/name/ (shards of every round, codebooks, MANIFEST.json) and CURRENT.

    rounds[0] is the base (sequence 0), rounds[k] the k-th delta; each
    {"entries": {external_id: codes (L, M)}, "tombstones": [...], "shard_count": S}.
    A video goes to shard id mod S of its round; so does a tombstone. Returns the manifest.
    """
    L, M, K, d = codebooks.shape
    D = M * d
    fp = bytes.fromhex(fingerprint_hex)
    gdir = os.path.join(index_dir, name)
    os.makedirs(gdir, exist_ok=True)
    shards = []
    for seq, rnd in enumerate(rounds):
        S = rnd.get("shard_count", 1)
        for s in range(S):
            exts = [e for e in rnd["entries"] if video_id(e) % S == s]
            codes = np.array([rnd["entries"][e] for e in exts], dtype=np.uint8).reshape(len(exts), L, M)
            tombs = [t for t in rnd.get("tombstones", ()) if (video_id(t) if isinstance(t, str) else t) % S == s]
            emb = None
            if coarse_embeddings:
                r = np.random.RandomState(seq * 1000 + s)
                emb = r.standard_normal((len(exts), D)).astype(np.float16)
            data = build_shard(exts, codes, codewords=K, dimension=D, fingerprint=fp, shard_index=s, shard_count=S,
                               tombstones=tombs, coarse_embeddings=emb)
            fname = f"base-{s:04d}.vidx" if seq == 0 else f"delta-{seq:04d}-{s:04d}.vidx"
            with open(os.path.join(gdir, fname), "wb") as f:
                f.write(data)
            shards.append({"file": fname, "kind": "base" if seq == 0 else "delta", "sequence": seq,
                           "shard_index": s, "shard_count": S, "videos": len(exts), "tombstones": len(tombs),
                           "bytes": len(data), "crc32c": "%08x" % struct.unpack_from("<I", data, len(data) - 16)[0],
                           "sha256": hashlib.sha256(data).hexdigest()})
    cb = codebooks_bytes(codebooks, fingerprint_hex)
    cb_name = f"codebooks-{fingerprint_hex[:16]}.safetensors"
    with open(os.path.join(gdir, cb_name), "wb") as f:
        f.write(cb)
    _, counts = resolve(rounds)
    manifest = {
        "format": "vidx-index-manifest", "format_version": 1, "generation": name, "parent": parent,
        "bundle_fingerprint": fingerprint_hex, "levels": L, "subspaces": M, "codewords": K, "dimension": D,
        "codebooks": {"file": cb_name, "sha256": hashlib.sha256(cb).hexdigest(), "bytes": len(cb)},
        "shards": shards, "counts": counts,
        "tool": {"name": "shard_writer_mimic", "version": "0"},
        "config": {"mode": "build" if len(rounds) == 1 else "append", "shards": rounds[-1].get("shard_count", 1)},
    }
    with open(os.path.join(gdir, "MANIFEST.json"), "w") as f:
        json.dump(manifest, f, sort_keys=True, indent=1)
    if set_current:
        with open(os.path.join(index_dir, "CURRENT"), "w") as f:
            f.write(name + "\n")
    return manifest
