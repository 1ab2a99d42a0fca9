"""Dynamic axes: which baked ints of a traced graph derive from a dynamic input dimension, and how.

A trace bakes Python ints (``x.view(x.size(0), -1)`` stores the batch size). ``analyse`` compares the graph traced
on the example inputs with graphs traced on inputs whose dynamic axes are grown (one trace per axis symbol, then one
with every symbol grown further to verify): an int that changes is ``k * (product of its symbols) + c``, fitted from
the traces (``DimExpr``); one that fits no such form, a float that changes, or a graph whose structure changes is an
error. A constant tensor that changes (``generate_square_subsequent_mask(T)`` made with NumPy) must be a square
"above the diagonal" pattern (``CausalConst``) or one value everywhere (``FilledConst``, an untraced ``zeros``),
rebuilt at run time; any other is an error.
"""
import numpy as np

from .. import _creation
from .._tensor import Tensor
from ..jit.ir import Value, flatten, unflatten

__all__ = ["DimExpr", "CausalConst", "FilledConst", "grow", "analyse", "DynamicAxisError"]


class DynamicAxisError(RuntimeError):
    """The model's trace does not generalise over a requested dynamic axis."""


class DimExpr:
    """``k * prod(dims of syms) + c``: an int that follows the dynamic axes ``syms``."""
    __slots__ = ("k", "syms", "c")

    def __init__(self, k, syms, c):
        self.k, self.syms, self.c = k, tuple(syms), c

    def __repr__(self):
        return f"{self.k}*{'*'.join(self.syms)}+{self.c}"

    def is_plain(self):
        return self.k == 1 and self.c == 0 and len(self.syms) == 1


class CausalConst:
    """A square (n, n) constant equal to ``above`` where column > row and ``below`` elsewhere, n a DimExpr."""
    __slots__ = ("n", "above", "below", "dtype")

    def __init__(self, n, above, below, dtype):
        self.n, self.above, self.below, self.dtype = n, above, below, dtype


class FilledConst:
    """A constant holding one ``value`` everywhere (an untraced ``zeros``), its ``dims`` ints or DimExprs."""
    __slots__ = ("dims", "value", "dtype")

    def __init__(self, dims, value, dtype):
        self.dims, self.value, self.dtype = dims, value, dtype


def grow(args, leaf_axes, deltas):
    """``args`` (nested tuples/lists/dicts of tensors) with each dynamic axis made longer by its symbol's delta,
    repeating entries of the example (so that token ids stay valid); ``leaf_axes[i]`` maps axis -> symbol for
    leaf i."""
    leaves, struct = flatten(args, lambda x: isinstance(x, Tensor))
    out = []
    for i, t in enumerate(leaves):
        a = t.detach().cpu().numpy()
        for axis, sym in leaf_axes.get(i, {}).items():
            n = a.shape[axis]
            a = np.take(a, [j % n for j in range(n + deltas.get(sym, 0))], axis=axis)
        out.append(_creation.tensor(np.ascontiguousarray(a), dtype=t.dtype, device=t.device))
    return unflatten(struct, lambda i: out[i])


def _fit(name, vals, sizes, syms):
    """Fit ``vals[j] = k * prod(sizes[j][s] for s in S) + c``: trace 0 is the base, trace 1 + i grows symbol i, the
    last grows every symbol; returns an int (unchanged), a DimExpr, or raises DynamicAxisError."""
    base = vals[0]
    hit = [s for i, s in enumerate(syms) if vals[1 + i] != base]
    if not hit:
        if vals[-1] != base:
            raise DynamicAxisError(f"{name} follows the dynamic axes in a way the export cannot express (traced "
                                   f"values {vals} for sizes {sizes}); only k * size + c forms are supported")
        return base

    def prod(j):
        return int(np.prod([sizes[j][s] for s in hit]))
    i0 = syms.index(hit[0])
    step = prod(1 + i0) - prod(0)
    k, r = divmod(vals[1 + i0] - base, step)
    c = base - k * prod(0)
    ok = r == 0 and all(vals[1 + syms.index(s)] == k * prod(1 + syms.index(s)) + c for s in hit)
    if not ok or vals[-1] != k * prod(len(vals) - 1) + c:
        raise DynamicAxisError(f"{name} follows the dynamic axes {hit} in a way the export cannot express (traced "
                               f"values {vals} for sizes {sizes}); only k * size + c forms are supported")
    return DimExpr(k, hit, c)


