"""A linear layer's three gradients in one launch: grad_x = g @ W, grad_W = g^T @ x and grad_b = the column sums
of g (g: the gradient of the pre-activation, (M, N); x: (M, K); W: (N, K)).

Two products and a reduction would be three launches that each read g. ``_linear_grad_kernel`` is one grid whose
first programs compute the tiles of grad_x and whose others compute the tiles of grad_W, each with the tiled matmul
of ``kernels/matmul.py`` (``_product_tile``, called with each product's operands and strides, so either branch
keeps Triton's stride specialisations). grad_W's programs read g transposed as the left operand, tile by tile along
M: summing each loaded tile's rows is grad_b, written by the programs of grad_W's first column of tiles. No atomics:
the result is deterministic. A layer's own dropout is read through its mask as g's tiles load (no masked copy of g
is stored). Optionally grad_x's epilogue is the previous layer's activation backward (``kernels/linear_chain.py``),
the computation of ``_act_grad_kernel``, which is here too: g' = act'(dropout(g)), the gradient of a fused
activation's (and dropout's) input, for ``Linear``'s backward. With ``x_act`` grad_W's product reads x through an
activation as its tiles load (x: a previous layer's pre-activation, its activation not stored)."""
import numpy as np
import triton
import triton.language as tl

from tritorch import _dtype as D, autotune
from tritorch._device import INTERPRET
from ._launch import ACC, ptr, cdiv, is_int64_index, interp_bf16_in
from ._common import copy_host, empty, np_ct, wrap
from . import matmul as _mm
from .dropout import dropout_np, dropout_scale, keep_tile
from .elementwise import UNARY
from .matmul import grouped_tile

__all__ = ["launch_linear_grad", "launch_act_grad", "fits_epilogue", "TUNABLE"]


@triton.jit
def _product_tile(a_ptr, b_ptr, R, C, L, sar, sal, sbl, sbc, tile, seed, offset, p, scale, dr, dl, ba,
                  SUM: tl.constexpr, DROP: tl.constexpr, B_ACT: tl.constexpr, CT: tl.constexpr, PRECISION: tl.constexpr,
                  I64: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_L: tl.constexpr,
                  GROUP_R: tl.constexpr):
    """Tile ``tile`` of a (R, L) @ b (L, C), both operands through their strides (``s?r``/``s?l``/``s?c``: the
    stride of a's or b's row, reduction or column index): (the CT accumulator, with ``SUM`` the row sums of a's
    tile rows, the tile's row and column indices, its column of tiles). With ``DROP`` a's tiles go through
    dropout's backward as they load: a[r, l] is kept (times ``scale``, rounded to a's dtype as dropout stores it)
    where the draw at counter offset + r * dr + l * dl is at least p. With ``B_ACT`` b's tiles go through
    B_ACT(., ba) as they load (b: a previous layer's pre-activation)."""
    pid_r, pid_c = grouped_tile(tile, tl.cdiv(R, BLOCK_R), tl.cdiv(C, BLOCK_C), GROUP_R)
    offs_r = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    offs_c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    if I64:
        offs_r = offs_r.to(tl.int64)
        offs_c = offs_c.to(tl.int64)
    offs_l = tl.arange(0, BLOCK_L)
    # rows/columns past the edge wrap around to valid ones: only the reduction index is masked on load
    a_ptrs = a_ptr + (offs_r % R)[:, None] * sar + offs_l[None, :] * sal
    b_ptrs = b_ptr + offs_l[:, None] * sbl + (offs_c % C)[None, :] * sbc
    acc = tl.zeros((BLOCK_R, BLOCK_C), dtype=CT)
    row_sum = tl.zeros((BLOCK_R,), dtype=CT)
    for step in range(0, tl.cdiv(L, BLOCK_L)):
        left = L - step * BLOCK_L
        a = tl.load(a_ptrs, mask=offs_l[None, :] < left, other=0.0)
        b = tl.load(b_ptrs, mask=offs_l[:, None] < left, other=0.0)
        if B_ACT is not None:       # masked l: a's zeros meet B_ACT(0), finite
            b = B_ACT(b.to(CT), ba, 0.0).to(b.dtype)
        if DROP:
            ls = (step * BLOCK_L + offs_l).to(tl.int64)
            counter = offset.to(tl.int64) + offs_r[:, None].to(tl.int64) * dr + ls[None, :] * dl
            a = tl.where(tl.rand(seed, counter) >= p, a.to(CT) * scale, 0.0).to(a.dtype)
        acc = tl.dot(a, b, acc, input_precision=PRECISION, out_dtype=CT)
        if SUM:
            row_sum += tl.sum(a.to(CT), axis=1)
        a_ptrs += BLOCK_L * sal
        b_ptrs += BLOCK_L * sbl
    return acc, row_sum, offs_r, offs_c, pid_c


