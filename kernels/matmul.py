"""Matrix products: ``matmul`` (``@``), ``mm``, ``bmm``, ``addmm``, ``mv``, ``dot`` and their backward rules.

One tiled Triton kernel, ``_matmul_kernel``, serves the whole family: it computes
``C[b] = act(alpha * A[b] @ B[b] + beta * bias[b])`` for a batch of matrices, reading A, B and the bias through
arbitrary strides (stride 0 where a batch dim is broadcast, swapped strides for a transposed operand, so neither
broadcasting nor transposition copies anything). Program ids are grouped along M as in the Triton matmul tutorial
so that a wave of programs shares tiles of B in L2. Accumulation runs in float32 (float64 for float64).

The backward is made of the same products on transposed views: dA = dC @ B^T, dB = A^T @ dC, with broadcast batch
dims summed away. Since those are ``Matmul`` calls they record when create_graph is on, so the rule is differentiable
again at no extra cost. The block configuration is chosen by ``matmul_config`` alone (the autotuner's hook).
"""
import functools
import math

import numpy as np
import triton
import triton.language as tl

from tritorch import _dtype as D, autotune
from tritorch._device import INTERPRET
from tritorch._tensor import Tensor, register
from tritorch.autograd.function import Function
from ._launch import ACC, ptr, broadcast_strides, coalesce, is_int64_index, cdiv, next_pow2, interp_bf16_in
from ._common import check_same_device, copy_host, empty, empty_ordered, np_ct, sum_to, wrap
from .elementwise import _np_gelu
from .reduce import MAX, P_ABS, reduce_
from .views import view_strides

__all__ = ["matmul", "mm", "bmm", "addmm", "mv", "dot", "launch_matmul", "matmul_config", "MatmulConfig",
           "grouped_tile", "CANDIDATES", "FMA_CANDIDATES", "ALL_CANDIDATES", "set_float32_matmul_precision",
           "get_float32_matmul_precision"]

# ====================================================================================================================
# The kernel
# ====================================================================================================================


@triton.jit
def _gelu(x):
    return 0.5 * x * (1.0 + tl.erf(x * 0.7071067811865476))


@triton.jit
def grouped_tile(pid, num_pid_m, num_pid_n, GROUP_M: tl.constexpr):
    """(pid_m, pid_n) of program ``pid`` in a (num_pid_m, num_pid_n) grid of output tiles, in the Triton matmul
    tutorial's grouped order: GROUP_M rows of tiles are visited column by column, so that consecutive programs
    share the right operand's tiles in L2."""
    in_group = GROUP_M * num_pid_n
    first_m = (pid // in_group) * GROUP_M
    group_size = min(num_pid_m - first_m, GROUP_M)
    return first_m + ((pid % in_group) % group_size), (pid % in_group) // group_size


@triton.jit
def _matmul_kernel(a_ptr, b_ptr, c_ptr, bias_ptr, M, N, K, NB1, B_START,
                   sa0, sa1, sam, sak, sb0, sb1, sbk, sbn, sc0, sc1, scm, scn, sd0, sd1, sdm, sdn,
                   alpha, beta,
                   HAS_BIAS: tl.constexpr, ACT: tl.constexpr, CT: tl.constexpr, PRECISION: tl.constexpr,
                   I64: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                   GROUP_M: tl.constexpr):
    """One (BLOCK_M, BLOCK_N) tile of C[b] = ACT(alpha * A[b] @ B[b] + beta * bias[b]).

    Axis 0 of the grid walks the tiles of one matrix, axis 1 the batch; the batch index is split into two
    coordinates (b0, b1) with NB1 = the size of the inner one, each operand having its own batch strides
    (``s?0``, ``s?1``), 0 where it is broadcast. ``?m/?k/?n`` are the matrix strides of each operand.
    """
    pid = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64) + B_START
    pid_m, pid_n = grouped_tile(pid, tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N), GROUP_M)

    b0 = pid_b // NB1
    b1 = pid_b % NB1
    a_ptr += b0 * sa0 + b1 * sa1
    b_ptr += b0 * sb0 + b1 * sb1
    c_ptr += b0 * sc0 + b1 * sc1

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    if I64:
        offs_m = offs_m.to(tl.int64)
        offs_n = offs_n.to(tl.int64)
    # rows/cols past the edge wrap around to valid ones: the loads need no M/N mask, the store drops them
    offs_am = offs_m % M
    offs_bn = offs_n % N
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + offs_am[:, None] * sam + offs_k[None, :] * sak
    b_ptrs = b_ptr + offs_k[:, None] * sbk + offs_bn[None, :] * sbn

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=CT)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        k_left = K - k * BLOCK_K
        a = tl.load(a_ptrs, mask=offs_k[None, :] < k_left, other=0.0)
        b = tl.load(b_ptrs, mask=offs_k[:, None] < k_left, other=0.0)
        acc = tl.dot(a, b, acc, input_precision=PRECISION, out_dtype=CT)
        a_ptrs += BLOCK_K * sak
        b_ptrs += BLOCK_K * sbk

    acc = acc * alpha
    c_mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    if HAS_BIAS:
        bias_ptr += b0 * sd0 + b1 * sd1
        bias = tl.load(bias_ptr + offs_m[:, None] * sdm + offs_n[None, :] * sdn, mask=c_mask, other=0.0)
        acc += beta * bias.to(CT)
    if ACT == "relu":
        acc = tl.maximum(acc, 0.0)
    elif ACT == "gelu":
        acc = _gelu(acc)
    tl.store(c_ptr + offs_m[:, None] * scm + offs_n[None, :] * scn, acc.to(c_ptr.dtype.element_ty), mask=c_mask)


