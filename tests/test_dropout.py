"""Dropout and Dropout2d: masks from the Philox stream (the same on cpu and cuda), regenerated in backward."""
import numpy as np
import pytest

import tritorch
from tritorch.kernels.dropout import dropout_mask_np
from tritorch.kernels.random import DEFAULT_SEED
from tritorch.nn import dropout as nn
from tests.helpers import assert_close, make, to_np


def test_same_seed_same_mask_and_backward(device):
    x, xr = make((7, 33), tritorch.float32, device, low=0.5, high=1.5, requires_grad=True)
    tritorch.manual_seed(3)
    y = tritorch.dropout(x, 0.3)
    tritorch.manual_seed(3)
    y2 = tritorch.dropout(x.detach(), 0.3)
    assert_close(y2, y)
    keep = to_np(y) != 0
    assert_close(y, np.where(keep, xr / 0.7, 0))
    g = np.random.default_rng(1).standard_normal(xr.shape)
    y.backward(tritorch.tensor(g, dtype=tritorch.float32, device=device))
    assert_close(x.grad, np.where(keep, g / 0.7, 0))
    y3 = tritorch.dropout(x.detach(), 0.3)              # the next call draws new counters
    assert not np.array_equal(to_np(y3) != 0, keep)


def test_mask_is_the_philox_stream(device):
    """cpu and cuda drop the same elements: both follow random.philox_np."""
    tritorch.manual_seed(11)
    y = tritorch.dropout(tritorch.ones((5, 41), device=device), 0.4)
    keep = dropout_mask_np(5 * 41, 1, 11, 0, 0.4).reshape(5, 41)
    np.testing.assert_array_equal(to_np(y) != 0, keep)


def test_fraction_near_p(device):
    tritorch.manual_seed(0)
    y = tritorch.dropout(tritorch.ones(4000, device=device), 0.25)
    frac = float((to_np(y) == 0).mean())
    assert abs(frac - 0.25) < 0.03
    assert np.allclose(to_np(y)[to_np(y) != 0], 1 / 0.75)


def test_p0_p1_eval(device):
    x, xr = make((3, 5), tritorch.float64, device, layout="transposed", requires_grad=True)
    assert_close(tritorch.dropout(x, 0.0), xr)
    y = tritorch.dropout(x, 1.0)
    assert_close(y, np.zeros_like(xr))
    y.sum().backward()
    assert_close(x.grad, np.zeros_like(xr))
    m = nn.Dropout(0.5)
    m.eval()
    assert m(x) is x
    assert tritorch.dropout(x, 0.5, train=False) is x


def test_dropout2d_channels(device):
    x, xr = make((3, 4, 2, 3), tritorch.float64, device, low=0.5, high=1.5, seed=2, requires_grad=True)
    tritorch.manual_seed(5)
    y = nn.Dropout2d(0.5)(x)
    yr = to_np(y)
    keep = (yr != 0).reshape(3, 4, -1)
    assert (keep.all(-1) | (~keep).all(-1)).all()          # whole planes
    assert_close(y, np.where(keep.reshape(xr.shape), xr * 2, 0))
    np.testing.assert_array_equal(keep[..., 0], dropout_mask_np(12, 1, 5, 0, 0.5).reshape(3, 4))
    y.backward(tritorch.ones(y.shape, dtype=tritorch.float64, device=device))
    assert_close(x.grad, np.where(keep.reshape(xr.shape), 2.0, 0.0))
    with pytest.warns(UserWarning, match="3D input to dropout2d"):
        tritorch.dropout2d(tritorch.ones((2, 3, 4), device=device))


def test_inplace_and_half(device):
    x, xr = make((4, 9), tritorch.float16, device, low=0.5, high=1.5)
    tritorch.manual_seed(7)
    out = nn.Dropout(0.5, inplace=True)(x)
    assert out is x
    keep = dropout_mask_np(36, 1, 7, 0, 0.5).reshape(4, 9)
    assert_close(x, np.where(keep, xr * 2, 0))
    a = tritorch.tensor(np.ones((2, 5)), device=device, requires_grad=True)
    b = a * 3
    tritorch.manual_seed(8)
    tritorch.dropout(b, 0.5, inplace=True)
    b.sum().backward()
    k = dropout_mask_np(10, 1, 8, 0, 0.5).reshape(2, 5)
    assert_close(a.grad, np.where(k, 6.0, 0.0), dtype=tritorch.float32)


def test_double_backward_and_gradcheck_cpu():
    x = tritorch.tensor(np.random.default_rng(0).standard_normal((3, 4)), dtype=tritorch.float64,
                        requires_grad=True)

    def f(t):
        tritorch.manual_seed(1)
        return tritorch.dropout(t, 0.4)
    assert tritorch.autograd.gradcheck(f, (x,))
    assert tritorch.autograd.gradgradcheck(f, (x,))


def test_errors_and_repr(device):
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1, but got 1.5"):
        tritorch.dropout(tritorch.ones(3, device=device), 1.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(-0.1)
    with pytest.raises(RuntimeError, match="expected a floating point input"):
        tritorch.dropout(tritorch.ones(3, dtype=tritorch.int64, device=device), 0.5)
    assert repr(nn.Dropout(0.2)) == "Dropout(p=0.2, inplace=False)"
    x = tritorch.ones(5, device=device)
    assert nn.dropout(x, 0.5, training=False) is x
    assert tuple(tritorch.dropout(tritorch.ones((0, 3), device=device), 0.5).shape) == (0, 3)
    assert DEFAULT_SEED > 0


def test_bfloat16(device):
    x, xr = make((3, 50), tritorch.bfloat16, device, low=0.5, high=1.5, seed=4)
    tritorch.manual_seed(9)
    y = tritorch.dropout(x, 0.5)
    assert y.dtype is tritorch.bfloat16
    keep = dropout_mask_np(150, 1, 9, 0, 0.5).reshape(3, 50)
    assert_close(y, np.where(keep, xr * 2, 0))


def test_non_contiguous(device):
    x, xr = make((6, 5), tritorch.float64, device, layout="transposed", low=0.5, high=1.5, seed=5,
                 requires_grad=True)
    tritorch.manual_seed(21)
    y = tritorch.dropout(x, 0.3)
    keep = dropout_mask_np(30, 1, 21, 0, 0.3).reshape(6, 5)       # the mask follows the logical (row-major) order
    assert_close(y, np.where(keep, xr / 0.7, 0))
    y.sum().backward()
    assert_close(x.grad, np.where(keep, 1 / 0.7, 0))
