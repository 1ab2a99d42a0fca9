"""``tritorch.save`` / ``tritorch.load``: checkpoints in the safetensors file format, without pickle.

A file is an 8-byte little-endian header length N, N bytes of JSON, then the tensors' raw little-endian bytes. The
JSON maps each tensor's name to ``{"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}`` (offsets into
the byte area). Any safetensors reader can open the file: a flat ``{name: tensor}`` state dict keeps its names.

What is not a tensor (the nesting of dicts, lists and tuples, numbers, strings, None) is stored as JSON in the
header's ``"__metadata__"`` (a ``{str: str}`` map, per the format) under ``"tritorch.structure"``, with each tensor
replaced by a reference to its name; a CRC-32 of the byte area lets ``load`` tell a damaged file from a good one.
Loading never runs code from the file: only these JSON types and tensors can come out of it.

The same tensor object reachable twice is stored once and comes back as one object; distinct tensors that share
storage (views) are stored as separate copies. Writing to a path is atomic: a temporary file in the same folder
is written, fsynced and renamed over the target, so a failed save leaves any old file intact.
"""
import json
import math
import os
import struct
import sys
import tempfile
import zlib
from collections import OrderedDict

import numpy as np

from . import _dtype as D
from ._device import device as _device
from ._tensor import Tensor

__all__ = ["save", "load"]

_CODES = {D.float32: "F32", D.float16: "F16", D.bfloat16: "BF16", D.float64: "F64", D.int8: "I8", D.uint8: "U8",
          D.int16: "I16", D.int32: "I32", D.int64: "I64", D.bool_: "BOOL"}
_FROM_CODE = {v: k for k, v in _CODES.items()}
_FORMAT = "tritorch/1"
_MAX_HEADER = 100 * 1024 * 1024


class _Writer:
    """Walks the object: collects tensors (named, deduplicated by identity) and encodes the rest as JSON."""

    def __init__(self):
        self.tensors = OrderedDict()        # name -> tensor
        self.ids = {}                       # id(tensor) -> name
        self.flat_names = False

    def name_for(self, path):
        base = ".".join(path) if path else "tensor"
        if base == "__metadata__":
            base = "_" + base
        name, k = base, 1
        while name in self.tensors:
            name, k = f"{base}#{k}", k + 1
        return name

    def encode(self, obj, path):
        if isinstance(obj, Tensor):
            name = self.ids.get(id(obj))
            if name is None:
                name = self.name_for(path)
                self.ids[id(obj)] = name
                self.tensors[name] = obj
            from .nn.parameter import Parameter
            flags = ("p" if isinstance(obj, Parameter) else "") + ("g" if obj.requires_grad else "")
            return ["T", name, str(obj.device), flags]
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, (int, np.integer)):
            return int(obj)
        if isinstance(obj, (float, np.floating)):
            return ["f", repr(float(obj))]
        if isinstance(obj, D.dtype):
            return ["dt", obj.name]
        if isinstance(obj, _device):
            return ["dev", str(obj)]
        if isinstance(obj, dict):
            tag = "o" if isinstance(obj, OrderedDict) else "d"
            return [tag, [[self.encode(k, path + ["key"]), self.encode(v, path + [str(k)])] for k, v in obj.items()]]
        if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
            tag = "s" if type(obj).__name__ == "Size" else "t"
            return [tag, [self.encode(v, path + [str(i)]) for i, v in enumerate(obj)]]
        if isinstance(obj, list):
            return ["l", [self.encode(v, path + [str(i)]) for i, v in enumerate(obj)]]
        raise TypeError(f"tritorch.save: cannot save an object of type {type(obj).__name__} (only tensors, dicts, "
                        "lists, tuples, str, int, float, bool, None, dtypes and devices; pickle is not used)")


def _tensor_bytes(t):
    a = np.ascontiguousarray(t.detach()._to_host_array())
    if sys.byteorder == "big" and a.dtype.itemsize > 1:
        a = a.astype(a.dtype.newbyteorder("<"))
    return a.tobytes()


