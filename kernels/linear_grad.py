"""A linear layer's three gradients in one launch: grad_x = g @ W, grad_W = g^T @ x and grad_b = the column sums
of g (g: the gradient of the pre-activation, (M, N); x: (M, K); W: (N, K)).

Two products and a reduction would be three launches that each read g. ``_linear_grad_kernel`` is one grid whose
first programs compute the tiles of grad_x and whose others compute the tiles of grad_W, each with the tiled matmul
of ``kernels/matmul.py`` (``_product_tile``, called with each product's operands and strides, so either branch
keeps Triton's stride specialisations). grad_W's programs read g transposed as the left operand, tile by tile along
M: summing each loaded tile's rows is grad_b, written by the programs of grad_W's first column of tiles. No atomics:
the result is deterministic.
"""
import triton
import triton.language as tl

from tritorch import _dtype as D, autotune
from tritorch._device import INTERPRET
from ._launch import ACC, ptr, cdiv, is_int64_index, interp_bf16_in
from ._common import copy_host, empty
from . import matmul as _mm
from .matmul import grouped_tile

__all__ = ["launch_linear_grad", "TUNABLE"]


@triton.jit
def _product_tile(a_ptr, b_ptr, c_ptr, sum_ptr, R, C, L, sar, sal, sbl, sbc, scr, scc, tile,
                  SUM: tl.constexpr, CT: tl.constexpr, PRECISION: tl.constexpr, I64: tl.constexpr,
                  BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_L: tl.constexpr, GROUP_R: tl.constexpr):
    """Tile ``tile`` of c (R, C) = a (R, L) @ b (L, C), every operand through its strides (``s?r``/``s?l``/``s?c``:
    the stride of a's, b's or c's row, reduction or column index); with ``SUM`` the tiles of column 0 also write
    sum_l a[r, l] to sum_ptr[r] (R, contiguous)."""
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
        acc = tl.dot(a, b, acc, input_precision=PRECISION, out_dtype=CT)
        if SUM:
            row_sum += tl.sum(a.to(CT), axis=1)
        a_ptrs += BLOCK_L * sal
        b_ptrs += BLOCK_L * sbl
    c_mask = (offs_r[:, None] < R) & (offs_c[None, :] < C)
    tl.store(c_ptr + offs_r[:, None] * scr + offs_c[None, :] * scc, acc.to(c_ptr.dtype.element_ty), mask=c_mask)
    if SUM:
        if pid_c == 0:
            tl.store(sum_ptr + offs_r, row_sum.to(sum_ptr.dtype.element_ty), mask=offs_r < R)


@triton.jit
def _linear_grad_kernel(g_ptr, w_ptr, x_ptr, gx_ptr, gw_ptr, gb_ptr, M, N, K, TILES_X,
                        sgm, sgn, swn, swk, sxm, sxk, sgxm, sgxk, sgwn, sgwk,
                        HAS_BIAS: tl.constexpr, CT: tl.constexpr, PRECISION: tl.constexpr, I64: tl.constexpr,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr):
    """Programs [0, TILES_X): the (BLOCK_M, BLOCK_N) tiles of gx (M, K) = g (M, N) @ w (N, K), reducing over N;
    the others: the tiles of gw (N, K) = g^T @ x (M, K), reducing over M, and with ``HAS_BIAS`` gb (N,, contiguous)
    = the column sums of g. ``s<t><i>``: tensor t's stride along index i (m, n or k)."""
    pid = tl.program_id(0)
    if pid < TILES_X:
        _product_tile(g_ptr, w_ptr, gx_ptr, gx_ptr, M, K, N, sgm, sgn, swn, swk, sgxm, sgxk, pid,
                      False, CT, PRECISION, I64, BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M)
    else:
        _product_tile(g_ptr, x_ptr, gw_ptr, gb_ptr, N, K, M, sgn, sgm, sxm, sxk, sgwn, sgwk, pid - TILES_X,
                      HAS_BIAS, CT, PRECISION, I64, BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M)


def _key(g, w, x, M, N, K, dtype):
    """Autotune key: dtype, the operands' layouts, bucketed M, N, K."""
    return (dtype, autotune.layout(g), autotune.layout(w), autotune.layout(x), autotune.bucket(M),
            autotune.bucket(N), autotune.bucket(K))


