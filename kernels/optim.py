"""Optimizer updates (SGD, Adam/AdamW, RMSprop, Adagrad, Adadelta, Adamax, NAdam, RAdam): one fused Triton kernel per
rule that updates every tensor of a launch, and the NumPy reference of each rule beside it (the ``cpu`` path).

A launch covers the parameters of one param group that share a device and a dtype. Its kernel reads two tables:

- ``tab`` (int64, built and uploaded once per step): row 0 the tensors' sizes, row 1 the parameters' addresses,
  row 2 the gradients', rows 3.. the addresses of the rule's state tensors (0 for a state the options leave out),
  each row ``T`` long; after the rows, the rule's scalars as float64 bit patterns (read through ``scal``). The host
  computes them in double precision, ``1 - beta`` included, as PyTorch does: float64 parameters keep every digit,
  and ``1 - beta2`` is not the float32 difference of a rounded ``beta2``.
- ``blocks`` (int32, cached per list of sizes): for each program, the tensor it works on and which block of it.

Each program turns its tensor's addresses into typed pointers (``tl.pointer_type``) and updates one block of it.
Arithmetic runs in float32 for half parameters (``ACC``) and the state is kept in that type.
"""
import numpy as np
import triton
import triton.language as tl

from tritorch import _dtype as D
from tritorch._device import INTERPRET
from tritorch._tensor import Tensor
from ._launch import ACC, TL, Ptr, ptr, table_ptr, next_pow2
from .copy import copy_into

__all__ = ["RULES", "update", "state_dtype"]

# ====================================================================================================================
# The kernels
# ====================================================================================================================
# Each rule is a jit function that updates one block of one tensor (``_X_block``) and a kernel that finds its block
# and calls it: without a mask for a full block, so that the compiler can use vector loads, with one for the last,
# partial block of a tensor.


@triton.jit
def _tile(tab, blocks, BLOCK: tl.constexpr):
    """This program's tensor, its element offsets in that tensor, the tensor's size, and whether the block is full."""
    pid = tl.program_id(0)
    t = tl.load(blocks + 2 * pid)
    b = tl.load(blocks + 2 * pid + 1).to(tl.int64)
    n = tl.load(tab + t)
    offs = b * BLOCK + tl.arange(0, BLOCK)
    return t, offs, n, (b + 1) * BLOCK <= n


@triton.jit
def _addr(tab, row, T, t, TY: tl.constexpr, ALIGNED: tl.constexpr):
    """Row ``row`` of tensor ``t``'s column as a pointer to ``TY`` elements. ``ALIGNED``: every address of the launch
    is a multiple of 16 bytes, which lets the compiler use vector loads (it cannot know it of a loaded address)."""
    p = tl.load(tab + row * T + t).to(tl.pointer_type(TY))
    if ALIGNED:
        p = tl.multiple_of(p, 16)
    return p


@triton.jit
def _sgd_block(tab, scal, T, t, offs, mask, PT: tl.constexpr, CT: tl.constexpr, MOMENTUM: tl.constexpr,
               FIRST: tl.constexpr, NESTEROV: tl.constexpr, WD: tl.constexpr, MAXIMIZE: tl.constexpr,
               ALIGNED: tl.constexpr):
    """SGD with momentum; ``FIRST``: the momentum buffers are new and start as the gradient itself."""
    lr = tl.load(scal).to(CT)
    momentum = tl.load(scal + 1).to(CT)
    one_minus_dampening = tl.load(scal + 2).to(CT)
    wd = tl.load(scal + 3).to(CT)
    p_ptr = _addr(tab, 1, T, t, PT, ALIGNED)
    p = tl.load(p_ptr + offs, mask=mask).to(CT)
    g = tl.load(_addr(tab, 2, T, t, PT, ALIGNED) + offs, mask=mask).to(CT)
    if MAXIMIZE:
        g = -g
    if WD:
        g = g + wd * p
    if MOMENTUM:
        buf_ptr = _addr(tab, 3, T, t, CT, ALIGNED)
        if FIRST:
            buf = g
        else:
            buf = tl.load(buf_ptr + offs, mask=mask) * momentum + one_minus_dampening * g
        tl.store(buf_ptr + offs, buf, mask=mask)
        if NESTEROV:
            g = g + momentum * buf
        else:
            g = buf
    tl.store(p_ptr + offs, (p - lr * g).to(PT), mask=mask)