def _serialize(obj):
    w = _Writer()
    structure = w.encode(obj, [])
    header, blobs, offset = {}, [], 0
    for name, t in w.tensors.items():
        b = _tensor_bytes(t)
        header[name] = {"dtype": _CODES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    body = b"".join(blobs)
    header["__metadata__"] = {"format": "pt", "tritorch.format": _FORMAT,
                              "tritorch.structure": json.dumps(structure, separators=(",", ":")),
                              "tritorch.crc32": str(zlib.crc32(body))}
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)                         # the tensor area starts 8-byte aligned, as safetensors does
    return struct.pack("<Q", len(h)) + h + body


def save(obj, f, pickle_module=None, pickle_protocol=None, _use_new_zipfile_serialization=True):
    """Write ``obj`` (a tensor, or dicts/lists/tuples of tensors and plain values) to ``f``: a path (written
    atomically) or a binary file object."""
    if pickle_module is not None:
        raise ValueError("tritorch.save does not use pickle: pickle_module is not supported")
    data = _serialize(obj)
    if hasattr(f, "write"):
        f.write(data)
        if hasattr(f, "flush"):
            f.flush()
        return
    path = os.fspath(f)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise RuntimeError(f"Parent directory {folder} does not exist.")
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        if hasattr(os, "fchmod"):                     # mkstemp makes 0600; a saved file gets the usual 0666 & ~umask
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:                                              # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


# ---- loading -------------------------------------------------------------------------------------------------------
class _Corrupt(Exception):
    pass


def _read_all(f):
    if hasattr(f, "read"):
        return f.read(), getattr(f, "name", "<file object>")
    path = os.fspath(f)
    with open(path, "rb") as fh:
        return fh.read(), path


