"""``export``: trace the model in eval mode, find what the dynamic axes change (``_dynamic.py``), convert each node
with the op table (``_ops.py``) and write the ModelProto (atomically to a path, or to a file object)."""
import os

import numpy as np

from .. import _atomic
from .._tensor import Tensor
from .._version import __version__
from ..autograd.grad_mode import no_grad
from ..jit import trace
from ..jit.ir import Value, flatten
from ._builder import Builder, Sym, Unsupported, onnx_dtype
from ._dynamic import CausalConst, DimExpr, DynamicAxisError, FilledConst, analyse, grow
from . import _layers  # noqa: F401  (registers the layer converters in OPS)
from ._ops import OPS, VIEW_OPS

__all__ = ["export_model", "UnsupportedOperatorError", "DEFAULT_OPSET", "OPSETS"]

DEFAULT_OPSET = 17
OPSETS = range(13, 22)
"""Opsets the mappings are written for: 13 (axes as inputs of Squeeze/Unsqueeze/ReduceSum) to 21."""


class UnsupportedOperatorError(RuntimeError):
    """An op of the traced graph has no ONNX mapping (or not with these arguments); names the op and its module."""


def _where(node):
    return f"module '{node.scope}' ({node.module_type})" if node.scope else \
        f"the top-level forward ({node.module_type})" if node.module_type else "the top-level function"


def _normalize_axes(dynamic_axes):
    """{tensor name: {axis: symbol}} from PyTorch's forms (a dict per name, or a list of axes)."""
    out = {}
    for name, axes in (dynamic_axes or {}).items():
        if isinstance(axes, dict):
            out[name] = {int(a): str(s) for a, s in axes.items()}
        elif isinstance(axes, (list, tuple)):
            out[name] = {int(a): f"{name}_dynamic_axes_{i + 1}" for i, a in enumerate(axes)}
        else:
            raise TypeError(f"dynamic_axes[{name!r}] must be a dict {{axis: name}} or a list of axes, got "
                            f"{type(axes).__name__}")
    return out


def _trace(model, args, kwargs):
    traced = trace(model, args, check_trace=False, strict=False, example_kwarg_inputs=kwargs or None)
    return traced.graph


def _split_args(args):
    if isinstance(args, Tensor):
        return (args,), {}
    if not isinstance(args, (tuple, list)):
        raise TypeError(f"args must be a tensor or a tuple of model inputs, got {type(args).__name__}")
    args = tuple(args)
    if args and isinstance(args[-1], dict):         # PyTorch: a trailing dict holds keyword inputs
        return args[:-1], dict(args[-1])
    return args, {}


def _sizes(leaves, leaf_axes, syms, delta):
    """symbol -> size in a trace whose inputs grow each symbol by ``delta[sym]``."""
    sizes = {}
    for i, axes in leaf_axes.items():
        for axis, s in axes.items():
            n = leaves[i].shape[axis] + delta.get(s, 0)
            if sizes.setdefault(s, n) != n:
                raise ValueError(f"dynamic axis {s!r} has different sizes in the example inputs")
    return sizes


def export_model(onnx, model, args, f, input_names, output_names, dynamic_axes, opset_version):
    """The ModelProto of ``model`` run on ``args`` (see ``tritorch.onnx.export``); written to ``f`` unless None."""
    opset = DEFAULT_OPSET if opset_version is None else int(opset_version)
    if opset not in OPSETS:
        raise ValueError(f"opset_version {opset} is not supported: use {OPSETS.start}..{OPSETS.stop - 1}")
    pos, kw = _split_args(args)
    leaves = flatten((pos, kw) if kw else pos, lambda x: isinstance(x, Tensor))[0]
    in_names = list(input_names or []) + [f"input_{i}" for i in range(len(input_names or []), len(leaves))]
    if len(in_names) > len(leaves):
        raise ValueError(f"{len(in_names)} input_names for {len(leaves)} input tensors")
    axes = _normalize_axes(dynamic_axes)
    leaf_axes = {i: axes[n] for i, n in enumerate(in_names) if n in axes}
    for i, a in leaf_axes.items():
        for axis in a:
            if not -leaves[i].ndim <= axis < leaves[i].ndim:
                raise ValueError(f"dynamic axis {axis} of input {in_names[i]!r} is out of range for its "
                                 f"{leaves[i].ndim} dims")
    leaf_axes = {i: {axis % leaves[i].ndim: s for axis, s in a.items()} for i, a in leaf_axes.items()}
    syms = list(dict.fromkeys(s for a in leaf_axes.values() for s in a.values()))
    modes = [(m, m.training) for m in model.modules()] if hasattr(model, "modules") else []
    if modes:
        model.eval()
    try:
        with no_grad():
            graphs = [_trace(model, pos, kw)]
            sizes = [_sizes(leaves, leaf_axes, syms, {})]
            deltas = [{s: 1} for s in syms] + ([{s: 2 for s in syms}] if syms else [])
            for d in deltas:
                sizes.append(_sizes(leaves, leaf_axes, syms, d))
                g_pos, g_kw = grow((pos, kw), leaf_axes, d)
                try:
                    graphs.append(_trace(model, g_pos, g_kw))
                except Exception as e:
                    raise DynamicAxisError(f"tracing again with the dynamic axes at {sizes[-1]} (to find the sizes "
                                           f"that follow them) failed: {type(e).__name__}: {e}; give example inputs "
                                           "whose dynamic axes can grow by 2") from e
    finally:
        for m, training in modes:           # each module's own mode, as it was
            m.training = training
    merged, dyn_dims, dyn_consts, out_dims = analyse(graphs, sizes, syms)
    proto = _build(onnx, graphs[0], merged, dyn_dims, dyn_consts, out_dims, opset, in_names, output_names, axes,
                   leaf_axes,
                   type(model).__name__ if modes else getattr(model, "__name__", "function"))
    if f is not None:
        data = proto.SerializeToString()
        if isinstance(f, (str, os.PathLike)):
            _atomic.write(f, data)
        else:
            f.write(data)
    return proto


