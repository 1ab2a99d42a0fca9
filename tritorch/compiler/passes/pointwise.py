"""Pointwise fusion: which nodes a generated kernel computes (``pointwise_spec``, ``reduction_spec``) and the passes
that group them.

- ``rematerialize``: an elementwise node read by several elementwise nodes (or reductions that take a prologue) is
  computed again for each read, so that each copy joins its reader's fused tree (fewer launches, no intermediate
  stored).
- ``fuse_pointwise``: groups elementwise nodes into trees whose intermediates have one reader, the tree's root; each
  group of two or more becomes one node ``fused:<hash>:<n>`` that a generated Triton kernel runs (``codegen.py``).
  Operands may broadcast (a bias, a per-row scale, a 0-dim tensor): the kernel computes every member at the
  root's shape and reads each input through its strides. A tree read only by a ``sum``/``mean`` over its trailing
  or leading dims (``(x * x).mean(-1, keepdim=True)``, a loss's ``(y - t).pow(2).mean()``, a bias gradient) or by
  a last-dim softmax becomes that reduction's prologue: one generated kernel, the tree's result never stored. In a
  derived backward program, independent trees of one shape run side by side in one kernel with a result each.
"""
import math

from ... import _dtype as D
from ...jit.ir import Node, Value
from .graph import copy_graph as _copy, reads as _reads, uses as _uses

__all__ = ["fuse_pointwise", "rematerialize", "pointwise_spec", "reduction_spec", "Param", "FUSIBLE_DTYPES",
           "scalar_ok"]

# parameterless unary ops: published name -> row of kernels/elementwise.py's table
_UNARY = {name: name for name in ("neg", "abs", "exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "sin", "cos", "tanh",
                                   "sigmoid", "relu", "square")}
_UNARY.update(__neg__="neg", __abs__="abs")
# binary ops: published name -> (row, operands swapped)
_BINARY = {"add": ("add", False), "__add__": ("add", False), "__radd__": ("add", True),
           "sub": ("sub", False), "__sub__": ("sub", False), "__rsub__": ("sub", True),
           "mul": ("mul", False), "__mul__": ("mul", False), "__rmul__": ("mul", True),
           "div": ("div", False), "__truediv__": ("div", False), "__rtruediv__": ("div", True),
           "maximum": ("maximum", False), "minimum": ("minimum", False)}
# comparisons (bool results): published name -> row
_COMPARE = {f"{p}{op}{q}": op for op in ("lt", "le", "gt", "ge", "eq", "ne") for p, q in (("", ""), ("__", "__"))}
# activations with a keyword: published name -> (its parameter's name and default; None: gelu's ``approximate``)
_ACTIVATIONS = {"silu": None, "gelu": ("approximate", "none"), "leaky_relu": ("negative_slope", 0.01),
                "elu": ("alpha", 1.0)}
FUSIBLE_DTYPES = (D.float32, D.float16)
"""The dtypes fused kernels compute (float32 math, as the eager kernels do for both); bf16 runs eagerly: the
interpreter has no bf16 arithmetic, float64 scalars would be rounded to float32 as kernel arguments."""


def scalar_ok(a):
    """A Python number a kernel argument carries exactly (-0.0 does not survive: the eager op keeps its sign)."""
    return not isinstance(a, bool) and isinstance(a, (int, float)) and not (a == 0 and math.copysign(1.0, a) < 0)


class Param(float):
    """A unary row's parameter (leaky_relu's slope, elu's alpha) among a member's operands: a Python number the
    kernel takes as the row's ``a`` (not an operand of a binary row)."""


def _activation(node):
    """``(row, operands)`` of a silu, gelu, leaky_relu or elu call (not in place), else None."""
    if node.op not in _ACTIVATIONS:
        return None
    name, default = _ACTIVATIONS[node.op] or ("", None)
    bound = dict(zip(("input", name, "inplace") if name else ("input", "inplace"), node.args))
    if any(k in bound for k in node.kwargs) or set(node.kwargs) - {name, "inplace"}:
        return None
    bound.update(node.kwargs)
    x, param = bound.get("input"), bound.get(name, default)
    if not isinstance(x, Value) or bound.get("inplace", False) is not False:
        return None
    if node.op == "gelu":
        return ({"none": "gelu", "tanh": "gelu_tanh"}[param], [x]) if param in ("none", "tanh") else None
    if node.op == "silu":
        return "silu", [x]
    return (node.op, [x, Param(param)]) if scalar_ok(param) else None


