"""Elementwise ops: values against float64 NumPy oracles, PyTorch's type promotion, broadcasting, backward (fused and
create_graph), in-place variants, node names and error messages. Run on cpu (NumPy) and cuda (Triton)."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import triton
import triton.language as tl

import tritorch as torch
from tritorch.kernels._pointwise import launch_pointwise
from helpers import TOL, assert_close, make, to_np

F = torch._FUNCTIONS
FLOATS = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
INTS = [torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64]


def _erf(x):
    return np.vectorize(math.erf)(x) if np.size(x) else np.asarray(x, dtype=np.float64)


def _sig(x):
    return 1 / (1 + np.exp(-x))


_K = math.sqrt(2 / math.pi)

# name: (call, float64 reference, derivative reference, input range)
UNARY = {
    "neg": (lambda x: -x, lambda x: -x, lambda x: -np.ones_like(x), None),
    "abs": (torch.abs, np.abs, np.sign, None),
    "exp": (torch.exp, np.exp, np.exp, None),
    "log": (torch.log, np.log, lambda x: 1 / x, (0.1, 3)),
    "log1p": (torch.log1p, np.log1p, lambda x: 1 / (1 + x), (-0.9, 3)),
    "expm1": (torch.expm1, np.expm1, np.exp, None),
    "sqrt": (torch.sqrt, np.sqrt, lambda x: 0.5 / np.sqrt(x), (0.1, 3)),
    "rsqrt": (torch.rsqrt, lambda x: 1 / np.sqrt(x), lambda x: -0.5 * x ** -1.5, (0.1, 3)),
    "sin": (torch.sin, np.sin, np.cos, None),
    "cos": (torch.cos, np.cos, lambda x: -np.sin(x), None),
    "tanh": (torch.tanh, np.tanh, lambda x: 1 - np.tanh(x) ** 2, None),
    "sigmoid": (torch.sigmoid, _sig, lambda x: _sig(x) * (1 - _sig(x)), None),
    "relu": (torch.relu, lambda x: np.maximum(x, 0), lambda x: (x > 0) * 1.0, None),
    "leaky_relu": (lambda x: F["leaky_relu"](x, 0.2), lambda x: np.where(x > 0, x, 0.2 * x),
                   lambda x: np.where(x > 0, 1, 0.2), None),
    "elu": (lambda x: F["elu"](x, 1.5), lambda x: np.where(x > 0, x, 1.5 * np.expm1(x)),
            lambda x: np.where(x > 0, 1, 1.5 * np.exp(x)), None),
    "gelu": (F["gelu"], lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2))),
             lambda x: 0.5 * (1 + _erf(x / math.sqrt(2))) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi), None),
    "gelu_tanh": (lambda x: F["gelu"](x, approximate="tanh"),
                  lambda x: 0.5 * x * (1 + np.tanh(_K * (x + 0.044715 * x ** 3))),
                  lambda x: 0.5 * (1 + np.tanh(_K * (x + 0.044715 * x ** 3)))
                  + 0.5 * x * (1 - np.tanh(_K * (x + 0.044715 * x ** 3)) ** 2) * _K * (1 + 3 * 0.044715 * x * x),
                  None),
    "silu": (torch.silu, lambda x: x * _sig(x), lambda x: _sig(x) * (1 + x * (1 - _sig(x))), None),
    "softplus": (lambda x: F["softplus"](x, 2.0, 3.0),
                 lambda x: np.where(2 * x > 3, x, np.log1p(np.exp(2 * x)) / 2),
                 lambda x: np.where(2 * x > 3, 1, _sig(2 * x)), None),
    "sign": (torch.sign, np.sign, np.zeros_like, None),
    "floor": (torch.floor, np.floor, np.zeros_like, (-3, 3)),
    "ceil": (torch.ceil, np.ceil, np.zeros_like, (-3, 3)),
    "round": (torch.round, np.round, np.zeros_like, (-3, 3)),
    "trunc": (torch.trunc, np.trunc, np.zeros_like, (-3, 3)),
    "clamp": (lambda x: x.clamp(-0.5, 0.7), lambda x: np.clip(x, -0.5, 0.7),
              lambda x: ((x > -0.5) & (x < 0.7)) * 1.0, None),
    "clamp_min": (lambda x: x.clamp_min(-0.5), lambda x: np.maximum(x, -0.5), lambda x: (x > -0.5) * 1.0, None),
    "clamp_max": (lambda x: x.clamp(max=0.7), lambda x: np.minimum(x, 0.7), lambda x: (x < 0.7) * 1.0, None),
    "reciprocal": (torch.reciprocal, lambda x: 1 / x, lambda x: -1 / x ** 2, (0.2, 3)),
    "pow2": (lambda x: x ** 2, lambda x: x ** 2, lambda x: 2 * x, None),
    "pow3": (lambda x: x ** 3, lambda x: x ** 3, lambda x: 3 * x ** 2, None),
    "pow_half": (lambda x: torch.pow(x, 0.5), np.sqrt, lambda x: 0.5 / np.sqrt(x), (0.2, 3)),
    "pow_neg": (lambda x: x ** -1.5, lambda x: x ** -1.5, lambda x: -1.5 * x ** -2.5, (0.2, 3)),
    "square": (torch.square, np.square, lambda x: 2 * x, None),
    "erf": (torch.erf, _erf, lambda x: 2 / math.sqrt(math.pi) * np.exp(-x * x), None),
    "hardtanh": (lambda x: F["hardtanh"](x, -0.5, 0.7), lambda x: np.clip(x, -0.5, 0.7),
                 lambda x: ((x > -0.5) & (x < 0.7)) * 1.0, None),
}
KINKS = {"abs", "relu", "leaky_relu", "elu", "sign", "floor", "ceil", "round", "trunc", "clamp", "clamp_min",
         "clamp_max", "softplus", "hardtanh"}


def _input(name, shape, dtype, device, layout="contiguous", seed=0, requires_grad=False):
    rng = UNARY[name][3] or (-2.0, 2.0)
    t, ref = make(shape, dtype, device, layout, low=rng[0], high=rng[1], seed=seed)
    if name in KINKS:
        # keep samples away from the kinks, where a float32 result may sit on the other side of the edge
        kinks = {"clamp": (-0.5, 0.7), "hardtanh": (-0.5, 0.7), "clamp_min": (-0.5,), "clamp_max": (0.7,),
                 "softplus": (1.5,)}.get(name, (0.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 1.0, -1.0, 2.0, -2.0))
        near = np.zeros(ref.shape, bool)
        for k in kinks:
            near |= np.abs(ref - k) < 0.05
        ref = np.where(near, ref + 0.1, ref)
        t = torch.tensor(ref, dtype=dtype, device=device)
        if layout == "transposed" and ref.ndim >= 2:
            t = t.t().contiguous().t()
        ref = to_np(t)
    if requires_grad:
        t.requires_grad_(True)
    return t, ref


@pytest.mark.parametrize("name", list(UNARY))
@pytest.mark.parametrize("dtype", FLOATS)
def test_unary_values(name, dtype, device):
    fn, ref_fn = UNARY[name][:2]
    for shape, layout in (((3, 37), "transposed"), ((5,), "strided"), ((), "contiguous"), ((0, 3), "contiguous")):
        x, xr = _input(name, shape, dtype, device, layout)
        out = fn(x)
        assert out.dtype is dtype and out.shape == x.shape and out.device == x.device
        with np.errstate(all="ignore"):
            assert_close(out, ref_fn(xr), dtype, msg=f"{name} {shape} {layout}")


@pytest.mark.parametrize("name", ["neg", "abs", "sign", "relu", "floor", "ceil", "round", "trunc", "square",
                                  "clamp"])
@pytest.mark.parametrize("dtype", [torch.int8, torch.int32, torch.int64])
def test_unary_int_keeps_dtype(name, dtype, device):
    x, xr = make((4, 9), dtype, device, "transposed")
    fn = {"clamp": lambda t: t.clamp(-5, 7)}.get(name, UNARY[name][0])
    ref = {"clamp": lambda a: np.clip(a, -5, 7), "relu": lambda a: np.maximum(a, 0)}.get(name, UNARY[name][1])
    out = fn(x)
    assert out.dtype is dtype
    np.testing.assert_array_equal(to_np(out), ref(xr).astype(dtype.np))


@pytest.mark.parametrize("name", ["exp", "sqrt", "sigmoid", "tanh", "sin", "reciprocal"])
def test_unary_int_promotes_to_float(name, device):
    x = torch.tensor([[1, 2, 3], [4, 5, 6]], device=device)
    out = UNARY[name][0](x)
    assert out.dtype is torch.float32
    assert_close(out, UNARY[name][1](np.array([[1, 2, 3], [4, 5, 6]], np.float64)))


def test_unary_special_values(device):
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e-8, -1e-8, 40.0, -40.0, 100.0],
                     device=device)
    xr = to_np(x).astype(np.float32)
    with np.errstate(all="ignore"):
        assert_close(torch.relu(x), np.where(np.isnan(xr), xr, np.maximum(xr, 0)))
        assert_close(torch.sigmoid(x), 1 / (1 + np.exp(-xr)))
        assert_close(torch.tanh(x), np.tanh(xr))
        assert_close(torch.expm1(x), np.expm1(xr))
        assert_close(torch.log1p(x), np.log1p(xr))
        assert_close(x.clamp(-1, 1), np.where(np.isnan(xr), xr, np.clip(xr, -1, 1)))
        assert_close(torch.sign(x), np.nan_to_num(np.sign(xr), nan=0.0))
        assert_close(F["softplus"](x), np.where(xr > 20, xr, np.log1p(np.exp(np.minimum(xr, 20)))))
        assert_close(torch.round(torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, 2.4999], device=device)),
                     np.array([0.0, 2.0, 2.0, -0.0, -2.0, 2.0]))


def test_unary_errors(device):
    b = torch.tensor([True, False], device=device)
    with pytest.raises(RuntimeError, match="Negation, the `-` operator, on a bool tensor is not supported"):
        -b
    with pytest.raises(RuntimeError, match="At least one of 'min' or 'max' must not be None"):
        torch.clamp(torch.ones(2, device=device))
    with pytest.raises(RuntimeError, match="approximate argument must be either none or tanh"):
        F["gelu"](torch.ones(2, device=device), approximate="fast")
    with pytest.raises(TypeError, match="must be Tensor"):
        torch.exp([1.0, 2.0])


# ---- binary ops --------------------------------------------------------------------------------------------------

BINARY = {
    "add": (torch.add, np.add), "sub": (torch.sub, np.subtract), "mul": (torch.mul, np.multiply),
    "div": (torch.div, np.divide), "maximum": (torch.maximum, np.maximum), "minimum": (torch.minimum, np.minimum),
    "pow": (torch.pow, np.power),
    "add_alpha": (lambda a, b: torch.add(a, b, alpha=2.5), lambda a, b: a + 2.5 * b),
    "sub_alpha": (lambda a, b: torch.sub(a, b, alpha=-3), lambda a, b: a + 3 * b),
    "atan2_like_div": (lambda a, b: a / b, np.divide),
}
COMPARE = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal, "gt": np.greater,
           "ge": np.greater_equal}
LOGICAL = {"logical_and": np.logical_and, "logical_or": np.logical_or, "logical_xor": np.logical_xor}


@pytest.mark.parametrize("name", list(BINARY))
@pytest.mark.parametrize("dtype", FLOATS)
def test_binary_broadcast(name, dtype, device):
    fn, ref = BINARY[name]
    lo = 0.5 if name == "pow" else -2.0
    for (sa, la), (sb, lb) in [(((3, 1, 5), "contiguous"), ((4, 5), "transposed")),
                               (((7,), "strided"), ((), "contiguous")),
                               (((0, 3), "contiguous"), ((1, 3), "contiguous"))]:
        a, ar = make(sa, dtype, device, la, low=lo, seed=1)
        b, br = make(sb, dtype, device, lb, low=lo, seed=2)
        out = fn(a, b)
        assert out.dtype is dtype
        assert_close(out, ref(ar, br), dtype, msg=f"{name} {sa} {sb}")


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "pow", "maximum"])
def test_binary_scalars(name, device):
    fn, ref = BINARY[name]
    a, ar = make((2, 9), torch.float32, device, "transposed", low=0.5)
    for s in (2, 0.25, True):
        if name == "sub" and s is True:           # as PyTorch: no subtraction with a bool
            with pytest.raises(NotImplementedError, match="with a bool tensor is not supported"):
                fn(a, s)
            continue
        assert_close(fn(a, s), ref(ar, float(s)), msg=f"{name} tensor-scalar {s}")
        assert_close(fn(torch.tensor(float(s), device=device), a), ref(float(s), ar), msg=f"{name} 0-d {s}")
    ops = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y,
           "div": lambda x, y: x / y, "pow": lambda x, y: x ** y}
    if name in ops:
        op = ops[name]
        assert_close(op(a, 3), ref(ar, 3.0))
        assert_close(op(3, a), ref(3.0, ar))
        assert_close(op(1.5, a), ref(1.5, ar))


def test_binary_float64_scalar_precision(device):
    x = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64, device=device)
    assert_close(x + 0.1, np.array([1.1, 2.1, 3.1]))
    assert_close(x * 0.1, np.array([1.0, 2.0, 3.0]) * 0.1)
    assert_close(torch.add(x, x, alpha=0.1), np.array([1.0, 2.0, 3.0]) * 1.1)
    assert_close(x.clamp(0.1, 2.3), np.clip([1.0, 2.0, 3.0], 0.1, 2.3))
    assert_close(F["leaky_relu"](-x, 0.1), -np.array([1.0, 2.0, 3.0]) * 0.1)
    assert_close(torch.where(x > 1.5, x, 0.1), np.array([0.1, 2.0, 3.0]))


@pytest.mark.parametrize("name", list(COMPARE))
def test_compare(name, device):
    a, ar = make((3, 4), torch.float32, device, "transposed", seed=3)
    b, br = make((4,), torch.float32, device, seed=4)
    b = torch.where(torch.arange(4, device=device) % 2 == 0, a[0], b)        # some ties
    br = to_np(b)
    fn = getattr(torch, name)
    out = fn(a, b)
    assert out.dtype is torch.bool
    np.testing.assert_array_equal(to_np(out), COMPARE[name](ar, br))
    np.testing.assert_array_equal(to_np(fn(a, 0.5)), COMPARE[name](ar, 0.5))
    i, ir = make((5,), torch.int32, device)
    np.testing.assert_array_equal(to_np(fn(i, 3)), COMPARE[name](ir, 3))
    np.testing.assert_array_equal(to_np(fn(i, 2.5)), COMPARE[name](ir, 2.5))
    py = {"eq": "__eq__", "ne": "__ne__", "lt": "__lt__", "le": "__le__", "gt": "__gt__", "ge": "__ge__"}[name]
    np.testing.assert_array_equal(to_np(getattr(a, py)(b)), COMPARE[name](ar, br))


@pytest.mark.parametrize("name", list(LOGICAL))
def test_logical(name, device):
    a = torch.tensor([[0.0, 1.5, -2.0, 0.0]], device=device)
    b = torch.tensor([[True], [False]], device=device)
    out = getattr(torch, name)(a, b)
    assert out.dtype is torch.bool and out.shape == (2, 4)
    np.testing.assert_array_equal(to_np(out), LOGICAL[name](to_np(a) != 0, to_np(b)))
    i = torch.tensor([0, 3, -1], dtype=torch.int8, device=device)
    np.testing.assert_array_equal(to_np(torch.logical_not(i)), [True, False, False])
    np.testing.assert_array_equal(to_np(~torch.tensor([True, False], device=device)), [False, True])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int32, torch.int64, torch.int8])
def test_rounding_division(dtype, device):
    """floor/trunc division, remainder and fmod: exactly NumPy's results in the same dtype (Python's rules)."""
    rng = np.random.default_rng(5)
    if dtype.is_floating_point:
        a = rng.uniform(-20, 20, 40).astype(dtype.np)
        b = rng.choice([-3.0, -2.5, -0.75, 0.75, 2.5, 3.0, 7.0], 40).astype(dtype.np)
        a[:4] = [6.0, -6.0, 0.0, -7.5]
    else:
        a = rng.integers(-100, 100, 40).astype(dtype.np)
        b = rng.choice([-7, -3, -1, 1, 2, 5], 40).astype(dtype.np)
    x, y = torch.tensor(a, device=device), torch.tensor(b, device=device)
    np.testing.assert_array_equal(to_np(torch.div(x, y, rounding_mode="floor")), np.floor_divide(a, b))
    np.testing.assert_array_equal(to_np(x // y), np.floor_divide(a, b))
    trunc = np.trunc(a / b).astype(dtype.np) if dtype.is_floating_point else \
        (np.sign(a) * np.sign(b) * (np.abs(a.astype(np.int64)) // np.abs(b))).astype(dtype.np)
    np.testing.assert_array_equal(to_np(torch.div(x, y, rounding_mode="trunc")), trunc)
    np.testing.assert_array_equal(to_np(torch.remainder(x, y)), np.mod(a, b))
    np.testing.assert_array_equal(to_np(x % y), np.mod(a, b))
    np.testing.assert_array_equal(to_np(torch.fmod(x, y)), np.fmod(a, b))
    np.testing.assert_array_equal(to_np(x % 3), np.mod(a, dtype.np.type(3)))
    np.testing.assert_array_equal(to_np(torch.div(x, 2, rounding_mode="floor")), np.floor_divide(a, dtype.np.type(2)))
    with pytest.raises(RuntimeError, match="rounding_mode"):
        torch.div(x, y, rounding_mode="round")


def test_int_true_division_and_pow(device):
    a = torch.tensor([-7, -1, 0, 1, 2, 9], device=device)
    b = torch.tensor([2, 3, 5, -1, 2, 4], device=device)
    out = a / b
    assert out.dtype is torch.float32
    assert_close(out, np.array([-7, -1, 0, 1, 2, 9]) / np.array([2, 3, 5, -1, 2, 4]))
    p = a ** torch.tensor([3, -1, 0, -2, 10, 2], device=device)
    assert p.dtype is torch.int64
    np.testing.assert_array_equal(to_np(p), [-343, -1, 1, 1, 1024, 81])
    np.testing.assert_array_equal(to_np(a ** 3), np.array([-7, -1, 0, 1, 2, 9]) ** 3)
    np.testing.assert_array_equal(to_np(2 ** b), [4, 8, 32, 0, 4, 16])
    assert (a ** 0.5).dtype is torch.float32
    with pytest.raises(RuntimeError, match="Integers to negative integer powers are not allowed"):
        a ** -1
    np.testing.assert_array_equal(to_np(torch.tensor([100], dtype=torch.int8, device=device) ** 2),
                                  np.array([100], np.int8) ** 2)     # wraps, as PyTorch


def test_pow_special_cases(device):
    x = torch.tensor([-2.0, -2.0, 0.0, 0.0, 0.0, 1.0, float("nan"), -8.0], device=device)
    y = torch.tensor([3.0, 0.5, 0.0, -1.0, 2.0, float("nan"), 0.0, 1 / 3], device=device)
    with np.errstate(all="ignore"):
        assert_close(x ** y, np.power(to_np(x), to_np(y)))


# ---- type promotion ----------------------------------------------------------------------------------------------

def _t(dtype, device, ndim=1):
    return torch.ones(*([2] * ndim), dtype=dtype, device=device)


@pytest.mark.parametrize("a, b, expected", [
    (torch.int64, torch.float32, torch.float32), (torch.int32, torch.int64, torch.int64),
    (torch.uint8, torch.int8, torch.int16), (torch.bool, torch.bool, torch.bool), (torch.uint8, torch.bool,
                                                                                       torch.uint8),
    (torch.float16, torch.bfloat16, torch.float32), (torch.float16, torch.int64, torch.float16),
    (torch.float32, torch.float64, torch.float64), (torch.bfloat16, torch.int8, torch.bfloat16),
    (torch.int16, torch.uint8, torch.int16), (torch.bool, torch.int8, torch.int8),
])
def test_promotion_tensor_tensor(a, b, expected, device):
    assert (_t(a, device) + _t(b, device)).dtype is expected
    assert (_t(b, device) * _t(a, device)).dtype is expected
    assert torch.promote_types(a, b) is expected


def test_promotion_scalars_and_zero_dim(device):
    i64, i32, f16 = _t(torch.int64, device), _t(torch.int32, device), _t(torch.float16, device)
    assert (i64 + 1.5).dtype is torch.float32
    assert (i32 * 2).dtype is torch.int32
    assert (_t(torch.int8, device) + 1000).dtype is torch.int8
    assert (_t(torch.bool, device) + 1).dtype is torch.int64
    assert (_t(torch.bool, device) + 1.5).dtype is torch.float32
    assert (_t(torch.bool, device) + True).dtype is torch.bool
    assert (f16 + 2.5).dtype is torch.float16
    assert (f16 + torch.tensor(1.0, device=device)).dtype is torch.float16          # 0-d of the same category
    assert (f16 + torch.tensor(1.0, dtype=torch.float64, device=device)).dtype is torch.float16
    assert (i32 + torch.tensor(1.0, dtype=torch.float64, device=device)).dtype is torch.float64
    assert (i32 + torch.tensor(5, device=device)).dtype is torch.int32
    assert (torch.tensor(1, device=device) + torch.tensor(1.0, dtype=torch.float16, device=device)).dtype is \
        torch.float16
    assert (i64 / i64).dtype is torch.float32
    assert (i64 / 2).dtype is torch.float32
    assert (i64 // 2).dtype is torch.int64
    assert (i64 == 1.5).dtype is torch.bool
    assert torch.where(_t(torch.bool, device), i32, 1.5).dtype is torch.float32
    assert torch.where(_t(torch.bool, device), i32, 2).dtype is torch.int32
    assert torch.where(_t(torch.bool, device), f16, i64).dtype is torch.float16
    assert torch.result_type(i32, 1.0) is torch.float32
    assert torch.clamp(i64, 0.5).dtype is torch.float32
    assert torch.clamp(i64, 0, 1).dtype is torch.int64


def test_half_types_with_float_scalar_compute_in_float32(device):
    x = torch.tensor([1000.0, 2.0], dtype=torch.float16, device=device)
    assert_close(x * 0.001 + 1, np.array([2.0, 1.002]), torch.float16)
    y = torch.tensor([3.0, 5.0], dtype=torch.bfloat16, device=device)
    assert_close(y / 3, np.array([1.0, 5 / 3]), torch.bfloat16)


# ---- where -------------------------------------------------------------------------------------------------------

def test_where(device):
    c, cr = make((3, 1, 4), torch.bool, device, seed=7)
    x, xr = make((2, 4), torch.float32, device, "transposed", seed=8)
    y, yr = make((4,), torch.float64, device, seed=9)
    out = torch.where(c, x, y)
    assert out.dtype is torch.float64 and out.shape == (3, 2, 4)
    assert_close(out, np.where(cr, xr, yr))
    assert_close(torch.where(c, x, 0.5), np.where(cr, xr, 0.5))
    assert_close(torch.where(c, -1.0, x), np.where(cr, -1.0, xr))
    assert_close(x.where(c, 2.0), np.where(cr, xr, 2.0))
    out = torch.where(c, 1, 0)
    assert out.dtype is torch.int64
    np.testing.assert_array_equal(to_np(out), np.where(cr, 1, 0))
    b16 = torch.where(c, x.to(torch.bfloat16), 1.5)
    assert b16.dtype is torch.bfloat16
    assert_close(b16, np.where(cr, to_np(x.to(torch.bfloat16)), 1.5), torch.bfloat16)
    with pytest.raises(RuntimeError, match="where expected condition to be a boolean tensor"):
        torch.where(x, x, y)


def test_where_backward(device):
    c = torch.tensor([[True, False, True]], device=device)
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], device=device, requires_grad=True)
    y = torch.tensor([10.0], dtype=torch.float64, device=device, requires_grad=True)
    out = torch.where(c, x, y)
    assert out.grad_fn.name() == "WhereBackward0"
    out.backward(torch.ones(2, 3, dtype=torch.float64, device=device))
    assert x.grad.dtype is torch.float32 and y.grad.dtype is torch.float64
    assert_close(x.grad, np.array([[1, 0, 1], [1, 0, 1.0]]))
    assert_close(y.grad, np.array([2.0]))


# ---- backward ----------------------------------------------------------------------------------------------------

def _fd(f, x, h=1e-6):
    """Central difference of an elementwise function, per element (every element moves at once)."""
    return (f(x + h) - f(x - h)) / (2 * h)


@pytest.mark.parametrize("name", [n for n in UNARY])
def test_unary_backward(name, device):
    fn, _, dref = UNARY[name][:3]
    for dtype in (torch.float64, torch.float32):
        x, xr = _input(name, (4, 7), dtype, device, "transposed", seed=11, requires_grad=True)
        g, gr = make((4, 7), dtype, device, seed=12)
        out = fn(x)
        out.backward(g)
        assert x.grad.dtype is dtype and x.grad.shape == x.shape
        assert_close(x.grad, gr * dref(xr), dtype, msg=name)


NODE_NAMES = {"neg": "NegBackward0", "abs": "AbsBackward0", "exp": "ExpBackward0", "log": "LogBackward0",
              "log1p": "Log1PBackward0", "expm1": "Expm1Backward0", "sqrt": "SqrtBackward0",
              "rsqrt": "RsqrtBackward0", "sin": "SinBackward0", "cos": "CosBackward0", "tanh": "TanhBackward0",
              "sigmoid": "SigmoidBackward0", "relu": "ReluBackward0", "leaky_relu": "LeakyReluBackward0",
              "elu": "EluBackward0", "gelu": "GeluBackward0", "gelu_tanh": "GeluBackward0", "silu": "SiluBackward0",
              "softplus": "SoftplusBackward0", "sign": "SignBackward0", "floor": "FloorBackward0",
              "ceil": "CeilBackward0", "round": "RoundBackward0", "trunc": "TruncBackward0",
              "clamp": "ClampBackward1", "clamp_min": "ClampMinBackward0", "clamp_max": "ClampMaxBackward0",
              "reciprocal": "ReciprocalBackward0", "pow2": "PowBackward0", "pow3": "PowBackward0",
              "pow_half": "PowBackward0", "pow_neg": "PowBackward0", "square": "PowBackward0",
              "erf": "ErfBackward0", "hardtanh": "HardtanhBackward0"}


def test_node_names():
    x = torch.tensor([0.5, 1.5], requires_grad=True)
    for name, fn in UNARY.items():
        assert fn[0](x).grad_fn.name() == NODE_NAMES[name], name
    y = torch.tensor([2.0, 3.0], requires_grad=True)
    for expr, expected in [(lambda: x + y, "AddBackward0"), (lambda: x + 1, "AddBackward0"),
                           (lambda: x - y, "SubBackward0"), (lambda: 1 - x, "RsubBackward1"),
                           (lambda: x * y, "MulBackward0"), (lambda: x * 2, "MulBackward0"),
                           (lambda: x / y, "DivBackward0"), (lambda: x ** y, "PowBackward1"),
                           (lambda: 2 ** x, "PowBackward2"), (lambda: torch.maximum(x, y), "MaximumBackward0"),
                           (lambda: torch.minimum(x, y), "MinimumBackward0"),
                           (lambda: x % y, "RemainderBackward0"), (lambda: x.to(torch.float64), "ToCopyBackward0"),
                           (lambda: x.clone(), "CloneBackward0"), (lambda: -x, "NegBackward0")]:
        assert expr().grad_fn.name() == expected


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "pow", "maximum", "minimum", "add_alpha", "sub_alpha",
                                  "remainder", "fmod"])
def test_binary_backward_broadcast(name, device):
    fn, ref = BINARY[name] if name in BINARY else (getattr(torch, name), {"remainder": np.mod, "fmod": np.fmod}[name])
    rng = np.random.default_rng(13)
    ar = rng.uniform(0.5, 2.0, (3, 1, 4))
    br = rng.uniform(0.5, 2.0, (5, 4)) * rng.choice([-1, 1], (5, 4)) if name not in ("pow", "remainder", "fmod") \
        else rng.uniform(0.6, 1.7, (5, 4))
    if name in ("remainder", "fmod"):
        ar = ar + 3.0
    gr = rng.uniform(-1, 1, (3, 5, 4))
    a = torch.tensor(ar, device=device, requires_grad=True)
    b = torch.tensor(br, device=device).t().contiguous().t().requires_grad_(True)     # a non-contiguous leaf
    out = fn(a, b)
    out.backward(torch.tensor(gr, device=device))
    da = _fd(lambda v: ref(v, br), np.broadcast_to(ar, (3, 5, 4)))
    db = _fd(lambda v: ref(ar, v), np.broadcast_to(br, (3, 5, 4)))
    assert_close(a.grad, (gr * da).sum(axis=1, keepdims=True), rtol=1e-6, atol=1e-6, msg=name)
    assert_close(b.grad, (gr * db).sum(axis=0), rtol=1e-6, atol=1e-6, msg=name)


def test_binary_backward_mixed_dtypes_and_scalars(device):
    a = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float16, device=device, requires_grad=True)
    b = torch.tensor([[0.5], [2.0]], dtype=torch.float32, device=device, requires_grad=True)
    out = a * b
    assert out.dtype is torch.float32
    out.backward(torch.ones(2, 3, device=device))
    assert a.grad.dtype is torch.float16 and b.grad.dtype is torch.float32
    assert_close(a.grad, np.array([2.5, 2.5, 2.5]), torch.float16)
    assert_close(b.grad, np.array([[6.0], [6.0]]))
    x = torch.tensor([1.0, 4.0], device=device, requires_grad=True)
    ((3 - x) * 2 + x / 4 - 2 ** x + x ** 2).backward(torch.ones(2, device=device))
    assert_close(x.grad, -2 + 0.25 - np.log(2) * 2 ** np.array([1.0, 4.0]) + 2 * np.array([1.0, 4.0]))


def test_minmax_ties_split_gradient(device):
    x = torch.tensor([1.0, 2.0, 3.0], device=device, requires_grad=True)
    y = torch.tensor([1.0, 5.0, 0.0], device=device, requires_grad=True)
    torch.maximum(x, y).backward(torch.ones(3, device=device))
    assert_close(x.grad, [0.5, 0.0, 1.0])
    assert_close(y.grad, [0.5, 1.0, 0.0])


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "tanh", "sigmoid", "silu", "gelu", "gelu_tanh", "elu",
                                  "sin", "reciprocal", "pow3", "softplus", "rsqrt", "log1p", "expm1"])
def test_double_backward(name, device):
    """create_graph=True: the backward is built from differentiable ops; its derivative matches finite
    differences of the (fused, first-order) gradient."""
    fn = UNARY[name][0]
    x, xr = _input(name, (6,), torch.float64, device, seed=14, requires_grad=True)
    ones = torch.ones(6, dtype=torch.float64, device=device)
    (g1,) = torch.autograd.grad(fn(x), x, ones, create_graph=True)
    assert g1.requires_grad
    g1.backward(ones)

    def first(v):
        t = torch.tensor(v, device=device, requires_grad=True)
        fn(t).backward(torch.ones(6, dtype=torch.float64, device=device))
        return to_np(t.grad)
    assert_close(x.grad, _fd(first, xr, 1e-5), rtol=1e-5, atol=1e-6, msg=name)


# ---- in-place ----------------------------------------------------------------------------------------------------

INPLACE = {
    "add_": (lambda t, o: t.add_(o, alpha=2), lambda a, b: a + 2 * b),
    "sub_": (lambda t, o: t.sub_(o), np.subtract), "mul_": (lambda t, o: t.mul_(o), np.multiply),
    "div_": (lambda t, o: t.div_(o), np.divide), "pow_": (lambda t, o: t.abs_().pow_(o), lambda a, b: np.abs(a) ** b),
    "iadd": (lambda t, o: t.__iadd__(o), np.add), "isub": (lambda t, o: t.__isub__(o), np.subtract),
    "imul": (lambda t, o: t.__imul__(o), np.multiply), "itruediv": (lambda t, o: t.__itruediv__(o), np.divide),
}
INPLACE_UNARY = {
    "neg_": np.negative, "exp_": np.exp, "abs_": np.abs, "sigmoid_": _sig, "tanh_": np.tanh,
    "relu_": lambda a: np.maximum(a, 0), "sqrt_": lambda a: np.sqrt(np.abs(a)), "zero_": np.zeros_like,
    "clamp_": lambda a: np.clip(a, -0.5, 0.5), "clamp_min_": lambda a: np.maximum(a, 0.1),
    "clamp_max_": lambda a: np.minimum(a, 0.1), "floor_": np.floor, "sin_": np.sin, "log1p_": None,
}


@pytest.mark.parametrize("name", list(INPLACE))
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "strided"])
def test_inplace_binary(name, layout, device):
    fn, ref = INPLACE[name]
    x, xr = make((3, 6), torch.float32, device, layout, seed=20)
    o, orr = make((6,), torch.float32, device, low=0.5, seed=21)
    base_storage, v0 = x._storage, x._version
    r = fn(x, o)
    assert r is x and x._storage is base_storage and x._version > v0
    with np.errstate(all="ignore"):
        assert_close(x, ref(xr, orr), msg=name)
        y, yr = make((3, 6), torch.float32, device, layout, seed=22)
        fn(y, 0.5)
        assert_close(y, ref(yr, 0.5), msg=name)


def test_inplace_writes_only_the_view(device):
    base = torch.zeros(4, 6, device=device)
    v = base[1:3, ::2]
    v.add_(torch.tensor([1.0, 2.0, 3.0], device=device))
    v.mul_(2)
    v.exp_()
    expect = np.zeros((4, 6))
    expect[1:3, ::2] = np.exp(2 * np.array([1.0, 2.0, 3.0]))
    assert_close(base, expect)
    t = torch.zeros(3, 4, device=device).t()          # a transposed self: written through its strides
    t.add_(torch.arange(12, device=device).reshape(4, 3).float())
    assert_close(t, np.arange(12.0).reshape(4, 3))


def test_inplace_overlapping_other(device):
    x = torch.tensor(np.arange(9.0).reshape(3, 3), device=device)
    x.add_(x.t())
    a = np.arange(9.0).reshape(3, 3)
    assert_close(x, a + a.T)
    y = torch.tensor(np.arange(6.0), device=device)
    y[1:].mul_(y[:-1])
    b = np.arange(6.0)
    b[1:] = b[1:] * np.arange(6.0)[:-1]
    assert_close(y, b)


@pytest.mark.parametrize("name", [n for n in INPLACE_UNARY if INPLACE_UNARY[n] is not None])
def test_inplace_unary(name, device):
    x, xr = make((5, 3), torch.float32, device, "transposed", seed=23)
    args = {"clamp_": (-0.5, 0.5), "clamp_min_": (0.1,), "clamp_max_": (0.1,)}.get(name, ())
    if name == "sqrt_":
        x.abs_()
    v0 = x._version
    r = getattr(x, name)(*args)
    assert r is x and x._version > v0
    with np.errstate(all="ignore"):
        assert_close(x, INPLACE_UNARY[name](xr))


def test_fill_and_zero(device):
    x = torch.ones(3, 4, device=device).t()
    x.fill_(2.5)
    assert_close(x, np.full((4, 3), 2.5))
    x.zero_()
    assert_close(x, np.zeros((4, 3)))
    i = torch.zeros(5, dtype=torch.int32, device=device)
    i.fill_(torch.tensor(7))
    np.testing.assert_array_equal(to_np(i), [7] * 5)


def test_inplace_dtype_rules(device):
    i = torch.tensor([1, 2, 3], device=device)
    with pytest.raises(RuntimeError, match="result type Float can't be cast to the desired output type Long"):
        i += torch.tensor([1.0, 2.0, 3.0], device=device)
    with pytest.raises(RuntimeError, match="result type Float can't be cast to the desired output type Long"):
        i += 1.5
    with pytest.raises(RuntimeError, match="result type Float can't be cast to the desired output type Long"):
        i /= 2
    with pytest.raises(RuntimeError, match="result type Float can't be cast to the desired output type Long"):
        i.exp_()
    with pytest.raises(RuntimeError, match="result type Long can't be cast to the desired output type Bool"):
        torch.tensor([True], device=device).add_(1)
    i //= 2
    i *= 3
    np.testing.assert_array_equal(to_np(i), [0, 3, 3])
    h = torch.tensor([1.0, 2.0], dtype=torch.float16, device=device)
    h += torch.tensor([0.5, 0.25], dtype=torch.float64, device=device)        # double -> half: allowed
    assert h.dtype is torch.float16
    assert_close(h, [1.5, 2.25], torch.float16)
    with pytest.raises(RuntimeError, match=r"output with shape \[3\] doesn't match the broadcast shape \[2, 3\]"):
        torch.ones(3, device=device).add_(torch.ones(2, 3, device=device))
    with pytest.raises(RuntimeError, match="more than one element of the written-to tensor"):
        torch.ones(1, 3, device=device).expand(2, 3).add_(1)


def test_inplace_autograd(device):
    w = torch.tensor([1.0, 2.0, 3.0], device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place"):
        w.add_(1)
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad"):
        w *= 2
    with torch.no_grad():
        w.mul_(1.0)                       # allowed without grad mode
    h = w * 2
    same = h
    h.mul_(w)
    assert h is same and h.grad_fn.name() == "MulBackward0"
    h.sub_(w, alpha=0.5)
    h.exp_()                               # exp saves its output: no in-place op may follow it (as in PyTorch)
    assert h.grad_fn.name() == "ExpBackward0"
    h.backward(torch.ones(3, device=device))
    wr = np.array([1.0, 2.0, 3.0])
    assert_close(w.grad, np.exp(2 * wr ** 2 - 0.5 * wr) * (4 * wr - 0.5), rtol=1e-5)
    a = torch.zeros(3, device=device)
    a.add_(w)                              # a plain tensor picks up history from its other operand
    assert a.requires_grad and a.grad_fn.name() == "AddBackward0"
    b = w.sigmoid()
    c = b * b
    b.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        c.backward(torch.ones(3, device=device))


def test_inplace_on_view_records_on_base(device):
    w = torch.tensor([1.0, 2.0, 3.0], device=device, requires_grad=True)
    x = w * 1
    v = x[1:]
    v.mul_(w[1:])
    v.exp_()
    assert x.grad_fn.name() == "CopySlices"
    x.sum().backward()
    wr = np.array([2.0, 3.0])
    assert_close(w.grad, [1.0, *(2 * wr * np.exp(wr ** 2))], rtol=1e-5)
    before = w.detach().clone()
    with pytest.raises(RuntimeError, match="a view of a leaf Variable that requires grad"):
        w[1:].add_(1)
    assert_close(w.detach(), before)                     # refused before anything was written


@pytest.mark.parametrize("name", ["relu_", "sigmoid_", "tanh_", "exp_", "abs_", "neg_", "sqrt_", "clamp_"])
def test_inplace_unary_backward_matches_out_of_place(name, device):
    w = torch.tensor([0.3, 1.2, 2.0, 0.7], device=device, requires_grad=True)
    args = (0.5, 1.5) if name == "clamp_" else ()
    h = w * 1.5
    getattr(h, name)(*args)
    h.backward(torch.tensor([1.0, -2.0, 0.5, 3.0], device=device))
    w2 = torch.tensor([0.3, 1.2, 2.0, 0.7], device=device, requires_grad=True)
    getattr(w2 * 1.5, name[:-1])(*args).backward(torch.tensor([1.0, -2.0, 0.5, 3.0], device=device))
    assert_close(w.grad, w2.grad)


# ---- errors ------------------------------------------------------------------------------------------------------

def test_errors(device):
    with pytest.raises(RuntimeError, match=r"\(2, 3\).*\(4,\).*cannot be broadcast"):
        torch.ones(2, 3, device=device) + torch.ones(4, device=device)
    with pytest.raises(RuntimeError, match=r"bitwise_and.*not implemented for 'Float'"):
        torch.ones(2, device=device) & torch.ones(2, device=device)
    with pytest.raises(TypeError, match="must be Tensor or Number"):
        torch.add(torch.ones(2, device=device), "a")
    with pytest.raises(RuntimeError, match="alpha must not be a floating point number"):
        torch.add(torch.ones(2, dtype=torch.int64, device=device), 1, alpha=0.5)


def test_mixed_devices():
    a, b = torch.ones(2), torch.ones(2, device="cuda")
    with pytest.raises(RuntimeError, match="expected all tensors to be on the same device"):
        a + b
    with pytest.raises(RuntimeError, match="expected all tensors to be on the same device"):
        torch.where(torch.ones(2, dtype=torch.bool), a, b)
    out = b + torch.tensor(2.0)                  # a cpu 0-d tensor goes with any device, as in PyTorch
    assert out.device == b.device
    assert_close(out, [3.0, 3.0])


def test_unsupported_dtype():
    with pytest.raises(TypeError, match="unsupported dtype"):
        torch.tensor(np.array([1 + 2j]))
    with pytest.raises(TypeError, match="unsupported dtype"):
        torch.ones(2).to(np.complex64)


# ---- properties --------------------------------------------------------------------------------------------------

@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=3),
       op=st.sampled_from(["add", "mul", "sub", "maximum", "gt"]), seed=st.integers(0, 1000))
def test_broadcasting_property(shapes, op, seed, device):
    sa, sb = shapes.input_shapes
    rng = np.random.default_rng(seed)
    ar, br = rng.normal(size=sa).astype(np.float32), rng.normal(size=sb).astype(np.float32)
    out = getattr(torch, op)(torch.tensor(ar, device=device), torch.tensor(br, device=device))
    ref = {"add": np.add, "mul": np.multiply, "sub": np.subtract, "maximum": np.maximum, "gt": np.greater}[op](ar, br)
    assert tuple(out.shape) == shapes.result_shape
    if op == "gt":
        np.testing.assert_array_equal(to_np(out), ref)
    else:
        assert_close(out, ref.astype(np.float64), torch.float32)


def test_tolerance_table_covers_floats():
    assert set(FLOATS) <= set(TOL)


# ---- gradient coverage: gradcheck / gradgradcheck (cpu, float64) and interpreted cuda against cpu ----------------

gradcheck, gradgradcheck = torch.autograd.gradcheck, torch.autograd.gradgradcheck

# binary ops as functions of two tensors: name -> (call, range of a, range of b); a is (2, 1, 3), b a transposed (4, 3)
GRAD_BINARY = {
    "add": (torch.add, None, None),
    "add_alpha": (lambda a, b: torch.add(a, b, alpha=2.5), None, None),
    "sub": (torch.sub, None, None),
    "sub_alpha": (lambda a, b: torch.sub(a, b, alpha=-3), None, None),
    "mul": (torch.mul, None, None),
    "div": (torch.div, None, (0.5, 2.0)),
    "div_floor": (lambda a, b: torch.div(a, b, rounding_mode="floor"), None, (0.5, 2.0)),
    "div_trunc": (lambda a, b: torch.div(a, b, rounding_mode="trunc"), None, (0.5, 2.0)),
    "remainder": (torch.remainder, (-4.0, 4.0), (0.6, 1.7)),
    "fmod": (torch.fmod, (-4.0, 4.0), (0.6, 1.7)),
    "pow": (torch.pow, (0.5, 2.0), None),
    "maximum": (torch.maximum, None, None),
    "minimum": (torch.minimum, None, None),
    "where": (lambda a, b: torch.where((torch.arange(b.shape[0], device=b.device) % 3 != 1).reshape(-1, 1), a, b),
              None, None),
}
# ops with a Python scalar, as functions of one tensor
GRAD_SCALAR = {
    "add_scalar": lambda a: a + 2.5, "rsub": lambda a: 2.5 - a, "mul_scalar": lambda a: a * -1.5,
    "rdiv": lambda a: 3.0 / a, "rpow": lambda a: 2 ** a, "remainder_scalar": lambda a: a % 0.7,
    "fmod_scalar": lambda a: torch.fmod(a, 0.7), "maximum_0d": lambda a: torch.maximum(a, torch.tensor(0.3,
                                                                                               dtype=a.dtype)),
    "where_scalar": lambda a: torch.where(a > 1.0, a, 0.5), "clamp_tensor_bound": lambda a: a.clamp(
        min=torch.tensor(0.8, dtype=a.dtype)),
}


def _binary_inputs(name, dtype, device, shapes=((2, 1, 3), (4, 3)), seed=30):
    ra = GRAD_BINARY[name][1] or (-2.0, 2.0)
    rb = GRAD_BINARY[name][2] or (-2.0, 2.0)
    a, _ = make(shapes[0], dtype, device, "contiguous", low=ra[0], high=ra[1], seed=seed)
    b, _ = make(shapes[1], dtype, device, "transposed", low=rb[0], high=rb[1], seed=seed + 1)
    if name in ("div", "div_floor", "div_trunc"):
        b = b * torch.where(torch.arange(b.numel(), device=device).reshape(b.shape) % 2 == 0, 1.0, -1.0).to(dtype)
    return a.requires_grad_(True), b.requires_grad_(True)


@pytest.mark.parametrize("name", list(UNARY))
def test_gradcheck_unary(name):
    fn = UNARY[name][0]
    for shape, layout in (((3, 5), "transposed"), ((), "contiguous")):
        x, _ = _input(name, shape, torch.float64, "cpu", layout, seed=31, requires_grad=True)
        assert gradcheck(fn, (x,)), name
        assert gradgradcheck(fn, (x,)), name


@pytest.mark.parametrize("name", list(GRAD_BINARY))
def test_gradcheck_binary(name):
    fn = GRAD_BINARY[name][0]
    a, b = _binary_inputs(name, torch.float64, "cpu")
    assert gradcheck(fn, (a, b)), name
    assert gradgradcheck(fn, (a, b)), name
    if name != "where":
        a0, b0 = _binary_inputs(name, torch.float64, "cpu", shapes=((), (5,)), seed=32)
        assert gradcheck(fn, (a0, b0)) and gradgradcheck(fn, (a0, b0)), name


@pytest.mark.parametrize("name", list(GRAD_SCALAR))
def test_gradcheck_scalar_operand(name):
    x, _ = make((2, 5), torch.float64, "cpu", "transposed", low=0.3, high=2.0, seed=33, requires_grad=True)
    assert gradcheck(GRAD_SCALAR[name], (x,)) and gradgradcheck(GRAD_SCALAR[name], (x,)), name


def _first_and_second(fn, inputs, g, v):
    """First-order grads (fused backward) and the grads of <grad, v> (create_graph backward) w.r.t. the inputs."""
    out = fn(*inputs)
    first = torch.autograd.grad(out, inputs, g, allow_unused=True)
    gs = torch.autograd.grad(fn(*inputs), inputs, g, create_graph=True, allow_unused=True)
    terms = [(gi * vi).sum() for gi, vi in zip(gs, v) if gi is not None and gi.requires_grad]
    second = torch.autograd.grad(terms, inputs, allow_unused=True) if terms else (None,) * len(inputs)
    return first, second


def _compare_devices(fn, make_inputs, out_shape):
    """The interpreted-cuda backward (first and second order) against cpu's, at float32 tolerance."""
    res = {}
    for dev in ("cpu", "cuda"):
        inputs = make_inputs(dev)
        g, _ = make(out_shape, torch.float32, dev, "transposed" if len(out_shape) >= 2 else "contiguous", seed=40)
        v = [make(t.shape, torch.float32, dev, seed=41 + i)[0] for i, t in enumerate(inputs)]
        res[dev] = _first_and_second(fn, inputs, g, v)
    for order in (0, 1):
        for gc, gg in zip(res["cuda"][order], res["cpu"][order]):
            assert (gc is None) == (gg is None)
            if gc is not None:
                assert gc.device.type == "cuda" and gc.shape == gg.shape and gc.dtype is torch.float32
                assert_close(gc, to_np(gg), torch.float32, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list(UNARY))