@triton.jit
def _sgd_kernel(tab, scal, blocks, T, PT: tl.constexpr, CT: tl.constexpr, MOMENTUM: tl.constexpr,
                FIRST: tl.constexpr, NESTEROV: tl.constexpr, WD: tl.constexpr, MAXIMIZE: tl.constexpr,
                ALIGNED: tl.constexpr, BLOCK: tl.constexpr):
    t, offs, n, full = _tile(tab, blocks, BLOCK)
    if full:
        _sgd_block(tab, scal, T, t, offs, None, PT, CT, MOMENTUM, FIRST, NESTEROV, WD, MAXIMIZE, ALIGNED)
    else:
        _sgd_block(tab, scal, T, t, offs, offs < n, PT, CT, MOMENTUM, FIRST, NESTEROV, WD, MAXIMIZE, ALIGNED)


@triton.jit
def _param_and_grad(tab, T, t, offs, mask, p_ptr, wd, decay, PT: tl.constexpr, CT: tl.constexpr, WD: tl.constexpr,
                    DECOUPLED: tl.constexpr, MAXIMIZE: tl.constexpr, ALIGNED: tl.constexpr):
    """The Adam family's start: the parameter and its gradient (column 2 of ``tab``) in ``CT``, the gradient negated
    under ``MAXIMIZE``; weight decay as L2 (``g + wd * p``) or, ``DECOUPLED``, the weights shrunk by ``decay``."""
    p = tl.load(p_ptr + offs, mask=mask).to(CT)
    g = tl.load(_addr(tab, 2, T, t, PT, ALIGNED) + offs, mask=mask).to(CT)
    if MAXIMIZE:
        g = -g
    if WD:
        if DECOUPLED:
            p = p * decay
        else:
            g = g + wd * p
    return p, g


@triton.jit
def _adam_block(tab, scal, T, t, offs, mask, PT: tl.constexpr, CT: tl.constexpr, AMSGRAD: tl.constexpr,
                WD: tl.constexpr, DECOUPLED: tl.constexpr, MAXIMIZE: tl.constexpr, ALIGNED: tl.constexpr):
    """Adam (L2 weight decay added to the gradient) and AdamW (``DECOUPLED``: the weights shrink by ``decay``)."""
    beta1 = tl.load(scal).to(CT)
    beta2 = tl.load(scal + 1).to(CT)
    one_minus_beta1 = tl.load(scal + 2).to(CT)
    one_minus_beta2 = tl.load(scal + 3).to(CT)
    eps = tl.load(scal + 4).to(CT)
    wd = tl.load(scal + 5).to(CT)
    decay = tl.load(scal + 6).to(CT)
    step_size = tl.load(scal + 7).to(CT)
    bc2_sqrt = tl.load(scal + 8).to(CT)
    p_ptr = _addr(tab, 1, T, t, PT, ALIGNED)
    m_ptr = _addr(tab, 3, T, t, CT, ALIGNED)
    v_ptr = _addr(tab, 4, T, t, CT, ALIGNED)
    p, g = _param_and_grad(tab, T, t, offs, mask, p_ptr, wd, decay, PT, CT, WD, DECOUPLED, MAXIMIZE, ALIGNED)
    m = beta1 * tl.load(m_ptr + offs, mask=mask) + one_minus_beta1 * g
    v = beta2 * tl.load(v_ptr + offs, mask=mask) + one_minus_beta2 * g * g
    tl.store(m_ptr + offs, m, mask=mask)
    tl.store(v_ptr + offs, v, mask=mask)
    if AMSGRAD:
        vmax_ptr = _addr(tab, 5, T, t, CT, ALIGNED)
        v = tl.maximum(tl.load(vmax_ptr + offs, mask=mask), v)
        tl.store(vmax_ptr + offs, v, mask=mask)
    denom = tl.sqrt(v) / bc2_sqrt + eps
    tl.store(p_ptr + offs, (p - step_size * (m / denom)).to(PT), mask=mask)


@triton.jit
def _adam_kernel(tab, scal, blocks, T, PT: tl.constexpr, CT: tl.constexpr, AMSGRAD: tl.constexpr,
                 WD: tl.constexpr, DECOUPLED: tl.constexpr, MAXIMIZE: tl.constexpr, ALIGNED: tl.constexpr,
                 BLOCK: tl.constexpr):
    t, offs, n, full = _tile(tab, blocks, BLOCK)
    if full:
        _adam_block(tab, scal, T, t, offs, None, PT, CT, AMSGRAD, WD, DECOUPLED, MAXIMIZE, ALIGNED)
    else:
        _adam_block(tab, scal, T, t, offs, offs < n, PT, CT, AMSGRAD, WD, DECOUPLED, MAXIMIZE, ALIGNED)