def _broadcasts_to(shape, target):
    """Whether ``shape`` broadcasts to ``target`` (right-aligned, each dim equal or 1)."""
    lead = len(target) - len(shape)
    return lead >= 0 and all(s in (1, t) for s, t in zip(shape, target[lead:]))


def pointwise_spec(node):
    """``(row, operands, dtype)`` where ``node`` is an elementwise op a fused kernel can compute, else None.
    ``operands``: Values that broadcast to the output's shape, or Python numbers; ``dtype``: the floating type it
    computes in (None for logical_not, which takes any). Comparisons and logical_not give bool values, used inside a
    group."""
    if node.aliases or len(node.outputs) != 1 or node.out_struct != 0:
        return None
    out = node.outputs[0]
    args = list(node.args)
    act = _activation(node)
    if act is not None:
        row, ops = act
        floats, result = ops[:1], out.dtype
    elif node.kwargs:
        return None
    elif node.op in _UNARY and len(args) == 1:
        row, ops, floats, result = _UNARY[node.op], args, args, out.dtype
    elif node.op in ("pow", "__pow__") and len(args) == 2 and type(args[1]) in (int, float) and args[1] == 2:
        row, ops, floats, result = "square", args[:1], args[:1], out.dtype        # as the eager op runs x ** 2
    elif node.op in ("pow", "__pow__") and len(args) == 2 and type(args[1]) in (int, float) and \
            isinstance(args[0], Value) and args[0].dtype.is_floating_point and scalar_ok(args[1]):
        row, ops, floats, result = "pow_scalar", [args[0], Param(args[1])], args[:1], out.dtype   # x ** a, as eager
    elif node.op in _BINARY and len(args) == 2:
        row, swap = _BINARY[node.op]
        ops = args[::-1] if swap else args
        floats, result = ops, out.dtype
    elif node.op in _COMPARE and len(args) == 2:
        row, ops, floats, result = _COMPARE[node.op], args, args, None
    elif node.op == "logical_not" and len(args) == 1:
        row, ops, floats, result = "logical_not", args, [], None
    elif node.op == "where" and len(args) == 3 and isinstance(args[0], Value) and args[0].dtype == D.bool_:
        row, ops, floats, result = "where", args, args[1:], out.dtype
    elif node.op == "masked_fill" and len(args) == 3 and isinstance(args[1], Value) and args[1].dtype == D.bool_ \
            and not isinstance(args[2], Value):
        row, ops, floats, result = "where", [args[1], args[2], args[0]], args[:1], out.dtype   # where(mask, v, x)
    else:
        return None
    if result is not None and result not in FUSIBLE_DTYPES or result is None and out.dtype != D.bool_:
        return None
    dtypes = {a.dtype for a in floats if isinstance(a, Value)} | ({result} if result is not None else set())
    if len(dtypes) > 1 or any(d not in FUSIBLE_DTYPES for d in dtypes):
        return None
    for a in ops:
        if isinstance(a, Value):
            if not _broadcasts_to(a.shape, out.shape):
                return None
        elif not scalar_ok(a):
            return None
    if not any(isinstance(a, Value) for a in ops):
        return None
    return row, ops, next(iter(dtypes), None)


