"""The strided pointwise kernels of the elementwise family and their launchers: ``_unary_kernel`` (one input),
``_binary_kernel`` (two, or a tensor and a Python scalar) and ``_where_kernel`` (condition, two values), one
autotuned 1-D pass each.

Each takes the op's math as a ``tl.constexpr`` jit function, reads inputs through strides (stride 0 where an input is
broadcast) and writes through the output's strides, with a no-index-math path when everything is contiguous
(``CONTIG``) and int64 offsets when 32 bits could overflow (``I64``). ``copy.py`` copies through ``_unary_kernel``
with ``_identity``; ``elementwise.py`` declares the ops.
"""
import math

import numpy as np
import triton
import triton.language as tl

from tritorch import _dtype as D, autotune
from tritorch._device import INTERPRET
from tritorch._tensor import Tensor
from ._launch import ptr, broadcast_strides, coalesce, is_int64_index, nd_coords, nd_offset, block_for, interp_bf16_in
from ._common import copy_host, empty


@triton.jit
def _unary_kernel(x_ptr, out_ptr, n, S1, S2, S3, S4, S5,
                  xs0, xs1, xs2, xs3, xs4, xs5, os0, os1, os2, os3, os4, os5, a, b,
                  FN: tl.constexpr, CT: tl.constexpr, AB_PTR: tl.constexpr, CONTIG: tl.constexpr,
                  I64: tl.constexpr, BLOCK: tl.constexpr):
    """out = FN(x, a, b) elementwise; ``a``, ``b`` are the op's scalar parameters (slope, bounds, exponent...).

    Triton passes a Python float as fp32: with ``AB_PTR`` the parameters of a float64 op arrive as pointers to
    float64 values instead, so they keep their precision."""
    if AB_PTR:
        a = tl.load(a)
        b = tl.load(b)
    pid = tl.program_id(0)
    if I64:
        pid = pid.to(tl.int64)
    i = pid * BLOCK + tl.arange(0, BLOCK)
    mask = i < n
    if CONTIG:
        x_off = i
        o_off = i
    else:
        c0, c1, c2, c3, c4, c5 = nd_coords(i, S1, S2, S3, S4, S5)
        x_off = nd_offset(c0, c1, c2, c3, c4, c5, xs0, xs1, xs2, xs3, xs4, xs5)
        o_off = nd_offset(c0, c1, c2, c3, c4, c5, os0, os1, os2, os3, os4, os5)
    x = tl.load(x_ptr + x_off, mask=mask).to(CT)
    tl.store(out_ptr + o_off, FN(x, a, b).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _binary_kernel(x_ptr, y_ptr, out_ptr, n, S1, S2, S3, S4, S5,
                   xs0, xs1, xs2, xs3, xs4, xs5, ys0, ys1, ys2, ys3, ys4, ys5,
                   os0, os1, os2, os3, os4, os5, a, b,
                   FN: tl.constexpr, CT: tl.constexpr, Y_SCALAR: tl.constexpr, CONTIG: tl.constexpr,
                   I64: tl.constexpr, BLOCK: tl.constexpr):
    """out = FN(x, y, a, b) elementwise; with ``Y_SCALAR`` the ``y_ptr`` argument is the scalar value itself.
    ``a``, ``b`` are the op's scalar parameters (alpha; a backward's slope or bounds)."""
    pid = tl.program_id(0)
    if I64:
        pid = pid.to(tl.int64)
    i = pid * BLOCK + tl.arange(0, BLOCK)
    mask = i < n
    if CONTIG:
        x_off = i
        y_off = i
        o_off = i
    else:
        c0, c1, c2, c3, c4, c5 = nd_coords(i, S1, S2, S3, S4, S5)
        x_off = nd_offset(c0, c1, c2, c3, c4, c5, xs0, xs1, xs2, xs3, xs4, xs5)
        y_off = nd_offset(c0, c1, c2, c3, c4, c5, ys0, ys1, ys2, ys3, ys4, ys5)
        o_off = nd_offset(c0, c1, c2, c3, c4, c5, os0, os1, os2, os3, os4, os5)
    x = tl.load(x_ptr + x_off, mask=mask).to(CT)
    if Y_SCALAR:
        y = (tl.zeros([BLOCK], CT) + y_ptr).to(CT)
    else:
        y = tl.load(y_ptr + y_off, mask=mask).to(CT)
    tl.store(out_ptr + o_off, FN(x, y, a, b).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _where_kernel(c_ptr, x_ptr, y_ptr, out_ptr, n, S1, S2, S3, S4, S5,
                  cs0, cs1, cs2, cs3, cs4, cs5, xs0, xs1, xs2, xs3, xs4, xs5, ys0, ys1, ys2, ys3, ys4, ys5,
                  os0, os1, os2, os3, os4, os5,
                  ST: tl.constexpr, X_SCALAR: tl.constexpr, Y_SCALAR: tl.constexpr, CONTIG: tl.constexpr,
                  I64: tl.constexpr, BLOCK: tl.constexpr):
    """out = c ? x : y; either of x, y may be a scalar passed by value, made a block in ``ST`` (the compute type:
    float32 for the half types, whose scalar constants Triton's interpreter cannot build) and cast to out's type."""
    pid = tl.program_id(0)
    if I64:
        pid = pid.to(tl.int64)
    i = pid * BLOCK + tl.arange(0, BLOCK)
    mask = i < n
    if CONTIG:
        c_off = i
        x_off = i
        y_off = i
        o_off = i
    else:
        c0, c1, c2, c3, c4, c5 = nd_coords(i, S1, S2, S3, S4, S5)
        c_off = nd_offset(c0, c1, c2, c3, c4, c5, cs0, cs1, cs2, cs3, cs4, cs5)
        x_off = nd_offset(c0, c1, c2, c3, c4, c5, xs0, xs1, xs2, xs3, xs4, xs5)
        y_off = nd_offset(c0, c1, c2, c3, c4, c5, ys0, ys1, ys2, ys3, ys4, ys5)
        o_off = nd_offset(c0, c1, c2, c3, c4, c5, os0, os1, os2, os3, os4, os5)
    OT = out_ptr.dtype.element_ty
    c = tl.load(c_ptr + c_off, mask=mask) != 0
    if X_SCALAR:
        x = (tl.zeros([BLOCK], ST) + x_ptr).to(OT)
    else:
        x = tl.load(x_ptr + x_off, mask=mask).to(OT)
    if Y_SCALAR:
        y = (tl.zeros([BLOCK], ST) + y_ptr).to(OT)
    else:
        y = tl.load(y_ptr + y_off, mask=mask).to(OT)
    tl.store(out_ptr + o_off, tl.where(c, x, y), mask=mask)


def _layout(out, inputs):
    """Kernel layout arguments: (contiguous?, sizes S1..S5, strides of each input then of out, flattened)."""
    shape = out._shape
    if out.is_contiguous() and all(t._shape == shape and t.is_contiguous() for t in inputs):
        return True, [1] * 5, [0] * (6 * (len(inputs) + 1))
    strides = [broadcast_strides(t, shape) for t in inputs] + [list(out._stride)]
    sizes, sts = coalesce(shape, *strides)
    return False, sizes[1:], [s for st in sts for s in st]


def _ew_cfg(block, num_warps=4):
    return autotune.Config(num_warps=num_warps, num_stages=3, BLOCK=block)


def _ew_default(key):
    """The former fixed choice: ``block_for`` (1024 on a GPU, small blocks in the interpreter), 4 warps."""
    return _ew_cfg(block_for(key[2]))


def _ew_prune(configs, key):
    """Blocks beyond the (bucketed) element count only add masked lanes: one such candidate is enough."""
    n = key[2]
    big = [c for c in configs if c.BLOCK >= n]
    return [c for c in configs if c.BLOCK < n] + big[:1]


# H100 candidates: a memory-bound 1-D pass; they trade programs (and tail waves) against bytes in flight per program.
EW_CANDIDATES = (_ew_cfg(512), _ew_cfg(1024), _ew_cfg(1024, 8), _ew_cfg(2048, 8), _ew_cfg(4096, 8),
                 _ew_cfg(4096, 16), _ew_cfg(8192, 16))


UNARY_TUNABLE, BINARY_TUNABLE, WHERE_TUNABLE = (
    autotune.Tunable(f"elementwise_{name}", EW_CANDIDATES, default=_ew_default, prune=_ew_prune, kernels=(kernel,))
    for name, kernel in (("unary", _unary_kernel), ("binary", _binary_kernel), ("where", _where_kernel)))


def _ew_pick(tunable, out, contig, n, ins, run):
    """The config of a 1-D elementwise launch; key (dtype, contiguous or not, bucket(n)). An in-place launch (out
    shares storage with an input) is never timed: each run would apply the op again."""
    in_place = any(isinstance(t, Tensor) and t._storage is out._storage for t in ins)
    return tunable.pick((out.dtype, "c" if contig else "s", autotune.bucket(n)), None if in_place else run)


def launch_unary(fn, x, out, ct, a=0.0, b=0.0, config=None):
    n = out.numel()
    if n == 0:
        return out
    if out.dtype is D.bfloat16 and INTERPRET:
        return copy_host(out, launch_unary(fn, x, empty(out._shape, D.float32, out.device), ct, a, b, config))
    x = interp_bf16_in(x)
    contig, sizes, strides = _layout(out, (x,))
    cfg = config or _ew_pick(UNARY_TUNABLE, out, contig, n, (x,), lambda c: launch_unary(fn, x, out, ct, a, b, c))
    block = cfg.BLOCK
    ab_ptr = ct == tl.float64 and any(isinstance(v, float) and float(np.float32(v)) != v for v in (a, b))
    if ab_ptr:
        ab = Tensor._wrap_numpy(np.array([a, b], dtype=np.float64), out.device)
        a, b = ptr(ab), _elem_ptr(ab, 1)
    _unary_kernel[(triton.cdiv(n, block),)](
        ptr(x), ptr(out), n, *sizes, *strides, a, b,
        FN=fn, CT=ct, AB_PTR=ab_ptr, CONTIG=contig, I64=is_int64_index(n, x, out), BLOCK=block,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    return out


def _elem_ptr(t, i):
    """The kernel argument of element ``i`` of a contiguous tensor."""
    p = ptr(t)
    p.addr += i * t.dtype.itemsize
    return p


def launch_binary(fn, x, y, out, ct, a=0.0, b=0.0, config=None):
    n = out.numel()
    if n == 0:
        return out
    if out.dtype is D.bfloat16 and INTERPRET:
        return copy_host(out, launch_binary(fn, x, y, empty(out._shape, D.float32, out.device), ct, a, b, config))
    x = interp_bf16_in(x)
    y = interp_bf16_in(y) if isinstance(y, Tensor) else y
    if isinstance(y, float) and y == 0.0 and math.copysign(1.0, y) < 0:
        # a -0.0 scalar (kept by neither Triton's interpreter nor ``zeros + y``) goes as a broadcast 0-d tensor
        y = Tensor._wrap_numpy(np.array(-0.0, dtype=np.float32 if ct is tl.float32 else np.float64), out.device)
    scalar = not isinstance(y, Tensor)
    contig, sizes, strides = _layout(out, (x,) if scalar else (x, y))
    if scalar:
        strides = strides[:6] + [0] * 6 + strides[6:]
    cfg = config or _ew_pick(BINARY_TUNABLE, out, contig, n, (x, y),
                             lambda c: launch_binary(fn, x, y, out, ct, a, b, c))
    block = cfg.BLOCK
    _binary_kernel[(triton.cdiv(n, block),)](
        ptr(x), y if scalar else ptr(y), ptr(out), n, *sizes, *strides, a, b,
        FN=fn, CT=ct, Y_SCALAR=scalar, CONTIG=contig, I64=is_int64_index(n, x, out), BLOCK=block,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    return out


@triton.jit
def _identity(x, a, b):
    return x