# ====================================================================================================================
# Configuration: the single place the autotuner replaces
# ====================================================================================================================

class MatmulConfig(tuple):
    """(BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M, num_warps, num_stages)."""

    __slots__ = ()

    def __new__(cls, block_m, block_n, block_k, group_m=8, num_warps=4, num_stages=3):
        return super().__new__(cls, (block_m, block_n, block_k, group_m, num_warps, num_stages))

    block_m = property(lambda self: self[0])
    block_n = property(lambda self: self[1])
    block_k = property(lambda self: self[2])
    group_m = property(lambda self: self[3])
    num_warps = property(lambda self: self[4])
    num_stages = property(lambda self: self[5])

    def __repr__(self):
        return (f"MatmulConfig(BLOCK_M={self[0]}, BLOCK_N={self[1]}, BLOCK_K={self[2]}, GROUP_M={self[3]}, "
                f"num_warps={self[4]}, num_stages={self[5]})")


# The search space of the autotuner on tensor cores (float16, bfloat16, tf32): the Triton tutorial's H100 candidates
# plus small-tile ones for thin shapes, reshaped where ``tritorch compile-check`` (sm_90a) found spills in this
# kernel (its batch and stride arithmetic costs registers the tutorial's does not): 128x256x64 (1.1 KB), 128x128x32
# and 64x256x32 with 4 warps (0.6 KB), 32x64x32 with 2 warps and 5 stages; 128x256x32 (0.2 KB here, 0.2-2.7 KB in
# the linear kernel's epilogues) is left out.
CANDIDATES = (
    MatmulConfig(128, 128, 64, 8, 8, 3),
    MatmulConfig(128, 128, 32, 8, 8, 4),
    MatmulConfig(64, 256, 32, 8, 8, 3),
    MatmulConfig(128, 64, 32, 8, 4, 4),
    MatmulConfig(64, 128, 32, 8, 4, 4),
    MatmulConfig(64, 64, 32, 8, 4, 4),
    MatmulConfig(32, 64, 32, 8, 4, 4),
    MatmulConfig(16, 64, 64, 8, 4, 3),
    MatmulConfig(16, 16, 16, 1, 1, 2),
)