@triton.jit
def _act_backward(g, g_ptr, s_ptrs, mask, offs_m, offs_n, N, a, seed, offset, p, scale_bits,
                  BWD: tl.constexpr, DROPOUT: tl.constexpr, CT: tl.constexpr):
    """BWD(dropout's backward of g, s, a) for the tile at rows offs_m, columns offs_n of an (M, N) gradient: g (CT,
    as stored in g_ptr's dtype) through the forward's mask (``DROPOUT``: regenerated from (seed, offset, p), scaled
    by the float64 whose bits are ``scale_bits``, rounded to g_ptr's dtype as dropout would store it), s (the saved
    pre-activation or output) loaded at ``s_ptrs``. The one form of an activation's backward in this file:
    ``_act_grad_kernel`` and ``_linear_grad_kernel``'s epilogue."""
    if DROPOUT:
        scale = scale_bits.to(tl.int64).to(tl.float64, bitcast=True).to(CT)
        keep = keep_tile(seed, offset, offs_m, offs_n, N, p)
        g = tl.where(keep, g * scale, 0.0).to(g_ptr.dtype.element_ty).to(CT)
    s = tl.load(s_ptrs, mask=mask, other=0.0).to(CT)
    return BWD(g, s, a, 0.0)


@triton.jit(do_not_specialize=["seed", "offset", "p", "scale_bits", "g_seed", "g_offset", "g_p", "g_scale_bits"])
def _linear_grad_kernel(g_ptr, w_ptr, x_ptr, gx_ptr, gw_ptr, gb_ptr, s_ptr, acc_ptr, M, N, K, TILES_X,
                        sgm, sgn, swn, swk, sxm, sxk, sgxm, sgxk, sgwn, sgwk, ssm, ssk, a, seed, offset, p, scale_bits,
                        g_seed, g_offset, g_p, g_scale_bits, xa,
                        X_ACT: tl.constexpr, HAS_BIAS: tl.constexpr, BWD: tl.constexpr, DROPOUT: tl.constexpr,
                        G_DROPOUT: tl.constexpr,
                        HAS_ACC: tl.constexpr, CT: tl.constexpr, PRECISION: tl.constexpr, I64: tl.constexpr,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr):
    """Programs [0, TILES_X): the (BLOCK_M, BLOCK_N) tiles of gx (M, K) = g (M, N) @ w (N, K), reducing over N;
    the others: the tiles of gw (N, K) = g^T @ x (M, K), reducing over M, and with ``HAS_BIAS`` gb (N,, contiguous)
    = the column sums of g. ``s<t><i>``: tensor t's stride along index i (m, n or k).

    With ``BWD`` (an activation's derivative, ``UNARY[act].bwd``) gx is the gradient of the previous layer's
    activation and what is stored is that of its pre-activation instead: ``BWD(dropout(gx), s, a)``, s (M, K) the
    saved pre-activation or output (``_act_grad_kernel``'s computation, in the epilogue, on gx rounded to its dtype
    as that kernel would read it; ``DROPOUT``: the forward's mask regenerated from (seed, offset, p)). With
    ``HAS_ACC`` (and no ``BWD``) the gradient already waiting for x, contiguous (M, K) at ``acc_ptr``, is added to gx
    rounded to its dtype, as the separate add would. With ``G_DROPOUT`` g is the gradient of this layer's dropout,
    whose counters are (g_seed, g_offset, g_p): both products read g through its mask (dropout's backward as g's
    tiles load, element (m, n) at counter g_offset + m * N + n), so no masked copy of g is written and read back.
    With ``X_ACT`` x is a previous layer's pre-activation: gw's product reads X_ACT(x, xa) as x's tiles load."""
    pid = tl.program_id(0)
    g_scale = g_scale_bits.to(tl.int64).to(tl.float64, bitcast=True).to(CT)
    if pid < TILES_X:
        acc, _, offs_m, offs_k, _ = _product_tile(g_ptr, w_ptr, M, K, N, sgm, sgn, swn, swk, pid, g_seed, g_offset,
                                                  g_p, g_scale, N, 1, 0.0, False, G_DROPOUT, None, CT, PRECISION, I64,
                                                  BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M)
        mask = (offs_m[:, None] < M) & (offs_k[None, :] < K)
        if BWD is not None:
            acc = _act_backward(acc.to(gx_ptr.dtype.element_ty).to(CT), gx_ptr,
                                s_ptr + offs_m[:, None] * ssm + offs_k[None, :] * ssk, mask, offs_m, offs_k, K, a,
                                seed, offset, p, scale_bits, BWD, DROPOUT, CT)
        if HAS_ACC:
            acc = acc.to(gx_ptr.dtype.element_ty).to(CT) + \
                tl.load(acc_ptr + offs_m[:, None] * K + offs_k[None, :], mask=mask, other=0.0).to(CT)
        tl.store(gx_ptr + offs_m[:, None] * sgxm + offs_k[None, :] * sgxk, acc.to(gx_ptr.dtype.element_ty), mask=mask)
    else:
        acc, row_sum, offs_n, offs_k, pid_k = _product_tile(g_ptr, x_ptr, N, K, M, sgn, sgm, sxm, sxk, pid - TILES_X,
                                                            g_seed, g_offset, g_p, g_scale, 1, N, xa, HAS_BIAS,
                                                            G_DROPOUT, X_ACT, CT, PRECISION, I64, BLOCK_M, BLOCK_N,
                                                            BLOCK_K, GROUP_M)
        mask = (offs_n[:, None] < N) & (offs_k[None, :] < K)
        tl.store(gw_ptr + offs_n[:, None] * sgwn + offs_k[None, :] * sgwk, acc.to(gw_ptr.dtype.element_ty), mask=mask)
        if HAS_BIAS:
            if pid_k == 0:
                tl.store(gb_ptr + offs_n, row_sum.to(gb_ptr.dtype.element_ty), mask=offs_n < N)