@triton.jit
def _rmsprop_block(tab, scal, T, t, offs, mask, PT: tl.constexpr, CT: tl.constexpr, CENTERED: tl.constexpr,
                   MOMENTUM: tl.constexpr, WD: tl.constexpr, MAXIMIZE: tl.constexpr, ALIGNED: tl.constexpr):
    """RMSprop, optionally centered (divides by the gradient's running variance) and with momentum."""
    lr = tl.load(scal).to(CT)
    alpha = tl.load(scal + 1).to(CT)
    one_minus_alpha = tl.load(scal + 2).to(CT)
    eps = tl.load(scal + 3).to(CT)
    wd = tl.load(scal + 4).to(CT)
    momentum = tl.load(scal + 5).to(CT)
    p_ptr = _addr(tab, 1, T, t, PT, ALIGNED)
    sq_ptr = _addr(tab, 3, T, t, CT, ALIGNED)
    p = tl.load(p_ptr + offs, mask=mask).to(CT)
    g = tl.load(_addr(tab, 2, T, t, PT, ALIGNED) + offs, mask=mask).to(CT)
    if MAXIMIZE:
        g = -g
    if WD:
        g = g + wd * p
    sq = alpha * tl.load(sq_ptr + offs, mask=mask) + one_minus_alpha * g * g
    tl.store(sq_ptr + offs, sq, mask=mask)
    if CENTERED:
        ga_ptr = _addr(tab, 5, T, t, CT, ALIGNED)
        ga = alpha * tl.load(ga_ptr + offs, mask=mask) + one_minus_alpha * g
        tl.store(ga_ptr + offs, ga, mask=mask)
        avg = tl.sqrt(sq - ga * ga) + eps
    else:
        avg = tl.sqrt(sq) + eps
    if MOMENTUM:
        buf_ptr = _addr(tab, 4, T, t, CT, ALIGNED)
        buf = momentum * tl.load(buf_ptr + offs, mask=mask) + g / avg
        tl.store(buf_ptr + offs, buf, mask=mask)
        p = p - lr * buf
    else:
        p = p - lr * (g / avg)
    tl.store(p_ptr + offs, p.to(PT), mask=mask)


@triton.jit
def _rmsprop_kernel(tab, scal, blocks, T, PT: tl.constexpr, CT: tl.constexpr, CENTERED: tl.constexpr,
                    MOMENTUM: tl.constexpr, WD: tl.constexpr, MAXIMIZE: tl.constexpr, ALIGNED: tl.constexpr,
                    BLOCK: tl.constexpr):
    t, offs, n, full = _tile(tab, blocks, BLOCK)
    if full:
        _rmsprop_block(tab, scal, T, t, offs, None, PT, CT, CENTERED, MOMENTUM, WD, MAXIMIZE, ALIGNED)
    else:
        _rmsprop_block(tab, scal, T, t, offs, offs < n, PT, CT, CENTERED, MOMENTUM, WD, MAXIMIZE, ALIGNED)


@triton.jit
def _adagrad_block(tab, scal, T, t, offs, mask, PT: tl.constexpr, CT: tl.constexpr, WD: tl.constexpr,
                   MAXIMIZE: tl.constexpr, ALIGNED: tl.constexpr):
    """Adagrad: divide by the root of the summed squared gradients; ``clr`` is the step's decayed rate."""
    clr = tl.load(scal).to(CT)
    eps = tl.load(scal + 1).to(CT)
    wd = tl.load(scal + 2).to(CT)
    p_ptr = _addr(tab, 1, T, t, PT, ALIGNED)
    s_ptr = _addr(tab, 3, T, t, CT, ALIGNED)
    p = tl.load(p_ptr + offs, mask=mask).to(CT)
    g = tl.load(_addr(tab, 2, T, t, PT, ALIGNED) + offs, mask=mask).to(CT)
    if MAXIMIZE:
        g = -g
    if WD:
        g = g + wd * p
    s = tl.load(s_ptr + offs, mask=mask) + g * g
    tl.store(s_ptr + offs, s, mask=mask)
    tl.store(p_ptr + offs, (p - clr * (g / (tl.sqrt(s) + eps))).to(PT), mask=mask)


