"""unfold / fold (im2col / col2im) and nn.Unfold / nn.Fold against PyTorch: forward, backward, gradcheck, errors."""
import numpy as np
import pytest

import tritorch
import tritorch.nn as nn
import tritorch.nn.functional as F
from tritorch.autograd.gradcheck import gradcheck, gradgradcheck
from helpers import assert_close, make, to_np

torch = pytest.importorskip("torch")
TF = torch.nn.functional

CASES = [  # input shape, kwargs
    ((2, 3, 7, 6), dict(kernel_size=3)),
    ((1, 2, 5, 7), dict(kernel_size=(2, 3), dilation=(2, 1), padding=(1, 2), stride=(2, 3))),
    ((3, 5, 4), dict(kernel_size=2, stride=2, padding=1)),                      # unbatched (C, H, W)
    ((0, 2, 4, 5), dict(kernel_size=2)),                                        # empty batch
]


@pytest.mark.parametrize("shape, kw", CASES)
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_unfold_fold(device, shape, kw, layout):
    x, xr = make(shape, tritorch.float64, device, layout, seed=1, requires_grad=True)
    tx = torch.tensor(xr, requires_grad=True)
    y, ty = F.unfold(x, **kw), TF.unfold(tx, **kw)
    assert_close(y, ty.detach().numpy())
    g = np.random.default_rng(2).standard_normal(tuple(ty.shape))
    y.backward(tritorch.tensor(g, dtype=tritorch.float64, device=device))
    ty.backward(torch.tensor(g))
    assert_close(x.grad, tx.grad.numpy())
    # fold: the adjoint, from a non-contiguous column matrix
    c, cr = make(tuple(ty.shape), tritorch.float64, device, layout, seed=3, requires_grad=True)
    tc = torch.tensor(cr, requires_grad=True)
    z, tz = F.fold(c, shape[-2:], **kw), TF.fold(tc, shape[-2:], **kw)
    assert_close(z, tz.detach().numpy())
    gz = np.random.default_rng(4).standard_normal(tuple(tz.shape))
    z.backward(tritorch.tensor(gz, dtype=tritorch.float64, device=device))
    tz.backward(torch.tensor(gz))
    assert_close(c.grad, tc.grad.numpy())
    if len(shape) == 4:
        assert y.grad_fn.name() == "Im2ColBackward0" and z.grad_fn.name() == "Col2ImBackward0"


@pytest.mark.parametrize("dtype", [tritorch.float32, tritorch.float16, tritorch.bfloat16])
def test_dtypes(device, dtype):
    x, xr = make((2, 3, 5, 6), dtype, device, seed=5)
    y = F.unfold(x, 3, padding=1, stride=2)
    ref = TF.unfold(torch.tensor(xr), 3, padding=1, stride=2).numpy()
    assert y.dtype is dtype
    assert_close(y, ref)
    z = F.fold(y, (5, 6), 3, padding=1, stride=2)
    assert z.dtype is dtype
    assert_close(z, TF.fold(torch.tensor(to_np(y)), (5, 6), 3, padding=1, stride=2).numpy())


def test_modules(device):
    x, xr = make((1, 2, 6, 5), tritorch.float32, device, seed=6)
    u, f = nn.Unfold(2, dilation=2, padding=1), nn.Fold((6, 5), 2, dilation=2, padding=1)
    cols = u(x)
    assert tuple(cols.shape) == (1, 8, 30)
    assert_close(f(cols), TF.fold(TF.unfold(torch.tensor(xr), 2, 2, 1), (6, 5), 2, 2, 1).numpy())
    assert repr(u) == "Unfold(kernel_size=2, dilation=2, padding=1, stride=1)"
    assert "output_size=(6, 5)" in repr(f)


def test_gradcheck_cpu():
    x = tritorch.tensor(np.random.default_rng(7).standard_normal((1, 2, 4, 5)), dtype=tritorch.float64,
                        requires_grad=True)
    assert gradcheck(lambda t: F.unfold(t, (2, 3), padding=1, stride=(1, 2)), (x,))
    c = tritorch.tensor(np.random.default_rng(8).standard_normal((1, 8, 8)), dtype=tritorch.float64,
                        requires_grad=True)
    assert gradcheck(lambda t: F.fold(t, (4, 5), 2, stride=(2, 1)), (c,))
    assert gradgradcheck(lambda t: F.unfold(t, 2, dilation=2) ** 2, (x,))


def test_double_backward_cuda():
    x, xr = make((1, 1, 4, 4), tritorch.float64, "cuda", seed=9, requires_grad=True)
    y = F.unfold(x, 2)
    (g,) = tritorch.autograd.grad((y * y).sum(), x, create_graph=True)
    g.sum().backward()
    tx = torch.tensor(xr, requires_grad=True)
    (tg,) = torch.autograd.grad((TF.unfold(tx, 2) ** 2).sum(), tx, create_graph=True)
    tg.sum().backward()
    assert_close(x.grad, tx.grad.numpy())


def test_errors(device):
    x = tritorch.zeros((1, 2, 4, 5), device=device)
    c = tritorch.zeros((1, 8, 12), device=device)
    with pytest.raises(RuntimeError, match="its components must be at least one"):
        F.unfold(x, 6)
    with pytest.raises(RuntimeError, match="kernel size should be greater than zero"):
        F.unfold(x, 0)
    with pytest.raises(RuntimeError, match="stride should be greater than zero"):
        F.unfold(x, 2, stride=0)
    with pytest.raises(RuntimeError, match="dilation should be greater than zero"):
        F.fold(c, (4, 5), 2, dilation=0)
    with pytest.raises(RuntimeError, match="padding should be non-negative"):
        F.fold(c, (4, 5), 2, padding=-1)
    with pytest.raises(RuntimeError, match="It is expected kernel_size equals to 2, but got size 3"):
        F.unfold(x, (2, 2, 2))
    with pytest.raises(RuntimeError, match="Expected 3D or 4D"):
        F.unfold(tritorch.zeros((1, 0, 4, 5), device=device), 2)
    with pytest.raises(RuntimeError, match="divisible by the product of kernel_size"):
        F.fold(c, (4, 5), 3)
    with pytest.raises(RuntimeError, match=r"sliding blocks 3 \* 3 = 9, but got input.size\(2\)=12"):
        F.fold(c, (4, 4), 2)
    with pytest.raises(RuntimeError, match="Expected 2D or 3D"):
        F.fold(tritorch.zeros((8, 12, 1, 1), device=device), (4, 5), 2)
    with pytest.raises(NotImplementedError, match="not implemented for 'Long'"):
        F.unfold(tritorch.zeros((1, 2, 4, 5), dtype=tritorch.int64, device=device), 2)
