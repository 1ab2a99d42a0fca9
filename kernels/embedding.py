"""``embedding`` and ``embedding_bag``: row gathers from a weight table, and their scatter-add backward.

One forward kernel serves both ops: program b sums the weight rows of indices ``[start_b, end_b)`` (times a
per-sample weight, over the bag's size for ``mean``) into output row b. Plain ``embedding`` is the case of bags of
one index (``start_b = b``), where the kernel is a gather. The backward kernel walks the same bags and adds each
output-gradient row into the weight-gradient rows its indices name with ``tl.atomic_add``, so repeated indices
accumulate; the accumulation buffer is float32 (float64 for float64 weights) and is cast to the weight's dtype at
the end. Atomic adds make the order of the float additions, hence the last bits of a repeated row's gradient,
vary between runs on a GPU (as PyTorch's CUDA embedding backward without deterministic algorithms does).
Rows of ``padding_idx`` get no gradient.

The NumPy references share the launchers' signatures and run on ``cpu``.
"""
import numpy as np
import triton
import triton.language as tl

from tritorch import _dtype as D
from tritorch._device import INTERPRET
from tritorch._tensor import Tensor, register
from tritorch.autograd.function import Function
from tritorch.autograd.grad_mode import no_grad
from ._launch import ACC, ptr, cdiv, next_pow2, on_cpu, interp_bf16_in, interp_bf16_out
from ._checks import check_index_range, check_range
from ._common import empty, wrap

__all__ = ["embedding", "embedding_bag", "embedding_bag_fwd_np", "embedding_bag_bwd_np", "embedding_renorm_np"]

MODES = {"sum": 0, "mean": 1, "max": 2}


@triton.jit
def _bag_bounds(off_ptr, b, HAS_OFFSETS: tl.constexpr):
    """Bag ``b`` is ``[off[b], off[b + 1])``, or ``[b, b + 1)`` without offsets."""
    if HAS_OFFSETS:
        start = tl.load(off_ptr + b)
        end = tl.load(off_ptr + b + 1)
    else:
        start = b.to(tl.int64)
        end = start + 1
    return start, end


@triton.jit
def _bag_fwd_kernel(w_ptr, idx_ptr, off_ptr, psw_ptr, out_ptr, D, stride_w0, stride_w1,
                    HAS_OFFSETS: tl.constexpr, HAS_PSW: tl.constexpr, MEAN: tl.constexpr,
                    CT: tl.constexpr, BLOCK_D: tl.constexpr):
    """out[b, d] = sum_{j in bag b} psw[j] * w[idx[j], d] (divided by the bag's size for mean); grid (bags,
    cdiv(D, BLOCK_D)). Bag b is ``[off[b], off[b + 1])`` (``off`` holds bags + 1 boundaries), or ``[b, b + 1)``
    without offsets. ``out`` is contiguous (bags, D)."""
    b = tl.program_id(0)
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    dmask = d < D
    start, end = _bag_bounds(off_ptr, b, HAS_OFFSETS)
    acc = tl.zeros([BLOCK_D], dtype=CT)
    for j in range(start, end):
        row = tl.load(idx_ptr + j).to(tl.int64)
        v = tl.load(w_ptr + row * stride_w0 + d * stride_w1, mask=dmask, other=0.0).to(CT)
        if HAS_PSW:
            v = v * tl.load(psw_ptr + j).to(CT)
        acc += v
    if MEAN:
        acc = acc / tl.maximum(end - start, 1).to(CT)
    tl.store(out_ptr + b.to(tl.int64) * D + d, acc.to(out_ptr.dtype.element_ty), mask=dmask)


@triton.jit
def _bag_bwd_kernel(g_ptr, idx_ptr, off_ptr, psw_ptr, gw_ptr, D, padding_idx,
                    HAS_OFFSETS: tl.constexpr, HAS_PSW: tl.constexpr, MEAN: tl.constexpr,
                    CT: tl.constexpr, BLOCK_D: tl.constexpr):
    """gw[idx[j], d] += g[b, d] * psw[j] (/ bag size for mean) for every j of bag b, atomically (repeated indices
    meet in the same row), skipping ``idx[j] == padding_idx``; grid as the forward's. ``g`` is contiguous (bags,
    D), ``gw`` a contiguous zeroed (num_embeddings, D) buffer of type CT."""
    b = tl.program_id(0)
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    dmask = d < D
    start, end = _bag_bounds(off_ptr, b, HAS_OFFSETS)
    g = tl.load(g_ptr + b.to(tl.int64) * D + d, mask=dmask, other=0.0).to(CT)
    if MEAN:
        g = g / tl.maximum(end - start, 1).to(CT)
    for j in range(start, end):
        row = tl.load(idx_ptr + j).to(tl.int64)
        v = g
        if HAS_PSW:
            v = v * tl.load(psw_ptr + j).to(CT)
        keep = (tl.zeros([BLOCK_D], dtype=tl.int64) + row) != padding_idx
        tl.atomic_add(gw_ptr + row * D + d, v, mask=dmask & keep)