def test_backward_cuda_matches_cpu_unary(name):
    fn = UNARY[name][0]
    for shape, layout in (((3, 101), "transposed"), ((), "contiguous")):      # 303 elements: two programs
        _compare_devices(fn, lambda dev: [_input(name, shape, torch.float32, dev, layout, seed=34,
                                                 requires_grad=True)[0]], shape)


@pytest.mark.parametrize("name", list(GRAD_BINARY))
def test_backward_cuda_matches_cpu_binary(name):
    fn = GRAD_BINARY[name][0]
    _compare_devices(fn, lambda dev: list(_binary_inputs(name, torch.float32, dev, ((2, 1, 7), (3, 7)))), (2, 3, 7))
    if name != "where":
        _compare_devices(fn, lambda dev: list(_binary_inputs(name, torch.float32, dev, ((), (7,)), seed=35)), (7,))


def test_kink_gradients(device):
    """Gradients at the points where the derivative jumps are PyTorch's: relu 0 at 0, leaky_relu the slope, elu
    alpha, abs 0, clamp and hardtanh 0 on their bounds (PyTorch 2.x), maximum/minimum split ties evenly."""
    x = torch.tensor([-0.5, 0.0, 0.7, 1.0], device=device, requires_grad=True)
    cases = [(torch.relu, [0, 0, 1, 1]), (lambda t: F["leaky_relu"](t, 0.2), [0.2, 0.2, 1, 1]),
             (lambda t: F["elu"](t, 1.5), [1.5 * math.exp(-0.5), 1.5, 1, 1]), (torch.abs, [-1, 0, 1, 1]),
             (lambda t: t.clamp(-0.5, 0.7), [0, 1, 0, 0]), (lambda t: F["hardtanh"](t, -0.5, 0.7), [0, 1, 0, 0]),
             (lambda t: t.clamp_min(0.0), [0, 0, 1, 1]), (lambda t: t.clamp_max(0.7), [1, 1, 0, 0]),
             (lambda t: torch.maximum(t, torch.zeros(4, device=device)), [0, 0.5, 1, 1]),
             (lambda t: torch.minimum(t, torch.full((4,), 0.7, device=device)), [1, 1, 0.5, 0]),
             (lambda t: torch.maximum(t, torch.tensor(0.0, device=device)), [0, 0.5, 1, 1]),
             (torch.sign, [0, 0, 0, 0]), (torch.floor, [0, 0, 0, 0]), (torch.round, [0, 0, 0, 0])]
    for i, (fn, expected) in enumerate(cases):
        (g,) = torch.autograd.grad(fn(x), x, torch.ones(4, device=device))
        assert_close(g, np.array(expected, dtype=np.float64), msg=f"case {i}")


