"""The strided pointwise kernel and its autotuned launcher: ``_pointwise_kernel`` maps one to four inputs (tensors
or Python scalars) onto one or two outputs, elementwise, in one 1-D pass; ``launch_pointwise`` launches it.

The op's math is a ``tl.constexpr`` jit function of the inputs and two scalar parameters, ``FN(x0, ..., a, b)``;
the input count ``NIN`` is a ``tl.constexpr`` too, so each (op, arity) compiles once and unused inputs cost
nothing. Inputs are read through strides (0 where an input is broadcast), the output is written through its own;
all of that is written here once: a no-index-math path when everything is contiguous (``CONTIG``), int64 offsets
when 32 bits could overflow (``I64``), float64 parameters passed by address (``AB_PTR``), and the interpreter's
missing bfloat16 arithmetic (bf16 handed over as float32). The elementwise ops (``elementwise.py``: unary, binary,
``where``), the pointwise losses' gradients (``loss.py``), ``masked_fill`` (``indexing.py``) and the strided copy
(``copy.py``, through ``_identity``) all launch it.
"""
import math

import numpy as np
import triton
import triton.language as tl

from tritorch import _dtype as D, autotune
from tritorch._device import INTERPRET
from tritorch._tensor import Tensor
from ._launch import ptr, broadcast_strides, coalesce, is_int64_index, nd_coords, nd_offset, block_for, \
    interp_bf16_in
from ._common import copy_host, empty

MAX_INPUTS = 4
MAX_OUTPUTS = 2


@triton.jit
def _operand(p, s0, s1, s2, s3, s4, s5, i, c0, c1, c2, c3, c4, c5, mask,
             SCALAR: tl.constexpr, CT: tl.constexpr, CONTIG: tl.constexpr, BLOCK: tl.constexpr):
    """One input as a block in ``CT``: the scalar ``p`` itself, or the elements at ``p`` + the coordinates' offset
    through the strides ``s0..s5`` (``i`` itself when everything is contiguous)."""
    if SCALAR:
        v = (tl.zeros([BLOCK], CT) + p).to(CT)
    elif CONTIG:
        v = tl.load(p + i, mask=mask).to(CT)
    else:
        v = tl.load(p + nd_offset(c0, c1, c2, c3, c4, c5, s0, s1, s2, s3, s4, s5), mask=mask).to(CT)
    return v


@triton.jit
def _apply(FN: tl.constexpr, NIN: tl.constexpr, x0, x1, x2, x3, a, b):
    """``FN`` of the first ``NIN`` inputs and the two parameters."""
    if NIN == 1:
        r = FN(x0, a, b)
    elif NIN == 2:
        r = FN(x0, x1, a, b)
    elif NIN == 3:
        r = FN(x0, x1, x2, a, b)
    else:
        r = FN(x0, x1, x2, x3, a, b)
    return r