@triton.jit
def _psw_grad_kernel(g_ptr, w_ptr, idx_ptr, seg_ptr, out_ptr, D, stride_w0, stride_w1,
                     CT: tl.constexpr, BLOCK_D: tl.constexpr):
    """out[j] = sum_d g[seg[j], d] * w[idx[j], d]: the gradient of a per-sample weight; one program per index."""
    j = tl.program_id(0).to(tl.int64)
    row = tl.load(idx_ptr + j).to(tl.int64)
    b = tl.load(seg_ptr + j).to(tl.int64)
    acc = tl.zeros([BLOCK_D], dtype=CT)
    for d0 in range(0, D, BLOCK_D):
        d = d0 + tl.arange(0, BLOCK_D)
        dmask = d < D
        gv = tl.load(g_ptr + b * D + d, mask=dmask, other=0.0).to(CT)
        wv = tl.load(w_ptr + row * stride_w0 + d * stride_w1, mask=dmask, other=0.0).to(CT)
        acc += gv * wv
    tl.store(out_ptr + j, tl.sum(acc, axis=0).to(out_ptr.dtype.element_ty))


@triton.jit
def _renorm_kernel(w_ptr, rows_ptr, D, stride_w0, stride_w1, max_norm,
                   NORM: tl.constexpr, CT: tl.constexpr, BLOCK_D: tl.constexpr):
    """Scales row rows[pid] of w in place by max_norm / (norm + 1e-7) where its NORM-norm exceeds max_norm (NORM =
    1, 2 or any other positive power); one program per (unique) row, the row in one block."""
    r = tl.load(rows_ptr + tl.program_id(0)).to(tl.int64)
    d = tl.arange(0, BLOCK_D)
    dmask = d < D
    p = w_ptr + r * stride_w0 + d * stride_w1
    v = tl.load(p, mask=dmask, other=0.0).to(CT)
    a = tl.abs(v)
    if NORM == 1.0:
        norm = tl.sum(a, axis=0)
    elif NORM == 2.0:
        norm = tl.sqrt(tl.sum(a * a, axis=0))
    else:
        s = tl.sum(tl.where(a > 0, tl.exp(tl.log(tl.maximum(a, 1e-30)) * NORM), 0.0), axis=0)
        norm = tl.where(s > 0, tl.exp(tl.log(tl.maximum(s, 1e-30)) / NORM), 0.0)
    scale = tl.where(norm > max_norm, max_norm / (norm + 1e-7), 1.0)
    tl.store(p, (v * scale).to(w_ptr.dtype.element_ty), mask=dmask)


# ---- NumPy references ------------------------------------------------------------------------------------------
def _bags_np(n_bags, bounds):
    if bounds is None:
        return np.arange(n_bags), np.arange(n_bags) + 1
    return bounds[:-1], bounds[1:]


def embedding_bag_fwd_np(w, idx, offsets, psw, mode):
    """The forward reference: w (V, D), idx (N,), offsets: the B + 1 bag boundaries or None (bags of one), psw
    (N,) or None."""
    n_bags = len(idx) if offsets is None else len(offsets) - 1
    ct = np.float64 if w.dtype == np.float64 else np.float32
    starts, ends = _bags_np(n_bags, offsets)
    out = np.zeros((n_bags, w.shape[1]), ct)
    rows = w[idx].astype(ct)
    if psw is not None:
        rows = rows * psw.astype(ct)[:, None]
    for b in range(n_bags):
        s = rows[starts[b]:ends[b]]
        if mode == "max":
            out[b] = s.max(axis=0) if len(s) else 0
        else:
            out[b] = s.sum(axis=0) / (max(len(s), 1) if mode == "mean" else 1)
    return out.astype(w.dtype)