# float32 products in full fp32 (PRECISION "ieee", the "highest" precision) run on CUDA cores with FMA, not on tensor
# cores: each thread holds its share of the accumulator and of the A and B tiles in registers, so the tensor-core
# tiles above spill (``tritorch compile-check``, sm_90a: 128x256x64 with 8 warps stored about 45 KB of spills per
# thread). These tiles keep at most 32 accumulators per thread and compile without a spill in every operand layout
# under triton 3.6, 3.8 and 3.9 (ptxas spilled 8-48 B at 80-128 registers in some layout and version for 128x128x32
# and 128x64x32 with 8 warps, 128x64x16, 64x128x16, 128x64x32 and 64x64x32 with 4: left out).
FMA_CANDIDATES = (
    MatmulConfig(64, 128, 32, 8, 8, 3),
    MatmulConfig(64, 64, 32, 8, 8, 3),
    MatmulConfig(32, 64, 32, 8, 2, 3),
    MatmulConfig(16, 64, 64, 8, 4, 3),
    MatmulConfig(16, 16, 16, 1, 1, 2),
)
ALL_CANDIDATES = CANDIDATES + tuple(c for c in FMA_CANDIDATES if c not in CANDIDATES)


def uses_fma(dtype):
    """Whether products in ``dtype`` run on CUDA cores (float32 at the "highest" precision): no tensor cores."""
    return dtype is D.float32 and _F32_PRECISION[0] == "highest"


def prune(configs, key):
    """The candidates for ``key`` (its first item is the dtype): the FMA tiles for float32 ``ieee`` products, the
    tensor-core tiles otherwise."""
    keep = FMA_CANDIDATES if uses_fma(key[0]) else CANDIDATES
    return [c for c in configs if c in keep]


@functools.lru_cache(maxsize=4096)
def matmul_config(M, N, K, dtype, fma=False):
    """The launch configuration of an (M, K) @ (K, N) product in ``dtype``: a heuristic default (``fma``: float32
    products on CUDA cores, ``uses_fma``: a tile of ``FMA_CANDIDATES``).

    In the interpreter every program costs ~1 ms, so it uses one small tile (16 or 32) and BLOCK_K 16 so that
    tests still cover several programs, partial tiles and the K loop.
    """
    if INTERPRET:
        bm = 16 if M <= 16 else 32
        bn = 16 if N <= 16 else 32
        return MatmulConfig(bm, bn, 16, 2, 1, 1)
    if dtype is D.float64:
        return MatmulConfig(64, 64, 16, 8, 4, 2)
    wide = dtype.itemsize <= 2
    if fma and M > 16 and N > 16:
        return MatmulConfig(64, 64, 32, 8, 8, 3) if M * N <= 256 * 256 else MatmulConfig(64, 128, 32, 8, 8, 3)
    if M <= 16 or N <= 16:
        return MatmulConfig(16, 64 if N > 16 else 16, 64 if wide else 32, 8, 4, 3) if M <= N else \
            MatmulConfig(64 if M > 16 else 16, 16, 64 if wide else 32, 8, 4, 3)
    if M * N <= 256 * 256:                  # 3 stages: with 4 these spilled (compile-check)
        return MatmulConfig(64, 64, 64 if wide else 32, 8, 4, 3)
    if M * N <= 1024 * 1024:
        return MatmulConfig(128, 64, 64 if wide else 32, 8, 8 if wide else 4, 3)    # 4 warps: 600 B of spills
    return MatmulConfig(128, 128, 64 if wide else 32, 8, 8, 3)


def _key(a, b, M, N, K, dtype):
    """Autotune key: dtype, operand layouts, bucketed M, N, K."""
    return (dtype, autotune.layout(a), autotune.layout(b), autotune.bucket(M), autotune.bucket(N), autotune.bucket(K))


TUNABLE = autotune.Tunable("matmul", ALL_CANDIDATES,
                           default=lambda k: matmul_config(k[3], k[4], k[5], k[0], uses_fma(k[0])),
                           prune=prune, kernels=(_matmul_kernel,))