@triton.jit
def _pointwise_kernel(p0, p1, p2, p3, out_ptr, out1_ptr, n, S1, S2, S3, S4, S5,
                      s00, s01, s02, s03, s04, s05, s10, s11, s12, s13, s14, s15,
                      s20, s21, s22, s23, s24, s25, s30, s31, s32, s33, s34, s35,
                      os0, os1, os2, os3, os4, os5, qs0, qs1, qs2, qs3, qs4, qs5, a, b,
                      FN: tl.constexpr, FN1: tl.constexpr, NIN: tl.constexpr, NOUT: tl.constexpr,
                      SCALARS: tl.constexpr, CT: tl.constexpr, AB_PTR: tl.constexpr, CONTIG: tl.constexpr,
                      I64: tl.constexpr, BLOCK: tl.constexpr):
    """out = FN(x0, ..., x[NIN-1], a, b) and, with ``NOUT`` = 2, out1 = FN1(the same) elementwise over the outputs'
    ``n`` elements, computed in ``CT``; each input is read once for both outputs.

    - ``p0..p3``: the inputs (the first ``NIN`` are read): a pointer to an array broadcastable to out's shape, or,
      where bit k of ``SCALARS`` is set, input k's value itself (a Python number, one value for every element);
    - ``out_ptr``, ``out1_ptr``: the outputs (``out1_ptr`` written only with ``NOUT`` = 2), both of shape
      (S0, S1, ..., S5) after merging dims (S0 = n / (S1 * ... * S5));
    - ``sK0..sK5``: input K's strides in elements along those six dims (0 where it is broadcast or a scalar);
      ``os0..os5``: out's, ``qs0..qs5``: out1's. Ignored with ``CONTIG`` (every operand contiguous, the outputs'
      shape: offset = index);
    - ``a``, ``b``: the op's scalar parameters (alpha, a slope, bounds, an exponent...); with ``AB_PTR`` pointers
      to two float64 values, since Triton passes a Python float as fp32."""
    if AB_PTR:
        a = tl.load(a)
        b = tl.load(b)
    pid = tl.program_id(0)
    if I64:
        pid = pid.to(tl.int64)
    i = pid * BLOCK + tl.arange(0, BLOCK)
    mask = i < n
    if CONTIG:
        c0, c1, c2, c3, c4, c5 = i, i, i, i, i, i         # unused: every operand is read at ``i``
        o_off = i
        q_off = i
    else:
        c0, c1, c2, c3, c4, c5 = nd_coords(i, S1, S2, S3, S4, S5)
        o_off = nd_offset(c0, c1, c2, c3, c4, c5, os0, os1, os2, os3, os4, os5)
        q_off = nd_offset(c0, c1, c2, c3, c4, c5, qs0, qs1, qs2, qs3, qs4, qs5)
    x0 = _operand(p0, s00, s01, s02, s03, s04, s05, i, c0, c1, c2, c3, c4, c5, mask, SCALARS & 1, CT, CONTIG, BLOCK)
    x1 = x0                                             # inputs past NIN: placeholders, never read
    x2 = x0
    x3 = x0
    if NIN >= 2:
        x1 = _operand(p1, s10, s11, s12, s13, s14, s15, i, c0, c1, c2, c3, c4, c5, mask, SCALARS & 2, CT, CONTIG,
                      BLOCK)
    if NIN >= 3:
        x2 = _operand(p2, s20, s21, s22, s23, s24, s25, i, c0, c1, c2, c3, c4, c5, mask, SCALARS & 4, CT, CONTIG,
                      BLOCK)
    if NIN >= 4:
        x3 = _operand(p3, s30, s31, s32, s33, s34, s35, i, c0, c1, c2, c3, c4, c5, mask, SCALARS & 8, CT, CONTIG,
                      BLOCK)
    r = _apply(FN, NIN, x0, x1, x2, x3, a, b)
    tl.store(out_ptr + o_off, r.to(out_ptr.dtype.element_ty), mask=mask)
    if NOUT == 2:
        r1 = _apply(FN1, NIN, x0, x1, x2, x3, a, b)
        tl.store(out1_ptr + q_off, r1.to(out1_ptr.dtype.element_ty), mask=mask)


def _layout(outs, tensors):
    """Kernel layout arguments: (contiguous?, sizes S1..S5, [strides of each input (a scalar: zeros), then of each
    output]). ``outs``: the outputs (one shape); ``tensors``: the inputs, None for a scalar."""
    shape = outs[0]._shape
    if all(o.is_contiguous() for o in outs) and all(t is None or (t._shape == shape and t.is_contiguous())
                                                    for t in tensors):
        return True, [1] * 5, [[0] * 6] * (len(tensors) + len(outs))
    strides = [[0] * len(shape) if t is None else broadcast_strides(t, shape) for t in tensors]
    sizes, sts = coalesce(shape, *strides, *(list(o._stride) for o in outs))
    return False, sizes[1:], sts


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
# At most 8 elements per thread: 8192 with 16 warps spilled 8 B in a float16 unary op (compile-check, triton 3.6).
EW_CANDIDATES = (_ew_cfg(512), _ew_cfg(1024), _ew_cfg(1024, 8), _ew_cfg(2048, 8), _ew_cfg(4096, 8),
                 _ew_cfg(4096, 16))

# one tuning per arity (the names predate the shared kernel): one input, two, three or four (where, masked_fill,
# the pointwise losses' gradients)
UNARY_TUNABLE, BINARY_TUNABLE, WHERE_TUNABLE = (
    autotune.Tunable(f"elementwise_{name}", EW_CANDIDATES, default=_ew_default, prune=_ew_prune,
                     kernels=(_pointwise_kernel,))
    for name in ("unary", "binary", "where"))
_TUNABLES = (None, UNARY_TUNABLE, BINARY_TUNABLE, WHERE_TUNABLE, WHERE_TUNABLE)


def _ew_pick(nin, outs, contig, n, ins, run):
    """The config of a launch with ``nin`` inputs; key (dtype, contiguous or not and the output count, bucket(n)).
    An in-place launch (an output shares storage with an input) is never timed: each run would apply the op again."""
    in_place = any(isinstance(t, Tensor) and any(t._storage is o._storage for o in outs) for t in ins)
    layout = ("c" if contig else "s") + ("" if len(outs) == 1 else str(len(outs)))
    return _TUNABLES[nin].pick((outs[0].dtype, layout, autotune.bucket(n)), None if in_place else run)


