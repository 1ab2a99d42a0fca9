"""``fuse_attention``: attention written in ops, ``softmax(q @ k.transpose(-2, -1) [* scale | / d]
[.masked_fill(mask, -inf)], -1) @ v`` (a LLaMA/GPT block's scores spelled out), becomes one ``masked_attention`` node:
the flash-attention kernels of ``kernels/attention.py``, whose L x S scores and weights never reach memory (forward
one launch instead of two products and a softmax; backward two instead of four products and the softmax's), with
the semantics of the ops it replaces (``masked_attention``: a hidden score is -inf whatever it was, a row whose keys
are all hidden is NaN, no gradient flows through a hidden score)."""
from ... import _dtype as D
from ...jit.ir import Node, Value
from .graph import copy_graph as _copy, uses as _uses

__all__ = ["fuse_attention"]

_MATMUL = ("__matmul__", "matmul")
_MUL = ("mul", "__mul__", "__rmul__")
_DIV = ("div", "__truediv__")


def _last_two(node, nd):
    """Whether ``node`` is ``transpose`` of the last two of ``nd`` dims."""
    dims = dict(zip(("dim0", "dim1"), node.args[1:]), **node.kwargs)
    return node.op == "transpose" and set(dims) == {"dim0", "dim1"} and nd >= 2 and \
        all(type(d) is int for d in dims.values()) and {dims["dim0"] % nd, dims["dim1"] % nd} == {nd - 2, nd - 1}


def _number(c):
    return type(c) in (int, float)


def fuse_attention(graph):
    """The graph with each attention written in ops (its intermediates read by nothing else, not graph outputs;
    q, k, v floating and of one dtype; a boolean mask) as one ``masked_attention`` node at the place of its last
    product."""
    uses, outputs = _uses(graph), {v.name for v in graph.outputs}
    made = {n.outputs[0].name: n for n in graph.nodes if len(n.outputs) == 1 and not n.aliases}

    def single(v, *ops):            # the node making v, when it is one of ``ops``, v read once and no output
        n = made.get(v.name) if isinstance(v, Value) else None
        ok = n is not None and n.op in ops and uses.get(v.name) == 1 and v.name not in outputs
        return n if ok else None

    def scores(v):
        """(q, k, scale, mask, the nodes) where v is q @ k^T [* or / a number] [masked_fill(mask, -inf)]."""
        parts, mask, scale = [], None, 1.0
        n = single(v, "masked_fill")
        if n is not None:
            fill = dict(zip(("mask", "value"), n.args[1:]), **n.kwargs)
            m = fill.get("mask")
            if set(fill) != {"mask", "value"} or fill["value"] != float("-inf") or not isinstance(m, Value) or \
                    m.dtype is not D.bool_:
                return None
            parts, mask, v = [n], m, n.args[0]
        n = single(v, *_MUL, *_DIV)
        if n is not None and len(n.args) == 2 and not n.kwargs:
            a, b = n.args
            if n.op in _MUL and _number(a) and isinstance(b, Value):
                a, b = b, a
            if not (isinstance(a, Value) and _number(b) and not isinstance(b, bool) and b != 0):
                return None
            parts, scale, v = parts + [n], float(b) if n.op in _MUL else 1.0 / float(b), a
        mm = single(v, *_MATMUL)
        if mm is None or len(mm.args) != 2 or mm.kwargs or not all(isinstance(a, Value) for a in mm.args):
            return None
        q, kt = mm.args
        tr = single(kt, "transpose")
        if tr is None or not isinstance(tr.args[0], Value) or not _last_two(tr, len(tr.args[0].shape)):
            return None
        return q, tr.args[0], scale, mask, parts + [mm, tr]

    fused, gone = {}, set()
    for node in graph.nodes:
        if node.op not in _MATMUL or len(node.args) != 2 or node.kwargs or not isinstance(node.args[1], Value):
            continue
        sm = single(node.args[0], "softmax")
        given = dict(zip(("dim", "_stacklevel", "dtype"), sm.args[1:]), **sm.kwargs) if sm is not None else {}
        if sm is None or set(given) - {"dim", "_stacklevel", "dtype"} or given.get("dtype") is not None or \
                type(given.get("dim")) is not int or given["dim"] % len(sm.outputs[0].shape) != \
                len(sm.outputs[0].shape) - 1:
            continue
        found = scores(sm.args[0])
        if found is None:
            continue
        q, k, scale, mask, parts = found
        v = node.args[1]
        if not (q.dtype == k.dtype == v.dtype and q.dtype.is_floating_point and min(len(q.shape), len(k.shape),
                                                                                        len(v.shape)) >= 2):
            continue
        gone.update(id(n) for n in parts + [sm])
        fused[id(node)] = Node("masked_attention", (q, k, v, mask, scale), {}, [node.outputs[0]], 0, node.scope,
                               node.module_type)
    return _copy(graph, [fused.get(id(n), n) for n in graph.nodes if id(n) not in gone])
