"""Write files exactly as `torch.save` does, without PyTorch, for the reader's tests.

Tensors are given as `Tensor(storage, offset, size, stride)` over a `Storage(array)`, so that
views (offsets, strides, shared storages) can be written as PyTorch would. The pickles name
`torch.FloatStorage`, `torch._utils._rebuild_tensor_v2`, ... through stand-in modules that
exist in sys.modules only while pickling.
"""

from __future__ import annotations

import collections
import contextlib
import io
import pickle
import struct
import sys
import types
import zipfile

import numpy as np

_STORAGE_NAMES = {
    np.dtype("float32"): "FloatStorage", np.dtype("float64"): "DoubleStorage", np.dtype("float16"): "HalfStorage",
    np.dtype("int64"): "LongStorage", np.dtype("int32"): "IntStorage", np.dtype("int16"): "ShortStorage",
    np.dtype("int8"): "CharStorage", np.dtype("uint8"): "ByteStorage", np.dtype("bool"): "BoolStorage",
}


class Storage:
    """A flat storage; `bfloat16=True` means `array` holds bfloat16 bit patterns as uint16."""

    def __init__(self, array: np.ndarray, bfloat16: bool = False):
        self.array = np.ascontiguousarray(array).reshape(-1)
        self.bfloat16 = bfloat16

    @property
    def type_name(self):
        return "BFloat16Storage" if self.bfloat16 else _STORAGE_NAMES[self.array.dtype]


class Tensor:
    def __init__(self, storage: Storage, offset: int, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


def tensor(a) -> Tensor:
    """A contiguous tensor with its own storage."""
    a = np.asarray(a)
    strides = tuple(s // a.itemsize for s in np.ascontiguousarray(a).strides) if a.ndim else ()
    return Tensor(Storage(a), 0, a.shape, strides)


def _fake_torch():
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    torch._utils = utils

    def rebuild_v2(*args):
        raise AssertionError("never called")
    rebuild_v2.__module__, rebuild_v2.__qualname__, rebuild_v2.__name__ = "torch._utils", "_rebuild_tensor_v2", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = rebuild_v2
    for name in set(_STORAGE_NAMES.values()) | {"BFloat16Storage"}:
        cls = type(name, (), {"__module__": "torch"})
        setattr(torch, name, cls)
    return torch, utils


@contextlib.contextmanager
def _torch_modules():
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    torch, utils = _fake_torch()
    sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
    try:
        yield torch, utils
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class _Pickler(pickle.Pickler):
    def __init__(self, f, torch, utils, legacy):
        super().__init__(f, protocol=2)
        self.torch, self.utils, self.legacy = torch, utils, legacy
        self.keys: dict = {}      # id(storage) -> key
        self.storages: dict = {}  # key -> Storage

    def reducer_override(self, obj):
        if isinstance(obj, Tensor):
            return (self.utils._rebuild_tensor_v2,
                    (obj.storage, obj.offset, obj.size, obj.stride, False, collections.OrderedDict()))
        return NotImplemented

    def persistent_id(self, obj):
        if not isinstance(obj, Storage):
            return None
        key = self.keys.get(id(obj))
        if key is None:
            key = str(len(self.keys)) if not self.legacy else str(140000000 + 64 * len(self.keys))
            self.keys[id(obj)] = key
            self.storages[key] = obj
        pid = ("storage", getattr(self.torch, obj.type_name), key, "cpu", obj.array.size)
        return pid + (None,) if self.legacy else pid


def _raw(storage: Storage, big: bool = False) -> bytes:
    a = storage.array
    return a.astype(a.dtype.newbyteorder(">" if big else "<")).tobytes()


def save_zip(obj, path: str, archive: str = "archive", big_endian: bool = False) -> None:
    """torch.save(obj, path) in the zip format (PyTorch >= 1.6)."""
    with _torch_modules() as (torch, utils):
        buf = io.BytesIO()
        p = _Pickler(buf, torch, utils, legacy=False)
        p.dump(obj)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{archive}/data.pkl", buf.getvalue())
        z.writestr(f"{archive}/byteorder", "big" if big_endian else "little")
        for key, s in p.storages.items():
            z.writestr(f"{archive}/data/{key}", _raw(s, big_endian))
        z.writestr(f"{archive}/version", "3\n")
        z.writestr(f"{archive}/.data/serialization_id", "0123456789")


def save_legacy(obj, path: str) -> None:
    """torch.save(obj, path, _use_new_zipfile_serialization=False)."""
    with _torch_modules() as (torch, utils):
        with open(path, "wb") as f:
            pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
            pickle.dump(1001, f, protocol=2)
            pickle.dump({"protocol_version": 1001, "little_endian": True,
                         "type_sizes": {"short": 2, "int": 4, "long": 4}}, f, protocol=2)
            p = _Pickler(f, torch, utils, legacy=True)
            p.dump(obj)
            keys = sorted(p.storages)
            pickle.dump(keys, f, protocol=2)
            for key in keys:
                s = p.storages[key]
                f.write(struct.pack("<q", s.array.size))
                f.write(_raw(s))


def state_dict_tensors(weights: dict) -> "collections.OrderedDict":
    """An OrderedDict of contiguous tensors from name -> array (a state dict)."""
    return collections.OrderedDict((k, tensor(v)) for k, v in weights.items())
