"""Linear algebra composed on the product kernel of kernels/matmul.py: outer/ger, tensordot, einsum, the
``add*`` products (baddbmm, addbmm, addmv and their in-place forms, addmm_) and cdist.

None of these has a kernel of its own: each reshapes its operands (views where the strides allow) into one batched
product, whose bias epilogue carries ``beta * input`` (the ``Matmul`` Function: ``alpha * a @ b + beta * bias``),
so their gradients are the product's and the views'. ``einsum`` lowers any equation to diagonals (a label repeated
in one operand), sums (a label no one else needs) and one ``bmm`` per pair of operands.
"""
import math
import string

import numpy as np

from tritorch import _dtype as D
from tritorch._tensor import Tensor, register
from .matmul import Matmul, matmul, addmm, _bcast_batch, _check, _fmt
from .views import diagonal

__all__ = ["outer", "tensordot", "einsum", "baddbmm", "addbmm", "addmv", "cdist"]


# ---- outer, tensordot -----------------------------------------------------------------------------------------

@register("outer", "ger")
def outer(input, vec2):
    """input[i] * vec2[j]: a broadcast multiply (the dtypes promote, as in PyTorch)."""
    for name, t in (("self", input), ("vec2", vec2)):
        if t.ndim != 1:
            raise RuntimeError(f"outer: Expected 1-D argument {name}, but got {t.ndim}-D")
    return input.reshape(-1, 1) * vec2


def _tensordot_dims(a, b, dims):
    if isinstance(dims, Tensor):
        dims = dims.tolist()
    if isinstance(dims, (int, np.integer)):
        if dims < 0:
            raise RuntimeError(f"tensordot expects dims >= 0, but got dims={dims}")
        if dims > a.ndim or dims > b.ndim:
            raise RuntimeError(f"tensordot expects dims < ndim_a or ndim_b, but got dims={dims}")
        return list(range(a.ndim - dims, a.ndim)), list(range(dims)), [d - a.ndim for d in range(a.ndim - dims,
                                                                                                  a.ndim)]
    da, db = dims
    da = [da] if isinstance(da, (int, np.integer)) else list(da)
    db = [db] if isinstance(db, (int, np.integer)) else list(db)
    if len(da) != len(db):
        raise RuntimeError("both dimension lists should have same length")
    return [a._wrap_dim(d) for d in da], [b._wrap_dim(d) for d in db], da


@register("tensordot", method=False)
def tensordot(a, b, dims=2, out=None):
    """Sum of a * b over the paired dims (an int n: a's last n with b's first n), as one (free_a, K) @ (K, free_b)
    product."""
    if out is not None:
        raise NotImplementedError("tensordot(out=...) is not supported")
    da, db, shown = _tensordot_dims(a, b, dims)
    for i, j, s in zip(da, db, shown):
        if a._shape[i] != b._shape[j]:
            raise RuntimeError(f"contracted dimensions need to match, but first has size {a._shape[i]} in dim {s} "
                               f"and second has size {b._shape[j]} in dim {j}")
    fa = [d for d in range(a.ndim) if d not in da]
    fb = [d for d in range(b.ndim) if d not in db]
    k = math.prod(a._shape[d] for d in da)
    am = a.permute(fa + da).reshape(math.prod(a._shape[d] for d in fa), k)
    bm = b.permute(db + fb).reshape(k, math.prod(b._shape[d] for d in fb))
    return matmul(am, bm).reshape([a._shape[d] for d in fa] + [b._shape[d] for d in fb])


# ---- einsum ---------------------------------------------------------------------------------------------------

_LETTERS = set(string.ascii_letters)
_ELL = "."          # the label of an ellipsis dim is ("." , k): k counts from the last ellipsis dim


def _parse_term(term, offset, operand, i):
    """An input term's labels, with '...' expanded to the operand's ellipsis dims."""
    labels, pos, ell = [], 0, None
    while pos < len(term):
        c = term[pos]
        if term.startswith("...", pos) and ell is None:
            ell = len(labels)
            pos += 3
            continue
        if c == ".":
            raise RuntimeError(f"einsum(): found '.' for operand {i} that is not part of any ellipsis")
        if c not in _LETTERS:
            raise RuntimeError(f"einsum(): invalid subscript given at index {offset + pos} in the equation string, "
                               "subscripts must be in [a-zA-Z]")
        labels.append(c)
        pos += 1
    if ell is None:
        if len(labels) != operand.ndim:
            raise RuntimeError(f"einsum(): the number of subscripts in the equation ({len(labels)}) does not match "
                               f"the number of dimensions ({operand.ndim}) for operand {i} and no ellipsis was given")
        return labels, 0
    n_ell = operand.ndim - len(labels)
    if n_ell < 0:
        raise RuntimeError(f"einsum(): the number of subscripts in the equation ({len(labels)}) is more than the "
                           f"number of dimensions ({operand.ndim}) for operand {i}")
    return labels[:ell] + [(_ELL, n_ell - 1 - k) for k in range(n_ell)] + labels[ell:], n_ell


