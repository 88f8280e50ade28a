import collections
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

import torch_checkpoint as tc
import torch_save_mimic as ts
from conftest import FIXTURE


def _sample():
    """A checkpoint-like object with every dtype, views, a shared storage and a 0-d tensor."""
    r = np.random.RandomState(3)
    base = r.standard_normal(40).astype(np.float32)
    shared = ts.Storage(base)
    mat = r.standard_normal((4, 6)).astype(np.float32)
    bf_values = np.array([1.0, -2.5, 0.15625, -3.3895314e38], dtype=np.float32)  # exact in bfloat16
    bf_bits = (bf_values.view(np.uint32) >> 16).astype(np.uint16)
    assert np.array_equal((bf_bits.astype(np.uint32) << 16).view(np.float32), bf_values)
    sd = collections.OrderedDict()
    sd["f32"] = ts.tensor(mat)
    sd["f64"] = ts.tensor(r.standard_normal((2, 3)))
    sd["f16"] = ts.tensor(r.standard_normal(5).astype(np.float16))
    sd["bf16"] = ts.Tensor(ts.Storage(bf_bits, bfloat16=True), 0, (2, 2), (2, 1))
    sd["i64"] = ts.tensor(np.arange(-3, 3, dtype=np.int64))
    sd["i32"] = ts.tensor(np.arange(6, dtype=np.int32).reshape(2, 3))
    sd["u8"] = ts.tensor(np.arange(250, 256, dtype=np.uint8))
    sd["bool"] = ts.tensor(np.array([True, False, True]))
    sd["scalar"] = ts.Tensor(ts.Storage(np.array([7], dtype=np.int64)), 0, (), ())
    sd["view_offset"] = ts.Tensor(shared, 10, (3, 4), (4, 1))            # rows 10..21 of the shared storage
    sd["view_transposed"] = ts.Tensor(shared, 2, (4, 3), (1, 4))         # a transposed view
    sd["view_strided"] = ts.Tensor(shared, 1, (5,), (7,))
    sd["empty"] = ts.Tensor(ts.Storage(np.zeros(0, np.float32)), 0, (0, 3), (3, 1))
    sd.__dict__["_metadata"] = collections.OrderedDict({"": {"version": 1}})
    expected = {
        "f32": mat, "bf16": bf_values.reshape(2, 2),
        "view_offset": base[10:22].reshape(3, 4),
        "view_transposed": base[2:14].reshape(3, 4).T,
        "view_strided": base[1:30:7],
        "scalar": np.array(7, dtype=np.int64),
    }
    obj = {"state_dict": sd, "arch": "HCQ", "epoch": 3, "best": 0.25, "names": ["a", "b"], "flags": (True, None)}
    return obj, expected


def _check(loaded, obj, expected):
    sd = loaded["state_dict"]
    assert isinstance(sd, collections.OrderedDict)
    assert list(sd) == list(obj["state_dict"])
    assert loaded["arch"] == "HCQ" and loaded["epoch"] == 3 and loaded["best"] == 0.25
    assert loaded["names"] == ["a", "b"] and loaded["flags"] == (True, None)
    for k, v in expected.items():
        assert sd[k].shape == v.shape, k
        np.testing.assert_array_equal(sd[k], v, err_msg=k)
        assert sd[k].flags.c_contiguous
    dtypes = {"f32": np.float32, "f64": np.float64, "f16": np.float16, "bf16": np.float32, "i64": np.int64,
              "i32": np.int32, "u8": np.uint8, "bool": np.bool_, "scalar": np.int64}
    for k, dt in dtypes.items():
        assert sd[k].dtype == dt, k
        src = obj["state_dict"][k]
        if k not in expected:
            np.testing.assert_array_equal(sd[k], src.storage.array.reshape(src.size))
    assert sd["scalar"].ndim == 0 and int(sd["scalar"]) == 7
    assert sd["empty"].shape == (0, 3)


@pytest.mark.parametrize("fmt", ["zip", "legacy", "zip-big-endian", "zip-other-archive-name"])
def test_reads_formats(tmp_path, fmt):
    obj, expected = _sample()
    path = str(tmp_path / "ckpt.pth")
    if fmt == "zip":
        ts.save_zip(obj, path)
        with zipfile.ZipFile(path) as z:
            assert "archive/data.pkl" in z.namelist()
            assert z.read("archive/data.pkl")[:2] == b"\x80\x02"
    elif fmt == "legacy":
        ts.save_legacy(obj, path)
        assert not zipfile.is_zipfile(path)
    elif fmt == "zip-big-endian":
        ts.save_zip(obj, path, big_endian=True)
    else:
        ts.save_zip(obj, path, archive="checkpoint")
    _check(tc.load(path), obj, expected)


