"""Reductions against float64 NumPy: every op over each dim, several dims and all dims, keepdim, non-contiguous
inputs, size-0 and 0-d inputs, dtypes, NaN/inf/tie rules, PyTorch's errors, backward (analytic or finite
differences), double backward, and both Triton kernels with forced small blocks."""
import math
import warnings

import numpy as np
import pytest

import tritorch
from tritorch.autograd.gradcheck import gradcheck
from tritorch.kernels import reduce as R
from helpers import assert_close, make, to_np

warnings.filterwarnings("ignore", category=RuntimeWarning)

DIMS = {  # shape -> dim arguments to try
    (3, 37): [0, 1, -1, None, (0, 1)],
    (5, 1, 7): [0, 1, 2, (0, 2), (1, 2), None],
}
LAYOUTS = ["contiguous", "transposed", "strided"]


def t64(a, device):
    return tritorch.tensor(np.asarray(a, dtype=np.float64), device=device)


def _axes(shape, dim):
    if dim is None:
        return tuple(range(len(shape)))
    dims = (dim,) if isinstance(dim, int) else dim
    return tuple(sorted(d % len(shape) for d in dims))


def np_logsumexp(a, axis, keepdims):
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isinf(m), 0, m)
    out = np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def np_norm(a, p, axis, keepdims):
    a = np.abs(a)
    if p == math.inf:
        return np.max(a, axis=axis, keepdims=keepdims)
    if p == -math.inf:
        return np.min(a, axis=axis, keepdims=keepdims)
    if p == 0:
        return np.sum(a != 0, axis=axis, keepdims=keepdims).astype(np.float64)
    return np.sum(a ** p, axis=axis, keepdims=keepdims) ** (1.0 / p)


