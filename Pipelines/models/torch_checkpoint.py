"""Read `torch.save` files into NumPy arrays without PyTorch, and without running their code.

Two container formats are understood:

- the zip format (PyTorch >= 1.6): `<name>/data.pkl` (the object pickle), `<name>/data/<key>`
  (one raw storage per key), `<name>/byteorder` ("little" or "big"; absent means little);
- the legacy pickle stream (`_use_new_zipfile_serialization=False`): a pickled magic number,
  the protocol version (1001), a sys-info dict (`little_endian`, type sizes), the object
  pickle, the pickled list of storage keys, then for each key in that order an 8-byte element
  count followed by the storage's raw bytes.

In both, tensors are pickled as `torch._utils._rebuild_tensor_v2(storage, offset, size,
stride, requires_grad, backward_hooks)` whose `storage` is a persistent id
`('storage', <torch.XStorage class>, key, location, numel[, view_metadata])`.

The unpickler is restricted: it resolves only the globals a state dict needs (see
`ALLOWED_GLOBALS`) and refuses every other one with `UnsafeCheckpointError` naming it, so
loading never imports or executes anything from the file. With `allow_opaque=True`, other
globals (a saved config object, a NumPy scalar, ...) become inert `Opaque` placeholders that
record their name and arguments; nothing is imported or called either way.

`load(path)` returns the pickled structure with every tensor replaced by a contiguous,
native-endian NumPy array (bfloat16 converted to float32; 0-d tensors as 0-d arrays).
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile

import numpy as np

__all__ = ["load", "CheckpointError", "UnsafeCheckpointError", "Opaque", "ALLOWED_GLOBALS"]

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


class CheckpointError(ValueError):
    """A file that is not a readable torch.save checkpoint."""


class UnsafeCheckpointError(CheckpointError):
    """The checkpoint refers to a global outside the allow-list."""


class _DType:
    """Element type of a storage: NumPy dtype (bfloat16 as its raw uint16 bits)."""

    __slots__ = ("name", "np", "bfloat16")

    def __init__(self, name: str, np_dtype: str, bfloat16: bool = False):
        self.name = name
        self.np = np.dtype(np_dtype)
        self.bfloat16 = bfloat16

    def __repr__(self):
        return f"torch.{self.name}"


_DTYPES = {
    "float32": _DType("float32", "f4"), "float": _DType("float32", "f4"),
    "float64": _DType("float64", "f8"), "double": _DType("float64", "f8"),
    "float16": _DType("float16", "f2"), "half": _DType("float16", "f2"),
    "bfloat16": _DType("bfloat16", "u2", bfloat16=True),
    "int64": _DType("int64", "i8"), "long": _DType("int64", "i8"),
    "int32": _DType("int32", "i4"), "int": _DType("int32", "i4"),
    "int16": _DType("int16", "i2"), "short": _DType("int16", "i2"),
    "int8": _DType("int8", "i1"),
    "uint8": _DType("uint8", "u1"),
    "bool": _DType("bool", "?"),
}


class _StorageType:
    """Stand-in for a `torch.XStorage` class in a persistent id."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: _DType | None):
        self.name = name
        self.dtype = dtype

    def __repr__(self):
        return f"torch.{self.name}"


_STORAGE_TYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
    "UntypedStorage": "uint8",
}


class _Storage:
    """A storage's element type, count, and (once read) its bytes as a 1-D array."""

    __slots__ = ("key", "dtype", "numel", "array", "base", "base_offset")

    def __init__(self, key: str, dtype: _DType, numel: int):
        self.key = key
        self.dtype = dtype
        self.numel = numel
        self.array = None          # 1-D array of dtype.np (native endian)
        self.base = None           # legacy views: the root storage ...
        self.base_offset = 0       # ... and the element offset into it

    def elements(self) -> np.ndarray:
        if self.base is not None:
            root = self.base.elements()
            if self.base_offset + self.numel > root.size:
                raise CheckpointError(f"storage view '{self.key}' exceeds its root storage '{self.base.key}'")
            return root[self.base_offset:self.base_offset + self.numel]
        if self.array is None:
            raise CheckpointError(f"storage '{self.key}' has no data")
        return self.array