def embedding_bag_bwd_np(g, idx, offsets, psw, mode, num_weights, padding_idx):
    """The weight-gradient reference: the scatter-add of the forward's output gradient g (B, D)."""
    ct = np.float64 if g.dtype == np.float64 else np.float32
    n_bags = g.shape[0]
    starts, ends = _bags_np(n_bags, offsets)
    gw = np.zeros((num_weights, g.shape[1]), ct)
    for b in range(n_bags):
        gb = g[b].astype(ct) / (max(ends[b] - starts[b], 1) if mode == "mean" else 1)
        for j in range(starts[b], ends[b]):
            if idx[j] != padding_idx:
                gw[idx[j]] += gb * (psw[j].astype(ct) if psw is not None else 1)
    return gw


def embedding_renorm_np(w, rows, max_norm, norm_type):
    """Scales, in place, the rows of w whose ``norm_type``-norm exceeds ``max_norm`` to that norm."""
    for r in rows:
        norm = np.sum(np.abs(w[r].astype(np.float64)) ** norm_type) ** (1.0 / norm_type)
        if norm > max_norm:
            w[r] = w[r] * (max_norm / (norm + 1e-7))


# ---- launchers -------------------------------------------------------------------------------------------------
def _block_d(d):
    return max(16, min(next_pow2(max(d, 1)), 64 if INTERPRET else 1024))


def _idx_host(t):
    return np.asarray(t._to_host_array()).astype(np.int64).reshape(-1)


def _bag_fwd(w, idx, offsets, psw, mode, n_bags):
    """out (n_bags, D) of weight ``w`` (any strides) over flat contiguous int64 ``idx`` (and ``offsets``)."""
    D_ = w._shape[1]
    out = empty((n_bags, D_), w.dtype, w.device)
    if n_bags == 0 or D_ == 0:
        return out
    if on_cpu(w):
        out._np[...] = embedding_bag_fwd_np(w._np, idx._np, None if offsets is None else offsets._np,
                                            None if psw is None else psw._np, mode)
        return out
    win = interp_bf16_in(w)
    pin = None if psw is None else interp_bf16_in(psw)
    res = out if win is w else empty((n_bags, D_), win.dtype, w.device)
    bd = _block_d(D_)
    _bag_fwd_kernel[(n_bags, cdiv(D_, bd))](
        ptr(win), ptr(idx), ptr(offsets if offsets is not None else idx), ptr(pin if pin is not None else win),
        ptr(res), D_, win._stride[0], win._stride[1],
        HAS_OFFSETS=offsets is not None, HAS_PSW=psw is not None, MEAN=mode == "mean", CT=ACC[win.dtype],
        BLOCK_D=bd)
    if res is not out:
        out._np[...] = interp_bf16_out(res, w.dtype)._np
    return out


def _bag_bwd(g, idx, offsets, psw, mode, num_weights, padding_idx, w_dtype):
    """The weight gradient (num_weights, D) in ``w_dtype``."""
    D_ = g._shape[1]
    acc_dt = D.float64 if w_dtype == D.float64 else D.float32
    if on_cpu(g):
        gw = embedding_bag_bwd_np(g._np, idx._np, None if offsets is None else offsets._np,
                                  None if psw is None else psw._np, mode, num_weights, padding_idx)
        return wrap(gw.astype(w_dtype.np), w_dtype, g.device)
    gw = empty((num_weights, D_), acc_dt, g.device).zero_()
    n_bags = g._shape[0]
    if n_bags and D_:
        gin = interp_bf16_in(g)
        pin = None if psw is None else interp_bf16_in(psw)
        bd = _block_d(D_)
        _bag_bwd_kernel[(n_bags, cdiv(D_, bd))](
            ptr(gin), ptr(idx), ptr(offsets if offsets is not None else idx), ptr(pin if pin is not None else gin),
            ptr(gw), D_, padding_idx, HAS_OFFSETS=offsets is not None, HAS_PSW=psw is not None,
            MEAN=mode == "mean", CT=ACC[acc_dt], BLOCK_D=bd)
    return gw if w_dtype == acc_dt else gw.to(w_dtype)


def _psw_grad(g, w, idx, offsets, psw):
    """d out / d per_sample_weights: the dot of each index's weight row with its bag's output gradient."""
    n = idx._shape[0]
    if on_cpu(g):
        seg = np.repeat(np.arange(len(offsets._np) - 1), np.diff(offsets._np))
        ct = np.float64 if g.dtype == D.float64 else np.float32
        res = np.einsum("nd,nd->n", g._np[seg].astype(ct), w._np[idx._np].astype(ct))
        return wrap(res.astype(psw.dtype.np), psw.dtype, g.device)
    off = _idx_host(offsets)
    seg = np.repeat(np.arange(len(off) - 1), np.diff(off))
    seg_t = _host_tensor(seg.astype(np.int64)).to(g.device)
    out = empty((n,), psw.dtype, g.device)
    if n == 0:
        return out
    gin, win = interp_bf16_in(g), interp_bf16_in(w)
    res = out if (gin is g and psw.dtype == g.dtype) else empty((n,), gin.dtype, g.device)
    bd = _block_d(g._shape[1])
    _psw_grad_kernel[(n,)](ptr(gin), ptr(win), ptr(idx), ptr(seg_t), ptr(res), g._shape[1], win._stride[0],
                           win._stride[1], CT=ACC[gin.dtype], BLOCK_D=bd)
    return out if res is out else res.to(psw.dtype)


