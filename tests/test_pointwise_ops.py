"""Issue 17's pointwise ops against PyTorch (float64 on its cpu as the oracle): values and gradients on ``cpu`` and
interpreted ``cuda``, in odd sizes, size 0, 0-d and non-contiguous layouts; gradchecks in float64; PyTorch's errors,
in-place forms, node names and the nn modules."""
import math

import numpy as np
import pytest

import tritorch
import tritorch.nn as nn
import tritorch.nn.functional as F
from tritorch.autograd.gradcheck import gradcheck
from helpers import assert_close, make

torch = pytest.importorskip("torch")
TF = torch.nn.functional

# name -> (tritorch fn, torch fn, number of tensor inputs, (low, high) of the inputs)
CASES = {
    "mish": (F.mish, TF.mish, 1, (-25, 25)),
    "hardswish": (F.hardswish, TF.hardswish, 1, (-5, 5)),
    "selu": (F.selu, TF.selu, 1, (-3, 3)),
    "celu": (lambda x: F.celu(x, 0.7), lambda x: TF.celu(x, 0.7), 1, (-3, 3)),
    "softsign": (F.softsign, TF.softsign, 1, (-3, 3)),
    "threshold": (lambda x: F.threshold(x, 0.25, -2.0), lambda x: TF.threshold(x, 0.25, -2.0), 1, (-1, 1)),
    "softmin": (lambda x: F.softmin(x, -1), lambda x: TF.softmin(x, -1), 1, (-2, 2)),
    "nan_to_num": (tritorch.nan_to_num, torch.nan_to_num, 1, (-2, 2)),
    "logaddexp": (tritorch.logaddexp, torch.logaddexp, 2, (-3, 3)),
    "xlogy": (tritorch.xlogy, torch.xlogy, 2, (0.1, 3)),
    "lerp_scalar": (lambda x, y: tritorch.lerp(x, y, 0.3), lambda x, y: torch.lerp(x, y, 0.3), 2, (-2, 2)),
    "lerp_high": (lambda x, y: x.lerp(y, 0.8), lambda x, y: x.lerp(y, 0.8), 2, (-2, 2)),
    "lerp": (tritorch.lerp, torch.lerp, 3, (-1, 1)),
    "addcmul": (lambda x, y, z: tritorch.addcmul(x, y, z, value=0.5),
                lambda x, y, z: torch.addcmul(x, y, z, value=0.5), 3, (-2, 2)),
    "addcdiv": (lambda x, y, z: tritorch.addcdiv(x, y, z, value=-2),
                lambda x, y, z: torch.addcdiv(x, y, z, value=-2), 3, (0.5, 2)),
}
SHAPES = [((37,), "contiguous"), ((5, 7), "transposed"), ((3, 6), "strided"), ((0,), "contiguous"),
          ((), "contiguous")]


def _inputs(name, shape, layout, device, n, low, high):
    xs, refs = [], []
    for k in range(n):
        t, r = make(shape, tritorch.float32, device, layout if k == 0 else "contiguous", low=low, high=high,
                    seed=k + 3, requires_grad=True)
        xs.append(t)
        refs.append(torch.tensor(r, dtype=torch.float64, requires_grad=True))
    return xs, refs