@triton.jit
def _adagrad_kernel(tab, scal, blocks, T, PT: tl.constexpr, CT: tl.constexpr, WD: tl.constexpr,
                    MAXIMIZE: tl.constexpr, ALIGNED: tl.constexpr, BLOCK: tl.constexpr):
    t, offs, n, full = _tile(tab, blocks, BLOCK)
    if full:
        _adagrad_block(tab, scal, T, t, offs, None, PT, CT, WD, MAXIMIZE, ALIGNED)
    else:
        _adagrad_block(tab, scal, T, t, offs, offs < n, PT, CT, WD, MAXIMIZE, ALIGNED)


@triton.jit
def _adadelta_block(tab, scal, T, t, offs, mask, PT: tl.constexpr, CT: tl.constexpr, WD: tl.constexpr,
                    MAXIMIZE: tl.constexpr, ALIGNED: tl.constexpr):
    """Adadelta: the step is the gradient scaled by the ratio of the running RMS of past steps to that of gradients."""
    lr = tl.load(scal).to(CT)
    rho = tl.load(scal + 1).to(CT)
    one_minus_rho = tl.load(scal + 2).to(CT)
    eps = tl.load(scal + 3).to(CT)
    wd = tl.load(scal + 4).to(CT)
    p_ptr = _addr(tab, 1, T, t, PT, ALIGNED)
    sq_ptr = _addr(tab, 3, T, t, CT, ALIGNED)
    acc_ptr = _addr(tab, 4, T, t, CT, ALIGNED)
    p = tl.load(p_ptr + offs, mask=mask).to(CT)
    g = tl.load(_addr(tab, 2, T, t, PT, ALIGNED) + offs, mask=mask).to(CT)
    if MAXIMIZE:
        g = -g
    if WD:
        g = g + wd * p
    sq = rho * tl.load(sq_ptr + offs, mask=mask) + one_minus_rho * g * g
    tl.store(sq_ptr + offs, sq, mask=mask)
    acc = tl.load(acc_ptr + offs, mask=mask)
    delta = tl.sqrt(acc + eps) / tl.sqrt(sq + eps) * g
    tl.store(acc_ptr + offs, rho * acc + one_minus_rho * delta * delta, mask=mask)
    tl.store(p_ptr + offs, (p - lr * delta).to(PT), mask=mask)


@triton.jit
def _adadelta_kernel(tab, scal, blocks, T, PT: tl.constexpr, CT: tl.constexpr, WD: tl.constexpr,
                     MAXIMIZE: tl.constexpr, ALIGNED: tl.constexpr, BLOCK: tl.constexpr):
    t, offs, n, full = _tile(tab, blocks, BLOCK)
    if full:
        _adadelta_block(tab, scal, T, t, offs, None, PT, CT, WD, MAXIMIZE, ALIGNED)
    else:
        _adadelta_block(tab, scal, T, t, offs, offs < n, PT, CT, WD, MAXIMIZE, ALIGNED)


@triton.jit
def _adamax_block(tab, scal, T, t, offs, mask, PT: tl.constexpr, CT: tl.constexpr, WD: tl.constexpr,
                  MAXIMIZE: tl.constexpr, ALIGNED: tl.constexpr):
    """Adamax: Adam with the infinity norm, ``u = max(beta2*u, |g| + eps)``; ``clr`` is ``lr / (1 - beta1^t)``."""
    one_minus_beta1 = tl.load(scal).to(CT)
    beta2 = tl.load(scal + 1).to(CT)
    eps = tl.load(scal + 2).to(CT)
    wd = tl.load(scal + 3).to(CT)
    clr = tl.load(scal + 4).to(CT)
    p_ptr = _addr(tab, 1, T, t, PT, ALIGNED)
    m_ptr = _addr(tab, 3, T, t, CT, ALIGNED)
    u_ptr = _addr(tab, 4, T, t, CT, ALIGNED)
    p = tl.load(p_ptr + offs, mask=mask).to(CT)
    g = tl.load(_addr(tab, 2, T, t, PT, ALIGNED) + offs, mask=mask).to(CT)
    if MAXIMIZE:
        g = -g
    if WD:
        g = g + wd * p
    m = tl.load(m_ptr + offs, mask=mask)
    m = m + one_minus_beta1 * (g - m)
    u = tl.maximum(beta2 * tl.load(u_ptr + offs, mask=mask), tl.abs(g) + eps)
    tl.store(m_ptr + offs, m, mask=mask)
    tl.store(u_ptr + offs, u, mask=mask)
    tl.store(p_ptr + offs, (p - clr * (m / u)).to(PT), mask=mask)


