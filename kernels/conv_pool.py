"""A 2-D convolution with an activation, read only by a max pooling, as one autograd node (``tritorch.compile``'s
``fuse_conv_pool``: ``max_pool2d(relu(conv2d(x, w, b)))``): on the GPU one kernel forward, and its backward runs no
activation-gradient pass.

Forward (``_conv_pool_fwd_kernel``): a program takes a (BLOCK_M pooled pixels, BLOCK_N channels) tile and walks the
pooling window tap by tap: per tap, the tile of convolution pixels at that tap (``conv.conv_tile``, the product of
``_conv_fwd_kernel``), its bias and activation, rounded to the output's dtype as the convolution would store it, then
the running maximum and its argmax as the pooling kernel keeps them (the first maximum in window order; a NaN wins).
The convolution's result never reaches memory: a write and a read of the convolution's size fewer, and a launch.
Used when the windows do not overlap (stride >= dilation * (kernel - 1) + 1 per dim), so that each convolution pixel
is computed once; overlapping windows (and the cpu) run the two kernels.

Backward: a max pooling sends each output's gradient to the element its argmax selected, and there the activation's
result equals the pooled output y. The derivative of an activation taken from its result (``EPILOGUE_ACTIVATIONS``:
relu, sigmoid, tanh) is therefore ``act'(y)`` per output, applied inside the pooling's gather (``_pool_bwd_kernel``'s
``BWD``), and the convolution's gradient products read the pre-activation gradient it stores. The separate nodes
store the pooled gradient at the convolution's output size and run ``_act_grad_kernel`` over it: a launch, a write
and two reads of that size more. Under create_graph the derivative runs as recorded ops at the pooled size, then the
pooling's own differentiable backward.
"""
import triton
import triton.language as tl

from tritorch import _dtype as D, autotune
from tritorch._device import INTERPRET
from tritorch.autograd.function import Function
from tritorch.autograd.grad_mode import STATE
from ._common import empty
from ._launch import ACC, cdiv, interp_bf16_in, is_int64_index, ptr
from ._pointwise import _identity
from . import matmul as _mm
from .conv import CANDIDATES, ConvConfig, Geometry, conv_config, conv_grads, conv_key, conv_prune, conv_setup, \
    conv_tile, dot_precision, run_conv, save_conv, taps_outer
from .elementwise import UNARY
from .pool import MAX, PoolGrad, pool_forward, pool_grad, pool_window

__all__ = ["conv2d_max_pool2d", "ConvMaxPool", "launch_conv_pool", "TUNABLE"]