# float32 products: "highest" runs in full fp32, "high"/"medium" allow TF32 tensor cores (PyTorch's setting).
_F32_PRECISION = ["highest"]


@register("set_float32_matmul_precision", method=False)
def set_float32_matmul_precision(precision):
    """``"highest"`` (default, as in PyTorch): full fp32 products; ``"high"``/``"medium"``: TF32 on the GPU."""
    if precision not in ("highest", "high", "medium"):
        raise RuntimeError(f"Invalid precision {precision!r}: expected one of 'highest', 'high', 'medium'")
    _F32_PRECISION[0] = precision


@register("get_float32_matmul_precision", method=False)
def get_float32_matmul_precision():
    return _F32_PRECISION[0]


def dot_error(op, dtype, e):
    """The error to raise for a kernel of ``op`` that Triton could not compile: for float64, the known lack of a
    float64 ``tl.dot`` on some GPUs, said plainly; otherwise Triton's own error."""
    if dtype is D.float64:
        return RuntimeError(f"{op}: this Triton ({triton.__version__}) cannot compile a float64 tl.dot on this GPU; "
                            f"use float32 or compute on the cpu device ({e})")
    return e


def _dot_precision(dtype):
    if dtype is D.float32:
        return "ieee" if _F32_PRECISION[0] == "highest" else "tf32"
    if dtype is D.float64:
        return "ieee"
    return None


def nonfinite_probe(t):
    """max |t| as a 0-d float32 (float64) tensor on t's device, computed there without a synchronisation: not finite
    exactly when t holds an inf or a NaN. A product kernel whose masked-out operand zeros meet t's elements (0 * inf
    is NaN, where PyTorch skips the term) loads it and takes an exact path only when it is not finite."""
    ct = D.float64 if t.dtype is D.float64 else D.float32
    return reduce_(t, tuple(range(t.ndim)), MAX, ct, ct, pre=P_ABS)[0]


_ACTS = ("none", "relu", "gelu")
_MAX_GRID_Y = 65535


def _batch_layout(out, *tensors):
    """Batch sizes (NB0, NB1) and each tensor's two batch strides, or None if the batch dims do not merge into 2."""
    bshape = out._shape[:-2]
    strides = [broadcast_strides(t, out._shape)[:-2] if t is not None else [0] * len(bshape)
               for t in (out,) + tensors]
    if not bshape:
        return (1, 1), [(0, 0)] * len(strides)
    sizes, sts = coalesce(bshape, *strides)
    if any(s != 1 for s in sizes[:-2]):
        return None
    return (sizes[-2], sizes[-1]), [(st[-2], st[-1]) for st in sts]


