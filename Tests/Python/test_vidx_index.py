"""Tests of Pipelines/tools/vidx_index.py, the NumPy-only reader of index shards and generations
(Schemas/index-shard.md), on files written by shard_writer_mimic.py (written from the spec)."""

import hashlib
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
for _sub in ("Pipelines/tools", "Tests/Python"):
    _p = os.path.join(ROOT, _sub)
    if _p not in sys.path:
        sys.path.insert(0, _p)

import shard_writer_mimic as sw  # noqa: E402
import vidx_index as vi  # noqa: E402

FP_HEX = hashlib.sha256(b"test bundle").hexdigest()
FP = bytes.fromhex(FP_HEX)
L, M, K, D = 3, 4, 16, 16


def _codes(r, n, levels=L, m=M, k=K):
    return r.randint(0, k, (n, levels, m)).astype(np.uint8)


def _write(tmp_path, data, name="s.vidx"):
    p = tmp_path / name
    p.write_bytes(bytes(data))
    return p


def _simple_shard(**kw):
    """A valid shard: 6 videos of shard 1 of 2 (their ids are odd)."""
    r = np.random.RandomState(1)
    exts, i = [], 0
    while len(exts) < 6:
        e = f"video-{i}"
        if sw.video_id(e) % 2 == 1:
            exts.append(e)
        i += 1
    args = dict(codewords=K, dimension=D, fingerprint=FP, shard_index=1, shard_count=2,
                tombstones=[5, 3, 1001])
    args.update(kw)
    return exts, _codes(r, len(exts)), args


# -- CRC-32C ---------------------------------------------------------------------------------

