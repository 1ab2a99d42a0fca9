"""Random numbers: generators, seeds, and one counter-based Philox kernel for every distribution.

A ``Generator`` is a (seed, offset) pair. Each call takes a range of ``numel`` Philox counters starting at the
offset and advances it, so element ``i`` of a call gets counter ``offset + i`` and key ``seed``: the numbers depend
on neither the block size nor the device mode. On ``cuda`` they come from Triton's Philox4x32-10 (``tl.randint4x``,
``tl.rand``, ``tl.randn``); the ``cpu`` path is a NumPy transcription of the same generator and the same
integer -> float conversions, so ``cpu``, the interpreter and the GPU agree bitwise (float32 ``randn`` to an ulp or
so on the GPU, whose log/cos/sqrt are not NumPy's).

Per element, from the four 32-bit words ``w0..w3`` of its counter:
- float32 ``rand``: ``tl.rand`` (``w0`` -> [0, 1) with Triton's ``uint_to_uniform_float``); float16 / bfloat16 keep
  the top 11 / 8 bits of it (``floor(u * 2**d) / 2**d``), so that rounding to the small type never gives 1.0;
  float64: 53 bits of ``w0:w1`` times ``2**-53``.
- ``randn``: float32 is ``tl.randn`` (Box-Muller on ``w0``, ``w1``); float64 is Box-Muller in float64 on the 53-bit
  uniforms of ``w0:w1`` and ``w2:w3``.
- ``randint(low, high)``: ``low + (w0:w1 as uint64) % (high - low)``. The 64-bit draw makes the modulo bias at
  most ``(high - low) / 2**64`` (below 1e-9 for any range under 2**34), so no rejection loop is needed.
- ``bernoulli(p)``: ``rand < p`` in float32 (float64 for a float64 ``p``).
"""
import os

import numpy as np
import triton
import triton.language as tl

from tritorch import _dtype as D
from tritorch._device import device as _device, INTERPRET
from tritorch._creation import from_numpy, randn, empty, _dev
from tritorch._tensor import Tensor, register
from tritorch import _impl
from ._launch import ptr, next_pow2, cdiv, interp_bf16_in
from ._common import check_inplace, check_same_device
from .copy import copy_into

__all__ = ["Generator", "manual_seed", "seed", "initial_seed", "default_generator", "get_rng_state",
           "set_rng_state", "philox_np", "fill_random", "bernoulli", "randperm", "multinomial", "draw_clock"]

DEFAULT_SEED = 67280421310721          # PyTorch's default seed
_U64 = 1 << 64

# distributions of _random_kernel
UNIFORM, NORMAL, RANDINT, BERNOULLI = 0, 1, 2, 3


# ====================================================================================================================
# Generators
# ====================================================================================================================

def _check_seed(seed):
    if isinstance(seed, Tensor):
        seed = int(seed)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"manual_seed expected an int, got {type(seed).__name__}")
    seed = int(seed)
    if not -(1 << 63) <= seed < _U64:
        raise RuntimeError(f"Overflow when unpacking long long: seed {seed} is outside "
                           "[-0x8000_0000_0000_0000, 0xffff_ffff_ffff_ffff]")
    return seed % _U64


@register("Generator", method=False)
class Generator:
    """A source of random numbers: a 64-bit seed (the Philox key) and an offset (the next unused counter).

    ``get_state()`` returns both as a 16-byte uint8 tensor; ``set_state`` restores them, so the numbers drawn
    after a restore repeat those drawn after the save.
    """

    def __init__(self, device="cpu"):
        self.device = _device(device)
        self._seed = DEFAULT_SEED
        self._offset = 0

    def manual_seed(self, seed):
        self._seed = _check_seed(seed)
        self._offset = 0
        return self

    def seed(self):
        """Seed with a non-deterministic 64-bit number and return it."""
        self.manual_seed(int.from_bytes(os.urandom(8), "little"))
        return self._seed

    def initial_seed(self):
        return self._seed

    def get_state(self):
        return from_numpy(np.array([self._seed, self._offset], dtype=np.uint64).view(np.uint8).copy())

    def set_state(self, new_state):
        if not isinstance(new_state, Tensor) or new_state.dtype is not D.uint8 or new_state.numel() != 16:
            raise RuntimeError("set_state: expected a uint8 tensor of 16 bytes, as returned by get_state()")
        self._seed, self._offset = (int(v) for v in
                                    np.ascontiguousarray(new_state._to_host_array()).reshape(-1).view(np.uint64))
        return self

    def _take(self, n):
        """Reserve ``n`` counters: returns (seed, first counter) and moves the offset past them."""
        start = self._offset
        self._offset = (self._offset + n) % (1 << 63)
        return self._seed, start

    def __repr__(self):
        return f"<tritorch.Generator device={self.device} seed={self._seed} offset={self._offset}>"