@triton.jit
def _adamax_kernel(tab, scal, blocks, T, PT: tl.constexpr, CT: tl.constexpr, WD: tl.constexpr,
                   MAXIMIZE: tl.constexpr, ALIGNED: tl.constexpr, BLOCK: tl.constexpr):
    t, offs, n, full = _tile(tab, blocks, BLOCK)
    if full:
        _adamax_block(tab, scal, T, t, offs, None, PT, CT, WD, MAXIMIZE, ALIGNED)
    else:
        _adamax_block(tab, scal, T, t, offs, offs < n, PT, CT, WD, MAXIMIZE, ALIGNED)


@triton.jit
def _moments(m_ptr, v_ptr, offs, mask, g, one_minus_beta1, beta2, one_minus_beta2):
    """NAdam's and RAdam's moment updates, stored and returned: m += (1 - beta1)(g - m), v = beta2 v + (1 - beta2) g^2
    (m's form is PyTorch's lerp, so the results match it bit for bit)."""
    m = tl.load(m_ptr + offs, mask=mask)
    m = m + one_minus_beta1 * (g - m)
    v = beta2 * tl.load(v_ptr + offs, mask=mask) + one_minus_beta2 * g * g
    tl.store(m_ptr + offs, m, mask=mask)
    tl.store(v_ptr + offs, v, mask=mask)
    return m, v


@triton.jit
def _nadam_block(tab, scal, T, t, offs, mask, PT: tl.constexpr, CT: tl.constexpr, WD: tl.constexpr,
                 DECOUPLED: tl.constexpr, MAXIMIZE: tl.constexpr, ALIGNED: tl.constexpr):
    """NAdam: Adam's moments, the step a Nesterov mix ``c_grad * g/denom + c_avg * m/denom`` whose coefficients come
    from the momentum schedule (computed on the host)."""
    one_minus_beta1 = tl.load(scal).to(CT)
    beta2 = tl.load(scal + 1).to(CT)
    one_minus_beta2 = tl.load(scal + 2).to(CT)
    bc2 = tl.load(scal + 3).to(CT)
    eps = tl.load(scal + 4).to(CT)
    wd = tl.load(scal + 5).to(CT)
    decay = tl.load(scal + 6).to(CT)
    c_grad = tl.load(scal + 7).to(CT)
    c_avg = tl.load(scal + 8).to(CT)
    p_ptr = _addr(tab, 1, T, t, PT, ALIGNED)
    m_ptr = _addr(tab, 3, T, t, CT, ALIGNED)
    v_ptr = _addr(tab, 4, T, t, CT, ALIGNED)
    p, g = _param_and_grad(tab, T, t, offs, mask, p_ptr, wd, decay, PT, CT, WD, DECOUPLED, MAXIMIZE, ALIGNED)
    m, v = _moments(m_ptr, v_ptr, offs, mask, g, one_minus_beta1, beta2, one_minus_beta2)
    denom = tl.sqrt(v / bc2) + eps
    p = p + c_grad * (g / denom)
    tl.store(p_ptr + offs, (p + c_avg * (m / denom)).to(PT), mask=mask)


@triton.jit
def _nadam_kernel(tab, scal, blocks, T, PT: tl.constexpr, CT: tl.constexpr, WD: tl.constexpr,
                  DECOUPLED: tl.constexpr, MAXIMIZE: tl.constexpr, ALIGNED: tl.constexpr, BLOCK: tl.constexpr):
    t, offs, n, full = _tile(tab, blocks, BLOCK)
    if full:
        _nadam_block(tab, scal, T, t, offs, None, PT, CT, WD, DECOUPLED, MAXIMIZE, ALIGNED)
    else:
        _nadam_block(tab, scal, T, t, offs, offs < n, PT, CT, WD, DECOUPLED, MAXIMIZE, ALIGNED)