def launch_matmul(a, b, out, bias=None, alpha=1.0, beta=1.0, act="none", config=None):
    """``out = act(alpha * a @ b + beta * bias)`` on the GPU (or interpreter); returns ``out``.

    a: (..., M, K), b: (..., K, N), out: (batch..., M, N) with a's and b's batch dims broadcastable to out's;
    ``bias`` is broadcastable to out's shape (a row vector (N,) for a Linear layer). Any strides.
    ``config`` forces a MatmulConfig instead of ``matmul_config``'s choice.
    """
    if act not in _ACTS:
        raise ValueError(f"matmul: unknown activation {act!r}, expected one of {_ACTS}")
    M, N = out._shape[-2], out._shape[-1]
    K = a._shape[-1]
    if out.numel() == 0:
        return out
    dtype = a.dtype
    if INTERPRET and out.dtype is D.bfloat16:
        tmp = launch_matmul(a, b, empty(out._shape, D.float32, out.device), bias, alpha, beta, act, config)
        return copy_host(out, tmp)
    a, b, bias = interp_bf16_in(a), interp_bf16_in(b), interp_bf16_in(bias)
    layout = _batch_layout(out, a, b, bias)
    if layout is None:         # more than two batch dims that do not merge: materialize the broadcast operands
        a = a.expand(out._shape[:-2] + a._shape[-2:]).contiguous()
        b = b.expand(out._shape[:-2] + b._shape[-2:]).contiguous()
        if bias is not None:
            bias = bias.expand(out._shape).contiguous()
        layout = _batch_layout(out, a, b, bias)
    (nb0, nb1), ((sc0, sc1), (sa0, sa1), (sb0, sb1), (sd0, sd1)) = layout
    mat = [t._stride[-2:] for t in (a, b)]
    if bias is not None:
        bst = broadcast_strides(bias, out._shape)
        sdm, sdn = bst[-2], bst[-1]
    else:
        sdm = sdn = 0
    cfg = config
    if cfg is None:
        in_place = bias is not None and bias._storage is out._storage       # timing runs would accumulate
        run = None if in_place else (lambda c: launch_matmul(a, b, out, bias, alpha, beta, act, c))
        cfg = TUNABLE.pick(_key(a, b, M, N, K, dtype), run)
    precision = _dot_precision(a.dtype)
    tiles = cdiv(M, cfg.block_m) * cdiv(N, cfg.block_n)
    nbatch = nb0 * nb1
    i64 = is_int64_index(max(out.numel(), a.numel(), b.numel()), a, b, out)
    for start in range(0, nbatch, _MAX_GRID_Y):
        try:
            _matmul_kernel[(tiles, min(nbatch - start, _MAX_GRID_Y))](
                ptr(a), ptr(b), ptr(out), ptr(bias if bias is not None else out), M, N, K, nb1, start,
                sa0, sa1, mat[0][0], mat[0][1], sb0, sb1, mat[1][0], mat[1][1], sc0, sc1, out._stride[-2],
                out._stride[-1], sd0, sd1, sdm, sdn, float(alpha), float(beta),
                HAS_BIAS=bias is not None, ACT=act, CT=ACC[dtype], PRECISION=precision, I64=i64,
                BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k, GROUP_M=cfg.group_m,
                num_warps=cfg.num_warps, num_stages=cfg.num_stages)
        except triton.CompilationError as e:
            raise dot_error("matmul", dtype, e) from None
    return out


# ====================================================================================================================
# The NumPy reference
# ====================================================================================================================

def _np_matmul(a, b, bias, alpha, beta, act, out_dtype):
    """NumPy reference of ``launch_matmul``: in float32 for half types, float64 for float64, integers exactly."""
    ct = np_ct(out_dtype) if out_dtype.is_floating_point else out_dtype.np
    r = np.matmul(a.astype(ct, copy=False), b.astype(ct, copy=False))
    if alpha != 1:
        r = r * np.asarray(alpha, dtype=ct) if out_dtype.is_floating_point else r * int(alpha)
    if bias is not None:
        bb = bias.astype(ct, copy=False)
        r = r + (bb * (np.asarray(beta, dtype=ct) if out_dtype.is_floating_point else int(beta)) if beta != 1 else bb)
    if act == "relu":
        r = np.maximum(r, 0)
    elif act == "gelu":
        r = _np_gelu(r, 0, 0)
    return r.astype(out_dtype.np, copy=False)


# ====================================================================================================================
# The autograd Function
# ====================================================================================================================