_DEFAULT = {"cpu": Generator("cpu"), "cuda": Generator("cuda")}
default_generator = _DEFAULT["cpu"]
register("default_generator", method=False)(default_generator)


def _generator(generator, dev):
    if generator is None:
        return _DEFAULT[dev.type]
    if not isinstance(generator, Generator):
        raise TypeError(f"generator must be a tritorch.Generator, not {type(generator).__name__}")
    if generator.device.type != dev.type:
        raise RuntimeError(f"Expected a '{dev.type}' device type for generator but found "
                           f"'{generator.device.type}'")
    return generator


@register("manual_seed", method=False)
def manual_seed(seed):
    """Seed the default generators of every device; returns the cpu one, as PyTorch does."""
    seed = _check_seed(seed)
    for g in _DEFAULT.values():
        g.manual_seed(seed)
    return default_generator


@register("seed", method=False)
def seed():
    s = default_generator.seed()
    for g in _DEFAULT.values():
        g.manual_seed(s)
    return s


@register("initial_seed", method=False)
def initial_seed():
    return default_generator.initial_seed()


@register("get_rng_state", method=False)
def get_rng_state():
    return default_generator.get_state()


@register("set_rng_state", method=False)
def set_rng_state(new_state):
    default_generator.set_state(new_state)


# ====================================================================================================================
# NumPy reference of Triton's Philox4x32-10 and its conversions
# ====================================================================================================================

_PHILOX_KEY_A, _PHILOX_KEY_B = np.uint32(0x9E3779B9), np.uint32(0xBB67AE85)
_PHILOX_ROUND_A, _PHILOX_ROUND_B = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)


def _mul_hi_lo(a, x):
    p = a * x.astype(np.uint64)
    return (p >> np.uint64(32)).astype(np.uint32), p.astype(np.uint32)


def philox_np(seed, counters, n_rounds=10):
    """``tl.randint4x(seed, counters)``: four uint32 words per int64 counter (counter = (lo, hi, 0, 0),
    key = (seed lo, seed hi))."""
    counters = np.asarray(counters, dtype=np.int64)
    c0 = counters.astype(np.uint32)
    c1 = (counters >> 32).astype(np.uint32)
    c2 = np.zeros_like(c0)
    c3 = np.zeros_like(c0)
    k0 = np.uint32(seed & 0xFFFFFFFF)
    k1 = np.uint32((seed >> 32) & 0xFFFFFFFF)
    with np.errstate(over="ignore"):
        for _ in range(n_rounds):
            hi_b, lo_b = _mul_hi_lo(_PHILOX_ROUND_B, c2)
            hi_a, lo_a = _mul_hi_lo(_PHILOX_ROUND_A, c0)
            c0, c1, c2, c3 = hi_b ^ c1 ^ k0, lo_b, hi_a ^ c3 ^ k1, lo_a
            k0 = k0 + _PHILOX_KEY_A
            k1 = k1 + _PHILOX_KEY_B
    return c0, c1, c2, c3


def uint_to_uniform_float_np(x):
    """Triton's ``uint_to_uniform_float`` for 32-bit words: [0, 1) in float32."""
    x = x.view(np.int32)
    x = np.where(x < 0, ~x, x)
    return x.astype(np.float32) * np.float32(4.6566127342e-10)