def reduction_spec(node):
    """``(input, kind, k, keepdim, leading)`` where ``node`` is a ``sum``/``mean`` (kind; no ``dtype=``) over the
    last ``k >= 1`` dims of its input (``dim=None``: all of them) or over its first ``k`` (``leading``: the gradient
    of a broadcast operand, ``sum_to``), or a ``softmax``/``log_softmax`` over the last dim (k 1), else None."""
    if node.op not in ("sum", "mean", "softmax", "log_softmax") or node.aliases or len(node.outputs) != 1 or \
            node.out_struct != 0:
        return None
    names = ("input", "dim", "keepdim") if node.op in ("sum", "mean") else ("input", "dim")
    bound = dict(zip(names, node.args))
    if len(node.args) > len(names) or any(k in bound or k not in names + ("dtype",) for k in node.kwargs):
        return None
    bound.update(node.kwargs)
    x, dim, keepdim = bound.get("input"), bound.get("dim"), bound.get("keepdim", False)
    if not isinstance(x, Value) or bound.get("dtype") is not None or not isinstance(keepdim, bool) or not x.shape:
        return None
    nd = len(x.shape)
    if node.op not in ("sum", "mean"):
        return (x, node.op, 1, False, False) if isinstance(dim, int) and dim in (-1, nd - 1) else None
    dims = list(range(nd)) if dim is None else [dim] if isinstance(dim, int) else list(dim)
    if not dims or not all(isinstance(d, int) and -nd <= d < nd for d in dims):
        return None
    dims = sorted(d % nd for d in dims)
    if dims not in (list(range(nd - len(dims), nd)), list(range(len(dims)))):
        return None
    return x, node.op, len(dims), keepdim, dims[-1] != nd - 1


def rematerialize(graph, max_readers=8):
    """The graph with each elementwise node that several elementwise (or fusible reduction) reads use, and that the
    graph does not return, computed again for each read, so every read ends inside its reader's fused tree:
    recomputing pointwise math in registers costs less than storing the value and launching its kernel (a derived
    backward reads a recomputed forward value three to six times). At most ``max_readers`` reads per node, and at
    most ``len(graph.nodes) + 16`` copies in all."""
    outputs = {v.name for v in graph.outputs}
    nodes = list(graph.nodes)
    values = dict(graph.values)
    budget = len(nodes) + 16
    for i in range(len(nodes) - 1, -1, -1):
        node = nodes[i]
        spec = pointwise_spec(node)
        if spec is None or node.outputs[0].name in outputs:
            continue
        name = node.outputs[0].name
        reads = [(j, k) for j in range(i + 1, len(nodes)) for k, a in enumerate(nodes[j].args)
                 if isinstance(a, Value) and a.name == name]
        readers = {j for j, _ in reads} | {j for j in range(i + 1, len(nodes)) if name in _reads(nodes[j].kwargs)}
        if not 1 < len(reads) <= max_readers or len(reads) - 1 > budget or not all(
                (pointwise_spec(nodes[j]) or (0, 0, False))[2] in (None, spec[2]) or reduction_spec(nodes[j])
                for j in readers):
            continue
        budget -= len(reads) - 1
        out = node.outputs[0]
        clones = []
        for n, (j, k) in enumerate(reads[1:], 1):
            v = Value(f"{name}_r{n}", out.shape, out.dtype, out.kind)
            values[v.name] = v
            clones.append(Node(node.op, node.args, node.kwargs, [v], node.out_struct, node.scope, node.module_type))
            r = nodes[j]
            args = list(r.args)
            args[k] = v
            nodes[j] = Node(r.op, args, r.kwargs, r.outputs, r.out_struct, r.scope, r.module_type, r.aliases)
        nodes[i + 1:i + 1] = clones
    g = _copy(graph, nodes)
    g.values = values
    return g


def _side_by_side(graph, plans, limit=4):
    """``plans`` ([(members, reduction node or None)], each tree's members in graph order) clustered: trees of one
    result shape and dtype, none a reduction's prologue, each but the last with no reader before the last one's root
    (where the cluster's node goes, so every input of each tree is computed by then), at most ``limit`` a cluster.
    A graph that updates a tensor in place keeps every tree apart."""
    index = {id(n): i for i, n in enumerate(graph.nodes)}
    first = {}
    for i, node in enumerate(graph.nodes):
        for name in _reads(node.args) + _reads(node.kwargs):
            first.setdefault(name, i)
    if any(n.aliases for n in graph.nodes):
        return [[p] for p in plans]
    clusters, open_ = [], {}
    for plan in sorted(plans, key=lambda p: index[id(p[0][-1][0])]):
        members, red = plan
        out = members[-1][0].outputs[0]
        at = index[id(members[-1][0])]
        key = (tuple(out.shape), out.dtype)
        c = open_.get(key) if red is None else None
        if c is not None and len(c) < limit and all(
                first.get(m[-1][0].outputs[0].name, len(graph.nodes)) > at for m, _ in c):
            c.append(plan)
            continue
        clusters.append([plan])
        if red is None:
            open_[key] = clusters[-1]
    return clusters


