"""The gate arithmetic of one LSTM or GRU time step, fused: one kernel forward, one backward.

A recurrent layer computes its input projection ``x @ W_ih^T + b_ih`` for all time steps in one matmul, and per
step the hidden projection ``gh = h @ W_hh^T + b_hh``; what is left of a step is elementwise over (batch, hidden)
and is one kernel here instead of a dozen elementwise launches:

- LSTM, gates (B, 4H) in PyTorch's order i, f, g, o: ``c' = sigmoid(f) * c + sigmoid(i) * tanh(g)``,
  ``h' = sigmoid(o) * tanh(c')``. The kernel takes ``gi`` and ``gh`` and adds them itself.
- GRU, gates (B, 3H) in order r, z, n: ``r = sigmoid(gi_r + gh_r)``, ``z = sigmoid(gi_z + gh_z)``,
  ``n = tanh(gi_n + r * gh_n)``, ``h' = (1 - z) * n + z * h`` (r multiplies ``W_hn h + b_hn``, as in PyTorch).

The backward kernels recompute the gates from the saved ``gi``, ``gh`` (cheaper than storing them) and write the
gradients of the pre-activations and of the previous state. All inputs are contiguous; math in float32 (float64
for float64). NumPy references with the launchers' signatures run on ``cpu``.
"""
import numpy as np
import triton
import triton.language as tl

from tritorch._device import INTERPRET
from tritorch._tensor import Tensor, register
from tritorch.autograd.function import Function
from tritorch.autograd.grad_mode import STATE
from ._launch import ACC, ptr, cdiv, next_pow2, on_cpu, interp_bf16_in, interp_bf16_out
from ._common import empty, wrap
from .join import cat

__all__ = ["lstm_cell", "gru_cell", "lstm_cell_fwd_np", "lstm_cell_bwd_np", "gru_cell_fwd_np", "gru_cell_bwd_np"]