# name -> (tritorch call, numpy reference, value range)
OPS = {
    "sum": (lambda x, d, k: x.sum(d, keepdim=k), lambda a, ax, k: np.sum(a, axis=ax, keepdims=k), (-2, 2)),
    "mean": (lambda x, d, k: x.mean(d, keepdim=k), lambda a, ax, k: np.mean(a, axis=ax, keepdims=k), (-2, 2)),
    "prod": (lambda x, d, k: tritorch.prod(x, d, keepdim=k) if isinstance(d, int) else x.prod(),
             lambda a, ax, k: np.prod(a, axis=ax, keepdims=k and len(ax) == 1), (0.6, 1.4)),
    "amax": (lambda x, d, k: x.amax(d if d is not None else (), keepdim=k),
             lambda a, ax, k: np.max(a, axis=ax, keepdims=k), (-2, 2)),
    "amin": (lambda x, d, k: tritorch.amin(x, d if d is not None else (), k),
             lambda a, ax, k: np.min(a, axis=ax, keepdims=k), (-2, 2)),
    "var": (lambda x, d, k: x.var(d, keepdim=k), lambda a, ax, k: np.var(a, axis=ax, keepdims=k, ddof=1), (-2, 2)),
    "std0": (lambda x, d, k: x.std(d, keepdim=k, correction=0),
             lambda a, ax, k: np.std(a, axis=ax, keepdims=k), (-2, 2)),
    "logsumexp": (lambda x, d, k: x.logsumexp(d if d is not None else (), keepdim=k),
                  lambda a, ax, k: np_logsumexp(a, ax, k), (-3, 3)),
    "norm2": (lambda x, d, k: x.norm(dim=d, keepdim=k), lambda a, ax, k: np_norm(a, 2, ax, k), (-2, 2)),
    "norm1": (lambda x, d, k: x.norm(1, d, k), lambda a, ax, k: np_norm(a, 1, ax, k), (-2, 2)),
    "norm_inf": (lambda x, d, k: x.norm(math.inf, d, k), lambda a, ax, k: np_norm(a, math.inf, ax, k), (-2, 2)),
    "norm_3": (lambda x, d, k: tritorch.norm(x, 3, d, k), lambda a, ax, k: np_norm(a, 3, ax, k), (-2, 2)),
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("op", list(OPS))
def test_reduce_dims_layouts(op, layout, device):
    fn, ref, (lo, hi) = OPS[op]
    for shape, dims in DIMS.items():
        x, a = make(shape, tritorch.float32, device, layout, low=lo, high=hi)
        for i, dim in enumerate(dims):
            if op == "prod" and not (dim is None or isinstance(dim, int)):
                continue
            keepdim = bool(i % 2) and dim is not None
            out = fn(x, dim, keepdim)
            assert_close(out, ref(a, _axes(shape, dim), keepdim), msg=f"{op} {shape} dim={dim} {layout}")


def test_float64_and_float16(device):
    x, a = make((4, 9), tritorch.float64, device, "transposed")
    assert_close(x.sum(1), a.sum(1))
    assert_close(x.var(0), a.var(0, ddof=1))
    assert_close(x.norm(3, 1), np_norm(a, 3, 1, False))
    assert_close(x.logsumexp(0), np_logsumexp(a, 0, False))
    h, ah = make((4, 9), tritorch.float16, device)
    for out, ref in ((h.sum(0), ah.sum(0)), (h.mean(1), ah.mean(1)), (h.amax(1), ah.max(1)),
                     (h.std(1), ah.std(1, ddof=1))):
        assert out.dtype is tritorch.float16
        assert_close(out, ref)
    # accumulation runs in float32: 4096 ones sum exactly (a float16 accumulator stops at 2048)
    ones = tritorch.ones(4096, dtype=tritorch.float16, device=device)
    assert ones.sum().item() == 4096.0
    assert ones.mean().item() == 1.0


def test_integer_and_bool(device):
    x, a = make((6, 5), tritorch.int64, device, "transposed")
    s = x.sum(0)
    assert s.dtype is tritorch.int64
    assert_close(s, a.sum(0))
    assert_close(x.prod(1), np.prod(a, 1))
    assert_close(x.amax(0), a.max(0))
    assert_close(x.max(1).values, a.max(1))
    assert_close(x.min(1).indices, a.argmin(1))
    assert_close(x.argmax(), np.argmax(a))
    i32 = tritorch.tensor([[1, 2], [3, 4]], dtype=tritorch.int32, device=device)
    assert i32.sum().dtype is tritorch.int64 and i32.sum().item() == 10
    assert i32.max().dtype is tritorch.int32 and i32.max().item() == 4
    b = tritorch.tensor([[True, False, True], [True, True, True]], device=device)
    assert b.sum().dtype is tritorch.int64 and b.sum().item() == 5
    assert_close(b.sum(1), [2, 3])
    assert_close(b.all(1), [False, True])
    assert_close(b.any(0), [True, True, True])
    assert b.all().dtype is tritorch.bool and not b.all().item()
    assert b.amax().item() is True and b.min().item() is False
    assert_close(b.prod(1), [0, 1])
    f = tritorch.tensor([[0.0, 0.5], [float("nan"), 0.0]], device=device)
    assert_close(f.any(1), [True, True])
    assert_close(f.all(0), [False, False])
    u = tritorch.tensor([0, 3], dtype=tritorch.uint8, device=device)
    assert u.any().dtype is tritorch.uint8 and u.any().item() == 1
    assert_close(x.sum(dtype=tritorch.float32), a.sum(), dtype=tritorch.float32)
    assert x.mean(dtype=tritorch.float64).dtype is tritorch.float64


def test_errors(device):
    i = tritorch.tensor([1, 2, 3], device=device)
    with pytest.raises(RuntimeError, match=r"mean\(\): could not infer output dtype. Input dtype must be either a "
                                           r"floating point or complex dtype. Got: Long"):
        i.mean()
    with pytest.raises(RuntimeError, match="std and var only support floating point and complex dtypes"):
        i.var()
    with pytest.raises(RuntimeError, match="linalg.vector_norm: Expected a floating point or complex tensor as "
                                           "input. Got Long"):
        i.norm()
    x = tritorch.zeros(2, 3, device=device)
    with pytest.raises(IndexError, match=r"Dimension out of range \(expected to be in range of \[-2, 1\], but "
                                         r"got 2\)"):
        x.sum(2)
    with pytest.raises(RuntimeError, match="dim 1 appears multiple times in the list of dims"):
        x.sum((1, -1))
    with pytest.raises(RuntimeError, match="Only one of \"unbiased\" or \"correction\" must be specified"):
        x.var(0, unbiased=True, correction=0)
    with pytest.raises(RuntimeError, match="argmax_.*not implemented for 'Bool'"):
        (x > 0).argmax()


def test_size_zero(device):
    e = tritorch.zeros(0, 3, device=device)
    assert_close(e.sum(), np.float64(0))
    assert_close(e.sum(0), np.zeros(3))
    assert e.sum(1).shape == (0,)
    assert_close(e.prod(0), np.ones(3))
    assert np.isnan(e.mean().item())
    assert_close(e.all(0), [True] * 3)
    assert_close(e.any(0), [False] * 3)
    assert_close(e.norm(dim=0), np.zeros(3))
    assert_close(e.logsumexp(0), [-np.inf] * 3)
    with pytest.raises(IndexError, match=r"max\(\): Expected reduction dim 0 to have non-zero size."):
        e.max(0)
    with pytest.raises(IndexError, match=r"amin\(\): Expected reduction dim 0 to have non-zero size."):
        e.amin((0, 1))
    with pytest.raises(IndexError, match=r"argmax\(\): Expected reduction dim 0 to have non-zero size."):
        e.argmax(0)
    with pytest.raises(RuntimeError, match=r"max\(\): Expected reduction dim to be specified for input.numel\(\) "
                                           r"== 0. Specify the reduction dim with the 'dim' argument."):
        e.max()
    with pytest.raises(RuntimeError, match=r"argmin\(\): Expected reduction dim to be specified"):
        e.argmin()
    v, i = e.max(1)                             # reducing a non-empty dim of an empty tensor is fine
    assert v.shape == (0,) and i.shape == (0,) and i.dtype is tritorch.int64
    assert e.amax(1, keepdim=True).shape == (0, 1)


def test_zero_dim(device):
    x = tritorch.tensor(2.5, device=device)
    for out in (x.sum(), x.sum(0), x.mean(-1), x.amax(), x.max(), x.prod(0), x.logsumexp(0), x.norm()):
        assert out.shape == () and out.item() == 2.5
    v, i = x.max(0, keepdim=True)
    assert v.shape == () and v.item() == 2.5 and i.item() == 0
    assert x.argmax().item() == 0 and x.argmin(0, keepdim=True).shape == ()
    assert x.all().item() and x.any(0).item()
    assert math.isnan(x.var().item()) and x.var(correction=0).item() == 0.0
    with pytest.raises(IndexError, match="Dimension out of range"):
        x.sum(1)


def test_keepdim_shapes(device):
    x, a = make((2, 3, 4), tritorch.float32, device)
    assert x.sum((0, 2), keepdim=True).shape == (1, 3, 1)
    assert x.amax(-1, keepdim=True).shape == (2, 3, 1)
    assert x.argmax(keepdim=True).shape == (1, 1, 1)
    assert x.argmax(1, keepdim=True).shape == (2, 1, 4)
    assert x.max(1, keepdim=True).indices.shape == (2, 1, 4)
    assert x.var(keepdim=True).shape == (1, 1, 1)
    assert_close(x.sum([]), a.sum())                  # an empty dim list reduces everything, as in PyTorch


def test_max_min_forms(device):
    x, a = make((4, 7), tritorch.float32, device, "strided")
    res = x.max(1)
    values, indices = res
    assert_close(values, a.max(1))
    assert_close(indices, a.argmax(1))
    assert res.values is values and res.indices is indices and res[0] is values
    assert "return_types.max(" in repr(res) and "indices=" in repr(res)
    m = tritorch.min(x, dim=0, keepdim=True)
    assert_close(m.values, a.min(0, keepdims=True))
    assert_close(m.indices, a.argmin(0)[None])
    assert_close(tritorch.max(x), a.max())
    y, b = make((7,), tritorch.float32, device, seed=3)
    assert_close(tritorch.max(x, y), np.maximum(a, b))
    assert_close(x.min(y), np.minimum(a, b))
    assert_close(x.argmin(), np.argmin(a))
    assert_close(tritorch.argmax(x, 0), a.argmax(0))


def test_ties_and_nan(device):
    t = tritorch.tensor([[1.0, 3.0, 3.0, 2.0], [5.0, 5.0, 5.0, 5.0], [0.0, -1.0, -1.0, 0.0]], device=device)
    assert t.argmax(1).tolist() == [1, 0, 0]
    assert t.argmin(1).tolist() == [0, 0, 1]
    assert t.argmax(0).tolist() == [1, 1, 1, 1]
    assert t.max(1).indices.tolist() == [1, 0, 0]
    assert t.argmax().item() == 4
    nan = float("nan")
    n = tritorch.tensor([[1.0, nan, 3.0, nan], [2.0, 1.0, 0.0, -1.0]], device=device)
    assert n.argmax(1).tolist() == [1, 0] and n.argmin(1).tolist() == [1, 3]
    assert n.argmax().item() == 1
    assert math.isnan(n.max().item()) and math.isnan(n.min().item())
    mx = n.max(1)
    assert math.isnan(mx.values[0].item()) and mx.indices.tolist() == [1, 0]
    assert np.isnan(to_np(n.amax(0))).tolist() == [False, True, False, True]
    assert np.isnan(to_np(n.sum(1))).tolist() == [True, False]
    inf = float("inf")
    ti = tritorch.tensor([[-inf, -inf], [inf, 1.0], [inf, -inf], [-inf, 0.0]], device=device)
    assert to_np(ti.logsumexp(1)).tolist() == [-inf, inf, inf, 0.0]
    assert ti.argmax(1).tolist() == [0, 0, 0, 1] and ti.argmin(1).tolist() == [0, 1, 1, 0]
    big = t64([[1000.0, 1000.0], [-1000.0, -1001.0]], device)
    assert_close(big.logsumexp(1), [1000 + math.log(2), -1000 + math.log1p(math.exp(-1))])


def test_var_std_variants(device):
    x, a = make((5, 6), tritorch.float32, device)
    assert_close(x.var(1, unbiased=False), a.var(1))
    assert_close(x.var(False), a.var())
    assert_close(tritorch.var(x, 0, True, True), a.var(0, ddof=1, keepdims=True))
    assert_close(x.std(0, correction=2), a.std(0, ddof=2))
    v, m = tritorch.var_mean(x, 1)
    assert_close(v, a.var(1, ddof=1))
    assert_close(m, a.mean(1))
    s, m = tritorch.std_mean(x, (0, 1), correction=0)
    assert_close(s, a.std())
    assert_close(m, a.mean())
    # two-pass variance keeps its precision with a large offset (one-pass E[x^2] - E[x]^2 would lose it all)
    off = make((64,), tritorch.float32, device)[0] + 1e4
    ref = to_np(off).astype(np.float64).var(ddof=1)
    assert_close(off.var(), ref, dtype=tritorch.float32, rtol=1e-3)


def test_norm_variants(device):
    x, a = make((3, 8), tritorch.float32, device, "transposed")
    assert_close(x.norm(), np.sqrt((a ** 2).sum()))
    assert_close(x.norm("fro", (0, 1)), np.sqrt((a ** 2).sum()))
    assert_close(x.norm(-math.inf, 1), np.abs(a).min(1))
    assert_close(x.norm(0.5, 0), np_norm(a, 0.5, 0, False), rtol=1e-4)
    assert_close(x.norm(-1.5, 1, keepdim=True), np_norm(a, -1.5, 1, True), rtol=1e-4)
    z = tritorch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 0.0]], device=device)
    assert_close(z.norm(0, 1), [1.0, 0.0])
    assert_close(z.norm(-1, 1), [0.0, 0.0])
    with pytest.raises(NotImplementedError, match="nuc"):
        x.norm("nuc")