def _parse(equation, operands):
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) > len(operands):
        raise RuntimeError("einsum(): fewer operands were provided than specified in the equation")
    if len(terms) < len(operands):
        raise RuntimeError("einsum(): more operands were provided than specified in the equation")
    ins, offset, n_ell = [], 0, 0
    for i, (term, op) in enumerate(zip(terms, operands)):
        labels, k = _parse_term(term, offset, op, i)
        ins.append(labels)
        n_ell = max(n_ell, k)
        offset += len(term) + 1
    ell_out = [(_ELL, n_ell - 1 - k) for k in range(n_ell)]
    if not arrow:
        counts = {}
        for labels in ins:
            for c in labels:
                if isinstance(c, str):
                    counts[c] = counts.get(c, 0) + 1
        return ins, ell_out + sorted((c for c, n in counts.items() if n == 1), key=lambda c: (c.islower(), c))
    out, pos, seen = [], 0, set()
    while pos < len(rhs):
        if rhs.startswith("...", pos) and not any(isinstance(c, tuple) for c in out):
            out += ell_out
            pos += 3
            continue
        c = rhs[pos]
        if c == ".":
            raise RuntimeError("einsum(): found '.' for output but an ellipsis (...) was already found")
        if c not in _LETTERS:
            raise RuntimeError(f"einsum(): invalid subscript given at index {len(lhs) + 2 + pos} in the equation "
                               "string, subscripts must be in [a-zA-Z]")
        if c in seen:
            raise RuntimeError(f"einsum(): output subscript {c} appears more than once in the output")
        if not any(c in labels for labels in ins):
            raise RuntimeError(f"einsum(): output subscript {c} does not appear in the equation for any input "
                               "operand")
        seen.add(c)
        out.append(c)
        pos += 1
    return ins, out


def _take_diagonals(t, labels, i):
    """A label repeated in one operand: the diagonal of its dims (a view), the label kept once."""
    labels = list(labels)
    while True:
        dup = next((c for c in labels if labels.count(c) > 1), None)
        if dup is None:
            return t, labels
        d1 = labels.index(dup)
        d2 = labels.index(dup, d1 + 1)
        if t._shape[d1] != t._shape[d2]:
            raise RuntimeError(f"einsum(): subscript {dup} is repeated for operand {i} but the sizes don't match, "
                               f"{t._shape[d2]} != {t._shape[d1]}")
        t = diagonal(t, 0, d1, d2)
        labels = [c for j, c in enumerate(labels) if j not in (d1, d2)] + [dup]


def _label_sizes(ops, ins):
    """Each label's size: equal across operands or 1 (broadcast), with PyTorch's messages."""
    sizes = {}
    for i, (t, labels) in enumerate(zip(ops, ins)):
        for c, n in zip(labels, t._shape):
            prev = sizes.get(c)
            if prev is None or prev == 1:
                sizes[c] = n
            elif n != 1 and n != prev:
                if isinstance(c, tuple):
                    raise RuntimeError(f"einsum(): dimension {_ell_index(ins[i], c)} covered by ellipsis in operand "
                                       f"{i}has size {n} which does not broadcast with previously seen ellipsis "
                                       f"with size {prev} for the respective dimension")
                raise RuntimeError(f"einsum(): subscript {c} has size {n} for operand {i} which does not broadcast "
                                   f"with previously seen size {prev}")
    return sizes


def _ell_index(labels, c):
    """The index among an operand's ellipsis dims of ellipsis label ``c``."""
    return [x for x in labels if isinstance(x, tuple)].index(c)


def _sum_labels(t, labels, drop):
    dims = [j for j, c in enumerate(labels) if c in drop]
    if not dims:
        return t, labels
    return t.sum(dims), [c for c in labels if c not in drop]


