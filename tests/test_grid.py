"""grid_sample and affine_grid against PyTorch: every mode, padding mode and align_corners, forward and backward
(input and grid), gradcheck, non-contiguous inputs, empty sizes, errors."""
import warnings

import numpy as np
import pytest

import tritorch
import tritorch.nn.functional as F
from tritorch.autograd.gradcheck import gradcheck
from helpers import assert_close, make

torch = pytest.importorskip("torch")
TF = torch.nn.functional


def _grid(shape, seed, layout="contiguous", device="cpu", dtype=tritorch.float64):
    g, gr = make(shape, dtype, device, layout, low=-1.3, high=1.3, seed=seed, requires_grad=True)
    return g, gr


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("align", [True, False])
def test_grid_sample(device, mode, padding_mode, align):
    x, xr = make((2, 3, 5, 6), tritorch.float64, device, seed=1, requires_grad=True)
    g, gr = _grid((2, 4, 7, 2), 2, device=device)
    y = F.grid_sample(x, g, mode, padding_mode, align)
    tx, tg = torch.tensor(xr, requires_grad=True), torch.tensor(gr, requires_grad=True)
    ty = TF.grid_sample(tx, tg, mode, padding_mode, align)
    assert_close(y, ty.detach().numpy())
    go = np.random.default_rng(3).standard_normal(tuple(ty.shape))
    y.backward(tritorch.tensor(go, dtype=tritorch.float64, device=device))
    ty.backward(torch.tensor(go))
    assert_close(x.grad, tx.grad.numpy())
    assert_close(g.grad, tg.grad.numpy())


@pytest.mark.parametrize("layout", ["transposed", "strided"])
def test_non_contiguous_float32(device, layout):
    x, xr = make((2, 3, 4, 5), tritorch.float32, device, layout, seed=4)
    g, gr = _grid((2, 3, 6, 2), 5, layout, device, tritorch.float32)
    y = F.grid_sample(x, g, "bilinear", "reflection", False)
    assert_close(y, TF.grid_sample(torch.tensor(xr), torch.tensor(gr), "bilinear", "reflection", False).numpy(),
                 atol=1e-5)


def test_half_and_corner_points(device):
    x, xr = make((1, 2, 3, 4), tritorch.float16, device, seed=6)
    gr = np.array([[[[-1, -1], [1, 1], [0, 0], [0.5, -1], [1.5, 0.2], [-0.2, 3.0]]]])
    g = tritorch.tensor(gr, dtype=tritorch.float16, device=device)
    for align in (True, False):
        y = F.grid_sample(x, g, "bilinear", "zeros", align)
        ref = TF.grid_sample(torch.tensor(xr), torch.tensor(gr, dtype=torch.float16).double(), "bilinear", "zeros",
                             align).numpy()
        assert y.dtype is tritorch.float16
        assert_close(y, ref)


def test_empty(device):
    x = tritorch.zeros((2, 0, 4, 5), dtype=tritorch.float64, device=device, requires_grad=True)
    g = tritorch.zeros((2, 3, 0, 2), dtype=tritorch.float64, device=device, requires_grad=True)
    y = F.grid_sample(x, g, align_corners=False)
    assert tuple(y.shape) == (2, 0, 3, 0)
    y.sum().backward()
    assert tuple(x.grad.shape) == (2, 0, 4, 5) and tuple(g.grad.shape) == (2, 3, 0, 2)


def test_gradcheck_cpu():
    rng = np.random.default_rng(7)
    x = tritorch.tensor(rng.standard_normal((1, 2, 3, 4)), dtype=tritorch.float64, requires_grad=True)
    # points away from pixel edges, where the bilinear map is smooth
    g = tritorch.tensor(rng.uniform(-0.9, 0.9, (1, 2, 3, 2)), dtype=tritorch.float64, requires_grad=True)
    for pad in ("zeros", "border", "reflection"):
        assert gradcheck(lambda a, b: F.grid_sample(a, b, "bilinear", pad, True), (x, g))
    th = tritorch.tensor(rng.standard_normal((2, 2, 3)), dtype=tritorch.float64, requires_grad=True)
    assert gradcheck(lambda t: F.affine_grid(t, (2, 1, 3, 4), False), (th,))


