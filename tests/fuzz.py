"""tritorch's differential fuzzer: random calls of public ops, run in tritorch and in an oracle, classified.

The oracle is PyTorch (CPU) when it is installed; otherwise (or with ``--oracle numpy``) a NumPy float64 reference
for the ops that have one, plus a cross-check of the device's result against tritorch's own ``cpu`` result.

    python3 -m tests.fuzz --device cpu|cuda --seed S --calls N [--ops a,b] [--time T] [--index I] [--verbose]

Every call is reproducible from (seed, index) alone: ``--index I`` reruns call I and prints its reproducer.
Classes: match, both_raise, missing, silent_acceptance, wrong, internal (see ``classify``).
"""
import argparse
import collections
import dataclasses
import linecache
import math
import os
import re
import signal
import sys
import threading
import time
import warnings

if os.environ.get("TRITORCH_TEST_GPU", "0") != "1":
    os.environ.setdefault("TRITORCH_INTERPRET", "1")
os.environ.setdefault("TRITORCH_POISON", "1")

import numpy as np  # noqa: E402

import tritorch  # noqa: E402
import tritorch.nn.functional as tritorch_F  # noqa: E402

try:  # the oracle; absent, the fuzzer falls back to NumPy references
    import torch as _torch
    import torch.nn.functional as _torch_F
except ImportError:  # pragma: no cover - exercised where PyTorch is not installed
    _torch = _torch_F = None

CLASSES = ("match", "both_raise", "missing", "silent_acceptance", "wrong", "internal")
FAILING = ("wrong", "internal", "silent_acceptance")
DTYPES = ("float64", "float32", "float16", "bfloat16", "int8", "int16", "int32", "int64", "uint8", "bool")
KINDS = {"float": DTYPES[:4], "int": DTYPES[4:9], "bool": ("bool",), "all": DTYPES, "num": DTYPES[:9],
         "intbool": DTYPES[4:], "f3264": ("float64", "float32")}
# (rtol, atol) per result dtype for the elementwise tolerance class
TOL = {"float64": (1e-9, 1e-12), "float32": (1e-5, 1e-6), "float16": (2e-3, 1e-5), "bfloat16": (1.6e-2, 1e-5)}
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(tritorch.__file__)))  # the checkout being fuzzed
_TRITORCH_DIRS = tuple(os.path.join(_ROOT, d) + os.sep for d in ("tritorch", "kernels", "autograd"))
_CALL_FILE = "<fuzz-call>"
# exception types torch itself raises for bad arguments; anything else from tritorch is an internal error
_TORCH_LIKE = (RuntimeError, ValueError, TypeError, IndexError, NotImplementedError)


class Lib:
    """One side of a comparison: its top module, functional namespace, dtypes and device."""

    def __init__(self, name, top, functional, device):
        self.name, self.t, self.F, self.device = name, top, functional, device
        self.dtypes = {n: getattr(top, n) for n in DTYPES}
        self.names = {v: k for k, v in self.dtypes.items()}


def tritorch_lib(device):
    return Lib("tritorch", tritorch, tritorch_F, device)


TORCH = Lib("torch", _torch, _torch_F, "cpu") if _torch is not None else None


# ---------------------------------------------------------------------------------------------------------------
# arguments: recipes that build the same input in either library


def _round_to(values, dtype):
    """Values (float64) rounded to what ``dtype`` can hold, so both libraries receive identical inputs."""
    values = np.asarray(values)
    if dtype == "float32":
        return values.astype(np.float32).astype(np.float64)
    if dtype == "float16":
        return values.astype(np.float16).astype(np.float64)
    if dtype == "bfloat16":
        with np.errstate(all="ignore"):
            b = values.astype(np.float32).view(np.uint32).astype(np.uint64)
            nan = np.isnan(values)
            b = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16 << 16).astype(np.uint32)
            out = np.array(np.asarray(b, dtype=np.uint32).view(np.float32), dtype=np.float64)
        out[nan] = np.nan
        return out
    return values


@dataclasses.dataclass
class T:
    """A tensor recipe: base values, dtype, the views applied to the base, and whether it may require grad."""
    values: np.ndarray
    dtype: str
    views: tuple = ()
    grad: bool = True
    requires_grad: bool = False

    def build(self, lib, leaves):
        t = lib.t.tensor(self.values, dtype=lib.dtypes[self.dtype], device=lib.device)
        if self.requires_grad:
            t.requires_grad_(True)
            leaves.append(t)
        for v in self.views:
            t = _VIEW[v[0]](t, *v[1:])
        return t

    @property
    def shape(self):
        shape = self.values.shape
        for v in self.views:
            shape = _VIEW_SHAPE[v[0]](shape, *v[1:])
        return tuple(shape)

    def code(self):
        rg = ", device=device" + (", requires_grad=True" if self.requires_grad else "")
        if self.values.size == 0:
            s = f"torch.empty({tuple(self.values.shape)}, dtype=torch.{self.dtype}{rg})"
        else:
            vals = repr(self.values.tolist()).replace("nan", "float('nan')").replace("inf", "float('inf')")
            s = f"torch.tensor({vals}, dtype=torch.{self.dtype}{rg})"
        for v in self.views:
            s += _VIEW_CODE[v[0]](*v[1:])
        return s


def _slice_view(t, dim, start, step):
    return t[(slice(None),) * dim + (slice(start, None, step),)]


_VIEW = {"permute": lambda t, p: t.permute(*p), "slice": _slice_view, "expand": lambda t, s: t.expand(*s)}
_VIEW_SHAPE = {"permute": lambda s, p: [s[i] for i in p],
               "slice": lambda s, d, a, st: [*s[:d], len(range(a, s[d], st)), *s[d + 1:]],
               "expand": lambda s, e: list(e)}
_VIEW_CODE = {"permute": lambda p: f".permute{tuple(p)}",
              "slice": lambda d, a, st: "[" + ":, " * d + f"{a}::{st}]",
              "expand": lambda e: f".expand{tuple(e)}"}


@dataclasses.dataclass(frozen=True)
class DT:
    """A dtype argument."""
    name: str

    def code(self):
        return f"torch.{self.name}"


@dataclasses.dataclass(frozen=True)
class Dev:
    """The device argument of a creation op."""

    def code(self):
        return "device"


def materialize(x, lib, leaves):
    """An argument structure with recipes replaced by ``lib``'s objects."""
    if isinstance(x, T):
        return x.build(lib, leaves)
    if isinstance(x, DT):
        return lib.dtypes[x.name]
    if isinstance(x, Dev):
        return lib.device
    if isinstance(x, list):
        return [materialize(v, lib, leaves) for v in x]
    if isinstance(x, tuple):
        return tuple(materialize(v, lib, leaves) for v in x)
    if isinstance(x, dict):
        return {k: materialize(v, lib, leaves) for k, v in x.items()}
    return x


def code(x):
    """Python source for an argument structure (the reproducer)."""
    if isinstance(x, (T, DT, Dev)):
        return x.code()
    if isinstance(x, list):
        return "[" + ", ".join(code(v) for v in x) + "]"
    if isinstance(x, tuple):
        return "(" + ", ".join(code(v) for v in x) + ("," if len(x) == 1 else "") + ")"
    if isinstance(x, dict):
        return "{" + ", ".join(f"{k!r}: {code(v)}" for k, v in x.items()) + "}"
    if isinstance(x, float) and not math.isfinite(x):
        return f"float('{x}')"
    return repr(x)


def recipes(x):
    """Every tensor recipe in an argument structure."""
    if isinstance(x, T):
        yield x
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from recipes(v)
    elif isinstance(x, dict):
        for v in x.values():
            yield from recipes(v)


# ---------------------------------------------------------------------------------------------------------------
# the generator of random arguments


