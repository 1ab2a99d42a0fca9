"""Mixed precision's two device ops, PyTorch's ``_amp_foreach_non_finite_check_and_unscale_`` and
``_amp_update_scale_``: a fused Triton kernel each, with the NumPy reference beside it (the ``cpu`` path).

The unscale covers every gradient of a launch (one device, one dtype) in one kernel, on the tables of the fused
optimizer updates (``kernels/optim.py``: ``_tile``, ``_addr``, the cached block map): each program multiplies one
block of one gradient by ``inv_scale`` in place and, if the block holds an inf or a NaN, writes 1 to ``found_inf``.
The flag stays on the device: nothing here reads it back, so ``GradScaler`` reads it only when it must.
"""
import numpy as np
import triton
import triton.language as tl

from tritorch import _dtype as D
from tritorch._device import INTERPRET
from tritorch._tensor import Tensor, register

from ._launch import ACC, TL, ptr, table_ptr
from .optim import _addr, _block_map, _block_size, _tile

__all__ = ["non_finite_check_and_unscale_", "update_scale_"]

_FLOATING = (D.float16, D.bfloat16, D.float32, D.float64)


@triton.jit
def _unscale_kernel(tab, blocks, T, found_inf, inv_scale, GT: tl.constexpr, CT: tl.constexpr,
                    BLOCK: tl.constexpr):
    """``tab`` (int64, 2*T): row 0 the gradients' sizes, row 1 their addresses (``GT`` elements, contiguous);
    ``blocks`` (int32, 2 per program): the program's gradient and block; ``found_inf``: one float32, set to 1 when a
    block holds a non-finite value; ``inv_scale``: one float32, the factor (computed in ``CT``, fp32 for half
    gradients, as PyTorch's opmath)."""
    t, offs, n, _ = _tile(tab, blocks, BLOCK)
    mask = offs < n
    g_ptr = _addr(tab, 1, T, t, GT, False)
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(CT)
    bad = tl.sum(tl.where(tl.abs(g) < float("inf"), 0, 1), axis=0)       # inf or NaN (NaN < inf is false)
    if bad > 0:
        tl.store(found_inf, 1.0)
    inv = tl.load(inv_scale).to(CT)
    tl.store(g_ptr + offs, (g * inv).to(GT), mask=mask)


@triton.jit
def _update_scale_kernel(scale, tracker, found_inf, growth_factor, backoff_factor, growth_interval):
    """``scale`` (one float32), ``tracker`` (one int32: finite steps since the last change), ``found_inf`` (one
    float32): the scale backs off on an inf/NaN, grows after ``growth_interval`` finite steps in a row (when the
    grown value is finite)."""
    s = tl.load(scale)
    n = tl.load(tracker)
    if tl.load(found_inf) != 0.0:
        tl.store(scale, s * backoff_factor)
        tl.store(tracker, 0)
    else:
        n = n + 1
        if n == growth_interval:
            grown = s * growth_factor
            if tl.abs(grown) != float("inf"):
                tl.store(scale, grown)
            tl.store(tracker, 0)
        else:
            tl.store(tracker, n)


def _check_scalar(name, t, dtype, device):
    if not isinstance(t, Tensor) or t.numel() != 1 or t.dtype is not dtype:
        raise RuntimeError(f"{name} must be a 1-element {dtype} tensor.")
    if t.device != device:
        raise RuntimeError(f"{name} must be on the same device as the other tensors ({device}), got {t.device}.")


@register("_amp_foreach_non_finite_check_and_unscale_", method=False)
def non_finite_check_and_unscale_(self, found_inf, inv_scale):
    """Multiply every tensor of ``self`` (a list; one device, one floating dtype) by ``inv_scale`` in place and set
    ``found_inf`` to 1 if any of them holds an inf or a NaN; one kernel launch on ``cuda``."""
    grads = list(self)
    if not grads:
        return
    dev, dt = grads[0].device, grads[0].dtype
    for g in grads:
        if not isinstance(g, Tensor):
            raise TypeError(f"_amp_foreach_non_finite_check_and_unscale_: expected a list of tensors, got "
                            f"{type(g).__name__}")
        if g.device != dev or g.dtype is not dt:
            raise RuntimeError("_amp_foreach_non_finite_check_and_unscale_: all tensors must share one device and "
                               f"one dtype, got {dev}/{dt} and {g.device}/{g.dtype}")
    if dt not in _FLOATING:
        raise RuntimeError(f"_amp_foreach_non_finite_check_and_unscale_: expected floating-point tensors, got {dt}")
    _check_scalar("found_inf", found_inf, D.float32, dev)
    _check_scalar("inv_scale", inv_scale, D.float32, dev)
    if dev.type == "cpu":
        _unscale_cpu(grads, found_inf, inv_scale)
    else:
        _unscale_cuda(grads, found_inf, inv_scale)
    for g in grads:
        g._storage.version += 1


