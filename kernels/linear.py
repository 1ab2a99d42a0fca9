"""``linear`` (``y = dropout(act(x @ W^T + b)) + r``) as one fused kernel, its backward, and ``bilinear``.

Forward: ``_linear_kernel`` is the tiled matmul of ``kernels/matmul.py`` specialised to a layer: W is read through
its own strides as W^T (no transposed copy), and the bias add and the activation run in the epilogue on the float32
(float64) accumulator, so the pre-activation never makes a trip to memory unless the backward needs it (gelu,
silu, elu, leaky_relu differentiate from their input; relu, sigmoid, tanh from their output). Optional dropout
draws the Philox counters the separate ``dropout`` would and drops the same elements (no mask is stored), and an
optional residual ``r`` (the skip connection of ``x + layer(h)``) is added last; each after rounding to the output
dtype as the separate op would, so the fused result equals the eager ops bit for bit; the residual's gradient is
the incoming one. Optionally (float32, float64) x goes through an activation as its tiles load (``x_act``: a previous
layer's, not stored: ``kernels/linear_chain.py``), or a row norm (``x_norm``: one column of tiles stores x normalized).

Backward (``kernels/linear_grad.py``): ``_act_grad_kernel`` applies dropout's mask (regenerated) and the
activation's derivative to the incoming gradient in one pass; then the two products grad_x = g' @ W and
grad_W = g'^T @ x and the bias gradient (the column sums of g') are one launch. With create_graph the rule is
written with tensor ops (the project's matmul on transposed views) and so differentiates again.

The activations are the elementwise module's (``UNARY``): the same Triton math, NumPy reference and derivatives.
"""
import math

import numpy as np
import triton
import triton.language as tl

from tritorch import _dtype as D, autotune
from tritorch._device import INTERPRET
from tritorch._tensor import Tensor, register
from tritorch.autograd.function import Function, pending_grad
from tritorch.autograd.grad_mode import STATE
from ._launch import ACC, ptr, cdiv, is_int64_index, interp_bf16_in, broadcast_shapes
from ._common import check_same_device, copy_host, empty, np_ct, wrap
from ._pointwise import _identity, launch_pointwise
from .dropout import Dropout, check_p, draw, dropout, dropout_np, dropout_scale, keep_tile
from .elementwise import BINARY, UNARY, unary
from . import matmul as _mm
from .linear_grad import act_np, check_x_act, fits_epilogue, launch_act_grad, launch_linear_grad
from .norm import norm_tile, row_stats

__all__ = ["linear", "bilinear", "launch_linear", "launch_act_grad", "act_grad", "ACTIVATIONS", "Linear",
           "pre_activation_grad", "param_grads", "residual_view"]

# the activations an epilogue can apply (UNARY ops), with the default of their parameter (slope, alpha)
ACTIVATIONS = {"relu": 0.0, "leaky_relu": 0.01, "elu": 1.0, "gelu": 0.0, "gelu_tanh": 0.0, "silu": 0.0,
               "sigmoid": 0.0, "tanh": 0.0}

# ====================================================================================================================
# The kernels
# ====================================================================================================================