@triton.jit
def _radam_block(tab, scal, T, t, offs, mask, PT: tl.constexpr, CT: tl.constexpr, RECTIFY: tl.constexpr,
                 WD: tl.constexpr, DECOUPLED: tl.constexpr, MAXIMIZE: tl.constexpr, ALIGNED: tl.constexpr):
    """RAdam: Adam's moments; while the variance estimate is unreliable (``RECTIFY`` off: rho_t <= 5) the step is the
    bias-corrected momentum alone, after that the adaptive step times the rectification ``rect``."""
    one_minus_beta1 = tl.load(scal).to(CT)
    beta2 = tl.load(scal + 1).to(CT)
    one_minus_beta2 = tl.load(scal + 2).to(CT)
    eps = tl.load(scal + 3).to(CT)
    wd = tl.load(scal + 4).to(CT)
    decay = tl.load(scal + 5).to(CT)
    lr = tl.load(scal + 6).to(CT)
    bc1 = tl.load(scal + 7).to(CT)
    bc2_sqrt = tl.load(scal + 8).to(CT)
    rect = tl.load(scal + 9).to(CT)
    p_ptr = _addr(tab, 1, T, t, PT, ALIGNED)
    m_ptr = _addr(tab, 3, T, t, CT, ALIGNED)
    v_ptr = _addr(tab, 4, T, t, CT, ALIGNED)
    p, g = _param_and_grad(tab, T, t, offs, mask, p_ptr, wd, decay, PT, CT, WD, DECOUPLED, MAXIMIZE, ALIGNED)
    m, v = _moments(m_ptr, v_ptr, offs, mask, g, one_minus_beta1, beta2, one_minus_beta2)
    step = (m / bc1) * lr
    if RECTIFY:
        step = step * (bc2_sqrt / (tl.sqrt(v) + eps)) * rect
    tl.store(p_ptr + offs, (p - step).to(PT), mask=mask)


@triton.jit
def _radam_kernel(tab, scal, blocks, T, PT: tl.constexpr, CT: tl.constexpr, RECTIFY: tl.constexpr,
                  WD: tl.constexpr, DECOUPLED: tl.constexpr, MAXIMIZE: tl.constexpr, ALIGNED: tl.constexpr,
                  BLOCK: tl.constexpr):
    t, offs, n, full = _tile(tab, blocks, BLOCK)
    if full:
        _radam_block(tab, scal, T, t, offs, None, PT, CT, RECTIFY, WD, DECOUPLED, MAXIMIZE, ALIGNED)
    else:
        _radam_block(tab, scal, T, t, offs, offs < n, PT, CT, RECTIFY, WD, DECOUPLED, MAXIMIZE, ALIGNED)


# ====================================================================================================================
# The NumPy references: the same rules on one tensor's arrays (p and the states updated in place)
# ====================================================================================================================

def _sgd_ref(p, g, states, scal, MOMENTUM, FIRST, NESTEROV, WD, MAXIMIZE):
    lr, momentum, one_minus_dampening, wd = scal
    if MAXIMIZE:
        g = -g
    if WD:
        g = g + wd * p
    if MOMENTUM:
        buf = states[0]
        buf[...] = g if FIRST else buf * momentum + one_minus_dampening * g
        g = g + momentum * buf if NESTEROV else buf
    return p - lr * g


def _adam_ref(p, g, states, scal, AMSGRAD, WD, DECOUPLED, MAXIMIZE):
    beta1, beta2, one_minus_beta1, one_minus_beta2, eps, wd, decay, step_size, bc2_sqrt = scal
    m, v, vmax = states
    if MAXIMIZE:
        g = -g
    if WD:
        if DECOUPLED:
            p = p * decay
        else:
            g = g + wd * p
    m[...] = beta1 * m + one_minus_beta1 * g
    v[...] = beta2 * v + one_minus_beta2 * g * g
    if AMSGRAD:
        np.maximum(vmax, v, out=vmax)
        v = vmax
    denom = np.sqrt(v) / bc2_sqrt + eps
    return p - step_size * (m / denom)


def _rmsprop_ref(p, g, states, scal, CENTERED, MOMENTUM, WD, MAXIMIZE):
    lr, alpha, one_minus_alpha, eps, wd, momentum = scal
    sq, buf, ga = states
    if MAXIMIZE:
        g = -g
    if WD:
        g = g + wd * p
    sq[...] = alpha * sq + one_minus_alpha * g * g
    if CENTERED:
        ga[...] = alpha * ga + one_minus_alpha * g
        avg = np.sqrt(sq - ga * ga) + eps
    else:
        avg = np.sqrt(sq) + eps
    if MOMENTUM:
        buf[...] = momentum * buf + g / avg
        return p - lr * buf
    return p - lr * (g / avg)


