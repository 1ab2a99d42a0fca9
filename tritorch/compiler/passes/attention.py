"""``fuse_attention``: attention written in ops, ``[dropout](softmax(q @ k.transpose(-2, -1) [* scale | / d]
[.masked_fill(mask, -inf)], -1)) @ v`` (a LLaMA/GPT block's scores spelled out, nanoGPT's attention dropout in
training mode), becomes one ``masked_attention`` node:
the flash-attention kernels of ``kernels/attention.py``, whose L x S scores and weights never reach memory (forward
one launch instead of two products and a softmax; backward two instead of four products and the softmax's), with
the semantics of the ops it replaces (``masked_attention``: a hidden score is -inf whatever it was, a row whose keys
are all hidden is NaN, no gradient flows through a hidden score, dropout draws the counters the op would and drops
the same weights)."""
from ... import _dtype as D
from ...jit.ir import Node, Value
from .epilogues import training_dropout_p
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


def _dropout_of(node):
    """p of a ``dropout(x, p, train, inplace)`` node the attention can take: 0.0 in eval mode (the identity, no
    draw), p in training mode for 0 < p < 1 out of place (the counters drawn as the op draws them); else None."""
    names = ("p", "train", "inplace")
    if node.op != "dropout" or not node.args or len(node.args) > 4 or not set(node.kwargs) <= {*names, "training"}:
        return None
    given = dict(zip(names, node.args[1:]), **node.kwargs)
    if given.get("train", given.get("training", True)) is False:
        return 0.0
    p = training_dropout_p(node)
    return p if p is not None and p < 1 else None


def fuse_attention(graph):
    """The graph with each attention written in ops (its intermediates read by nothing else, not graph outputs;
    q, k, v floating and of one dtype; a boolean mask; with dropout, 0 < p < 1, q, k, v of one batch shape and made
    before it) as one ``masked_attention`` node at the place of its last product, or of its dropout, where the
    counters are drawn in the order eager draws them."""
    uses, outputs = _uses(graph), {v.name for v in graph.outputs}
    made = {n.outputs[0].name: n for n in graph.nodes if len(n.outputs) == 1 and not n.aliases}
    dropouts = {n.outputs[0].name: n for n in graph.nodes if n.op == "dropout" and len(n.outputs) == 1}
    made_at = {v.name: i for i, n in enumerate(graph.nodes) for v in n.outputs}     # inputs, params: absent
    at = {id(n): i for i, n in enumerate(graph.nodes)}

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
        weights, p = node.args[0], 0.0
        drop = dropouts.get(weights.name) if isinstance(weights, Value) else None      # eval mode: an alias
        if drop is not None:
            p = _dropout_of(drop) if isinstance(drop.args[0], Value) and uses.get(weights.name) == 1 and \
                weights.name not in outputs else None
            if p is None:
                continue
            weights = drop.args[0]
        sm = single(weights, "softmax")
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
        if drop is not None and (not tuple(q.shape[:-2]) == tuple(k.shape[:-2]) == tuple(v.shape[:-2]) or any(
                made_at.get(t.name, -1) > at[id(drop)] for t in (q, k, v, mask) if t is not None)):
            continue                # the counters follow the weights' batch, and are drawn at the dropout's place
        place = drop if drop is not None else node
        gone.update(id(n) for n in parts + [sm, node] if n is not place)
        fused[id(place)] = Node("masked_attention", (q, k, v, mask, scale, p), {}, [node.outputs[0]], 0, node.scope,
                                node.module_type)
    return _copy(graph, [fused.get(id(n), n) for n in graph.nodes if id(n) not in gone])