def _unscale_cpu(grads, found_inf, inv_scale):
    """The reference: opmath (float32 for half types) product, written back in the gradient's dtype."""
    ct = np.float64 if grads[0].dtype is D.float64 else np.float32
    inv = inv_scale._np.reshape(()).astype(ct)
    bad = False
    for g in grads:
        a = g._np
        x = a.astype(ct)
        bad = bad or not np.isfinite(x).all()
        with np.errstate(over="ignore", invalid="ignore"):
            a[...] = (x * inv).astype(a.dtype)
    if bad:
        found_inf._np[...] = 1.0


def _unscale_cuda(grads, found_inf, inv_scale):
    dev, dt = grads[0]._storage.device, grads[0].dtype
    live = [g for g in grads if g.numel()]
    if not live:
        return
    # the kernel sees each gradient as flat memory: a strided one goes through a contiguous copy; in the interpreter
    # (no bf16 arithmetic) bf16 ones through float32 host copies
    bf16_host = INTERPRET and dt is D.bfloat16
    if bf16_host:
        work = [Tensor._wrap_numpy(g._np.astype(np.float32), dev) for g in live]
    else:
        work = [g if g.is_contiguous() else g.contiguous() for g in live]
    gt = D.float32 if bf16_host else dt
    numels = tuple(w.numel() for w in work)
    table = np.asarray([list(numels), [w.data_ptr() for w in work]], dtype=np.int64).reshape(-1)
    tab = Tensor._wrap_numpy(table, dev)
    block = _block_size(numels)
    blocks = _block_map(dev, numels, block)
    _unscale_kernel[(blocks.numel() // 2,)](table_ptr(tab, work), ptr(blocks), len(work), ptr(found_inf),
                                           ptr(inv_scale), GT=TL[gt], CT=ACC[dt], BLOCK=block)
    for g, w in zip(live, work):
        if w is g:
            continue
        if bf16_host:
            g._np[...] = w._np.astype(g.dtype.np)
        else:
            g.copy_(w)


@register("_amp_update_scale_", method=False)
def update_scale_(self, growth_tracker, found_inf, scale_growth_factor, scale_backoff_factor, growth_interval):
    """GradScaler's scale update, in place on the device: ``self`` (the scale, one float32) is multiplied by
    ``scale_backoff_factor`` if ``found_inf`` is nonzero, else ``growth_tracker`` (one int32) counts the finite step
    and the scale grows by ``scale_growth_factor`` every ``growth_interval`` of them. Returns ``self``."""
    dev = self.device
    _check_scalar("current_scale", self, D.float32, dev)
    _check_scalar("growth_tracker", growth_tracker, D.int32, dev)
    _check_scalar("found_inf", found_inf, D.float32, dev)
    if dev.type == "cpu":
        s, n = self._np.reshape(-1), growth_tracker._np.reshape(-1)
        if found_inf._np.reshape(-1)[0]:
            s[0] = s[0] * np.float32(scale_backoff_factor)
            n[0] = 0
        elif n[0] + 1 == growth_interval:
            with np.errstate(over="ignore"):
                grown = np.float32(s[0] * np.float64(scale_growth_factor))
            if np.isfinite(grown):
                s[0] = grown
            n[0] = 0
        else:
            n[0] += 1
    else:
        _update_scale_kernel[(1,)](ptr(self), ptr(growth_tracker), ptr(found_inf), float(scale_growth_factor),
                                   float(scale_backoff_factor), int(growth_interval))
    self._storage.version += 1
    growth_tracker._storage.version += 1
    return self