@pytest.mark.parametrize("size", [(2, 3, 4, 5), (2, 1, 1, 3), (2, 1, 3, 4, 5)])
@pytest.mark.parametrize("align", [True, False])
def test_affine_grid(device, size, align):
    k = len(size) - 2
    th, thr = make((2, k, k + 1), tritorch.float64, device, seed=8, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y = F.affine_grid(th, size, align)
        tth = torch.tensor(thr, requires_grad=True)
        ty = TF.affine_grid(tth, size, align)
    assert_close(y, ty.detach().numpy())
    go = np.random.default_rng(9).standard_normal(tuple(ty.shape))
    y.backward(tritorch.tensor(go, dtype=tritorch.float64, device=device))
    ty.backward(torch.tensor(go))
    assert_close(th.grad, tth.grad.numpy())


def test_spatial_transformer(device):
    """affine_grid then grid_sample, the spatial-transformer pattern, with gradients to theta and the image."""
    x, xr = make((2, 3, 5, 5), tritorch.float64, device, seed=10, requires_grad=True)
    th, thr = make((2, 2, 3), tritorch.float64, device, low=-0.8, high=0.8, seed=11, requires_grad=True)
    y = F.grid_sample(x, F.affine_grid(th, (2, 3, 4, 6), False), align_corners=False)
    tx, tth = torch.tensor(xr, requires_grad=True), torch.tensor(thr, requires_grad=True)
    ty = TF.grid_sample(tx, TF.affine_grid(tth, (2, 3, 4, 6), False), align_corners=False)
    assert_close(y, ty.detach().numpy())
    y.sum().backward()
    ty.sum().backward()
    assert_close(x.grad, tx.grad.numpy())
    assert_close(th.grad, tth.grad.numpy(), rtol=1e-9, atol=1e-10)


def test_errors(device):
    x, g = tritorch.zeros((2, 3, 4, 5), device=device), tritorch.zeros((2, 6, 7, 2), device=device)
    with pytest.raises(ValueError, match="expected mode to be 'bilinear', 'nearest' or 'bicubic'"):
        F.grid_sample(x, g, "foo", align_corners=False)
    with pytest.raises(ValueError, match="expected padding_mode to be 'zeros', 'border', or 'reflection'"):
        F.grid_sample(x, g, padding_mode="foo", align_corners=False)
    with pytest.warns(UserWarning, match="align_corners=False since 1.3.0"):
        F.grid_sample(x, g)
    with pytest.raises(RuntimeError, match="same batch size"):
        F.grid_sample(x, g[:1], align_corners=False)
    with pytest.raises(RuntimeError, match="expected grid to have size 2 in last dimension"):
        F.grid_sample(x, tritorch.zeros((2, 6, 7, 3), device=device), align_corners=False)
    with pytest.raises(RuntimeError, match="non-empty spatial dimensions"):
        F.grid_sample(tritorch.zeros((2, 3, 0, 5), device=device), g, align_corners=False)
    with pytest.raises(RuntimeError, match="expected scalar type Float but found Double"):
        F.grid_sample(x, g.double(), align_corners=False)
    with pytest.raises(NotImplementedError, match="bicubic"):
        F.grid_sample(x, g, "bicubic", align_corners=False)
    th = tritorch.zeros((2, 2, 3), device=device)
    with pytest.raises(NotImplementedError, match="affine_grid only supports 4D and 5D sizes"):
        F.affine_grid(th, (2, 3, 4), False)
    with pytest.raises(ValueError, match="Expected a batch of 3D affine matrices of shape Nx3x4"):
        F.affine_grid(th, (2, 3, 4, 5, 6), False)
    with pytest.raises(ValueError, match="Expected theta to have floating point type"):
        F.affine_grid(th.long(), (2, 3, 4, 5), False)
    with pytest.raises(ValueError, match="Expected non-zero, positive output size"):
        F.affine_grid(th, (2, 3, 0, 5), False)