class Matmul(Function):
    """``alpha * a @ b + beta * bias`` for a: (..., M, K), b: (..., K, N) (batch dims broadcast), bias broadcastable
    to the result or None; ``order``: None (a contiguous result) or strides whose order the result's memory follows
    (``empty_ordered``). Inputs are validated by the public functions."""

    @staticmethod
    def forward(ctx, a, b, bias, alpha, beta, name="MmBackward0", order=None):
        shape = _bcast_batch(a, b) + (a._shape[-2], b._shape[-1])
        use_bias = bias if bias is not None and beta != 0 else None
        if a._storage.device.type == "cpu":
            out = wrap(_np_matmul(a._np, b._np, None if use_bias is None else use_bias._np, alpha, beta, "none",
                                  a.dtype), a.dtype, a.device)
        else:
            out = empty(shape, a.dtype, a.device) if order is None or len(order) != len(shape) else \
                empty_ordered(shape, a.dtype, a.device, order)
            out = launch_matmul(a, b, out, use_bias, alpha, beta)
        if any(ctx.needs_input_grad):
            ctx._name = name
            ctx.alpha, ctx.beta = alpha, beta
            ctx.a_shape, ctx.b_shape = a._shape, b._shape
            # the operands' layouts for their gradients (None: contiguous, as ``empty`` makes them)
            ctx.a_order = None if a.is_contiguous() else a._stride
            ctx.b_order = None if b.is_contiguous() else b._stride
            ctx.bias_shape = None if bias is None else bias._shape
            need_a, need_b = ctx.needs_input_grad[:2]
            ctx.save_for_backward(a if need_b else None, b if need_a else None)
        return out

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        need = ctx.needs_input_grad
        ga = gb = gbias = None
        # each gradient laid out as its operand (``empty_ordered``): the gradient of a head-split or transposed view
        # then reads back through that view's own backward without a copy
        if need[0]:
            ga = sum_to(Matmul.apply(g, b.transpose(-2, -1), None, ctx.alpha, 1.0, "MmBackward0", ctx.a_order),
                        ctx.a_shape)
        if need[1]:
            gb = sum_to(Matmul.apply(a.transpose(-2, -1), g, None, ctx.alpha, 1.0, "MmBackward0", ctx.b_order),
                        ctx.b_shape)
        if need[2]:
            gbias = sum_to(g * ctx.beta if ctx.beta != 1 else g, ctx.bias_shape)
        return ga, gb, gbias, None, None, None, None


def _bcast_batch(a, b):
    """The broadcast batch shape of two (..., M, K), (..., K, N) operands, or PyTorch's error."""
    sa, sb = a._shape[:-2], b._shape[:-2]
    if sa == sb:
        return sa
    n = max(len(sa), len(sb))
    sa, sb = (1,) * (n - len(sa)) + sa, (1,) * (n - len(sb)) + sb
    out = []
    for i, (x, y) in enumerate(zip(sa, sb)):
        if x != y and x != 1 and y != 1:
            raise RuntimeError(f"The size of tensor a ({x}) must match the size of tensor b ({y}) at non-singleton "
                               f"dimension {i}")
        out.append(y if x == 1 else x)
    return tuple(out)


# ====================================================================================================================
# Validation and the public functions
# ====================================================================================================================

_C_NAMES = {D.float32: "float", D.float64: "double", D.float16: "c10::Half", D.bfloat16: "c10::BFloat16",
            D.int64: "long int", D.int32: "int", D.int16: "short int", D.int8: "signed char",
            D.uint8: "unsigned char", D.bool_: "bool"}
_T_NAMES = {D.float32: "Float", D.float64: "Double", D.float16: "Half", D.bfloat16: "BFloat16", D.int64: "Long",
            D.int32: "Int", D.int16: "Short", D.int8: "Char", D.uint8: "Byte", D.bool_: "Bool"}


def _fmt(shape):
    return "x".join(str(s) for s in shape)


def _check(op, cuda_op, *tensors):
    """Types, devices and dtypes of a product's operands, with PyTorch's messages."""
    for t in tensors:
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}(): argument must be Tensor, not {type(t).__name__}")
    check_same_device(op, *tensors)
    a, b = tensors[-2], tensors[-1]
    if a.dtype is not b.dtype:
        raise RuntimeError(f"expected m1 and m2 to have the same dtype, but got: {_C_NAMES[a.dtype]} != "
                           f"{_C_NAMES[b.dtype]}")
    if len(tensors) == 3 and tensors[0].dtype is not a.dtype:
        raise RuntimeError(f"expected mat1 and input to have the same dtype, but got: {_C_NAMES[a.dtype]} != "
                           f"{_C_NAMES[tensors[0].dtype]}")
    if a.device.type == "cpu":
        if a.dtype is D.bool_:
            raise RuntimeError(f"\"{cuda_op}_impl_cpu_\" not implemented for 'Bool'")
    elif not a.dtype.is_floating_point:
        raise RuntimeError(f"\"{cuda_op}_cuda\" not implemented for '{_T_NAMES[a.dtype]}' (integer matrix products "
                           "run on the cpu device only, as in PyTorch)")