def _scalar_arg(v, ct, device):
    """A Python-number input as the kernel takes it: a float for a floating compute type ``ct`` (a Triton type),
    else an int; a 0-d tensor where passing it by value would change it (-0.0, which neither Triton's interpreter
    nor ``zeros + v`` keeps; a float64 value that fp32 would round)."""
    if not ct.is_floating():
        return int(v)
    v = float(v)
    if (v == 0.0 and math.copysign(1.0, v) < 0) or (ct == tl.float64 and float(np.float32(v)) != v):
        return Tensor._wrap_numpy(np.array(v, dtype=np.float64 if ct == tl.float64 else np.float32), device)
    return v


def launch_pointwise(fn, inputs, out, ct, a=0.0, b=0.0, config=None):
    """out = fn(*inputs, a, b) elementwise, computed in the Triton type ``ct`` (``ACC[dtype]``): ``inputs`` (1 to 4)
    are tensors broadcastable to out's shape or Python numbers; ``out`` may be any strided tensor (an input too, for
    an in-place op). With ``fn`` a pair of functions and ``out`` a pair of tensors of one shape, one launch computes
    both outputs from one read of the inputs (a backward's two gradients); returns ``out``."""
    fns, outs = (fn, out) if isinstance(out, tuple) else ((fn,), (out,))
    if len(fns) != len(outs) or not 1 <= len(outs) <= MAX_OUTPUTS or len({o._shape for o in outs}) != 1:
        raise ValueError(f"launch_pointwise: {len(fns)} functions for {len(outs)} outputs (1 to {MAX_OUTPUTS} "
                         "outputs of one shape)")
    n = outs[0].numel()
    if n == 0:
        return out
    if INTERPRET and any(o.dtype is D.bfloat16 for o in outs):
        tmp = tuple(empty(o._shape, D.float32, o.device) if o.dtype is D.bfloat16 else o for o in outs)
        launch_pointwise(fns, inputs, tmp, ct, a, b, config)
        for o, t in zip(outs, tmp):
            if t is not o:
                copy_host(o, t)
        return out
    ins = [interp_bf16_in(v) if isinstance(v, Tensor) else _scalar_arg(v, ct, outs[0].device) for v in inputs]
    tensors = [v if isinstance(v, Tensor) else None for v in ins]
    contig, sizes, strides = _layout(outs, tensors)
    nin, nout = len(ins), len(outs)
    cfg = config or _ew_pick(nin, outs, contig, n, ins, lambda c: launch_pointwise(fn, inputs, out, ct, a, b, c))
    ab_ptr = ct == tl.float64 and any(isinstance(v, float) and float(np.float32(v)) != v for v in (a, b))
    if ab_ptr:
        ab = Tensor._wrap_numpy(np.array([a, b], dtype=np.float64), outs[0].device)
        a, b = ptr(ab), _elem_ptr(ab, 1)
    args = [v if t is None else ptr(t) for v, t in zip(ins, tensors)] + [0] * (MAX_INPUTS - nin)
    strides = strides[:nin] + [[0] * 6] * (MAX_INPUTS - nin) + strides[nin:] + [[0] * 6] * (MAX_OUTPUTS - nout)
    _pointwise_kernel[(triton.cdiv(n, cfg.BLOCK),)](
        *args, ptr(outs[0]), ptr(outs[-1]), n, *sizes, *[s for st in strides for s in st], a, b,
        FN=fns[0], FN1=fns[-1], NIN=nin, NOUT=nout, SCALARS=sum(1 << k for k, t in enumerate(tensors) if t is None),
        CT=ct, AB_PTR=ab_ptr, CONTIG=contig,
        I64=is_int64_index(n, *outs, *(t for t in tensors if t is not None)), BLOCK=cfg.BLOCK,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    return out


def _elem_ptr(t, i):
    """The kernel argument of element ``i`` of a contiguous tensor."""
    p = ptr(t)
    p.addr += i * t.dtype.itemsize
    return p


def launch_unary(fn, x, out, ct, a=0.0, b=0.0, config=None):
    """out = fn(x, a, b): ``launch_pointwise`` with one input."""
    return launch_pointwise(fn, (x,), out, ct, a, b, config)


@triton.jit
def _identity(x, a, b):
    return x


@triton.jit
def _where(c, x, y, a, b):
    return tl.where(c != 0, x, y)