def _contract(a, la, b, lb, keep, sizes):
    """a (labels la) times b (labels lb), summing the shared labels not in ``keep``: one bmm of
    (batch, left, K) @ (batch, K, right)."""
    shared = [c for c in la if c in lb]
    batch = [c for c in shared if c in keep]
    contracted = [c for c in shared if c not in keep]
    # a contracted label that is 1 on one side only broadcasts: sum the other side over it first
    for c in contracted:
        na, nb = a._shape[la.index(c)], b._shape[lb.index(c)]
        if na != nb:
            if na == 1:
                b = b.sum(lb.index(c), keepdim=True)
            else:
                a = a.sum(la.index(c), keepdim=True)
    left = [c for c in la if c not in lb]
    right = [c for c in lb if c not in la]

    def arrange(t, labels, order, grp):
        t = t.permute([labels.index(c) for c in order])
        shape = [sizes[c] if c in batch else t._shape[j] for j, c in enumerate(order)]
        t = t.expand(shape)
        groups, j = [], 0
        for n in grp:
            groups.append(math.prod(shape[j:j + n]))
            j += n
        return t.reshape(groups)

    am = arrange(a, la, batch + left + contracted, (len(batch), len(left), len(contracted)))
    bm = arrange(b, lb, batch + contracted + right, (len(batch), len(contracted), len(right)))
    out = matmul(am, bm)
    shape = [sizes[c] for c in batch] + [a._shape[la.index(c)] for c in left] + [b._shape[lb.index(c)] for c in right]
    return out.reshape(shape), batch + left + right


