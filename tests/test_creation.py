"""Factories: values, dtypes, devices and errors of tensor/empty/zeros/ones/full/arange/linspace/eye and *_like."""
import math

import numpy as np
import pytest

import tritorch
from helpers import assert_close, to_np

FLOATS = [tritorch.float32, tritorch.float64, tritorch.float16, tritorch.bfloat16]
ALL = FLOATS + [tritorch.int64, tritorch.int32, tritorch.int16, tritorch.int8, tritorch.uint8, tritorch.bool]


def _check(t, expected, dtype, device):
    assert t.dtype is dtype
    assert t.device.type == device
    assert t.is_contiguous() or t.numel() == 0   # see report: is_contiguous of empty tensors
    np.testing.assert_array_equal(to_np(t), np.asarray(expected).astype(dtype.np).astype(to_np(t).dtype))


# ---- tensor / as_tensor / from_numpy ---------------------------------------------------------------------------------

def test_tensor_infers_dtype(device):
    assert tritorch.tensor([1, 2], device=device).dtype is tritorch.int64
    assert tritorch.tensor([1, 2.5], device=device).dtype is tritorch.float32
    assert tritorch.tensor([True, False], device=device).dtype is tritorch.bool
    assert tritorch.tensor(3.0, device=device).shape == ()
    _check(tritorch.tensor([[1, 2], [3, 4]], dtype=tritorch.float16, device=device), [[1, 2], [3, 4]],
           tritorch.float16, device)


def test_from_numpy_shares_memory():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = tritorch.from_numpy(a)
    t[0, 0] = 9.0
    assert a[0, 0] == 9.0
    a[1, 2] = -1.0
    assert t[1, 2].item() == -1.0
    v = tritorch.from_numpy(a[:, ::2])
    assert v.stride() == (3, 2)
    np.testing.assert_array_equal(v.numpy(), a[:, ::2])


def test_as_tensor_shares_when_it_can():
    a = np.arange(4, dtype=np.int64)
    t = tritorch.as_tensor(a)
    a[0] = 5
    assert t[0].item() == 5
    assert tritorch.as_tensor(t) is t
    assert tritorch.as_tensor(a, dtype=tritorch.float32).dtype is tritorch.float32


# ---- empty / zeros / ones / full -------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ALL)
def test_zeros_ones_full(device, dtype):
    _check(tritorch.zeros(3, 5, dtype=dtype, device=device), np.zeros((3, 5)), dtype, device)
    _check(tritorch.ones((33,), dtype=dtype, device=device), np.ones(33), dtype, device)
    value = True if dtype is tritorch.bool else 7 if not dtype.is_floating_point else -2.5
    _check(tritorch.full((2, 3), value, dtype=dtype, device=device), np.full((2, 3), value), dtype, device)
    assert tritorch.empty(2, 0, dtype=dtype, device=device).shape == (2, 0)


def test_full_exact_values(device):
    # float64 values and large int64 values survive the trip to the kernel exactly
    t = tritorch.full((5,), 0.1, dtype=tritorch.float64, device=device)
    assert t.tolist() == [0.1] * 5
    big = 2 ** 62 + 3
    assert tritorch.full((3,), big, device=device).tolist() == [big] * 3
    assert tritorch.full((3,), -7, dtype=tritorch.int8, device=device).tolist() == [-7] * 3
    assert tritorch.full((2,), float("inf"), device=device).tolist() == [math.inf] * 2
    assert math.isnan(tritorch.full((1,), float("nan"), dtype=tritorch.float16, device=device).item())


def test_full_infers_dtype(device):
    assert tritorch.full((2,), 1, device=device).dtype is tritorch.int64
    assert tritorch.full((2,), 1.0, device=device).dtype is tritorch.float32
    assert tritorch.full((2,), True, device=device).dtype is tritorch.bool
    assert tritorch.zeros(2, device=device).dtype is tritorch.float32


def test_shapes_and_requires_grad(device):
    assert tritorch.zeros((), device=device).shape == ()
    assert tritorch.zeros((), device=device).item() == 0.0
    assert tritorch.ones([2, 3], device=device).shape == (2, 3)
    assert tritorch.zeros(0, device=device).numel() == 0
    t = tritorch.ones(2, requires_grad=True, device=device)
    assert t.requires_grad and t.is_leaf
    assert tritorch.zeros(size=(2, 1), device=device).shape == (2, 1)


def test_size_errors():
    with pytest.raises(RuntimeError, match="negative dimension -1"):
        tritorch.zeros(2, -1)
    with pytest.raises(TypeError, match="tuple of ints"):
        tritorch.ones(2.5)
    with pytest.raises(RuntimeError, match="only Tensors of floating point"):
        tritorch.zeros(2, dtype=tritorch.int64, requires_grad=True)


@pytest.mark.parametrize("dtype", [None, tritorch.float64, tritorch.int32])
def test_like(device, dtype):
    x = tritorch.tensor([[1.5, 2.0, 3.0]], device=device)
    want = dtype or tritorch.float32
    _check(tritorch.zeros_like(x, dtype=dtype), np.zeros((1, 3)), want, device)
    _check(tritorch.ones_like(x, dtype=dtype), np.ones((1, 3)), want, device)
    _check(tritorch.full_like(x, 4, dtype=dtype), np.full((1, 3), 4), want, device)
    e = tritorch.empty_like(x, dtype=dtype)
    assert e.shape == (1, 3) and e.dtype is want and e.device == x.device
    assert tritorch.zeros_like(x, device="cpu").device.type == "cpu"