@triton.jit
def _tile(BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """Row indices (BLOCK_B, 1), hidden-unit indices (1, BLOCK_H) of this program's tile."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)[:, None]
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)[None, :]
    return rows, cols


@triton.jit
def _gate(gi_ptr, gh_ptr, offs, mask, CT: tl.constexpr):
    """gi + gh at ``offs`` (a gate's pre-activation), in CT."""
    return tl.load(gi_ptr + offs, mask=mask, other=0.0).to(CT) + tl.load(gh_ptr + offs, mask=mask, other=0.0).to(CT)


@triton.jit
def _lstm_gates(gi_ptr, gh_ptr, g, m, H, CT: tl.constexpr):
    """The LSTM's activated gates i, f, g (called z here), o of one tile; ``g`` offsets the tile's i gate."""
    i = 1.0 / (1.0 + tl.exp(-_gate(gi_ptr, gh_ptr, g, m, CT)))
    f = 1.0 / (1.0 + tl.exp(-_gate(gi_ptr, gh_ptr, g + H, m, CT)))
    z = 2.0 / (1.0 + tl.exp(-2.0 * _gate(gi_ptr, gh_ptr, g + 2 * H, m, CT))) - 1.0
    o = 1.0 / (1.0 + tl.exp(-_gate(gi_ptr, gh_ptr, g + 3 * H, m, CT)))
    return i, f, z, o


@triton.jit
def _gru_gates(gi_ptr, gh_ptr, g, m, H, CT: tl.constexpr):
    """The GRU's reset and update gates r, z, the hidden part of the new gate hn, and the new gate n of one tile."""
    r = 1.0 / (1.0 + tl.exp(-_gate(gi_ptr, gh_ptr, g, m, CT)))
    z = 1.0 / (1.0 + tl.exp(-_gate(gi_ptr, gh_ptr, g + H, m, CT)))
    hn = tl.load(gh_ptr + g + 2 * H, mask=m, other=0.0).to(CT)
    n = 2.0 / (1.0 + tl.exp(-2.0 * (tl.load(gi_ptr + g + 2 * H, mask=m, other=0.0).to(CT) + r * hn))) - 1.0
    return r, z, hn, n


@triton.jit
def _lstm_fwd_kernel(gi_ptr, gh_ptr, c_ptr, h_out_ptr, c_out_ptr, B, H,
                     CT: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """A (BLOCK_B, BLOCK_H) tile of h', c' (B, H) from gi, gh (B, 4H) and c (B, H)."""
    rows, cols = _tile(BLOCK_B, BLOCK_H)
    m = (rows < B) & (cols < H)
    g = rows * 4 * H + cols
    i, f, z, o = _lstm_gates(gi_ptr, gh_ptr, g, m, H, CT)
    s = rows * H + cols
    c_new = f * tl.load(c_ptr + s, mask=m, other=0.0).to(CT) + i * z
    h_new = o * (2.0 / (1.0 + tl.exp(-2.0 * c_new)) - 1.0)
    tl.store(c_out_ptr + s, c_new.to(c_out_ptr.dtype.element_ty), mask=m)
    tl.store(h_out_ptr + s, h_new.to(h_out_ptr.dtype.element_ty), mask=m)


@triton.jit
def _lstm_bwd_kernel(gi_ptr, gh_ptr, c_ptr, dh_ptr, dc_ptr, dgates_ptr, dc_prev_ptr, B, H,
                     HAS_DH: tl.constexpr, HAS_DC: tl.constexpr,
                     CT: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """From dh', dc' (either may be absent: zero) -> d(pre-activations) (B, 4H) and dc (B, H), one tile."""
    rows, cols = _tile(BLOCK_B, BLOCK_H)
    m = (rows < B) & (cols < H)
    g = rows * 4 * H + cols
    i, f, z, o = _lstm_gates(gi_ptr, gh_ptr, g, m, H, CT)
    s = rows * H + cols
    c = tl.load(c_ptr + s, mask=m, other=0.0).to(CT)
    tc = 2.0 / (1.0 + tl.exp(-2.0 * (f * c + i * z))) - 1.0
    dh = tl.zeros([BLOCK_B, BLOCK_H], dtype=CT)
    dc = tl.zeros([BLOCK_B, BLOCK_H], dtype=CT)
    if HAS_DH:
        dh = tl.load(dh_ptr + s, mask=m, other=0.0).to(CT)
    if HAS_DC:
        dc = tl.load(dc_ptr + s, mask=m, other=0.0).to(CT)
    dc = dc + dh * o * (1.0 - tc * tc)
    ty = dgates_ptr.dtype.element_ty
    tl.store(dgates_ptr + g, (dc * z * i * (1.0 - i)).to(ty), mask=m)
    tl.store(dgates_ptr + g + H, (dc * c * f * (1.0 - f)).to(ty), mask=m)
    tl.store(dgates_ptr + g + 2 * H, (dc * i * (1.0 - z * z)).to(ty), mask=m)
    tl.store(dgates_ptr + g + 3 * H, (dh * tc * o * (1.0 - o)).to(ty), mask=m)
    tl.store(dc_prev_ptr + s, (dc * f).to(dc_prev_ptr.dtype.element_ty), mask=m)


@triton.jit
def _gru_fwd_kernel(gi_ptr, gh_ptr, h_ptr, h_out_ptr, B, H,
                    CT: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """A (BLOCK_B, BLOCK_H) tile of h' (B, H) from gi, gh (B, 3H) and h (B, H)."""
    rows, cols = _tile(BLOCK_B, BLOCK_H)
    m = (rows < B) & (cols < H)
    g = rows * 3 * H + cols
    r, z, hn, n = _gru_gates(gi_ptr, gh_ptr, g, m, H, CT)
    s = rows * H + cols
    h = tl.load(h_ptr + s, mask=m, other=0.0).to(CT)
    tl.store(h_out_ptr + s, ((1.0 - z) * n + z * h).to(h_out_ptr.dtype.element_ty), mask=m)


@triton.jit
def _gru_bwd_kernel(gi_ptr, gh_ptr, h_ptr, dh_ptr, dgi_ptr, dgh_ptr, dh_prev_ptr, B, H,
                    CT: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """From dh' -> d gi (B, 3H), d gh (B, 3H) (they differ in the n block, where gh_n is scaled by r), dh (B, H)."""
    rows, cols = _tile(BLOCK_B, BLOCK_H)
    m = (rows < B) & (cols < H)
    g = rows * 3 * H + cols
    r, z, hn, n = _gru_gates(gi_ptr, gh_ptr, g, m, H, CT)
    s = rows * H + cols
    h = tl.load(h_ptr + s, mask=m, other=0.0).to(CT)
    dh = tl.load(dh_ptr + s, mask=m, other=0.0).to(CT)
    dan = dh * (1.0 - z) * (1.0 - n * n)
    daz = dh * (h - n) * z * (1.0 - z)
    dar = dan * hn * r * (1.0 - r)
    ty = dgi_ptr.dtype.element_ty
    tl.store(dgi_ptr + g, dar.to(ty), mask=m)
    tl.store(dgi_ptr + g + H, daz.to(ty), mask=m)
    tl.store(dgi_ptr + g + 2 * H, dan.to(ty), mask=m)
    tl.store(dgh_ptr + g, dar.to(ty), mask=m)
    tl.store(dgh_ptr + g + H, daz.to(ty), mask=m)
    tl.store(dgh_ptr + g + 2 * H, (dan * r).to(ty), mask=m)
    tl.store(dh_prev_ptr + s, (dh * z).to(dh_prev_ptr.dtype.element_ty), mask=m)


# ---- NumPy references ------------------------------------------------------------------------------------------
def _ct(a):
    return np.float64 if a.dtype == np.float64 else np.float32


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def lstm_cell_fwd_np(gi, gh, c):
    """(h', c') from gi, gh (B, 4H) and c (B, H)."""
    ct = _ct(gi)
    i, f, g, o = np.split(gi.astype(ct) + gh.astype(ct), 4, axis=1)
    c_new = _sig(f) * c.astype(ct) + _sig(i) * np.tanh(g)
    return (_sig(o) * np.tanh(c_new)).astype(gi.dtype), c_new.astype(gi.dtype)


def lstm_cell_bwd_np(gi, gh, c, dh, dc):
    """(d gates (B, 4H), dc_prev (B, H)); dh or dc may be None (zero)."""
    ct = _ct(gi)
    a_i, a_f, a_g, a_o = np.split(gi.astype(ct) + gh.astype(ct), 4, axis=1)
    i, f, g, o = _sig(a_i), _sig(a_f), np.tanh(a_g), _sig(a_o)
    c = c.astype(ct)
    tc = np.tanh(f * c + i * g)
    dh = np.zeros_like(c) if dh is None else dh.astype(ct)
    dc = (np.zeros_like(c) if dc is None else dc.astype(ct)) + dh * o * (1 - tc * tc)
    dgates = np.concatenate([dc * g * i * (1 - i), dc * c * f * (1 - f), dc * i * (1 - g * g),
                             dh * tc * o * (1 - o)], axis=1)
    return dgates.astype(gi.dtype), (dc * f).astype(gi.dtype)


def _gru_gates_np(gi, gh):
    """(r, z, hn, n) of the GRU, in the compute type."""
    ct = _ct(gi)
    ir, iz, in_ = np.split(gi.astype(ct), 3, axis=1)
    hr, hz, hn = np.split(gh.astype(ct), 3, axis=1)
    r, z = _sig(ir + hr), _sig(iz + hz)
    return r, z, hn, np.tanh(in_ + r * hn)


def gru_cell_fwd_np(gi, gh, h):
    """h' from gi, gh (B, 3H) and h (B, H)."""
    r, z, hn, n = _gru_gates_np(gi, gh)
    return ((1 - z) * n + z * h.astype(n.dtype)).astype(gi.dtype)


def gru_cell_bwd_np(gi, gh, h, dh):
    """(d gi, d gh, dh_prev) from dh'."""
    r, z, hn, n = _gru_gates_np(gi, gh)
    h, dh = h.astype(n.dtype), dh.astype(n.dtype)
    dan = dh * (1 - z) * (1 - n * n)
    daz = dh * (h - n) * z * (1 - z)
    dar = dan * hn * r * (1 - r)
    dgi = np.concatenate([dar, daz, dan], axis=1)
    dgh = np.concatenate([dar, daz, dan * r], axis=1)
    return dgi.astype(gi.dtype), dgh.astype(gi.dtype), (dh * z).astype(gi.dtype)


# ---- launchers -------------------------------------------------------------------------------------------------
def _blocks(B, H):
    """(BLOCK_B, BLOCK_H): one program for a small step in the interpreter, 1024-element tiles on a GPU."""
    if INTERPRET:
        return min(next_pow2(B), 16), min(next_pow2(H), 64)
    bh = min(next_pow2(H), 256)
    return max(1024 // bh, 1), bh


def _launch(kernel, inputs, outputs, H, **const):
    """Run ``kernel`` on contiguous ``inputs`` (None: absent) writing ``outputs`` (bf16 through fp32 copies in the
    interpreter)."""
    ref = next(t for t in inputs if t is not None)
    B = ref._shape[0]
    if B == 0 or H == 0:
        return
    ins = [None if t is None else interp_bf16_in(t) for t in inputs]
    outs = [o if ins[0] is inputs[0] else empty(o._shape, ins[0].dtype, o.device) for o in outputs]
    bb, bh = _blocks(B, H)
    args = [ptr(t) if t is not None else ptr(ins[0]) for t in ins] + [ptr(o) for o in outs]
    kernel[(cdiv(B, bb), cdiv(H, bh))](*args, B, H, CT=ACC[ins[0].dtype], BLOCK_B=bb, BLOCK_H=bh, **const)
    for o, r in zip(outputs, outs):
        if r is not o:
            o._np[...] = interp_bf16_out(r, o.dtype)._np


def _np(t):
    return None if t is None else t._np


class LSTMCellFn(Function):
    """(h', c') = the LSTM step of pre-activations gi + gh and cell state c."""

    @staticmethod
    def forward(ctx, gi, gh, c):
        ctx._name = "LSTMCellBackward"
        gi, gh, c = gi.contiguous(), gh.contiguous(), c.contiguous()
        ctx.save_for_backward(gi, gh, c)
        B, H = c._shape
        h_new, c_new = empty((B, H), gi.dtype, gi.device), empty((B, H), gi.dtype, gi.device)
        if on_cpu(gi):
            h_new._np[...], c_new._np[...] = lstm_cell_fwd_np(gi._np, gh._np, c._np)
        else:
            _launch(_lstm_fwd_kernel, [gi, gh, c], [h_new, c_new], H)
        return h_new, c_new

    @staticmethod
    def backward(ctx, dh, dc):
        gi, gh, c = ctx.saved_tensors
        if STATE.enabled:
            return _lstm_backward_ops(gi, gh, c, dh, dc)
        dh = None if dh is None else dh.contiguous()
        dc = None if dc is None else dc.contiguous()
        B, H = c._shape
        if on_cpu(gi):
            dg, dcp = lstm_cell_bwd_np(gi._np, gh._np, c._np, _np(dh), _np(dc))
            dgates, dc_prev = wrap(dg, gi.dtype, gi.device), wrap(dcp, gi.dtype, gi.device)
        else:
            dgates, dc_prev = empty((B, 4 * H), gi.dtype, gi.device), empty((B, H), gi.dtype, gi.device)
            _launch(_lstm_bwd_kernel, [gi, gh, c, dh, dc], [dgates, dc_prev], H,
                    HAS_DH=dh is not None, HAS_DC=dc is not None)
        return dgates, dgates, dc_prev


class GRUCellFn(Function):
    """h' = the GRU step of input projection gi, hidden projection gh and state h."""

    @staticmethod
    def forward(ctx, gi, gh, h):
        ctx._name = "GRUCellBackward"
        gi, gh, h = gi.contiguous(), gh.contiguous(), h.contiguous()
        ctx.save_for_backward(gi, gh, h)
        B, H = h._shape
        h_new = empty((B, H), gi.dtype, gi.device)
        if on_cpu(gi):
            h_new._np[...] = gru_cell_fwd_np(gi._np, gh._np, h._np)
        else:
            _launch(_gru_fwd_kernel, [gi, gh, h], [h_new], H)
        return h_new

    @staticmethod
    def backward(ctx, dh):
        gi, gh, h = ctx.saved_tensors
        if STATE.enabled:
            return _gru_backward_ops(gi, gh, h, dh)
        dh = dh.contiguous()
        B, H = h._shape
        if on_cpu(gi):
            dgi, dgh, dhp = gru_cell_bwd_np(gi._np, gh._np, h._np, dh._np)
            return wrap(dgi, gi.dtype, gi.device), wrap(dgh, gi.dtype, gi.device), wrap(dhp, gi.dtype, gi.device)
        dgi, dgh = empty((B, 3 * H), gi.dtype, gi.device), empty((B, 3 * H), gi.dtype, gi.device)
        dhp = empty((B, H), gi.dtype, gi.device)
        _launch(_gru_bwd_kernel, [gi, gh, h, dh], [dgi, dgh, dhp], H)
        return dgi, dgh, dhp


# ---- differentiable backward (create_graph=True): the same formulas in recorded tensor ops ----------------------
def _lstm_backward_ops(gi, gh, c, dh, dc):
    a = gi + gh
    i, f, g, o = a.chunk(4, 1)
    i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
    tc = (f * c + i * g).tanh()
    dh = (c * 0) if dh is None else dh
    dc = (c * 0 if dc is None else dc) + dh * o * (1 - tc * tc)
    dgates = cat([dc * g * i * (1 - i), dc * c * f * (1 - f), dc * i * (1 - g * g),
                           dh * tc * o * (1 - o)], 1)
    return dgates, dgates, dc * f


def _gru_backward_ops(gi, gh, h, dh):
    ir, iz, in_ = gi.chunk(3, 1)
    hr, hz, hn = gh.chunk(3, 1)
    r, z = (ir + hr).sigmoid(), (iz + hz).sigmoid()
    n = (in_ + r * hn).tanh()
    dan = dh * (1 - z) * (1 - n * n)
    daz = dh * (h - n) * z * (1 - z)
    dar = dan * hn * r * (1 - r)
    return cat([dar, daz, dan], 1), cat([dar, daz, dan * r], 1), dh * z


@register("lstm_cell", method=False, function=False)
def lstm_cell(gi, gh, c):
    """(h', c') of one LSTM step from the gate pre-activations ``gi`` (input side) and ``gh`` (hidden side)."""
    if not isinstance(gi, Tensor):
        raise TypeError(f"lstm_cell(): expected Tensor, got {type(gi).__name__}")
    return LSTMCellFn.apply(gi, gh, c)


@register("gru_cell", method=False, function=False)
def gru_cell(gi, gh, h):
    """h' of one GRU step from the input projection ``gi`` and hidden projection ``gh`` (both (B, 3H))."""
    if not isinstance(gi, Tensor):
        raise TypeError(f"gru_cell(): expected Tensor, got {type(gi).__name__}")
    return GRUCellFn.apply(gi, gh, h)
