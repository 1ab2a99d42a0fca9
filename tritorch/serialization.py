"""``tritorch.save`` / ``tritorch.load``: checkpoints in the safetensors file format, without pickle.

A file is an 8-byte little-endian header length N, N bytes of JSON, then the tensors' raw little-endian bytes. The
JSON maps each tensor's name to ``{"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}`` (offsets into
the byte area). Any safetensors reader can open the file: a flat ``{name: tensor}`` state dict keeps its names.

NumPy arrays are stored as tensors too and come back as arrays. What is not a tensor (the nesting of dicts,
lists and tuples, numbers, strings, None) is stored as JSON in the
header's ``"__metadata__"`` (a ``{str: str}`` map, per the format) under ``"tritorch.structure"``, with each tensor
replaced by a reference to its name; a CRC-32 of the byte area lets ``load`` tell a damaged file from a good one.
Loading never runs code from the file: only these JSON types and tensors can come out of it.

The same tensor object reachable twice is stored once and comes back as one object; distinct tensors that share
storage (views) are stored as separate copies. Writing to a path is atomic: a temporary file in the same folder
is written, fsynced and renamed over the target, so a failed save leaves any old file intact (a writer killed
mid-save leaves a temporary that the next save or load of that path removes: :mod:`tritorch._atomic`).

``load`` checks the whole header as the reference safetensors reader does before using any of it: a JSON object
of at most 100 MB, each tensor a known dtype with a shape and two offsets of non-negative integers whose span is
exactly the tensor's size, the tensors tiling the byte area in order with no overlap, gap or trailing byte, and a
``{str: str}`` metadata map. Whatever is wrong raises :class:`CorruptFileError` naming the file and the problem.
"""
import json
import math
import os
import struct
import sys
import zlib
from collections import OrderedDict

import numpy as np

from . import _atomic
from . import _dtype as D
from ._device import device as _device
from ._tensor import Size, Tensor

__all__ = ["save", "load", "CorruptFileError", "add_safe_globals", "clear_safe_globals", "get_safe_globals",
           "safe_globals"]

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
        if isinstance(obj, np.ndarray):               # stored as a tensor; comes back as a NumPy array
            name = self.ids.get(id(obj))
            if name is None:
                try:
                    D.from_numpy_dtype(obj.dtype)
                except (TypeError, ValueError, KeyError):
                    raise TypeError(f"tritorch.save: cannot save a NumPy array of dtype {obj.dtype} (only bool, "
                                    "integer and floating arrays)") from None
                name = self.name_for(path)
                self.ids[id(obj)] = name
                self.tensors[name] = obj
            return ["T", name, "cpu", "n"]
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
    a = np.ascontiguousarray(t if isinstance(t, np.ndarray) else t.detach()._to_host_array())
    if sys.byteorder == "big" and a.dtype.itemsize > 1:
        a = a.astype(a.dtype.newbyteorder("<"))
    return a.tobytes()