def _adagrad_ref(p, g, states, scal, WD, MAXIMIZE):
    clr, eps, wd = scal
    (s,) = states
    if MAXIMIZE:
        g = -g
    if WD:
        g = g + wd * p
    s += g * g
    return p - clr * (g / (np.sqrt(s) + eps))


def _adadelta_ref(p, g, states, scal, WD, MAXIMIZE):
    lr, rho, one_minus_rho, eps, wd = scal
    sq, acc = states
    if MAXIMIZE:
        g = -g
    if WD:
        g = g + wd * p
    sq[...] = rho * sq + one_minus_rho * g * g
    delta = np.sqrt(acc + eps) / np.sqrt(sq + eps) * g
    acc[...] = rho * acc + one_minus_rho * delta * delta
    return p - lr * delta


def _adamax_ref(p, g, states, scal, WD, MAXIMIZE):
    one_minus_beta1, beta2, eps, wd, clr = scal
    m, u = states
    if MAXIMIZE:
        g = -g
    if WD:
        g = g + wd * p
    m += one_minus_beta1 * (g - m)
    np.maximum(beta2 * u, np.abs(g) + eps, out=u)
    return p - clr * (m / u)


def _nadam_ref(p, g, states, scal, WD, DECOUPLED, MAXIMIZE):
    one_minus_beta1, beta2, one_minus_beta2, bc2, eps, wd, decay, c_grad, c_avg = scal
    m, v = states
    if MAXIMIZE:
        g = -g
    if WD:
        if DECOUPLED:
            p = p * decay
        else:
            g = g + wd * p
    m += one_minus_beta1 * (g - m)
    v[...] = beta2 * v + one_minus_beta2 * g * g
    denom = np.sqrt(v / bc2) + eps
    p = p + c_grad * (g / denom)
    return p + c_avg * (m / denom)


def _radam_ref(p, g, states, scal, RECTIFY, WD, DECOUPLED, MAXIMIZE):
    one_minus_beta1, beta2, one_minus_beta2, eps, wd, decay, lr, bc1, bc2_sqrt, rect = scal
    m, v = states
    if MAXIMIZE:
        g = -g
    if WD:
        if DECOUPLED:
            p = p * decay
        else:
            g = g + wd * p
    m += one_minus_beta1 * (g - m)
    v[...] = beta2 * v + one_minus_beta2 * g * g
    step = (m / bc1) * lr
    if RECTIFY:
        step = step * (bc2_sqrt / (np.sqrt(v) + eps)) * rect
    return p - step


class Rule:
    """One update rule: its kernel, its reference, and the number of state rows its table has."""

    def __init__(self, kernel, ref, nstates):
        self.kernel, self.ref, self.nstates = kernel, ref, nstates


RULES = {
    "sgd": Rule(_sgd_kernel, _sgd_ref, 1),
    "adam": Rule(_adam_kernel, _adam_ref, 3),
    "rmsprop": Rule(_rmsprop_kernel, _rmsprop_ref, 3),
    "adagrad": Rule(_adagrad_kernel, _adagrad_ref, 1),
    "adadelta": Rule(_adadelta_kernel, _adadelta_ref, 2),
    "adamax": Rule(_adamax_kernel, _adamax_ref, 2),
    "nadam": Rule(_nadam_kernel, _nadam_ref, 2),
    "radam": Rule(_radam_kernel, _radam_ref, 2),
}


# ====================================================================================================================
# Dispatch
# ====================================================================================================================

_STATE_DTYPE = {D.float16: D.float32, D.bfloat16: D.float32, D.float32: D.float32, D.float64: D.float64}


def state_dtype(dtype):
    """The type of an optimizer's state (and of its arithmetic) for parameters of ``dtype``."""
    try:
        return _STATE_DTYPE[dtype]
    except KeyError:
        raise RuntimeError(f"optimizers update floating-point parameters only, got a parameter of dtype {dtype}") \
            from None


