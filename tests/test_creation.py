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


def test_allocation_failure_names_the_request(device):
    """A request memory cannot hold is refused with what was asked (PyTorch: RuntimeError on cpu, OutOfMemoryError,
    a RuntimeError, on cuda), not NumPy's MemoryError; sizes are past any address space, so nothing is ever touched."""
    oom = tritorch.cuda.OutOfMemoryError if device == "cuda" else RuntimeError
    cases = [(lambda: tritorch.empty(2 ** 55, device=device), 2 ** 57,
              r"\[36028797018963968\] and dtype tritorch.float32"),
             (lambda: tritorch.zeros(2 ** 28, 2 ** 29, device=device), 2 ** 59, r"\[268435456, 536870912\]"),
             (lambda: tritorch.ones(2 ** 57, dtype=tritorch.int8, device=device), 2 ** 57, "dtype tritorch.int8"),
             (lambda: tritorch.randn(2 ** 56, device=device), 2 ** 58, "float32")]
    for make, nbytes, what in cases:
        with pytest.raises(oom, match=f"you tried to allocate {nbytes} bytes .*{what}.* on {device}") as e:
            make()
        assert not isinstance(e.value, MemoryError)
    with pytest.raises(RuntimeError, match=r"^Storage size calculation overflowed with sizes=\[4611686018427387904, "
                                           r"4\]$"):
        tritorch.empty(2 ** 62, 4, device=device)
    with pytest.raises(RuntimeError, match=r"^Trying to create tensor with negative dimension -1: \[-1\]$"):
        tritorch.empty(-1, device=device)
    with pytest.raises(RuntimeError, match=r"^Trying to create tensor with negative dimension -3: \[2, -3\]$"):
        tritorch.zeros(2, -3, device=device)
    with pytest.raises(RuntimeError, match=r"^Trying to create tensor with negative dimension -2: \[-2\]$"):
        tritorch.ones(1, device=device).new_empty(-2)
    assert tritorch.zeros(3, device=device).tolist() == [0.0] * 3          # the allocator still works


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
    # an integer type truncates start and step (0.5 -> 0) as PyTorch: all zeros
    assert_close(f, np.arange(6) * 0.5 if dtype.is_floating_point else np.zeros(6))


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


FILL_OVERFLOWS = [  # dtype, values PyTorch refuses ("value cannot be converted to type <name> without overflow")
    (tritorch.uint8, "uint8_t", [300, 256, -256, 256.0, -0.5, float("nan"), float("inf")]),
    (tritorch.int8, "int8_t", [128, -129, 128.0, -128.5]),
    (tritorch.int16, "int16_t", [2 ** 40, 32768]),
    (tritorch.int32, "int", [1e10, 2 ** 31, -2147483649.0]),
    (tritorch.int64, "int64_t", [2 ** 63, 2.0 ** 63, float("nan"), -float("inf")]),
    (tritorch.float16, "c10::Half", [65519, 1e10, -70000.0]),
    (tritorch.bfloat16, "c10::BFloat16", [3.39e38]),
    (tritorch.float32, "float", [3.4028235e38, -1e300]),
]


@pytest.mark.parametrize("dtype,name,values", FILL_OVERFLOWS, ids=lambda v: str(v))
def test_fills_refuse_values_out_of_range(device, dtype, name, values):
    """Issue 14: full, full_like, new_full and fill_ raise PyTorch's overflow error instead of wrapping (300 as
    uint8 was 44), also for a size-0 tensor."""
    like = tritorch.zeros(2, dtype=dtype, device=device)
    for v in values:
        for make in (lambda: tritorch.full((2,), v, dtype=dtype, device=device),
                     lambda: tritorch.full((0,), v, dtype=dtype, device=device),
                     lambda: tritorch.full_like(like, v), lambda: like.new_full((3,), v),
                     lambda: like.clone().fill_(v), lambda: like[:0].fill_(v)):
            with pytest.raises(RuntimeError, match=f"value cannot be converted to type {name} without overflow"):
                make()