def test_crc32c_check_value_and_fast_path():
    assert vi.crc32c(b"123456789") == 0xE3069283
    assert vi.crc32c(b"") == 0
    r = np.random.RandomState(3)
    for n in (1, 7, 100, 16384 + 5, 70001):
        data = r.randint(0, 256, n).astype(np.uint8).tobytes()
        want = sw.crc32c(data)
        assert vi.crc32c(data) == want, n
        assert vi.crc32c(memoryview(data)) == want
        assert vi.crc32c(np.frombuffer(data, np.uint8)) == want
        assert vi.crc32c(data[n // 3:], vi.crc32c(data[:n // 3])) == want


# -- one shard -----------------------------------------------------------------------------------

def test_shard_round_trip(tmp_path):
    r = np.random.RandomState(2)
    exts = ["a", "vidéo-é", " ", "日本語/クリップ.mp4", "x" * 300, "b"]
    S = 1
    codes = _codes(r, len(exts))
    hashes = [hashlib.sha256(e.encode()).digest() for e in exts]
    hashes[2] = b"\0" * 32
    emb = r.standard_normal((len(exts), D)).astype(np.float16)
    segs = [[(0.0, 1.5, _codes(r, 1)[0]), (1.5, 3.0, _codes(r, 1)[0])], [], [(0.0, 2.0, _codes(r, 1)[0])], [], [], []]
    hc = r.randint(0, 256, (len(exts), 3)).astype(np.uint8)
    data = sw.build_shard(exts, codes, codewords=K, dimension=D, fingerprint=FP, shard_index=0, shard_count=S,
                          content_hashes=hashes, tombstones=["gone", 7], coarse_embeddings=emb, segments=segs,
                          hash_codes=(20, hc), extra_sections=[(99, 0, b"future optional data")])
    sh = vi.Shard(_write(tmp_path, data))
    h = sh.header
    assert (h["video_count"], h["levels"], h["subspaces"], h["codewords"], h["dimension"]) == (6, L, M, K, D)
    assert h["bundle_fingerprint"] == FP_HEX
    assert (h["shard_index"], h["shard_count"], h["file_size"]) == (0, 1, len(data))
    order = np.argsort([sw.video_id(e) for e in exts], kind="stable")
    assert sh.ids.dtype == np.uint64 and sh.ids.tolist() == sorted(sw.video_id(e) for e in exts)
    assert sh.external_ids() == [exts[i] for i in order]
    assert sh.coarse_codes.shape == (6, M) and sh.fine_codes.shape == (6, L - 1, M)
    for row, i in enumerate(order):
        assert sh.external_id(row) == exts[i]
        assert sh.content_hash(row) == hashes[i].hex()
        np.testing.assert_array_equal(sh.codes(row), codes[i])
        np.testing.assert_array_equal(sh.coarse_codes[row], codes[i, 0])
        np.testing.assert_array_equal(sh.fine_codes[row], codes[i, 1:])
        np.testing.assert_array_equal(sh.coarse_embeddings[row], emb[i])
        np.testing.assert_array_equal(sh.hash_codes[1][row], hc[i])
    np.testing.assert_array_equal(sh.all_codes(), codes[order])
    assert sh.coarse_embeddings.dtype == np.float16
    assert sh.tombstones.tolist() == sorted([sw.video_id("gone"), 7])
    assert sh.hash_codes[0] == 20
    seg = sh.segments
    assert seg["count"] == 3
    g = seg["offsets"].tolist()
    for row, i in enumerate(order):
        mine = segs[i]
        assert g[row + 1] - g[row] == len(mine)
        for j, (a, b, c) in enumerate(mine):
            np.testing.assert_array_equal(seg["windows"][g[row] + j], [a, b])
            np.testing.assert_array_equal(seg["codes"][g[row] + j], c)
    assert [(u["kind"], u["required"], u["length"]) for u in sh.unknown_sections] == [(99, False, 20)]
    assert sh.file_crc == struct.unpack_from("<I", data, len(data) - 16)[0]
    sh.close()


def test_empty_shard_and_single_level(tmp_path):
    data = sw.build_shard([], np.zeros((0, 1, 2), np.uint8), codewords=4, dimension=2, fingerprint=FP)
    sh = vi.Shard(_write(tmp_path, data))
    assert len(sh) == 0 and sh.ids.shape == (0,) and sh.fine_codes.shape == (0, 0, 2)
    assert sh.external_ids() == [] and sh.coarse_embeddings is None
    data = sw.build_shard(["a", "b"], np.ones((2, 1, 2), np.uint8), codewords=4, dimension=2, fingerprint=FP,
                          pad_trailer=True)
    sh = vi.Shard(_write(tmp_path, data, "t.vidx"))
    assert sh.fine_codes.shape == (2, 0, 2) and sh.codes(1).tolist() == [[1, 1]]


def test_verify_checksums_off_skips_crcs(tmp_path):
    exts, codes, args = _simple_shard()
    data = bytearray(sw.build_shard(exts, codes, **args))
    _, e = sw.find_section(data, 3)            # a content hash byte: no structure depends on it
    data[e["offset"]] ^= 1
    p = _write(tmp_path, data)
    with pytest.raises(vi.ShardError) as err:
        vi.Shard(p)
    assert err.value.kind == "bad_checksum" and err.value.section == "content_hashes"
    assert vi.Shard(p, verify_checksums=False).video_count == 6


# -- validation: one defect at a time ---------------------------------------------------------

def _defect(name):
    exts, codes, args = _simple_shard()
    good = sw.build_shard(exts, codes, **args)
    b = bytearray(good)
    if name == "bad_magic":
        b[0:8] = b"VIDXSHRX"
        return b, "bad_magic", "header"
    if name == "too_new":
        struct.pack_into("<H", b, 8, 2)
        return sw.refresh_checksums(b), "too_new", "header"
    if name == "too_old":
        struct.pack_into("<H", b, 8, 0)
        return sw.refresh_checksums(b), "too_old", "header"
    if name == "truncated":
        return b[:len(b) - 40], "truncated", "file"
    if name == "truncated_header":
        return b[:60], "truncated", "header"
    if name == "header_size":
        struct.pack_into("<H", b, 10, 256)
        return sw.refresh_checksums(b), "bad_header", "header"
    if name == "header_flags":
        struct.pack_into("<I", b, 12, 1)
        return sw.refresh_checksums(b), "bad_header", "header"
    if name == "header_crc":
        b[20] ^= 0xFF          # video_count, not re-checksummed
        return b, "bad_header_checksum", "header"
    if name == "end_magic":
        b[-1] = 1
        return b, "bad_magic", "trailer"
    if name == "longer_than_file_size":
        return b + b"\0" * 64, "bad_header", "header"
    if name == "section_crc":
        _, e = sw.find_section(b, 4)
        b[e["offset"]] ^= 1
        return b, "bad_checksum", "coarse_codes"
    if name == "file_crc":
        b[len(b) - 16] ^= 1
        return b, "bad_checksum", "file"
    if name == "misaligned":
        data = sw.build_shard(exts, codes, **args, align=8)
        offs = [sw.table_entry(data, i)["offset"] for i in range(6)]
        assert any(o % 64 for o in offs)
        return data, "bad_section_table", None
    if name == "overlap":
        i, e = sw.find_section(b, 2)
        return sw.set_table_entry(b, i, offset=e["offset"] - 64), "bad_section_table", "external_ids"
    if name == "out_of_bounds":
        i, e = sw.find_section(b, 6)
        return sw.set_table_entry(b, i, length=e["length"] + 4096), "bad_section_table", "tombstones"
    if name == "inside_table":
        return sw.set_table_entry(b, 0, offset=128), "bad_section_table", "ids"
    if name == "duplicate_kind":
        i, e = sw.find_section(b, 6)
        return sw.set_table_entry(b, i, kind=5), "bad_section_table", "fine_codes"
    if name == "missing_required":
        i, e = sw.find_section(b, 6)
        return sw.set_table_entry(b, i, kind=77, flags=0), "bad_section_table", "tombstones"
    if name == "entry_flags":
        return sw.set_table_entry(b, 0, flags=3), "bad_section_table", "ids"
    if name == "bad_length":
        data = sw.build_shard(exts, codes, **args)
        i, e = sw.find_section(data, 4)
        return sw.set_table_entry(data, i, length=e["length"] - 1), "bad_section_length", "coarse_codes"
    if name == "bad_length_external_ids":
        i, e = sw.find_section(b, 2)
        return sw.set_table_entry(b, i, length=e["length"] - 1), "bad_section_length", "external_ids"
    if name == "unknown_required":
        data = sw.build_shard(exts, codes, **args, extra_sections=[(99, 1, b"must understand")])
        return data, "unknown_required_section", "section kind 99"
    if name == "ids_unsorted":
        return sw.build_shard(exts, codes, **args, sort=False), "bad_content", "ids"
    if name == "wrong_shard":
        return sw.build_shard(exts, codes, **dict(args, shard_index=0)), "bad_content", "ids"
    if name == "id_not_hash":
        ids = [sw.video_id(e) + 2 for e in exts]
        return sw.build_shard(exts, codes, **args, ids=ids), "bad_content", "ids"
    if name == "code_too_big":
        c = codes.copy()
        c[2, 1, 3] = K
        return sw.build_shard(exts, c, **args), "bad_content", "fine_codes"
    if name == "bad_utf8":
        i, e = sw.find_section(b, 2)
        b[e["offset"] + 8 * 7] = 0xFF
        return sw.refresh_checksums(b), "bad_content", "external_ids"
    if name == "ext_offsets":
        i, e = sw.find_section(b, 2)
        struct.pack_into("<Q", b, e["offset"] + 8, 1000)
        return sw.refresh_checksums(b), "bad_content", "external_ids"
    if name == "empty_external_id":
        data = sw.build_shard(["", *exts[1:]], codes, **args)
        return data, "bad_content", "external_ids"
    if name == "tombstones_unsorted":
        i, e = sw.find_section(b, 6)
        struct.pack_into("<QQ", b, e["offset"], 9, 4)
        return sw.refresh_checksums(b), "bad_content", "tombstones"
    if name == "padding":
        i, e = sw.find_section(b, 1)
        b[e["offset"] + e["length"]] = 7        # the gap after ids (48 bytes of ids, then padding)
        return sw.refresh_checksums(b), "bad_content", "padding"
    raise AssertionError(name)


DEFECTS = ["bad_magic", "too_new", "too_old", "truncated", "truncated_header", "header_size", "header_flags",
           "header_crc", "end_magic", "longer_than_file_size", "section_crc", "file_crc", "misaligned", "overlap",
           "out_of_bounds", "inside_table", "duplicate_kind", "missing_required", "entry_flags", "bad_length",
           "bad_length_external_ids", "unknown_required", "ids_unsorted", "wrong_shard", "id_not_hash",
           "code_too_big", "bad_utf8", "ext_offsets", "empty_external_id", "tombstones_unsorted", "padding"]


@pytest.mark.parametrize("name", DEFECTS)
def test_single_defects_are_refused(tmp_path, name):
    data, kind, section = _defect(name)
    p = _write(tmp_path, data)
    with pytest.raises(vi.ShardError) as err:
        vi.Shard(p)
    assert err.value.kind == kind, str(err.value)
    if section is not None:
        assert err.value.section == section, str(err.value)
    assert err.value.path == str(p)


def test_too_new_names_both_versions(tmp_path):
    data, _, _ = _defect("too_new")
    with pytest.raises(vi.ShardError) as err:
        vi.Shard(_write(tmp_path, data))
    assert "2" in err.value.message and "1" in err.value.message


def test_unreadable(tmp_path):
    with pytest.raises(vi.ShardError) as err:
        vi.Shard(tmp_path / "nope.vidx")
    assert err.value.kind == "unreadable"
    with pytest.raises(vi.ShardError) as err:
        vi.Shard(_write(tmp_path, b""))
    assert err.value.kind == "truncated"


def test_unknown_optional_section_is_skipped(tmp_path):
    exts, codes, args = _simple_shard()
    data = sw.build_shard(exts, codes, **args, extra_sections=[(1000, 0, bytes(range(200))), (31, 0, b"")])
    sh = vi.Shard(_write(tmp_path, data))
    assert sorted(u["kind"] for u in sh.unknown_sections) == [31, 1000]
    assert sh.external_ids() == [exts[i] for i in np.argsort([sw.video_id(e) for e in exts])]


# -- generations -------------------------------------------------------------------------------

def _names(prefix, n):
    return [f"{prefix}{i:03d}" for i in range(n)]


@pytest.fixture
def generation(tmp_path):
    """g000001: base (30 videos, 3 shards). g000002: the base plus a delta round (2 shards)
    re-adding v005 with new codes, adding n000..n004, tombstoning v007 and v011 and an id
    never indexed."""
    r = np.random.RandomState(4)
    cb = sw.random_codebooks(L, M, K, D, seed=9)
    base = {e: c for e, c in zip(_names("v", 30), _codes(r, 30))}
    delta = {e: c for e, c in zip(_names("n", 5), _codes(r, 5))}
    delta["v005"] = _codes(r, 1)[0]
    rounds = [{"entries": base, "shard_count": 3},
              {"entries": delta, "tombstones": ["v007", "v011", "never-indexed"], "shard_count": 2}]
    sw.write_generation(tmp_path, "g000001", rounds[:1], codebooks=cb, fingerprint_hex=FP_HEX, coarse_embeddings=True)
    man = sw.write_generation(tmp_path, "g000002", rounds, codebooks=cb, fingerprint_hex=FP_HEX, parent="g000001")
    return tmp_path, rounds, cb, man


def test_live_entries_superseded_and_deleted(generation):
    index, rounds, cb, man = generation
    g = vi.Generation(index)
    assert g.name == "g000002" and g.warnings == []
    assert len(g.shards) == 5
    live, counts = sw.resolve(rounds)
    assert g.counts == counts == man["counts"] == {"entries": 36, "live": 33, "superseded": 1, "deleted": 2}
    assert g.live.ids.dtype == np.uint64 and g.live.ids.tolist() == sorted(live)
    assert g.live.codes.shape == (33, L, M) and g.live.codes.dtype == np.uint8
    for p, vid in enumerate(g.live.ids.tolist()):
        seq, ext, c = live[vid]
        assert g.live.external_ids[p] == ext and g.live.lookup(ext) == p
        assert int(g.live.sequence[p]) == seq
        np.testing.assert_array_equal(g.live.codes[p], c)
    assert g.live.lookup("v007") is None and g.live.lookup("v011") is None
    np.testing.assert_array_equal(g.codes_of("v005"), rounds[1]["entries"]["v005"])   # the delta's entry wins
    assert int(g.live.sequence[g.live.lookup("v005")]) == 1
    np.testing.assert_array_equal(g.codebooks, cb)
    old = vi.Generation(index, name="g000001")
    assert old.counts == {"entries": 30, "live": 30, "superseded": 0, "deleted": 0}
    assert old.shards[0].coarse_embeddings is not None
    np.testing.assert_array_equal(old.codes_of("v005"), rounds[0]["entries"]["v005"])


def test_tombstone_then_re_add_and_same_round_tombstone(tmp_path):
    r = np.random.RandomState(5)
    cb = sw.random_codebooks(L, M, K, D, seed=1)
    base = dict(zip(_names("v", 6), _codes(r, 6)))
    rounds = [{"entries": base, "shard_count": 2},
              {"entries": {"v001": _codes(r, 1)[0]}, "tombstones": ["v000", "v001", "v002"]},
              {"entries": {"v000": _codes(r, 1)[0]}, "tombstones": ["v003"], "shard_count": 2}]
    man = sw.write_generation(tmp_path, "g000003", rounds, codebooks=cb, fingerprint_hex=FP_HEX)
    g = vi.Generation(tmp_path)
    # v000: deleted in round 1, re-added in round 2 -> live (round 2's codes). v001: re-written and
    # tombstoned in the same round 1 -> live (a tombstone hides older shards only). v002, v003 deleted.
    assert sorted(g.live.external_ids) == ["v000", "v001", "v004", "v005"]
    np.testing.assert_array_equal(g.codes_of("v000"), rounds[2]["entries"]["v000"])
    np.testing.assert_array_equal(g.codes_of("v001"), rounds[1]["entries"]["v001"])
    assert g.counts == man["counts"] == {"entries": 8, "live": 4, "superseded": 2, "deleted": 2}


def test_generation_checks_the_manifest(generation):
    index, rounds, cb, man = generation
    mpath = index / "g000002" / "MANIFEST.json"

    def rewrite(fn):
        m = json.loads(json.dumps(man))
        fn(m)
        mpath.write_text(json.dumps(m))

    def refused(kind):
        with pytest.raises(vi.GenerationError) as err:
            vi.Generation(index)
        assert err.value.kind == kind, str(err.value)

    rewrite(lambda m: m["shards"][1].update(bytes=m["shards"][1]["bytes"] + 1))
    refused("mismatch")
    rewrite(lambda m: m["shards"][4].update(crc32c="00000000"))
    refused("mismatch")
    rewrite(lambda m: m["shards"].pop(2))
    refused("incomplete")
    rewrite(lambda m: m.update(levels=L + 1))
    refused("mismatch")
    rewrite(lambda m: m["codebooks"].update(bytes=1))
    refused("mismatch")
    rewrite(lambda m: m.update(format_version=2))
    refused("too_new")
    rewrite(lambda m: m["counts"].update(live=1))
    assert any("counts" in w for w in vi.Generation(index).warnings)
    rewrite(lambda m: None)
    (index / "CURRENT").write_text("g000009\n")
    refused("missing_file")


def test_generation_refuses_a_damaged_shard(generation):
    index = generation[0]
    p = index / "g000002" / "delta-0001-0000.vidx"
    b = bytearray(p.read_bytes())
    b[-20] ^= 0x10          # inside the last section, before the trailer
    p.write_bytes(bytes(b))
    with pytest.raises(vi.ShardError) as err:
        vi.Generation(index)
    assert err.value.kind in ("bad_checksum", "bad_content")


# -- scoring ------------------------------------------------------------------------------------

def _brute_scores(g, queries):
    """float64: mean over l of (1/M) sum_m <q̂_lm, C_lm,code>, from reconstructed vectors."""
    q = np.asarray(queries, np.float64).reshape(len(queries), L, M, D // M)
    n = np.linalg.norm(q, axis=-1, keepdims=True)
    q = np.where(n > 0, q / np.where(n > 0, n, 1), 0)
    out = np.zeros((len(queries), len(g.live)))
    for p, ext in enumerate(g.live.external_ids):
        rec = g.reconstruct(ext).astype(np.float64).reshape(L, M, D // M)
        out[:, p] = np.einsum("qlmd,lmd->q", q, rec) / (L * M)
    return out


def test_lookup_tables_and_scores_match_brute_force(generation):
    g = vi.Generation(generation[0])
    r = np.random.RandomState(6)
    queries = r.standard_normal((4, L, D)).astype(np.float32)
    queries[1, 2, :D // M] = 0            # a zero sub-vector stays zero
    tables = g.lookup_tables(queries)
    assert tables.shape == (4, L, M, K) and tables.dtype == np.float32
    assert np.all(tables[1, 2, 0] == 0)
    scores = g.score(tables)
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores, _brute_scores(g, queries), atol=1e-5, rtol=0)
    res = g.search(queries, k=7)
    brute = _brute_scores(g, queries)
    for qi, hits in enumerate(res):
        assert len(hits) == 7
        want = sorted(range(len(g.live)), key=lambda p: (-brute[qi, p], int(g.live.ids[p])))[:7]
        assert [h[1] for h in hits] == [g.live.external_ids[p] for p in want]
        assert [h[0] for h in hits] == [int(g.live.ids[p]) for p in want]
        np.testing.assert_allclose([h[2] for h in hits], brute[qi, want], atol=1e-5)
    single = g.search(queries[0], k=3)           # (L, D) is one query
    assert single == [res[0][:3]]


def test_realistic_dimensions_score(tmp_path):
    Lr, Mr, Kr, Dr = 8, 32, 256, 512
    r = np.random.RandomState(7)
    cb = sw.random_codebooks(Lr, Mr, Kr, Dr, seed=2)
    ents = {e: c for e, c in zip(_names("v", 40), _codes(r, 40, Lr, Mr, Kr))}
    sw.write_generation(tmp_path, "g000001", [{"entries": ents, "shard_count": 4}], codebooks=cb,
                        fingerprint_hex=FP_HEX)
    g = vi.Generation(tmp_path)
    q = r.standard_normal((2, Lr, Dr)).astype(np.float32)
    t = g.lookup_tables(q)
    qn = q.astype(np.float64).reshape(2, Lr, Mr, -1)
    qn /= np.linalg.norm(qn, axis=-1, keepdims=True)
    for p in range(len(g.live)):
        rec = g.reconstruct(g.live.external_ids[p]).astype(np.float64).reshape(Lr, Mr, -1)
        want = np.einsum("qlmd,lmd->q", qn, rec) / (Lr * Mr)
        np.testing.assert_allclose(g.score(t, g.live.codes[p:p + 1])[:, 0], want, atol=1e-5)
    hit = g.search(g.reconstruct("v017"), k=1)[0][0]
    assert hit[1] == "v017" and abs(hit[2] - 1) < 1e-5


def test_coarse_to_fine(generation):
    g = vi.Generation(generation[0])
    r = np.random.RandomState(8)
    queries = r.standard_normal((3, L, D)).astype(np.float32)
    n = len(g.live)
    full = g.search(queries, k=10)
    assert g.search(queries, k=10, rerank=n) == full
    assert g.search(queries, k=10, rerank=n + 50) == full
    # rerank=K: the K best by level 0 (score desc, id asc), re-ranked by the full score.
    t = g.lookup_tables(queries)
    cs = g.coarse_score(t)
    fs = g.score(t)
    ids = [int(x) for x in g.live.ids]
    np.testing.assert_allclose(cs, t[:, 0, np.arange(M), g.live.codes[:, 0, :]].sum(-1), atol=1e-6)
    for Kr in (1, 5, 12):
        got = g.search(queries, k=4, rerank=Kr)
        for qi in range(3):
            cand = sorted(range(n), key=lambda p: (-cs[qi, p], ids[p]))[:Kr]
            want = sorted(cand, key=lambda p: (-fs[qi, p], ids[p]))[:4]
            assert [h[0] for h in got[qi]] == [int(ids[p]) for p in want]
            assert [h[2] for h in got[qi]] == [float(fs[qi, p]) for p in want]


def test_ties_are_ordered_by_id(tmp_path):
    r = np.random.RandomState(10)
    cb = sw.random_codebooks(L, M, K, D, seed=3)
    same = _codes(r, 1)[0]
    ents = {e: same for e in _names("t", 12)}
    ents.update({e: c for e, c in zip(_names("o", 8), _codes(r, 8))})
    sw.write_generation(tmp_path, "g000001", [{"entries": ents, "shard_count": 3}], codebooks=cb,
                        fingerprint_hex=FP_HEX)
    g = vi.Generation(tmp_path)
    q = vi.reconstruct(cb, same)
    tied_ids = sorted(sw.video_id(e) for e in _names("t", 12))
    for rerank in (None, 12, 100):
        hits = g.search(q, k=5, rerank=rerank)[0]
        assert [h[0] for h in hits] == tied_ids[:5], rerank
        assert len({h[2] for h in hits}) == 1
    hits = g.search(q, k=20)[0]
    assert [h[0] for h in hits[:12]] == tied_ids
    scores = [h[2] for h in hits]
    assert scores == sorted(scores, reverse=True)


def test_query_by_example_ranks_the_video_first(generation):
    g = vi.Generation(generation[0])
    for ext in ("v000", "v005", "n003", "v029"):
        rec = g.reconstruct(ext)
        assert rec.shape == (L, D) and rec.dtype == np.float32
        np.testing.assert_array_equal(rec.reshape(L, M, D // M)[1, 2], g.codebooks[1, 2, g.codes_of(ext)[1, 2]])
        hits = g.search(rec, k=3)[0]
        assert hits[0][1] == ext and abs(hits[0][2] - 1.0) < 1e-5
        assert hits[1][2] < hits[0][2]
        assert g.search(rec, k=1, rerank=5)[0][0][1] == ext
    with pytest.raises(KeyError):
        g.reconstruct("v007")     # deleted


# -- command line ------------------------------------------------------------------------------

def _run(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "Pipelines", "tools", "vidx_index.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def test_cli_verify_and_search(generation, tmp_path_factory):
    index = generation[0]
    g = vi.Generation(index)
    p = _run("verify", index)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "g000002" in p.stdout
    qdir = tmp_path_factory.mktemp("q")
    q = np.random.RandomState(11).standard_normal((2, L, D)).astype(np.float32)
    np.save(qdir / "q.npy", q)
    p = _run("search", index, "--query", qdir / "q.npy", "--k", 3)
    assert p.returncode == 0, p.stderr
    lines = [json.loads(x) for x in p.stdout.splitlines()]
    want = g.search(q, k=3)
    assert [(x["query"], x["rank"]) for x in lines] == [(i, r) for i in range(2) for r in (1, 2, 3)]
    assert [(x["id"], x["external_id"], x["score"]) for x in lines] == [h for hits in want for h in hits]
    np.save(qdir / "q1.npy", q[0])
    p = _run("search", index, "--query", qdir / "q1.npy", "--k", 2, "--rerank", 10)
    assert [json.loads(x)["id"] for x in p.stdout.splitlines()] == [h[0] for h in g.search(q[0], 2, rerank=10)[0]]
    p = _run("search", index, "--like", "n002", "--k", 1)
    assert p.returncode == 0 and json.loads(p.stdout)["external_id"] == "n002"
    # Damage two shards: verify names both and fails.
    for name in ("base-0001.vidx", "delta-0001-0001.vidx"):
        f = index / "g000002" / name
        b = bytearray(f.read_bytes())
        b[200] ^= 0xFF
        f.write_bytes(bytes(b))
    p = _run("verify", index)
    assert p.returncode == 1
    assert "base-0001.vidx" in p.stdout and "delta-0001-0001.vidx" in p.stdout
