"""Test helpers: float64 oracles, tolerances per dtype, random inputs in any layout."""
import numpy as np

import tritorch
from tritorch import profiler

# (rtol, atol) for comparing an op's result in a dtype with a float64 reference
TOL = {
    tritorch.float64: (1e-10, 1e-12),
    tritorch.float32: (2e-5, 1e-6),
    tritorch.float16: (2e-3, 1e-3),
    tritorch.bfloat16: (1.6e-2, 1e-2),
}


def to_np(t):
    """A tensor's values as a float64 (or original integer/bool) NumPy array."""
    a = np.asarray(t.detach().cpu().numpy())
    return a.astype(np.float64) if t.dtype.is_floating_point else a


def assert_close(actual, expected, dtype=None, rtol=None, atol=None, msg=""):
    """Compare a tensor with a reference (tensor or array); integers and bools exactly."""
    a = to_np(actual) if isinstance(actual, tritorch.Tensor) else np.asarray(actual)
    e = to_np(expected) if isinstance(expected, tritorch.Tensor) else np.asarray(expected)
    dt = dtype or (actual.dtype if isinstance(actual, tritorch.Tensor) else tritorch.float64)
    assert a.shape == e.shape, f"{msg} shape {a.shape} != {e.shape}"
    if not dt.is_floating_point:
        np.testing.assert_array_equal(a, e, err_msg=msg)
        return
    r, t = TOL[dt]
    np.testing.assert_allclose(a, e.astype(np.float64), rtol=rtol if rtol is not None else r,
                               atol=atol if atol is not None else t, equal_nan=True, err_msg=msg)


def make(shape, dtype=tritorch.float32, device="cpu", layout="contiguous", low=-2.0, high=2.0, seed=0,
         requires_grad=False):
    """A random tensor and its float64 NumPy copy. ``layout``: contiguous, transposed (a permuted view),
    strided (a slice with a step) or broadcast (an expanded size-1 dim)."""
    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    if layout == "transposed" and len(shape) >= 2:
        base_shape = shape[::-1]
    elif layout == "strided" and len(shape) >= 1:
        base_shape = shape[:-1] + (shape[-1] * 2,)
    else:
        base_shape = shape
    if dtype.is_floating_point:
        base = rng.uniform(low, high, size=base_shape)
    elif dtype is tritorch.bool:
        base = rng.integers(0, 2, size=base_shape).astype(bool)
    else:
        lo = 0 if dtype is tritorch.uint8 else -50
        base = rng.integers(lo, 50, size=base_shape)
    t = tritorch.tensor(base, dtype=dtype, device=device)
    if layout == "transposed" and len(shape) >= 2:
        t = t.permute(*reversed(range(len(shape))))
    elif layout == "strided" and len(shape) >= 1:
        t = t[..., ::2]
    ref = to_np(t)
    if requires_grad:
        t.requires_grad_(True)
    return t, ref


def compiled_equals_eager(m, c, x, rtol=1e-5, atol=1e-6, grad_rtol=1e-5, grad_atol=1e-6):
    """Module ``m`` eagerly, then its compiled ``c`` twice (the capture, a replay) on x, each followed by
    ``(y * y).sum().backward()``: the outputs and every parameter's gradient equal eager's. Returns the profile
    (``tritorch.profiler``) of the last backward."""
    out, grads = [], []
    for fn in (m, c, c):
        m.zero_grad()
        y = fn(x)
        with profiler.profile() as prof:
            (y * y).sum().backward()
        out.append(to_np(y))
        grads.append([to_np(p.grad) for p in m.parameters()])
    for i in (1, 2):
        np.testing.assert_allclose(out[i], out[0], rtol=rtol, atol=atol)
        for a, b in zip(grads[i], grads[0]):
            np.testing.assert_allclose(a, b, rtol=grad_rtol, atol=grad_atol)
    return prof


def pass_ops(graph_pass, fn, *xs):
    """The ops of ``fn``'s graph traced on ``xs`` after ``graph_pass`` (a ``tritorch.compile`` pass), in order."""
    return [n.op for n in graph_pass(tritorch.jit.trace(fn, xs, check_trace=False).graph).nodes]