@triton.jit(do_not_specialize=["seed", "offset", "p", "scale_bits"])
def _act_grad_kernel(g_ptr, s_ptr, gz_ptr, M, N, sgm, sgn, ssm, ssn, a, seed, offset, p, scale_bits,
                     BWD: tl.constexpr, DROPOUT: tl.constexpr, CT: tl.constexpr,
                     I64: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """gz = BWD(g, s, a) for one (BLOCK_M, BLOCK_N) tile (``s``: the saved pre-activation or output; ``gz``
    contiguous (M, N)); with ``DROPOUT`` g first goes through the forward's mask (dropout's backward, rounded to
    g's dtype as it would be)."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    if I64:
        offs_m = offs_m.to(tl.int64)
        offs_n = offs_n.to(tl.int64)
    mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    g = tl.load(g_ptr + offs_m[:, None] * sgm + offs_n[None, :] * sgn, mask=mask, other=0.0).to(CT)
    gz = _act_backward(g, g_ptr, s_ptr + offs_m[:, None] * ssm + offs_n[None, :] * ssn, mask, offs_m, offs_n, N, a,
                       seed, offset, p, scale_bits, BWD, DROPOUT, CT)
    gz = tl.where(mask, gz, 0.0)
    tl.store(gz_ptr + offs_m[:, None] * N + offs_n[None, :], gz.to(gz_ptr.dtype.element_ty), mask=mask)


_FINITE_AT_0 = {}


def check_x_act(x_act, dtype):
    """Validates an ``x_act`` = (act, a) of ``launch_linear``/``launch_linear_grad``: an op of ``UNARY`` finite at 0
    (the masked elements of x's tiles are 0 and meet w's zeros) on a float32 or float64 x, whose activation computed
    again from x equals the stored one (a half x's would round where the separate ops round the unrounded
    pre-activation's)."""
    if x_act is None:
        return
    if x_act[0] in UNARY and x_act not in _FINITE_AT_0:
        with np.errstate(all="ignore"):
            _FINITE_AT_0[x_act] = bool(np.isfinite(UNARY[x_act[0]].ref(np.zeros(1), x_act[1], 0.0)).all())
    if not _FINITE_AT_0.get(x_act) or dtype not in (D.float32, D.float64):
        raise ValueError(f"linear: an activation of x as it loads takes a float32 or float64 x and an elementwise op "
                         f"finite at 0, got {x_act!r} on {dtype}")


def act_np(x, act, a, dtype):
    """NumPy reference of ``act(x, a)`` rounded to ``dtype`` (an ``x_act``)."""
    ct = np_ct(dtype)
    with np.errstate(all="ignore"):
        return np.asarray(UNARY[act].ref(x.astype(ct, copy=False), a, 0.0), dtype=ct).astype(dtype.np, copy=False)


def _act_grad_blocks(M, N):
    if INTERPRET:
        return 32 if M > 16 else 16, 32 if N > 16 else 16
    return 32, 128


def launch_act_grad(g, s, gz, act, a=0.0, drop=None):
    """gz = act'(dropout(g), s) (s: pre-activation or output per the activation; ``drop``: None or the forward's
    dropout counters (seed, offset, p)). g, s: (M, N) any strides; gz contiguous (M, N). Returns gz."""
    M, N = g._shape
    if M == 0 or N == 0:
        return gz
    if INTERPRET and gz.dtype is D.bfloat16:
        if drop is not None:        # dropout's backward rounded to bf16 first, as the GPU kernel rounds it
            g, drop = wrap(dropout_np(g._np, 1, *drop), g.dtype, g.device), None
        gz32 = empty(gz._shape, D.float32, gz.device)
        launch_act_grad(g, s, gz32, act, a, drop)
        return copy_host(gz, gz32)
    dtype = g.dtype
    g, s = interp_bf16_in(g), interp_bf16_in(s)
    bm, bn = _act_grad_blocks(M, N)
    seed, offset, p = drop if drop is not None else (0, 0, 0.0)
    _act_grad_kernel[(cdiv(M, bm), cdiv(N, bn))](
        ptr(g), ptr(s), ptr(gz), M, N,
        g._stride[0], g._stride[1], s._stride[0], s._stride[1], float(a), seed, offset, float(p),
        dropout_scale(p)[1], BWD=UNARY[act].bwd, DROPOUT=drop is not None, CT=ACC[dtype],
        I64=is_int64_index(g.numel(), g, s, gz), BLOCK_M=bm, BLOCK_N=bn)
    return gz


def _key(g, w, x, M, N, K, dtype, act=None, g_dropout=False, x_act=None):
    """Autotune key: dtype, the operands' layouts, bucketed M, N, K, and the epilogue's activation (None: none),
    with "+dropout" (alone: "dropout") when g is read through a dropout's mask; then x's activation, if any."""
    act = (f"{act}+dropout" if act else "dropout") if g_dropout else act
    return (dtype, autotune.layout(g), autotune.layout(w), autotune.layout(x), autotune.bucket(M),
            autotune.bucket(N), autotune.bucket(K), act) + (() if x_act is None else (x_act,))


# On CUDA cores (float32 "highest") three FMA tiles spill here (tritorch compile-check, sm_90a): 64x64x32 with 8
# warps (12 B per thread, triton 3.9), 32x64x32 with 2 (24 B, triton 3.6) and, adding a pending gradient, 16x64x64
# with 4 (4 B, triton 3.9); 64x64x16 with 8 warps takes their place.
_SPILLS_HERE = (_mm.MatmulConfig(64, 64, 32, 8, 8, 3), _mm.MatmulConfig(32, 64, 32, 8, 2, 3),
                _mm.MatmulConfig(16, 64, 64, 8, 4, 3))
_FMA_HERE = _mm.MatmulConfig(64, 64, 16, 8, 8, 3)
# With Philox in the products' loop (g read through a dropout's mask) the 64 x 128 FMA tile with 8 warps spilled 8 B
# per thread (triton 3.6); with gelu there (x read through an activation) 976 B (triton 3.9).
_SPILLS_IN_LOOP = (_mm.MatmulConfig(64, 128, 32, 8, 8, 3),)


def fits_epilogue(c):
    """Whether tile config ``c`` leaves registers for a costly epilogue (an activation's derivative or Philox per
    element): at most 32 accumulators per thread. Bigger tiles spilled 28-128 B per thread in ``_linear_grad_kernel``
    with gelu and dropout's backward in bfloat16 (64 per thread: 128 x 128 and 64 x 256 with 8 warps, 128 x 64 and
    64 x 128 with 4; tritorch compile-check, triton 3.6 and 3.9), and in ``_linear_kernel``'s forward."""
    return c.block_m * c.block_n <= 32 * 32 * c.num_warps


def _spills(c, key):
    """Whether tile ``c`` spilled here for ``key`` (key[7]: the epilogue's activation, "dropout" for g's mask;
    key[8]: x's activation)."""
    in_loop = "dropout" in str(key[7]) or len(key) > 8
    return c in _SPILLS_HERE or _mm.uses_fma(key[0]) and in_loop and c in _SPILLS_IN_LOOP


def _prune(configs, key):
    """The matmul's candidates for the dtype, ``_FMA_HERE`` in place of those that spill here; with an epilogue
    or g's dropout (key[7]), or x's activation (key[8]), those that fit it."""
    keep = [c for c in _mm.prune(configs, key) if not _spills(c, key)]
    keep = keep + [_FMA_HERE] if _mm.uses_fma(key[0]) and _FMA_HERE in configs else keep
    return [c for c in keep if fits_epilogue(c)] if key[7] is not None or len(key) > 8 else keep


def _default(key):
    """The matmul's default for the larger product (an (max(M, N), K) result, reducing over the other); with an
    epilogue, g's dropout or x's activation 128 x 64 with 8 warps in place of a tile that does not fit it."""
    dtype, M, N, K = key[0], key[4], key[5], key[6]
    c = _mm.matmul_config(max(M, N), K, min(M, N), dtype, _mm.uses_fma(dtype))
    c = _FMA_HERE if _spills(c, key) and _mm.uses_fma(dtype) else c
    costly = key[7] is not None or len(key) > 8
    return _mm.MatmulConfig(128, 64, c.block_k, 8, 8, 3) if costly and not fits_epilogue(c) else c


TUNABLE = autotune.Tunable("linear_grad", _mm.ALL_CANDIDATES + (_FMA_HERE,), default=_default, prune=_prune,
                           kernels=(_linear_grad_kernel,))


def launch_linear_grad(g, w, x, gx, gw, gb, config=None, epilogue=None, add=None, g_drop=None, x_act=None):
    """gx = g @ w, gw = g^T @ x, gb = g.sum(0) for g: (M, N), w: (N, K), x: (M, K), any strides; each output
    (gx (M, K), gw (N, K): any strides; gb (N,): contiguous) may be None, with gx or gw given. M, N, K > 0.

    ``epilogue``: None, or (s, act, a, drop) with gx given: gx is then the gradient of the pre-activation of a
    previous layer ``dropout(act(z, a))`` (drop: None or dropout's (seed, offset, p) for its contiguous (M, K)
    result) instead of its result's: ``act_grad(g @ w, s, act, a, drop)`` in one pass, s (M, K) any strides.
    ``add``: None, or (without an epilogue) a contiguous (M, K) tensor of gx's dtype added to gx (rounded first).
    ``g_drop``: None, or the counters (seed, offset, p) of a dropout whose result's gradient g is (this layer's
    own): the products read g through its mask, as they would read dropout's backward of g. ``x_act``: None, or
    (act, a) of a float32/float64 x's activation, applied to x as it loads (gw = g^T @ act(x))."""
    M, N = g._shape
    K = (w if gx is not None else x)._shape[1]
    check_x_act(x_act, g.dtype)
    if INTERPRET and g.dtype is D.bfloat16:       # the interpreter has no bf16 arithmetic: float32, then rounded
        if g_drop is not None:                    # dropout's backward rounded to bf16, as the GPU's loads round it
            g = wrap(dropout_np(g._np, 1, *g_drop), g.dtype, g.device)
        outs = [None if t is None else empty(t._shape, D.float32, t.device) for t in (gx, gw, gb)]
        launch_linear_grad(interp_bf16_in(g), interp_bf16_in(w), interp_bf16_in(x), *outs, config)
        for t, t32 in zip((gx, gw, gb), outs):
            if t is not None:
                copy_host(t, t32)
        if epilogue is not None:                  # on the rounded gx, as the GPU's epilogue reads it
            copy_host(gx, launch_act_grad(gx, epilogue[0], empty(gx._shape, gx.dtype, gx.device), *epilogue[1:]))
        if add is not None:                       # the rounded gx plus add, in float32, rounded again
            gx._np[...] = (gx._np.astype(np.float32) + add._np.astype(np.float32)).astype(gx.dtype.np)
        return
    dtype = g.dtype
    s, act, a, drop = epilogue if epilogue is not None else (None, None, 0.0, None)
    cfg = config
    if cfg is None:
        run = lambda c: launch_linear_grad(g, w, x, gx, gw, gb, c, epilogue, add, g_drop, x_act)  # noqa: E731
        cfg = TUNABLE.pick(_key(g, w if w is not None else g, x if x is not None else g, M, N, K, dtype, act,
                                g_drop is not None, x_act[0] if x_act is not None and gw is not None else None), run)
    tiles_x = cdiv(M, cfg.block_m) * cdiv(K, cfg.block_n) if gx is not None else 0
    tiles_w = cdiv(N, cfg.block_m) * cdiv(K, cfg.block_n) if gw is not None else 0
    w_, x_ = (w if w is not None else g), (x if x is not None else g)
    gx_, gw_ = (gx if gx is not None else gw), (gw if gw is not None else gx)
    s_ = s if s is not None else gx_
    seed, offset, p = drop if drop is not None else (0, 0, 0.0)
    g_seed, g_offset, g_p = g_drop if g_drop is not None else (0, 0, 0.0)
    try:
        _linear_grad_kernel[(tiles_x + tiles_w,)](
            ptr(g), ptr(w_), ptr(x_), ptr(gx_), ptr(gw_), ptr(gb if gb is not None else gx_), ptr(s_),
            ptr(add if add is not None else gx_), M, N, K, tiles_x,
            g._stride[0], g._stride[1], w_._stride[0], w_._stride[1], x_._stride[0], x_._stride[1],
            gx_._stride[0], gx_._stride[1], gw_._stride[0], gw_._stride[1], s_._stride[0], s_._stride[1],
            float(a), seed, offset, float(p), dropout_scale(p)[1], g_seed, g_offset, float(g_p), dropout_scale(g_p)[1],
            float(x_act[1]) if x_act is not None else 0.0,
            X_ACT=None if x_act is None or gw is None else UNARY[x_act[0]].tfn,
            HAS_BIAS=gb is not None and gw is not None, BWD=None if act is None else UNARY[act].bwd,
            DROPOUT=drop is not None, G_DROPOUT=g_drop is not None, HAS_ACC=add is not None, CT=ACC[dtype],
            PRECISION=_mm._dot_precision(dtype),
            I64=is_int64_index(max(g.numel(), M * K, N * K), *(t for t in (g, w, x, gx, gw, s) if t is not None)),
            BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k, GROUP_M=cfg.group_m,
            num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    except triton.CompilationError as e:
        raise _mm.dot_error("linear backward", dtype, e) from None
