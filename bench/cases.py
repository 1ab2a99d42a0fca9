"""The benchmark cases, written once against the torch-shaped API so the same builder runs on ``tritorch`` and on
``torch`` (``import tritorch as torch``): each builder makes its inputs on a device and returns the timed call.

A case whose op does not exist yet in a library raises ``Missing`` when built, so runners report it and go on.
"""
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Case", "Missing", "CASES", "HOST_COST", "get_case", "make_input", "resolve"]


class Missing(Exception):
    """The library has no such op (yet)."""


def resolve(lib, *names):
    """The first of ``lib.a.b`` paths that exists, e.g. ``resolve(lib, "softmax", "nn.functional.softmax")``."""
    for name in names:
        obj = lib
        try:
            for part in name.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        return obj
    raise Missing(f"{getattr(lib, '__name__', lib)} has none of: {', '.join(names)}")


def make_input(lib, shape, dtype, device, seed=0, scale=1.0):
    """A random standard-normal tensor of ``lib`` (float32 drawn by NumPy, then cast on the device)."""
    rng = np.random.default_rng(seed)
    arr = rng.standard_normal(shape, dtype=np.float32)
    if scale != 1.0:
        arr *= scale
    t = lib.from_numpy(arr)
    return t.to(device=device, dtype=getattr(lib, dtype))


@dataclass
class Case:
    """One timed call: ``build(lib, device, shape) -> fn``; ``bytes``/``flops`` give the speed of one call."""
    name: str
    family: str
    shape: tuple
    small: tuple                  # the same case, tiny: for smoke runs and tests
    cpu: tuple                    # the size the cpu-device benchmarks (pytest-benchmark) use
    dtype: str
    build: object
    bytes: object = None          # shape -> bytes moved by one call (reads + writes), or None
    flops: object = None          # shape -> floating-point operations of one call, or None
    ceiling: str = "copy"         # which measured ceiling of GPU.md the speed is compared with
    tol: float = 1e-3             # relative tolerance of the check against the baseline
    extra: dict = field(default_factory=dict)


def _isz(dtype):
    return {"float32": 4, "float16": 2, "bfloat16": 2}[dtype]


def _binary(op):
    def build(lib, device, shape, dtype):
        f = resolve(lib, op)
        a, b = make_input(lib, shape, dtype, device, 1), make_input(lib, shape, dtype, device, 2)
        return lambda: f(a, b)
    return build


def _unary(op):
    def build(lib, device, shape, dtype):
        f = resolve(lib, op)
        a = make_input(lib, shape, dtype, device, 1)
        return lambda: f(a)
    return build


def _row_sum(lib, device, shape, dtype):
    f = resolve(lib, "sum")
    a = make_input(lib, shape, dtype, device, 1)
    return lambda: f(a, dim=1)


def _softmax(lib, device, shape, dtype):
    f = resolve(lib, "softmax", "nn.functional.softmax")
    a = make_input(lib, shape, dtype, device, 1)
    return lambda: f(a, dim=-1)


def _matmul(lib, device, shape, dtype):
    f = resolve(lib, "matmul")
    m, k, n = shape
    a = make_input(lib, (m, k), dtype, device, 1, scale=0.1)
    b = make_input(lib, (k, n), dtype, device, 2, scale=0.1)
    return lambda: f(a, b)


def _numel(shape):
    return int(np.prod(shape))


CASES = [
    Case("add fp32 2^26", "elementwise", (1 << 26,), (1000,), (1 << 20,), "float32", _binary("add"),
         bytes=lambda s: 3 * _numel(s) * 4),
    Case("mul fp32 2^26", "elementwise", (1 << 26,), (1000,), (1 << 20,), "float32", _binary("mul"),
         bytes=lambda s: 3 * _numel(s) * 4),
    Case("exp fp32 2^26", "elementwise", (1 << 26,), (1000,), (1 << 20,), "float32", _unary("exp"),
         bytes=lambda s: 2 * _numel(s) * 4),
    Case("row sum fp32 16384x4096", "reduce", (16384, 4096), (37, 300), (1024, 1024), "float32", _row_sum,
         bytes=lambda s: _numel(s) * 4 + s[0] * 4, tol=1e-4),
    Case("softmax fp16 8192x8192", "softmax", (8192, 8192), (33, 200), (512, 1024), "float16", _softmax,
         bytes=lambda s: 2 * _numel(s) * 2, tol=1e-2),
    Case("matmul bf16 4096^3", "matmul", (4096, 4096, 4096), (64, 48, 80), (128, 128, 128), "bfloat16", _matmul,
         bytes=lambda s: 2 * (s[0] * s[1] + s[1] * s[2] + s[0] * s[2]), flops=lambda s: 2 * s[0] * s[1] * s[2],
         ceiling="bf16_matmul", tol=2e-2),
    Case("matmul tf32 4096^3", "matmul", (4096, 4096, 4096), (64, 48, 80), (256, 256, 256), "float32", _matmul,
         bytes=lambda s: 4 * (s[0] * s[1] + s[1] * s[2] + s[0] * s[2]), flops=lambda s: 2 * s[0] * s[1] * s[2],
         ceiling="tf32_matmul", tol=1e-2),
]

# the host cost of one small op: launch-bound, timed on the host clock
HOST_COST = Case("add fp32 1000 (host cost)", "host", (1000,), (1000,), (1000,), "float32", _binary("add"), ceiling="")


def get_case(name):
    for c in CASES + [HOST_COST]:
        if c.name == name:
            return c
    raise KeyError(name)
