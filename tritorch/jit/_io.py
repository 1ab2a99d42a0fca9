"""``tritorch.jit.save`` / ``load``: one safetensors file holding the graph as JSON (format "tritorch.jit/1", in the
header's metadata, with its CRC-32) and the params as tensors. Loading parses JSON and tensors only, checks every
node against the published ops, and never imports or runs code named by the file."""
import json
import zlib

from .. import _atomic
from .. import _dtype as D
from .. import serialization as _ser
from .._device import device as _device
from ..nn.parameter import Parameter
from ._replay import _RECURRENT, TracedModule, op_table
from .ir import Const, Graph, Node, Value

__all__ = ["save", "load"]
FORMAT = "tritorch.jit/1"


def _enc(x):
    if isinstance(x, Value):
        return {"v": x.name}
    if x is None or isinstance(x, (bool, str, int)):
        return x
    if isinstance(x, float):
        return {"f": repr(x)}
    if isinstance(x, tuple):
        return {"t": [_enc(a) for a in x]}
    if isinstance(x, list):
        return [_enc(a) for a in x]
    if isinstance(x, dict):
        return {"d": [[_enc(k), _enc(v)] for k, v in x.items()]}
    if isinstance(x, slice):
        return {"s": [_enc(x.start), _enc(x.stop), _enc(x.step)]}
    if x is Ellipsis:
        return {"e": 0}
    if isinstance(x, D.dtype):
        return {"dt": x.name}
    if isinstance(x, _device):
        return {"dev": str(x)}
    if isinstance(x, Const):
        return {"c": _enc(x.value)}
    raise TypeError(f"tritorch.jit.save: the graph holds a {type(x).__name__} ({x!r:.60}), which cannot be saved")


def _dec(x, values):
    if x is None or isinstance(x, (bool, str, int)):
        return x
    if isinstance(x, list):
        return [_dec(a, values) for a in x]
    if not isinstance(x, dict) or len(x) != 1:
        raise ValueError(f"malformed graph entry {x!r:.80}")
    (tag, a), = x.items()
    if tag == "v":
        if a not in values:
            raise ValueError(f"a node reads value {a!r:.60} before it is defined")
        return values[a]
    if tag == "f":
        return float(a)
    if tag == "t":
        return tuple(_dec(b, values) for b in a)
    if tag == "d":
        return {_dec(k, values): _dec(v, values) for k, v in a}
    if tag == "s":
        return slice(*(_dec(b, values) for b in a))
    if tag == "e":
        return Ellipsis
    if tag == "dt":
        return D.to_dtype(a)
    if tag == "dev":
        return _device(a)
    if tag == "c":
        return Const(_dec(a, values))
    raise ValueError(f"unknown graph tag {tag!r:.40}")


def _value(v):
    return [v.name, list(v.shape), v.dtype.name, v.kind]


def save(m, f):
    """Write a TracedModule (or a ScriptModule's latest capture) to ``f`` (a path, written atomically, or a binary
    file object)."""
    if hasattr(m, "_cache") and not isinstance(m, TracedModule):
        if not m._cache:
            raise RuntimeError("tritorch.jit.save: the scripted module has not run yet (no graph captured)")
        m = next(reversed(m._cache.values()))
    if not isinstance(m, TracedModule):
        raise TypeError(f"tritorch.jit.save: expected a traced or scripted module, got {type(m).__name__}")
    g = m.graph
    doc = {"format": FORMAT, "name": m._get_name(), "training": m.training,
           "device": str(g.device) if g.device is not None else None,
           "inputs": [_value(v) for v in g.inputs], "in_struct": _enc(g.in_struct),
           "params": [_value(g.values[n]) + [isinstance(t, Parameter) and t.requires_grad,
                                             n in m.state_dict()] for n, t in g.params.items()],
           "nodes": [{"op": n.op, "args": _enc(n.args), "kwargs": _enc(n.kwargs),
                      "outputs": [_value(v) for v in n.outputs], "out_struct": _enc(n.out_struct),
                      "scope": n.scope, "module_type": n.module_type,
                      "aliases": [[i, s] for i, s in n.aliases.items()], "draws": n.draws} for n in g.nodes],
           "out_struct": _enc(g.out_struct)}
    text = json.dumps(doc, separators=(",", ":"), allow_nan=False)
    data = _ser._serialize({n: t.detach() for n, t in g.params.items()},
                           {"tritorch.jit.graph": text, "tritorch.jit.crc32": str(zlib.crc32(text.encode()))})
    if hasattr(f, "write"):
        f.write(data)
    else:
        _atomic.write(f, data)