class _Convert:
    """Walks the traced graph, resolving baked dims to run-time Syms and calling each node's converter."""

    def __init__(self, b, sources):
        self.b, self.sources, self.cache = b, sources, {}
        self.family, self.stale = {}, set()

    def sym(self, s):
        if s not in self.cache:
            name, axis = self.sources[s]
            self.cache[s] = Sym(self.b, self.b.op("Gather", [self.b.shape_of(name), self.b.i64([axis])], axis=0))
        return self.cache[s]

    def expr(self, e):
        key = ("expr", repr(e))
        if key not in self.cache:
            prod = self.sym(e.syms[0])
            for s in e.syms[1:]:
                prod = prod * self.sym(s)
            self.cache[key] = prod * e.k + e.c
        return self.cache[key]

    def resolve(self, x):
        if isinstance(x, DimExpr):
            return self.expr(x)
        if isinstance(x, tuple) and not hasattr(x, "_fields"):
            return tuple(self.resolve(a) for a in x)
        if isinstance(x, list):
            return [self.resolve(a) for a in x]
        if isinstance(x, dict):
            return {k: self.resolve(v) for k, v in x.items()}
        if isinstance(x, slice):
            return slice(self.resolve(x.start), self.resolve(x.stop), self.resolve(x.step))
        return x

    def causal(self, name, c):
        n = self.b.scalar_int(self.expr(c.n))
        zero, one = self.b.const(np.array(0, np.int64)), self.b.const(np.array(1, np.int64))
        r = self.b.op("Range", [zero, n, one])
        above = self.b.op("Greater", [self.b.unsqueeze(r, [0]), self.b.unsqueeze(r, [1])])
        hi, lo = self.b.const(np.array(c.above, c.dtype)), self.b.const(np.array(c.below, c.dtype))
        self.b.names[name] = self.b.op("Where", [above, hi, lo], hint=name)

    def filled(self, name, c):
        value = self.b.onnx.numpy_helper.from_array(np.array([c.value], c.dtype))
        self.b.names[name] = self.b.op("ConstantOfShape", [self.b.ints(self.resolve(list(c.dims)))], value=value,
                                       hint=name)

    def check_views(self, node, values):
        """In-place writes are converted as pure ops: refuse one whose target shares memory with a tensor read
        later (a view or the view's base), where the pure form would give that tensor the wrong contents."""
        for v in values:
            if v.name in self.stale:
                raise Unsupported(f"it reads %{v.name} after an in-place write into a tensor sharing its memory (a "
                                  "view or its base); write it without the in-place op")
        vals = [v for v in values if isinstance(v, Value)]
        if node.op in VIEW_OPS and vals:
            fam = self.family.setdefault(vals[0].name, {vals[0].name})
            for o in node.outputs:
                fam.add(o.name)
                self.family[o.name] = fam
        for i, src in node.aliases.items():
            fam = self.family.get(src)
            if fam is not None:
                self.stale |= fam - {src}
                fam.add(node.outputs[i].name)
                self.family[node.outputs[i].name] = fam


def _values_in(x, acc):
    if isinstance(x, Value):
        acc.append(x)
    elif isinstance(x, (tuple, list)):
        for a in x:
            _values_in(a, acc)
    elif isinstance(x, dict):
        for a in x.values():
            _values_in(a, acc)
    return acc


