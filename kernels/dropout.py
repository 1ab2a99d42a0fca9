"""``dropout`` and ``dropout2d``: zero elements (or whole channels) with probability p, scale the rest by 1/(1-p).

The mask is never stored. Each call takes a range of Philox counters from the device's generator (as every random
op of ``kernels/random.py`` does): element i keeps its value when ``rand(seed, offset + i // GROUP) >= p``, where
GROUP is 1 for ``dropout`` and the size of a channel's plane for ``dropout2d``. Backward applies the same rule to
the gradient with the same (seed, offset), which regenerates the same mask; since that rule is linear, backward is
the same op again and is differentiable to any order.

On ``cuda`` the uniform numbers are Triton's ``tl.rand`` (Philox4x32-10); on ``cpu`` they are the NumPy transcription
of the same stream (``random.philox_np`` and ``uint_to_uniform_float_np``), so cpu, the interpreter and the GPU
drop the same elements for the same seed.
"""
import warnings

import numpy as np
import triton
import triton.language as tl

from tritorch._device import INTERPRET
from tritorch._tensor import Tensor, register
from tritorch.autograd.function import Function
from ._launch import ACC, ptr, cdiv, next_pow2, interp_bf16_in, interp_bf16_out
from ._common import empty
from .random import _generator, philox_np, uint_to_uniform_float_np

__all__ = ["dropout", "dropout2d", "dropout_mask_np", "dropout_np", "dropout_scale", "draw", "check_p", "keep_tile"]