def test_reads_the_authors_fixture():
    d = tc.load(os.path.join(FIXTURE, "checkpoint.pth"))
    sd = d["state_dict"]
    assert d["arch"] == "HCQ" and d["epoch"] == 0
    assert sd["video_dim_reduce.face.fc.weight"].shape == (64, 24)
    assert sd["cls_pq_layer._C_k"].shape == (8, 16, 8)
    assert sd["cls_pq_layer.BatchNorm.num_batches_tracked"].shape == ()
    np.testing.assert_array_equal(sd["cls_pq_layer._C_v"], sd["cls_pq_layer._C_k"])


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_refuses_code_execution(tmp_path, fmt):
    marker = tmp_path / "pwned"
    obj = {"state_dict": collections.OrderedDict(w=ts.tensor(np.zeros(2, np.float32))), "x": _Evil(marker)}
    path = str(tmp_path / "evil.pth")
    (ts.save_zip if fmt == "zip" else ts.save_legacy)(obj, path)
    with pytest.raises(tc.UnsafeCheckpointError, match=r"'(posix|os)\.system'"):
        tc.load(path)
    # even the opaque mode never calls it
    loaded = tc.load(path, allow_opaque=True)
    assert not marker.exists()
    assert isinstance(loaded["x"], tc.Opaque) and loaded["x"].qualname in ("posix.system", "os.system")
    np.testing.assert_array_equal(loaded["state_dict"]["w"], np.zeros(2))


class Config:  # stands for a training config object pickled beside the weights
    def __init__(self):
        self.lr = 0.1
        self.layers = [1, 2]


class Registry(dict):  # a dict subclass: NEWOBJ, then SETITEMS
    pass


def test_opaque_objects_are_inert(tmp_path):
    reg = Registry(a=ts.tensor(np.arange(2, dtype=np.int64)))
    obj = {"state_dict": collections.OrderedDict(w=ts.tensor(np.ones(3, np.float32))), "config": Config(), "reg": reg}
    path = str(tmp_path / "c.pth")
    ts.save_zip(obj, path)
    with pytest.raises(tc.UnsafeCheckpointError, match=r"test_torch_checkpoint\.Config"):
        tc.load(path)
    loaded = tc.load(path, allow_opaque=True)
    assert isinstance(loaded["config"], tc.Opaque)
    assert loaded["config"].state == {"lr": 0.1, "layers": [1, 2]}
    np.testing.assert_array_equal(loaded["reg"].items["a"], [0, 1])   # tensors inside placeholders are arrays


def test_refuses_malformed(tmp_path):
    p = tmp_path / "not.pth"
    p.write_bytes(b"hello world")
    with pytest.raises(tc.CheckpointError, match="not a torch.save"):
        tc.load(p)
    # a storage member missing from the zip
    obj = {"w": ts.tensor(np.ones(3, np.float32))}
    path = str(tmp_path / "z.pth")
    ts.save_zip(obj, path)
    with zipfile.ZipFile(path) as z, zipfile.ZipFile(tmp_path / "cut.pth", "w") as out:
        for n in z.namelist():
            if "/data/" not in n:
                out.writestr(n, z.read(n))
    with pytest.raises(tc.CheckpointError, match="storage '0' is missing"):
        tc.load(tmp_path / "cut.pth")
    # a view reaching past its storage
    bad = {"w": ts.Tensor(ts.Storage(np.ones(4, np.float32)), 2, (3,), (1,))}
    ts.save_zip(bad, str(tmp_path / "v.pth"))
    with pytest.raises(tc.CheckpointError, match="reads element 4"):
        tc.load(tmp_path / "v.pth")
    # a legacy file cut short
    ts.save_legacy(obj, str(tmp_path / "l.pth"))
    data = (tmp_path / "l.pth").read_bytes()
    (tmp_path / "l.pth").write_bytes(data[:-4])
    with pytest.raises(tc.CheckpointError):
        tc.load(tmp_path / "l.pth")


def test_legacy_layout_is_what_torch_writes(tmp_path):
    """The legacy stream: magic, protocol, sys info, object, keys, then count + bytes per storage."""
    a = np.arange(5, dtype=np.float32)
    path = tmp_path / "l.pth"
    ts.save_legacy({"a": ts.tensor(a)}, str(path))
    with open(path, "rb") as f:
        assert pickle.load(f) == tc.LEGACY_MAGIC
        assert pickle.load(f) == tc.LEGACY_PROTOCOL
        assert pickle.load(f)["little_endian"] is True
        class Skim(pickle.Unpickler):
            def find_class(self, module, name):
                return lambda *a, **k: None

            def persistent_load(self, pid):
                assert pid[0] == "storage" and pid[4] == 5 and pid[5] is None
        Skim(f).load()
        keys = pickle.load(f)
        assert len(keys) == 1
        assert struct.unpack("<q", f.read(8))[0] == 5
        assert f.read() == a.tobytes()


def test_damaged_pickles_raise_checkpoint_error(tmp_path):
    """One flipped byte at a time in data.pkl: the reader loads it or raises CheckpointError, nothing else."""
    obj, _ = _sample()
    path = str(tmp_path / "ok.pth")
    ts.save_zip(obj, path)
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    pkl = members["archive/data.pkl"]
    r = np.random.RandomState(0)
    for trial in range(150):
        data = bytearray(pkl)
        i = int(r.randint(len(data)))
        data[i] = int(r.randint(256))
        bad = str(tmp_path / f"bad{trial % 3}.pth")
        with zipfile.ZipFile(bad, "w") as z:
            for n, b in members.items():
                z.writestr(n, bytes(data) if n.endswith("data.pkl") else b)
        try:
            tc.load(bad)
        except tc.CheckpointError:
            pass