@triton.jit(do_not_specialize=["seed", "offset", "p", "scale_bits"])
def _linear_kernel(x_ptr, w_ptr, bias_ptr, y_ptr, z_ptr, r_ptr, M, N, K,
                   sxm, sxk, swn, swk, sbn, sym, syn, sro, sri, RI, srn, a, seed, offset, p, scale_bits, xa,
                   nw_ptr, nb_ptr, xn_ptr, mean_ptr, rstd_ptr, sxnm, eps,
                   X_ACT: tl.constexpr, X_NORM: tl.constexpr, NORM_W: tl.constexpr, NORM_B: tl.constexpr,
                   HAS_BIAS: tl.constexpr, ACT: tl.constexpr, SAVE_Z: tl.constexpr,
                   SAVE_A: tl.constexpr,
                   DROPOUT: tl.constexpr, HAS_RES: tl.constexpr, CT: tl.constexpr,
                   PRECISION: tl.constexpr, I64: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                   BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr):
    """One (BLOCK_M, BLOCK_N) tile of y = dropout(ACT(x @ W^T + bias, a)) (+ r) for x: (M, K), W: (N, K), bias: (N,).

    ``a`` is the activation's parameter (slope, alpha); ``sbn`` is 0 for a one-element bias. With ``SAVE_Z`` the
    pre-activation, with ``SAVE_A`` the activation's result before dropout and residual, is stored too (``z_ptr``,
    same strides as y), for the backward. With ``DROPOUT`` the activation rounded to y's dtype is kept and scaled
    (by the float64 whose bits are ``scale_bits``) where ``keep_tile(seed, offset, ...)``, zeroed elsewhere, as the
    separate ``dropout`` would. With ``HAS_RES`` the residual r is added to that rounded to y's dtype: its row m is
    at (m // RI) * sro + (m % RI) * sri (a 2-D r: RI = M, sri its row stride; a 3-D r of shape (., RI, N), a
    permuted view read without a copy: its two leading strides), its column n at n * srn. With ``X_ACT`` x's tiles
    go through X_ACT(., xa) as they load: x is a previous layer's pre-activation, whose activation is not stored.
    With ``X_NORM`` (1: layer norm, 2: RMS norm) x's rows are normalized as they load (``norm_tile``: (x - mean) *
    rstd [* nw (K,)] [+ nb (K,)], the stats taken first by ``row_stats`` with ``eps``) and rounded to x's dtype, as
    the separate norm stores them; the programs of the first column of tiles store that normalized x at xn_ptr
    (row stride ``sxnm``, columns contiguous) and the rows' mean and rstd (M,), which the backward reads.
    """
    pid = tl.program_id(0)
    pid_m, pid_n = _mm.grouped_tile(pid, tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N), GROUP_M)

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    if I64:
        offs_m = offs_m.to(tl.int64)
        offs_n = offs_n.to(tl.int64)
    # rows/cols past the edge wrap around to valid ones: the loads need no M/N mask, the store drops them
    offs_xm = offs_m % M
    offs_wn = offs_n % N
    offs_k = tl.arange(0, BLOCK_K)
    x_ptrs = x_ptr + offs_xm[:, None] * sxm + offs_k[None, :] * sxk
    w_ptrs = w_ptr + offs_k[:, None] * swk + offs_wn[None, :] * swn          # a (BLOCK_K, BLOCK_N) tile of W^T

    if X_NORM:
        mean, rstd = row_stats(x_ptr + offs_xm * sxm, sxk, K, eps, X_NORM == 2, CT, BLOCK_M, BLOCK_K)
        first = offs_m < tl.where(pid_n == 0, M, 0)     # one column of tiles stores the stats and the normalized x
        tl.store(mean_ptr + offs_m, mean, mask=first)
        tl.store(rstd_ptr + offs_m, rstd, mask=first)

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=CT)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        k_left = K - k * BLOCK_K
        x = tl.load(x_ptrs, mask=offs_k[None, :] < k_left, other=0.0)
        if X_ACT is not None:       # masked k: w's zeros meet X_ACT(0), finite
            x = X_ACT(x.to(CT), xa, 0.0).to(x.dtype)
        if X_NORM:                  # masked k: 0
            x = norm_tile(x, mean, rstd, nw_ptr, nb_ptr, k * BLOCK_K + offs_k, K, NORM_W, NORM_B, CT).to(x.dtype)
            tl.store(xn_ptr + offs_m[:, None] * sxnm + (k * BLOCK_K + offs_k)[None, :], x,
                     mask=first[:, None] & (offs_k[None, :] < k_left))
        w = tl.load(w_ptrs, mask=offs_k[:, None] < k_left, other=0.0)
        acc = tl.dot(x, w, acc, input_precision=PRECISION, out_dtype=CT)
        x_ptrs += BLOCK_K * sxk
        w_ptrs += BLOCK_K * swk

    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_wn * sbn)
        acc += bias.to(CT)[None, :]
    y_offs = offs_m[:, None] * sym + offs_n[None, :] * syn
    y_mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    if SAVE_Z:
        tl.store(z_ptr + y_offs, acc.to(z_ptr.dtype.element_ty), mask=y_mask)
    acc = ACT(acc, a, 0.0)
    if SAVE_A:
        tl.store(z_ptr + y_offs, acc.to(z_ptr.dtype.element_ty), mask=y_mask)
    if DROPOUT:
        scale = scale_bits.to(tl.int64).to(tl.float64, bitcast=True).to(CT)
        keep = keep_tile(seed, offset, offs_m, offs_n, N, p)
        acc = tl.where(keep, acc.to(y_ptr.dtype.element_ty).to(CT) * scale, 0.0)
    if HAS_RES:
        r_row = (offs_m // RI) * sro + (offs_m % RI) * sri
        r = tl.load(r_ptr + r_row[:, None] + offs_n[None, :] * srn, mask=y_mask, other=0.0)
        acc = acc.to(y_ptr.dtype.element_ty).to(CT) + r.to(CT)
    tl.store(y_ptr + y_offs, acc.to(y_ptr.dtype.element_ty), mask=y_mask)


# ====================================================================================================================
# Launches (GPU or interpreter) and their NumPy references, with one signature each
# ====================================================================================================================

# The matmul candidates that spill in this kernel (its bias and activation epilogue costs registers the matmul's
# does not; tritorch compile-check, sm_90a, triton 3.8: 40-60 B of spills per thread; 64x64x32 with 8 warps on CUDA
# cores: 12 B with a bias under triton 3.6). ``_FMA_HERE`` takes the place of the last one; with dropout (Philox per
# element) ``_FMA_DROPOUT`` takes that of ``_FMA_HERE`` (which spilled 8-16 B with tanh and dropout, float32, triton
# 3.6 and 3.9).
_SPILLS_HERE = (_mm.MatmulConfig(128, 64, 32, 8, 4, 4), _mm.MatmulConfig(128, 64, 16, 8, 4, 3),
                _mm.MatmulConfig(64, 128, 16, 8, 4, 3), _mm.MatmulConfig(64, 64, 32, 8, 8, 3))
_FMA_HERE = _mm.MatmulConfig(64, 64, 16, 8, 8, 3)
_FMA_DROPOUT = _mm.MatmulConfig(32, 64, 16, 8, 4, 3)
# ... and with a prologue on x's loads (``_small_tiles``' key[9]: x's activation with a residual; sm_90a, triton 3.9:
# 8 B of spills per thread)
_SPILLS_PROLOGUE = (_mm.MatmulConfig(16, 64, 64, 8, 4, 3),)
# ... and with a row norm's (4 B: with an RMS norm's, triton 3.6; with a layer norm's without parameters, triton
# 3.8): the float32 defaults of products, ``_FMA_HERE`` in their place
_SPILLS_NORM = (_mm.MatmulConfig(64, 128, 32, 8, 8, 3), _mm.MatmulConfig(64, 64, 32, 8, 8, 3))


def _small_tiles(key):
    """Whether the epilogue needs tiles of at most 32 accumulators per thread (``fits_epilogue``): gelu_tanh (key[1]:
    128 x 128 with 8 warps, 64 x 128 and 128 x 64 with 4 spilled 40-120 B, triton 3.9) and dropout (key[8]: Philox
    per element; those tiles spilled 0.1-1.5 KB, triton 3.9); and x's activation or row norm as it loads
    (key[9])."""
    return key[1] == "gelu_tanh" or _dropout(key) or len(key) > 9


_NORMS = ("layer_norm", "rms_norm")
"""The last item of the key of a linear whose x is normalized as it loads (``launch_linear``'s ``x_norm``)."""


def _dropout(key):
    return len(key) > 8 and key[8]


def _prune(configs, key):
    """The matmul's candidates less those that spill here (``_SPILLS_HERE``, ``_SPILLS_PROLOGUE`` with a prologue,
    ``_SPILLS_NORM`` with a norm, and big tiles per ``_small_tiles``),
    ``_FMA_HERE`` on CUDA cores (``_FMA_DROPOUT`` with dropout)."""
    keep = [c for c in _mm.prune(configs, key) if c not in _SPILLS_HERE and c != _FMA_DROPOUT]
    if _mm.uses_fma(key[0]) and _FMA_HERE in configs:
        keep.append(_FMA_HERE)
    if _mm.uses_fma(key[0]) and _dropout(key):
        keep = [_FMA_DROPOUT if c == _FMA_HERE else c for c in keep]
    keep = [c for c in dict.fromkeys(keep) if not (len(key) > 9 and c in _SPILLS_PROLOGUE or
                                                   key[-1] in _NORMS and c in _SPILLS_NORM)]
    return [c for c in keep if fits_epilogue(c)] if _small_tiles(key) else keep


def _default(key):
    """The matmul's default for the product's shape and dtype, with ``_FMA_HERE`` (``_FMA_DROPOUT``) for a tile that
    spills here (with a norm: in ``_SPILLS_NORM``) and 128 x 64 with 8 warps for a tile too big for the epilogue
    (``_small_tiles``)."""
    c = _mm.matmul_config(key[4], key[5], key[6], key[0], _mm.uses_fma(key[0]))
    if key[-1] in _NORMS and c in _SPILLS_NORM:
        return _FMA_HERE
    if (c in _SPILLS_HERE or c == _FMA_HERE) and _mm.uses_fma(key[0]):
        return _FMA_DROPOUT if _dropout(key) else _FMA_HERE
    return _mm.MatmulConfig(128, 64, c.block_k, 8, 8, 3) if _small_tiles(key) and not fits_epilogue(c) else c


TUNABLE = autotune.Tunable("linear", _mm.ALL_CANDIDATES + (_FMA_HERE, _FMA_DROPOUT), prune=_prune, default=_default,
                           kernels=(_linear_kernel,))


def launch_linear(x, w, bias, y, z=None, act=None, a=0.0, config=None, residual=None, drop=None, x_act=None,
                  x_norm=None):
    """``y = dropout(act(x @ w.T + bias)) + residual`` for x: (M, K), w: (N, K), bias: (N,) / (1,) / () or None,
    residual (N,) (M = 1), (M, N), (P, Q, N) with P * Q = M, or None, any strides; ``drop``: None or dropout's
    (seed, offset, p) for a contiguous y. With ``z`` what the activation's derivative reads (``bwd_uses``: the
    pre-activation, or the activation's result before dropout and residual) is stored there as well. ``x_act``:
    None, or (act, a) of a float32/float64 x's activation, applied to x as it loads. ``x_norm``: None, or (nw, nb,
    eps, rms, xn, mean, rstd) of a row norm of a float32/float64 x applied as it loads (nw, nb: (K,) or None; rms:
    the RMS norm's, nb None), which stores the normalized x in xn (M, K) (columns contiguous) and the rows' stats in
    mean and rstd (M,). Returns y."""
    M, N, K = x._shape[0], w._shape[0], x._shape[1]
    check_x_act(x_act, x.dtype)
    _check_x_norm(x_norm, x_act, x, N)
    if M == 0 or N == 0:
        return y
    if INTERPRET and y.dtype is D.bfloat16:
        y32 = empty(y._shape, D.float32, y.device)
        z32 = None if z is None else empty(z._shape, D.float32, z.device)
        launch_linear(x, w, bias, y32, z32, act, a, config)
        if z is not None:
            copy_host(z, z32)
        copy_host(y, y32)
        if drop is not None:        # dropout of the result rounded to bf16, rounded again, as the GPU kernel does
            y._np[...] = dropout_np(y._np, 1, *drop)
        if residual is not None:    # the rounding to bf16 comes first: the add runs as its own (interpreted) kernel
            r = interp_bf16_in(residual.reshape(y._shape))
            launch_pointwise(BINARY["add"].tfn, (interp_bf16_in(y), r), y32, tl.float32, 1.0)
            copy_host(y, y32)
        return y
    dtype = x.dtype
    x, w, bias, residual = interp_bf16_in(x), interp_bf16_in(w), interp_bf16_in(bias), interp_bf16_in(residual)
    sbn = bias._stride[-1] if bias is not None and bias.ndim and bias._shape[-1] != 1 else 0
    cfg = config
    if cfg is None:
        run = lambda c: launch_linear(x, w, bias, y, z, act, a, c, residual, drop, x_act, x_norm)  # noqa: E731
        cfg = TUNABLE.pick((dtype, act) + _mm._key(x, w, M, N, K, dtype)[1:] + (residual is not None,
                                                                                 drop is not None)
                           + ((x_act[0],) if x_act is not None else ())
                           + ((_NORMS[x_norm[3]],) if x_norm is not None else ()), run)
    fn = _identity if act is None else UNARY[act].tfn
    seed, offset, p = drop if drop is not None else (0, 0, 0.0)
    try:
        _linear_kernel[(cdiv(M, cfg.block_m) * cdiv(N, cfg.block_n),)](
            ptr(x), ptr(w), ptr(bias if bias is not None else y), ptr(y), ptr(z if z is not None else y),
            ptr(residual if residual is not None else y), M, N, K,
            x._stride[0], x._stride[1], w._stride[0], w._stride[1], sbn, y._stride[0], y._stride[1],
            *_residual_rows(residual, M), residual._stride[-1] if residual is not None else 0, float(a),
            seed, offset, float(p), dropout_scale(p)[1], float(x_act[1]) if x_act is not None else 0.0,
            *_norm_args(x_norm, y),
            X_ACT=None if x_act is None else UNARY[x_act[0]].tfn, X_NORM=0 if x_norm is None else 2 if x_norm[3] else 1,
            NORM_W=x_norm is not None and x_norm[0] is not None, NORM_B=x_norm is not None and x_norm[1] is not None,
            HAS_BIAS=bias is not None, ACT=fn,
            SAVE_Z=z is not None and UNARY[act].bwd_uses == "x", SAVE_A=z is not None and UNARY[act].bwd_uses != "x",
            DROPOUT=drop is not None,
            HAS_RES=residual is not None, CT=ACC[dtype],
            PRECISION=_mm._dot_precision(dtype),
            I64=is_int64_index(max(x.numel(), w.numel(), y.numel()), x, w, y,
                               *(() if residual is None else (residual,))),
            BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k, GROUP_M=cfg.group_m,
            num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    except triton.CompilationError as e:
        raise _mm.dot_error("linear", dtype, e) from None
    return y


def _check_x_norm(x_norm, x_act, x, N):
    """Validates ``launch_linear``'s ``x_norm``: float32/float64 x, no ``x_act``, (K,) contiguous parameters of x's
    dtype, an (M, K) xn with contiguous rows, (M,) stats, and N > 0 (tiles to store them)."""
    if x_norm is None:
        return
    nw, nb, eps, rms, xn, mean, rstd = x_norm
    M, K = x._shape
    ok = x.dtype in (D.float32, D.float64) and x_act is None and not (rms and nb is not None) and \
        all(t is None or t._shape == (K,) and t.dtype is x.dtype and t.is_contiguous() for t in (nw, nb)) and \
        xn._shape == (M, K) and xn.dtype is x.dtype and (K < 2 or xn._stride[1] == 1) and \
        all(t._shape == (M,) and t.is_contiguous() for t in (mean, rstd)) and N > 0
    if not ok:
        raise ValueError(f"launch_linear: x_norm needs a float32/float64 x without x_act, (K,) = ({K},) contiguous "
                         f"parameters of its dtype, an ({M}, {K}) xn with contiguous rows, ({M},) stats and N > 0")


def _norm_args(x_norm, y):
    """``_linear_kernel``'s (nw_ptr, nb_ptr, xn_ptr, mean_ptr, rstd_ptr, sxnm, eps) for ``x_norm`` (y's pointer
    where there is none)."""
    if x_norm is None:
        return ptr(y), ptr(y), ptr(y), ptr(y), ptr(y), 0, 0.0
    nw, nb, eps, rms, xn, mean, rstd = x_norm
    return (ptr(nw if nw is not None else y), ptr(nb if nb is not None else y), ptr(xn), ptr(mean), ptr(rstd),
            xn._stride[0], float(eps))


def _residual_rows(r, M):
    """(sro, sri, RI) of ``_linear_kernel``: the strides of the residual's row index split as (m // RI, m % RI)."""
    if r is None or r.ndim == 1:
        return 0, 0, 1
    if r.ndim == 2:
        return 0, r._stride[0], M
    return r._stride[0], r._stride[1], r._shape[1]


def _np_linear(x, w, bias, act, a, save_z, dtype, residual=None, drop=None):
    """NumPy reference of ``launch_linear`` on host arrays: returns (y, z or None) in ``dtype``, computed in float32
    for half types and float64 for float64 (integers exactly, without activation); z (with ``save_z``) is what the
    activation's derivative reads. Dropout and then the residual apply to y rounded to ``dtype``, as the separate
    ops would."""
    ct = np_ct(dtype) if dtype.is_floating_point else dtype.np
    z = x.astype(ct, copy=False) @ w.astype(ct, copy=False).T
    if bias is not None:
        z = z + bias.astype(ct, copy=False)
    y, s = z.astype(dtype.np, copy=False), None
    if act is not None:
        y = act_np(z, act, a, dtype)
        if save_z:
            s = z.astype(dtype.np, copy=False) if UNARY[act].bwd_uses == "x" else y
    if drop is not None:
        y = dropout_np(y, 1, *drop)
    if residual is not None:
        with np.errstate(all="ignore"):
            y = (y.astype(ct) + residual.reshape(y.shape).astype(ct, copy=False)).astype(dtype.np, copy=False)
    return y, s


def _np_act_grad(g, s, act, a, dtype, drop=None):
    """NumPy reference of ``launch_act_grad``."""
    ct = np_ct(dtype)
    if drop is not None:
        g = dropout_np(g, 1, *drop)
    with np.errstate(all="ignore"):
        gz = np.asarray(UNARY[act].bwd_ref(g.astype(ct, copy=False), s.astype(ct, copy=False), a), dtype=ct)
    return gz.astype(dtype.np, copy=False)


# ====================================================================================================================
# The autograd Function
# ====================================================================================================================

class Linear(Function):
    """``dropout(act(x @ w.T + bias)) + residual`` as an (M, N) result for x (*, K) (M rows: its leading dims, taken
    as a view where they merge, with no node of their own), w (N, K), bias (N,) / (1,) / () or None, residual (rows
    of N elements: see ``launch_linear``) or None and dropout's counters ``drop`` = (seed, offset, p) or None; inputs
    are validated by ``linear``. Backward adds the gradient already waiting for x (x read by several layers: the
    q/k/v or gate/up projections of one input) into grad_x in its kernel (``_accumulates``); without an activation
    its products read g through the dropout's mask (one launch, no masked copy of g). ``linear_chain``'s keywords:
    ``x_act`` = (act, a) reads act(x) for x (grad_x through act's derivative, in grad_x's epilogue); ``defer``
    returns the pre-activation, act left to the next layer's loads; ``x_norm`` (not on cpu) = ``launch_linear``'s
    normalizes x as it loads: the layer's input is then the normalized x it stores (xn), saved in x's place, and
    its gradient is that of xn."""

    _accumulates = (0,)

    @staticmethod
    def forward(ctx, x, w, bias, act=None, a=0.0, residual=None, drop=None, *, x_act=None, defer=False,
                x_norm=None):
        ctx.x_shape, x_in = x._shape, (x if x_norm is None else x_norm[4])
        x = _rows(x)
        M, N = x._shape[0], w._shape[0]
        need = any(ctx.needs_input_grad[:3])
        op = UNARY[act] if act is not None else None
        # ``defer`` (``linear_chain``), where it saves a store: the result is the pre-activation, which the
        # derivative reads, and the next layer applies the activation as it loads it (its ``x_act``)
        defer = defer and need and op is not None and op.bwd_uses == "x" and drop is None and residual is None \
            and x._storage.device.type != "cpu" and x.dtype in (D.float32, D.float64)
        # what the activation's derivative reads, when y cannot serve: the pre-activation, or with dropout or a
        # residual the activation's result before them
        save_z = need and op is not None and not defer and \
            (op.bwd_uses == "x" or residual is not None or drop is not None)
        if x._storage.device.type == "cpu":
            xs = x._np if x_act is None else act_np(x._np, *x_act, x.dtype)
            y, z = _np_linear(xs, w._np, None if bias is None else bias._np, None if defer else act, a, save_z,
                              x.dtype, None if residual is None else residual._np, drop)
            y = wrap(y, x.dtype, x.device)
            z = None if z is None else wrap(z, x.dtype, x.device)
        else:
            y = empty((M, N), x.dtype, x.device)
            z = empty((M, N), x.dtype, x.device) if save_z else None
            launch_linear(x, w, bias, y, z, None if defer else act, a, residual=residual, drop=drop, x_act=x_act,
                          x_norm=x_norm)
        ctx.res_shape, ctx.drop, ctx.x_act, ctx.deferred = (None if residual is None else residual._shape), drop, \
            x_act, defer
        if need:
            ctx._name = ("AddmmActivationBackward0" if act is not None else
                         "AddmmBackward0" if bias is not None else "MmBackward0")
            ctx.act, ctx.a = act, a
            ctx.bias_shape = None if bias is None else bias._shape
            need_x, need_w = ctx.needs_input_grad[:2]
            # x, w and bias also come back for a double backward through the pre-activation (see ``backward``)
            keep = save_z or defer
            # (x also for grad_x through x_act's derivative)
            ctx.save_for_backward(x_in if need_w or keep or x_act is not None else None, w if need_x or keep else None,
                                  bias if keep else None, None if op is None else (z if save_z else y))
        return y

    @staticmethod
    def backward(ctx, g):
        needs = ctx.needs_input_grad
        need_x, need_w, need_b = needs[:3]
        # the residual's gradient: the incoming one, in the residual's shape
        gr = g.reshape(ctx.res_shape) if len(needs) > 5 and needs[5] else None
        if not (need_x or need_w or need_b):
            return None, None, None, None, None, gr, None
        x, w, bias, s = ctx.saved_tensors
        x = None if x is None else _rows(x)          # recorded under create_graph: a double backward reaches x
        if g._storage.device.type == "cpu" and not STATE.enabled:
            gx, gw, gb = _np_linear_bwd(g, x, w, s, ctx, need_x, need_w, need_b)[:3]
        elif not STATE.enabled:
            add = pending_grad(ctx, 0, g, ctx.x_shape) if need_x else None
            g_drop = ctx.drop if ctx.act is None else None      # dropout's backward read by the products
            gx, gw, gb = param_grads(ctx, g if g_drop is not None else pre_activation_grad(ctx, g, s), x, w,
                                     add=None if add is None else add.reshape(-1, ctx.x_shape[-1]), g_drop=g_drop)
        else:
            gx, gw, gb = Linear._composite_grads(ctx, g, x, w, bias, s)
        gx = gx.reshape(ctx.x_shape) if gx is not None and gx._shape != ctx.x_shape else gx
        return gx, gw, gb, None, None, gr, None

    @staticmethod
    def _composite_grads(ctx, g, x, w, bias, s):
        """(gx, gw, gb) under create_graph: the derivative in differentiable tensor ops."""
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        drop = ctx.drop
        x_in, x = x, (x if ctx.x_act is None else unary(ctx.x_act[0], x, ctx.x_act[1]))    # recorded
        gz = g if drop is None else Dropout.apply(g, drop[0], drop[1], drop[2], 1)    # dropout's backward
        if ctx.act is not None:
            if UNARY[ctx.act].bwd_uses == "x":
                s = Linear.apply(x, w, bias)     # the saved z has no history: recompute it, recorded
            elif ctx.res_shape is not None or drop is not None:   # y is not the activation's: recompute it
                s = Linear.apply(x, w, bias, ctx.act, ctx.a)
            gz = UNARY[ctx.act].bwd_composite(gz, s, s, ctx.a)
        gb = gz.sum(0) if need_b else None
        gx = gz @ w if need_x else None
        gw = gz.t() @ x if need_w else None
        if gx is not None and ctx.x_act is not None:          # through the activation x is read with
            gx = UNARY[ctx.x_act[0]].bwd_composite(gx, x_in, x, ctx.x_act[1])
        return gx, gw, _bias_shaped(gb, ctx)


def _rows(x):
    """x (*, K) as the (M, K) matrix of its rows."""
    return x if x.ndim == 2 else x.reshape(math.prod(x._shape[:-1]), x._shape[-1])


def pre_activation_grad(ctx, g, s):
    """The gradient of the pre-activation of the ``Linear`` node ``ctx`` (no create_graph) from that of its result:
    dropout's backward (the mask regenerated) and the activation's derivative (on s: what forward saved), one
    launch."""
    if ctx.act is None:
        return g if ctx.drop is None else Dropout.apply(g, ctx.drop[0], ctx.drop[1], ctx.drop[2], 1)
    return act_grad(g, s, ctx.act, ctx.a, ctx.drop)


def param_grads(ctx, gz, x, w, epilogue=None, add=None, g_drop=None):
    """(gx, gw, gb) of the ``Linear`` node ``ctx`` (None where not needed; no create_graph) from the gradient of its
    pre-activation ``gz``: the products and the bias gradient in one launch. ``epilogue``: None or (s, act, a, drop)
    of a previous layer whose result x is (see ``launch_linear_grad``): gx is then the gradient of its
    pre-activation. ``add``: None, or (no epilogue) a contiguous (M, K) gradient added to gx. ``g_drop``: None, or
    the counters of the layer's own dropout (no activation), whose result's gradient ``gz`` is then: the products
    read it through the mask. The node's ``x_act`` is applied to x as the products read it, and without an
    ``epilogue`` its derivative is gx's (the chain passes the same one as the previous layer's)."""
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    if epilogue is None and ctx.x_act is not None and need_x:
        epilogue = (x, *ctx.x_act, None)
    one_launch = (need_x or need_w) and 0 not in gz._shape and 0 not in (w if need_x else x)._shape
    if g_drop is not None and (not one_launch or need_b and not need_w):     # dropout's backward first
        gz, g_drop = Dropout.apply(gz, g_drop[0], g_drop[1], g_drop[2], 1), None
    if not one_launch:
        gb = gz.sum(0) if need_b else None
        gx = gz @ w if need_x else None
        gw = gz.t() @ (x if ctx.x_act is None else unary(ctx.x_act[0], x, ctx.x_act[1])) if need_w else None
        if gx is not None and epilogue is not None:
            gx = act_grad(gx, epilogue[0], *epilogue[1:])
        gx = gx + add if add is not None else gx
    else:
        gx, gw, gb = _grads(gz, w, x, need_x, need_w, need_b, epilogue, add if epilogue is None else None, g_drop,
                            ctx.x_act)
        gx = gx + add if add is not None and epilogue is not None else gx
    return gx, gw, _bias_shaped(gb, ctx)


def _bias_shaped(gb, ctx):
    """The bias gradient in the bias's shape: summed for a one-element bias broadcast over the columns."""
    return gb.sum().reshape(ctx.bias_shape) if gb is not None and gb._shape != ctx.bias_shape else gb


def _np_linear_bwd(g, x, w, s, ctx, need_x, need_w, need_b):
    """NumPy reference of the backward (the ``cpu`` path): gz = g * act'(.), then gz @ w, gz.T @ x, column sums."""
    dtype = g.dtype
    ct = np_ct(dtype)
    ga = g._np if ctx.drop is None else dropout_np(g._np, 1, *ctx.drop)
    if ctx.act is None:
        gz = ga.astype(ct, copy=False)
    else:
        with np.errstate(all="ignore"):
            gz = np.asarray(UNARY[ctx.act].bwd_ref(ga.astype(ct, copy=False), s._np.astype(ct, copy=False), ctx.a),
                            dtype=ct)

    def out(a):
        return wrap(np.ascontiguousarray(a, dtype=dtype.np), dtype, g.device)
    gx = gz @ w._np.astype(ct, copy=False) if need_x else None
    if gx is not None and ctx.x_act is not None:         # through the activation x is read with
        gx = _np_act_grad(gx, x._np, *ctx.x_act, dtype)
    gx = out(gx) if need_x else None
    gw = None
    if need_w:
        xs = x._np if ctx.x_act is None else act_np(x._np, *ctx.x_act, dtype)
        gw = out(gz.T @ xs.astype(ct, copy=False))
    gb = None
    if need_b:
        gb = gz.sum(0)
        if gb.shape != ctx.bias_shape:          # a one-element bias broadcast over the columns
            gb = gb.sum().reshape(ctx.bias_shape)
        gb = out(gb)
    return gx, gw, gb, None, None


def act_grad(g, s, act, a, drop=None):
    """The fused backward of the activation (and of dropout before it, with ``drop``'s counters): g * act'(.)."""
    dtype = g.dtype
    if g._storage.device.type == "cpu":
        return wrap(_np_act_grad(g._np, s._np, act, a, dtype, drop), dtype, g.device)
    gz = empty(g._shape, dtype, g.device)
    return launch_act_grad(g, s, gz, act, a, drop)


def _grads(gz, w, x, need_x, need_w, need_b, epilogue=None, add=None, g_drop=None, x_act=None):
    """(gx, gw, gb) of the pre-activation's gradient ``gz`` by ``launch_linear_grad``, in one launch (the bias
    without the weight's gradient: a reduction more)."""
    M, N = gz._shape
    K = (w if need_x else x)._shape[1]
    gx = empty((M, K), gz.dtype, gz.device) if need_x else None
    gw = empty((N, K), gz.dtype, gz.device) if need_w else None
    gb = empty((N,), gz.dtype, gz.device) if need_b and need_w else None
    launch_linear_grad(gz, w if need_x else None, x if need_w else None, gx, gw, gb, epilogue=epilogue, add=add,
                       g_drop=g_drop, x_act=x_act)
    if need_b and not need_w:
        gb = gz.sum(0)
    return gx, gw, gb


# ====================================================================================================================
# Validation and the public functions
# ====================================================================================================================

_T_NAMES = _mm._T_NAMES


def _check_tensor(name, arg, pos, t):
    if not isinstance(t, Tensor):
        raise TypeError(f"{name}(): argument '{arg}' (position {pos}) must be Tensor, not {type(t).__name__}")


@register("linear", method=False, function=False)
def linear(input, weight, bias=None, *, activation=None, alpha=None, dropout_p=0.0, residual=None):
    """``dropout(act(input @ weight.T + bias), dropout_p) + residual`` in one kernel: input (*, in_features), weight
    (out_features, in_features) or (in_features,), bias (out_features,) or None. ``torch.nn.functional.linear``
    when ``activation`` and ``residual`` are None and ``dropout_p`` is 0.

    ``activation``: one of ``ACTIVATIONS`` (relu, leaky_relu, elu, gelu, gelu_tanh, silu, sigmoid, tanh), applied
    in the kernel's epilogue; ``alpha`` is leaky_relu's negative_slope (default 0.01) or elu's alpha (default 1).
    ``dropout_p``: dropout in training mode after the activation, the same elements dropped as by the separate
    ``dropout`` (the same Philox counters, taken from the generator here), so no mask is stored: backward
    regenerates it. ``residual``: a tensor of the result's shape and dtype added last (``residual +
    linear(...)``, the skip connection ``tritorch.compile`` fuses). Each step rounds as the separate op would.
    """
    _check_tensor("linear", "input", 1, input)
    _check_tensor("linear", "weight", 2, weight)
    if bias is not None:
        _check_tensor("linear", "bias", 3, bias)
    if residual is not None:
        _check_tensor("linear", "residual", 4, residual)
    if activation is not None and activation not in ACTIVATIONS:
        raise ValueError(f"linear: unknown activation {activation!r}, expected None or one of "
                         f"{', '.join(ACTIVATIONS)}")
    a = float(ACTIVATIONS[activation] if alpha is None else alpha) if activation is not None else 0.0
    dropout_p = float(dropout_p)
    check_p(dropout_p)
    if input.ndim == 0 or weight.ndim == 0:
        raise RuntimeError(f"both arguments to linear need to be at least 1D, but they are {input.ndim}D and "
                           f"{weight.ndim}D")
    if weight.ndim > 2:
        raise RuntimeError(f"linear(): weight should be 1-D or 2-D (out_features, in_features), got shape "
                           f"{list(weight._shape)}")
    check_same_device("linear", input, weight, bias, residual)
    K = input._shape[-1]
    rows = math.prod(input._shape[:-1])
    w2 = weight if weight.ndim == 2 else weight.unsqueeze(0)
    N = w2._shape[0]
    if w2._shape[1] != K:
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({rows}x{K} and {w2._shape[1]}x{N})")
    if input.dtype is not weight.dtype:
        raise RuntimeError(f"mat1 and mat2 must have the same dtype, but got {_T_NAMES[input.dtype]} and "
                           f"{_T_NAMES[weight.dtype]}")
    if bias is not None and bias.dtype is not input.dtype:
        raise RuntimeError(f"self and mat2 must have the same dtype, but got {_T_NAMES[bias.dtype]} and "
                           f"{_T_NAMES[input.dtype]}")
    if not input.dtype.is_floating_point:
        if input.device.type != "cpu" or input.dtype is D.bool_:
            raise RuntimeError(f"\"addmm_{'cuda' if input.device.type != 'cpu' else 'impl_cpu_'}\" not implemented "
                               f"for '{_T_NAMES[input.dtype]}'")
        if activation is not None or dropout_p:
            raise RuntimeError(f"linear: a fused {activation or 'dropout'} needs a floating-point input, got "
                               f"{_T_NAMES[input.dtype]}")
    out_shape = input._shape[:-1] + ((N,) if weight.ndim == 2 else ())
    if residual is not None and (residual._shape != out_shape or residual.dtype is not input.dtype):
        raise RuntimeError(f"linear: residual must have the result's shape {list(out_shape)} and dtype "
                           f"{_T_NAMES[input.dtype]}, got {list(residual._shape)} and {_T_NAMES[residual.dtype]}")
    fused_bias = bias is None or bias._shape in ((N,), (1,), ())
    if not fused_bias:
        # a bias of another broadcastable shape: the product in the kernel, the add (and activation) as ops
        target = out_shape
        try:
            ok = broadcast_shapes(target, bias._shape) == tuple(target)
        except RuntimeError:
            ok = False
        if not ok:
            raise RuntimeError(f"The expanded size of the tensor ({N}) must match the existing size "
                               f"({bias._shape[-1]}) at non-singleton dimension {len(target) - 1}.  Target sizes: "
                               f"{list(target)}.  Tensor sizes: {list(bias._shape)}")
        z = Linear.apply(input, w2, None).reshape(out_shape) + bias
        y = z if activation is None else _act_op(activation, z, a)
        y = y if not dropout_p else dropout(y, dropout_p)
        return y if residual is None else residual + y
    drop = (*draw(math.prod(out_shape), input._storage.device), dropout_p) if dropout_p else None
    y = Linear.apply(input, w2, bias, activation, a, residual_view(residual, weight), drop)
    return y.reshape(out_shape) if y._shape != out_shape else y


def residual_view(residual, weight):
    """The residual as ``Linear`` reads it, rows of N elements (see ``launch_linear``): a view where one exists."""
    if residual is None:
        return None
    r = residual.unsqueeze(-1) if weight.ndim == 1 else residual
    return r.reshape(-1, *r._shape[-2:]) if r.ndim > 3 else r


def _act_op(activation, z, a):
    return unary(activation, z, a)


@register("bilinear", method=False)
def bilinear(input1, input2, weight, bias=None):
    """``y[..., o] = sum_ij x1[..., i] W[o, i, j] x2[..., j] + b[o]``: x1 (*, in1), x2 (*, in2), W (out, in1, in2).

    One linear kernel computes t[n, o, j] = sum_i x1[n, i] W[o, i, j], then a product with x2 and a sum over j:
    a (rows, out, in2) intermediate, never the (rows, in1, in2) outer product."""
    for pos, (arg, t) in enumerate((("input1", input1), ("input2", input2), ("weight", weight)), 1):
        _check_tensor("bilinear", arg, pos, t)
    if input1.ndim != input2.ndim:
        raise RuntimeError(f"bilinear(): input dimensions do not match: got {input1.ndim} and {input2.ndim}")
    for i in range(input1.ndim - 1):
        if input1._shape[i] != input2._shape[i]:
            raise RuntimeError(f"bilinear(): input batch dimensions do not match: got {input1._shape[i]} and "
                               f"{input2._shape[i]}")
    if weight.ndim != 3:
        raise RuntimeError(f"bilinear(): weight must be 3-D (out_features, in1_features, in2_features), got shape "
                           f"{list(weight._shape)}")
    o, i1, i2 = weight._shape
    if input1._shape[-1] != i1:
        raise RuntimeError(f"bilinear(): input1 size does not match weight size: got {input1._shape[-1]} but "
                           f"expected {i1}")
    if input2._shape[-1] != i2:
        raise RuntimeError(f"bilinear(): input2 size does not match weight size: got {input2._shape[-1]} but "
                           f"expected {i2}")
    if bias is not None and (bias.ndim == 0 or bias._shape[0] != o):
        raise RuntimeError(f"bilinear(): bias size does not match weight size: got "
                           f"{bias._shape[0] if bias.ndim else 1} but expected {o}")
    lead = input1._shape[:-1]
    x1 = input1.reshape(-1, i1)
    x2 = input2.reshape(-1, i2)
    # t[n, o, j] = sum_i x1[n, i] W[o, i, j]: one product with W as an (o * i2, i1) weight
    t = linear(x1, weight.permute(0, 2, 1).reshape(o * i2, i1)).reshape(-1, o, i2)
    out = (t * x2.unsqueeze(1)).sum(-1)
    if bias is not None:
        out = out + bias
    return out.reshape(lead + (o,))
