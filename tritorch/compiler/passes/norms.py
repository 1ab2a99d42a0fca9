"""Norms written in ops as the row-norm kernels of ``kernels/norm.py``.

``fuse_layer_norm``: a layer norm over the last dim written in ops, ``(x - mean) * rsqrt(var + eps)`` or
``(x - mean) / sqrt(var + eps)`` with ``mean = x.mean(-1, keepdim=True)`` and ``var = ((x - mean) ** 2).mean(-1,
keepdim=True)`` (or ``x.var(-1, keepdim=True, unbiased=False)``), then ``* w`` and ``+ b`` (either order, each
optional), becomes one ``layer_norm`` node: one launch forward instead of three reductions and their pointwise
kernels, the layer norm's backward instead of a derived program. Not under autocast (``layer_norm`` runs in
float32 there, the ops it replaces in their own dtypes).

``fuse_rms_norm``: a root-mean-square norm written in ops, ``x * rsqrt(mean(x * x, -1, keepdim=True) + eps)
[* w]`` (LLaMA's RMSNorm, ``F.rms_norm``'s own decomposition; ``x ** 2`` or ``square(x)`` for ``x * x``, either
operand order), becomes one ``rms_norm_rows`` node: the row-norm kernels of ``kernels/norm.py`` with the mean fixed
at 0, one launch forward instead of a reduction and a pointwise kernel, and a backward of one launch (and the
weight's partial sums) instead of a derived program of four."""
from ...jit.ir import Node, Value
from ...kernels.norm import RowNorm
from .graph import copy_graph as _copy, reads as _reads, uses as _uses

__all__ = ["fuse_layer_norm", "fuse_rms_norm", "rms_norm_rows"]

_MUL = ("mul", "__mul__", "__rmul__")
_ADD = ("add", "__add__", "__radd__")
_SUB = ("sub", "__sub__")
_DIV = ("div", "__truediv__")


def rms_norm_rows(x, weight, eps):
    """x * rsqrt(mean(x * x over the last dim) + eps) [* weight]: ``RowNorm`` with ``rms``."""
    return RowNorm.apply(x, weight, None, eps, x.shape[-1], True)


def _pair(node, ops):
    """The two operands of a binary ``node`` among ``ops`` (no keywords), else None."""
    return tuple(node.args) if node.op in ops and len(node.args) == 2 and not node.kwargs else None


def _square_of(node):
    """x where ``node`` is x * x, x ** 2 or square(x)."""
    if node.op in ("pow", "__pow__") and len(node.args) == 2 and not node.kwargs and type(node.args[1]) is int \
            and node.args[1] == 2:
        return node.args[0]
    if node.op == "square" and len(node.args) == 1 and not node.kwargs:
        return node.args[0]
    ab = _pair(node, _MUL)
    return ab[0] if ab and isinstance(ab[0], Value) and isinstance(ab[1], Value) and ab[0].name == ab[1].name \
        else None


def _last_dim_mean(node):
    """The operand of a ``mean`` over the last dim that keeps it, else None."""
    if node.op != "mean" or not node.args or not isinstance(node.args[0], Value):
        return None
    given = dict(zip(("dim", "keepdim"), node.args[1:]), **node.kwargs)
    nd = len(node.args[0].shape)
    dim = given.get("dim")
    dim = dim[0] if isinstance(dim, (tuple, list)) and len(dim) == 1 else dim
    ok = set(given) <= {"dim", "keepdim"} and given.get("keepdim") is True and type(dim) is int and \
        nd >= 1 and dim % nd == nd - 1
    return node.args[0] if ok else None