# On CUDA cores (float32 "highest") two FMA tiles spill here (tritorch compile-check, sm_90a): 64x64x32 with 8 warps
# (12 B per thread, triton 3.9) and 32x64x32 with 2 (24 B, triton 3.6); 64x64x16 with 8 warps takes their place.
_SPILLS_HERE = (_mm.MatmulConfig(64, 64, 32, 8, 8, 3), _mm.MatmulConfig(32, 64, 32, 8, 2, 3))
_FMA_HERE = _mm.MatmulConfig(64, 64, 16, 8, 8, 3)


def _prune(configs, key):
    """The matmul's candidates for the dtype, ``_FMA_HERE`` in place of those that spill here."""
    keep = [c for c in _mm.prune(configs, key) if c not in _SPILLS_HERE]
    return keep + [_FMA_HERE] if _mm.uses_fma(key[0]) and _FMA_HERE in configs else keep


def _default(key):
    """The matmul's default for the larger product (an (max(M, N), K) result, reducing over the other)."""
    dtype, M, N, K = key[0], key[4], key[5], key[6]
    c = _mm.matmul_config(max(M, N), K, min(M, N), dtype, _mm.uses_fma(dtype))
    return _FMA_HERE if c in _SPILLS_HERE and _mm.uses_fma(dtype) else c


TUNABLE = autotune.Tunable("linear_grad", _mm.ALL_CANDIDATES + (_FMA_HERE,), default=_default, prune=_prune,
                           kernels=(_linear_grad_kernel,))


def launch_linear_grad(g, w, x, gx, gw, gb, config=None):
    """gx = g @ w, gw = g^T @ x, gb = g.sum(0) for g: (M, N), w: (N, K), x: (M, K), any strides; each output
    (gx (M, K), gw (N, K): any strides; gb (N,): contiguous) may be None, with gx or gw given. M, N, K > 0."""
    M, N = g._shape
    K = (w if gx is not None else x)._shape[1]
    if INTERPRET and g.dtype is D.bfloat16:       # the interpreter has no bf16 arithmetic: float32, then rounded
        outs = [None if t is None else empty(t._shape, D.float32, t.device) for t in (gx, gw, gb)]
        launch_linear_grad(interp_bf16_in(g), interp_bf16_in(w), interp_bf16_in(x), *outs, config)
        for t, t32 in zip((gx, gw, gb), outs):
            if t is not None:
                copy_host(t, t32)
        return
    dtype = g.dtype
    cfg = config
    if cfg is None:
        run = lambda c: launch_linear_grad(g, w, x, gx, gw, gb, c)  # noqa: E731 (writes the outputs only)
        cfg = TUNABLE.pick(_key(g, w if w is not None else g, x if x is not None else g, M, N, K, dtype), run)
    tiles_x = cdiv(M, cfg.block_m) * cdiv(K, cfg.block_n) if gx is not None else 0
    tiles_w = cdiv(N, cfg.block_m) * cdiv(K, cfg.block_n) if gw is not None else 0
    w_, x_ = (w if w is not None else g), (x if x is not None else g)
    gx_, gw_ = (gx if gx is not None else gw), (gw if gw is not None else gx)
    try:
        _linear_grad_kernel[(tiles_x + tiles_w,)](
            ptr(g), ptr(w_), ptr(x_), ptr(gx_), ptr(gw_), ptr(gb if gb is not None else gx_), M, N, K, tiles_x,
            g._stride[0], g._stride[1], w_._stride[0], w_._stride[1], x_._stride[0], x_._stride[1],
            gx_._stride[0], gx_._stride[1], gw_._stride[0], gw_._stride[1],
            HAS_BIAS=gb is not None and gw is not None, CT=ACC[dtype], PRECISION=_mm._dot_precision(dtype),
            I64=is_int64_index(max(g.numel(), M * K, N * K), *(t for t in (g, w, x, gx, gw) if t is not None)),
            BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k, GROUP_M=cfg.group_m,
            num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    except triton.CompilationError as e:
        raise _mm.dot_error("linear backward", dtype, e) from None
