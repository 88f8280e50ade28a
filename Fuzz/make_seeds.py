#!/usr/bin/env python3
"""Write a few small, valid index shards (Schemas/index-shard.md) as a fuzzing seed corpus.

    python3 Fuzz/make_seeds.py OUT_DIR

Standard library only, written from the spec: its own CRC-32C and layout code, so the seeds
do not depend on the Swift writer. Deterministic: the same files on every run.
"""

import hashlib
import os
import struct
import sys

MAGIC = b"VIDXSHRD"
END_MAGIC = b"VIDXEND\x00"
HEADER = struct.Struct("<8sHHIQIIII32sIIIIQ28sI")   # 128 bytes
ENTRY = struct.Struct("<IIQQII")                     # 32 bytes
TRAILER = struct.Struct("<II8s")                     # 16 bytes


def _crc_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        table.append(c)
    return table


_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = (c >> 8) ^ _TABLE[(c ^ b) & 0xFF]
    return c ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


def video_id(external_id: str) -> int:
    return int.from_bytes(hashlib.sha256(external_id.encode("utf-8")).digest()[:8], "little")


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


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_seeds.py OUT_DIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    seeds = {
        "empty.vidx": shard([], levels=2, m=2, k=4, d=4, tombstones=[5, 9]),
        "small.vidx": shard(names_in_shard(3, 1, 2, "video"), levels=3, m=4, k=16, d=8, shard_index=1, shard_count=2,
                            tombstones=[video_id("gone")]),
        "optional.vidx": shard(names_in_shard(4, 0, 1, "clip"), levels=2, m=2, k=5, d=4, embeddings=True,
                               segments=[2, 0, 1, 3], hash_bits=12, extra=[(99, 0, b"future")]),
    }
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"make_seeds: wrote {len(seeds)} shards to {out}")


if __name__ == "__main__":
    main()