class EmbeddingBagFn(Function):
    """Bags of weight rows (bags of one without offsets: plain embedding); differentiable in weight and in the
    per-sample weights."""

    @staticmethod
    def forward(ctx, weight, idx, offsets, psw, mode, padding_idx, n_bags):
        ctx._name = "EmbeddingBackward0" if offsets is None else "EmbeddingBagBackward0"
        ctx.meta = (offsets, mode, padding_idx, weight._shape[0], weight.dtype)
        ctx.save_for_backward(weight if psw is not None else None, idx, psw)
        return _bag_fwd(weight, idx, offsets, psw, mode, n_bags)

    @staticmethod
    def backward(ctx, g):
        offsets, mode, padding_idx, num_weights, w_dtype = ctx.meta
        weight, idx, psw = ctx.saved_tensors
        g = g.contiguous()
        gw = gpsw = None
        if ctx.needs_input_grad[0]:
            gw = _bag_bwd(g, idx, offsets, psw, mode, num_weights, padding_idx, w_dtype)
        if psw is not None and ctx.needs_input_grad[3]:
            gpsw = _psw_grad(g, weight, idx, offsets, psw)
        return gw, None, None, gpsw, None, None, None


def _host_tensor(arr):
    """An int64 host array as a cpu tensor (to be moved with ``.to(device)``)."""
    return Tensor._wrap_numpy(np.ascontiguousarray(arr, np.int64))


def _check_indices(name, idx, num_weights):
    """Indices as a flat contiguous int64 tensor, after checking their type and range (on ``cuda`` one min/max
    kernel and a read of its results, not of the indices)."""
    if idx.dtype not in (D.int64, D.int32):
        raise RuntimeError(f"Expected tensor for argument #1 'indices' to have one of the following scalar types: "
                           f"Long, Int; but got {idx.dtype} instead (while checking arguments for {name})")
    flat = idx.reshape(-1).to(D.int64).contiguous()
    if on_cpu(flat):
        a = flat._np
        check_range([(int(a.min()), int(a.max())) if a.size else (0, 0)], num_weights, _bad_index)
    else:
        check_index_range(flat, num_weights, _bad_index)
    return flat


def _bad_index(i):
    return IndexError("index out of range in self")


def _renorm_(weight, host_idx, max_norm, norm_type):
    """The rows of ``weight`` named by ``host_idx`` rescaled to at most ``max_norm`` in place, not recorded."""
    rows = np.unique(host_idx)
    if rows.size == 0 or weight._shape[1] == 0:
        return
    with no_grad():
        if on_cpu(weight):
            embedding_renorm_np(weight._np, rows, max_norm, norm_type)
        else:
            rows_t = _host_tensor(rows.astype(np.int64)).to(weight.device)
            win = interp_bf16_in(weight)
            _renorm_kernel[(rows.size,)](ptr(win), ptr(rows_t), weight._shape[1], win._stride[0], win._stride[1],
                                         float(max_norm), NORM=float(norm_type), CT=ACC[win.dtype],
                                         BLOCK_D=max(16, next_pow2(weight._shape[1])))
            if win is not weight:
                weight._np[...] = interp_bf16_out(win, weight.dtype)._np
        weight._storage.version += 1


def _check_weight(name, weight, idx):
    if weight.ndim != 2:
        raise RuntimeError(f"'weight' must be 2-D, got a {weight.ndim}-D tensor (in {name})")
    if idx.device != weight.device:
        raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, "
                           f"{weight.device} and {idx.device}!")


