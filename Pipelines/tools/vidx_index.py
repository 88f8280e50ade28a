#!/usr/bin/env python3
r"""Read index shards (`*.vidx`) and index generations with NumPy alone, and search them.

Written from `Schemas/index-shard.md` (the shard format, generations, scoring) and
`Schemas/index-manifest.schema.json` (MANIFEST.json) only, to show that the spec is enough
for another language. NumPy and the standard library, nothing else.

Library:

    shard = Shard("index/g000001/base-0000.vidx")          # memory-mapped, validated
    shard.header["video_count"], shard.ids, shard.codes(0), shard.external_id(0)

    gen = Generation("index")                              # the CURRENT generation
    gen.live.ids, gen.live.codes, gen.live.external_ids, gen.live.lookup("video-1")
    gen.search(queries, k=10)                              # queries: (L, D) or (Q, L, D)
    gen.search(queries, k=10, rerank=1000)                 # coarse (level 0) then full
    gen.search(gen.reconstruct("video-1"), k=5)            # query by example

Command line:

    python3 Pipelines/tools/vidx_index.py verify INDEX_DIR
    python3 Pipelines/tools/vidx_index.py search INDEX_DIR --query Q.npy [--k 10] [--rerank K]
    python3 Pipelines/tools/vidx_index.py search INDEX_DIR --like VIDEO_ID [--k 10]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import mmap
import os
import re
import struct
import sys

import numpy as np

__all__ = [
    "crc32c", "video_id", "ShardError", "GenerationError", "Shard", "Generation", "LiveEntries",
    "lookup_tables", "score", "coarse_score", "top_k", "reconstruct", "load_codebooks", "verify_index",
    "FORMAT_VERSION", "SECTION_NAMES",
]

# ----------------------------------------------------------------------------------------
# CRC-32C (Castagnoli): reflected polynomial 0x82F63B78, init and final XOR 0xFFFFFFFF.
# ----------------------------------------------------------------------------------------

_POLY = 0x82F63B78


def _byte_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (_POLY if c & 1 else 0)
        table.append(c)
    return table


_TABLE = _byte_table()
# _T4[j][b]: the register contribution of byte b followed by j zero bytes (slicing-by-4).
_T4 = np.zeros((4, 256), dtype=np.uint32)
_T4[0] = _TABLE
for _j in range(1, 4):
    _T4[_j] = (_T4[_j - 1] >> np.uint32(8)) ^ _T4[0][_T4[_j - 1] & np.uint32(0xFF)]
del _j

_SMALL = 1 << 14          # below this many bytes: a plain byte-at-a-time loop
_MAX_LANES = 1 << 16      # at most this many chunks processed side by side


def _crc_loop(reg: int, data) -> int:
    t = _TABLE
    for b in bytes(data):
        reg = (reg >> 8) ^ t[(reg ^ b) & 0xFF]
    return reg


# A linear map on the 32-bit register (over GF(2)) is a (32,) uint32 array: the image of
# each bit. _ZERO_POWERS[i] is the map "feed 2**i zero bytes".
def _apply(mat: np.ndarray, v):
    if isinstance(v, (int, np.integer)):
        r = 0
        v = int(v)
        j = 0
        while v:
            if v & 1:
                r ^= int(mat[j])
            v >>= 1
            j += 1
        return r
    v = np.asarray(v, dtype=np.uint32)
    r = np.zeros_like(v)
    for j in range(32):
        r ^= np.where((v >> np.uint32(j)) & np.uint32(1) != 0, mat[j], np.uint32(0)).astype(np.uint32)
    return r


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The map a after b."""
    return _apply(a, b)


_ZERO_POWERS = [np.array([(((1 << j) >> 8) ^ _TABLE[(1 << j) & 0xFF]) for j in range(32)], dtype=np.uint32)]
for _i in range(1, 64):
    _ZERO_POWERS.append(_compose(_ZERO_POWERS[-1], _ZERO_POWERS[-1]))
del _i


def _zeros_map(n: int) -> np.ndarray:
    """The map 'feed n zero bytes'."""
    m = np.array([1 << j for j in range(32)], dtype=np.uint32)   # identity
    i = 0
    while n:
        if n & 1:
            m = _compose(_ZERO_POWERS[i], m)
        n >>= 1
        i += 1
    return m