def test_fills_convert_values_in_range_as_pytorch(device):
    def full(v, dtype):
        return tritorch.full((2,), v, dtype=dtype, device=device).tolist()
    assert full(-1, tritorch.uint8) == [255, 255] and full(-255, tritorch.uint8) == [1, 1]
    assert full(255.9, tritorch.uint8) == [255, 255] and full(True, tritorch.uint8) == [1, 1]
    assert full(127.9, tritorch.int8) == [127, 127] and full(-128, tritorch.int8) == [-128, -128]
    assert full(-2.0 ** 63, tritorch.int64) == [-2 ** 63] * 2
    assert full(2 ** 63 - 1, tritorch.int64) == [2 ** 63 - 1] * 2
    assert full(65504, tritorch.float16) == [65504.0] * 2 and full(float("inf"), tritorch.float16) == [math.inf] * 2
    assert all(math.isnan(v) for v in full(float("nan"), tritorch.bfloat16))
    assert full(1e308, tritorch.float64) == [1e308] * 2 and full(2 ** 64 - 1, tritorch.float32) == [2.0 ** 64] * 2
    assert full(300, tritorch.bool) == [True, True] and full(float("nan"), tritorch.bool) == [True, True]
    assert full(np.float32(3.5), tritorch.int16) == [3, 3]
    u = tritorch.zeros(2, dtype=tritorch.uint8, device=device)
    assert u.fill_(tritorch.tensor(300)).tolist() == [44, 44]                # a value tensor is cast, unchecked
    assert u.fill_(-1).tolist() == [255, 255]
    with pytest.raises(OverflowError):
        tritorch.full((2,), 2 ** 64, device=device)
    assert tritorch.scalar_tensor(5, device=device).dtype is tritorch.float32   # the default float type, as PyTorch


def test_linspace_refuses_endpoints_out_of_range(device):
    """PyTorch checks the endpoints it writes: both for steps >= 2, start alone for steps == 1."""
    for args, dtype, name in (((0, 300, 2), tritorch.uint8, "uint8_t"), ((300, 0, 1), tritorch.uint8, "uint8_t"),
                              ((0.0, 1e10, 3), tritorch.float16, "c10::Half"),
                              ((0, math.inf, 2), tritorch.int32, "int")):
        with pytest.raises(RuntimeError, match=f"value cannot be converted to type {name} without overflow"):
            tritorch.linspace(*args, dtype=dtype, device=device)
    assert tritorch.linspace(0, 300, 1, dtype=tritorch.uint8, device=device).tolist() == [0]
    assert tritorch.linspace(300, 0, 0, dtype=tritorch.uint8, device=device).tolist() == []
    assert to_np(tritorch.linspace(0, math.inf, 2, dtype=tritorch.float16, device=device)).shape == (2,)


# ---- differential-fuzzer regressions (PyTorch 2.14 as the oracle) --------------------------------------------------

@pytest.mark.parametrize("data, dtype, expect", [
    ([float("-inf"), -1], tritorch.int8, "int8"), ([False, -1, 2.0], tritorch.uint8, [0, 255, 2]),
    ([300], tritorch.uint8, "uint8"), ([-1], tritorch.uint8, [255]), ([-300], tritorch.uint8, "uint8"),
    ([float("nan")], tritorch.int32, "int32"), ([1e10], tritorch.int32, "int32"), ([-0.5], tritorch.uint8, "uint8"),
    ([255.9], tritorch.uint8, [255]), ([127.9, -1.5], tritorch.int8, [127, -1]), ([-128.9], tritorch.int8, "int8"),
    ([2.0 ** 63], tritorch.int64, "int64"), ([-2 ** 63], tritorch.int64, [-2 ** 63]), (-1, tritorch.uint8, 255),
    ([[1, -1], [2, 300]], tritorch.int16, [[1, -1], [2, 300]]), ([True, 300], tritorch.uint8, "uint8"),
])
def test_tensor_integer_conversion_as_pytorch(data, dtype, expect):
    """Each Python number converts to an integer type as PyTorch's checked conversion: a float truncated within
    [min, max + 1), an int within range (an unsigned type also takes down to -max, wrapped)."""
    if isinstance(expect, str):
        with pytest.raises(RuntimeError, match=f"value cannot be converted to type {expect} without overflow"):
            tritorch.tensor(data, dtype=dtype)
    else:
        assert tritorch.tensor(data, dtype=dtype).tolist() == expect


def test_tensor_int_beyond_int64():
    for data, dtype in (([2 ** 63], tritorch.int64), ([2 ** 64], None), ([-2 ** 63 - 1], tritorch.uint8)):
        with pytest.raises(ValueError, match="Overflow when unpacking long long"):
            tritorch.tensor(data, dtype=dtype)


@pytest.mark.parametrize("args, expect", [
    ((0, 3.5, 0.5), [0] * 7), ((0.5, 3.5, 1.5), [0, 1]), ((-2.5, 3, 1.5), [-2, -1, 0, 1]), ((3, 0, -1.5), [3, 2]),
    ((-1.5, 2), [-1, 0, 1, 2]), ((0, -3, -0.5), [0] * 6),
])
def test_arange_integer_dtype_truncates_start_and_step(device, args, expect):
    """PyTorch: the length from the float arguments, the values from start and step truncated to the type."""
    assert tritorch.arange(*args, dtype=tritorch.int16, device=device).tolist() == expect