def _u53_np(hi, lo):
    x = (hi.astype(np.uint64) << np.uint64(32)) | lo.astype(np.uint64)
    return (x >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def _uniform_np(w, dtype):
    if dtype is D.float64:
        return _u53_np(w[0], w[1])
    u = uint_to_uniform_float_np(w[0])
    digits = _DIGITS[dtype]
    if digits < 24:
        u = np.floor(u * np.float32(2 ** digits)) * np.float32(2.0 ** -digits)
    return u


def _normal_np(w, dtype):
    if dtype is D.float64:
        u1 = 1.0 - _u53_np(w[0], w[1])
        u2 = _u53_np(w[2], w[3])
        return np.sqrt(-2.0 * np.log(u1)) * np.cos(6.283185307179586 * u2)
    u1 = np.maximum(np.float32(1.0e-7), uint_to_uniform_float_np(w[0]))
    u2 = uint_to_uniform_float_np(w[1])
    th = np.float32(6.283185307179586) * u2
    r = np.sqrt(np.float32(-2.0) * np.log(u1))
    return r * np.cos(th)


def _random_np(dist, n, seed, offset, dtype, ct, a, b, p=None):
    """The ``cpu`` reference of ``_random_kernel``: ``n`` samples of counters ``offset .. offset + n - 1`` for an
    output of ``dtype``, computed in ``ct``."""
    w = philox_np(seed, offset + np.arange(n, dtype=np.int64))
    if dist == RANDINT:
        x = (w[0].astype(np.uint64) << np.uint64(32)) | w[1].astype(np.uint64)
        with np.errstate(over="ignore"):
            return (x % np.uint64(_i64(b) % _U64)).view(np.int64) + np.int64(_i64(a))
    f = ct.np.type
    if dist == UNIFORM:
        return f(a) + (f(b) - f(a)) * _uniform_np(w, dtype)
    if dist == NORMAL:
        return f(a) + f(b) * _normal_np(w, ct)
    return _uniform_np(w, ct) < (f(a) if p is None else p.astype(f))


# ====================================================================================================================
# The kernel
# ====================================================================================================================

@triton.jit
def _u53(hi, lo):
    """53 random bits of the words hi:lo as a float64 in [0, 1)."""
    x = (hi.to(tl.uint64) << 32) | lo.to(tl.uint64)
    return (x >> 11).to(tl.float64) * 1.1102230246251565e-16


@triton.jit
def _uniform(seed, c, F64: tl.constexpr, DIGITS: tl.constexpr):
    if F64:
        w0, w1, _, _ = tl.randint4x(seed, c)
        u = _u53(w0, w1)
    else:
        u = tl.rand(seed, c)
        if DIGITS < 24:
            u = tl.floor(u * (2.0 ** DIGITS)) * (2.0 ** -DIGITS)
    return u


@triton.jit(do_not_specialize=["seed", "offset", "a_bits", "b_bits"])
def _random_kernel(out_ptr, p_ptr, n, seed, offset, a_bits, b_bits,
                   DIST: tl.constexpr, F64: tl.constexpr, DIGITS: tl.constexpr, P_TENSOR: tl.constexpr,
                   BLOCK: tl.constexpr):
    """out[i] = a sample of DIST drawn from Philox counter ``offset + i`` under key ``seed``.

    The parameters come as int64 bit patterns (Triton would pass a Python float as float32): float64 ``a``, ``b``
    for UNIFORM (a + (b - a) * U[0, 1)), NORMAL (a + b * N(0, 1)) and BERNOULLI (U[0, 1) < p, p = ``a`` or, with
    P_TENSOR, p_ptr[i]); int64 ``low`` and uint64 ``range`` for RANDINT (low + 64 random bits % range).
    """
    pid = tl.program_id(0).to(tl.int64)
    i = pid * BLOCK + tl.arange(0, BLOCK)
    mask = i < n
    c = offset.to(tl.int64) + i
    a_int = a_bits.to(tl.int64)
    b_int = b_bits.to(tl.int64)
    a = a_int.to(tl.float64, bitcast=True)
    b = b_int.to(tl.float64, bitcast=True)
    if not F64:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    if DIST == 0:
        v = a + (b - a) * _uniform(seed, c, F64, DIGITS)
    elif DIST == 1:
        if F64:
            w0, w1, w2, w3 = tl.randint4x(seed, c)
            u1 = 1.0 - _u53(w0, w1)
            u2 = _u53(w2, w3)
            two_pi = tl.full([BLOCK], 6.283185307179586, tl.float64)     # not rounded through float32
            z = tl.sqrt(-2.0 * tl.log(u1)) * tl.cos(two_pi * u2)
        else:
            z = tl.randn(seed, c)
        v = a + b * z
    elif DIST == 2:
        w0, w1, _, _ = tl.randint4x(seed, c)
        x = (w0.to(tl.uint64) << 32) | w1.to(tl.uint64)
        v = (x % b_int.to(tl.uint64, bitcast=True)).to(tl.int64, bitcast=True) + a_int
    else:
        u = _uniform(seed, c, F64, 53 if F64 else 24)
        if P_TENSOR:
            p = tl.load(p_ptr + i, mask=mask, other=0).to(u.dtype)
        else:
            p = a
        v = u < p
    tl.store(out_ptr + i, v.to(out_ptr.dtype.element_ty), mask=mask)


_DIGITS = {D.float16: 11, D.bfloat16: 8, D.float32: 24, D.float64: 53}


def _compute_dtype(dist, dtype, p):
    """float64 for float64 outputs (for BERNOULLI: float64 probabilities, or a float64 output with a scalar p),
    float32 otherwise."""
    if dist == BERNOULLI and p is not None:
        return p.dtype if p.dtype is D.float64 else D.float32
    return D.float64 if dtype is D.float64 else D.float32


def _block(n):
    # one counter per element, so the block size changes no number; the interpreter runs big blocks fastest
    if INTERPRET:
        return max(16, min(next_pow2(n), 4096))
    return 1024


@_impl.provide
def fill_random(t, dist, a=0.0, b=1.0, generator=None, p=None):
    """Fill ``t`` in place with samples of ``dist`` (any strides); ``p`` is a probability tensor for BERNOULLI."""
    n = t.numel()
    dev = t._storage.device
    gen = _generator(generator, dev)
    if n == 0:
        return t
    seed_, offset = gen._take(n)
    if not t.is_contiguous():
        tmp = Tensor._empty(t._shape, t.dtype, dev)
        fill_random_at(tmp, dist, seed_, offset, a, b, p)
        copy_into(t, tmp)
    else:
        fill_random_at(t, dist, seed_, offset, a, b, p)
    t._storage.version += 1
    return t


def fill_random_at(t, dist, seed_, offset, a, b, p=None):
    """Write the samples of counters ``offset ..`` into the contiguous tensor ``t``."""
    n = t.numel()
    if p is not None and p._shape != t._shape:
        p = p.expand(t._shape)
    ct = _compute_dtype(dist, t.dtype, p)
    if t._storage.device.type == "cpu":
        pn = None if p is None else np.ascontiguousarray(p._np).reshape(-1)
        v = _random_np(dist, n, seed_, offset, t.dtype, ct, a, b, pn)
        t._np[...] = v.reshape(t._shape).astype(t.dtype.np, copy=False)
        return t
    out = t
    if INTERPRET and t.dtype is D.bfloat16:          # no bf16 stores in the interpreter: float32, then round
        out = Tensor._empty(t._shape, D.float32, t.device)
    if p is not None:
        p = interp_bf16_in(p.contiguous())
    if dist == RANDINT:
        a_bits, b_bits = _i64(a), _i64(b)
    else:
        a_bits, b_bits = (int(np.float64(v).view(np.int64)) for v in (a, b))
    block = _block(n)
    _random_kernel[(cdiv(n, block),)](
        ptr(out), ptr(p) if p is not None else ptr(out), n, seed_, offset, a_bits, b_bits,
        DIST=dist, F64=ct is D.float64, DIGITS=_DIGITS.get(t.dtype, 24), P_TENSOR=p is not None, BLOCK=block)
    if out is not t:
        t._np[...] = out._np.astype(t.dtype.np)
    return t


def _i64(v):
    """An integer as the signed 64-bit pattern the kernel reads."""
    v = int(v) % _U64
    return v - _U64 if v >= 1 << 63 else v


@_impl.provide
def check_int_range(name, low, high, dtype):
    """PyTorch's checks of a [low, high) integer range for ``dtype``."""
    if low >= high:
        raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got from={low} >= to={high}")
    if dtype is D.bool_:
        lo, hi = 0, 1
    elif dtype.is_floating_point:
        lo, hi = -(2 ** _DIGITS[dtype]), 2 ** _DIGITS[dtype]
    else:
        info = np.iinfo(dtype.np)
        lo, hi = int(info.min), int(info.max)
    if not lo <= low <= hi:
        raise RuntimeError(f"{name}: from is out of bounds for {dtype}: from={low}, expected [{lo}, {hi}]")
    if not lo <= high - 1 <= hi:
        raise RuntimeError(f"{name}: to - 1 is out of bounds for {dtype}: to - 1 = {high - 1}, expected [{lo}, {hi}]")


# ====================================================================================================================
# In-place fills (what nn.init uses) and the other samplers
# ====================================================================================================================

def _inplace(t, name, floating=True):
    if not isinstance(t, Tensor):
        raise TypeError(f"{name}: expected a Tensor, got {type(t).__name__}")
    check_inplace(t)
    if floating and not t.dtype.is_floating_point:
        raise RuntimeError(f"{name}: expected a floating point tensor, but got {t.dtype}")


@register("uniform_", function=False)
def uniform_(self, a=0.0, b=1.0, *, generator=None, **kw):
    """Fill with samples of U[a, b)."""
    a, b = kw.pop("from", a), kw.pop("to", b)
    _inplace(self, "uniform_")
    if a > b:
        raise RuntimeError(f"uniform_ expects to return a [from, to) range, but found from={a} > to={b}")
    return fill_random(self, UNIFORM, float(a), float(b), generator)


@register("normal_", function=False)
def normal_(self, mean=0.0, std=1.0, *, generator=None):
    """Fill with samples of N(mean, std**2)."""
    _inplace(self, "normal_")
    if std < 0:
        raise RuntimeError(f"normal expects std >= 0.0, but found std {std}")
    return fill_random(self, NORMAL, float(mean), float(std), generator)


@register("random_", function=False)
def random_(self, *args, generator=None, **kw):
    """``random_(to)`` / ``random_(from, to)``: integers in [from, to); ``random_()``: in [0, max] where max is the
    dtype's largest integer (2**mantissa digits for floats, 1 for bool)."""
    _inplace(self, "random_", floating=False)
    args = list(args) + [v for v in (kw.pop("from", None), kw.pop("to", None)) if v is not None]
    if len(args) > 2:
        raise TypeError("random_() takes at most 2 arguments (from, to)")
    if len(args) == 2:
        low, high = args
    elif len(args) == 1:
        low, high = 0, args[0]
    else:
        dt = self.dtype
        low = 0
        high = 2 if dt is D.bool_ else 2 ** _DIGITS[dt] + 1 if dt.is_floating_point else int(np.iinfo(dt.np).max) + 1
    low, high = int(low), int(high)
    check_int_range("random_", low, high, self.dtype)
    return fill_random(self, RANDINT, low, high - low, generator)


@register("bernoulli_", function=False)
def bernoulli_(self, p=0.5, *, generator=None):
    """Fill with 1 where a uniform sample is below ``p`` (a float or a tensor broadcastable to ``self``)."""
    _inplace(self, "bernoulli_", floating=False)
    if isinstance(p, Tensor):
        check_same_device("bernoulli_", self, p)
        return fill_random(self, BERNOULLI, 0.0, 0.0, generator, p=p)
    if not 0 <= p <= 1:
        raise RuntimeError(f"bernoulli_ expects p to be in [0, 1], but got p={p}")
    return fill_random(self, BERNOULLI, float(p), 0.0, generator)


@register("bernoulli")
def bernoulli(input, p=None, *, generator=None):
    """A tensor of ``input``'s shape and dtype: 1 with probability ``input`` (or the scalar ``p``), else 0."""
    if not isinstance(input, Tensor):
        raise TypeError(f"bernoulli(): argument 'input' must be Tensor, not {type(input).__name__}")
    out = Tensor._empty(input._shape, input.dtype, input.device)
    if p is None:
        if not input.dtype.is_floating_point:
            raise RuntimeError(f"bernoulli: expected a floating point probability tensor, but got {input.dtype}")
        return fill_random(out, BERNOULLI, 0.0, 0.0, generator, p=input.detach())
    return bernoulli_(out, p, generator=generator)


@register("normal", method=False)
def normal(mean=0.0, std=1.0, size=None, *, generator=None, dtype=None, device=None, requires_grad=False):
    """``normal(mean, std, size)`` with float mean/std, or ``normal(mean, std)`` with tensors (broadcast)."""
    if isinstance(mean, Tensor) or isinstance(std, Tensor):
        ref = mean if isinstance(mean, Tensor) else std
        shape = tuple(np.broadcast_shapes(*(tuple(x._shape) for x in (mean, std) if isinstance(x, Tensor))))
        z = randn(shape, generator=generator, dtype=ref.dtype, device=ref.device)
        return z * std + mean
    if size is None:
        raise TypeError("normal(): with float mean and std, the 'size' argument is required")
    t = empty(*((size,) if isinstance(size, (tuple, list)) else (size,)), dtype=dtype, device=device)
    normal_(t, mean, std, generator=generator)
    return t.requires_grad_(requires_grad) if requires_grad else t


def _host_words(n, gen):
    seed_, offset = gen._take(n)
    return philox_np(seed_, offset + np.arange(n, dtype=np.int64))


@register("randperm", method=False)
def randperm(n, *, generator=None, dtype=None, device=None, requires_grad=False, **kw):
    """A random permutation of ``0 .. n-1``. For now it runs on the host on every device: a stable argsort of 64-bit
    Philox keys (one counter per element, as everywhere), then an upload."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise RuntimeError(f"randperm: n must be a non-negative integer, got {n!r}")
    dev = _dev(device)
    dt = D.to_dtype(dtype) if dtype is not None else D.int64
    w = _host_words(int(n), _generator(generator, dev))
    keys = (w[0].astype(np.uint64) << np.uint64(32)) | w[1].astype(np.uint64)
    perm = np.argsort(keys, kind="stable")
    return Tensor._wrap_numpy(perm.astype(dt.np), dev, dt)


@register("multinomial")
def multinomial(input, num_samples, replacement=False, *, generator=None):
    """Indices sampled from the rows of ``input`` (non-negative weights, 1-D or 2-D). Host-side for now: with
    replacement, inverse-CDF search of Philox uniforms; without, the ``num_samples`` smallest exponential keys
    ``-log(1 - u) / w`` (equivalent to successive draws without replacement)."""
    if input.ndim not in (1, 2):
        raise RuntimeError("prob_dist must be 1 or 2 dim")
    w = np.asarray(input.detach()._to_host_array(), dtype=np.float64)
    rows = w.reshape(1, -1) if w.ndim == 1 else w
    k = rows.shape[1]
    if num_samples <= 0:
        raise RuntimeError("cannot sample n_sample <= 0 samples")
    if not np.all(np.isfinite(rows)) or np.any(rows < 0):
        raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")
    if np.any(rows.sum(1) <= 0):
        raise RuntimeError("invalid multinomial distribution (sum of probabilities <= 0)")
    if not replacement and num_samples > k:
        raise RuntimeError("cannot sample n_sample > prob_dist.size(-1) samples without replacement")
    gen = _generator(generator, input._storage.device)
    m = num_samples if replacement else k
    u = _u53_np(*_host_words(rows.shape[0] * m, gen)[:2]).reshape(rows.shape[0], m)
    if replacement:
        cdf = np.cumsum(rows, axis=1)
        cdf /= cdf[:, -1:]
        idx = np.stack([np.minimum(np.searchsorted(c, r, side="right"), k - 1) for c, r in zip(cdf, u)])
    else:
        with np.errstate(divide="ignore"):
            keys = -np.log1p(-u) / rows
        idx = np.argsort(keys, axis=1, kind="stable")[:, :num_samples]
    idx = idx.reshape(-1) if w.ndim == 1 else idx
    return Tensor._wrap_numpy(idx.astype(np.int64), input.device, D.int64)


_impl.UNIFORM, _impl.NORMAL, _impl.RANDINT = UNIFORM, NORMAL, RANDINT    # the factories' distributions


def draw_clock(generators=()):
    """The (seed, offset) of every default generator and of ``generators``: it changes exactly when one of them
    hands out random numbers or is reseeded (``tritorch.jit``'s capture notes the calls that draw)."""
    return tuple((g._seed, g._offset) for g in (*_DEFAULT.values(), *generators))