def _crc_raw(reg: int, arr: np.ndarray) -> int:
    """The register after feeding `arr` (uint8, 1-D) to a register holding `reg`."""
    while True:
        n_total = arr.shape[0]
        if n_total < _SMALL:
            return _crc_loop(reg, arr.tobytes())
        # Split into P equal chunks of n bytes (n a multiple of 4), CRC them side by side
        # from a zero register (slicing-by-4 over the lanes), then fold the lanes pairwise:
        # raw(A || B) = Z_|B|(raw(A)) ^ raw(B).
        lanes = 1 << min(16, (n_total // 256).bit_length() - 1)
        n = (n_total // lanes) & ~3
        main = lanes * n
        words = np.ascontiguousarray(arr[:main].reshape(lanes, n // 4, 4).transpose(1, 0, 2)).view("<u4")
        words = words.reshape(n // 4, lanes)
        t0, t1, t2, t3 = _T4[0], _T4[1], _T4[2], _T4[3]
        m8, s8, s16, s24 = np.uint32(0xFF), np.uint32(8), np.uint32(16), np.uint32(24)
        r = np.zeros(lanes, dtype=np.uint32)
        for row in words:
            r ^= row
            r = t3[r & m8] ^ t2[(r >> s8) & m8] ^ t1[(r >> s16) & m8] ^ t0[r >> s24]
        z = _zeros_map(n)
        while r.shape[0] > 1:
            r = _apply(z, r[0::2]) ^ r[1::2]
            z = _compose(z, z)
        reg = _apply(_zeros_map(main), reg) ^ int(r[0])
        arr = arr[main:]


def crc32c(data, crc: int = 0) -> int:
    """CRC-32C of `data` (bytes, bytearray, memoryview, mmap or uint8 array), continuing
    from `crc` (the CRC of the bytes before, 0 for none). crc32c(b"123456789") == 0xE3069283.
    Large inputs are processed in parallel lanes with NumPy (about 0.5 s for 100 MB)."""
    if isinstance(data, np.ndarray):
        arr = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    else:
        arr = np.frombuffer(data, dtype=np.uint8) if len(memoryview(data).cast("B")) else np.zeros(0, np.uint8)
    return _crc_raw((crc ^ 0xFFFFFFFF) & 0xFFFFFFFF, arr) ^ 0xFFFFFFFF


def video_id(external_id: str) -> int:
    """A video's id: the first 8 bytes of SHA-256(UTF-8 external id), little-endian."""
    return int.from_bytes(hashlib.sha256(external_id.encode("utf-8")).digest()[:8], "little")


# ----------------------------------------------------------------------------------------
# Shards
# ----------------------------------------------------------------------------------------

FORMAT_VERSION = 1            # the only version this reader knows (oldest and newest)
MAGIC = b"VIDXSHRD"
END_MAGIC = b"VIDXEND\x00"
HEADER_SIZE = 128
TRAILER_SIZE = 16
ENTRY_SIZE = 32
MAX_SECTIONS = 64
ALIGN = 64

_HEADER = struct.Struct("<8sHHIQIIII32sIIIIQ28sI")
_ENTRY = struct.Struct("<IIQQII")
_TRAILER = struct.Struct("<II8s")
assert _HEADER.size == HEADER_SIZE and _ENTRY.size == ENTRY_SIZE and _TRAILER.size == TRAILER_SIZE

SECTION_NAMES = {
    1: "ids", 2: "external_ids", 3: "content_hashes", 4: "coarse_codes", 5: "fine_codes",
    6: "tombstones", 16: "coarse_embeddings_f16", 17: "segments", 18: "hash_codes",
}
_KIND_OF = {v: k for k, v in SECTION_NAMES.items()}
_REQUIRED_KINDS = (1, 2, 3, 4, 5, 6)

SHARD_ERROR_KINDS = (
    "unreadable", "truncated", "bad_magic", "too_new", "too_old", "bad_header", "bad_header_checksum",
    "bad_section_table", "bad_section_length", "unknown_required_section", "bad_checksum", "bad_content",
)


class ShardError(Exception):
    """A shard file this reader refuses. `kind` is one of SHARD_ERROR_KINDS, `path` the file,
    `section` where the problem is ("header", "section_table", "trailer", "file", "padding",
    a section name such as "ids", "section kind 99", or None)."""

    def __init__(self, kind: str, message: str, path=None, section=None):
        assert kind in SHARD_ERROR_KINDS, kind
        self.kind, self.path, self.section, self.message = kind, path, section, message
        where = f"{path}: " if path is not None else ""
        sec = f" [{section}]" if section else ""
        super().__init__(f"{where}{kind}{sec}: {message}")


def _section_name(kind: int) -> str:
    return SECTION_NAMES.get(kind, f"section kind {kind}")


class Shard:
    """One shard file, memory-mapped and validated (Schemas/index-shard.md).

    verify_checksums=True (the default) also checks every section CRC, the trailer's file_crc
    and that every id is the hash of its external id; with False only the header CRC, the
    table, the bounds and the contents' structure are checked (what a search node that
    trusts its storage must check).

    Attributes: header (dict), ids (N,) uint64, coarse_codes (N, M) uint8,
    fine_codes (N, L-1, M) uint8, tombstones (T,) uint64, content_hashes (N, 32) uint8,
    coarse_embeddings (N, D) float16 or None, segments (dict or None), hash_codes
    ((bits, (N, ceil(bits/8)) uint8) or None), sections (list of table entries as dicts),
    unknown_sections (the entries of optional kinds this reader does not know), file_crc.
    Arrays are read-only views of the mapping.
    """

    def __init__(self, path, verify_checksums: bool = True):
        self.path = os.fspath(path)
        self._mm = None
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size > 0:
                    self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                    buf = self._mm
                else:
                    buf = b""
        except (OSError, ValueError) as e:
            raise ShardError("unreadable", str(e), self.path) from None
        self._buf = buf
        self._u8 = np.frombuffer(buf, dtype=np.uint8) if size else np.zeros(0, np.uint8)
        self.size = size
        self._parse(verify_checksums)

    # -- helpers --------------------------------------------------------------------------

    def _err(self, kind, message, section=None):
        return ShardError(kind, message, self.path, section)

    def _view(self, dtype, offset, count):
        dtype = np.dtype(dtype)
        if count == 0:
            a = np.zeros(0, dtype=dtype)
            a.flags.writeable = False
            return a
        return np.frombuffer(self._buf, dtype=dtype, count=count, offset=offset)

    def close(self):
        """Drop the arrays and unmap the file (if no other view of it is alive)."""
        for name in ("ids", "coarse_codes", "fine_codes", "tombstones", "content_hashes", "coarse_embeddings",
                     "segments", "hash_codes", "_ext_offsets", "_u8"):
            setattr(self, name, None)
        self._buf = None
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:
                pass
            self._mm = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- parsing --------------------------------------------------------------------------

    def _parse(self, verify):
        buf, size = self._buf, self.size
        # Magic, then the version (before anything whose place a newer version may change).
        if size < len(MAGIC):
            if bytes(buf[:size]) == MAGIC[:size]:
                raise self._err("truncated", f"file is {size} bytes, shorter than a header", "header")
            raise self._err("bad_magic", f"file starts with {bytes(buf[:size])!r}, not {MAGIC!r}", "header")
        if bytes(buf[:8]) != MAGIC:
            raise self._err("bad_magic", f"file starts with {bytes(buf[:8])!r}, not {MAGIC!r}", "header")
        if size < 12:
            raise self._err("truncated", f"file is {size} bytes, shorter than a header", "header")
        version, header_size = struct.unpack_from("<HH", buf, 8)
        if version > FORMAT_VERSION:
            raise self._err("too_new", f"format_version {version}, newer than the newest this reader knows "
                                       f"({FORMAT_VERSION})", "header")
        if version < FORMAT_VERSION:
            raise self._err("too_old", f"format_version {version}, older than the oldest this reader still "
                                       f"reads ({FORMAT_VERSION})", "header")
        if size < HEADER_SIZE:
            raise self._err("truncated", f"file is {size} bytes, shorter than the {HEADER_SIZE}-byte header",
                            "header")
        if header_size != HEADER_SIZE:
            raise self._err("bad_header", f"header_size {header_size}, version 1 requires {HEADER_SIZE}", "header")
        (_, _, _, flags, n, levels, m, k, d, fingerprint, shard_index, shard_count, section_count,
         reserved0, file_size, reserved, header_crc) = _HEADER.unpack_from(buf, 0)
        got = crc32c(self._u8[:124])
        if got != header_crc:
            raise self._err("bad_header_checksum", f"header_crc is {header_crc:08x}, bytes 0..123 give {got:08x}",
                            "header")
        if flags != 0:
            raise self._err("bad_header", f"flags {flags:#x}, no flags are defined", "header")
        if reserved0 != 0 or any(reserved):
            raise self._err("bad_header", "reserved header bytes are not zero", "header")
        if levels < 1 or m < 1 or d < 1:
            raise self._err("bad_header", f"levels {levels}, subspaces {m}, dimension {d}: each must be at least 1",
                            "header")
        if not 1 <= k <= 256:
            raise self._err("bad_header", f"codewords {k}, must be 1 to 256", "header")
        if d % m:
            raise self._err("bad_header", f"dimension {d} is not a multiple of subspaces {m}", "header")
        if shard_count < 1 or shard_index >= shard_count:
            raise self._err("bad_header", f"shard_index {shard_index} of shard_count {shard_count}", "header")
        if size < file_size:
            raise self._err("truncated", f"file is {size} bytes, its header says {file_size}", "file")
        if size > file_size:
            raise self._err("bad_header", f"file is {size} bytes, longer than its header's file_size {file_size}",
                            "header")
        if file_size < HEADER_SIZE + TRAILER_SIZE:
            raise self._err("bad_header", f"file_size {file_size} leaves no room for the trailer", "header")
        file_crc, trailer_reserved, end_magic = _TRAILER.unpack_from(buf, file_size - TRAILER_SIZE)
        if end_magic != END_MAGIC:
            raise self._err("bad_magic", f"trailer ends with {end_magic!r}, not {END_MAGIC!r}", "trailer")
        if trailer_reserved != 0:
            raise self._err("bad_header", "the trailer's reserved field is not zero", "trailer")
        self.file_crc = file_crc
        self.header = {
            "format_version": version, "video_count": n, "levels": levels, "subspaces": m, "codewords": k,
            "dimension": d, "bundle_fingerprint": fingerprint.hex(), "shard_index": shard_index,
            "shard_count": shard_count, "section_count": section_count, "file_size": file_size,
        }
        self.video_count, self.levels, self.subspaces, self.codewords, self.dimension = n, levels, m, k, d

        # Section table: structure of every entry before any section is used.
        if section_count > MAX_SECTIONS:
            raise self._err("bad_section_table", f"section_count {section_count}, at most {MAX_SECTIONS}",
                            "section_table")
        table_end = HEADER_SIZE + ENTRY_SIZE * section_count
        data_end = file_size - TRAILER_SIZE
        if table_end > data_end:
            raise self._err("bad_section_table", f"the table ({section_count} entries) runs past the trailer",
                            "section_table")
        entries = []
        prev_end, seen = table_end, {}
        for i in range(section_count):
            kind, eflags, offset, length, crc, eres = _ENTRY.unpack_from(buf, HEADER_SIZE + ENTRY_SIZE * i)
            name = _section_name(kind)
            where = f"entry {i} ({name})"
            if eflags & ~1:
                raise self._err("bad_section_table", f"{where}: flags {eflags:#x}, only bit 0 is defined", name)
            if eres != 0:
                raise self._err("bad_section_table", f"{where}: reserved field is not zero", name)
            if kind in seen:
                raise self._err("bad_section_table", f"{where}: kind {kind} appears twice (entries {seen[kind]} "
                                                     f"and {i})", name)
            seen[kind] = i
            if offset % ALIGN:
                raise self._err("bad_section_table", f"{where}: offset {offset} is not a multiple of {ALIGN}", name)
            if offset < table_end:
                raise self._err("bad_section_table", f"{where}: offset {offset} is inside the header or table "
                                                     f"(which end at {table_end})", name)
            if offset < prev_end:
                raise self._err("bad_section_table", f"{where}: offset {offset} overlaps the previous section or "
                                                     f"is out of order (previous ends at {prev_end})", name)
            if offset + length > data_end:
                raise self._err("bad_section_table", f"{where}: [{offset}, {offset + length}) runs past "
                                                     f"file_size - 16 = {data_end}", name)
            prev_end = offset + length
            entries.append({"kind": kind, "name": name, "flags": eflags, "required": bool(eflags & 1),
                            "offset": offset, "length": length, "crc": crc})
        self.sections = entries
        for e in entries:
            if e["kind"] not in SECTION_NAMES and e["required"]:
                raise self._err("unknown_required_section", f"required section kind {e['kind']} is unknown to this "
                                                            f"reader (format_version {version})", e["name"])
        by_kind = {e["kind"]: e for e in entries}
        for kind in _REQUIRED_KINDS:
            if kind not in by_kind:
                raise self._err("bad_section_table", f"required section {SECTION_NAMES[kind]} (kind {kind}) is "
                                                     "missing", SECTION_NAMES[kind])
            if not by_kind[kind]["required"]:
                raise self._err("bad_section_table", f"section {SECTION_NAMES[kind]} (kind {kind}) lacks the "
                                                     "required flag", SECTION_NAMES[kind])
        self.unknown_sections = [dict(e) for e in entries if e["kind"] not in SECTION_NAMES]

        # Lengths that follow from the header alone.
        fixed = {1: 8 * n, 3: 32 * n, 4: n * m, 5: n * (levels - 1) * m, 16: 2 * n * d}
        for kind, expected in fixed.items():
            e = by_kind.get(kind)
            if e is not None and e["length"] != expected:
                raise self._err("bad_section_length", f"{e['name']} is {e['length']} bytes, expected {expected}",
                                e["name"])
        e = by_kind[6]
        if e["length"] % 8:
            raise self._err("bad_section_length", f"tombstones is {e['length']} bytes, not a multiple of 8",
                            "tombstones")
        e = by_kind[2]
        if e["length"] < 8 * (n + 1):
            raise self._err("bad_section_length", f"external_ids is {e['length']} bytes, less than the "
                                                  f"{8 * (n + 1)} of its offsets", "external_ids")
        if 17 in by_kind and by_kind[17]["length"] < 8 + 8 * (n + 1):
            raise self._err("bad_section_length", f"segments is {by_kind[17]['length']} bytes, less than "
                                                  f"{8 + 8 * (n + 1)}", "segments")
        if 18 in by_kind and by_kind[18]["length"] < 8:
            raise self._err("bad_section_length", f"hash_codes is {by_kind[18]['length']} bytes, less than 8",
                            "hash_codes")

        # Lengths that depend on a count stored at the start of the section (bounds checked above).
        e = by_kind[2]
        (o_last,) = struct.unpack_from("<Q", buf, e["offset"] + 8 * n)
        if o_last != e["length"] - 8 * (n + 1):
            raise self._err("bad_section_length", f"external_ids: o[N] = {o_last} but the section holds "
                                                  f"{e['length'] - 8 * (n + 1)} bytes of text", "external_ids")
        e = by_kind.get(17)
        if e is not None:
            (g_total,) = struct.unpack_from("<Q", buf, e["offset"])
            expected = 8 + 8 * (n + 1) + 8 * g_total + g_total * levels * m
            if e["length"] != expected:
                raise self._err("bad_section_length", f"segments is {e['length']} bytes, expected {expected} for "
                                                      f"{g_total} segments", "segments")
        e = by_kind.get(18)
        if e is not None:
            (bits,) = struct.unpack_from("<I", buf, e["offset"])
            if e["length"] != 8 + n * ((bits + 7) // 8):
                raise self._err("bad_section_length", f"hash_codes is {e['length']} bytes, expected "
                                                      f"{8 + n * ((bits + 7) // 8)} for {bits} bits", "hash_codes")

        # Padding: zero bytes between the table, the sections and the trailer.
        pos = table_end
        for e in entries + [{"offset": data_end, "length": 0, "name": "trailer"}]:
            if e["offset"] > pos and self._u8[pos:e["offset"]].any():
                raise self._err("bad_content", f"non-zero padding bytes in [{pos}, {e['offset']}) before "
                                               f"{e['name']}", "padding")
            pos = max(pos, e["offset"] + e["length"])

        # Checksums.
        if verify:
            for e in entries:
                got = crc32c(self._u8[e["offset"]:e["offset"] + e["length"]])
                if got != e["crc"]:
                    raise self._err("bad_checksum", f"{e['name']}: crc is {e['crc']:08x}, its bytes give {got:08x}",
                                    e["name"])
            got = crc32c(self._u8[:data_end])
            if got != file_crc:
                raise self._err("bad_checksum", f"file_crc is {file_crc:08x}, the bytes before the trailer give "
                                                f"{got:08x}", "file")

        # Sections.
        e = by_kind[1]
        self.ids = self._view("<u8", e["offset"], n)
        e = by_kind[2]
        offs = self._view("<u8", e["offset"], n + 1)
        blob_len = e["length"] - 8 * (n + 1)
        if int(offs[0]) != 0:
            raise self._err("bad_content", f"external_ids: o[0] = {int(offs[0])}, not 0", "external_ids")
        if n and np.any(offs[1:] < offs[:-1]):
            i = int(np.argmax(offs[1:] < offs[:-1]))
            raise self._err("bad_content", f"external_ids: offsets decrease at {i + 1}", "external_ids")
        if n and np.any(offs[1:] == offs[:-1]):
            i = int(np.argmax(offs[1:] == offs[:-1]))
            raise self._err("bad_content", f"external_ids: row {i}: the external id is empty", "external_ids")
        blob_start = e["offset"] + 8 * (n + 1)
        self._ext_offsets = offs
        self._blob = bytes(self._u8[blob_start:blob_start + blob_len])
        try:
            self._blob.decode("utf-8")
        except UnicodeDecodeError as err:
            raise self._err("bad_content", f"external_ids: not UTF-8 ({err})", "external_ids") from None
        if blob_len and n:
            starts = offs[:-1][offs[:-1] < blob_len].astype(np.int64)
            cont = (np.frombuffer(self._blob, np.uint8)[starts] & 0xC0) == 0x80
            if cont.any():
                raise self._err("bad_content", "external_ids: an offset splits a UTF-8 character", "external_ids")
        e = by_kind[3]
        self.content_hashes = self._view(np.uint8, e["offset"], 32 * n).reshape(n, 32)
        e = by_kind[4]
        self.coarse_codes = self._view(np.uint8, e["offset"], n * m).reshape(n, m)
        e = by_kind[5]
        self.fine_codes = self._view(np.uint8, e["offset"], n * (levels - 1) * m).reshape(n, levels - 1, m)
        e = by_kind[6]
        self.tombstones = self._view("<u8", e["offset"], e["length"] // 8)
        e = by_kind.get(16)
        self.coarse_embeddings = None if e is None else self._view("<f2", e["offset"], n * d).reshape(n, d)
        self.segments = None
        e = by_kind.get(17)
        if e is not None:
            (g_total,) = struct.unpack_from("<Q", buf, e["offset"])
            g = self._view("<u8", e["offset"] + 8, n + 1)
            if int(g[0]) != 0 or int(g[n]) != g_total or (n and np.any(g[1:] < g[:-1])):
                raise self._err("bad_content", "segments: offsets are not 0 .. G, non-decreasing", "segments")
            w_off = e["offset"] + 8 + 8 * (n + 1)
            windows = self._view("<f4", w_off, 2 * g_total).reshape(g_total, 2)
            seg_codes = self._view(np.uint8, w_off + 8 * g_total, g_total * levels * m).reshape(g_total, levels, m)
            if k < 256 and seg_codes.size and int(seg_codes.max()) >= k:
                raise self._err("bad_content", f"segments: a code is {int(seg_codes.max())}, codewords is {k}",
                                "segments")
            self.segments = {"count": g_total, "offsets": g, "windows": windows, "codes": seg_codes}
        self.hash_codes = None
        e = by_kind.get(18)
        if e is not None:
            bits, zero = struct.unpack_from("<II", buf, e["offset"])
            width = (bits + 7) // 8
            if zero != 0:
                raise self._err("bad_content", "hash_codes: the u32 after the bit count is not zero", "hash_codes")
            self.hash_codes = (bits, self._view(np.uint8, e["offset"] + 8, n * width).reshape(n, width))

        # Contents.
        ids = self.ids
        if n > 1 and np.any(ids[1:] <= ids[:-1]):
            i = int(np.argmax(ids[1:] <= ids[:-1]))
            raise self._err("bad_content", f"ids are not strictly ascending at row {i + 1}", "ids")
        if n:
            bad = (ids % np.uint64(shard_count)) != np.uint64(shard_index)
            if bad.any():
                i = int(np.argmax(bad))
                raise self._err("bad_content", f"id {int(ids[i])} (row {i}) is not in shard {shard_index} of "
                                               f"{shard_count}", "ids")
        t = self.tombstones
        if t.shape[0] > 1 and np.any(t[1:] <= t[:-1]):
            raise self._err("bad_content", "tombstones are not strictly ascending", "tombstones")
        if k < 256:
            for name, a in (("coarse_codes", self.coarse_codes), ("fine_codes", self.fine_codes)):
                if a.size and int(a.max()) >= k:
                    raise self._err("bad_content", f"a code is {int(a.max())}, codewords is {k}", name)
        if verify:
            o = offs.tolist()
            blob = self._blob
            for i in range(n):
                h = int.from_bytes(hashlib.sha256(blob[o[i]:o[i + 1]]).digest()[:8], "little")
                if h != int(ids[i]):
                    raise self._err("bad_content", f"row {i}: id {int(ids[i])} is not the hash of external id "
                                                   f"{blob[o[i]:o[i + 1]].decode('utf-8')!r} ({h})", "ids")

    # -- per-video access -----------------------------------------------------------------

    def __len__(self):
        return self.video_count

    def external_id(self, i: int) -> str:
        o = self._ext_offsets
        return self._blob[int(o[i]):int(o[i + 1])].decode("utf-8")

    def external_ids(self) -> list:
        o = self._ext_offsets.tolist()
        blob = self._blob
        return [blob[o[i]:o[i + 1]].decode("utf-8") for i in range(self.video_count)]

    def content_hash(self, i: int) -> str:
        return bytes(self.content_hashes[i]).hex()

    def codes(self, i: int) -> np.ndarray:
        """Video i's codes, (L, M) uint8, level 0 (coarse) first."""
        return np.concatenate([self.coarse_codes[i][None, :], self.fine_codes[i]], axis=0)

    def all_codes(self, rows=None) -> np.ndarray:
        """(n, L, M) uint8 codes of the given rows (all by default), level 0 first."""
        rows = slice(None) if rows is None else rows
        c = self.coarse_codes[rows]
        return np.concatenate([c[:, None, :], self.fine_codes[rows]], axis=1)

    def __repr__(self):
        h = self.header
        return (f"Shard({self.path!r}, videos={h['video_count']}, shard {h['shard_index']}/{h['shard_count']}, "
                f"L={h['levels']} M={h['subspaces']} K={h['codewords']} D={h['dimension']}, "
                f"tombstones={len(self.tombstones)})")


# ----------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------

def _check_codebooks(codebooks):
    c = np.asarray(codebooks, dtype=np.float32)
    if c.ndim != 4:
        raise ValueError(f"codebooks must be (L, M, K, D/M), got shape {c.shape}")
    return c


def lookup_tables(codebooks, queries) -> np.ndarray:
    """(Q, L, M, K) float32 tables: table[q, l, m, k] = <q̂[l, m], C[l, m, k]>, where q̂[l, m] is the
    query's D/M sub-vector m of level l, L2-normalised (a zero sub-vector stays zero).
    queries: (L, D) or (Q, L, D)."""
    c = _check_codebooks(codebooks)
    L, M, K, d = c.shape
    q = np.asarray(queries, dtype=np.float32)
    if q.ndim == 2:
        q = q[None]
    if q.ndim != 3 or q.shape[1:] != (L, M * d):
        raise ValueError(f"queries must be (L, D) or (Q, L, D) with L={L}, D={M * d}; got {np.shape(queries)}")
    sub = q.reshape(q.shape[0], L, M, d)
    norms = np.sqrt(np.sum(sub * sub, axis=-1, keepdims=True, dtype=np.float32))
    safe = np.where(norms > 0, norms, np.float32(1))
    sub = np.where(norms > 0, sub / safe, np.float32(0)).astype(np.float32)
    # (Q, L, M, 1, d) @ (L, M, d, K) -> (Q, L, M, 1, K)
    t = np.matmul(sub[:, :, :, None, :], np.swapaxes(c, -1, -2)[None])
    return np.ascontiguousarray(t[:, :, :, 0, :], dtype=np.float32)


def _tables3(tables):
    t = np.asarray(tables, dtype=np.float32)
    return t[None] if t.ndim == 3 else t


def score(tables, codes, block: int = 65536) -> np.ndarray:
    """(Q, n) float32 scores: (1 / (L M)) * sum over l, m of table[l, m, code[l, m]], summed in
    float32 in (l, m) order. tables: (Q, L, M, K) or (L, M, K); codes: (n, L, M) uint8."""
    t = _tables3(tables)
    Q, L, M, K = t.shape
    codes = np.asarray(codes)
    if codes.ndim == 2:
        codes = codes[None]
    if codes.shape[1:] != (L, M):
        raise ValueError(f"codes must be (n, {L}, {M}), got {codes.shape}")
    n = codes.shape[0]
    tf = t.reshape(Q, L * M, K)
    out = np.empty((Q, n), dtype=np.float32)
    for s in range(0, n, block):
        c = np.ascontiguousarray(codes[s:s + block].reshape(-1, L * M).T)
        acc = np.zeros((Q, c.shape[1]), dtype=np.float32)
        for lm in range(L * M):
            acc += np.take(tf[:, lm], c[lm], axis=1)
        out[:, s:s + block] = acc / np.float32(L * M)
    return out


def coarse_score(tables, codes, block: int = 65536) -> np.ndarray:
    """(Q, n) float32 level-0 scores: sum over m of table[0, m, code[0, m]] (no scaling).
    codes: (n, L, M) or (n, M) level-0 codes."""
    t = _tables3(tables)
    Q, L, M, K = t.shape
    codes = np.asarray(codes)
    c0 = codes[:, 0, :] if codes.ndim == 3 else codes
    n = c0.shape[0]
    out = np.empty((Q, n), dtype=np.float32)
    for s in range(0, n, block):
        c = np.ascontiguousarray(c0[s:s + block].T)
        acc = np.zeros((Q, c.shape[1]), dtype=np.float32)
        for m in range(M):
            acc += np.take(t[:, 0, m, :], c[m], axis=1)
        out[:, s:s + block] = acc
    return out


def top_k(scores, ids, k: int) -> np.ndarray:
    """Indices of the k best entries, by score descending then id ascending."""
    scores = np.asarray(scores)
    ids = np.asarray(ids)
    n = scores.shape[0]
    k = min(int(k), n)
    if k <= 0:
        return np.zeros(0, dtype=np.intp)
    if k < n:
        kth = np.partition(scores, n - k)[n - k]
        cand = np.nonzero(scores >= kth)[0]
    else:
        cand = np.arange(n)
    order = np.lexsort((ids[cand], -scores[cand]))
    return cand[order[:k]]


def reconstruct(codebooks, codes) -> np.ndarray:
    """(L, D) float32: C[l, m, code[l, m]] concatenated over m, for codes (L, M)."""
    c = _check_codebooks(codebooks)
    L, M, K, d = c.shape
    codes = np.asarray(codes).astype(np.intp)
    li = np.arange(L)[:, None]
    mi = np.arange(M)[None, :]
    return np.ascontiguousarray(c[li, mi, codes].reshape(L, M * d), dtype=np.float32)


# ----------------------------------------------------------------------------------------
# Generations
# ----------------------------------------------------------------------------------------

class GenerationError(Exception):
    """An index directory or generation this reader refuses. `kind`: "no_current", "bad_manifest",
    "too_new", "missing_file", "mismatch", "bad_codebooks", "incomplete", "duplicate"."""

    def __init__(self, kind: str, message: str, path=None):
        self.kind, self.path, self.message = kind, path, message
        where = f"{path}: " if path is not None else ""
        super().__init__(f"{where}{kind}: {message}")


def _sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def load_codebooks(path):
    """(codebooks (L, M, K, d) float32, metadata dict) from a safetensors file with one F32
    tensor `codebooks` (parsed with json + NumPy)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise GenerationError("missing_file", str(e), path) from None
    if len(raw) < 8:
        raise GenerationError("bad_codebooks", "shorter than a safetensors header", path)
    (hlen,) = struct.unpack_from("<Q", raw, 0)
    if 8 + hlen > len(raw):
        raise GenerationError("bad_codebooks", f"header length {hlen} runs past the file", path)
    try:
        header = json.loads(raw[8:8 + hlen].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GenerationError("bad_codebooks", f"header is not JSON: {e}", path) from None
    meta = header.pop("__metadata__", None) or {}
    if set(header) != {"codebooks"}:
        raise GenerationError("bad_codebooks", f"expected one tensor 'codebooks', found {sorted(header)}", path)
    info = header["codebooks"]
    shape = info.get("shape")
    if info.get("dtype") != "F32" or not isinstance(shape, list) or len(shape) != 4:
        raise GenerationError("bad_codebooks", f"codebooks must be F32 of rank 4, got {info}", path)
    a, b = info.get("data_offsets", [None, None])
    count = int(np.prod(shape))
    data = raw[8 + hlen:]
    if a != 0 or b != 4 * count or b != len(data):
        raise GenerationError("bad_codebooks", f"data_offsets {info.get('data_offsets')} do not match shape {shape} "
                                               f"and {len(data)} data bytes", path)
    c = np.frombuffer(data, dtype="<f4", count=count).reshape(shape).astype(np.float32)
    return c, meta


class LiveEntries:
    """The live entries of a generation, by id ascending.

    ids (n,) uint64, codes (n, L, M) uint8 (level 0 first), external_ids (list of str),
    shard (n,) index into Generation.shards, row (n,) row in that shard,
    sequence (n,) the shard's sequence; lookup(external_id) -> position or None.
    """

    def __init__(self, ids, codes, external_ids, shard, row, sequence):
        self.ids, self.codes, self.external_ids = ids, codes, external_ids
        self.shard, self.row, self.sequence = shard, row, sequence
        self.by_external_id = {e: i for i, e in enumerate(external_ids)}

    def __len__(self):
        return int(self.ids.shape[0])

    def lookup(self, external_id: str):
        return self.by_external_id.get(external_id)

    def __contains__(self, external_id):
        return external_id in self.by_external_id


_SHARD_FILE = re.compile(r"^(base-[0-9]{4}|delta-[0-9]{4}-[0-9]{4})\.vidx$")
_CODEBOOKS_FILE = re.compile(r"^codebooks-[0-9a-f]{16}\.safetensors$")


class Generation:
    """One generation of an index directory: its manifest, shards, codebooks and live entries.

    Generation(index_dir) opens the generation named by index_dir/CURRENT; name="g000001"
    opens that one. Raises GenerationError or ShardError on anything that would make search
    results wrong (a shard that does not match the manifest, a missing shard, bad codebooks);
    softer disagreements (counts, file names, order, codeword norms) go to `warnings`.
    verify_checksums=False skips the per-section and per-file CRC-32C, the SHA-256 of each
    file and the id-hash check (the manifest's `bytes` and `crc32c` are still compared).
    """

    def __init__(self, index_dir, name=None, verify_checksums: bool = True):
        self.index_dir = os.fspath(index_dir)
        self.warnings = []
        if name is None:
            cur = os.path.join(self.index_dir, "CURRENT")
            try:
                with open(cur, "rb") as f:
                    text = f.read().decode("utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise GenerationError("no_current", str(e), cur) from None
            name = text[:-1] if text.endswith("\n") else text
            if not text.endswith("\n"):
                self.warnings.append(f"{cur}: does not end with a newline")
            if not name or "\n" in name or "/" in name or name != name.strip() or name in (".", ".."):
                raise GenerationError("no_current", f"not one generation name and a newline: {text!r}", cur)
        self.name = name
        self.dir = os.path.join(self.index_dir, name)
        mpath = os.path.join(self.dir, "MANIFEST.json")
        try:
            with open(mpath, "rb") as f:
                manifest = json.loads(f.read().decode("utf-8"))
        except OSError as e:
            raise GenerationError("missing_file", f"no manifest ({e}); the generation is incomplete", mpath) from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise GenerationError("bad_manifest", f"not JSON: {e}", mpath) from None
        self.manifest = manifest
        self._load(manifest, mpath, verify_checksums)

    def _bad(self, message, path=None, kind="bad_manifest"):
        return GenerationError(kind, message, path or os.path.join(self.dir, "MANIFEST.json"))

    def _load(self, man, mpath, verify):
        if not isinstance(man, dict) or man.get("format") != "vidx-index-manifest":
            raise self._bad("format is not 'vidx-index-manifest'")
        fv = man.get("format_version")
        if not isinstance(fv, int) or fv < 1:
            raise self._bad(f"format_version {fv!r}")
        if fv > 1:
            raise self._bad(f"format_version {fv}, newer than the newest this reader knows (1)", kind="too_new")
        if man.get("generation") != self.name:
            raise self._bad(f"generation {man.get('generation')!r} but the directory is {self.name!r}")
        dims = []
        for key in ("levels", "subspaces", "codewords", "dimension"):
            v = man.get(key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise self._bad(f"{key} {v!r} is not a positive integer")
            dims.append(v)
        L, M, K, D = dims
        if K > 256 or D % M:
            raise self._bad(f"codewords {K} / dimension {D} with subspaces {M}")
        self.levels, self.subspaces, self.codewords, self.dimension = L, M, K, D
        fp = man.get("bundle_fingerprint")
        if not isinstance(fp, str) or not re.fullmatch(r"[0-9a-f]{64}", fp):
            raise self._bad(f"bundle_fingerprint {fp!r} is not 64 lowercase hex digits")
        self.bundle_fingerprint = fp

        # Codebooks.
        cb = man.get("codebooks")
        if not isinstance(cb, dict) or not isinstance(cb.get("file"), str):
            raise self._bad("codebooks.file is missing")
        if os.path.basename(cb["file"]) != cb["file"]:
            raise self._bad(f"codebooks.file {cb['file']!r} is not a plain file name")
        if not _CODEBOOKS_FILE.match(cb["file"]):
            self.warnings.append(f"codebooks file name {cb['file']!r} does not match codebooks-<16 hex>.safetensors")
        elif cb["file"][10:26] != fp[:16]:
            self.warnings.append(f"codebooks file name {cb['file']!r} does not carry the fingerprint's first 16 hex "
                                 "digits")
        cpath = os.path.join(self.dir, cb["file"])
        if not os.path.isfile(cpath):
            raise GenerationError("missing_file", "codebooks file is missing", cpath)
        csize = os.path.getsize(cpath)
        if cb.get("bytes") != csize:
            raise GenerationError("mismatch", f"codebooks file is {csize} bytes, the manifest says {cb.get('bytes')}",
                                  cpath)
        if verify and cb.get("sha256") != _sha256_file(cpath):
            raise GenerationError("mismatch", "codebooks file's SHA-256 differs from the manifest's", cpath)
        c, meta = load_codebooks(cpath)
        if c.shape != (L, M, K, D // M):
            raise GenerationError("mismatch", f"shape {c.shape}, the manifest says {(L, M, K, D // M)}", cpath)
        if meta.get("bundle_fingerprint", fp) != fp:
            raise GenerationError("bad_codebooks", f"metadata bundle_fingerprint {meta.get('bundle_fingerprint')} "
                                                   "differs from the manifest's", cpath)
        if meta.get("format") != "vidx-codebooks" or str(meta.get("format_version")) != "1":
            self.warnings.append(f"{cpath}: metadata format/format_version are {meta.get('format')!r}/"
                                 f"{meta.get('format_version')!r}, expected 'vidx-codebooks'/'1'")
        if "bundle_fingerprint" not in meta:
            self.warnings.append(f"{cpath}: metadata has no bundle_fingerprint")
        norms = np.linalg.norm(c.astype(np.float64), axis=-1)
        if np.any(np.abs(norms - 1) > 1e-3):
            self.warnings.append(f"{cpath}: {int(np.sum(np.abs(norms - 1) > 1e-3))} codewords are not L2-normalised")
        self.codebooks = c

        # Shards.
        entries = man.get("shards")
        if not isinstance(entries, list):
            raise self._bad("shards is not a list")
        self.shards, self.shard_entries = [], []
        rounds = {}
        names = set()
        for i, e in enumerate(entries):
            if not isinstance(e, dict):
                raise self._bad(f"shards[{i}] is not an object")
            for key in ("file", "kind", "sequence", "shard_index", "shard_count", "videos", "tombstones", "bytes",
                        "crc32c"):
                if key not in e:
                    raise self._bad(f"shards[{i}] has no {key!r}")
            fname = e["file"]
            if not isinstance(fname, str) or os.path.basename(fname) != fname or fname in ("", ".", ".."):
                raise self._bad(f"shards[{i}].file {fname!r} is not a plain file name")
            if fname in names:
                raise self._bad(f"shard file {fname} is listed twice")
            names.add(fname)
            seq, kind = e["sequence"], e["kind"]
            if not isinstance(seq, int) or seq < 0:
                raise self._bad(f"{fname}: sequence {seq!r}")
            if (kind == "base") != (seq == 0) or kind not in ("base", "delta"):
                raise self._bad(f"{fname}: kind {kind!r} with sequence {seq} (base shards have sequence 0, "
                                "delta shards 1 and up)")
            expected_name = (f"base-{e['shard_index']:04d}.vidx" if kind == "base"
                             else f"delta-{seq:04d}-{e['shard_index']:04d}.vidx") \
                if isinstance(e["shard_index"], int) else None
            if not _SHARD_FILE.match(fname) or fname != expected_name:
                self.warnings.append(f"{fname}: name does not follow base-<shard>/delta-<sequence>-<shard> "
                                     f"({expected_name})")
            spath = os.path.join(self.dir, fname)
            if not os.path.isfile(spath):
                raise GenerationError("missing_file", "shard file is missing", spath)
            size = os.path.getsize(spath)
            if size != e["bytes"]:
                raise GenerationError("mismatch", f"file is {size} bytes, the manifest says {e['bytes']}", spath)
            shard = Shard(spath, verify_checksums=verify)
            if f"{shard.file_crc:08x}" != e["crc32c"]:
                raise GenerationError("mismatch", f"trailer file_crc {shard.file_crc:08x}, the manifest says "
                                                  f"{e['crc32c']}", spath)
            if verify and "sha256" in e and e["sha256"] != _sha256_file(spath):
                raise GenerationError("mismatch", "SHA-256 differs from the manifest's", spath)
            h = shard.header
            for key, want in (("levels", L), ("subspaces", M), ("codewords", K), ("dimension", D),
                              ("bundle_fingerprint", fp), ("shard_index", e["shard_index"]),
                              ("shard_count", e["shard_count"]), ("video_count", e["videos"])):
                if h[key] != want:
                    raise GenerationError("mismatch", f"header {key} is {h[key]}, the manifest says {want}", spath)
            if len(shard.tombstones) != e["tombstones"]:
                raise GenerationError("mismatch", f"{len(shard.tombstones)} tombstones, the manifest says "
                                                  f"{e['tombstones']}", spath)
            rounds.setdefault(seq, []).append((h["shard_index"], h["shard_count"], fname))
            self.shards.append(shard)
            self.shard_entries.append(e)
        for seq, lst in sorted(rounds.items()):
            counts = {s for _, s, _ in lst}
            if len(counts) != 1:
                raise GenerationError("incomplete", f"sequence {seq}: shards disagree on shard_count ({sorted(counts)})",
                                      self.dir)
            (S,) = counts
            got = sorted(i for i, _, _ in lst)
            # Base shards (sequence 0) are a complete set; a delta round writes only the
            # shards that hold entries or tombstones.
            if (seq == 0 and got != list(range(S))) or len(set(got)) != len(got) or any(i >= S for i in got):
                raise GenerationError("incomplete", f"sequence {seq}: has shards {got} of {S}", self.dir)
        order = [(e["sequence"], e["shard_index"]) for e in self.shard_entries]
        if order != sorted(order):
            self.warnings.append("manifest shards are not ordered by (sequence, shard_index)")
        self._resolve()
        want = man.get("counts")
        if want != self.counts:
            self.warnings.append(f"manifest counts {want} differ from the shards' {self.counts}")

    def _resolve(self):
        """Live entries: the newest entry of each id, unless a newer shard tombstones it."""
        L, M = self.levels, self.subspaces
        ids_l, seq_l, shard_l, row_l, tid_l, tseq_l = [], [], [], [], [], []
        for j, (shard, e) in enumerate(zip(self.shards, self.shard_entries)):
            n = len(shard)
            ids_l.append(np.asarray(shard.ids, dtype=np.uint64))
            seq_l.append(np.full(n, e["sequence"], dtype=np.int64))
            shard_l.append(np.full(n, j, dtype=np.int64))
            row_l.append(np.arange(n, dtype=np.int64))
            tid_l.append(np.asarray(shard.tombstones, dtype=np.uint64))
            tseq_l.append(np.full(len(shard.tombstones), e["sequence"], dtype=np.int64))
        cat = lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dt)  # noqa: E731
        ids, seqs = cat(ids_l, np.uint64), cat(seq_l, np.int64)
        shards, rows = cat(shard_l, np.int64), cat(row_l, np.int64)
        order = np.lexsort((seqs, ids))
        ids_s, seq_s = ids[order], seqs[order]
        same = (ids_s[1:] == ids_s[:-1]) & (seq_s[1:] == seq_s[:-1])
        if same.any():
            i = int(np.argmax(same))
            raise GenerationError("duplicate", f"id {int(ids_s[i])} appears twice in shards of sequence "
                                               f"{int(seq_s[i])}", self.dir)
        last = np.ones(ids_s.shape[0], dtype=bool)
        last[:-1] = ids_s[1:] != ids_s[:-1]
        newest = order[last]
        n_ids, n_seq = ids[newest], seqs[newest]
        tids, tseqs = cat(tid_l, np.uint64), cat(tseq_l, np.int64)
        deleted = np.zeros(newest.shape[0], dtype=bool)
        if tids.shape[0]:
            torder = np.lexsort((tseqs, tids))
            tids_s, tseq_s = tids[torder], tseqs[torder]
            tlast = np.ones(tids_s.shape[0], dtype=bool)
            tlast[:-1] = tids_s[1:] != tids_s[:-1]
            u_ids, u_max = tids_s[tlast], tseq_s[tlast]
            pos = np.minimum(np.searchsorted(u_ids, n_ids), u_ids.shape[0] - 1)
            deleted = (u_ids[pos] == n_ids) & (u_max[pos] > n_seq)
        live = newest[~deleted]
        live_shard, live_row = shards[live], rows[live]
        n = live.shape[0]
        codes = np.empty((n, L, M), dtype=np.uint8)
        ext = [None] * n
        for j, shard in enumerate(self.shards):
            sel = np.nonzero(live_shard == j)[0]
            if not sel.shape[0]:
                continue
            r = live_row[sel]
            codes[sel, 0] = shard.coarse_codes[r]
            codes[sel, 1:] = shard.fine_codes[r]
            o = shard._ext_offsets
            blob = shard._blob
            for p, rr in zip(sel.tolist(), r.tolist()):
                ext[p] = blob[int(o[rr]):int(o[rr + 1])].decode("utf-8")
        self.live = LiveEntries(ids[live], codes, ext, live_shard, live_row, seqs[live])
        self.counts = {"entries": int(ids.shape[0]), "live": int(n),
                       "superseded": int(ids.shape[0] - newest.shape[0]), "deleted": int(deleted.sum())}

    # -- search ---------------------------------------------------------------------------

    def lookup_tables(self, queries) -> np.ndarray:
        return lookup_tables(self.codebooks, queries)

    def score(self, tables, codes=None) -> np.ndarray:
        """Full scores (Q, n) of `codes` (the live entries' by default)."""
        return score(tables, self.live.codes if codes is None else codes)

    def coarse_score(self, tables, codes=None) -> np.ndarray:
        return coarse_score(tables, self.live.codes if codes is None else codes)

    def search(self, queries, k: int = 10, rerank=None):
        """Per query, the top k live videos as [(id, external_id, score)], score descending then id
        ascending. rerank=K: keep the K best by level-0 score (same tie rule), re-rank them by the
        full score. queries: (L, D) or (Q, L, D) float32."""
        tables = self.lookup_tables(queries)
        live = self.live
        ids, codes = live.ids, live.codes
        out = []
        if rerank is None:
            scores = score(tables, codes)
            for q in range(tables.shape[0]):
                idx = top_k(scores[q], ids, k)
                out.append([(int(ids[i]), live.external_ids[i], float(scores[q, i])) for i in idx])
        else:
            cs = coarse_score(tables, codes)
            for q in range(tables.shape[0]):
                cand = top_k(cs[q], ids, rerank)
                fs = score(tables[q:q + 1], codes[cand])[0]
                idx = top_k(fs, ids[cand], k)
                out.append([(int(ids[cand[i]]), live.external_ids[cand[i]], float(fs[i])) for i in idx])
        return out

    def codes_of(self, external_id: str) -> np.ndarray:
        p = self.live.lookup(external_id)
        if p is None:
            raise KeyError(f"{external_id!r} is not a live video of generation {self.name}")
        return self.live.codes[p]

    def reconstruct(self, external_id: str) -> np.ndarray:
        """(L, D) float32: the video's codewords, concatenated over sub-spaces (query by example)."""
        return reconstruct(self.codebooks, self.codes_of(external_id))


# ----------------------------------------------------------------------------------------
# Verify (whole index) and the command line
# ----------------------------------------------------------------------------------------

def verify_index(index_dir, name=None) -> list:
    """Every problem found in the index's current (or named) generation, as strings; [] if none."""
    problems = []
    gen_name = name
    if gen_name is None:
        try:
            with open(os.path.join(index_dir, "CURRENT"), "rb") as f:
                gen_name = f.read().decode("utf-8").rstrip("\n")
        except (OSError, UnicodeDecodeError) as e:
            return [f"CURRENT: {e}"]
    # Every shard on its own, so one bad shard does not hide the others.
    try:
        with open(os.path.join(index_dir, gen_name, "MANIFEST.json"), "rb") as f:
            man = json.loads(f.read().decode("utf-8"))
        for e in man.get("shards", []):
            path = os.path.join(index_dir, gen_name, str(e.get("file")))
            try:
                Shard(path, verify_checksums=True).close()
            except ShardError as err:
                problems.append(str(err))
    except (OSError, ValueError, AttributeError, TypeError):
        pass   # reported by Generation below
    try:
        gen = Generation(index_dir, name=name, verify_checksums=True)
        problems.extend(gen.warnings)
    except (ShardError, GenerationError) as err:
        if str(err) not in problems:
            problems.append(str(err))
    return problems


def _cli(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="vidx_index.py", description="Read, verify and search vidx index generations.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("verify", help="check the current generation; print problems, exit 1 if any")
    v.add_argument("index_dir")
    v.add_argument("--generation", default=None, help="a generation name instead of CURRENT's")
    s = sub.add_parser("search", help="print the top k as JSON lines")
    s.add_argument("index_dir")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--query", help=".npy of shape (L, D) or (Q, L, D), float32")
    g.add_argument("--like", help="an external id: query by example with its reconstruction")
    s.add_argument("--k", type=int, default=10)
    s.add_argument("--rerank", type=int, default=None, help="coarse-to-fine: keep K by level 0, then re-rank")
    s.add_argument("--generation", default=None)
    s.add_argument("--no-checksums", action="store_true", help="skip CRC-32C and SHA-256 checks when loading")
    args = ap.parse_args(argv)
    if args.cmd == "verify":
        problems = verify_index(args.index_dir, args.generation)
        for p in problems:
            print(p)
        if problems:
            return 1
        gen = Generation(args.index_dir, args.generation)
        print(f"ok: generation {gen.name}, {len(gen.shards)} shards, {gen.counts['entries']} entries, "
              f"{gen.counts['live']} live")
        return 0
    try:
        gen = Generation(args.index_dir, args.generation, verify_checksums=not args.no_checksums)
    except (ShardError, GenerationError) as err:
        print(err, file=sys.stderr)
        return 1
    if args.query is not None:
        queries = np.load(args.query).astype(np.float32)
    else:
        try:
            queries = gen.reconstruct(args.like)
        except KeyError as err:
            print(err.args[0], file=sys.stderr)
            return 1
    try:
        results = gen.search(queries, k=args.k, rerank=args.rerank)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 1
    for qi, hits in enumerate(results):
        for rank, (vid, ext, sc) in enumerate(hits, start=1):
            print(json.dumps({"query": qi, "rank": rank, "id": vid, "external_id": ext, "score": sc},
                             ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