def _serialize(obj, extra_metadata=None):
    w = _Writer()
    structure = w.encode(obj, [])
    header, blobs, offset = {}, [], 0
    for name, t in w.tensors.items():
        b = _tensor_bytes(t)
        dt = D.from_numpy_dtype(t.dtype) if isinstance(t, np.ndarray) else t.dtype
        header[name] = {"dtype": _CODES[dt], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    body = b"".join(blobs)
    header["__metadata__"] = {"format": "pt", "tritorch.format": _FORMAT,
                              "tritorch.structure": json.dumps(structure, separators=(",", ":")),
                              "tritorch.crc32": str(zlib.crc32(body))}
    header["__metadata__"].update(extra_metadata or {})
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
    _atomic.write(path, data)


# ---- loading -------------------------------------------------------------------------------------------------------
class CorruptFileError(RuntimeError):
    """``tritorch.load`` of a file that is truncated, damaged or not a valid safetensors file."""


class _Corrupt(Exception):
    pass


def _read_all(f):
    if hasattr(f, "read"):
        return f.read(), getattr(f, "name", "<file object>")
    path = os.fspath(f)
    _atomic.remove_stale(path)                        # temporaries of a save that was killed before its rename
    with open(path, "rb") as fh:
        return fh.read(), path


def _short(x, limit=80):
    r = repr(x)
    return r if len(r) <= limit else r[:limit] + "..."


def _count(x):
    """Whether ``x`` is a JSON non-negative integer (not a bool, a float or a string)."""
    return type(x) is int and x >= 0


def _entry(name, info):
    """(dtype, shape, begin, end) of one tensor's header entry, or _Corrupt saying what is wrong."""
    if not isinstance(info, dict):
        raise _Corrupt(f"corrupt: tensor {name!r} has a malformed entry {_short(info)} (not a JSON object)")
    for field in ("dtype", "shape", "data_offsets"):
        if field not in info:
            raise _Corrupt(f"corrupt: tensor {name!r} has no {field!r}")
    code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(code, str) or code not in _FROM_CODE:
        raise _Corrupt(f"corrupt: tensor {name!r} has unsupported dtype {_short(code)}")
    if not isinstance(shape, list) or not all(_count(s) for s in shape):
        raise _Corrupt(f"corrupt: tensor {name!r} has a malformed shape {_short(shape)} (not a list of "
                       "non-negative integers)")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_count(o) for o in offsets) or \
            offsets[1] < offsets[0]:
        raise _Corrupt(f"corrupt: tensor {name!r} has malformed data_offsets {_short(offsets)} (not two "
                       "non-negative integers [begin, end] with begin <= end)")
    dt = _FROM_CODE[code]
    size = math.prod(shape) * dt.itemsize
    if offsets[1] - offsets[0] != size:
        raise _Corrupt(f"corrupt: tensor {name!r} of shape {shape} and dtype {code} needs {size} bytes, its "
                       f"offsets span {offsets[1] - offsets[0]}")
    return dt, shape, offsets[0], offsets[1]