@triton.jit(do_not_specialize=["seed", "offset", "p", "scale_bits"])
def _dropout_kernel(x_ptr, y_ptr, n, GROUP, seed, offset, p, scale_bits, CT: tl.constexpr, BLOCK: tl.constexpr):
    """y[i] = x[i] * scale where rand(seed, offset + i // GROUP) >= p, else 0 (contiguous x and y; the
    product in CT; ``scale`` comes as the int64 bit pattern of a float64, which a Python float would not be)."""
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = i < n
    keep = tl.rand(seed, offset.to(tl.int64) + i // GROUP) >= p
    x = tl.load(x_ptr + i, mask=mask, other=0.0)
    scale = scale_bits.to(tl.int64).to(tl.float64, bitcast=True).to(CT)
    y = tl.where(keep, x.to(CT) * scale, 0.0)
    tl.store(y_ptr + i, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def keep_tile(seed, offset, offs_m, offs_n, N, p):
    """The keep-mask ``dropout`` draws for the (len(offs_m), len(offs_n)) tile at rows offs_m, columns offs_n of a
    contiguous (M, N) result (element (m, n) at counter offset + m * N + n): for the kernels that fuse dropout
    (linear's epilogue, its backward)."""
    return tl.rand(seed, offset.to(tl.int64) + offs_m[:, None].to(tl.int64) * N + offs_n[None, :]) >= p


def dropout_mask_np(n, group, seed, offset, p):
    """The keep-mask of ``_dropout_kernel`` for n elements, computed in NumPy from the same Philox stream."""
    counters = offset + np.arange(n, dtype=np.int64) // group
    return uint_to_uniform_float_np(philox_np(seed, counters)[0]) >= np.float32(p)


def dropout_scale(p):
    """(the factor of the kept elements, its float64 bits as an int64: the kernels' ``scale_bits`` argument, which a
    Python float, passed as float32, would round)."""
    scale = 0.0 if p >= 1 else 1.0 / (1.0 - p)
    return scale, int(np.float64(scale).view(np.int64))


def dropout_np(a, group, seed, offset, p):
    """The NumPy reference of ``_dropout_kernel`` on the C-ordered array ``a``: the result in a's dtype, the product
    in float32 (float64 for float64)."""
    keep = dropout_mask_np(a.size, group, seed, offset, p).reshape(a.shape)
    ct = np.float64 if a.dtype == np.float64 else np.float32
    return np.where(keep, a.astype(ct) * ct(dropout_scale(p)[0]), ct(0)).astype(a.dtype)


def _apply_mask(x, out, group, seed, offset, p):
    """out = dropout of contiguous x with the mask of (seed, offset)."""
    n = x.numel()
    bits = dropout_scale(p)[1]
    if n == 0:
        return out
    if x._storage.device.type == "cpu":
        out._np[...] = dropout_np(x._np, group, seed, offset, p)
        return out
    xin = interp_bf16_in(x)
    res = out if xin is x else empty(x._shape, xin.dtype, x.device)
    block = max(16, min(next_pow2(n), 1024)) if INTERPRET else 1024
    _dropout_kernel[(cdiv(n, block),)](ptr(xin), ptr(res), n, group, seed, offset, float(p), bits,
                                       CT=ACC[xin.dtype], BLOCK=block)
    if res is not out:
        out._np[...] = interp_bf16_out(res, x.dtype)._np
    return out


class Dropout(Function):
    """Dropout with a mask fixed by (seed, offset, group); backward is the same op on the gradient."""

    @staticmethod
    def forward(ctx, x, seed, offset, p, group):
        ctx._name = "NativeDropoutBackward0" if group == 1 else "MulBackward0"
        ctx.key = (seed, offset, p, group)
        xc = x.contiguous()
        return _apply_mask(xc, empty(x._shape, x.dtype, x.device), group, seed, offset, p)

    @staticmethod
    def backward(ctx, g):
        seed, offset, p, group = ctx.key
        return Dropout.apply(g, seed, offset, p, group), None, None, None, None


def check_p(p):
    if p < 0 or p > 1:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def draw(n_masks, device):
    """(seed, offset): the Philox counters of one dropout call with ``n_masks`` masks, taken from the generator."""
    return _generator(None, device)._take(max(n_masks, 1))


def _run(input, p, training, inplace, group, n_masks):
    """Draw the counters of one call and apply the mask; ``inplace`` writes the result back into ``input`` (a
    recorded copy, so gradients still reach the original values)."""
    if not training:
        return input
    if not input.dtype.is_floating_point:
        raise RuntimeError(f"dropout: expected a floating point input, but got {input.dtype}")
    seed, offset = draw(n_masks, input._storage.device)
    out = Dropout.apply(input, seed, offset, p, group)
    return input.copy_(out) if inplace else out


@register("dropout", method=False)
def dropout(input, p=0.5, train=True, inplace=False):
    """Zero each element with probability ``p`` and scale the others by ``1 / (1 - p)`` (identity when not
    ``train``)."""
    if not isinstance(input, Tensor):
        raise TypeError(f"dropout(): argument 'input' (position 1) must be Tensor, not {type(input).__name__}")
    check_p(p)
    return _run(input, float(p), train, inplace, 1, input.numel())


@register("dropout2d", method=False)
def dropout2d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels of (N, C, H, W) or (C, H, W) with probability ``p`` (one draw per channel plane)."""
    if not isinstance(input, Tensor):
        raise TypeError(f"dropout2d(): argument 'input' (position 1) must be Tensor, not {type(input).__name__}")
    check_p(p)
    if input.ndim not in (3, 4):
        warnings.warn(f"dropout2d: Received a {input.ndim}-D input to dropout2d, which is deprecated and will "
                      "result in an error in a future release. To retain the behavior and silence this warning, "
                      "please use dropout instead. Note that dropout2d exists to provide channel-wise dropout on "
                      "inputs with 2 spatial dimensions, a channel dimension, and an optional batch dimension "
                      "(i.e. 3D or 4D inputs).", stacklevel=2)
    if input.ndim == 3:
        warnings.warn("dropout2d: Received a 3D input to dropout2d and assuming that channel-wise 1D dropout "
                      "behavior is desired - input is interpreted as shape (N, C, L), where C is the channel dim. "
                      "This behavior will change in a future release to interpret the input as one without a batch "
                      "dimension, i.e. shape (C, H, W). To maintain the 1D channel-wise dropout behavior, please "
                      "switch to using dropout1d instead.", stacklevel=2)
    group = 1
    for n in input._shape[2:]:
        group *= n
    n_masks = input._shape[0] * input._shape[1] if input.ndim >= 2 else input.numel()
    return _run(input, float(p), training, inplace, max(group, 1), n_masks)
