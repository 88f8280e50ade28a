r"""Read and write safetensors files with NumPy alone.

Layout (https://huggingface.co/docs/safetensors): an 8-byte little-endian unsigned header
length N, N bytes of UTF-8 JSON, then the raw little-endian tensor data. The JSON maps each
tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the
start of the data) and may hold "__metadata__", a string -> string map.

The writer produces exactly the bytes of the project's Swift writer
(Sources/VidxCore/SafeTensors+Write.swift):
- "__metadata__" first, omitted when the metadata is empty or None; its keys sorted;
- then the tensors, names sorted by their UTF-8 bytes (Python's `sorted` order), each as
  {"dtype":..,"shape":[..],"data_offsets":[b,e]} in that field order;
- no whitespace; strings as raw UTF-8 with only '"', '\', control characters escaped
  (\n, \r, \t, otherwise \u00xx in lower-case hex; '/' is not escaped);
- the header padded with spaces to a multiple of 8 bytes, so the data starts 8-aligned;
- the data little-endian, tensors back to back in name order;
- the file written to a temporary name in the same directory, fsynced, then renamed.
For names that sort after "__metadata__" (anything starting with a lower-case letter, as
every name this project writes does) this is also `json.dumps(sort_keys=True,
separators=(",", ":"), ensure_ascii=False)` order for the top level.
"""

from __future__ import annotations

import json
import os
import re
import struct
import tempfile

import numpy as np

__all__ = ["save", "load", "save_bytes", "SafetensorsError", "DTYPES"]

#: safetensors dtype name -> little-endian NumPy dtype.
DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NAME_OF = {(dt.kind, dt.itemsize): name for name, dt in DTYPES.items()}

#: Largest JSON header a reader accepts (the format's own limit is 100 MB).
MAX_HEADER = 100_000_000


class SafetensorsError(ValueError):
    """A safetensors file that is not what it should be, or a tensor that cannot be written."""


def _dtype_name(arr: np.ndarray, name: str) -> str:
    key = (arr.dtype.kind, arr.dtype.itemsize)
    if key not in _NAME_OF:
        raise SafetensorsError(f"tensor '{name}': dtype {arr.dtype} has no safetensors equivalent")
    return _NAME_OF[key]


_ESCAPE = re.compile('[\\x00-\\x1f"\\\\]')
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _json_string(text: str) -> str:
    """A JSON string exactly as the Swift writer escapes it."""
    return '"' + _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(), "\\u%04x" % ord(m.group())), text) + '"'


def _utf8_key(name: str) -> bytes:
    try:
        return name.encode("utf-8")
    except UnicodeEncodeError:
        raise SafetensorsError(f"{name!r} is not valid Unicode text") from None


def save_bytes(tensors: dict, metadata: dict | None = None) -> bytes:
    """The canonical bytes of a safetensors file holding `tensors` and `metadata`."""
    parts = []
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise SafetensorsError(f"metadata must map strings to strings, got {k!r}: {type(v).__name__}")
        items = ",".join(_json_string(k) + ":" + _json_string(metadata[k]) for k in sorted(metadata, key=_utf8_key))
        parts.append('"__metadata__":{' + items + "}")
    for name in tensors:
        if not isinstance(name, str) or not name:
            raise SafetensorsError(f"tensor names must be non-empty strings, got {name!r}")
        if name == "__metadata__":
            raise SafetensorsError("'__metadata__' is reserved and cannot name a tensor")
    chunks = []
    offset = 0
    for name in sorted(tensors, key=_utf8_key):
        arr = np.asarray(tensors[name])
        dtype = _dtype_name(arr, name)
        data = np.ascontiguousarray(arr, dtype=DTYPES[dtype]).tobytes()
        shape = ",".join(str(int(s)) for s in arr.shape)
        parts.append(f'{_json_string(name)}:{{"dtype":"{dtype}","shape":[{shape}],'
                     f'"data_offsets":[{offset},{offset + len(data)}]}}')
        chunks.append(data)
        offset += len(data)
    text = ("{" + ",".join(parts) + "}").encode("utf-8")
    text += b" " * (-len(text) % 8)
    return b"".join([struct.pack("<Q", len(text)), text] + chunks)


def atomic_write(path: str, data: bytes) -> None:
    """Writes `data` to `path` through a temporary file in the same directory, fsync and rename."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def save(path: str, tensors: dict, metadata: dict | None = None) -> None:
    """Writes `tensors` (name -> array) and string `metadata` to `path` atomically, canonically."""
    atomic_write(path, save_bytes(tensors, metadata))


def load(path: str) -> tuple[dict, dict]:
    """Reads a safetensors file into (name -> NumPy array, metadata dict).

    Arrays are native-endian views of one writable buffer (no per-tensor copy).
    Raises SafetensorsError on any inconsistency: short file, bad header, unknown dtype,
    offsets that do not match the shape or leave gaps or overlaps.
    """
    with open(path, "rb") as f:
        raw = bytearray(f.read())
    return loads(raw, path=os.fspath(path))


def loads(raw: bytes | bytearray, path: str = "<bytes>") -> tuple[dict, dict]:
    """Parses safetensors bytes (see `load`)."""
    if not isinstance(raw, bytearray):
        raw = bytearray(raw)
    if len(raw) < 8:
        raise SafetensorsError(f"{path}: truncated: {len(raw)} bytes, no header length")
    (n,) = struct.unpack_from("<Q", raw, 0)
    if n > MAX_HEADER or n > len(raw) - 8:
        raise SafetensorsError(f"{path}: header length {n} exceeds the file ({len(raw)} bytes) or the cap")
    try:
        header = json.loads(bytes(raw[8:8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"{path}: header is not valid UTF-8 JSON: {e}") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise SafetensorsError(f"{path}: __metadata__ must map strings to strings")
    base = 8 + n
    data_len = len(raw) - base
    spans = []
    tensors = {}
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise SafetensorsError(f"{path}: tensor '{name}': entry must have exactly dtype, shape, data_offsets")
        dtype = DTYPES.get(info["dtype"])
        if dtype is None:
            raise SafetensorsError(f"{path}: tensor '{name}': unsupported dtype {info['dtype']!r}")
        shape = info["shape"]
        offs = info["data_offsets"]
        if (not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)):
            raise SafetensorsError(f"{path}: tensor '{name}': bad shape {shape!r}")
        if (not isinstance(offs, list) or len(offs) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)
                or not 0 <= offs[0] <= offs[1] <= data_len):
            raise SafetensorsError(f"{path}: tensor '{name}': data_offsets {offs!r} outside the data ({data_len} bytes)")
        count = 1
        for s in shape:
            count *= s
        if offs[1] - offs[0] != count * dtype.itemsize:
            raise SafetensorsError(f"{path}: tensor '{name}': {offs[1] - offs[0]} bytes for shape {shape} of {info['dtype']}")
        spans.append((offs[0], offs[1], name))
        arr = np.frombuffer(raw, dtype=dtype, count=count, offset=base + offs[0]).reshape(shape)
        tensors[name] = arr.astype(dtype.newbyteorder("="), copy=False)
    spans.sort()
    pos = 0
    for begin, end, name in spans:
        if begin != pos:
            what = "overlaps its predecessor" if begin < pos else f"leaves a gap of {begin - pos} bytes"
            raise SafetensorsError(f"{path}: tensor '{name}' {what}")
        pos = end
    if pos != data_len:
        raise SafetensorsError(f"{path}: {data_len - pos} bytes after the last tensor")
    return tensors, metadata