def _parse(buf):
    """(header dict, byte area) of a safetensors buffer, or _Corrupt saying what is wrong."""
    if buf[:4] == b"PK\x03\x04":
        raise _Corrupt("corrupt: not a safetensors file but a zip archive (a PyTorch pickle checkpoint? tritorch.load "
                       "does not unpickle, since unpickling can run code)")
    if len(buf) < 8:
        raise _Corrupt(f"truncated: {len(buf)} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", buf[:8])
    if n > _MAX_HEADER:
        raise _Corrupt(f"corrupt: header length {n} is implausible (over the 100 MB limit; not a safetensors file?)")
    if len(buf) > 8 and buf[8:9] != b"{":
        raise _Corrupt("corrupt: no JSON header after the header length (not a safetensors file?)")
    if 8 + n > len(buf):
        raise _Corrupt(f"truncated: the header needs {n} bytes but only {len(buf) - 8} follow")
    try:
        header = json.loads(buf[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _Corrupt(f"corrupt: the header is not valid JSON ({e})") from None
    except RecursionError:
        raise _Corrupt("corrupt: the header JSON is nested too deeply") from None
    if not isinstance(header, dict):
        raise _Corrupt(f"corrupt: the header is a JSON {type(header).__name__}, not an object")
    meta = header.get("__metadata__")
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        raise _Corrupt(f"corrupt: __metadata__ is not a map of strings to strings: {_short(meta)}")
    body = memoryview(buf)[8 + n:]
    spans = sorted((b, e, name) for name, (_, _, b, e) in
                   ((name, _entry(name, info)) for name, info in header.items() if name != "__metadata__"))
    end = 0
    for b, e, name in spans:                          # the tensors must tile the byte area, in order
        if b != end:
            what = "overlaps the tensor before it" if b < end else f"leaves a gap of {b - end} bytes before it"
            raise _Corrupt(f"corrupt: tensor {name!r} at data_offsets [{b}, {e}] {what} (the tensors must tile "
                           "the data area exactly)")
        end = e
    if end > len(body):
        raise _Corrupt(f"truncated: the tensors need {end} bytes of data, the file holds {len(body)}")
    if end < len(body):
        raise _Corrupt(f"corrupt: {len(body) - end} bytes follow the last tensor's data (the tensors must tile the "
                       "data area exactly)")
    crc = (meta or {}).get("tritorch.crc32")
    if crc is not None and str(zlib.crc32(body)) != crc:
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
        return _build(header, body, map_location)
    except _Corrupt as e:
        raise CorruptFileError(f"tritorch.load: file {where} is {e}") from None
    except RecursionError:
        raise CorruptFileError(f"tritorch.load: file {where} is corrupt: its structure metadata is nested too "
                               "deeply") from None


def _build(header, body, map_location):
    """The object a validated header and byte area hold; _Corrupt if its structure metadata is malformed."""
    loc = _location_map(map_location)
    cache = {}

    def tensor(name, saved_dev="cpu", flags=""):
        key = (name, saved_dev, flags)
        if key in cache:
            return cache[key]
        info = header.get(name)
        if not isinstance(info, dict) or name == "__metadata__":
            raise _Corrupt(f"corrupt: its structure names a missing tensor {_short(name)}")
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

    def bad(node, why=""):
        return _Corrupt(f"corrupt: unexpected structure node {_short(node)}{why}")

    def parsed(fn, node):
        try:
            return fn(node[1])
        except (TypeError, ValueError, RuntimeError):
            raise bad(node) from None

    def decode(node):
        if node is None or isinstance(node, (bool, int, str, float)):
            return node
        if not isinstance(node, list) or not node or not isinstance(node[0], str):
            raise bad(node)
        tag = node[0]
        if tag == "T":
            if len(node) != 4 or not all(isinstance(x, str) for x in node[1:]) or set(node[3]) - set("pgn"):
                raise bad(node)
            try:
                _device(node[2])
            except (TypeError, ValueError, RuntimeError):
                raise bad(node, " (its device is no device)") from None
            if "n" in node[3]:
                return tensor(node[1], "cpu", "").detach().cpu().numpy().copy()
            return tensor(*node[1:4])
        if len(node) != 2 or (tag in ("f", "dt", "dev") and not isinstance(node[1], str)) or \
                (tag not in ("f", "dt", "dev") and not isinstance(node[1], list)):
            raise bad(node)
        if tag == "f":
            return parsed(float, node)
        if tag == "dt":
            return parsed(D.to_dtype, node)
        if tag == "dev":
            return parsed(_device, node)
        if tag in ("d", "o"):
            if not all(isinstance(kv, list) and len(kv) == 2 for kv in node[1]):
                raise bad(node)
            items = [(decode(k), decode(v)) for k, v in node[1]]
            for k, _ in items:
                try:
                    hash(k)
                except TypeError:
                    raise bad(node, f" (unhashable key {_short(k)})") from None
            return OrderedDict(items) if tag == "o" else dict(items)
        if tag == "t":
            return tuple(decode(v) for v in node[1])
        if tag == "s":
            if not all(type(v) is int for v in node[1]):
                raise bad(node)
            return Size(node[1])
        if tag == "l":
            return [decode(v) for v in node[1]]
        raise _Corrupt(f"corrupt: unknown structure tag {_short(tag)}")

    meta = header.get("__metadata__") or {}
    structure = meta.get("tritorch.structure")
    if structure is None:                             # a plain safetensors file from another tool
        names = [k for k in header if k != "__metadata__"]
        names.sort(key=lambda k: header[k]["data_offsets"][0])
        return OrderedDict((k, tensor(k)) for k in names)
    try:
        node = json.loads(structure)
    except json.JSONDecodeError as e:
        raise _Corrupt(f"corrupt: bad structure metadata ({e})") from None
    return decode(node)


# ---- PyTorch's allow-list for weights_only unpickling: tritorch's format unpickles nothing, so the list is kept (as
# programs read it back) and changes nothing about what ``load`` accepts ---------------------------------------------
_SAFE_GLOBALS = []


def add_safe_globals(safe_globals):
    """Accepted for PyTorch programs (``[callable or (callable, name)]``): tritorch files hold no pickled objects."""
    if not isinstance(safe_globals, (list, tuple)):
        raise TypeError(f"add_safe_globals: expected a list of globals, got {type(safe_globals).__name__}")
    _SAFE_GLOBALS.extend(safe_globals)


def get_safe_globals():
    """The globals given to ``add_safe_globals`` (and active ``safe_globals`` blocks)."""
    return list(_SAFE_GLOBALS)


def clear_safe_globals():
    _SAFE_GLOBALS.clear()


class safe_globals:
    """``with safe_globals([...]):``: the globals are on the list inside the block only."""

    def __init__(self, safe_globals):
        self.safe_globals = safe_globals

    def __enter__(self):
        self._saved = list(_SAFE_GLOBALS)
        add_safe_globals(self.safe_globals)

    def __exit__(self, *exc):
        _SAFE_GLOBALS[:] = self._saved