def test_sum_to_size(device):
    x, a = make((2, 3, 4), tritorch.float32, device)
    assert_close(x.sum_to_size(3, 1), a.sum(axis=(0, 2)).reshape(3, 1))
    assert_close(x.sum_to_size((1, 3, 4)), a.sum(0, keepdims=True))
    assert x.sum_to_size(2, 3, 4) is x
    with pytest.raises(RuntimeError, match=r"size \{\[5\]\} is not expandable to size \{\[2, 3, 4\]\}."):
        x.sum_to_size(5)


# ---- backward ------------------------------------------------------------------------------------------------------

def numgrad(f, a, eps=1e-6):
    """Central differences of the scalar f(a) (float64 NumPy)."""
    g = np.zeros_like(a)
    it = np.nditer(a, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        ap, am = a.copy(), a.copy()
        ap[i] += eps
        am[i] -= eps
        g[i] = (f(ap) - f(am)) / (2 * eps)
    return g


GRAD_CASES = [  # (name, tritorch fn, numpy fn of the same smooth function)
    ("sum", lambda x: x.sum(0), lambda a: a.sum(0)),
    ("mean", lambda x: x.mean((0, 2), keepdim=True), lambda a: a.mean((0, 2), keepdims=True)),
    ("prod", lambda x: x.prod(1), lambda a: a.prod(1)),
    ("prod_all", lambda x: x.prod(), lambda a: a.prod()),
    ("var", lambda x: x.var(1), lambda a: a.var(1, ddof=1)),
    ("std", lambda x: x.std((0, 1), keepdim=True), lambda a: a.std((0, 1), ddof=1, keepdims=True)),
    ("logsumexp", lambda x: x.logsumexp(2), lambda a: np_logsumexp(a, 2, False)),
    ("norm2", lambda x: x.norm(dim=1), lambda a: np_norm(a, 2, 1, False)),
    ("norm1", lambda x: x.norm(1), lambda a: np_norm(a, 1, None, False)),
    ("norm3", lambda x: x.norm(3, 2), lambda a: np_norm(a, 3, 2, False)),
    ("norm1.5", lambda x: x.norm(1.5, 0, True), lambda a: np_norm(a, 1.5, 0, True)),
    ("norm0.5", lambda x: x.norm(0.5, 2), lambda a: np_norm(a, 0.5, 2, False)),
]


@pytest.mark.parametrize("name,fn,ref", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_backward_finite_differences(name, fn, ref, device):
    x, a = make((3, 4, 5), tritorch.float64, device, "transposed", low=0.3 if "prod" in name else -2, high=1.7,
                seed=7, requires_grad=True)
    out = fn(x)
    w = np.random.default_rng(1).uniform(-1, 1, size=out.shape)
    (out * t64(w, device)).sum().backward()
    expect = numgrad(lambda b: float(np.sum(ref(b) * w)), a)
    assert_close(x.grad, expect, dtype=tritorch.float64, rtol=1e-6, atol=1e-7, msg=name)


def test_backward_prod_zeros(device):
    a = np.array([[2.0, 0.0, 3.0, 4.0], [0.0, 5.0, 0.0, 1.0], [1.0, 2.0, 3.0, 0.5]])
    x = t64(a, device).requires_grad_()
    x.prod(1).sum().backward()
    expect = np.array([[0.0, 24.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [3.0, 1.5, 1.0, 6.0]])
    assert_close(x.grad, expect, dtype=tritorch.float64)
    y = t64([[2.0, 0.0], [3.0, 4.0]], device).requires_grad_()
    y.prod().backward()
    assert_close(y.grad, [[0.0, 24.0], [0.0, 0.0]], dtype=tritorch.float64)


def test_backward_max_min(device):
    a = np.array([[1.0, 3.0, 3.0, 2.0], [4.0, 0.0, -1.0, 4.0], [0.5, 0.2, 0.1, 0.0]])
    x = t64(a, device).requires_grad_()
    v, _ = x.max(1)
    (v * t64([1.0, 2.0, 3.0], device)).sum().backward()
    assert_close(x.grad, [[0, 1, 0, 0], [2, 0, 0, 0], [3, 0, 0, 0]], dtype=tritorch.float64)   # to the index
    x.grad = None
    x.min(0, keepdim=True).values.sum().backward()
    assert_close(x.grad, [[0, 0, 0, 0], [0, 1, 1, 0], [1, 0, 0, 1]], dtype=tritorch.float64)
    x.grad = None
    x.amax(1).sum().backward()                                       # ties share the gradient evenly
    assert_close(x.grad, [[0, 0.5, 0.5, 0], [0.5, 0, 0, 0.5], [1, 0, 0, 0]], dtype=tritorch.float64)
    x.grad = None
    x.max().backward()
    assert_close(x.grad, [[0, 0, 0, 0], [0.5, 0, 0, 0.5], [0, 0, 0, 0]], dtype=tritorch.float64)
    x.grad = None
    x.amin((0, 1)).backward()
    assert_close(x.grad, (a == -1.0).astype(float), dtype=tritorch.float64)
    x.grad = None
    x.norm(math.inf).backward()
    assert_close(x.grad, [[0, 0, 0, 0], [0.5, 0, 0, 0.5], [0, 0, 0, 0]], dtype=tritorch.float64)
    assert v.grad_fn.name() == "MaxBackward0"


def test_backward_norm_at_zero(device):
    x = tritorch.zeros(2, 3, dtype=tritorch.float64, device=device, requires_grad=True)
    x.norm(dim=1).sum().backward()
    assert_close(x.grad, np.zeros((2, 3)), dtype=tritorch.float64)
    x.grad = None
    x.norm(3).backward()
    assert_close(x.grad, np.zeros((2, 3)), dtype=tritorch.float64)


def test_backward_float32_and_half(device):
    x, a = make((5, 7), tritorch.float32, device, "transposed", requires_grad=True)
    x.mean(0).sum().backward()
    assert_close(x.grad, np.full((5, 7), 1 / 5))
    h, ah = make((4, 6), tritorch.float16, device, requires_grad=True)
    h.var(1).sum().backward()
    assert h.grad.dtype is tritorch.float16
    assert_close(h.grad, 2 * (ah - ah.mean(1, keepdims=True)) / 5)


@pytest.mark.parametrize("name", ["sum", "mean", "max", "amax", "var", "std", "logsumexp", "norm2"])
def test_double_backward(name, device):
    fns = {"sum": lambda x: (x.sum(1) ** 2).sum(), "mean": lambda x: (x.mean(0) ** 3).sum(),
           "max": lambda x: (x.max(1).values ** 2).sum(), "amax": lambda x: (x.amax(0) ** 2).sum(),
           "var": lambda x: (x.var(1) ** 2).sum(), "std": lambda x: x.std(0).sum(),
           "logsumexp": lambda x: x.logsumexp(1).sum(), "norm2": lambda x: x.norm(dim=0).sum()}
    refs = {"sum": lambda a: (a.sum(1) ** 2).sum(), "mean": lambda a: (a.mean(0) ** 3).sum(),
            "max": lambda a: (a.max(1) ** 2).sum(), "amax": lambda a: (a.max(0) ** 2).sum(),
            "var": lambda a: (a.var(1, ddof=1) ** 2).sum(), "std": lambda a: a.std(0, ddof=1).sum(),
            "logsumexp": lambda a: np_logsumexp(a, 1, False).sum(), "norm2": lambda a: np.sqrt((a * a).sum(0)).sum()}
    x, a = make((3, 4), tritorch.float64, device, seed=5, requires_grad=True)
    (g,) = tritorch.autograd.grad(fns[name](x), x, create_graph=True)
    w = np.random.default_rng(2).uniform(-1, 1, size=(3, 4))
    (g * t64(w, device)).sum().backward()

    def dir_deriv(b):                                       # <grad f(b), w>
        return float((numgrad(refs[name], b, 1e-5) * w).sum())
    expect = numgrad(dir_deriv, a, 1e-4)
    assert_close(x.grad, expect, dtype=tritorch.float64, rtol=2e-4, atol=2e-5, msg=name)


# ---- the two Triton kernels and the layout planner -------------------------------------------------------------

def test_plan_picks_kernel():
    x = tritorch.zeros(6, 10)
    assert R._plan(x, (1,), False)[0] == "row"
    assert R._plan(x, (0,), False)[:4] == ("mid", 1, 6, 10)          # dim 0 of a row-major matrix: no copy
    assert R._plan(x.t(), (1,), False)[:4] == ("mid", 1, 6, 10)      # the same memory seen transposed
    assert R._plan(x.t(), (0,), False)[0] == "row"
    y = tritorch.zeros(3, 4, 5)
    assert R._plan(y, (1,), False)[:4] == ("mid", 3, 4, 5)
    assert R._plan(y, (1, 2), False)[:3] == ("row", 3, 20)           # adjacent dims merge
    assert R._plan(y, (0, 2), False) is None                          # scattered dims: gathered by a copy
    assert R._plan(y[:, :, ::2], (2,), False) == ("row", 12, 3, 5, 2, 1)
    assert R._plan(y.permute(2, 0, 1), (0, 1), True) is None           # a flat index needs the logical order


@pytest.mark.parametrize("row,mid", [((2, 4), (4, 2)), ((1, 16), (8, 1)), ((4, 1), (1, 4))])
def test_forced_blocks(row, mid):
    """Small blocks: several programs, several chunks of the reduced axis, partial blocks at both edges."""
    dev = "cuda"
    x, a = make((5, 11), tritorch.float32, dev, seed=4)
    y, b = make((3, 9, 5), tritorch.float32, dev, "transposed", seed=6)
    b2 = np.array(b)
    with R.force_blocks(row=row, mid=mid):
        for t, arr, dim in ((x, a, 1), (x, a, 0), (y, b2, 1), (y, b2, 0), (y, b2, (0, 2))):
            ax = _axes(arr.shape, dim)
            assert_close(t.sum(dim), arr.sum(ax), msg=f"sum {dim}")
            assert_close(t.var(dim), arr.var(ax, ddof=1), msg=f"var {dim}")
            assert_close(t.logsumexp(dim), np_logsumexp(arr, ax, False), msg=f"lse {dim}")
            assert_close(t.amin(dim), arr.min(ax), msg=f"amin {dim}")
            if isinstance(dim, int):
                assert_close(t.prod(dim), arr.prod(dim), msg=f"prod {dim}")
                assert_close(t.argmax(dim), arr.argmax(dim), msg=f"argmax {dim}")
        ties = tritorch.tensor(np.tile([1.0, 4.0, 4.0, 2.0, 4.0], (3, 3)), device=dev)
        assert ties.argmax(1).tolist() == [1, 1, 1]
        assert ties.t().argmax(0).tolist() == [1, 1, 1]
        assert ties.argmax().item() == 1


def test_reducing_an_empty_tensor_to_nonempty_output(device):
    e = tritorch.empty((2, 0, 4), device=device)
    assert_close(e.sum(), 0.0)
    assert_close(e.sum((0, 1)), np.zeros(4))
    assert_close(e.prod(1), np.ones((2, 4)))
    assert_close(e.mean(), np.nan)
    assert_close(e.norm(), 0.0)
    assert_close(e.logsumexp((0, 1, 2)), -np.inf)


def test_all_any_empty_dim_list_reduce_nothing(device):
    """Issue 14: all/any over dim=[] or () reduce no dim (PyTorch); sum/mean/amax over [] still reduce them all."""
    a = np.array([[1.0, 0.0, -2.0], [0.0, 0.0, 3.0]])
    x = tritorch.tensor(a, device=device)
    for dim in ([], ()):
        for keepdim in (False, True):
            assert_close(x.all(dim=dim, keepdim=keepdim), a != 0)
            assert_close(tritorch.any(x, dim, keepdim), a != 0)
    u = x.to(tritorch.uint8).all(dim=[])
    assert u.dtype is tritorch.uint8 and u.tolist() == [[1, 0, 1], [0, 0, 1]]
    assert x.all(dim=[0]).tolist() == [False, False, True]
    assert tritorch.zeros(0, 3, device=device).any(dim=()).shape == (0, 3)
    assert_close(x.sum(dim=[]), a.sum())
    assert_close(x.mean(dim=()), a.mean())
    assert_close(x.amax(dim=[]), a.max())
    assert_close(x.std(dim=[]), a.std(ddof=1))


EXTREMES = [  # dtype, values, std for correction 0, 1, 2 (PyTorch's, which accumulates in float64 on cpu)
    (tritorch.float32, [1e20, -1e20], [1e20, math.sqrt(2) * 1e20, math.inf]),
    (tritorch.float32, [3e38, -3e38], [3e38, math.inf, math.inf]),
    (tritorch.float32, [1e-44, -1e-44], [9.80908925027372e-45, 1.401298464324817e-44, math.inf]),
    (tritorch.float16, [60000.0, -60000.0], [60000.0, math.inf, math.inf]),
    (tritorch.float16, [30000.0, -30000.0], [30000.0, 42432.0, math.inf]),
    (tritorch.bfloat16, [1e38, -1e38], [9.969209968386869e37, 1.4089816755320108e38, math.inf]),
]


@pytest.mark.parametrize("dtype,values,stds", EXTREMES, ids=lambda v: str(v))
def test_var_std_do_not_overflow(device, dtype, values, stds):
    """Issue 14: the centered squares are summed scaled, so std of float32 [1e20, -1e20] is 1.41e20, not inf."""
    x = tritorch.tensor(values, dtype=dtype, device=device)
    for correction, want in enumerate(stds):
        got = x.std(correction=correction).float().item()
        assert got == want if math.isinf(want) else math.isclose(got, want, rel_tol=1e-2), (correction, got, want)
        v = x.var(correction=correction).float().item()
        with np.errstate(over="ignore"):
            want_v = float(np.array(want * want).astype(dtype.np))      # inf (or 0) where the dtype cannot hold it
        assert v == want_v if math.isinf(want_v) or want_v == 0 else math.isclose(v, want_v, rel_tol=2e-2), \
            (correction, v, want_v)


def test_var_std_scaled_sum_in_the_kernels(device):
    """Scales that grow from chunk to chunk and across the tile (small forced blocks), in rows and in columns."""
    a = np.array([[1.0, 1e-30, 3e19, -2e20, 7.0, 1e20, -5e19], [2.0, -1.0, 0.0, 4.0, 0.5, 1e-3, 8.0]])
    x = tritorch.tensor(a, device=device)
    with R.force_blocks(row=(1, 2), mid=(2, 1)):
        for t, dim in ((x, 1), (x.t(), 0), (x.t().contiguous(), 0)):
            assert_close(t.std(dim), a.std(1, ddof=1), dtype=tritorch.float32)
            assert_close(t.var(dim, correction=0), a.var(1), dtype=tritorch.float32, rtol=1e-5)
        z = tritorch.zeros(2, 5, device=device)
        assert z.std(1).tolist() == [0.0, 0.0] and np.isnan(to_np(z.std(1, correction=5))).all()
    n = tritorch.tensor([[1.0, float("nan")], [1.0, float("inf")], [3e38, 3e38], [1e-44, 1e-44]], device=device)
    s = to_np(n.std(1))
    assert np.isnan(s[0]) and np.isnan(s[1]) and s[2] == 0 and s[3] == 0     # the mean of 3e38s does not overflow


@pytest.mark.parametrize("p", [math.inf, -math.inf, -1, -2.5])
def test_norm_without_identity_of_empty_raises(device, p):
    """Issue 14: the inf and negative norms of an empty slice are errors (no identity), as in PyTorch."""
    name = f"{p:g}"
    with pytest.raises(RuntimeError, match=f"linalg.vector_norm cannot compute the {name} norm on an empty tensor "
                                           "because the operation does not have an identity"):
        tritorch.zeros(0, device=device).norm(p)
    e = tritorch.zeros(0, 3, device=device)
    with pytest.raises(RuntimeError, match=f"cannot compute the {name} norm on an empty tensor"):
        e.norm(p, dim=[])
    with pytest.raises(RuntimeError, match=f"cannot compute the {name} norm on the dimension 0 because this "
                                           "dimension is empty"):
        e.norm(p, dim=0)
    with pytest.raises(RuntimeError, match="on the dimension -2 because"):
        e.norm(p, dim=(1, -2))
    assert e.norm(p, dim=1).shape == (0,) and e.norm(p, dim=1, keepdim=True).shape == (0, 1)
    assert e.norm(2).item() == 0.0 and e.norm(0.5, dim=0).tolist() == [0.0] * 3
    for f in (lambda: e.amax(), lambda: e.max(), lambda: e.amin(dim=[])):
        with pytest.raises(RuntimeError, match="Expected reduction dim to be specified"):
            f()


# ---- differential-fuzzer regressions (PyTorch 2.14 as the oracle) --------------------------------------------------

def test_sum_prod_integer_and_bool_dtype(device):
    """``dtype=`` is the result type, an integer or bool one too (wrapping as the type does); an input that
    requires grad cannot give a non-floating result."""
    t = tritorch.tensor
    s = tritorch.sum(t([4, 100], dtype=tritorch.int8, device=device), dim=-1, dtype=tritorch.int16)
    assert s.dtype is tritorch.int16 and s.item() == 104
    assert tritorch.sum(t([100, 100], dtype=tritorch.int8, device=device), dtype=tritorch.int8).item() == -56
    assert t([250, 10], dtype=tritorch.uint8, device=device).sum(0, dtype=tritorch.uint8).item() == 4
    b = tritorch.sum(t([-6, -5, 10], device=device), dim=0, dtype=tritorch.bool)
    assert b.dtype is tritorch.bool and b.item() is True
    assert tritorch.sum(t([0, 0], device=device), dtype=tritorch.bool).item() is False
    p = tritorch.prod(t(-1.8, dtype=tritorch.float64, device=device), dim=-1, dtype=tritorch.int32)
    assert p.dtype is tritorch.int32 and p.item() == -1
    assert tritorch.prod(t([100, 100], dtype=tritorch.int16, device=device), dtype=tritorch.int8).item() == 16
    assert tritorch.prod(t([3, 0], device=device), dtype=tritorch.bool).item() is False
    x = t([1.5, 2.], device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="Autograd not support dtype: Bool"):
        tritorch.sum(x, dtype=tritorch.bool)
    with pytest.raises(RuntimeError, match="Autograd not support dtype: Int"):
        tritorch.prod(x, dtype=tritorch.int32)
    with pytest.raises(RuntimeError, match="Optional dtype must be either a floating point"):
        tritorch.mean(t([3, 4], device=device), dtype=tritorch.int32)


def test_amax_amin_backward_nan_result_is_nan(device):
    """amax/amin: (g / count) * (x == result), so a NaN result (no element equals it) makes its slice NaN;
    max()/min() send it to the NaN element."""
    nan = float("nan")
    x = tritorch.tensor([[nan, 2.5], [1., 2.5]], device=device, requires_grad=True)
    tritorch.amax(x, 0).sum().backward()
    g = to_np(x.grad)
    assert np.isnan(g[:, 0]).all() and g[:, 1].tolist() == [0.5, 0.5]
    x = tritorch.tensor([nan, 2.5], device=device, requires_grad=True)
    tritorch.amin(x).backward()
    assert np.isnan(to_np(x.grad)).all()
    x = tritorch.tensor([nan, 2.5], device=device, requires_grad=True)
    x.max().backward()
    assert x.grad.tolist() == [1.0, 0.0]


def test_var_backward_correction_beyond_count(device):
    """PyTorch's 2 / (n - correction) factor, negative where correction > n: a zero gradient, not NaN."""
    x = tritorch.tensor([[1.5], [2.]], dtype=tritorch.float64, device=device, requires_grad=True)
    tritorch.var(x, dim=-1, correction=2).sum().backward()
    assert x.grad.tolist() == [[0.0], [0.0]]
    scalar = tritorch.tensor(-1.25, dtype=tritorch.float64, device=device, requires_grad=True)
    for v, kw in ((x[:1].detach().requires_grad_(), {}), (scalar, {"dim": -1, "keepdim": True})):
        v.grad = None              # a reduction of everything (dim=None, a 0-d input): the divisor is clamped at 0
        tritorch.var_mean(v, correction=2, **kw)[0].sum().backward()
        assert np.isnan(to_np(v.grad)).all()


def test_prod_backward_near_float_max(device):
    """The gradient is g times the product of the others: 1 over a size-1 dim, never g * prod / x overflowing."""
    x = tritorch.tensor([[1e4], [1.7976931348623157e+308], [2.]], dtype=tritorch.float64, device=device,
                        requires_grad=True)
    (tritorch.prod(x, dim=-1, keepdim=True) * 1.3925).sum().backward()
    np.testing.assert_allclose(to_np(x.grad), [[1.3925]] * 3)


def test_norm_of_single_elements_is_abs(device):
    """One element per slice: |x| (PyTorch), never squared and overflowing."""
    x = tritorch.tensor([[1e200], [-3.]], dtype=tritorch.float64, device=device)
    for p in (2, 3, 1, -1, "fro"):
        assert tritorch.norm(x, p=p, dim=1).tolist() == [1e200, 3.0]
    y = tritorch.tensor(-1.797e308, dtype=tritorch.float64, device=device, requires_grad=True)
    n = tritorch.norm(y, p="fro")
    n.backward()
    assert n.item() == 1.797e308 and y.grad.item() == pytest.approx(-1.0)
    assert tritorch.norm(tritorch.tensor([[1e200, 0.]], dtype=tritorch.float64, device=device), dim=1).tolist() == \
        [math.inf]


# ---- count_nonzero, aminmax (issue 17) -------------------------------------------------------------------------------

def test_count_nonzero(device):
    torch = pytest.importorskip("torch")
    a = np.array([[0.0, 1, np.nan], [2, 0, 0], [0, -0.0, 3]])
    x = tritorch.tensor(a, device=device)
    for dim in (None, 0, -1, (0, 1), (1,)):
        got = tritorch.count_nonzero(x, dim) if dim is not None else x.count_nonzero()
        exp = torch.count_nonzero(torch.tensor(a), dim) if dim is not None else torch.count_nonzero(torch.tensor(a))
        assert got.dtype is tritorch.int64
        np.testing.assert_array_equal(to_np(got), exp.numpy())
    xt, ref = make((5, 7), tritorch.int32, device, "transposed")
    np.testing.assert_array_equal(to_np(tritorch.count_nonzero(xt, 0)), np.count_nonzero(ref, 0))
    assert tritorch.count_nonzero(tritorch.zeros(0, 3, device=device), 0).tolist() == [0, 0, 0]
    assert tritorch.count_nonzero(tritorch.tensor(3.0, device=device)).item() == 1
    with pytest.raises(RuntimeError, match="appears multiple times"):
        tritorch.count_nonzero(x, (0, 0))


def test_aminmax(device):
    torch = pytest.importorskip("torch")
    x, ref = make((4, 1031), tritorch.float32, device, "strided")
    for kw in (dict(), dict(dim=0), dict(dim=-1, keepdim=True), dict(keepdim=True)):
        got = tritorch.aminmax(x, **kw)
        exp = torch.aminmax(torch.tensor(ref, dtype=torch.float32), **kw)
        assert_close(got.min, exp.min.double().numpy())
        assert_close(got.max, exp.max.double().numpy())
    b = tritorch.tensor([True, False], device=device).aminmax()
    assert (b.min.item(), b.max.item()) == (False, True)
    n = tritorch.tensor([1.0, np.nan, 2], device=device).aminmax()
    assert math.isnan(n.min.item()) and math.isnan(n.max.item())
    assert tritorch.aminmax(tritorch.zeros(0, 3, device=device), dim=1).min.shape == (0,)
    with pytest.raises(RuntimeError, match="cannot compute aminmax over an empty dimension"):
        tritorch.aminmax(tritorch.zeros(0, 3, device=device))
    with pytest.raises(IndexError, match="Expected reduction dim 0 to have non-zero size"):
        tritorch.aminmax(tritorch.zeros(0, 3, device=device), dim=0)
    # gradient: each result's gradient split among its ties (PyTorch's AminmaxBackward0)
    v = tritorch.tensor([1.0, 3, 3, 0], dtype=tritorch.float64, device=device, requires_grad=True)
    r = tritorch.aminmax(v)
    (r.min * 2 + r.max).backward()
    assert to_np(v.grad).tolist() == [0.0, 0.5, 0.5, 2.0]
    w = tritorch.tensor(np.random.default_rng(0).standard_normal((3, 4)), dtype=tritorch.float64, requires_grad=True)
    assert gradcheck(lambda t: tritorch.aminmax(t, dim=1).max + tritorch.aminmax(t, dim=1).min * 2, (w,))