def fuse_rms_norm(graph):
    """The graph with each root-mean-square norm over the last dim (its intermediates read by nothing else, not
    graph outputs; a weight of the last dim's size, floating and of x's dtype) as one ``rms_norm_rows`` node at the
    place of its last op."""
    uses, outputs = _uses(graph), {v.name for v in graph.outputs}
    made = {n.outputs[0].name: n for n in graph.nodes if len(n.outputs) == 1 and not n.aliases}

    def single(v):                  # the node making v, where only one node reads v and v is no output
        n = made.get(v.name) if isinstance(v, Value) else None
        return n if n is not None and uses.get(v.name) == 1 and v.name not in outputs else None

    def norm_of(node):
        """(x, eps, the norm's nodes) where ``node`` is x * rsqrt(mean(x * x) + eps), else None."""
        ab = _pair(node, _MUL)
        for x, r in (ab, ab[::-1]) if ab else ():
            rs = single(r)
            d = single(rs.args[0]) if rs is not None and rs.op == "rsqrt" and len(rs.args) == 1 and \
                not rs.kwargs else None
            pe = _pair(d, _ADD) if d is not None else None
            for m, eps in (pe, pe[::-1]) if pe else ():
                mn = single(m) if type(eps) is float else None
                xm = _last_dim_mean(mn) if mn is not None else None
                sq = single(xm) if xm is not None else None
                xs = _square_of(sq) if sq is not None else None
                if isinstance(x, Value) and isinstance(xs, Value) and xs.name == x.name and \
                        x.dtype.is_floating_point and node.outputs[0].dtype == x.dtype:
                    return x, eps, [sq, mn, d, rs]
        return None

    fused, gone = {}, set()
    for weighted in (True, False):          # (x * rstd) * w first: its x * rstd is no norm of its own then
        for node in graph.nodes:
            if id(node) in gone or id(node) in fused:
                continue
            found = None
            ab = _pair(node, _MUL) if weighted else None
            for n, w in (ab, ab[::-1]) if ab else ():
                inner = single(n)
                norm = norm_of(inner) if inner is not None else None
                x = norm[0] if norm else None
                if norm and isinstance(w, Value) and tuple(w.shape) == tuple(x.shape[-1:]) and w.dtype == x.dtype:
                    found = (x, w, norm[1], norm[2] + [inner])
                    break
            if not weighted:
                norm = norm_of(node)
                found = (norm[0], None, norm[1], norm[2]) if norm else None
            if found is None or any(id(n) in gone or id(n) in fused for n in found[3]):
                continue
            x, w, eps, parts = found
            gone.update(id(n) for n in parts)
            fused[id(node)] = Node("rms_norm_rows", (x, w, eps), {}, [node.outputs[0]], 0, node.scope,
                                   node.module_type)
    return _copy(graph, [fused.get(id(n), n) for n in graph.nodes if id(n) not in gone])


def _biased_var(node):
    """The operand of ``var`` over the last dim, keeping it, without Bessel's correction, else None."""
    if node.op != "var" or not node.args or not isinstance(node.args[0], Value):
        return None
    given = dict(zip(("dim", "unbiased", "keepdim"), node.args[1:]), **node.kwargs)
    nd = len(node.args[0].shape)
    dim = given.get("dim")
    dim = dim[0] if isinstance(dim, (tuple, list)) and len(dim) == 1 else dim
    biased = given.get("unbiased") is False or ("correction" in given and given["correction"] == 0 and
                                                  "unbiased" not in given)
    ok = set(given) <= {"dim", "unbiased", "keepdim", "correction"} and given.get("keepdim") is True and \
        type(dim) is int and nd >= 1 and dim % nd == nd - 1 and biased
    return node.args[0] if ok else None