def update(rule, params, grads, states, scalars, flags):
    """Apply ``rule`` in place to ``params`` (one device, one dtype) given their ``grads``.

    ``states[i]`` lists the state tensors of ``params[i]`` in the rule's order (None where the options leave one
    out); they are contiguous and of ``state_dtype(param.dtype)``. ``scalars``: the rule's numbers, in the order its
    kernel reads them; ``flags``: its ``tl.constexpr`` switches. On ``cpu`` the NumPy reference runs per tensor; on
    ``cuda`` one kernel launch updates every tensor.
    """
    rule = RULES[rule]
    state_dtype(params[0].dtype)
    if params[0]._storage.device.type == "cpu":
        _update_cpu(rule, params, grads, states, scalars, flags)
    else:
        _update_cuda(rule, params, grads, states, scalars, flags)
    for p in params:
        p._storage.version += 1


def _update_cpu(rule, params, grads, states, scalars, flags):
    """The reference per tensor, in the state type (the references never write to ``p`` or ``g`` in place)."""
    ct = _STATE_DTYPE[params[0].dtype].np
    scal = [ct.type(s) for s in scalars]
    for p, g, st in zip(params, grads, states):
        a = p._np
        out = rule.ref(a.astype(ct, copy=False), g._np.astype(ct, copy=False),
                       [None if s is None else s._np for s in st], scal, **flags)
        a[...] = out.astype(a.dtype)


_BLOCK_MAPS = {}


def _block_size(numels):
    """Elements per program. In the interpreter every program costs about 1 ms: there, few larger programs."""
    if INTERPRET:
        return max(16, min(next_pow2(max(numels)), 256))
    return 1024


def _block_map(dev, numels, block):
    """(tensor index, block index) of each program, as an int32 tensor on ``dev``; cached per list of sizes."""
    key = (dev, numels, block)
    m = _BLOCK_MAPS.get(key)
    if m is None:
        counts = [-(-n // block) for n in numels]
        t = np.repeat(np.arange(len(numels), dtype=np.int32), counts)
        b = np.concatenate([np.arange(c, dtype=np.int32) for c in counts])
        m = Tensor._wrap_numpy(np.stack([t, b], axis=1).reshape(-1), dev)
        if len(_BLOCK_MAPS) >= 64:
            _BLOCK_MAPS.clear()
        _BLOCK_MAPS[key] = m
    return m


def _update_cuda(rule, params, grads, states, scalars, flags):
    dev = params[0]._storage.device
    pdt = params[0].dtype
    live = [i for i, p in enumerate(params) if p.numel()]
    if not live:
        return
    params = [params[i] for i in live]
    grads = [grads[i].contiguous() for i in live]
    states = [states[i] for i in live]
    # the kernel sees each parameter as flat memory: a strided one is updated through a contiguous copy; in the
    # interpreter (no bf16 arithmetic) bf16 parameters and gradients go through float32 host copies
    bf16_host = INTERPRET and pdt is D.bfloat16
    work = []
    for p in params:
        if bf16_host:
            w = Tensor._wrap_numpy(p._np.astype(np.float32), dev)
        else:
            w = p if p.is_contiguous() else p.contiguous()
        work.append(w)
    if bf16_host:
        grads = [Tensor._wrap_numpy(g._np.astype(np.float32), dev) for g in grads]
        pdt_k = D.float32
    else:
        pdt_k = pdt
    numels = tuple(p.numel() for p in work)
    T = len(work)
    rows = [list(numels), [w.data_ptr() for w in work], [g.data_ptr() for g in grads]]
    for k in range(rule.nstates):
        rows.append([0 if st[k] is None else st[k].data_ptr() for st in states])
    table = np.empty(len(rows) * T + len(scalars), dtype=np.int64)
    table[:len(rows) * T] = np.asarray(rows, dtype=np.int64).reshape(-1)
    table[len(rows) * T:] = np.asarray(scalars, dtype=np.float64).view(np.int64)
    tab = Tensor._wrap_numpy(table, dev)
    block = _block_size(numels)
    blocks = _block_map(dev, numels, block)
    tab_p = table_ptr(tab, [*work, *grads, *(s for st in states for s in st if s is not None)])
    scal_p = Ptr(tab_p.addr + len(rows) * T * 8, D.float64)
    aligned = not (table[T:len(rows) * T] % 16).any()
    rule.kernel[(blocks.numel() // 2,)](tab_p, scal_p, ptr(blocks), T, PT=TL[pdt_k], CT=ACC[pdt], **flags,
                                        ALIGNED=bool(aligned), BLOCK=block)
    for p, w in zip(params, work):
        if w is p:
            continue
        if bf16_host:
            p._np[...] = w._np.astype(p.dtype.np)
        else:
            copy_into(p, w)
