import json
import os
import struct

import numpy as np
import pytest

import safetensors_np as st


def _tensors(seed=0):
    r = np.random.RandomState(seed)
    return {
        "b/weights": r.standard_normal((3, 5)).astype(np.float32),
        "a": np.arange(7, dtype=np.int64),
        "c": np.array([True, False, True]),
        "codes": r.randint(0, 256, (2, 3, 4)).astype(np.uint8),
        "d": r.standard_normal(4),
        "h": r.standard_normal((2, 2)).astype(np.float16),
        "scalar": np.array(3.5, dtype=np.float32),
        "empty": np.zeros((0, 6), dtype=np.float32),
        "ünï": np.ones(2, dtype=np.int32),
    }


def test_round_trip(tmp_path):
    t = _tensors()
    meta = {"format": "vidx-test", "videos": json.dumps([{"id": "é/1"}], ensure_ascii=False)}
    st.save(tmp_path / "x.safetensors", t, meta)
    back, m = st.load(tmp_path / "x.safetensors")
    assert m == meta
    assert set(back) == set(t)
    for k, v in t.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape, k
        np.testing.assert_array_equal(back[k], v)


# Bytes written by the Swift SafeTensorsWriter (Sources/VidxCore/SafeTensors+Write.swift) for
# the tensors and metadata of test_same_bytes_as_the_swift_writer.
SWIFT_HEADER = (
    '{"__metadata__":{"a":"tab\\there\\nnl","format":"vidx-test","videos":"[{\\"id\\":\\"é/1\\",'
    '\\"x\\":\\"a\\\\\\\\b\\u0008\\u000c\\u0001\\"}]"},'
    '"b":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]},'
    '"codes":{"dtype":"U8","shape":[2,2],"data_offsets":[3,7]},'
    '"empty":{"dtype":"F32","shape":[0,4],"data_offsets":[7,7]},'
    '"scalar":{"dtype":"F32","shape":[],"data_offsets":[7,11]},'
    '"v0/rgb/features":{"dtype":"F32","shape":[2,3],"data_offsets":[11,35]},'
    '"ünï":{"dtype":"U8","shape":[1],"data_offsets":[35,36]}}     ')
SWIFT_DATA = "010001010203fa000060400000803f0000004000004040000080400000a0400000c04007"


def test_same_bytes_as_the_swift_writer():
    meta = {"format": "vidx-test", "videos": '[{"id":"é/1","x":"a\\\\b\x08\x0c\x01"}]', "a": "tab\there\nnl"}
    tensors = {"v0/rgb/features": np.arange(1, 7, dtype=np.float32).reshape(2, 3),
               "codes": np.array([[1, 2], [3, 250]], np.uint8), "scalar": np.array(3.5, np.float32),
               "empty": np.zeros((0, 4), np.float32), "ünï": np.array([7], np.uint8),
               "b": np.array([True, False, True])}
    header = SWIFT_HEADER.encode("utf-8")
    assert len(header) == 488
    assert st.save_bytes(tensors, meta) == struct.pack("<Q", 488) + header + bytes.fromhex(SWIFT_DATA)
    back, m = st.loads(st.save_bytes(tensors, meta))
    assert m == meta


def test_canonical_layout():
    t = _tensors()
    data = st.save_bytes(t, {"z": "1", "a": "2"})
    (n,) = struct.unpack_from("<Q", data)
    assert n % 8 == 0
    body = data[8:8 + n].decode("utf-8").rstrip(" ")
    header = json.loads(body)
    assert body.startswith('{"__metadata__":{"a":"2","z":"1"},"a":{"dtype":"I64","shape":[7],"data_offsets":[0,56]}')
    assert "ünï" in body and " " not in body
    # tensors laid out in sorted name order, back to back
    names = sorted(k for k in header if k != "__metadata__")
    assert names == sorted(t) and list(header)[1:] == names
    offs = [header[k]["data_offsets"] for k in names]
    assert offs[0][0] == 0
    assert all(offs[i][1] == offs[i + 1][0] for i in range(len(offs) - 1))
    assert offs[-1][1] == len(data) - 8 - n
    # little-endian data
    a = header["a"]["data_offsets"]
    assert data[8 + n + a[0]:8 + n + a[1]] == np.arange(7, dtype="<i8").tobytes()


def test_deterministic_and_order_independent(tmp_path):
    t = _tensors()
    reordered = dict(reversed(list(t.items())))
    st.save(tmp_path / "1", t, {"k": "v"})
    st.save(tmp_path / "2", reordered, {"k": "v"})
    assert (tmp_path / "1").read_bytes() == (tmp_path / "2").read_bytes()
    # non-contiguous and big-endian inputs write the same bytes as their plain copies
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    a = st.save_bytes({"x": x.T}, None)
    b = st.save_bytes({"x": np.ascontiguousarray(x.T).astype(">f4")}, None)
    assert a == b


def test_empty_metadata_is_omitted():
    a = np.zeros(1, np.float32)
    assert st.save_bytes({"a": a}, None) == st.save_bytes({"a": a}, {})
    assert b"__metadata__" not in st.save_bytes({"a": a}, {})


def test_atomic_write_leaves_no_temp(tmp_path):
    st.save(tmp_path / "x.safetensors", {"a": np.zeros(3, np.float32)}, {})
    st.save(tmp_path / "x.safetensors", {"a": np.ones(3, np.float32)}, {})
    assert os.listdir(tmp_path) == ["x.safetensors"]
    np.testing.assert_array_equal(st.load(tmp_path / "x.safetensors")[0]["a"], np.ones(3))


def test_refuses_bad_files(tmp_path):
    good = st.save_bytes({"a": np.zeros(4, np.float32), "b": np.zeros(2, np.float32)}, {})
    (n,) = struct.unpack_from("<Q", good)

    def variant(header_edit=None, raw=None):
        if raw is None:
            h = json.loads(good[8:8 + n])
            header_edit(h)
            text = json.dumps(h).encode()
            raw = struct.pack("<Q", len(text)) + text + good[8 + n:]
        return raw

    cases = {
        "truncated": good[:5],
        "header too long": struct.pack("<Q", 10 ** 9) + good[8:],
        "not json": struct.pack("<Q", 4) + b"{{{{",
        "bad dtype": variant(lambda h: h["a"].update(dtype="Q9")),
        "size mismatch": variant(lambda h: h["a"].update(shape=[5])),
        "outside": variant(lambda h: h["b"].update(data_offsets=[16, 64])),
        "overlap": variant(lambda h: h["b"].update(data_offsets=[8, 16])),
        "trailing": good + b"\0" * 4,
    }
    for what, raw in cases.items():
        with pytest.raises(st.SafetensorsError):
            st.loads(raw)
        assert what


def test_unwritable_dtype():
    with pytest.raises(st.SafetensorsError, match="complex"):
        st.save_bytes({"z": np.zeros(2, np.complex64)}, None)