def fuse_layer_norm(graph):
    """The graph with each layer norm over the last dim written in ops (its intermediates read only by the norm's
    own ops, not graph outputs; a weight and a bias of the last dim's size and x's dtype) as one ``layer_norm``
    node at the place of its last op."""
    outputs = {v.name for v in graph.outputs}
    made = {n.outputs[0].name: n for n in graph.nodes if len(n.outputs) == 1 and not n.aliases}
    readers = {}
    for n in graph.nodes:
        for name in set(_reads(n.args) + _reads(n.kwargs)):
            readers.setdefault(name, []).append(n)

    def node_of(v):
        return made.get(v.name) if isinstance(v, Value) else None

    def centred(v, x=None):
        """(x, the mean node, the sub node) where ``v`` is x - x.mean(-1, keepdim=True), else None."""
        sub = node_of(v)
        pair = _pair(sub, _SUB) if sub is not None else None
        mn = node_of(pair[1]) if pair else None
        xm = _last_dim_mean(mn) if mn is not None else None
        if xm is None or not isinstance(pair[0], Value) or xm.name != pair[0].name or \
                (x is not None and x.name != xm.name):
            return None
        return xm, mn, sub

    def variance(v, x, mean):
        """The nodes computing the biased variance of x as ``v``, else None."""
        n = node_of(v)
        if n is None:
            return None
        xv = _biased_var(n)
        if xv is not None:
            return [n] if xv.name == x.name else None
        inner = _last_dim_mean(n)
        sq = node_of(inner) if inner is not None else None
        xc = _square_of(sq) if sq is not None else None
        c = centred(xc, x) if xc is not None else None
        return [n, sq, c[2]] if c is not None and c[1] is mean else None

    def normalized(node):
        """(x, eps, the nodes) where ``node`` is (x - mean) * rsqrt(var + eps) or (x - mean) / sqrt(var + eps)."""
        pairs = []
        ab = _pair(node, _MUL)
        if ab:
            pairs = [(ab, "rsqrt"), (ab[::-1], "rsqrt")]
        elif _pair(node, _DIV):
            pairs = [(_pair(node, _DIV), "sqrt")]
        for (xc, r), root in pairs:
            c = centred(xc)
            rn = node_of(r)
            if c is None or rn is None or rn.op != root or len(rn.args) != 1 or rn.kwargs:
                continue
            d = node_of(rn.args[0])
            pe = _pair(d, _ADD) if d is not None else None
            for v, eps in (pe, pe[::-1]) if pe else ():
                var = variance(v, c[0], c[1]) if type(eps) is float else None
                if var is not None:
                    return c[0], eps, [c[1], c[2], *var, d, rn, node]
        return None

    def affine(node, x):
        """(the Value the node's result meets, the op's node) for the node reading ``node``'s result alone as
        ``* w`` or ``+ b`` with a (N,) w or b of x's dtype."""
        out = node.outputs[0]
        rd = readers.get(out.name, [])
        if len(rd) != 1 or out.name in outputs:
            return None, None, None
        nxt = rd[0]
        for ops, kind in ((_MUL, "w"), (_ADD, "b")):
            ab = _pair(nxt, ops)
            for a, p in (ab, ab[::-1]) if ab else ():
                if isinstance(a, Value) and a.name == out.name and isinstance(p, Value) and p.name != a.name and \
                        tuple(p.shape) == tuple(x.shape[-1:]) and p.dtype == x.dtype == nxt.outputs[0].dtype:
                    return kind, p, nxt
        return None, None, None

    fused, gone = {}, set()
    for node in graph.nodes:
        if id(node) in gone:
            continue
        found = normalized(node)
        if found is None:
            continue
        x, eps, parts = found
        parts = list({id(n): n for n in parts}.values())         # (x - mean) may be one node read twice
        if not x.dtype.is_floating_point or node.outputs[0].dtype != x.dtype or any(id(n) in gone for n in parts):
            continue
        inside = {id(n) for n in parts}
        if any(v.name in outputs or any(id(r) not in inside for r in readers.get(v.name, []))
               for n in parts if n is not node for v in n.outputs):
            continue
        w = b = None
        root = node
        kind, p, nxt = affine(root, x)
        if kind == "w":
            w, root = p, nxt
            parts.append(nxt)
            kind, p, nxt = affine(root, x)
        if kind == "b":
            b, root = p, nxt
            parts.append(nxt)
        gone.update(id(n) for n in parts if n is not root)
        fused[id(root)] = Node("layer_norm", (x, tuple(x.shape[-1:]), w, b, eps), {}, [root.outputs[0]], 0,
                               root.scope, root.module_type)
    return _copy(graph, [fused.get(id(n), n) for n in graph.nodes if id(n) not in gone])