def _parse(buf):
    """(header dict, byte area) of a safetensors buffer, or _Corrupt saying what is wrong."""
    if buf[:4] == b"PK\x03\x04":
        raise _Corrupt("corrupt: not a safetensors file but a zip archive (a PyTorch pickle checkpoint? tritorch.load "
                       "does not unpickle, since unpickling can run code)")
    if len(buf) < 8:
        raise _Corrupt(f"truncated: {len(buf)} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", buf[:8])
    if n > _MAX_HEADER:
        raise _Corrupt(f"corrupt: header length {n} is implausible (not a safetensors file?)")
    if len(buf) > 8 and buf[8:9] != b"{":
        raise _Corrupt("corrupt: no JSON header after the header length (not a safetensors file?)")
    if 8 + n > len(buf):
        raise _Corrupt(f"truncated: the header needs {n} bytes but only {len(buf) - 8} follow")
    try:
        header = json.loads(buf[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _Corrupt(f"corrupt: the header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise _Corrupt("corrupt: the header is not a JSON object")
    body = memoryview(buf)[8 + n:]
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dt = _FROM_CODE[info["dtype"]]
            shape = [int(s) for s in info["shape"]]
            b, e = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as ex:
            code = info.get("dtype") if isinstance(info, dict) else None
            what = f"unsupported dtype {code!r}" if isinstance(ex, KeyError) and code is not None else \
                f"a malformed entry ({ex!r})"
            raise _Corrupt(f"corrupt: tensor {name!r} has {what}") from None
        if any(s < 0 for s in shape) or b < 0 or e < b:
            raise _Corrupt(f"corrupt: tensor {name!r} has invalid shape {shape} or offsets [{b}, {e}]")
        if e - b != math.prod(shape) * dt.itemsize:
            raise _Corrupt(f"corrupt: tensor {name!r} of shape {shape} and dtype {info['dtype']} needs "
                           f"{math.prod(shape) * dt.itemsize} bytes, its offsets span {e - b}")
        end = max(end, e)
    if end > len(body):
        raise _Corrupt(f"truncated: the tensors need {end} bytes of data, the file holds {len(body)}")
    meta = header.get("__metadata__") or {}
    crc = meta.get("tritorch.crc32") if isinstance(meta, dict) else None
    if crc is not None and str(zlib.crc32(body[:end])) != crc:
        raise _Corrupt("corrupt: the tensor data does not match its checksum")
    return header, body


def _location_map(map_location):
    """A function (saved device string) -> device string, from ``map_location``."""
    if map_location is None:
        return lambda loc: loc
    if isinstance(map_location, (str, _device)):
        dev = str(_device(map_location)) if isinstance(map_location, _device) else map_location
        return lambda loc: dev
    if isinstance(map_location, dict):
        return lambda loc: map_location.get(loc, loc)
    if callable(map_location):
        return None
    raise TypeError(f"map_location should be a str, a device, a dict or a callable, not "
                    f"{type(map_location).__name__}")


def load(f, map_location=None, pickle_module=None, *, weights_only=True, mmap=None, **pickle_load_args):
    """Read what ``save`` wrote (or any safetensors file, as an OrderedDict of tensors).

    ``map_location``: None (each tensor to the device it was saved from), 'cpu' / 'cuda' / a device (all
    tensors there), a dict {saved device: new device}, or a callable ``fn(tensor_on_cpu, saved_device_str)``.
    ``weights_only`` is accepted for compatibility: loading never executes code from the file either way."""
    buf, where = _read_all(f)
    try:
        header, body = _parse(bytes(buf))
    except _Corrupt as e:
        raise RuntimeError(f"tritorch.load: file {where} is {e}") from None
    loc = _location_map(map_location)
    cache = {}

    def tensor(name, saved_dev="cpu", flags=""):
        key = (name, saved_dev, flags)
        if key in cache:
            return cache[key]
        info = header.get(name)
        if not isinstance(info, dict) or name == "__metadata__":
            raise RuntimeError(f"tritorch.load: file {where} is corrupt: its structure names a missing tensor "
                               f"{name!r}")
        dt = _FROM_CODE[info["dtype"]]
        b, e = info["data_offsets"]
        le = dt.np if sys.byteorder == "little" or dt.itemsize == 1 else dt.np.newbyteorder("<")
        arr = np.frombuffer(body[b:e], dtype=le)
        arr = arr.astype(dt.np).reshape(info["shape"])      # a private, native-order copy
        if loc is None:
            t = map_location(Tensor._wrap_numpy(arr, _device("cpu"), dt), saved_dev)
        else:
            target = _device(loc(saved_dev))
            if target.type == "cuda":
                from . import cuda
                if not cuda.is_available():
                    raise RuntimeError("Attempting to deserialize object on a CUDA device but tritorch.cuda."
                                       "is_available() is False. If you are running on a CPU-only machine, please "
                                       "use tritorch.load with map_location='cpu' to map your storages to the CPU.")
            t = Tensor._wrap_numpy(arr, target, dt)
        if "p" in flags:
            from .nn.parameter import Parameter
            t = Parameter(t, requires_grad="g" in flags)
        elif "g" in flags:
            t.requires_grad_(True)
        cache[key] = t
        return t

    def decode(node):
        if node is None or isinstance(node, (bool, int, str)):
            return node
        if isinstance(node, float):
            return node
        if not isinstance(node, list) or not node or not isinstance(node[0], str):
            raise RuntimeError(f"tritorch.load: file {where} is corrupt: unexpected structure node {node!r}")
        tag = node[0]
        if tag == "T":
            return tensor(*node[1:4])
        if tag == "f":
            return float(node[1])
        if tag == "dt":
            return D.to_dtype(node[1])
        if tag == "dev":
            return _device(node[1])
        if tag in ("d", "o"):
            items = [(decode(k), decode(v)) for k, v in node[1]]
            return OrderedDict(items) if tag == "o" else dict(items)
        if tag == "t":
            return tuple(decode(v) for v in node[1])
        if tag == "s":
            from ._tensor import Size
            return Size(decode(v) for v in node[1])
        if tag == "l":
            return [decode(v) for v in node[1]]
        raise RuntimeError(f"tritorch.load: file {where} is corrupt: unknown structure tag {tag!r}")

    meta = header.get("__metadata__") or {}
    structure = meta.get("tritorch.structure") if isinstance(meta, dict) else None
    if structure is None:                             # a plain safetensors file from another tool
        names = [k for k in header if k != "__metadata__"]
        names.sort(key=lambda k: header[k]["data_offsets"][0])
        return OrderedDict((k, tensor(k)) for k in names)
    try:
        node = json.loads(structure)
    except json.JSONDecodeError as e:
        raise RuntimeError(f"tritorch.load: file {where} is corrupt: bad structure metadata ({e})") from None
    return decode(node)