def fuse_pointwise(graph, make, horizontal=False):
    """The graph with each tree of two or more elementwise nodes (intermediates read once, by the tree, and of one
    floating type) replaced by one ``fused:<hash>:<n>`` node whose result is floating; a tree (of one node or more)
    read only by a ``sum``/``mean`` over its trailing or leading dims, or by a last-dim ``softmax``/``log_softmax``,
    joins that reduction as its prologue. With ``horizontal`` (the derived backward programs, which run without
    autograd), independent trees of one shape are computed by one node with a result each (``_side_by_side``).
    Returns (graph, {op name: kernel}), each kernel ``make(specs, outputs, reduce, roots)`` (specs: [(row,
    operands)] in execution order; reduce: None or (kind, k, keepdim, leading); roots: None or the indices of the
    members stored; ``codegen.Fused``)."""
    uses, outputs = _uses(graph), {v.name for v in graph.outputs}
    group_of, groups, dtype_of = {}, [], []      # value name -> group index; group: [(node, (row, operands))]
    reductions = {}                              # group index -> (the reduction node, its spec)
    for node in graph.nodes:
        red = reduction_spec(node)
        x = red[0].name if red is not None else None
        if x in group_of and uses.get(x) == 1 and x not in outputs:
            reductions[group_of[x]] = (node, red)
        spec = pointwise_spec(node)
        if spec is None:
            continue
        row, ops, dtype = spec
        merged = list(dict.fromkeys(group_of[a.name] for a in ops if isinstance(a, Value) and a.name in group_of
                                    and uses.get(a.name) == 1 and a.name not in outputs))
        kinds = {dtype_of[gi] for gi in merged} | {dtype}
        kinds.discard(None)
        if len(kinds) > 1:                       # another floating type: this node starts a group of its own
            merged, kinds = [], {dtype} - {None}
        members = [m for gi in merged for m in groups[gi]] + [(node, (row, ops))]
        for gi in merged:
            groups[gi] = []
        groups.append(members)
        dtype_of.append(next(iter(kinds), None))
        group_of[node.outputs[0].name] = len(groups) - 1
    plans = []
    for gi, members in enumerate(groups):
        red_node, red = reductions.get(gi, (None, None))
        if len(members) < (1 if red_node else 2) or members[-1][0].outputs[0].dtype not in FUSIBLE_DTYPES:
            continue
        members.sort(key=lambda m: graph.nodes.index(m[0]))
        plans.append((members, (red_node, red) if red_node else None))
    fused_at, kernels = {}, {}
    for cluster in _side_by_side(graph, plans) if horizontal else [[p] for p in plans]:
        members = [m for ms, _ in cluster for m in ms]
        red_node, red = cluster[0][1] or (None, None)
        roots = [ms[-1][0] for ms, _ in cluster]
        at = [sum(len(ms) for ms, _ in cluster[:k + 1]) - 1 for k in range(len(cluster))] if len(cluster) > 1 else None
        fused = make([spec for _, spec in members], [n.outputs[0] for n, _ in members], red and red[1:], at)
        root = red_node or roots[-1]
        name = f"fused:{fused.key}:{len(kernels)}"     # groups of one structure share a source, not their ops
        kernels[name] = fused
        fused_at[id(root)] = Node(name, fused.operands, {}, [r.outputs[0] for r in roots] if at else
                                  [root.outputs[0]], tuple(range(len(roots))) if at else 0, root.scope,
                                  root.module_type)
        for n, _ in members:
            if n is not root:
                fused_at[id(n)] = None
    nodes = [fused_at.get(id(n), n) for n in graph.nodes if fused_at.get(id(n), n) is not None]
    return _copy(graph, nodes), kernels