def _not_aligned(a, b):
    return RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({_fmt(a._shape)} and {_fmt(b._shape)})")


def _fold(a):
    """(..., M, K) as a (prod(...) * M, K) view when its strides allow (no copy), else None."""
    shape = (math.prod(a._shape[:-1]), a._shape[-1])
    return None if _view_strides(a._shape, a._stride, shape) is None else a.reshape(shape)


def _view_strides(shape, stride, new):
    return view_strides(shape, stride, new)


@register("matmul")
def matmul(input, other, *, order=None):
    """Matrix product with PyTorch's rules: 1-D operands get a dim prepended (left) or appended (right) that is
    removed from the result; batch dims broadcast; a batched left operand times a matrix is one large product.
    ``order``: None, or for two operands of at least 3 dims strides whose order the result's memory follows (the
    layout ``tritorch.compile``'s layout pass asks for; ``kernels/_common.empty_ordered``)."""
    if not isinstance(input, Tensor) or not isinstance(other, Tensor):
        sp = other if isinstance(input, Tensor) else input
        if hasattr(sp, "_sparse_matmul"):           # a sparse COO operand: tritorch/sparse's product
            return sp._sparse_matmul(input, other)
        raise TypeError(f"matmul(): argument 'other' must be Tensor, not {type(other).__name__}")
    da, db = input.ndim, other.ndim
    if da == 0 or db == 0:
        raise RuntimeError(f"both arguments to matmul need to be at least 1D, but they are {da}D and {db}D")
    if da == 1 and db == 1:
        return dot(input, other)
    _check("matmul", "addmm", input, other)
    a = input.unsqueeze(0) if da == 1 else input
    b = other.unsqueeze(-1) if db == 1 else other
    if a._shape[-1] != b._shape[-2]:
        raise _not_aligned(input, other)
    if db <= 2 and a.ndim >= 3:
        a2 = _fold(a)
        if a2 is not None:
            out = Matmul.apply(a2, b, None, 1.0, 1.0, "MmBackward0")
            out = out.reshape(a._shape[:-1] + (b._shape[-1],))
            return out.squeeze(-1) if db == 1 else out
    out = Matmul.apply(a, b, None, 1.0, 1.0, "BmmBackward0" if max(a.ndim, b.ndim) > 2 else "MmBackward0",
                       order if da >= 3 and db >= 3 else None)
    if da == 1:
        out = out.squeeze(-2)
    if db == 1:
        out = out.squeeze(-1)
    return out


@register("mm")
def mm(input, mat2):
    """(n, m) @ (m, p) -> (n, p)."""
    if not isinstance(input, Tensor) or not isinstance(mat2, Tensor):
        sp = mat2 if isinstance(input, Tensor) else input
        if hasattr(sp, "_sparse_matmul"):           # a sparse COO operand: tritorch/sparse's product
            return sp._sparse_matmul(input, mat2)
    _check("mm", "addmm", input, mat2)
    if input.ndim != 2:
        raise RuntimeError("self must be a matrix")
    if mat2.ndim != 2:
        raise RuntimeError("mat2 must be a matrix")
    if input._shape[1] != mat2._shape[0]:
        raise _not_aligned(input, mat2)
    return Matmul.apply(input, mat2, None, 1.0, 1.0, "MmBackward0")