class _LazyTensor:
    """A tensor whose storage may not have been read yet (legacy format)."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, _Storage):
            raise CheckpointError(f"tensor rebuilt from {type(storage).__name__}, not a storage")
        size = tuple(size)
        stride = tuple(stride)
        for v in (offset,) + size + stride:
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise CheckpointError(f"bad tensor geometry: offset {offset!r}, size {size!r}, stride {stride!r}")
        if len(size) != len(stride):
            raise CheckpointError(f"tensor size {size} and stride {stride} differ in rank")
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def materialize(self) -> np.ndarray:
        dt = self.storage.dtype
        out_dtype = np.dtype(np.float32) if dt.bfloat16 else dt.np
        if any(s == 0 for s in self.size):
            return np.zeros(self.size, dtype=out_dtype)
        elems = self.storage.elements()
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if last >= elems.size:
            raise CheckpointError(
                f"tensor of size {self.size}, stride {self.stride}, offset {self.offset} reads element {last} "
                f"of storage '{self.storage.key}' which has {elems.size}")
        view = np.lib.stride_tricks.as_strided(
            elems[self.offset:], shape=self.size,
            strides=tuple(s * elems.itemsize for s in self.stride), writeable=False)
        arr = np.array(view, copy=True, order="C")
        if dt.bfloat16:
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        return arr


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


def _rebuild_parameter_with_state(data, requires_grad=False, backward_hooks=None, state=None):
    return data


def _torch_size(*args):
    return tuple(*args) if args else ()


def _codecs_encode(text, encoding="utf-8"):
    # Protocol-2 pickles store bytes as _codecs.encode(str, 'latin1'); allow only that.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafeCheckpointError(f"_codecs.encode is allowed only for latin1 strings, got {encoding!r}")
    return text.encode("latin1")


def _device(*args):
    return str(args[0]) if args else "cpu"


#: module.name -> what it resolves to. Everything else is refused (or opaque, if allowed).
ALLOWED_GLOBALS = {
    "collections.OrderedDict": collections.OrderedDict,
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter_with_state,
    "torch.Size": _torch_size,
    "torch.device": _device,
    "builtins.set": set,
    "builtins.frozenset": frozenset,
    "builtins.slice": slice,
    "_codecs.encode": _codecs_encode,
}
for _name, _dt in _STORAGE_TYPES.items():
    ALLOWED_GLOBALS[f"torch.{_name}"] = _StorageType(_name, _DTYPES[_dt])
ALLOWED_GLOBALS["torch.storage.UntypedStorage"] = ALLOWED_GLOBALS["torch.UntypedStorage"]
ALLOWED_GLOBALS["torch.storage.TypedStorage"] = _StorageType("storage.TypedStorage", None)
ALLOWED_GLOBALS["torch.storage._TypedStorage"] = _StorageType("storage._TypedStorage", None)
for _name, _dt in _DTYPES.items():
    ALLOWED_GLOBALS[f"torch.{_name}"] = _dt


class Opaque:
    """An object of a class outside the allow-list (only with allow_opaque=True): the global's
    name (`qualname`), the arguments it would have been called with and any state pickled
    for it. Nothing of the original class is imported or run."""

    qualname = "?"
    args: tuple = ()
    kwargs: dict = {}
    state = None

    def __init__(self, *args, **kwargs):
        self.args = args
        self.kwargs = kwargs

    def __setstate__(self, state):
        self.state = state

    # Dict- and list-like classes are pickled with SETITEMS / APPENDS after NEWOBJ.
    def __setitem__(self, key, value):
        self.__dict__.setdefault("items", {})[key] = value

    def append(self, value):
        self.__dict__.setdefault("elements", []).append(value)

    def extend(self, values):
        self.__dict__.setdefault("elements", []).extend(values)

    def __repr__(self):
        return f"Opaque({self.qualname})"


def _opaque_class(qualname: str) -> type:
    # A class, not a function, so that both REDUCE (cls(*args)) and NEWOBJ (cls.__new__(cls))
    # work; either way the result is an inert Opaque.
    return type("Opaque", (Opaque,), {"qualname": qualname, "__module__": __name__})


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict, load_storage, allow_opaque: bool, legacy: bool):
        super().__init__(file, encoding="latin1")
        self._storages = storages
        self._load_storage = load_storage
        self._allow_opaque = allow_opaque
        self._legacy = legacy

    def find_class(self, module, name):
        if module == "__builtin__":
            module = "builtins"
        qualname = f"{module}.{name}"
        if qualname in ALLOWED_GLOBALS:
            return ALLOWED_GLOBALS[qualname]
        if self._allow_opaque:
            return _opaque_class(qualname)
        raise UnsafeCheckpointError(
            f"checkpoint refers to '{qualname}', which a state-dict reader does not allow "
            f"(nothing was imported or run); if it lies outside the weights (a saved config object, say), "
            f"load with allow_opaque=True to keep it as an inert placeholder")

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise CheckpointError(f"unsupported persistent id {pid!r:.80} (only tensor storages are allowed)")
        if len(pid) not in (5, 6):
            raise CheckpointError(f"storage persistent id has {len(pid)} fields, expected 5 or 6")
        _, storage_type, key, _location, numel = pid[:5]
        view = pid[5] if len(pid) == 6 else None
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"storage type {storage_type!r} is not a torch storage class")
        if storage_type.dtype is None:
            raise CheckpointError(f"storage '{key}': untyped {storage_type!r} without an element type")
        if not isinstance(numel, int) or numel < 0:
            raise CheckpointError(f"storage '{key}': bad element count {numel!r}")
        key = str(key)
        storage = self._storages.get(key)
        if storage is None:
            storage = _Storage(key, storage_type.dtype, numel)
            self._storages[key] = storage
            if self._load_storage is not None:
                storage.array = self._load_storage(key, storage_type.dtype, numel)
        elif storage.dtype.np != storage_type.dtype.np:
            raise CheckpointError(f"storage '{key}' is used both as {storage.dtype!r} and {storage_type.dtype!r}")
        if view is not None:
            if not self._legacy or not isinstance(view, tuple) or len(view) != 3:
                raise CheckpointError(f"storage '{key}': unsupported view metadata {view!r}")
            view_key, offset, view_size = view
            view_key = str(view_key)
            v = self._storages.get(view_key)
            if v is None:
                v = _Storage(view_key, storage.dtype, view_size)
                v.base, v.base_offset = storage, offset
                self._storages[view_key] = v
            return v
        return storage


def _resolve(obj, seen):
    """Replaces every _LazyTensor in a nested structure by its array (in place for containers)."""
    if isinstance(obj, _LazyTensor):
        return obj.materialize()
    if isinstance(obj, (np.ndarray, str, bytes, int, float, bool, type(None))):
        return obj
    if id(obj) in seen:
        return obj
    seen.add(id(obj))
    if isinstance(obj, dict):
        for k in list(obj):
            obj[k] = _resolve(obj[k], seen)
        for k, v in list(getattr(obj, "__dict__", {}).items()):
            obj.__dict__[k] = _resolve(v, seen)
        return obj
    if isinstance(obj, list):
        for i, v in enumerate(obj):
            obj[i] = _resolve(v, seen)
        return obj
    if isinstance(obj, tuple):
        return type(obj)(_resolve(v, seen) for v in obj) if type(obj) is tuple else obj
    if isinstance(obj, (set, frozenset)):
        return type(obj)(_resolve(v, seen) for v in obj)
    if isinstance(obj, Opaque):
        for k, v in list(obj.__dict__.items()):
            obj.__dict__[k] = _resolve(v, seen)
        return obj
    return obj


def _raw_array(data: bytes, dtype: _DType, numel: int, little: bool, what: str) -> np.ndarray:
    need = numel * dtype.np.itemsize
    if len(data) < need:
        raise CheckpointError(f"{what}: {len(data)} bytes, expected {need} for {numel} x {dtype!r}")
    order = "<" if little else ">"
    arr = np.frombuffer(data, dtype=dtype.np.newbyteorder(order), count=numel)
    return arr.astype(dtype.np.newbyteorder("="))


def _load_zip(path: str, allow_opaque: bool):
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        pkls = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
        pkls = [n for n in pkls if n.count("/") <= 1]
        if len(pkls) != 1:
            raise CheckpointError(f"{path}: expected one <name>/data.pkl in the zip, found {pkls or 'none'}")
        prefix = pkls[0][: -len("data.pkl")]
        little = True
        if prefix + "byteorder" in names:
            order = z.read(prefix + "byteorder").decode("ascii", "replace").strip()
            if order not in ("little", "big"):
                raise CheckpointError(f"{path}: byteorder is {order!r}")
            little = order == "little"
        nameset = set(names)

        def load_storage(key, dtype, numel):
            member = f"{prefix}data/{key}"
            if member not in nameset:
                raise CheckpointError(f"{path}: storage '{key}' is missing ({member})")
            return _raw_array(z.read(member), dtype, numel, little, f"{path}: storage '{key}'")

        storages: dict = {}
        up = _Unpickler(io.BytesIO(z.read(pkls[0])), storages, load_storage, allow_opaque, legacy=False)
        try:
            obj = up.load()
        except CheckpointError:
            raise
        except Exception as e:  # a malformed pickle can fail in many ways; none may escape unexplained
            raise CheckpointError(f"{path}: data.pkl is not a valid pickle: {type(e).__name__}: {e}") from None
        return _resolve(obj, set())


def _load_legacy(path: str, allow_opaque: bool):
    with open(path, "rb") as f:
        def plain():
            try:
                return _Unpickler(f, {}, None, False, legacy=True).load()
            except CheckpointError:
                raise
            except Exception as e:
                raise CheckpointError(f"{path}: not a torch.save file ({e})") from None

        magic = plain()
        if magic != LEGACY_MAGIC:
            raise CheckpointError(f"{path}: not a torch.save file (bad magic number)")
        protocol = plain()
        if protocol != LEGACY_PROTOCOL:
            raise CheckpointError(f"{path}: legacy protocol {protocol!r}, expected {LEGACY_PROTOCOL}")
        sys_info = plain()
        little = True
        if isinstance(sys_info, dict):
            little = bool(sys_info.get("little_endian", True))
        storages: dict = {}
        up = _Unpickler(f, storages, None, allow_opaque, legacy=True)
        try:
            obj = up.load()
        except CheckpointError:
            raise
        except Exception as e:
            raise CheckpointError(f"{path}: object pickle is not valid: {type(e).__name__}: {e}") from None
        keys = plain()
        if not isinstance(keys, list):
            raise CheckpointError(f"{path}: storage key list is missing")
        remaining = os.fstat(f.fileno()).st_size - f.tell()
        for key in keys:
            key = str(key)
            s = storages.get(key)
            if s is None or s.base is not None:
                raise CheckpointError(f"{path}: storage '{key}' is listed but no tensor refers to it")
            head = f.read(8)
            if len(head) != 8:
                raise CheckpointError(f"{path}: truncated before storage '{key}'")
            (count,) = struct.unpack("<q" if little else ">q", head)
            nbytes = count * s.dtype.np.itemsize
            remaining -= 8
            if count < 0 or nbytes > remaining:
                raise CheckpointError(f"{path}: storage '{key}' claims {count} elements, more than the file holds")
            if count != s.numel:
                raise CheckpointError(f"{path}: storage '{key}' holds {count} elements, the pickle said {s.numel}")
            s.array = _raw_array(f.read(nbytes), s.dtype, count, little, f"{path}: storage '{key}'")
            remaining -= nbytes
        return _resolve(obj, set())


def load(path, *, allow_opaque: bool = False):
    """Loads a torch.save file (zip or legacy) into nested dicts/lists of NumPy arrays.

    Raises UnsafeCheckpointError (naming the global) for a class or function outside the
    allow-list unless `allow_opaque`, and CheckpointError for anything malformed.
    """
    path = os.fspath(path)
    if zipfile.is_zipfile(path):
        try:
            return _load_zip(path, allow_opaque)
        except (zipfile.BadZipFile, zipfile.LargeZipFile) as e:
            raise CheckpointError(f"{path}: damaged zip: {e}") from None
    with open(path, "rb") as f:
        head = f.read(2)
    if len(head) < 2 or head[0] != 0x80:
        raise CheckpointError(f"{path}: neither a zip nor a pickle stream (not a torch.save file)")
    return _load_legacy(path, allow_opaque)