@triton.jit
def _conv_pool_fwd_kernel(x_ptr, w_ptr, b_ptr, y_ptr, idx_ptr, MP, OCG, K, CG, H, W, OH, OW, QH, QW, KH, KW,
                          sxn, sxc, sxh, sxw, swo, swc, swh, sww, sb, syn, syc,
                          SH, SW, PH, PW, DH, DW, PKH, PKW, PSH, PSW, PPH, PPW, PDH, PDW, alpha,
                          HAS_BIAS: tl.constexpr, ACT: tl.constexpr, TAPS_OUTER: tl.constexpr, CT: tl.constexpr,
                          PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                          BLOCK_K: tl.constexpr):
    """One (BLOCK_M pooled pixels, BLOCK_N channels) tile of y = max pooling of ACT(conv(x, w) + bias, alpha), and
    its argmax idx = oh * OW + ow in the (OH, OW) convolution plane, for group ``program_id(2)``.

    x: (N, G*CG, H, W), w: (G*OCG, CG, KH, KW), both through their strides; y and idx: (N, G*OCG, QH, QW) with
    strides (syn, syc, QW, 1); MP = N*QH*QW, K = CG*KH*KW. The convolution: stride (SH, SW), padding (PH, PW),
    dilation (DH, DW); the pooling window: (PKH, PKW) taps, stride (PSH, PSW), padding (PPH, PPW), dilation
    (PDH, PDW). Index math in int32 (the launch checks that it fits)."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    g = tl.program_id(2)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m = offs_m < MP
    mask_n = offs_n < OCG
    n = offs_m // (QH * QW)
    q = offs_m % (QH * QW)
    oh0 = (q // QW) * PSH - PPH                      # the window's first convolution row and column
    ow0 = (q % QW) * PSW - PPW
    oc = g * OCG + offs_n
    x_rows = x_ptr + n * sxn + (g * CG) * sxc
    w_cols = w_ptr + oc * swo
    bias = tl.zeros((BLOCK_N,), CT)
    if HAS_BIAS:
        bias = tl.load(b_ptr + oc * sb, mask=mask_n, other=0.0).to(CT)
    best = tl.full((BLOCK_M, BLOCK_N), -float("inf"), CT)
    arg = tl.full((BLOCK_M, BLOCK_N), -1, tl.int32)
    for t in range(PKH * PKW):
        oh = oh0 + (t // PKW) * PDH
        ow = ow0 + (t % PKW) * PDW
        valid = mask_m & (oh >= 0) & (oh < OH) & (ow >= 0) & (ow < OW)
        acc = conv_tile(x_rows, w_cols, oh * SH - PH, ow * SW - PW, valid, mask_n, K, CG, H, W, KH, KW,
                        sxc, sxh, sxw, swc, swh, sww, DH, DW, TAPS_OUTER, CT, PRECISION, False,
                        BLOCK_M, BLOCK_N, BLOCK_K)
        v = ACT(acc + bias[None, :], alpha, 0.0).to(y_ptr.dtype.element_ty).to(CT)
        take = valid[:, None] & ((v > best) | (v != v) | (arg < 0))
        best = tl.where(take, v, best)
        arg = tl.where(take, (oh * OW + ow)[:, None], arg)
    off = (n * syn + q)[:, None] + (oc * syc)[None, :]
    mask = mask_m[:, None] & mask_n[None, :]
    tl.store(y_ptr + off, best.to(y_ptr.dtype.element_ty), mask=mask)
    tl.store(idx_ptr + off, arg.to(tl.int64), mask=mask)


def _fits(c):
    """Whether tile config ``c`` leaves registers for the running maximum and its argmax: 8 warps, at least 32 rows,
    at most 16 accumulators per thread (tritorch compile-check, sm_90a, triton 3.6-3.9: 128 x 64 with 8 warps spilled
    104-184 B in every dtype; in bfloat16 64 x 64 with 4 warps 252-384 B, 32 x 32 with 4 warps 4-20 B, 16 x 64 x 16
    with 8 warps 8-24 B)."""
    return c.num_warps == 8 and c.block_m >= 32 and c.block_m * c.block_n <= 16 * 32 * c.num_warps


def _prune(configs, key):
    return [c for c in conv_prune(configs, key) if _fits(c)]


def _default(key):
    """The convolution's forward default, halved in M (and N) until it ``_fits`` (float64 keeps its own)."""
    c = conv_config("fwd", key[3], key[4], key[5], key[0])
    bm, bn = c.block_m, c.block_n
    while key[0] is not D.float64 and not _fits(ConvConfig(bm, bn, c.block_k, 1, c.num_warps)) and bm * bn > 32 * 32:
        bm, bn = (bm // 2, bn) if bm >= bn else (bm, bn // 2)
    return ConvConfig(bm, bn, c.block_k, c.group_m, c.num_warps, c.num_stages)


TUNABLE = autotune.Tunable("conv_pool_fwd", CANDIDATES, prune=_prune, default=_default,
                           kernels=(_conv_pool_fwd_kernel, conv_tile))


def fusable(x, p):
    """Whether ``launch_conv_pool`` takes this case: a GPU tensor (not bfloat16 in the interpreter, which has no
    bfloat16 arithmetic to round the convolution's result with), windows that do not overlap."""
    k, s, d = p["k"][1:], p["s"][1:], p["d"][1:]
    return (x._storage.device.type != "cpu" and not (INTERPRET and x.dtype is D.bfloat16)
            and all(si >= di * (ki - 1) + 1 for ki, si, di in zip(k, s, d)))


def launch_conv_pool(x, w, bias, geo, out_hw, act, p, out3, config=None):
    """(y, idx): the max pooling ``p`` (to ``out3``, (1, QH, QW)) of act(conv2d(x, w) + bias) (output size
    ``out_hw``) in one launch, as ``pool_forward(run_conv(...), p, out3)`` returns them; x (N, C, H, W),
    w (OC, C/groups, KH, KW), any strides."""
    N, _, H, W = x._shape
    OC, CG, KH, KW = w._shape
    OH, OW = out_hw
    QH, QW = out3[1:]
    G = geo.groups
    MP, OCG, K = N * QH * QW, OC // G, CG * KH * KW
    y = empty((N, OC, QH, QW), x.dtype, x.device)
    idx = empty((N, OC, QH, QW), D.int64, x.device)
    if is_int64_index(max(x.numel(), w.numel(), N * OC * OH * OW), x, w) or K == 0 or y.numel() == 0:
        return pool_forward(run_conv(x, w, bias, geo, out_hw, act), p, out3)
    dtype = x.dtype
    cfg = config or TUNABLE.pick(conv_key("fwd", x, MP, OCG, K, G, dtype),
                                 lambda c: launch_conv_pool(x, w, bias, geo, out_hw, act, p, out3, c))
    x, w, bias = interp_bf16_in(x), interp_bf16_in(w), interp_bf16_in(bias)
    try:
        _conv_pool_fwd_kernel[(cdiv(MP, cfg.block_m), cdiv(OCG, cfg.block_n), G)](
            ptr(x), ptr(w), ptr(bias if bias is not None else y), ptr(y), ptr(idx), MP, OCG, K, CG, H, W, OH, OW,
            QH, QW, KH, KW, *x._stride, *w._stride, bias._stride[0] if bias is not None else 0, *y._stride[:2],
            *geo.stride, *geo.padding, *geo.dilation, *p["k"][1:], *p["s"][1:], *p["p"][1:], *p["d"][1:], 0.0,
            HAS_BIAS=bias is not None, ACT=_identity if act is None else UNARY[act].tfn,
            TAPS_OUTER=taps_outer(CG, cfg.block_k), CT=ACC[dtype], PRECISION=dot_precision(dtype),
            BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k,
            num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    except triton.CompilationError as e:
        raise _mm.dot_error("conv", dtype, e) from None
    return y, idx


class ConvMaxPool(Function):
    """y = max pooling ``p`` (to spatial sizes ``out3``) of act(conv2d(x, w) + bias), for 4-D x, w (validated by
    ``conv2d_max_pool2d``); ``geo``, ``out_hw``: the convolution's geometry and output size, as ``Conv`` takes them."""

    @staticmethod
    def forward(ctx, x, w, bias, geo, out_hw, act, p, out3):
        if fusable(x, p):
            y, idx = launch_conv_pool(x, w, bias, geo, out_hw, act, p, out3)
        else:
            y, idx = pool_forward(run_conv(x, w, bias, geo, out_hw, act), p, out3)
        save_conv(ctx, x, w, geo, y, idx)
        ctx.act, ctx.p, ctx.h_shape = act, p, (x._shape[0], w._shape[0]) + tuple(out_hw)
        return y

    @staticmethod
    def backward(ctx, g):
        x, w, y, idx = ctx.saved_tensors
        if STATE.enabled:           # create_graph: recorded ops, then the pooling's differentiable backward
            if ctx.act is not None:
                g = UNARY[ctx.act].bwd_composite(g, y, y, 0.0)
            gh = PoolGrad.apply(g, idx, ctx.p, ctx.h_shape)
        else:
            gh = pool_grad(g, idx, ctx.p, ctx.h_shape, g.dtype, g.device, ctx.act, y)
        return conv_grads(ctx, x, w, gh) + (None,) * 5


def conv2d_max_pool2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, activation=None,
                      kernel_size, pool_stride=None, pool_padding=0, pool_dilation=1, ceil_mode=False):
    """``max_pool2d(act(conv2d(input, weight, bias, stride, padding, dilation, groups)), kernel_size, pool_stride,
    pool_padding, pool_dilation, ceil_mode)`` as one node: ``activation`` one of the convolution's epilogue
    activations (or None), differentiated inside the pooling's backward kernel."""
    x, batched, stride, pads, dilation, out = conv_setup("conv2d", input, weight, bias, stride, padding, dilation,
                                                         groups, 2, activation)
    p, out3 = pool_window((x._shape[0], weight._shape[0]) + out, MAX, 2, kernel_size, pool_stride, pool_padding,
                          pool_dilation, ceil_mode, True, None, "max_pool2d")
    geo = Geometry(stride, tuple(a for a, _ in pads), dilation, groups)
    y = ConvMaxPool.apply(x, weight, bias, geo, out, activation, p, out3)
    return y if batched else y.squeeze(0)