@register("bmm")
def bmm(input, mat2):
    """(b, n, m) @ (b, m, p) -> (b, n, p), no broadcasting."""
    _check("bmm", "bmm", input, mat2)
    if input.ndim != 3:
        raise RuntimeError("batch1 must be a 3D tensor")
    if mat2.ndim != 3:
        raise RuntimeError("batch2 must be a 3D tensor")
    if mat2._shape[:2] != (input._shape[0], input._shape[2]):
        raise RuntimeError(f"Expected size for first two dimensions of batch2 tensor to be: [{input._shape[0]}, "
                           f"{input._shape[2]}] but got: [{mat2._shape[0]}, {mat2._shape[1]}] (batch1 "
                           f"{_fmt(input._shape)}, batch2 {_fmt(mat2._shape)}).")
    return Matmul.apply(input, mat2, None, 1.0, 1.0, "BmmBackward0")


@register("addmm")
def addmm(input, mat1, mat2, *, beta=1, alpha=1):
    """beta * input + alpha * (mat1 @ mat2), input broadcastable to (n, p); with beta = 0 input is ignored (its
    NaN/inf do not propagate). One kernel: the bias is added in the product's epilogue."""
    _check("addmm", "addmm", input, mat1, mat2)
    if mat1.ndim != 2:
        raise RuntimeError(f"mat1 must be a matrix, got {mat1.ndim}-D tensor")
    if mat2.ndim != 2:
        raise RuntimeError(f"mat2 must be a matrix, got {mat2.ndim}-D tensor")
    if mat1._shape[1] != mat2._shape[0]:
        raise _not_aligned(mat1, mat2)
    target = (mat1._shape[0], mat2._shape[1])
    if input.ndim > 2 or any(s != 1 and s != t for s, t in zip(input._shape[::-1], target[::-1])):
        raise RuntimeError(f"The expanded size of the tensor ({target[-1]}) must match the existing size "
                           f"({input._shape[-1] if input.ndim else 1}) at non-singleton dimension "
                           f"{1 if input.ndim and input._shape[-1] != target[-1] else 0}.  Target sizes: "
                           f"{list(target)}.  Tensor sizes: {list(input._shape)}")
    return Matmul.apply(mat1, mat2, input, alpha, beta, "AddmmBackward0")


@register("mv")
def mv(input, vec):
    """(n, m) @ (m,) -> (n,)."""
    _check("mv", "addmm", input, vec)
    if input.ndim != 2 or vec.ndim != 1:
        raise RuntimeError(f"vector + matrix @ vector expected, got 1, {input.ndim}, {vec.ndim}")
    if input._shape[1] != vec._shape[0]:
        raise RuntimeError(f"size mismatch, got input ({input._shape[0]}), mat ({_fmt(input._shape)}), vec "
                           f"({vec._shape[0]})")
    return Matmul.apply(input, vec.unsqueeze(-1), None, 1.0, 1.0, "MvBackward0").squeeze(-1)


@register("dot")
def dot(input, tensor):
    """Inner product of two 1-D tensors (a (1, n) @ (n, 1) product: float32 accumulation for half types)."""
    if not isinstance(input, Tensor) or not isinstance(tensor, Tensor):
        raise TypeError("dot(): argument must be Tensor")
    if input.ndim != 1 or tensor.ndim != 1:
        raise RuntimeError(f"1D tensors expected, but got {input.ndim}D and {tensor.ndim}D tensors")
    if input.dtype is not tensor.dtype:
        raise RuntimeError(f"dot : expected both vectors to have same dtype, but found {_T_NAMES[input.dtype]} and "
                           f"{_T_NAMES[tensor.dtype]}")
    check_same_device("dot", input, tensor)
    n, m = input._shape[0], tensor._shape[0]
    if n != m:
        raise RuntimeError(f"inconsistent tensor size, expected tensor [{n}] and src [{m}] to have the same number "
                           f"of elements, but got {n} and {m} elements respectively")
    _check("dot", "dot", input, tensor)
    return Matmul.apply(input.unsqueeze(0), tensor.unsqueeze(-1), None, 1.0, 1.0, "DotBackward0").reshape(())


def _rmatmul(self, other):
    return matmul(other, self) if isinstance(other, Tensor) else NotImplemented


Tensor.__matmul__ = lambda self, other: matmul(self, other) if isinstance(other, Tensor) else NotImplemented
Tensor.__rmatmul__ = _rmatmul