# ---- arange ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [(5,), (0,), (1,), (2, 9), (9, 2, -1), (-3, 10, 4), (10, -7, -3), (4, 4), (0, 300),
                                  (5, 5, -2)])
def test_arange_int(device, args):
    t = tritorch.arange(*args, device=device)
    _check(t, np.arange(*args), tritorch.int64, device)


@pytest.mark.parametrize("args", [(0.0, 1.0, 0.1), (1, 2.5, 0.5), (2.5,), (-1.0, 1.0, 0.3), (1.0, -1.0, -0.25),
                                  (0, 1, 0.3333), (0.5, 0.5), (0, 10.0, 3)])
def test_arange_float(device, args):
    t = tritorch.arange(*args, device=device)
    assert t.dtype is tritorch.float32
    start, end, step = (0, args[0], 1) if len(args) == 1 else (args + (1,))[:3]
    n = math.ceil((end - start) / step)
    assert t.numel() == n
    assert_close(t, start + np.arange(n) * step)


@pytest.mark.parametrize("dtype", [tritorch.float64, tritorch.float16, tritorch.bfloat16, tritorch.int32,
                                   tritorch.uint8, tritorch.int8])
def test_arange_dtypes(device, dtype):
    t = tritorch.arange(1, 20, 3, dtype=dtype, device=device)
    _check(t, np.arange(1, 20, 3), dtype, device)
    f = tritorch.arange(0, 2.6, 0.5, dtype=dtype, device=device)
    assert f.dtype is dtype
    assert_close(f, np.arange(6) * 0.5 if dtype.is_floating_point else np.trunc(np.arange(6) * 0.5))


def test_arange_large_int64(device):
    start = 2 ** 40
    t = tritorch.arange(start, start + 5 * 2 ** 33, 2 ** 33, device=device)
    assert t.tolist() == [start + i * 2 ** 33 for i in range(5)]


def test_arange_float64_exact(device):
    t = tritorch.arange(0, 1, 0.1, dtype=tritorch.float64, device=device)
    np.testing.assert_array_equal(t.numpy(force=True), np.arange(10) * 0.1)


def test_arange_errors():
    with pytest.raises(RuntimeError, match="step must be nonzero"):
        tritorch.arange(0, 5, 0)
    with pytest.raises(RuntimeError, match="inconsistent with step sign"):
        tritorch.arange(0, 5, -1)
    with pytest.raises(RuntimeError, match="inconsistent with step sign"):
        tritorch.arange(5, 0, 0.5)
    with pytest.raises(RuntimeError, match="unsupported range"):
        tritorch.arange(0, float("inf"))
    with pytest.raises(TypeError, match="must be a real number"):
        tritorch.arange("3")


# ---- linspace / eye --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [(0, 1, 5), (-2.5, 3.0, 37), (1, 0, 4), (3, 3, 3), (0, 1, 1), (0, 1, 0), (5, -5, 2)])
def test_linspace(device, args):
    t = tritorch.linspace(*args, device=device)
    assert t.dtype is tritorch.float32 and t.shape == (args[2],)
    assert_close(t, np.linspace(*args))
    if args[2] >= 2:
        assert t[0].item() == np.float32(args[0]) and t[-1].item() == np.float32(args[1])


@pytest.mark.parametrize("dtype", [tritorch.float64, tritorch.float16, tritorch.bfloat16, tritorch.int64])
def test_linspace_dtypes(device, dtype):
    t = tritorch.linspace(-3, 7, 11, dtype=dtype, device=device)
    _check(t, np.linspace(-3, 7, 11), dtype, device)
    t = tritorch.linspace(0, 1, 7, dtype=dtype, device=device)
    assert_close(t, np.linspace(0, 1, 7) if dtype.is_floating_point else np.trunc(np.linspace(0, 1, 7)))


def test_linspace_errors():
    with pytest.raises(RuntimeError, match="number of steps must be non-negative"):
        tritorch.linspace(0, 1, -1)
    with pytest.raises(TypeError, match="'steps' must be int"):
        tritorch.linspace(0, 1, 2.0)


@pytest.mark.parametrize("nm", [(3,), (1,), (0,), (4, 7), (7, 4), (5, 0), (20, 20)])
@pytest.mark.parametrize("dtype", [tritorch.float32, tritorch.int64, tritorch.bool, tritorch.bfloat16])
def test_eye(device, nm, dtype):
    _check(tritorch.eye(*nm, dtype=dtype, device=device), np.eye(*nm), dtype, device)


def test_eye_errors():
    with pytest.raises(RuntimeError, match="n must be greater or equal to 0, got -1"):
        tritorch.eye(-1)
    with pytest.raises(RuntimeError, match="m must be greater or equal to 0, got -2"):
        tritorch.eye(2, -2)


def test_factories_requires_grad(device):
    for t in (tritorch.arange(3.0, requires_grad=True, device=device),
              tritorch.linspace(0, 1, 3, requires_grad=True, device=device),
              tritorch.eye(2, requires_grad=True, device=device)):
        assert t.requires_grad and t.grad_fn is None