def load(f, map_location=None, _extra_files=None):
    """Read a program that ``save`` wrote: a TracedModule, runnable without the model's class."""
    buf, where = _ser._read_all(f)
    try:
        header, body = _ser._parse(bytes(buf))
        meta = header.get("__metadata__") or {}
        text = meta.get("tritorch.jit.graph")
        if text is None:
            raise _ser._Corrupt("not a tritorch.jit program (no graph; a tritorch.save checkpoint?)")
        if meta.get("tritorch.jit.crc32") != str(zlib.crc32(text.encode())):
            raise _ser._Corrupt("corrupt: the graph does not match its checksum")
        tensors = _ser._build(header, body, map_location if map_location is not None else None)
        return _program(json.loads(text), tensors, where)
    except _ser._Corrupt as e:
        raise _ser.CorruptFileError(f"tritorch.jit.load: file {where} is {e}") from None
    except (ValueError, TypeError, KeyError, IndexError) as e:
        raise _ser.CorruptFileError(f"tritorch.jit.load: file {where} holds a malformed graph ({e})") from None


def _program(doc, tensors, where):
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"unsupported program format {doc.get('format') if isinstance(doc, dict) else doc!r:.40}")
    g = Graph()
    table = op_table()
    g.device = _device(doc["device"]) if doc["device"] else None

    def value(entry, kind=None):
        name, shape, dt, k = entry
        if name in g.values:
            raise ValueError(f"value {name!r:.60} is defined twice")
        if kind and k != kind:
            raise ValueError(f"value {name!r:.60} has kind {k!r:.20}, expected {kind}")
        return g.add_value(str(name), tuple(int(s) for s in shape), D.to_dtype(dt), k)
    g.inputs = [value(e, "input") for e in doc["inputs"]]
    g.in_struct = _dec(doc["in_struct"], {})
    persistent = set()
    for entry in doc["params"]:
        v = value(entry[:4], "param")
        t = tensors[v.name]
        if tuple(t.shape) != v.shape or t.dtype != v.dtype:
            raise ValueError(f"param {v.name!r:.60} does not match its tensor")
        g.params[v.name] = Parameter(t, requires_grad=bool(entry[4])) if entry[4] else t
        if entry[5]:
            persistent.add(v.name)
    for n in doc["nodes"]:
        if n["op"] not in table and n["op"] not in _RECURRENT:
            raise ValueError(f"node op {n['op']!r:.60} is no published op")
        args, kwargs = _dec(n["args"], g.values), _dec(n["kwargs"], g.values)
        outs = [value(e, "node") for e in n["outputs"]]
        g.nodes.append(Node(n["op"], args, kwargs, outs, _dec(n["out_struct"], {}), n["scope"], n["module_type"],
                            {int(i): s for i, s in n["aliases"]}, n.get("draws") is True))
    g.out_struct = _dec(doc["out_struct"], g.values)
    g.outputs = [v for v in _flat_values(g.out_struct)]
    m = TracedModule(g, str(doc["name"]), persistent=persistent)
    m.training = bool(doc["training"])
    return m


def _flat_values(x):
    if isinstance(x, Value):
        return [x]
    if isinstance(x, (tuple, list)):
        return [v for a in x for v in _flat_values(a)]
    if isinstance(x, dict):
        return [v for a in x.values() for v in _flat_values(a)]
    return []


def _save_method(self, f):
    """Write this program to ``f`` (``tritorch.jit.save``)."""
    save(self, f)


TracedModule.save = _save_method      # defined here: saving needs the file format, which needs TracedModule