def _base_op(op):
    """The pure op an in-place op converts as (``add_`` -> ``add``, ``__iadd__`` -> ``__add__``)."""
    if op.startswith("__i") and op.endswith("__") and "__" + op[3:] in OPS:
        return "__" + op[3:]
    if op.endswith("_") and not op.endswith("__") and op[:-1] in OPS:
        return op[:-1]
    return op


def _value_info(onnx, name, dtype, dims):
    return onnx.helper.make_tensor_value_info(name, onnx_dtype(onnx, dtype), dims)


def _build(onnx, graph, merged, dyn_dims, dyn_consts, out_dims, opset, in_names, output_names, axes, leaf_axes,
           model_name):
    b = Builder(onnx, opset, graph.params, dyn_dims)
    inputs, sources = [], {}
    for i, (v, name) in enumerate(zip(graph.inputs, in_names)):
        b.names[v.name] = name
        dims = list(v.shape)
        for axis, s in leaf_axes.get(i, {}).items():
            dims[axis] = s
            sources.setdefault(s, (name, axis))
        try:
            inputs.append(_value_info(onnx, name, v.dtype, dims))
        except Unsupported as e:
            raise UnsupportedOperatorError(f"tritorch.onnx.export: input {name!r}: {e}") from None
    conv = _Convert(b, sources)
    for pname, c in dyn_consts.items():
        if isinstance(c, CausalConst):
            conv.causal(pname, c)
        elif isinstance(c, FilledConst):
            conv.filled(pname, c)
    for node, (args, kwargs) in zip(graph.nodes, merged):
        b.scope = node.scope
        op = _base_op(node.op)
        fn = OPS.get(op)
        if fn is None:
            raise UnsupportedOperatorError(f"tritorch.onnx.export: no ONNX mapping for op '{node.op}', called by "
                                           f"{_where(node)}")
        try:
            conv.check_views(node, _values_in((args, kwargs), []))
            outs = fn(b, node, *conv.resolve(args), **conv.resolve(kwargs))
        except Unsupported as e:
            raise UnsupportedOperatorError(f"tritorch.onnx.export: op '{node.op}', called by {_where(node)}, cannot "
                                           f"be exported: {e}") from None
        except TypeError as e:
            raise UnsupportedOperatorError(f"tritorch.onnx.export: op '{node.op}', called by {_where(node)}, has "
                                           f"arguments the ONNX mapping does not take: {e}") from None
        outs = [outs] if isinstance(outs, str) else list(outs)
        if len(outs) != len(node.outputs):
            raise UnsupportedOperatorError(f"tritorch.onnx.export: op '{node.op}', called by {_where(node)}: the "
                                           f"mapping gave {len(outs)} outputs for {len(node.outputs)}")
        for v, o in zip(node.outputs, outs):
            b.names[v.name] = o
    b.scope = ""
    out_names = list(output_names or []) + [f"output_{i}" for i in range(len(output_names or []),
                                                                          len(graph.outputs))]
    if len(out_names) > len(graph.outputs):
        raise ValueError(f"{len(out_names)} output_names for {len(graph.outputs)} outputs")
    unknown = sorted(set(axes) - set(in_names) - set(out_names))
    if unknown:
        raise ValueError(f"dynamic_axes names {unknown}, which are neither input_names {in_names} nor output_names "
                         f"{out_names}")
    outputs = []
    for j, (v, name) in enumerate(zip(graph.outputs, out_names)):
        if v.name in conv.stale:
            raise UnsupportedOperatorError(f"tritorch.onnx.export: output {name!r} is a tensor written in place "
                                           "through a view; write it without the in-place op")
        b.nodes.append(onnx.helper.make_node("Identity", [b.name(v)], [name], name=f"/output_{j}"))
        dims = []
        for d, e in enumerate(out_dims[j]):
            if d in axes.get(name, {}):
                dims.append(axes[name][d])
            elif isinstance(e, DimExpr):
                dims.append(e.syms[0] if e.is_plain() else f"{name}_dim_{d}")
            else:
                dims.append(e)
        outputs.append(_value_info(onnx, name, v.dtype, dims))
    g = onnx.helper.make_graph(b.nodes, f"tritorch_{model_name}", inputs, outputs, initializer=b.initializers)
    opsets = [onnx.helper.make_opsetid("", opset)]
    proto = onnx.helper.make_model(g, opset_imports=opsets, producer_name="tritorch", producer_version=__version__)
    proto.ir_version = onnx.helper.find_min_ir_version_for(opsets)
    onnx.checker.check_model(proto)
    return proto
