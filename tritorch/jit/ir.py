"""The graph IR that ``tritorch.jit`` captures and replays (and ``tritorch.onnx`` exports): docs/graph-ir.md.

A ``Graph`` is a straight-line program: its ``inputs`` (flattened from the example inputs), the ``params`` it reads
(state_dict name -> tensor), and ``nodes`` in execution order, each one published op call (the name the op modes of
tritorch/_modes.py see) whose tensor arguments are ``Value``s. Every tensor has exactly one ``Value`` per version
(an in-place op's result is a new Value), so a node's inputs are always Values defined before it.
"""
from .._tensor import Tensor

__all__ = ["Value", "Node", "Graph", "Const", "flatten", "unflatten"]


class Value:
    """One tensor of the graph: ``name`` (unique in the graph), ``shape`` (tuple of ints), ``dtype``, ``kind``
    ("input", "param" or "node")."""
    __slots__ = ("name", "shape", "dtype", "kind")

    def __init__(self, name, shape, dtype, kind):
        self.name, self.shape, self.dtype, self.kind = name, tuple(shape), dtype, kind

    def __repr__(self):
        return f"%{self.name}"


class Const:
    """A non-tensor leaf (other than None) of an op's result, in ``Node.out_struct`` (where plain ints are output
    indices): the value the capture saw, baked in."""
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return f"Const({self.value!r})"

    def __eq__(self, other):
        return isinstance(other, Const) and type(other.value) is type(self.value) and other.value == self.value

    def __hash__(self):
        return hash(("Const", repr(self.value)))


class Node:
    """One op call: ``op`` (its published name, or "module:LSTM"/"module:GRU"/"module:RNN" for a recurrent layer
    captured whole), ``args`` / ``kwargs`` as the call passed them with each tensor replaced by its Value,
    ``outputs`` (Values, in the order the result yields them flattened), ``out_struct`` (the result rebuilt from
    output indices: an int, nested tuples/lists of ints, None and Const leaves), ``scope`` (qualified name of the
    innermost module whose forward made the call, "" at top level), ``module_type`` (its class name or ""),
    ``aliases`` ({output index: input Value name}: an output that is an input updated in place, which the replay
    binds to the same tensor), ``draws`` (the call took random numbers from a generator: it runs even if nothing
    reads its result, so that the numbers every later call draws are eager's)."""
    __slots__ = ("op", "args", "kwargs", "outputs", "out_struct", "scope", "module_type", "aliases", "draws")

    def __init__(self, op, args, kwargs, outputs, out_struct, scope="", module_type="", aliases=None, draws=False):
        self.op, self.args, self.kwargs = op, tuple(args), dict(kwargs)
        self.outputs, self.out_struct = list(outputs), out_struct
        self.scope, self.module_type, self.aliases = scope, module_type, dict(aliases or {})
        self.draws = draws

    def __repr__(self):
        outs = ", ".join(f"%{v.name}: {_type(v)}" for v in self.outputs) or "()"
        call = ", ".join([_fmt(a) for a in self.args] + [f"{k}={_fmt(v)}" for k, v in self.kwargs.items()])
        where = f"  # {self.scope} ({self.module_type})" if self.scope or self.module_type else ""
        return f"{outs} = {self.op}({call}){where}"


class Graph:
    """A captured forward: ``inputs`` (input Values), ``in_struct`` (the example inputs' nesting: tuples, lists and
    dicts of input indices), ``nodes``, ``outputs`` (the result's Values, flattened) and ``out_struct`` (the result:
    nested tuples/lists/dicts of Values and plain Python constants), ``params`` (name -> tensor, each with a Value of
    kind "param" under the same name), ``values`` (name -> Value), ``device`` (the device it was captured on)."""

    def __init__(self):
        self.inputs, self.in_struct, self.nodes = [], (), []
        self.outputs, self.out_struct = [], None
        self.params, self.values = {}, {}
        self.device = None

    def add_value(self, name, tensor_or_shape, dtype, kind):
        shape = tensor_or_shape.shape if isinstance(tensor_or_shape, Tensor) else tensor_or_shape
        v = Value(name, shape, dtype, kind)
        self.values[name] = v
        return v

    def __str__(self):
        ins = ", ".join(f"%{v.name}: {_type(v)}" for v in self.inputs)
        lines = [f"graph({ins}):"]
        lines += [f"  %{name}: {_type(self.values[name])}  # param" for name in self.params]
        lines += [f"  {n!r}" for n in self.nodes]
        lines.append(f"  return {_fmt(self.out_struct)}")
        return "\n".join(lines)

    __repr__ = __str__


def _type(v):
    return f"{v.dtype.name}{list(v.shape)}"


def _fmt(x):
    if isinstance(x, tuple):
        return "(" + ", ".join(_fmt(a) for a in x) + ("," if len(x) == 1 else "") + ")"
    if isinstance(x, list):
        return "[" + ", ".join(_fmt(a) for a in x) + "]"
    if isinstance(x, dict):
        return "{" + ", ".join(f"{k!r}: {_fmt(v)}" for k, v in x.items()) + "}"
    if isinstance(x, slice):
        return ":".join("" if p is None else _fmt(p) for p in (x.start, x.stop, x.step)).rstrip(":") or ":"
    if x is Ellipsis:
        return "..."
    return repr(x)


def flatten(obj, leaf):
    """(leaves, struct) of nested tuples/lists/dicts: each object for which ``leaf(obj)`` holds is replaced by its
    index in ``leaves``; a namedtuple counts as a tuple. Other objects stay in ``struct`` as they are."""
    leaves = []

    def walk(x):
        if leaf(x):
            leaves.append(x)
            return len(leaves) - 1
        if isinstance(x, tuple):
            return tuple(walk(a) for a in x)
        if isinstance(x, list):
            return [walk(a) for a in x]
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        return x
    return leaves, walk(obj)


def unflatten(struct, get):
    """The object ``struct`` describes, with each int leaf ``i`` replaced by ``get(i)`` and each Const by its
    value."""
    if type(struct) is int:
        return get(struct)
    if isinstance(struct, tuple):
        return tuple(unflatten(a, get) for a in struct)
    if isinstance(struct, list):
        return [unflatten(a, get) for a in struct]
    if isinstance(struct, dict):
        return {k: unflatten(v, get) for k, v in struct.items()}
    if isinstance(struct, Const):
        return struct.value
    return struct