def _merge(where, xs, sizes, syms):
    """One argument across traces: the base argument with changing ints replaced by DimExprs."""
    x = xs[0]
    if isinstance(x, Value):
        if any(not isinstance(y, Value) or y.name != x.name for y in xs):
            raise DynamicAxisError(f"{where}: the graph's data flow changes with the dynamic axes")
        return x
    if type(x) is int:
        if any(type(y) is not int for y in xs):
            raise DynamicAxisError(f"{where}: an argument changes type with the dynamic axes")
        return x if all(y == x for y in xs) else _fit(where, list(xs), sizes, syms)
    if isinstance(x, (tuple, list)):
        if any(not isinstance(y, type(x)) or len(y) != len(x) for y in xs):
            raise DynamicAxisError(f"{where}: an argument changes length with the dynamic axes: {xs}")
        return type(x)(_merge(where, [y[i] for y in xs], sizes, syms) for i in range(len(x)))
    if isinstance(x, dict):
        if any(not isinstance(y, dict) or y.keys() != x.keys() for y in xs):
            raise DynamicAxisError(f"{where}: keyword arguments change with the dynamic axes")
        return {k: _merge(where, [y[k] for y in xs], sizes, syms) for k in x}
    if isinstance(x, slice):
        parts = [_merge(where, [getattr(y, p) for y in xs], sizes, syms) for p in ("start", "stop", "step")]
        return slice(*parts)
    if isinstance(x, float) and any(y != x for y in xs):
        raise DynamicAxisError(f"{where}: a float argument changes with the dynamic axes ({xs})")
    if any(type(y) is not type(x) or (y != x and not (x != x and y != y)) for y in xs):
        raise DynamicAxisError(f"{where}: an argument changes with the dynamic axes ({xs})")
    return x


def _dynamic_const(name, arrays, sizes, syms):
    """A constant that changes with the dynamic axes, as a FilledConst or a CausalConst, else an error."""
    first = arrays[0].reshape(-1)[:1]
    if first.size and all(a.ndim == arrays[0].ndim and a.size and np.all(a == first[0]) for a in arrays):
        dims = [_fit(f"dim {d} of constant {name}", [a.shape[d] for a in arrays], sizes, syms)
                for d in range(arrays[0].ndim)]
        return FilledConst(dims, first[0], arrays[0].dtype)
    for a in arrays:
        if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 2:
            break
        up = np.triu(np.ones(a.shape, bool), 1)
        above, below = a[0, 1], a[0, 0]
        if not (np.all(a[up] == above) and np.all(a[~up] == below)):
            break
    else:
        n = _fit(f"the size of constant {name}", [a.shape[0] for a in arrays], sizes, syms)
        if isinstance(n, DimExpr):
            return CausalConst(n, arrays[0][0, 1], arrays[0][0, 0], arrays[0].dtype)
    raise DynamicAxisError(f"constant tensor {name} (made outside the traced ops, e.g. with NumPy or a Python "
                           "list) changes with the dynamic axes; build it from tensor ops in forward, or export "
                           "without that dynamic axis")


def analyse(graphs, sizes, syms):
    """(args per node, dyn_dims, dyn_consts, output exprs) from graphs traced at ``sizes`` (symbol -> size per
    trace): ``args`` is [(args, kwargs)] with DimExprs, ``dyn_dims`` maps a Value name to its changing dims,
    ``dyn_consts`` maps a constant param to its CausalConst, output exprs are per output per dim (int or
    DimExpr)."""
    base = graphs[0]
    for g in graphs[1:]:
        if [(n.op, n.scope) for n in g.nodes] != [(n.op, n.scope) for n in base.nodes] or \
                len(g.outputs) != len(base.outputs):
            diff = next((i for i, (a, b) in enumerate(zip(base.nodes, g.nodes)) if (a.op, a.scope) != (b.op, b.scope)),
                        min(len(base.nodes), len(g.nodes)))
            raise DynamicAxisError(f"the traced graph changes with the dynamic axes (first difference at node "
                                   f"{diff}: {base.nodes[diff] if diff < len(base.nodes) else 'end'}); the model's "
                                   "Python control flow depends on a dynamic size")
    merged = []
    for i, n in enumerate(base.nodes):
        where = f"node {i} ({n.op}, module '{n.scope}')"
        merged.append(_merge(where, [(g.nodes[i].args, g.nodes[i].kwargs) for g in graphs], sizes, syms))
    dyn_dims = {}
    for name, v in base.values.items():
        shapes = [g.values[name].shape if name in g.values else None for g in graphs]
        if any(s is None or len(s) != len(v.shape) for s in shapes):
            raise DynamicAxisError(f"value %{name} changes rank with the dynamic axes")
        changed = {d for d in range(len(v.shape)) if any(s[d] != v.shape[d] for s in shapes)}
        if changed:
            dyn_dims[name] = changed
    dyn_consts = {}
    for name in base.params:
        if not name.startswith("_constant_") or len(graphs) == 1:     # the module's own tensors do not change
            continue
        if any(name not in g.params for g in graphs):
            raise DynamicAxisError(f"constant tensor {name} exists only in some traces of the dynamic axes")
        arrays = [g.params[name].detach().cpu().numpy() for g in graphs]
        if any(a.shape != arrays[0].shape or not np.array_equal(a, arrays[0], equal_nan=True) for a in arrays):
            dyn_consts[name] = _dynamic_const(name, arrays, sizes, syms)
    out_dims = []
    for j, v in enumerate(base.outputs):
        dims = []
        for d in range(len(v.shape)):
            vals = [g.outputs[j].shape[d] for g in graphs]
            dims.append(_fit(f"dim {d} of output {j}", vals, sizes, syms))
        out_dims.append(dims)
    return merged, dyn_dims, dyn_consts, out_dims