@pytest.mark.parametrize("shape, layout", SHAPES, ids=[f"{s}-{lay}" for s, lay in SHAPES])
@pytest.mark.parametrize("name", sorted(CASES))
def test_values_and_grads(name, shape, layout, device):
    fn, tfn, n, (low, high) = CASES[name]
    if name == "softmin" and shape == ():
        shape = (1,)
    xs, refs = _inputs(name, shape, layout, device, n, low, high)
    y = fn(*xs)
    ry = tfn(*refs)
    assert y.shape == tuple(ry.shape) and y.dtype is tritorch.float32
    assert_close(y, ry.detach().numpy(), rtol=1e-4, atol=1e-5)
    g, rg = make(shape, tritorch.float32, device, seed=9)
    y.backward(g)
    ry.backward(torch.tensor(rg))
    for x, r in zip(xs, refs):
        assert_close(x.grad, r.grad.numpy(), rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradcheck(name):
    fn, _, n, (low, high) = CASES[name]
    xs = [make((3, 4), tritorch.float64, "cpu", low=low, high=high, seed=k, requires_grad=True)[0] for k in range(n)]
    assert gradcheck(fn, tuple(xs))


def test_node_names():
    x = tritorch.randn(4, 6, requires_grad=True)
    names = {"mish": F.mish(x), "selu": F.selu(x), "celu": F.celu(x), "hardswish": F.hardswish(x),
             "softsign": F.softsign(x), "threshold": F.threshold(x, 0.1, 2.0), "logaddexp": tritorch.logaddexp(x, x),
             "xlogy": tritorch.xlogy(x, x), "lerp0": tritorch.lerp(x, x, 0.5), "lerp1": tritorch.lerp(x, x, x),
             "addcmul": tritorch.addcmul(x, x, x), "addcdiv": tritorch.addcdiv(x, x, x),
             "nan_to_num": tritorch.nan_to_num(x)}
    expected = {"mish": "MishBackward0", "selu": "EluBackward0", "celu": "CeluBackward0",
                "hardswish": "HardswishBackward0", "softsign": "DivBackward0", "threshold": "ThresholdBackward0",
                "logaddexp": "LogaddexpBackward0", "xlogy": "XlogyBackward0", "lerp0": "LerpBackward0",
                "lerp1": "LerpBackward1", "addcmul": "AddcmulBackward0", "addcdiv": "AddcdivBackward0",
                "nan_to_num": "NanToNumBackward0"}
    assert {k: v.grad_fn.name() for k, v in names.items()} == expected


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
def test_nan_to_num_specials(device, dtype):
    v = [math.nan, math.inf, -math.inf, 1.5, -0.0]
    x = tritorch.tensor(v, dtype=getattr(tritorch, dtype), device=device)
    r = torch.tensor(v, dtype=getattr(torch, dtype))
    for kw in ({}, {"nan": 2.0, "posinf": 1e3, "neginf": -7.0}, {"posinf": 1.0000000000000002}):
        assert_close(tritorch.nan_to_num(x, **kw), torch.nan_to_num(r, **kw).double().numpy(), rtol=0, atol=0)
    y = x.clone().nan_to_num_(nan=3.0)
    assert_close(y, torch.nan_to_num(r, nan=3.0).double().numpy(), rtol=0, atol=0)
    i = tritorch.tensor([1, 2], device=device)
    assert tritorch.nan_to_num(i).tolist() == [1, 2]


def test_specials(device):
    """Infinities and NaN where each op's rule matters."""
    inf, nan = math.inf, math.nan
    a = [-inf, -inf, inf, nan, 0.0, 0.0, 2.0]
    b = [-inf, 1.0, inf, 1.0, 0.0, nan, -inf]
    x, y = (tritorch.tensor(v, dtype=tritorch.float64, device=device) for v in (a, b))
    rx, ry = (torch.tensor(v, dtype=torch.float64) for v in (a, b))
    assert_close(tritorch.logaddexp(x, y), torch.logaddexp(rx, ry).numpy())
    pos = torch.tensor([0.0, 0.0, 1.0, 2.0, nan], dtype=torch.float64)
    xl = torch.tensor([0.0, 3.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    txl, tpos = (tritorch.tensor(v.numpy(), device=device) for v in (xl, pos))
    assert_close(tritorch.xlogy(txl, tpos), torch.xlogy(xl, pos).numpy())
    for f, tf in ((F.mish, TF.mish), (F.hardswish, TF.hardswish), (F.selu, TF.selu), (F.softsign, TF.softsign),
                  (lambda t: F.threshold(t, 0.0, 5.0), lambda t: TF.threshold(t, 0.0, 5.0))):
        assert_close(f(x), tf(rx).numpy())


def test_inplace_forms(device):
    x, rx = make((4, 5), tritorch.float32, device, seed=1)
    y, ry = make((4, 5), tritorch.float32, device, seed=2, low=0.5)
    w, rw = make((5,), tritorch.float32, device, seed=3)
    tx, ty, tw = (torch.tensor(v) for v in (rx, ry, rw))
    checks = [
        (lambda t: t.lerp_(y, 0.25), lambda t: t.lerp_(ty, 0.25)),
        (lambda t: t.lerp_(y, w), lambda t: t.lerp_(ty, tw)),
        (lambda t: t.addcmul_(y, w, value=3), lambda t: t.addcmul_(ty, tw, value=3)),
        (lambda t: t.addcdiv_(w, y, value=0.5), lambda t: t.addcdiv_(tw, ty, value=0.5)),
        (lambda t: t.xlogy_(y), lambda t: t.xlogy_(ty)),
        (lambda t: F.selu(t, inplace=True), lambda t: TF.selu(t, inplace=True)),
        (lambda t: F.celu(t, 2.0, inplace=True), lambda t: TF.celu(t, 2.0, inplace=True)),
        (lambda t: F.mish(t, inplace=True), lambda t: TF.mish(t, inplace=True)),
        (lambda t: F.hardswish(t, inplace=True), lambda t: TF.hardswish(t, inplace=True)),
        (lambda t: F.threshold(t, 0.1, 9.0, inplace=True), lambda t: TF.threshold(t, 0.1, 9.0, inplace=True)),
        (lambda t: tritorch.selu_(t), lambda t: torch.selu_(t)),
        (lambda t: tritorch.threshold_(t, 0.0, 1.0), lambda t: torch.threshold_(t, 0.0, 1.0)),
    ]
    for k, (f, tf) in enumerate(checks):
        t = x.clone().t().contiguous().t() if k % 2 else x.clone()     # a transposed target too
        out = f(t)
        assert out is t, k
        assert_close(t, tf(tx.clone()).numpy(), rtol=1e-5, atol=1e-6, msg=str(k))


def test_inplace_autograd():
    a = tritorch.randn(3, 4, dtype=tritorch.float64, requires_grad=True)
    b = tritorch.randn(3, 4, dtype=tritorch.float64, requires_grad=True)
    c = tritorch.rand(4, dtype=tritorch.float64, requires_grad=True)
    assert gradcheck(lambda a, b, c: (a * 1).addcmul_(b, c, value=2), (a, b, c))
    assert gradcheck(lambda a, b, c: (a * 1).addcdiv_(b, c + 1), (a, b, c))
    assert gradcheck(lambda a, b, c: (a * 1).lerp_(b, c), (a, b, c))
    with pytest.raises(RuntimeError, match="leaf Variable"):
        a.addcmul_(b, c)


def test_promotion_and_broadcast(device):
    i = tritorch.tensor([[1, 2, 3]], device=device)
    f = tritorch.tensor([[0.5], [2.0]], dtype=tritorch.float64, device=device)
    out = tritorch.addcmul(i, f, i, value=2)
    assert out.dtype is tritorch.float64 and out.shape == (2, 3)
    assert_close(out, torch.addcmul(torch.tensor([[1, 2, 3]]), torch.tensor([[0.5], [2.0]], dtype=torch.float64),
                                    torch.tensor([[1, 2, 3]]), value=2).numpy())
    ii = tritorch.addcmul(i, i, i, value=0.5)        # the value converted to the integer type, as PyTorch
    assert ii.dtype is tritorch.int64 and ii.tolist() == [[1, 2, 3]]
    assert tritorch.xlogy(i, i).dtype is tritorch.float32
    assert_close(tritorch.xlogy(2, tritorch.tensor([3.0], device=device)), [2 * math.log(3)])
    assert F.threshold(tritorch.tensor([1, 5], device=device), 2, 7).tolist() == [7, 5]


def test_errors(device):
    x = tritorch.randn(2, 4, device=device)
    i = tritorch.tensor([1, 2], device=device)
    cases = [
        (lambda: F.celu(x, alpha=0.0), RuntimeError, "alpha cannot be 0 for CELU"),
        (lambda: F.glu(tritorch.randn(5, device=device)), RuntimeError,
         "Halving dimension must be even, but dimension 0 is size 5"),
        (lambda: F.glu(tritorch.tensor(1.0, device=device)), RuntimeError, "glu does not support scalars"),
        (lambda: F.glu(x, 2), IndexError, "Dimension out of range"),
        (lambda: F.prelu(x, tritorch.ones(3, device=device)), RuntimeError,
         "Found parameter numbers = 3 and channel size = 4"),
        (lambda: F.prelu(x, tritorch.ones(4, dtype=tritorch.float64, device=device)), RuntimeError,
         "prelu: Type promoting not supported. Got Float and Double"),
        (lambda: tritorch.addcdiv(i, i, i), RuntimeError, "Integer division with addcdiv is no longer supported"),
        (lambda: tritorch.lerp(x, x.double(), 0.5), RuntimeError,
         "expected dtype float for `end` but got dtype double"),
        (lambda: tritorch.lerp(x, x, x.double()), RuntimeError, "expected dtype float for `weight`"),
        (lambda: tritorch.lerp(i, i, 0.5), NotImplementedError, "\"lerp_kernel_scalar\" not implemented for 'Long'"),
        (lambda: tritorch.lerp(x, tritorch.ones(3, device=device), 0.5), RuntimeError, "cannot be broadcast"),
        (lambda: F.mish(i), NotImplementedError, "\"mish_.*\" not implemented for 'Long'"),
        (lambda: F.selu(i), NotImplementedError, "\"elu_.*\" not implemented for 'Long'"),
        (lambda: tritorch.logaddexp(i, i), NotImplementedError, "\"logaddexp_.*\" not implemented for 'Long'"),
        (lambda: x[:, :1].expand(2, 4).addcmul_(x, x), RuntimeError, "more than one element"),
        (lambda: x[:1].addcmul_(x, x), RuntimeError, "doesn't match the broadcast shape"),
    ]
    for fn, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            fn()


@pytest.mark.parametrize("num", [1, 3])
def test_prelu(device, num):
    m = nn.PReLU(num, init=0.1).to(device)
    assert repr(m) == f"PReLU(num_parameters={num})" and m.weight.shape == (num,)
    assert_close(m.weight, np.full(num, 0.1))
    x, rx = make((2, 3, 5), tritorch.float32, device, "transposed", requires_grad=True)
    tm = torch.nn.PReLU(num, init=0.1)
    trx = torch.tensor(rx, dtype=torch.float32, requires_grad=True)
    y, ry = m(x), tm(trx)
    assert_close(y, ry.detach().numpy())
    y.sum().backward()
    ry.sum().backward()
    assert_close(x.grad, trx.grad.numpy())
    assert_close(m.weight.grad, tm.weight.grad.numpy(), rtol=1e-4, atol=1e-5)
    assert_close(tritorch.prelu(x.detach()[0, 0], m.weight.detach()[:1]), TF.prelu(trx.detach()[0, 0],
                                                                                   tm.weight.detach()[:1]).numpy())


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_glu(device, dim):
    x, rx = make((4, 6), tritorch.float32, device, "transposed", requires_grad=True)
    trx = torch.tensor(rx, requires_grad=True)
    y, ry = nn.GLU(dim)(x), torch.nn.GLU(dim)(trx)
    assert_close(y, ry.detach().numpy())
    y.sum().backward()
    ry.sum().backward()
    assert_close(x.grad, trx.grad.numpy())


def test_modules():
    x = tritorch.linspace(-4, 4, 18)
    rx = torch.linspace(-4, 4, 18)
    for m, tm, r in ((nn.Mish(), torch.nn.Mish(), "Mish()"), (nn.Hardswish(), torch.nn.Hardswish(), "Hardswish()"),
                     (nn.SELU(), torch.nn.SELU(), "SELU()"), (nn.CELU(0.5), torch.nn.CELU(0.5), "CELU(alpha=0.5)"),
                     (nn.Softsign(), torch.nn.Softsign(), "Softsign()"),
                     (nn.Threshold(0.1, 20), torch.nn.Threshold(0.1, 20), "Threshold(threshold=0.1, value=20)"),
                     (nn.Softmin(0), torch.nn.Softmin(0), "Softmin(dim=0)"), (nn.GLU(), torch.nn.GLU(), "GLU(dim=-1)")):
        assert repr(m) == repr(tm) == r
        assert_close(m(x), tm(rx).double().numpy(), rtol=1e-5, atol=1e-6, msg=r)
    with pytest.warns(UserWarning, match="Implicit dimension choice for softmin"):
        F.softmin(tritorch.ones(2, 3))
    y = F.softmin(x, 0, dtype=tritorch.float64)
    assert y.dtype is tritorch.float64
    assert_close(y, TF.softmin(torch.tensor(x.numpy()), 0, dtype=torch.float64).numpy())