@register("einsum", method=False)
def einsum(equation, *operands):
    """Einstein summation with PyTorch's grammar: letters, one '...' per term, implicit output (the labels seen
    once, sorted, after the ellipsis dims) or explicit '->'. Operands contract left to right."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if not operands:
        raise RuntimeError("einsum(): must provide at least one operand")
    for t in operands:
        if not isinstance(t, Tensor):
            raise TypeError(f"einsum(): argument 'operands' must be tuple of Tensors, not {type(t).__name__}")
    ins, out = _parse(equation, operands)
    ops, labels = [], []
    for i, (t, lab) in enumerate(zip(operands, ins)):
        t, lab = _take_diagonals(t, lab, i)
        ops.append(t)
        labels.append(lab)
    sizes = _label_sizes(ops, labels)
    for i in range(len(ops)):
        others = set(out).union(*(labels[j] for j in range(len(ops)) if j != i))
        ops[i], labels[i] = _sum_labels(ops[i], labels[i], [c for c in labels[i] if c not in others])
    t, lt = ops[0], labels[0]
    for i in range(1, len(ops)):
        keep = set(out).union(*labels[i + 1:])
        t, lt = _contract(t, lt, ops[i], labels[i], keep, sizes)
        t, lt = _sum_labels(t, lt, [c for c in lt if c not in keep])
    t = t.permute([lt.index(c) for c in out])
    return t.expand([sizes[c] for c in out]) if t._shape != tuple(sizes[c] for c in out) else t


# ---- the add* products ----------------------------------------------------------------------------------------

def _check_bias(input, target):
    """PyTorch's message when ``input`` does not broadcast to the product's shape."""
    input.expand(target)


def _copy_back(self, result, name):
    if self._shape != result._shape:
        raise RuntimeError(f"Bad in-place call: input tensor size {list(self._shape)} and output tensor size "
                           f"{list(result._shape)} should match")
    return self.copy_(result)


def _check_batches(b1, b2, names=("batch1", "batch2")):
    for n, t in zip(names, (b1, b2)):
        if t.ndim != 3:
            raise RuntimeError(f"{n} must be a 3D tensor")
    if b2._shape[:2] != (b1._shape[0], b1._shape[2]):
        raise RuntimeError(f"Expected size for first two dimensions of batch2 tensor to be: [{b1._shape[0]}, "
                           f"{b1._shape[2]}] but got: [{b2._shape[0]}, {b2._shape[1]}].")


@register("baddbmm")
def baddbmm(input, batch1, batch2, *, beta=1, alpha=1):
    """beta * input + alpha * (batch1 @ batch2) per batch, input broadcastable to (b, n, p): one product kernel
    with the bias in its epilogue (beta = 0 ignores input, NaN included)."""
    _check("baddbmm", "baddbmm", input, batch1, batch2)
    _check_batches(batch1, batch2)
    _check_bias(input, (batch1._shape[0], batch1._shape[1], batch2._shape[2]))
    return Matmul.apply(batch1, batch2, input, alpha, beta, "BaddbmmBackward0")


@register("addbmm")
def addbmm(input, batch1, batch2, *, beta=1, alpha=1):
    """beta * input + alpha * sum_b batch1[b] @ batch2[b]: the batch folded into K, (n, b*m) @ (b*m, p), as addmm."""
    _check("addbmm", "addbmm", input, batch1, batch2)
    _check_batches(batch1, batch2)
    b, n, m = batch1._shape
    p = batch2._shape[2]
    _check_bias(input, (n, p))
    a = batch1.permute(1, 0, 2).reshape(n, b * m)
    return addmm(input, a, batch2.reshape(b * m, p), beta=beta, alpha=alpha)


@register("addmv")
def addmv(input, mat, vec, *, beta=1, alpha=1):
    """beta * input + alpha * (mat @ vec), input broadcastable to (n,): an (n, m) @ (m, 1) product with the bias
    in its epilogue."""
    _check("addmv", "addmv", input, mat, vec)
    if mat.ndim != 2 or vec.ndim != 1:
        raise RuntimeError(f"vector + matrix @ vector expected, got {input.ndim}, {mat.ndim}, {vec.ndim}")
    n, m = mat._shape
    if vec._shape[0] != m or (input.ndim and input._shape[-1] not in (1, n)) or input.ndim > 1:
        raise RuntimeError(f"size mismatch, got input ({input._shape[0] if input.ndim else 1}), mat "
                           f"({_fmt(mat._shape)}), vec ({vec._shape[0]})")
    bias = input.reshape(-1, 1) if input.ndim else input
    return Matmul.apply(mat, vec.unsqueeze(-1), bias, alpha, beta, "AddmvBackward0").squeeze(-1)


def _inplace(fn, name):
    def method(self, *args, beta=1, alpha=1):
        return _copy_back(self, fn(self, *args, beta=beta, alpha=alpha), name)
    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"In-place {fn.__name__}: the result written into self (shapes must match)."
    return register(name, function=False)(method)


baddbmm_ = _inplace(baddbmm, "baddbmm_")
addbmm_ = _inplace(addbmm, "addbmm_")
addmv_ = _inplace(addmv, "addmv_")
if not hasattr(Tensor, "addmm_"):
    addmm_ = _inplace(addmm, "addmm_")


# ---- cdist ----------------------------------------------------------------------------------------------------

_COMPUTE_MODES = ("use_mm_for_euclid_dist_if_necessary", "use_mm_for_euclid_dist", "donot_use_mm_for_euclid_dist")


@register("cdist", method=False)
def cdist(x1, x2, p=2.0, compute_mode="use_mm_for_euclid_dist_if_necessary"):
    """p-norm distances between the rows of x1 (..., P, M) and x2 (..., R, M): (..., P, R), batch dims broadcast.
    p = 2 uses ``|a|^2 + |b|^2 - 2 a.b`` (one product kernel with the norms as its bias, clamped at 1e-30 before
    the square root, as PyTorch) when compute_mode asks for it, or by default when P or R exceeds 25; other p (and
    p = 2 otherwise) reduce |a - b| directly with the norm kernel."""
    if compute_mode not in _COMPUTE_MODES:
        raise ValueError(f"{compute_mode} is not a valid value for compute_mode")
    for name, t in (("X1", x1), ("X2", x2)):
        if t.ndim < 2:
            raise RuntimeError(f"cdist only supports at least 2D tensors, {name} got: {t.ndim}D")
        if not t.dtype.is_floating_point:
            raise RuntimeError(f"cdist only supports floating-point dtypes, {name} got: {D.scalar_name(t.dtype)}")
    if x1._shape[-1] != x2._shape[-1]:
        raise RuntimeError(f"X1 and X2 must have the same number of columns. X1: {x1._shape[-1]} X2: "
                           f"{x2._shape[-1]}")
    if x1.dtype is not x2.dtype:
        raise RuntimeError(f"expected scalar type {D.scalar_name(x1.dtype)} but found {D.scalar_name(x2.dtype)}")
    if p < 0:
        raise RuntimeError("cdist only supports non-negative p values")
    P, R = x1._shape[-2], x2._shape[-2]
    use_mm = p == 2 and (compute_mode == "use_mm_for_euclid_dist" or
                         (compute_mode == _COMPUTE_MODES[0] and (P > 25 or R > 25)))
    batch = _bcast_batch(x1, x2)
    x1 = x1.expand(batch + x1._shape[-2:])
    x2 = x2.expand(batch + x2._shape[-2:])
    if use_mm:
        n1 = (x1 * x1).sum(-1, keepdim=True)
        n2 = (x2 * x2).sum(-1, keepdim=True)
        sq = Matmul.apply(x1, x2.transpose(-2, -1), n1 + n2.transpose(-2, -1), -2.0, 1.0, "CdistBackward0")
        return sq.clamp_min(1e-30).sqrt()
    if x1._shape[-1] == 0:
        return (x1.sum(-1, keepdim=True) + x2.sum(-1).unsqueeze(-2)) * 0
    return (x1.unsqueeze(-2) - x2.unsqueeze(-3)).norm(p, -1)