@register("embedding", method=False)
def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False):
    """``weight[input]``: rows of the (num_embeddings, embedding_dim) table, shaped ``input.shape + (dim,)``;
    ``padding_idx`` rows get no gradient; ``max_norm`` first rescales the referenced rows of ``weight`` in place."""
    if sparse:
        raise NotImplementedError("embedding: sparse=True (sparse gradients) is not supported by tritorch")
    if scale_grad_by_freq:
        raise NotImplementedError("embedding: scale_grad_by_freq=True is not supported by tritorch")
    _check_weight("embedding", weight, input)
    num = weight._shape[0]
    if padding_idx is not None:
        if padding_idx > 0:
            assert padding_idx < num, "Padding_idx must be within num_embeddings"
        elif padding_idx < 0:
            assert padding_idx >= -num, "Padding_idx must be within num_embeddings"
            padding_idx = num + padding_idx
    flat = _check_indices("embedding", input, num)
    if max_norm is not None:
        _renorm_(weight, _idx_host(flat), max_norm, norm_type)
    out = EmbeddingBagFn.apply(weight, flat, None, None, "sum", -1 if padding_idx is None else padding_idx,
                               flat._shape[0])
    return out if input.ndim == 1 else out.reshape(tuple(input._shape) + (weight._shape[1],))


@register("embedding_bag", method=False)
def embedding_bag(input, weight, offsets=None, max_norm=None, norm_type=2, scale_grad_by_freq=False, mode="mean",
                  sparse=False, per_sample_weights=None, include_last_offset=False, padding_idx=None):
    """Sums (``mode="sum"``) or averages (``"mean"``) of bags of weight rows: ``input`` is 2-D (B, L) (bags of L
    indices) or 1-D with ``offsets`` marking where each bag starts; ``per_sample_weights`` scales each row (sum
    only). Rows of ``padding_idx`` are left out of the bags."""
    if sparse:
        raise NotImplementedError("embedding_bag: sparse=True (sparse gradients) is not supported by tritorch")
    if scale_grad_by_freq:
        raise NotImplementedError("embedding_bag: scale_grad_by_freq=True is not supported by tritorch")
    if mode not in MODES:
        raise ValueError(f"mode has to be one of sum, mean or max, but got {mode}")
    if mode == "max":
        raise NotImplementedError("embedding_bag: mode='max' is not supported by tritorch")
    if per_sample_weights is not None and mode != "sum":
        raise NotImplementedError(f"embedding_bag: per_sample_weights was not None. per_sample_weights is only "
                                  f"supported for mode='sum' (got mode='{mode}'). Please open a feature request "
                                  f"on GitHub.")
    _check_weight("embedding_bag", weight, input)
    num = weight._shape[0]
    if input.ndim == 2:
        if offsets is not None:
            raise ValueError("if input is 2D, then offsets has to be None, as input is treated is a mini-batch of "
                             "fixed length sequences. However, found offsets of type Tensor")
        B, L = input._shape
        off_host = np.arange(B, dtype=np.int64) * L
    elif input.ndim == 1:
        if offsets is None:
            raise ValueError("offsets has to be a 1D Tensor but got None")
        if offsets.ndim != 1:
            raise ValueError("offsets has to be a 1D Tensor")
        off_host = _idx_host(offsets)
        if include_last_offset:
            off_host = off_host[:-1]
    else:
        raise ValueError(f"input has to be 1D or 2D Tensor, but got Tensor of dimension {input.ndim}")
    flat = _check_indices("embedding_bag", input, num)
    host = _idx_host(flat)
    n = host.size
    if off_host.size and (off_host[0] != 0 or np.any(np.diff(off_host) < 0) or off_host[-1] > n):
        raise ValueError(f"offsets must start at 0, be non-decreasing and at most the number of indices ({n})")
    psw = None
    if per_sample_weights is not None:
        if tuple(per_sample_weights._shape) != tuple(input._shape):
            raise ValueError(f"embedding_bag: If per_sample_weights ({list(per_sample_weights._shape)}) is not "
                             f"None, then it must have the same shape as the input ({list(input._shape)})")
        psw = per_sample_weights.reshape(-1).contiguous()
    if padding_idx is not None:
        padding_idx = padding_idx + num if padding_idx < 0 else padding_idx
        keep = host != padding_idx
        if not keep.all():
            # drop the padding entries; bag boundaries move to the kept indices before them
            csum = np.concatenate([[0], np.cumsum(keep)])
            off_host = csum[off_host]
            flat = _host_tensor(host[keep]).to(weight.device)
            if psw is not None:
                psw = psw[_host_tensor(np.nonzero(keep)[0]).to(weight.device)]
            host = host[keep]
    if max_norm is not None:
        _renorm_(weight, host, max_norm, norm_type)
    bounds = np.append(off_host, host.size).astype(np.int64)
    off_t = _host_tensor(bounds).to(weight.device)
    return EmbeddingBagFn.apply(weight, flat, off_t, psw, mode, -1, int(off_host.size))