def test_minmax_tie_split_other_side_broadcast(device):
    """A broadcast operand that ties with several elements collects half of each of their gradients."""
    x = torch.tensor([[1.0, 2.0, 3.0]], device=device, requires_grad=True)
    y = torch.tensor([[2.0], [1.0]], device=device, requires_grad=True)
    torch.minimum(x, y).backward(torch.ones(2, 3, device=device))
    assert_close(x.grad, [[1.5, 0.5, 0.0]])
    assert_close(y.grad, [[0.5 + 1.0], [0.5 + 1.0 + 1.0]])


def test_floor_divide_has_no_derivative(device):
    """As in PyTorch: ``floor_divide`` (and ``//``) runs forward on tensors that require grad but its backward is not
    implemented; ``div(..., rounding_mode=...)`` has zero gradients."""
    x = torch.tensor([3.0, -2.5], device=device, requires_grad=True)
    y = torch.tensor([2.0, 0.75], device=device, requires_grad=True)
    xr, yr = np.array([3.0, -2.5]), np.array([2.0, 0.75])
    for out, expected in ((x // y, np.floor_divide(xr, yr)), (torch.floor_divide(x, y), np.floor_divide(xr, yr)),
                          (x // 2, np.floor_divide(xr, 2)), (5 // x, np.floor_divide(5, xr)),
                          (x.floor_divide(y), np.floor_divide(xr, yr))):
        assert out.requires_grad
        assert_close(out.detach(), expected)
        with pytest.raises(RuntimeError, match="the derivative for 'floor_divide' is not implemented"):
            out.sum().backward()
    with torch.no_grad():
        assert not (x // y).requires_grad
    gx, gy = torch.autograd.grad(torch.div(x, y, rounding_mode="floor").sum(), (x, y))
    assert_close(gx, [0.0, 0.0])
    assert_close(gy, [0.0, 0.0])


def test_cpu_fast_path_results():
    """The cpu fast path (same dtype and shape, nothing to record) gives what the general path gives: C-contiguous
    results that own their memory, half types computed in float32, no NumPy floating-point warnings."""
    import warnings
    a, ar = make((3, 5), torch.float32, "cpu", "transposed", seed=50)
    b, br = make((3, 5), torch.float32, "cpu", "transposed", seed=51)
    for out, ref in ((a + b, ar + br), (a * 0.5, ar * 0.5), (a - 2, ar - 2), (a > b, ar > br), (a.exp(), np.exp(ar)),
                     (torch.relu(a), np.maximum(ar, 0)), (torch.isnan(a), np.isnan(ar))):
        assert out.is_contiguous() and out._storage is not a._storage and out._storage is not b._storage
        assert_close(out, ref, out.dtype)
    s = torch.tensor(1.5) * torch.tensor(2.0)
    assert s.shape == () and s.item() == 3.0
    h = torch.tensor([1000.0, 2.0], dtype=torch.float16)
    assert_close(h * 0.001 + 1, np.array([2.0, 1.002]), torch.float16)
    assert (h + h).dtype is torch.float16 and (h > 1.0).dtype is torch.bool
    big = torch.tensor([3e38, 1.0, 0.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        total, ratio, logs = big + big, big / torch.zeros(3), torch.log(big - 1)
    assert_close(total, np.array([np.inf, 2.0, 0.0]))
    assert_close(ratio, np.array([np.inf, np.inf, np.nan]))
    assert_close(logs, np.array([math.log(3e38), -np.inf, np.nan]))
    c = a + b
    c.add_(1.0)
    assert_close(a, ar)
    assert_close(b, br)


# ---- regressions of the fuzzing report (issue 14) ------------------------------------------------------------------

_SPECIAL = [-math.inf, -3.0, -2.5, -2.0, -1.0, -0.5, -0.3, -0.0, 0.0, 0.3, 0.5, 1.0, 2.0, 2.5, 3.0, 1e30, -1e30,
            math.inf, math.nan]


def _assert_same_special(out, ref, msg=""):
    """Exactly the same NaNs, infinities and signed zeros; finite values to float32 precision."""
    a, e = to_np(out).astype(np.float64), np.asarray(ref, dtype=np.float64)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(e), err_msg=msg)
    fin = np.isfinite(e)
    np.testing.assert_array_equal(a[~fin & ~np.isnan(e)], e[~fin & ~np.isnan(e)], err_msg=msg)
    np.testing.assert_array_equal(np.signbit(a[e == 0]), np.signbit(e[e == 0]), err_msg=msg)
    np.testing.assert_allclose(a[fin], e[fin], rtol=1e-5, err_msg=msg)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pow_ieee_special_values(dtype, device):
    """pow follows C's pow special cases (as PyTorch's tensor pow does): a grid of special bases and exponents, as
    tensors and with the exponent a Python number. NumPy's np.power with an exponent array is the reference (with
    a broadcast exponent 0.5 NumPy takes sqrt instead)."""
    xs, ys = (np.array(v, dtype=dtype.np) for v in zip(*[(a, b) for a in _SPECIAL for b in _SPECIAL]))
    with np.errstate(all="ignore"):
        ref = np.power(xs, ys)
    out = torch.tensor(xs, device=device) ** torch.tensor(ys, device=device)
    assert out.dtype is dtype
    _assert_same_special(out, ref)
    base = torch.tensor(np.array(_SPECIAL, dtype=dtype.np), device=device)
    for y in _SPECIAL:
        with np.errstate(all="ignore"):
            ref = np.power(np.array(_SPECIAL, dtype=dtype.np), np.full(len(_SPECIAL), y, dtype=dtype.np))
        _assert_same_special(base ** y, ref, msg=f"exponent {y}")
        _assert_same_special(torch.pow(base, y), ref, msg=f"exponent {y}")
    # the cases of the report, PyTorch's values
    x = torch.tensor([-math.inf, -math.inf, -math.inf, -0.0, -0.0, math.nan, 1.0, -1.0], dtype=dtype, device=device)
    y = torch.tensor([-0.3, 2.5, 3.0, -1.0, 0.5, 0.0, math.nan, math.inf], dtype=dtype, device=device)
    _assert_same_special(x ** y, [0.0, math.inf, -math.inf, -math.inf, 0.0, 1.0, 1.0, 1.0])


def test_pow_special_values_half_types(device):
    """The half types compute pow in float32: the same special cases."""
    for dtype in (torch.float16, torch.bfloat16):
        x = torch.tensor([-math.inf, -math.inf, -0.0, -0.0, -2.0, -0.5, math.nan], device=device).to(dtype)
        y = torch.tensor([-0.3, 2.5, 3.0, -0.5, math.inf, -math.inf, 0.0], device=device).to(dtype)
        _assert_same_special(x ** y, [0.0, math.inf, -0.0, math.inf, math.inf, math.inf, 1.0], msg=str(dtype))


@pytest.mark.parametrize("dtype", INTS)
def test_hardtanh_relu6_keep_integer_dtype(dtype, device):
    """hardtanh and relu6 keep an integer input's type (the bounds truncated toward zero), as PyTorch."""
    vals = [0, 1, 7, 100] if dtype is torch.uint8 else [-3, 0, 1, 8, 100]
    x = torch.tensor(vals, dtype=dtype, device=device)
    nnF = torch.nn.functional
    out = nnF.relu6(x)
    assert out.dtype is dtype
    np.testing.assert_array_equal(to_np(out), np.clip(vals, 0, 6))
    y = x.clone()
    assert nnF.relu6(y, inplace=True) is y and y.dtype is dtype
    np.testing.assert_array_equal(to_np(y), np.clip(vals, 0, 6))
    lo = 0.0 if dtype is torch.uint8 else -1.5
    out = nnF.hardtanh(x, lo, 2.7)
    assert out.dtype is dtype
    np.testing.assert_array_equal(to_np(out), np.clip(vals, int(lo), 2))
    if dtype is torch.uint8:
        with pytest.raises(RuntimeError, match="cannot do hardtanh on an unsigned type with negative limits"):
            nnF.hardtanh(x)
    else:
        out = nnF.hardtanh(x)
        assert out.dtype is dtype
        np.testing.assert_array_equal(to_np(out), np.clip(vals, -1, 1))


def test_activation_input_types(device):
    """PyTorch's result types and errors of the activations for integer and bool inputs."""
    nnF = torch.nn.functional
    i16 = torch.tensor([-3, 0, 8], dtype=torch.int16, device=device)
    b = torch.tensor([True, False], device=device)
    for fn, name in ((nnF.leaky_relu, "leaky_relu"), (nnF.elu, "elu"), (nnF.gelu, "gelu"), (nnF.silu, "silu"),
                     (nnF.softplus, "softplus"), (lambda t: nnF.gelu(t, approximate="tanh"), "gelu")):
        with pytest.raises(NotImplementedError, match=f"{name}_{device}.*not implemented for 'Short'"):
            fn(i16)
        with pytest.raises(NotImplementedError, match="not implemented for 'Bool'"):
            fn(b)
    for fn in (torch.relu, nnF.relu6, nnF.hardtanh, torch.abs, torch.floor, torch.round):
        with pytest.raises(NotImplementedError, match="Bool"):
            fn(b)
    assert torch.relu(i16).dtype is torch.int16 and torch.sigmoid(i16).dtype is torch.float32
    for out in (torch.square(b), b ** 2, b ** 3):
        assert out.dtype is torch.int64
        np.testing.assert_array_equal(to_np(out), [1, 0])
    assert torch.sign(b).dtype is torch.bool and torch.clamp(b, 0, 1).dtype is torch.int64


def test_bitwise_operators_promote(device):
    """&, |, ^ on a bool tensor are the bitwise ops with PyTorch's promotion (bool & uint8 is uint8), not the
    logical ones; each bitwise op's result type is the promoted type for every pair of integer/bool dtypes."""
    b = torch.tensor([True, False, True], device=device)
    u = torch.tensor([3, 2, 1], dtype=torch.uint8, device=device)
    for out, ref in ((b & u, [1, 0, 1]), (b | u, [3, 2, 1]), (b ^ u, [2, 2, 0]), (u & b, [1, 0, 1])):
        assert out.dtype is torch.uint8
        np.testing.assert_array_equal(to_np(out), ref)
    assert (b | 3).dtype is torch.int64 and (b & True).dtype is torch.bool and (b ^ b).dtype is torch.bool
    np.testing.assert_array_equal(to_np(b | 3), [3, 3, 3])
    c = b.clone()
    c &= torch.tensor([False, True, True], device=device)
    np.testing.assert_array_equal(to_np(c), [False, False, True])
    with pytest.raises(RuntimeError, match="result type Byte can't be cast to the desired output type Bool"):
        c |= u
    kinds = [torch.bool] + INTS
    for da in kinds:
        for db in kinds:
            x, y = torch.ones(3, dtype=da, device=device), torch.ones(3, dtype=db, device=device)
            for name, op in (("bitwise_and", lambda p, q: p & q), ("bitwise_or", lambda p, q: p | q),
                             ("bitwise_xor", torch.bitwise_xor)):
                out = op(x, y)
                assert out.dtype is torch.promote_types(da, db), (name, da, db)
                np.testing.assert_array_equal(to_np(out), np.full(3, 0 if name == "bitwise_xor" else 1))
    with pytest.raises(NotImplementedError, match="bitwise_and.*not implemented for 'Float'"):
        b & torch.ones(3, device=device)


def test_clamp_nan_bounds_propagate(device):
    """A NaN bound (scalar or one-element tensor; min, max, clamp_min, clamp_max, in place) makes every result NaN,
    a NaN input stays NaN, min > max gives max, as PyTorch."""
    nan = math.nan
    x = torch.tensor([-1.0, 0.5, 2.0, nan], device=device)
    all_nan = [nan] * 4
    for out in (torch.clamp(x, min=nan), torch.clamp(x, max=nan), torch.clamp(x, 0.0, nan), torch.clamp(x, nan, 1.0),
                torch.clamp(x, min=torch.tensor(nan, device=device)), torch.clamp_min(x, nan),
                torch.clamp_max(x, nan), x.clone().clamp_(min=nan), x.clone().clamp_max_(nan),
                torch.nn.functional.hardtanh(x, nan, 1.0), torch.clamp(x.to(torch.float16), min=nan),
                torch.clamp(x.to(torch.float64), max=nan)):
        assert_close(out, all_nan, torch.float32)
    assert_close(torch.clamp(x, 0.0, 1.0), [0.0, 0.5, 1.0, nan])
    assert_close(torch.clamp(x, 1.0, 0.0), [0.0, 0.0, 0.0, nan])
    out = torch.clamp(torch.tensor([1, 2], device=device), min=nan)
    assert out.dtype is torch.float32
    assert_close(out, [nan, nan])
    with pytest.raises(RuntimeError, match="value cannot be converted to type int64_t without overflow"):
        torch.nn.functional.hardtanh(torch.tensor([1, 2], device=device), nan, 1.0)


def test_integer_division_by_zero(device):
    """Integer //, %, fmod, remainder and div with a rounding mode by zero raise PyTorch's RuntimeError
    ('ZeroDivisionError') for a Python-number divisor on every device and for a divisor tensor on cpu. On cuda a
    divisor tensor is not checked (that would wait for the device; PyTorch's CUDA does not raise either): the
    result there is 0. Floating division by zero is IEEE's."""
    x = torch.tensor([5, -3, 0], device=device)
    z = torch.tensor([0, 2, -2], device=device)
    calls = {"//": lambda a, b: a // b, "%": lambda a, b: a % b, "fmod": torch.fmod, "remainder": torch.remainder,
             "floor": lambda a, b: torch.div(a, b, rounding_mode="floor"),
             "trunc": lambda a, b: torch.div(a, b, rounding_mode="trunc"), "floor_divide": torch.floor_divide,
             "inplace": lambda a, b: a.clone().floor_divide_(b)}
    for name, fn in calls.items():
        with pytest.raises(RuntimeError, match="ZeroDivisionError"):
            fn(x, 0)
        with pytest.raises(RuntimeError, match="ZeroDivisionError"):
            fn(x.to(torch.uint8), torch.tensor(0, dtype=torch.uint8, device="cpu"))
        if device == "cpu":
            with pytest.raises(RuntimeError, match="ZeroDivisionError"):
                fn(x, z)
        else:
            np.testing.assert_array_equal(to_np(fn(x, z))[0], 0, err_msg=name)
        assert fn(torch.tensor([], dtype=torch.int64, device=device), 0).numel() == 0
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        5 // torch.tensor([0, 1], device="cpu")
    np.testing.assert_array_equal(to_np(x // torch.tensor([2, 2, 2], device=device)), [2, -2, 0])
    assert_close(x.float() // 0, [math.inf, -math.inf, math.nan])
    assert_close(torch.fmod(x.float(), 0.0), [math.nan] * 3)


@pytest.mark.parametrize("value", [2 ** 70, -2 ** 63 - 1, 2 ** 64])
def test_int_scalar_beyond_64_bits(value, device):
    """A Python int no 64-bit scalar holds raises an OverflowError naming the op (PyTorch raises OverflowError)."""
    for dtype in (torch.int8, torch.int64, torch.float32, torch.bool):
        x = torch.tensor([1, 2], device=device).to(dtype)
        for name, fn in (("add", lambda: x + value), ("add", lambda: value + x), ("mul", lambda: x * value),
                         ("sub", lambda: x - value), ("eq", lambda: x == value), ("lt", lambda: x < value),
                         ("add_", lambda: x.clone().add_(value)), ("pow", lambda: x ** value),
                         ("bitwise_and", lambda: x & value), ("floor_divide", lambda: x // value),
                         ("maximum", lambda: torch.maximum(x, value)), ("where", lambda: torch.where(x > 0, x, value)),
                         ("clamp", lambda: torch.clamp(x, min=value)), ("div", lambda: x / value)):
            with pytest.raises(OverflowError, match=rf"^{name}\(\): Python int"):
                fn()
    assert (torch.tensor([1, 2], device=device) + 2 ** 63).dtype is torch.int64        # as PyTorch: wraps


def test_where_scalar_into_every_dtype(device):
    """where with scalar operands for every output type (a bfloat16/float16 one builds the scalar block in float32:
    Triton's interpreter has no bfloat16 constants), and fill_ likewise."""
    c = torch.tensor([True, False, True], device=device)
    for dtype in [torch.bool] + INTS + FLOATS:
        x = torch.tensor([1, 0, 2], device=device).to(dtype)
        out = torch.where(c, x, 1)
        assert out.dtype is (torch.int64 if dtype is torch.bool else dtype)
        np.testing.assert_array_equal(to_np(out).astype(np.float64), [1, 1, 1 if dtype is torch.bool else 2])
        if dtype.is_floating_point:
            assert_close(torch.where(c, 2.5, x), [2.5, 0.0, 2.5], dtype)
        t = torch.empty(4, dtype=dtype, device=device).fill_(3)
        np.testing.assert_array_equal(to_np(t).astype(np.float64), [1 if dtype is torch.bool else 3] * 4)


def test_bool_operand_errors(device):
    """PyTorch's NotImplementedError for ``-`` with a bool operand and for the rounding divisions, remainders and
    tensor ** tensor of two bools (bool ** a Python bool stays bool; + and * of bools are bool)."""
    b = torch.tensor([True, False], device=device)
    i = torch.tensor([1, 2], device=device)
    with pytest.raises(NotImplementedError, match="with two bool tensors is not supported"):
        b - b
    for fn in (lambda: i - b, lambda: b - 1, lambda: 1 - b, lambda: i - True, lambda: True - i,
               lambda: b.clone().sub_(i)):
        with pytest.raises(NotImplementedError, match="with a bool tensor is not supported"):
            fn()
    for fn, name in ((lambda: b // b, "div_floor"), (lambda: b % True, "remainder"), (lambda: torch.fmod(b, b), "fmod"),
                     (lambda: torch.div(b, b, rounding_mode="trunc"), "div_trunc"),
                     (lambda: torch.div(b, b, rounding_mode="floor"), "div_floor"), (lambda: b ** b, "pow")):
        with pytest.raises(NotImplementedError, match=f"{name}.*not implemented for 'Bool'"):
            fn()
    for out in (b ** True, b + b, b * b):
        assert out.dtype is torch.bool
    with pytest.raises(NotImplementedError, match="Negation, the `-` operator, on a bool tensor"):
        -b
    with pytest.raises(TypeError, match="only implemented on integer and Boolean-type tensors"):
        ~torch.ones(2, device=device)
    np.testing.assert_array_equal(to_np(~b), [False, True])
    np.testing.assert_array_equal(to_np(~torch.tensor([0, 5], dtype=torch.uint8, device=device)), [255, 250])
    np.testing.assert_array_equal(to_np(b // i), [1, 0])


# ---- differential-fuzzer regressions (PyTorch 2.14 as the oracle) --------------------------------------------------

def test_clamp_tensor_bounds_grads_and_broadcast(device):
    """Tensor bounds broadcast and get gradients: one bound as maximum/minimum (ties split), both as PyTorch's
    clamp.Tensor rule (the bound that wins when min > max is max; NaN anywhere gives NaN and feeds x)."""
    nan = float("nan")
    vals = [0., 1., 1.5, 2., 3., nan]
    xs, ls, hs = zip(*[(a, b, c) for a in vals for b in vals for c in vals])
    x, lo, hi = (torch.tensor(v, dtype=torch.float64, device=device, requires_grad=True) for v in (xs, ls, hs))
    y = torch.clamp(x, lo, hi)
    y.sum().backward()
    X, L, H = (np.array(v) for v in (xs, ls, hs))
    with np.errstate(invalid="ignore"):
        lt, le = L < H, L <= H
        gx = np.where((X < L) | (X > H), 0, np.where(((X == L) | (X == H)) & lt, 0.5, 1))
        gl = np.where((X < L) & le, 1, np.where((X == L) & lt, 0.5, 0))
        gh = np.where(((X > H) & le) | (L > H), 1, np.where((X == H) & lt, 0.5, 0))
        ref = np.where(np.isnan(X) | np.isnan(L) | np.isnan(H), nan, np.minimum(np.maximum(X, L), H))
    np.testing.assert_array_equal(to_np(y), ref)
    for t, r in ((x, gx), (lo, gl), (hi, gh)):
        np.testing.assert_array_equal(to_np(t.grad), r)
    x = torch.tensor([[1., 2, 3], [4, 5, 6]], dtype=torch.float64, device=device, requires_grad=True)
    m = torch.tensor([2.5], dtype=torch.float64, device=device, requires_grad=True)
    torch.clip(x, max=m).sum().backward()                     # the fuzzer's crash: one grad per input
    assert x.grad.tolist() == [[1, 1, 0], [0, 0, 0]] and m.grad.tolist() == [4.0]
    out = torch.clamp(torch.tensor(1.48, dtype=torch.bfloat16, device=device),
                      min=torch.tensor([1.96], dtype=torch.bfloat16, device=device))
    assert out.shape == (1,) and out.dtype is torch.bfloat16
    assert torch.clamp(torch.tensor([1, 2, 3], dtype=torch.int8, device=device),
                       min=torch.tensor(200, device=device)).tolist() == [1, 2, 3]    # 200 wraps to int8 -56
    assert torch.clamp(torch.tensor([1, 5], dtype=torch.int32, device=device),
                       min=torch.tensor(2.5, device=device)).tolist() == [2.5, 5.0]
    a = torch.tensor([1., 2, 3], device=device)
    a.clamp_(min=torch.tensor([2.], device=device), max=torch.tensor(2.5, dtype=torch.float64, device=device))
    assert a.tolist() == [2.0, 2.0, 2.5]
    with pytest.raises(RuntimeError, match="can't be cast to the desired output type Long"):
        torch.tensor([1, 2], device=device).clamp_(min=torch.tensor([1.5], device=device))
    with pytest.raises(TypeError, match="invalid combination of arguments"):
        torch.clamp(torch.tensor([1.], device=device), min=torch.tensor([1.], device=device), max=2.0)
    with pytest.raises(NotImplementedError, match="not implemented for 'Bool'"):
        torch.clamp(torch.tensor([True], device=device), torch.tensor([True], device=device),
                    torch.tensor([True], device=device))


@pytest.mark.parametrize("dtype, bound, kw, expect", [
    (torch.uint8, -1, "min", 255), (torch.uint8, -255, "max", 1), (torch.uint8, -129, "min", 127),
    (torch.uint8, 256, "min", "uint8_t"), (torch.uint8, -256, "max", "uint8_t"), (torch.int8, 128, "min", "int8_t"),
    (torch.int8, -1, "max", -1), (torch.int32, 2 ** 31, "min", "type int without"), (torch.int16, -129, "max", -129),
])
def test_clamp_int_bound_converted_to_dtype(device, dtype, bound, kw, expect):
    """A number bound of an integer clamp is converted to the type as PyTorch's checked scalar conversion."""
    x = torch.tensor([16], dtype=dtype, device=device)
    if isinstance(expect, str):
        with pytest.raises(RuntimeError, match=expect):
            torch.clip(x, **{kw: bound})
    else:
        assert torch.clip(x, **{kw: bound}).tolist() == [expect]


def test_where_bf16_with_integer_operand(device):
    c = torch.tensor([False], device=device)
    assert torch.where(c, torch.tensor([1.5], dtype=torch.bfloat16, device=device),
                       torch.tensor(6, dtype=torch.int16, device=device)).tolist() == [6.0]
    out = torch.where(torch.tensor(False, device=device), torch.tensor(9984., dtype=torch.bfloat16, device=device),
                      torch.tensor(-12, dtype=torch.int8, device=device))
    assert out.dtype is torch.bfloat16 and out.item() == -12.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_negative_zero_scalar_keeps_its_sign(device, dtype):
    x = torch.tensor([1., -2., 0.], dtype=dtype, device=device)
    assert torch.div(x, -0.0).tolist()[:2] == [-math.inf, math.inf]
    assert [math.copysign(1, v) for v in torch.mul(x, -0.0).tolist()] == [-1, 1, -1]
    assert torch.floor_divide(torch.tensor([3, -3], device=device), -0.0).tolist() == [-math.inf, math.inf]


def test_integer_alpha_and_scalars_wrap_as_pytorch(device):
    u = lambda v: torch.tensor(v, dtype=torch.uint8, device=device)  # noqa: E731
    assert torch.sub(u([12, 13]), u(20), alpha=-1).tolist() == [32, 33]
    assert torch.add(u([12, 13]), u(20), alpha=-1).tolist() == [248, 249]
    assert torch.rsub(u([4]), -4, alpha=-1).tolist() == [0]
    assert torch.add(u([4]), -300).tolist() == [216]
    with pytest.raises(RuntimeError, match="value cannot be converted to type uint8_t without overflow"):
        torch.add(u([12]), u(20), alpha=-300)
    with pytest.raises(RuntimeError, match="value cannot be converted to type int8_t without overflow"):
        torch.add(torch.tensor([4], dtype=torch.int8, device=device), torch.tensor([1], dtype=torch.int8,
                                                                                    device=device), alpha=300)
    b = torch.tensor([True, False, True], device=device)
    assert torch.add(torch.tensor(True, device=device), b, alpha=-1).tolist() == [True, True, True]
    assert torch.add(torch.tensor([True, False], device=device), True, alpha=-1).tolist() == [True, True]


def test_half_result_rounds_operands_first(device):
    """PyTorch casts every operand to a half result type before the op: int32 -2**31 is -inf in float16."""
    r = torch.add(torch.tensor(-2 ** 31, dtype=torch.int32, device=device),
                  torch.tensor(math.inf, dtype=torch.float16, device=device))
    assert math.isnan(r.item())
    r = torch.mul(torch.tensor([70000], dtype=torch.int32, device=device),
                  torch.tensor(0., dtype=torch.float16, device=device))
    assert math.isnan(r.item())


def test_relu_elu_pass_the_gradient_at_nan(device):
    nan, inf = float("nan"), float("inf")
    for fn, ref in ((torch.relu, [1, 1, 0, 0, 0, 1]), (lambda t: torch.nn.functional.elu(t, alpha=2.0),
                                                       [1, 1, 0, 2, 2 * math.exp(-1), 1])):
        x = torch.tensor([nan, inf, -inf, 0., -1., 1.], dtype=torch.float64, device=device, requires_grad=True)
        fn(x).sum().backward()
        np.testing.assert_allclose(to_np(x.grad), ref, rtol=1e-12)


@triton.jit
def _axpy(x, y, z, a, b):
    return x * a + y


@triton.jit
def _xyz(x, y, z, a, b):
    return x * y - z + b


@pytest.mark.parametrize("dtypes", [(torch.float32, torch.float32), (torch.float32, torch.bfloat16),
                                    (torch.float16, torch.float64)])
@pytest.mark.parametrize("n", [0, 1, 37, 1100])
def test_launch_pointwise_two_outputs(dtypes, n):
    """One launch writes two outputs of one shape (each its own dtype and strides: one transposed) from one read of
    a broadcast input, a strided input and a Python number; every element of both is written (poisoned first)."""
    rng = np.random.default_rng(n)
    xs = rng.uniform(-2, 2, (3, n)).astype(np.float32)
    ys = rng.uniform(-2, 2, (n,)).astype(np.float32)
    x = torch.tensor(xs.T.copy(), device="cuda").t()                     # (3, n), strided
    y = torch.tensor(ys, device="cuda")                                  # broadcast along dim 0
    o0 = torch.empty((3, n), dtype=dtypes[0], device="cuda")
    o1 = torch.empty((n, 3), dtype=dtypes[1], device="cuda").t()         # (3, n), transposed
    res = launch_pointwise((_axpy, _xyz), (x, y, 1.5), (o0, o1), tl.float32, 0.5, 0.25)
    assert res[0] is o0 and res[1] is o1
    assert_close(o0, (xs * 0.5 + ys).astype(np.float64), dtypes[0])
    assert_close(o1, (xs * ys - 1.5 + 0.25).astype(np.float64), dtypes[1])


def test_launch_pointwise_outputs_must_match():
    x = torch.ones(4, device="cuda")
    with pytest.raises(ValueError, match="2 functions for 1 outputs"):
        launch_pointwise((_axpy, _xyz), (x, x, x), (torch.empty(4, device="cuda"),), tl.float32)
    with pytest.raises(ValueError, match="outputs of one shape"):
        launch_pointwise((_axpy, _xyz), (x, x, x), (torch.empty(4, device="cuda"), torch.empty(3, device="cuda")),
                         tl.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_mul_backward_takes_both_gradients_from_one_launch(device, dtype):
    """x * y with both gradients needed: on cuda one pointwise launch reads g, x and y once and writes both (the
    broadcast operand's then summed back); the values are eager's two products, bit for bit."""
    from tritorch.profiler import profile
    rng = np.random.default_rng(5)
    x = torch.tensor(rng.standard_normal((3, 4)), dtype=dtype, device=device, requires_grad=True)
    y = torch.tensor(rng.standard_normal(4), dtype=dtype, device=device, requires_grad=True)
    g = torch.tensor(rng.standard_normal((4, 3)), dtype=dtype, device=device).t()         # a strided gradient
    out = x * y
    with profile() as prof:
        out.backward(g)
    if device == "cuda":
        assert prof.kernel_launches("_pointwise_kernel") == 1
    with torch.no_grad():
        want_x, want_y = g * y, (g * x).sum(0)
    assert torch.equal(x.grad, want_x) and torch.equal(y.grad, want_y)