class Gen:
    """Draws shapes, dtypes, tensors, dims; ``bad`` records whether a deliberately invalid argument was drawn.
    ``numpy_mode`` restricts the draws to what the NumPy oracle can judge (float32/64, no bad arguments)."""

    def __init__(self, rng, numpy_mode=False):
        self.rng, self.numpy_mode, self.bad = rng, numpy_mode, False
        self.np_dtype = self.choice(KINDS["f3264"])  # NumPy mode: one float dtype per call (no promotion rules)

    def p(self, prob):
        return self.rng.random() < prob

    def choice(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def int(self, lo, hi):
        return int(self.rng.integers(lo, max(hi, lo) + 1))

    def maybe_bad(self, prob=0.05):
        """Whether to draw an invalid argument now (never in NumPy mode)."""
        if self.numpy_mode or not self.p(prob):
            return False
        self.bad = True
        return True

    def dtype(self, kinds="all"):
        if self.numpy_mode:
            return self.np_dtype
        return self.choice(KINDS[kinds])

    def shape(self, min_nd=0, max_nd=4, zero=True, max_dim=5):
        nd = self.int(min_nd, max_nd)
        return tuple(0 if zero and self.p(0.04) else self.choice((1, 1, 2, 3, 4, max_dim)[:4 + (max_dim > 3)])
                     for _ in range(nd))

    def dim(self, nd, bad=0.04):
        """A valid dim of an ``nd``-d tensor (0-d tensors take 0 and -1), sometimes an out-of-range one."""
        if self.maybe_bad(bad):
            return self.choice((max(nd, 1), -max(nd, 1) - 1, 7))
        n = max(nd, 1)
        return self.int(-n, n - 1)

    def values(self, shape, dtype, low=-3.0, high=3.0, special=0.25):
        if dtype == "bool":
            return np.array(self.rng.integers(0, 2, size=shape), dtype=bool)
        if dtype in KINDS["int"]:
            info = np.iinfo(dtype)
            lo, hi = (0, 20) if dtype == "uint8" else (max(int(low * 5), info.min), int(high * 5))
            v = np.array(self.rng.integers(lo, max(hi, lo) + 1, size=shape), dtype=np.int64)
            if v.size and not self.numpy_mode and self.p(special / 2):
                v.flat[self.int(0, v.size - 1)] = self.choice((info.min, info.max, 0))
            return v
        v = np.array(self.rng.uniform(low, high, size=shape), dtype=np.float64)
        if v.size and self.p(special):
            fi = np.finfo(np.float16 if dtype == "float16" else np.float32 if dtype == "bfloat16" else dtype)
            pool = (np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-3, -1e-3) if self.numpy_mode else \
                (np.nan, np.inf, -np.inf, 0.0, -0.0, float(fi.max), -float(fi.max), float(fi.tiny), 1e4, -1e4, 0.5)
            for _ in range(self.int(1, 3)):
                v.flat[self.int(0, v.size - 1)] = self.choice(pool)
        return _round_to(v, dtype)

    def tensor(self, shape=None, dtype=None, kinds="all", layout=None, grad=True, **kw):
        """A tensor recipe of ``shape``, sometimes a non-contiguous view (transposed, stepped slice, expanded)."""
        shape = self.shape() if shape is None else tuple(shape)
        dtype = dtype or self.dtype(kinds)
        layout = layout or self.choice(("contiguous",) * 4 + ("transposed", "strided", "offset", "expanded"))
        nd = len(shape)
        if layout == "transposed" and nd >= 2:
            perm = list(range(nd))
            self.rng.shuffle(perm)
            base = [0] * nd
            for i, p in enumerate(perm):
                base[p] = shape[i]
            return T(self.values(base, dtype, **kw), dtype, (("permute", tuple(perm)),), grad)
        if layout in ("strided", "offset") and nd >= 1:
            d = self.int(0, nd - 1)
            step, start = self.choice((2, 3)), 1 if layout == "offset" else 0
            base = list(shape)
            base[d] = shape[d] * step + start
            return T(self.values(base, dtype, **kw), dtype, (("slice", d, start, step),), grad)
        if layout == "expanded" and nd >= 1:
            base = [1 if self.p(0.5) else s for s in shape]
            if base != list(shape):
                return T(self.values(base, dtype, **kw), dtype, (("expand", tuple(shape)),), grad)
        return T(self.values(shape, dtype, **kw), dtype, (), grad)

    def broadcast_shapes(self, n=2):
        """``n`` shapes that broadcast together, or (sometimes, flagged bad) that do not."""
        full = self.shape()
        shapes = []
        for _ in range(n):
            s = list(full[self.int(0, len(full)):]) if full else []
            s = [1 if self.p(0.3) else d for d in s]
            shapes.append(tuple(s))
        if full and self.maybe_bad(0.05):
            s = list(shapes[0]) or [1]
            s[-1] = s[-1] + 2
            shapes[0] = tuple(s)
        return shapes

    def scalar(self, kinds="num"):
        kind = self.choice(("float", "int", "bool") if kinds == "all" else ("float", "int"))
        if kind == "bool":
            return bool(self.p(0.5))
        if kind == "int" and not self.numpy_mode:
            return self.int(-4, 4)
        return self.choice((0.5, -1.5, 2.0, 0.0, 3.25, -0.0)) if self.numpy_mode or not self.p(0.2) else \
            self.choice((math.nan, math.inf, -math.inf))

    def index(self, size, shape, bad=0.04):
        """An int64 index tensor of ``shape`` into a dim of ``size``."""
        hi = max(size - 1, 0)
        v = self.rng.integers(-size if self.p(0.2) else 0, hi + 1, size=shape) if size else \
            np.zeros(shape, np.int64)
        if size == 0 and v.size:
            self.bad = True
        if v.size and self.maybe_bad(bad):
            v.flat[0] = size + 3
        return T(v.astype(np.int64), "int64", (), False)


# ---------------------------------------------------------------------------------------------------------------
# argument generators: each returns (args, kwargs) built from a Gen


def g_unary(kinds="all", **kw):
    return lambda g: ([g.tensor(kinds=kinds, **kw)], {})


def g_binary(kinds="all", scalar=0.2, alpha=False, extra=None):
    """Two broadcastable tensors (or a tensor and a Python scalar), same dtype or mixed for promotion."""
    def gen(g):
        sa, sb = g.broadcast_shapes()
        da = g.dtype(kinds)
        db = da if g.p(0.6) else g.dtype(kinds)
        a = g.tensor(sa, da)
        b = g.scalar(kinds) if g.p(scalar) else g.tensor(sb, db)
        if g.p(0.2):
            a, b = (b, a) if isinstance(b, T) else (a, b)
        k = {}
        if alpha and g.p(0.3):
            k["alpha"] = g.choice((2, -1, 0.5) if da in KINDS["float"] else (2, -1))
        if extra:
            k.update(extra(g))
        return [a, b], k
    return gen


def g_reduce(kinds="all", dtype_kw=False, correction=False, dim_required=False, multi=True, keepdim=True,
             full=True):
    """A tensor, a dim (None, int or tuple), keepdim, dtype=, correction=."""
    def gen(g):
        t = g.tensor(kinds=kinds)
        nd = len(t.shape)
        k = {}
        r = g.rng.random()
        if (r < 0.25 and full and not dim_required):
            pass
        elif r < 0.5 and multi and nd:
            dims = sorted({g.int(0, nd - 1) for _ in range(g.int(1, nd))})
            k["dim"] = tuple(dims) if g.p(0.8) else list(dims)
        else:
            k["dim"] = g.dim(nd)
        if "dim" in k and keepdim and g.p(0.5):
            k["keepdim"] = bool(g.p(0.5))
        if dtype_kw and g.p(0.25):
            k["dtype"] = DT(g.dtype("float" if g.p(0.7) else "all"))
        if correction and g.p(0.5):
            k["correction"] = g.choice((0, 1, 2))
        return [t], k
    return gen


def g_dim_op(kinds="float", dtype_kw=False):
    """softmax-like: a tensor and a dim."""
    def gen(g):
        t = g.tensor(kinds=kinds)
        k = {"dim": g.dim(len(t.shape))}
        if dtype_kw and g.p(0.2):
            k["dtype"] = DT(g.dtype("float"))
        return [t], k
    return gen


def g_act(kinds="float", **params):
    """An activation's input and random values of its keyword parameters."""
    def gen(g):
        k = {name: g.choice(vals) for name, vals in params.items() if g.p(0.5)}
        return [g.tensor(kinds=kinds)], k
    return gen


def g_clamp(g):
    t = g.tensor(kinds="num")
    lo = g.choice((None, -1, -0.5, 0, 1.5))
    hi = g.choice((None, 1, 0.5, 2, -1))
    if g.p(0.3):  # tensor bounds (torch takes both as tensors or both as numbers)
        lo = None if lo is None else g.tensor(g.broadcast_shapes(1)[0], t.dtype)
        hi = None if hi is None else g.tensor(g.broadcast_shapes(1)[0], t.dtype)
    if lo is None and hi is None and g.maybe_bad(0.5):
        return [t], {}
    if lo is None and hi is None:
        hi = 1
    return [t], {"min": lo, "max": hi}


def g_pow(g):
    [a, b], k = g_binary("num", scalar=0.4)(g)
    if not isinstance(b, T) and not isinstance(a, T):
        b = g.tensor(dtype="float32")
    return [a, b], k


def g_view_shape(g):
    t = g.tensor()
    n = math.prod(t.shape)
    shapes = [(n,), (-1,), (1, n), (n, 1), (-1, 1), ()] + ([(2, n // 2), (2, -1)] if n % 2 == 0 else [])
    if n == 1:
        shapes.append(())
    s = g.choice(shapes)
    if g.maybe_bad(0.08):
        s = (n + 1,)
    if s == () and n != 1:
        g.bad = True
    return [t, s], {}


def g_permute(g):
    t = g.tensor()
    p = list(range(len(t.shape)))
    g.rng.shuffle(p)
    if g.maybe_bad(0.06):
        p = p + [0] if p else [1]
    return [t, tuple(p)], {}


def g_two_dims(g):
    t = g.tensor()
    nd = len(t.shape)
    return [t, g.dim(nd), g.dim(nd)], {}


def g_select(g):
    t = g.tensor(g.shape(min_nd=1))
    d = g.dim(len(t.shape))
    size = t.shape[d] if -len(t.shape) <= d < len(t.shape) else 1
    i = g.int(-size, size - 1) if size else 0
    if size == 0 or g.maybe_bad(0.04):
        g.bad, i = True, size
    return [t, d, i], {}


def g_narrow(g):
    t = g.tensor(g.shape(min_nd=1))
    d = g.dim(len(t.shape))
    size = t.shape[d] if -len(t.shape) <= d < len(t.shape) else 1
    start = g.int(0, size)
    length = g.int(0, size - start)
    if g.maybe_bad(0.05):
        length = size + 1
    return [t, d, start, length], {}


def g_split(g):
    t = g.tensor(g.shape(min_nd=1))
    d = g.dim(len(t.shape))
    size = t.shape[d] if -len(t.shape) <= d < len(t.shape) else 1
    if g.p(0.3) and size:
        parts = []
        left = size
        while left:
            parts.append(g.int(1, left))
            left -= parts[-1]
        if g.maybe_bad(0.1):
            parts.append(1)
        return [t, parts], {"dim": d}
    return [t, g.int(1, 3) if not g.maybe_bad(0.03) else 0], {"dim": d}


def g_chunk(g):
    t = g.tensor(g.shape(min_nd=1))
    return [t, g.int(1, 4) if not g.maybe_bad(0.03) else 0], {"dim": g.dim(len(t.shape))}


def g_tensor_dim(min_nd=0, extra=0):
    def gen(g):
        t = g.tensor(g.shape(min_nd=min_nd))
        nd = len(t.shape) + extra
        return [t, g.dim(nd)], {}
    return gen


def g_squeeze(g):
    t = g.tensor()
    r = g.rng.random()
    if r < 0.3:
        return [t], {}
    if r < 0.8 or not t.shape:
        return [t, g.dim(len(t.shape))], {}
    return [t, tuple(sorted({g.int(0, len(t.shape) - 1) for _ in range(2)}))], {}


def g_flatten(g):
    t = g.tensor()
    nd = max(len(t.shape), 1)
    a, b = sorted((g.int(-nd, nd - 1), g.int(-nd, nd - 1)), key=lambda d: d % nd)
    if g.maybe_bad(0.05):
        a, b = b + nd, a
    return [t], {"start_dim": a, "end_dim": b}


def g_unflatten(g):
    t = g.tensor(g.shape(min_nd=1))
    d = g.dim(len(t.shape), bad=0)
    n = t.shape[d]
    sizes = g.choice([(n,), (1, n), (-1, 1)] + ([(2, -1)] if n % 2 == 0 else []))
    if g.maybe_bad(0.05):
        sizes = (n + 1, 1)
    return [t, d, sizes], {}


def g_expand(g):
    shape = g.shape(max_nd=3)
    base = tuple(1 if g.p(0.5) else s for s in shape)
    t = g.tensor(base)
    target = list(shape)
    if g.p(0.3):
        target = [g.int(1, 3)] + target
    if base and g.p(0.3):
        target[-1] = -1
    if g.maybe_bad(0.06):
        target = [s + 2 for s in base] or [2, 2]
        if all(s == 1 for s in base):
            g.bad = False
    return [t, tuple(target)], {}


def g_movedim(g):
    t = g.tensor()
    nd = len(t.shape)
    if nd >= 2 and g.p(0.4):
        src = list(range(nd))
        g.rng.shuffle(src)
        dst = list(range(nd))
        g.rng.shuffle(dst)
        k = g.int(1, nd)
        return [t, tuple(src[:k]), tuple(dst[:k])], {}
    return [t, g.dim(nd), g.dim(nd)], {}


def g_tile(g):
    t = g.tensor(g.shape(max_nd=3))
    reps = tuple(g.int(1, 3) for _ in range(g.int(1, len(t.shape) + 1)))
    return [t, reps], {}


def g_repeat(g):
    t = g.tensor(g.shape(max_nd=3))
    reps = tuple(g.int(0 if g.p(0.1) else 1, 3) for _ in range(len(t.shape) + g.int(0, 1)))
    if g.maybe_bad(0.08):
        reps = reps[1:]
    return [t, reps], {}


def g_tri(g):
    t = g.tensor(g.shape(min_nd=2, max_nd=3) if not g.maybe_bad(0.05) else (3,))
    return [t], {"diagonal": g.int(-2, 2)} if g.p(0.5) else {}


def g_gather(g):
    t = g.tensor(g.shape(min_nd=1, max_nd=3))
    nd = len(t.shape)
    d = g.dim(nd, bad=0)
    ishape = tuple(g.int(0 if g.p(0.05) else 1, s) if i != d % nd else g.int(1, 4) for i, s in enumerate(t.shape))
    idx = g.index(t.shape[d], ishape)
    idx.values = np.mod(idx.values, max(t.shape[d], 1)) if not g.bad else idx.values
    return [t, d, idx], {}


def g_scatter(g, add=False, reduce=False):
    [t, d, idx], _ = g_gather(g)
    src = g.tensor(idx.shape, t.dtype) if g.p(0.8) or add else g.scalar()
    k = {}
    if reduce and g.p(0.3):
        k["reduce"] = g.choice(("add", "multiply"))
    return [t, d, idx, src], k


def g_index_select(g):
    t = g.tensor(g.shape(min_nd=1, max_nd=3))
    d = g.dim(len(t.shape), bad=0)
    idx = g.index(t.shape[d], (g.int(0, 4),))
    idx.values = np.mod(idx.values, max(t.shape[d], 1)) if not g.bad else idx.values
    return [t, d, idx], {}


def g_index_add(g):
    [t, d, idx], _ = g_index_select(g)
    shape = list(t.shape)
    shape[d] = idx.shape[0]
    k = {"alpha": g.choice((2, 0.5, -1))} if g.p(0.3) else {}
    return [t, d, idx, g.tensor(shape, t.dtype)], k


def g_masked_fill(g):
    sa, sm = g.broadcast_shapes()
    t = g.tensor(sa)
    mask = g.tensor(sm, "bool", grad=False)
    value = g.scalar("all") if g.p(0.8) else g.tensor((), t.dtype)
    return [t, mask, value], {}


def g_masked_select(g):
    sa, sm = g.broadcast_shapes()
    return [g.tensor(sa), g.tensor(sm, "bool", grad=False)], {}


def g_where(g):
    sc, sa, sb = g.broadcast_shapes(3)
    da = g.dtype()
    a = g.tensor(sa, da) if g.p(0.85) else g.scalar()
    b = g.tensor(sb, da if g.p(0.6) else g.dtype()) if g.p(0.85) else g.scalar()
    cond = g.tensor(sc, "bool" if not g.maybe_bad(0.05) else "float32", grad=False)
    return [cond, a, b], {}


def g_getitem(g):
    t = g.tensor(g.shape(min_nd=0))
    shape = t.shape
    r = g.rng.random()
    if r < 0.2 and shape:
        idx = g.int(-shape[0], shape[0] - 1) if shape[0] else 0
        if not shape[0] or g.maybe_bad(0.05):
            idx, g.bad = shape[0], True
    elif r < 0.45:
        idx = tuple(slice(g.choice((None, 0, 1, -2)), g.choice((None, -1, 2, 5)), g.choice((None, 1, 2, 3)))
                    for _ in shape[:g.int(0, len(shape))])
        if g.p(0.3):
            idx = (Ellipsis, *idx[1:], None) if idx else (None,)
    elif r < 0.6:
        idx = g.tensor(shape[:g.int(0, len(shape))], "bool", grad=False, layout="contiguous")
    elif r < 0.85 and shape:
        idx = g.index(shape[0], g.shape(max_nd=2))
    elif shape:  # an index tensor in a tuple: on dim 0, or after a full slice on dim 1
        idx = (g.index(shape[0], (2,)),)
        if len(shape) > 1:
            idx = (slice(None), g.index(shape[1], (2,)))
    else:
        idx = g.choice((None, Ellipsis, ()))
    if g.p(0.1) and shape and shape[0]:
        idx = T(np.array(g.int(0, shape[0] - 1)), "int64", (), False)
    return [t, idx], {}


def g_cat(g, stack=False):
    nd_shape = g.shape(min_nd=0 if stack else 1, max_nd=3)
    d = g.dim(len(nd_shape) + stack)
    dtype = g.dtype()
    ts = []
    for _ in range(g.int(1, 3)):
        s = list(nd_shape)
        if not stack and s and -len(s) <= d < len(s):
            s[d] = g.int(0, 3)
        if g.maybe_bad(0.04):
            s = s + [2] if g.p(0.5) else [v + 1 for v in s] or [3]
        ts.append(g.tensor(s, dtype if g.p(0.8) else g.dtype()))
    return [ts], {"dim": d}


def g_hvstack(g):
    s = g.shape(max_nd=3)
    return [[g.tensor(s) for _ in range(g.int(1, 3))]], {}


def g_matmul(g):
    n, k, m = g.int(1, 4), g.choice((0, 1, 2, 3, 5)) if g.p(0.9) else 0, g.int(1, 4)
    batch = g.shape(max_nd=2, zero=False)
    da = g.dtype("float" if g.p(0.85) else "num")
    a_shape = (k,) if g.p(0.15) else (*batch, n, k)
    b_shape = (k,) if g.p(0.15) else (*batch[g.int(0, len(batch)):], k, m)
    if g.maybe_bad(0.06):
        b_shape = (k + 1, m)
    return [g.tensor(a_shape, da), g.tensor(b_shape, da if g.p(0.9) else g.dtype())], {}


def g_mm(batched=False, vec=False, dot=False):
    def gen(g):
        n, k, m, b = g.int(1, 4), g.int(0, 4), g.int(1, 4), g.int(0, 3)
        d = g.dtype("float" if g.p(0.85) else "num")
        k2 = k + 1 if g.maybe_bad(0.06) else k
        if dot:
            return [g.tensor((k,), d), g.tensor((k2,), d)], {}
        if vec:
            return [g.tensor((n, k), d), g.tensor((k2,), d)], {}
        pre = (b,) if batched else ()
        return [g.tensor((*pre, n, k), d), g.tensor((*pre, k2, m), d)], {}
    return gen


def g_addmm(g):
    n, k, m = g.int(1, 4), g.int(0, 4), g.int(1, 4)
    d = g.dtype("float")
    bias = g.tensor(g.choice(((n, m), (m,), (1, m), ())), d)
    k2 = {"beta": g.choice((0.5, 0, 1)), "alpha": g.choice((2, 1))} if g.p(0.4) else {}
    return [bias, g.tensor((n, k), d), g.tensor((k, m), d)], k2


def g_linear(g):
    batch = g.shape(max_nd=2)
    i, o = g.int(1, 4), g.int(1, 4)
    d = g.dtype("float")
    w = g.tensor((o, i + (1 if g.maybe_bad(0.05) else 0)), d)
    args = [g.tensor((*batch, i), d), w]
    if g.p(0.6):
        args.append(g.tensor((o,), d))
    return args, {}


def g_loss_pair(extra=None, prob=False):
    def gen(g):
        s = g.shape()
        d = g.dtype("float")
        st = s if not g.maybe_bad(0.05) else s + (3,)
        kw = {"low": 0.01, "high": 0.99} if prob else {}
        k = {"reduction": g.choice(("mean", "sum", "none"))} if g.p(0.7) else {}
        if extra:
            k.update(extra(g))
        return [g.tensor(s, d, **kw), g.tensor(st, d, **kw)], k
    return gen


def g_class_loss(log=False):
    def gen(g):
        n, c = g.int(0 if g.p(0.05) else 1, 4), g.int(1, 5)
        d = g.dtype("float")
        x = g.tensor((n, c), d) if g.p(0.8) else g.tensor((c,), d)
        nt = x.shape[0] if len(x.shape) == 2 else ()
        tgt = T(g.rng.integers(0, c, size=(nt,) if nt != () else ()).astype(np.int64), "int64", (), False)
        if g.maybe_bad(0.05) and tgt.values.size:
            tgt.values.flat[0] = c + 1
        k = {}
        if g.p(0.3):
            k["reduction"] = g.choice(("mean", "sum", "none"))
        if g.p(0.2):
            k["weight"] = g.tensor((c,), d, low=0.1, high=2.0, special=0, grad=False)
        if g.p(0.2) and tgt.values.size:
            k["ignore_index"] = int(tgt.values.flat[0])
        if not log and g.p(0.2):
            k["label_smoothing"] = 0.1
        if not log and g.p(0.1):  # class probabilities as the target
            tgt = g.tensor(x.shape, d, low=0, high=1, special=0, grad=False)
            k.pop("ignore_index", None)
        return [x, tgt], k
    return gen


def g_layer_norm(g):
    s = g.shape(min_nd=1)
    d = g.dtype("float")
    m = g.int(1, len(s))
    ns = s[-m:]
    args = [g.tensor(s, d), ns if not g.maybe_bad(0.05) else tuple(v + 1 for v in ns)]
    k = {}
    if g.p(0.6):
        k["weight"] = g.tensor(ns, d, special=0)
    if g.p(0.5):
        k["bias"] = g.tensor(ns, d, special=0)
    if g.p(0.2):
        k["eps"] = 1e-3
    return args, k


def g_batch_norm(g):
    n, c = g.int(1, 3), g.int(1, 3)
    s = (n, c, *g.shape(max_nd=2, zero=False))
    d = g.dtype("float")
    training = g.p(0.5)
    # running statistics are buffers updated in place: contiguous, as a module holds them
    rm = g.tensor((c,), d, grad=False, special=0, layout="contiguous")
    rv = g.tensor((c,), d, grad=False, low=0.1, high=2, special=0, layout="contiguous")
    k = {"training": training}
    if g.p(0.5):
        # not expanded: PyTorch's CPU batch_norm backward returns garbage for a stride-0 weight (an oracle bug)
        k["weight"] = g.tensor((c,), d, special=0, layout=g.choice(("contiguous",) * 4 + ("strided", "offset")))
        k["bias"] = g.tensor((c,), d, special=0, layout=g.choice(("contiguous",) * 4 + ("strided", "offset")))
    if training and math.prod(s) // c == 1:
        g.bad = True
    return [g.tensor(s, d), rm, rv], k


def g_group_norm(g):
    groups = g.int(1, 3)
    n, c = g.int(1, 3), groups * g.int(1, 2)
    d = g.dtype("float")
    s = (n, c, *g.shape(min_nd=1, max_nd=2, zero=False))
    k = {}
    if g.p(0.5):
        k["weight"] = g.tensor((c,), d, special=0)
        k["bias"] = g.tensor((c,), d, special=0)
    return [g.tensor(s, d), groups if not g.maybe_bad(0.05) else c + 1], k


def g_instance_norm(g):
    n, c = g.int(1, 3), g.int(1, 3)
    d = g.dtype("float")
    s = (n, c, *g.shape(min_nd=1, max_nd=2, zero=False))
    if math.prod(s[2:]) == 1:
        s = s[:2] + (3,)
    k = {}
    if g.p(0.4):
        k["weight"] = g.tensor((c,), d, special=0)
        k["bias"] = g.tensor((c,), d, special=0)
    return [g.tensor(s, d)], k


def g_pool(nd, max_pool=False, adaptive=False):
    def gen(g):
        d = g.dtype("float")
        spatial = tuple(g.int(1, 6) for _ in range(nd))
        s = (g.int(1, 2), g.int(1, 3), *spatial) if g.p(0.8) else (g.int(1, 3), *spatial)
        x = g.tensor(s, d)
        if adaptive:
            return [x, tuple(g.int(1, 4) for _ in range(nd)) if nd > 1 else g.int(1, 4)], {}
        kernel = g.int(1, 3)
        k = {}
        if g.p(0.5):
            k["stride"] = g.int(1, 3)
        if g.p(0.4):
            k["padding"] = g.int(0, kernel // 2) if not g.maybe_bad(0.1) else kernel
        if g.p(0.3):
            k["ceil_mode"] = True
        if kernel > min(spatial) + 2 * k.get("padding", 0):
            g.bad = True
        return [x, kernel], k
    return gen


def g_conv(nd):
    def gen(g):
        d = g.dtype("float")
        groups = g.int(1, 2)
        cin, cout = groups * g.int(1, 2), groups * g.int(1, 2)
        kernel = tuple(g.int(1, 3) for _ in range(nd))
        spatial = tuple(k + g.int(0, 3) for k in kernel)
        x = g.tensor((g.int(1, 2), cin, *spatial), d)
        w = g.tensor((cout, cin // groups + (1 if g.maybe_bad(0.05) else 0), *kernel), d)
        k = {"groups": groups}
        if g.p(0.5):
            k["bias"] = g.tensor((cout,), d)
        if g.p(0.4):
            k["stride"] = g.int(1, 2)
        if g.p(0.4):
            k["padding"] = g.int(0, 1)
        return [x, w], k
    return gen


def g_embedding(g):
    n, dim = g.int(1, 5), g.int(1, 3)
    w = g.tensor((n, dim), g.dtype("float"))
    idx = g.index(n, g.shape(max_nd=2))
    idx.values = np.mod(idx.values, n) if not g.bad else idx.values
    return [idx, w], {}


def g_pad(g):
    x = g.tensor(g.shape(min_nd=1, max_nd=3))
    pad = tuple(g.int(0 if g.p(0.8) else -1, 2) for _ in range(2 * g.int(1, len(x.shape))))
    k = {"value": g.choice((0.0, 1.5, -2))} if g.p(0.4) else {}
    return [x, pad], k


def g_full(g):
    size = g.shape(max_nd=3)
    if g.maybe_bad(0.04):
        size = (2, -1)
    dtype = g.dtype() if g.p(0.7) else None
    fill = g.scalar("all")
    k = {"device": Dev()}
    if dtype:
        k["dtype"] = DT(dtype)
    return [size, fill], k


def g_creation(g):
    size = g.shape(max_nd=3)
    k = {"device": Dev()}
    if g.p(0.6):
        k["dtype"] = DT(g.dtype())
    return [size], k


def g_arange(g):
    r = g.rng.random()
    if r < 0.3:
        args = [g.choice((0, 1, 5, 3.5, -2))]
    elif r < 0.7:
        args = [g.choice((0, -3, 1.5)), g.choice((5, 2, -1, 0.5))]
    else:
        args = [g.choice((0, 10, 1.0)), g.choice((5, 0, 3.5)), g.choice((1, -2, 0.5, 3))]
    if len(args) == 3 and (args[1] - args[0]) * args[2] < 0:
        g.bad = True
    k = {"device": Dev()}
    if g.p(0.4):
        k["dtype"] = DT(g.dtype("num"))
    return args, k


def g_linspace(g):
    k = {"device": Dev()}
    if g.p(0.4):
        k["dtype"] = DT(g.dtype("float"))
    return [g.choice((0, -1.5, 2)), g.choice((1, 3.0, -2)), g.int(0, 6)], k


def g_eye(g):
    args = [g.int(0, 4)] + ([g.int(0, 4)] if g.p(0.5) else [])
    k = {"device": Dev()}
    if g.p(0.5):
        k["dtype"] = DT(g.dtype())
    return args, k


def g_like(g):
    t = g.tensor()
    k = {"dtype": DT(g.dtype())} if g.p(0.4) else {}
    return [t], k


def g_full_like(g):
    [t], k = g_like(g)
    return [t, g.scalar("all")], k


def g_to(g):
    return [g.tensor(), DT(g.dtype())], {}


def g_tensor_list(g):
    dtype = g.dtype()
    vals = [g.scalar("all") for _ in range(g.int(0, 4))]
    return [vals], {"dtype": DT(dtype)} if g.p(0.7) else {}


# ---------------------------------------------------------------------------------------------------------------
# the table of ops

@dataclasses.dataclass
class Op:
    """One public op: ``expr`` is the call (``torch``/``F`` are the library's namespaces, ``a``/``k`` the args);
    ``tol``: exact (bitwise), ew (per element) or red (scaled by the result's magnitude); ``grad``: compare
    gradients; ``np``: a float64 NumPy reference ``np(a, k)`` for the no-PyTorch oracle."""
    name: str
    gen: object
    expr: str = ""
    tol: str = "ew"
    grad: bool = False
    np: object = None

    def __post_init__(self):
        if not self.expr:
            self.expr = (self.name if self.name.startswith("F.") else "torch." + self.name) + "(*a, **k)"
        self.code = compile(self.expr, _CALL_FILE, "eval")


def _np_axis(x, dim):
    """A torch dim argument as a NumPy axis (0-d tensors take dim 0 and -1)."""
    return None if np.ndim(x) == 0 else tuple(dim) if isinstance(dim, list) else dim


def _np_reduce(f):
    return lambda a, k: f(a[0], axis=_np_axis(a[0], k.get("dim")), keepdims=k.get("keepdim", False))


def _softmax_np(x, dim):
    e = np.exp(x - np.max(x, axis=dim, keepdims=True))
    return e / np.sum(e, axis=dim, keepdims=True)


def _erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def _np_div(a, b, mode):
    """torch.div: true, trunc (of the quotient) or floor (NumPy's floor_divide, NaN for infinite dividends)."""
    return np.floor_divide(a, b) if mode == "floor" else np.trunc(a / b) if mode == "trunc" else a / b


_UNARY = [  # name, kinds, differentiable, numpy reference
    ("abs", "num", True, np.abs), ("neg", "num", True, np.negative), ("exp", "all", True, np.exp),
    ("expm1", "all", True, np.expm1), ("log", "all", True, np.log), ("log1p", "all", True, np.log1p),
    ("sqrt", "all", True, np.sqrt), ("rsqrt", "all", True, lambda x: 1 / np.sqrt(x)),
    ("sin", "all", True, np.sin), ("cos", "all", True, np.cos), ("tanh", "all", True, np.tanh),
    ("sigmoid", "all", True, lambda x: 1 / (1 + np.exp(-x))), ("erf", "all", True, _erf),
    ("reciprocal", "all", True, lambda x: 1 / x), ("ceil", "num", False, np.ceil),
    ("floor", "num", False, np.floor), ("round", "num", False, np.round), ("trunc", "num", False, np.trunc),
    ("fix", "num", False, np.trunc), ("sign", "all", True, np.sign), ("square", "all", True, np.square),
    ("isnan", "all", False, np.isnan), ("isinf", "all", False, np.isinf), ("isfinite", "all", False, np.isfinite),
    ("logical_not", "all", False, np.logical_not),
]
_BINARY = [  # name, kinds, differentiable, numpy reference, extra generator
    ("add", "all", True, lambda a, k: a[0] + k.get("alpha", 1) * a[1], "alpha"),
    ("sub", "num", True, lambda a, k: a[0] - k.get("alpha", 1) * a[1], "alpha"),
    ("mul", "all", True, lambda a, k: a[0] * a[1], None),
    ("div", "num", True, lambda a, k: _np_div(a[0], a[1], k.get("rounding_mode")), "rounding"),
    ("true_divide", "num", True, lambda a, k: a[0] / a[1], None),
    ("floor_divide", "num", False, lambda a, k: np.floor_divide(a[0], a[1]), None),
    ("remainder", "num", True, lambda a, k: np.remainder(a[0], a[1]), None),
    ("fmod", "num", True, lambda a, k: np.fmod(a[0], a[1]), None),
    ("maximum", "all", True, lambda a, k: np.maximum(a[0], a[1]), "tensors"),
    ("minimum", "all", True, lambda a, k: np.minimum(a[0], a[1]), "tensors"),
    ("eq", "all", False, lambda a, k: a[0] == a[1], None), ("ne", "all", False, lambda a, k: a[0] != a[1], None),
    ("lt", "all", False, lambda a, k: a[0] < a[1], None), ("le", "all", False, lambda a, k: a[0] <= a[1], None),
    ("gt", "all", False, lambda a, k: a[0] > a[1], None), ("ge", "all", False, lambda a, k: a[0] >= a[1], None),
    ("bitwise_and", "intbool", False, None, None), ("bitwise_or", "intbool", False, None, None),
    ("bitwise_xor", "intbool", False, None, None),
    ("logical_and", "all", False, lambda a, k: np.logical_and(a[0], a[1]), "tensors"),
    ("logical_or", "all", False, lambda a, k: np.logical_or(a[0], a[1]), "tensors"),
    ("logical_xor", "all", False, lambda a, k: np.logical_xor(a[0], a[1]), "tensors"),
    ("rsub", "num", True, lambda a, k: a[1] - k.get("alpha", 1) * a[0], "alpha"),
    ("isclose", "all", False, lambda a, k: np.isclose(a[0], a[1], rtol=1e-5, atol=1e-8), "tensors"),
    ("equal", "all", False, None, "tensors"), ("allclose", "num", False, None, "tensors"),
]


def _binary_gen(kinds, extra):
    if extra == "alpha":
        return g_binary(kinds, alpha=True)
    if extra == "rounding":
        return g_binary(kinds, extra=lambda g: {"rounding_mode": g.choice((None, "trunc", "floor"))}
                        if g.p(0.4) else {})
    if extra == "tensors":
        return g_binary(kinds, scalar=0)
    return g_binary(kinds)


OPS = [Op(n, g_unary(kinds), grad=d, np=(lambda f: lambda a, k: f(a[0]))(f)) for n, kinds, d, f in _UNARY]
OPS += [Op(n, _binary_gen(kinds, x), grad=d, np=f) for n, kinds, d, f, x in _BINARY]
OPS += [
    Op("pow", g_pow, grad=True, np=lambda a, k: np.power(a[0], a[1])),
    Op("clamp", g_clamp, grad=True), Op("clip", g_clamp, grad=True),
    Op("clamp_min", lambda g: ([g.tensor(kinds="num"), g.choice((0, -1.5, 2))], {}), grad=True,
       np=lambda a, k: np.maximum(a[0], a[1])),
    Op("clamp_max", lambda g: ([g.tensor(kinds="num"), g.choice((0, -1.5, 2))], {}), grad=True,
       np=lambda a, k: np.minimum(a[0], a[1])),
    Op("where", g_where, grad=True, np=lambda a, k: np.where(a[0], a[1], a[2])),
    # activations
    Op("F.relu", g_act("num"), grad=True, np=lambda a, k: np.maximum(a[0], 0)),
    Op("F.relu6", g_act("num"), grad=True, np=lambda a, k: np.clip(a[0], 0, 6)),
    Op("F.leaky_relu", g_act(negative_slope=(0.01, 0.2, -1.0)), grad=True,
       np=lambda a, k: np.where(a[0] > 0, a[0], a[0] * k.get("negative_slope", 0.01))),
    Op("F.elu", g_act(alpha=(1.0, 0.5)), grad=True,
       np=lambda a, k: np.where(a[0] > 0, a[0], k.get("alpha", 1.0) * np.expm1(a[0]))),
    Op("F.gelu", g_act(approximate=("none", "tanh")), grad=True),
    Op("F.silu", g_act(), grad=True, np=lambda a, k: a[0] / (1 + np.exp(-a[0]))),
    Op("F.softplus", g_act(beta=(1.0, 2.0), threshold=(20.0, 1.0)), grad=True),
    Op("F.hardtanh", g_act("num", min_val=(-1.0, -2.0), max_val=(1.0, 0.5)), grad=True),
    Op("F.sigmoid", g_act(), grad=True, np=lambda a, k: 1 / (1 + np.exp(-a[0]))),
    Op("F.tanh", g_act(), grad=True, np=lambda a, k: np.tanh(a[0])),
    Op("F.softmax", g_dim_op(dtype_kw=True), tol="red", grad=True, np=lambda a, k: _softmax_np(a[0], k["dim"])),
    Op("F.log_softmax", g_dim_op(dtype_kw=True), tol="red", grad=True,
       np=lambda a, k: np.log(_softmax_np(a[0], k["dim"]))),
    Op("softmax", g_dim_op("all"), tol="red", grad=True),
    Op("logsumexp", g_reduce("all", full=False, dim_required=True), tol="red", grad=True),
    # reductions
    Op("sum", g_reduce(dtype_kw=True), tol="red", grad=True, np=_np_reduce(np.sum)),
    Op("mean", g_reduce(dtype_kw=True), tol="red", grad=True, np=_np_reduce(np.mean)),
    Op("prod", g_reduce(dtype_kw=True, multi=False), tol="red", grad=True),
    Op("amax", g_reduce(), tol="exact", grad=True, np=_np_reduce(np.amax)),
    Op("amin", g_reduce(), tol="exact", grad=True, np=_np_reduce(np.amin)),
    Op("max", g_reduce(multi=False), tol="exact", grad=True), Op("min", g_reduce(multi=False), tol="exact"),
    Op("argmax", g_reduce(multi=False), tol="exact"), Op("argmin", g_reduce(multi=False), tol="exact"),
    Op("all", g_reduce(), tol="exact"), Op("any", g_reduce(), tol="exact"),
    Op("std", g_reduce("float", correction=True), tol="red", grad=True),
    Op("var", g_reduce("float", correction=True), tol="red", grad=True,
       np=lambda a, k: np.var(a[0], axis=_np_axis(a[0], k.get("dim")), keepdims=k.get("keepdim", False),
                              ddof=k.get("correction", 1))),
    Op("std_mean", g_reduce("float", correction=True), tol="red", grad=True),
    Op("var_mean", g_reduce("float", correction=True), tol="red", grad=True),
    Op("norm", lambda g: ([g.tensor(kinds="float")], {"p": g.choice((2, 1, math.inf, 3, "fro")),
                                                      **({"dim": g.dim(2)} if g.p(0.4) else {})}),
       tol="red", grad=True),
    # views
    Op("reshape", g_view_shape, tol="exact", grad=True, np=lambda a, k: np.reshape(a[0], a[1])),
    Op("view", g_view_shape, "a[0].view(a[1])", tol="exact", grad=True),
    Op("permute", g_permute, tol="exact", grad=True, np=lambda a, k: np.transpose(a[0], a[1])),
    Op("transpose", g_two_dims, tol="exact", grad=True, np=lambda a, k: np.swapaxes(a[0], a[1], a[2])),
    Op("swapaxes", g_two_dims, tol="exact", grad=True),
    Op("t", lambda g: ([g.tensor(g.shape(max_nd=3))], {}), tol="exact", grad=True),
    Op("select", g_select, tol="exact", grad=True, np=lambda a, k: np.take(a[0], a[2], axis=a[1])),
    Op("narrow", g_narrow, tol="exact", grad=True),
    Op("split", g_split, tol="exact", grad=True), Op("chunk", g_chunk, tol="exact", grad=True),
    Op("unbind", g_tensor_dim(1), tol="exact", grad=True),
    Op("squeeze", g_squeeze, tol="exact", grad=True),
    Op("unsqueeze", g_tensor_dim(0, extra=1), tol="exact", grad=True,
       np=lambda a, k: np.expand_dims(a[0], a[1])),
    Op("flatten", g_flatten, tol="exact", grad=True), Op("unflatten", g_unflatten, tol="exact", grad=True),
    Op("expand", g_expand, "a[0].expand(a[1])", tol="exact", grad=True),
    Op("broadcast_to", g_expand, tol="exact", grad=True),
    Op("movedim", g_movedim, tol="exact", grad=True, np=lambda a, k: np.moveaxis(a[0], a[1], a[2])),
    Op("ravel", g_unary(), tol="exact", grad=True, np=lambda a, k: np.ravel(a[0])),
    Op("tril", g_tri, tol="exact", grad=True, np=lambda a, k: np.tril(a[0], k.get("diagonal", 0))),
    Op("triu", g_tri, tol="exact", grad=True, np=lambda a, k: np.triu(a[0], k.get("diagonal", 0))),
    Op("tile", g_tile, tol="exact", grad=True), Op("repeat", g_repeat, "a[0].repeat(a[1])", tol="exact", grad=True),
    Op("atleast_2d", g_unary(), tol="exact"),
    Op("contiguous", g_unary(), "a[0].contiguous()", tol="exact", grad=True),
    Op("clone", g_unary(), tol="exact", grad=True),
    # indexing
    Op("getitem", g_getitem, "a[0][a[1]]", tol="exact", grad=True),
    Op("gather", g_gather, tol="exact", grad=True),
    Op("scatter", lambda g: g_scatter(g, reduce=True), tol="exact", grad=True),
    Op("scatter_add", lambda g: g_scatter(g, add=True), tol="red", grad=True),
    Op("index_select", g_index_select, tol="exact", grad=True,
       np=lambda a, k: np.take(a[0], a[2], axis=a[1])),
    Op("index_add", g_index_add, tol="red", grad=True),
    Op("masked_fill", g_masked_fill, tol="exact", grad=True),
    Op("masked_select", g_masked_select, tol="exact", grad=True),
    Op("nonzero", g_unary(), tol="exact"), Op("argwhere", g_unary(), tol="exact"),
    # joins
    Op("cat", g_cat, tol="exact", grad=True, np=lambda a, k: np.concatenate(a[0], axis=k["dim"])),
    Op("stack", lambda g: g_cat(g, stack=True), tol="exact", grad=True,
       np=lambda a, k: np.stack(a[0], axis=k["dim"])),
    Op("hstack", g_hvstack, tol="exact", grad=True), Op("vstack", g_hvstack, tol="exact", grad=True),
    # matmul
    Op("matmul", g_matmul, tol="red", grad=True, np=lambda a, k: np.matmul(a[0], a[1])),
    Op("mm", g_mm(), tol="red", grad=True, np=lambda a, k: a[0] @ a[1]),
    Op("bmm", g_mm(batched=True), tol="red", grad=True, np=lambda a, k: a[0] @ a[1]),
    Op("mv", g_mm(vec=True), tol="red", grad=True, np=lambda a, k: a[0] @ a[1]),
    Op("dot", g_mm(dot=True), tol="red", grad=True, np=lambda a, k: np.dot(a[0], a[1])),
    Op("addmm", g_addmm, tol="red", grad=True,
       np=lambda a, k: (k.get("beta", 1) * a[0] if k.get("beta", 1) else 0) + k.get("alpha", 1) * (a[1] @ a[2])),
    Op("F.linear", g_linear, tol="red", grad=True),
    Op("F.conv1d", g_conv(1), tol="red", grad=True), Op("F.conv2d", g_conv(2), tol="red", grad=True),
    Op("F.embedding", g_embedding, tol="exact", grad=True),
    Op("F.pad", g_pad, tol="exact", grad=True),
    # losses
    Op("F.mse_loss", g_loss_pair(), tol="red", grad=True),
    Op("F.l1_loss", g_loss_pair(), tol="red", grad=True),
    Op("F.smooth_l1_loss", g_loss_pair(lambda g: {"beta": g.choice((1.0, 0.5, 0.0))} if g.p(0.4) else {}),
       tol="red", grad=True),
    Op("F.huber_loss", g_loss_pair(lambda g: {"delta": g.choice((1.0, 0.5))} if g.p(0.4) else {}),
       tol="red", grad=True),
    Op("F.binary_cross_entropy", g_loss_pair(prob=True), tol="red", grad=True),
    Op("F.binary_cross_entropy_with_logits", g_loss_pair(), tol="red", grad=True),
    Op("F.kl_div", g_loss_pair(lambda g: {"log_target": bool(g.p(0.5))} if g.p(0.4) else {}), tol="red",
       grad=True),
    Op("F.cross_entropy", g_class_loss(), tol="red", grad=True),
    Op("F.nll_loss", g_class_loss(log=True), tol="red", grad=True),
    # normalization and pooling
    Op("F.layer_norm", g_layer_norm, tol="red", grad=True),
    Op("F.batch_norm", g_batch_norm, tol="red", grad=True),
    Op("F.group_norm", g_group_norm, tol="red", grad=True),
    Op("F.instance_norm", g_instance_norm, tol="red", grad=True),
    Op("F.max_pool1d", g_pool(1, True), tol="exact", grad=True),
    Op("F.max_pool2d", g_pool(2, True), tol="exact", grad=True),
    Op("F.avg_pool1d", g_pool(1), tol="red", grad=True), Op("F.avg_pool2d", g_pool(2), tol="red", grad=True),
    Op("F.adaptive_avg_pool2d", g_pool(2, adaptive=True), tol="red", grad=True),
    Op("F.adaptive_max_pool1d", g_pool(1, adaptive=True), tol="exact", grad=True),
    # creation and conversion
    Op("full", g_full, tol="exact"), Op("zeros", g_creation, tol="exact"), Op("ones", g_creation, tol="exact"),
    Op("arange", g_arange, tol="ew"), Op("linspace", g_linspace, tol="ew"), Op("eye", g_eye, tol="exact"),
    Op("zeros_like", g_like, tol="exact"), Op("full_like", g_full_like, tol="exact"),
    Op("tensor", g_tensor_list, tol="exact"),
    Op("to", g_to, "a[0].to(a[1])", tol="exact", grad=True),
]
OPS_BY_NAME = {op.name: op for op in OPS}


# ---------------------------------------------------------------------------------------------------------------
# running a call and classifying it


class CallTimeout(Exception):
    """A single call ran past its time limit."""


class GradMissing(Exception):
    """tritorch's output does not require grad where PyTorch's does."""


@dataclasses.dataclass
class Outcome:
    value: object = None
    exc: BaseException = None
    leaves: list = dataclasses.field(default_factory=list)
    grads: list = None
    grad_exc: BaseException = None


def _call(op, args, kwargs, lib):
    """Build the inputs in ``lib`` and evaluate the op; the exception is kept, never raised."""
    out = Outcome()
    try:
        a = materialize(args, lib, out.leaves)
        k = materialize(kwargs, lib, out.leaves)
        out.value = eval(op.code, {"torch": lib.t, "F": lib.F, "a": a, "k": k})  # noqa: S307 - our own table
    except CallTimeout:
        raise
    except Exception as e:  # noqa: BLE001 - every failure is data
        out.exc = e
    return out


def flatten(x):
    """The tensors and plain values of a result, in order (tuples, named tuples and lists unpacked)."""
    if isinstance(x, (list, tuple)) and not _is_size(x):
        return [v for item in x for v in flatten(item)]
    return [x]


def _is_size(x):
    return type(x).__name__ == "Size"


def _is_tensor(x):
    return isinstance(x, tritorch.Tensor) or (_torch is not None and isinstance(x, _torch.Tensor))


def _to_np(x, lib):
    """A tensor as a NumPy array (floats widened to float64) and its dtype name."""
    name = lib.names.get(x.dtype, str(x.dtype))
    x = x.detach()
    if name in TOL:
        x = x.to(lib.dtypes["float64"])
    return np.asarray(x.cpu().numpy()), name


def _upstream(out, lib, seed):
    """A float64 upstream gradient per float output (same values in both libraries)."""
    grads = []
    rng = np.random.default_rng(seed)
    for v in flatten(out):
        if _is_tensor(v) and v.requires_grad:
            grads.append(rng.standard_normal(tuple(v.shape)))
        else:
            grads.append(None)
    return grads


def _backward(out, lib, upstream):
    """Backward of sum(output * upstream) over the float outputs; the leaves' grads (None as zeros)."""
    vals = flatten(out.value)
    loss = None
    for v, u in zip(vals, upstream):
        if u is None or not _is_tensor(v):
            continue
        if not v.requires_grad:
            raise GradMissing(f"output of dtype {v.dtype} does not require grad")
        term = (v * lib.t.tensor(u, dtype=v.dtype, device=lib.device)).sum()
        loss = term if loss is None else loss + term
    if loss is None:
        return None
    loss.backward()
    return [lf.grad if lf.grad is not None else lib.t.zeros_like(lf) for lf in out.leaves]


def _frame_is_deliberate(exc):
    """Whether the exception was raised by a ``raise`` statement in tritorch's own code."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    fname = tb.tb_frame.f_code.co_filename
    if not fname.startswith(_TRITORCH_DIRS):
        return False
    return linecache.getline(fname, tb.tb_lineno).strip().startswith("raise")


def _innermost_file(exc):
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_filename if tb is not None else ""


def is_missing(exc, op):
    """tritorch lacks the op or an argument: the name lookup or the argument binding failed in the call itself,
    or tritorch says it does not implement it."""
    if isinstance(exc, NotImplementedError):
        return True
    if not isinstance(exc, (AttributeError, TypeError)):
        return False
    return _innermost_file(exc) == _CALL_FILE or "unexpected keyword argument" in str(exc)


def is_internal(exc):
    """An internal error: not a deliberate ``raise`` in tritorch, or of a type torch would not raise."""
    return not isinstance(exc, _TORCH_LIKE) or not _frame_is_deliberate(exc)


def _describe_exc(exc):
    if exc is None:
        return ""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    fname = tb.tb_frame.f_code.co_filename if tb else ""
    fname = os.path.relpath(fname, _ROOT) if fname.startswith(_ROOT + os.sep) else os.path.basename(fname)
    where = f" at {fname}:{tb.tb_lineno}" if tb else ""
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}{where}"


def compare(actual, expected, tol, in_scale=0.0):
    """None when the results agree, else a short description of the first difference."""
    fa, fe = flatten(actual), flatten(expected)
    if len(fa) != len(fe):
        return f"{len(fa)} outputs != {len(fe)}"
    for i, (a, e) in enumerate(zip(fa, fe)):
        where = f"output {i}: " if len(fe) > 1 else ""
        if _is_tensor(e) or isinstance(e, np.ndarray):
            if not _is_tensor(a):
                return f"{where}{type(a).__name__} where a tensor was expected"
            diff = compare_arrays(a, e, tol, in_scale)
            if diff:
                return where + diff
        elif _is_size(e) or _is_size(a):
            if tuple(a) != tuple(e):
                return f"{where}size {tuple(a)} != {tuple(e)}"
        elif isinstance(e, float) and isinstance(a, (int, float)):
            if not (math.isnan(a) and math.isnan(e)) and not math.isclose(a, e, rel_tol=1e-6, abs_tol=1e-9):
                return f"{where}{a!r} != {e!r}"
        elif type(a) is not type(e) or a != e:
            return f"{where}{a!r} != {e!r}"
    return None


def _array_of(x):
    if isinstance(x, np.ndarray):
        return x, None
    return _to_np(x, _lib_of(x))


def _lib_of(x):
    if isinstance(x, tritorch.Tensor):
        return tritorch_lib(str(x.device))
    return TORCH


def compare_arrays(actual, expected, tol, in_scale=0.0, floor=None):
    """Shape, dtype (unless ``expected`` is a NumPy reference) and values, NaN and inf positions exactly;
    ``floor``: the least precise float dtype the values went through (a gradient through a bfloat16 op)."""
    a, adt = _array_of(actual)
    e, edt = _array_of(expected)
    if tuple(a.shape) != tuple(e.shape):
        return f"shape {tuple(a.shape)} != {tuple(e.shape)}"
    if edt is not None and adt != edt:
        return f"dtype {adt} != {edt}"
    if adt not in TOL or (tol == "exact" and edt is not None):
        e = e.astype(a.dtype) if edt is None else e
        same = (a == e) | (np.isnan(a) & np.isnan(e)) if adt in TOL else a == e
        if adt in TOL and not np.array_equal(np.signbit(a[a == 0]), np.signbit(e[a == 0])) and tol == "exact":
            return "sign of zero differs"
        if not np.all(same):
            return _first_diff(a, e, ~same)
        return None
    e = e.astype(np.float64)
    if not np.array_equal(np.isnan(a), np.isnan(e)):
        return _first_diff(a, e, np.isnan(a) != np.isnan(e), "NaN positions differ")
    inf_a, inf_e = np.isinf(a), np.isinf(e)
    if not np.array_equal(inf_a, inf_e) or not np.array_equal(a[inf_a], e[inf_e]):
        return _first_diff(a, e, (inf_a != inf_e) | (inf_a & (a != e)), "inf positions differ")
    fin = np.isfinite(e)
    rtol, atol = max(TOL[adt], TOL.get(floor, (0, 0)))
    if edt is None:  # a float64 NumPy reference: the result's own rounding counts too
        rtol, atol = rtol * 4, atol * 4
    scale = 0.0
    if tol == "red":
        rtol *= 8
        scale = max(float(np.max(np.abs(e[fin]), initial=0.0)), in_scale) * rtol
    bad = fin & ~(np.abs(a - e) <= atol + scale + rtol * np.abs(e))
    if np.any(bad):
        return _first_diff(a, e, bad)
    return None


def _first_diff(a, e, mask, what="values differ"):
    i = tuple(int(v) for v in np.argwhere(mask)[0]) if mask.ndim else ()
    return f"{what}: at {list(i)} got {a[i]!r} expected {e[i]!r} ({int(np.sum(mask))} of {mask.size})"


@dataclasses.dataclass
class Result:
    """One classified call."""
    index: int
    op: str
    cls: str
    detail: str
    args: list
    kwargs: dict
    grad: bool = False

    def reproducer(self, seed, device):
        head = f"# {self.op}  seed={seed} index={self.index} device={device}: {self.cls}: {self.detail}"
        lines = [head, "import tritorch as torch, tritorch.nn.functional as F", f"device = {device!r}",
                 f"a = {code(self.args)}", f"k = {code(self.kwargs)}",
                 f"out = {OPS_BY_NAME[self.op].expr}"]
        if self.grad:
            lines.append("# then backward of sum(out_i * g_i) over the float outputs, g_i ~ N(0, 1)")
        return "\n".join(lines)


def _in_scale(args, kwargs):
    vals = [np.abs(r.values[np.isfinite(r.values)]) for r in recipes([args, kwargs])
            if r.values.dtype.kind == "f" and r.values.size]
    return max((float(np.max(v, initial=0.0)) for v in vals), default=0.0) * 2


def classify(op, args, kwargs, tri, ref, lib, grad_seed=None):
    """(class, detail) for one call given tritorch's and the oracle's outcomes (PyTorch oracle)."""
    if tri.exc is not None:
        if is_missing(tri.exc, op):
            return ("both_raise" if ref.exc is not None else "missing"), _describe_exc(tri.exc)
        if is_internal(tri.exc):
            return "internal", _describe_exc(tri.exc) + (f" (torch: {_describe_exc(ref.exc)})" if ref.exc else "")
        if ref.exc is not None:
            return "both_raise", _describe_exc(tri.exc)
        return "internal", _describe_exc(tri.exc) + " (torch returns)"
    if ref.exc is not None:
        return "silent_acceptance", f"torch raises {_describe_exc(ref.exc)}"
    try:
        diff = compare(tri.value, ref.value, op.tol, _in_scale(args, kwargs) if op.tol == "red" else 0.0)
    except CallTimeout:
        raise
    except Exception as e:  # noqa: BLE001 - tritorch's result cannot be read back
        return "internal", "reading the result: " + _describe_exc(e)
    if diff:
        return "wrong", diff
    if grad_seed is None:
        return "match", ""
    return _classify_grad(op, args, kwargs, tri, ref, lib, grad_seed)


def _least_precise(args, kwargs):
    """The float dtype of the inputs with the largest tolerance."""
    floats = [r.dtype for r in recipes([args, kwargs]) if r.dtype in TOL]
    return max(floats, key=lambda d: TOL[d], default=None)


def _classify_grad(op, args, kwargs, tri, ref, lib, grad_seed):
    upstream = _upstream(ref.value, TORCH, grad_seed)
    try:
        ref_grads = _backward(ref, TORCH, upstream)
    except Exception:  # noqa: BLE001 - torch cannot differentiate this call: nothing to compare
        return "match", ""
    if ref_grads is None:
        return "match", ""
    try:
        tri_grads = _backward(tri, lib, upstream)
    except CallTimeout:
        raise
    except GradMissing as e:
        return "wrong", f"backward: {e}"
    except Exception as e:  # noqa: BLE001
        return ("missing" if is_missing(e, op) else "internal"), "backward: " + _describe_exc(e)
    if tri_grads is None:
        return "wrong", "backward: no float output requires grad"
    for i, (a, e) in enumerate(zip(tri_grads, ref_grads)):
        try:
            diff = compare_arrays(a, e, "red", _in_scale(args, kwargs), _least_precise(args, kwargs))
        except CallTimeout:
            raise
        except Exception as exc:  # noqa: BLE001
            return "internal", f"backward: reading grad of input {i}: " + _describe_exc(exc)
        if diff:
            return "wrong", f"backward: grad of input {i}: {diff}"
    return "match", ""


def classify_numpy(op, args, kwargs, tri, cpu):
    """(class, detail) against the NumPy float64 reference and tritorch's own cpu result."""
    np_args = [_ref_values(x) for x in args]
    np_kwargs = {key: _ref_values(v) for key, v in kwargs.items()}
    try:
        with np.errstate(all="ignore"):
            expected = np.asarray(op.np(np_args, np_kwargs))
        ref_exc = None
    except Exception as e:  # noqa: BLE001
        expected, ref_exc = None, e
    if ref_exc is not None and tri.exc is None:
        return None, ""  # NumPy cannot judge what torch allows (0-d dims and the like): not counted
    if tri.exc is not None:
        if is_missing(tri.exc, op):
            return "missing", _describe_exc(tri.exc)
        if is_internal(tri.exc) or ref_exc is None:
            return "internal", _describe_exc(tri.exc)
        return "both_raise", _describe_exc(tri.exc)
    try:
        diff = compare(tri.value, expected, op.tol, _in_scale(args, kwargs) if op.tol == "red" else 0.0)
    except CallTimeout:
        raise
    except Exception as e:  # noqa: BLE001
        return "internal", "reading the result: " + _describe_exc(e)
    if diff:
        return "wrong", "vs numpy: " + diff
    if cpu is not None:
        if cpu.exc is not None:
            return "internal", "cpu raises: " + _describe_exc(cpu.exc)
        diff = compare(tri.value, cpu.value, op.tol if op.tol != "exact" else "ew",
                       _in_scale(args, kwargs) if op.tol == "red" else 0.0)
        if diff:
            return "wrong", "vs tritorch cpu: " + diff
    return "match", ""


def _ref_values(x):
    """A recipe's values as the float64 (or bool/int) NumPy array the tensor holds; other args unchanged."""
    if isinstance(x, T):
        v = x.values
        for view in x.views:
            v = {"permute": lambda v, p: np.transpose(v, p),
                 "slice": lambda v, d, a, st: v[(slice(None),) * d + (slice(a, None, st),)],
                 "expand": lambda v, s: np.broadcast_to(v, s)}[view[0]](v, *view[1:])
        return v
    if isinstance(x, list):
        return [_ref_values(v) for v in x]
    return x


def _on_alarm(signum, frame):
    raise CallTimeout()


class Fuzzer:
    """Runs calls ``0..n-1`` of a seed; ``oracle``: ``torch`` or ``numpy``."""

    def __init__(self, device="cpu", seed=0, ops=None, oracle=None, grad_prob=0.3, call_timeout=20.0):
        self.device, self.seed, self.grad_prob, self.call_timeout = device, seed, grad_prob, call_timeout
        self.oracle = oracle or ("torch" if TORCH is not None else "numpy")
        if self.oracle == "torch" and TORCH is None:
            raise RuntimeError("PyTorch is not installed: use the numpy oracle")
        pool = [OPS_BY_NAME[n] for n in ops] if ops else OPS
        self.ops = [op for op in pool if op.np is not None] if self.oracle == "numpy" else pool
        if not self.ops:
            raise ValueError("no op of the selection has a NumPy reference")
        self.lib = tritorch_lib(device)

    def draw(self, index):
        """The op and arguments of call ``index`` (a pure function of seed and index)."""
        rng = np.random.default_rng([self.seed, index])
        op = self.ops[int(rng.integers(len(self.ops)))]
        numpy_mode = self.oracle == "numpy"
        for _ in range(20):
            g = Gen(rng, numpy_mode)
            args, kwargs = op.gen(g)
            if not (numpy_mode and (g.bad or not _numpy_ok(args, kwargs))):
                break
        else:
            return op, None, None, False
        grad = (op.grad and rng.random() < self.grad_prob and self.oracle == "torch"
                and any(r.grad and r.dtype in KINDS["f3264"] for r in recipes([args, kwargs])))
        for r in recipes([args, kwargs]):
            r.requires_grad = grad and r.grad and r.dtype in KINDS["f3264"]
        return op, args, kwargs, grad

    def run_one(self, index):
        op, args, kwargs, grad = self.draw(index)
        if args is None:
            return None
        use_alarm = self.call_timeout and hasattr(signal, "setitimer") and \
            threading.current_thread() is threading.main_thread()
        if use_alarm:
            old = signal.signal(signal.SIGALRM, _on_alarm)
            signal.setitimer(signal.ITIMER_REAL, self.call_timeout)
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                tri = _call(op, args, kwargs, self.lib)
                if self.oracle == "torch":
                    ref = _call(op, args, kwargs, TORCH)
                    cls, detail = classify(op, args, kwargs, tri, ref, self.lib,
                                           grad_seed=[self.seed, index, 1] if grad else None)
                else:
                    cpu = _call(op, args, kwargs, tritorch_lib("cpu")) if self.device != "cpu" else None
                    cls, detail = classify_numpy(op, args, kwargs, tri, cpu)
        except CallTimeout:
            cls, detail = "internal", f"call ran past {self.call_timeout} s"
        except Exception as e:  # noqa: BLE001 - judging failed on tritorch's result (e.g. a bad view of storage)
            cls, detail = "internal", "while judging the result: " + _describe_exc(e)
        finally:
            if use_alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old)
        if cls is None:
            return None
        return Result(index, op.name, cls, detail, args, kwargs, grad)

    def run(self, calls, time_budget=None, start=0):
        """Results of calls ``start..start+calls-1``, stopping early when ``time_budget`` seconds are spent."""
        t0 = time.monotonic()
        results = []
        for i in range(start, start + calls):
            if time_budget is not None and time.monotonic() - t0 > time_budget:
                break
            r = self.run_one(i)
            if r is not None:
                results.append(r)
        return results


def _numpy_ok(args, kwargs):
    return all(r.dtype in KINDS["f3264"] or not r.grad for r in recipes([args, kwargs])) and \
        not any(isinstance(v, DT) for v in list(kwargs.values()) + list(args))


def _signature(r):
    """What makes two findings the same discrepancy: op, class and the message without its numbers."""
    detail = re.sub(r"\(torch: .*", "", r.detail)
    detail = re.sub(r"at \[.*", "", detail)
    detail = re.sub(r"[-+]?\d[\d.e+-]*|'[^']*'|\([^)]*\)|\[[^\]]*\]", "#", detail)[:120]
    return r.op, r.cls, detail


def distinct(results, classes=FAILING):
    """One representative (the smallest reproducer) per distinct discrepancy."""
    groups = collections.OrderedDict()
    for r in results:
        if r.cls in classes:
            groups.setdefault(_signature(r), []).append(r)
    return [(min(rs, key=lambda r: len(code(r.args)) + len(code(r.kwargs))), len(rs)) for rs in groups.values()]


def report(results, seed, device, verbose=False, out=sys.stdout):
    counts = collections.Counter(r.cls for r in results)
    print(f"device={device} seed={seed} calls={len(results)}  " +
          "  ".join(f"{c}={counts.get(c, 0)}" for c in CLASSES), file=out)
    if verbose:
        for r in results:
            print(f"[{r.index}] {r.op}: {r.cls} {r.detail}", file=out)
    findings = distinct(results)
    if findings:
        print(f"\n{len(findings)} distinct discrepancies:\n", file=out)
        for r, n in findings:
            print(r.reproducer(seed, device) + f"\n# ({n} call{'s' * (n > 1)} like this)\n", file=out)
    return counts


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m tests.fuzz", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--calls", type=int, default=500)
    p.add_argument("--time", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--ops", default=None, help="comma-separated op names (see OPS)")
    p.add_argument("--oracle", choices=("torch", "numpy"), default=None)
    p.add_argument("--index", type=int, default=None, help="run only this call, printing its reproducer")
    p.add_argument("--missing", action="store_true", help="also list the missing ops/arguments")
    p.add_argument("--verbose", action="store_true")
    ns = p.parse_args(argv)
    ops = ns.ops.split(",") if ns.ops else None
    fz = Fuzzer(ns.device, ns.seed, ops, ns.oracle)
    if ns.index is not None:
        r = fz.run_one(ns.index)
        print(r.reproducer(ns.seed, ns.device) if r else "no call (no NumPy-judgeable arguments drawn)")
        return 0
    t0 = time.monotonic()
    results = fz.run(ns.calls, ns.time)
    report(results, ns.seed, ns.device, ns.verbose)
    if ns.missing:
        print("missing:")
        for r, n in distinct(results, ("missing",)):
            print(f"  {r.op}: {r.detail}  ({n})")
    print(f"# {time.monotonic() - t0:.1f} s, oracle={fz.oracle}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
