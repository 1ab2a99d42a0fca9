"""Batch, layer, group and instance norm: forward, backward and running statistics against float64 NumPy."""
import numpy as np
import pytest

import tritorch
from tritorch.kernels.norm import RowNorm
from tritorch.nn import normalization as nn
from tritorch.profiler import profile
from tests.helpers import assert_close, make, to_np


# ---- float64 references ---------------------------------------------------------------------------------------------
def ref_norm(x, axes, eps):
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps)


def ref_norm_grad(x, g, axes, eps):
    """d/dx of sum(g * normalize(x)) over the reduction ``axes``."""
    m = np.prod([x.shape[a] for a in axes])
    xhat = ref_norm(x, axes, eps)
    rstd = 1 / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    return rstd * (g - g.sum(axis=axes, keepdims=True) / m - xhat * (g * xhat).sum(axis=axes, keepdims=True) / m)


def bshape(x, C):
    return (1, C) + (1,) * (x.ndim - 2)


@pytest.mark.parametrize("shape,layout", [((4, 3), "contiguous"), ((2, 5, 7), "transposed"),
                                          ((1, 3, 5, 6), "strided"), ((3, 2, 3, 3), "contiguous"),
                                          ((4, 3, 7, 6), "contiguous")])    # a channel longer than a block
def test_batch_norm_train(device, shape, layout):
    x, xr = make(shape, tritorch.float64, device, layout=layout, seed=1, requires_grad=True)
    C = shape[1]
    rng = np.random.default_rng(2)
    w = tritorch.tensor(rng.uniform(0.5, 1.5, C), dtype=tritorch.float64, device=device, requires_grad=True)
    b = tritorch.tensor(rng.standard_normal(C), dtype=tritorch.float64, device=device, requires_grad=True)
    rm = tritorch.tensor(rng.standard_normal(C), dtype=tritorch.float64, device=device)
    rv = tritorch.tensor(rng.uniform(0.5, 2, C), dtype=tritorch.float64, device=device)
    rm0, rv0 = to_np(rm), to_np(rv)
    y = tritorch.batch_norm(x, rm, rv, w, b, True, 0.1, 1e-5)
    axes = tuple(a for a in range(len(shape)) if a != 1)
    wr, br = to_np(w).reshape(bshape(xr, C)), to_np(b).reshape(bshape(xr, C))
    assert_close(y, ref_norm(xr, axes, 1e-5) * wr + br)
    m = xr.size // C
    assert_close(rm, 0.9 * rm0 + 0.1 * xr.mean(axis=axes))
    assert_close(rv, 0.9 * rv0 + 0.1 * xr.var(axis=axes) * m / (m - 1))
    g = rng.standard_normal(shape)
    y.backward(tritorch.tensor(g, dtype=tritorch.float64, device=device))
    assert_close(x.grad, wr * ref_norm_grad(xr, g, axes, 1e-5))
    assert_close(w.grad, (g * ref_norm(xr, axes, 1e-5)).sum(axis=axes))
    assert_close(b.grad, g.sum(axis=axes))


def test_batch_norm_eval_and_float32(device):
    x, xr = make((3, 4, 5), tritorch.float32, device, seed=3, requires_grad=True)
    rm = tritorch.tensor([0.1, -0.2, 0.3, 0.0], device=device)
    rv = tritorch.tensor([1.0, 2.0, 0.5, 1.5], device=device)
    y = tritorch.batch_norm(x, rm, rv, None, None, False, 0.1, 1e-3)
    rmr, rvr = to_np(rm)[None, :, None], to_np(rv)[None, :, None]
    assert_close(y, (xr - rmr) / np.sqrt(rvr + 1e-3))
    y.sum().backward()
    assert_close(x.grad, np.broadcast_to(1 / np.sqrt(rvr + 1e-3), xr.shape))
    assert to_np(rm).tolist() == pytest.approx([0.1, -0.2, 0.3, 0.0])


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_module_running_stats(device, momentum):
    m = nn.BatchNorm1d(3, momentum=momentum, device=device, dtype=tritorch.float64)
    rm, rv = np.zeros(3), np.ones(3)
    for step in range(1, 4):
        x, xr = make((5, 3), tritorch.float64, device, seed=step)
        m(x)
        f = 1.0 / step if momentum is None else momentum
        rm = (1 - f) * rm + f * xr.mean(0)
        rv = (1 - f) * rv + f * xr.var(0, ddof=1)
    assert int(m.num_batches_tracked.item()) == 3
    assert_close(m.running_mean, rm)
    assert_close(m.running_var, rv)
    m.eval()
    x, xr = make((2, 3), tritorch.float64, device, seed=9)
    assert_close(m(x), (xr - rm) / np.sqrt(rv + 1e-5))
    assert int(m.num_batches_tracked.item()) == 3


def test_batchnorm_module_options(device):
    m = nn.BatchNorm2d(2, affine=False, track_running_stats=False, device=device)
    assert m.weight is None and m.running_mean is None
    x, xr = make((2, 2, 3, 3), tritorch.float32, device, seed=4)
    m.eval()                                  # no running stats: batch statistics even in eval
    assert_close(m(x), ref_norm(xr, (0, 2, 3), 1e-5), rtol=1e-4, atol=1e-5)
    assert "track_running_stats=False" in repr(m)
    assert sorted(dict(nn.BatchNorm2d(2).named_buffers())) == ["num_batches_tracked", "running_mean",
                                                               "running_var"]


def test_batch_norm_errors(device):
    m = nn.BatchNorm1d(4, device=device)
    with pytest.raises(RuntimeError, match="running_mean should contain 3 elements not 4"):
        m(tritorch.zeros((2, 3), device=device))
    with pytest.raises(RuntimeError, match="weight should contain 3 elements not 4"):
        tritorch.batch_norm(tritorch.zeros((2, 3), device=device), None, None, tritorch.ones(4, device=device),
                            None, True)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        m(tritorch.zeros((1, 4), device=device))
    with pytest.raises(ValueError, match="expected 4D input"):
        nn.BatchNorm2d(4, device=device)(tritorch.zeros((2, 4), device=device))


@pytest.mark.parametrize("shape,ns,affine", [((3, 5), (5,), True), ((2, 3, 7), (3, 7), True),
                                             ((4, 70), (70,), False), ((1, 1), (1,), True),
                                             ((3, 150), (150,), True),      # rows longer than a block
                                             ((40, 5), (5,), True)])        # weight grads summed in chunks
def test_layer_norm(device, shape, ns, affine):
    x, xr = make(shape, tritorch.float64, device, seed=5, requires_grad=True)
    rng = np.random.default_rng(6)
    w = b = None
    if affine:
        w = tritorch.tensor(rng.uniform(0.5, 1.5, ns), dtype=tritorch.float64, device=device, requires_grad=True)
        b = tritorch.tensor(rng.standard_normal(ns), dtype=tritorch.float64, device=device, requires_grad=True)
    y = tritorch.layer_norm(x, ns, w, b, 1e-5)
    axes = tuple(range(len(shape) - len(ns), len(shape)))
    xhat = ref_norm(xr, axes, 1e-5)
    wr, br = (to_np(w), to_np(b)) if affine else (1.0, 0.0)
    assert_close(y, xhat * wr + br)
    g = rng.standard_normal(shape)
    y.backward(tritorch.tensor(g, dtype=tritorch.float64, device=device))
    assert_close(x.grad, ref_norm_grad(xr, g * wr, axes, 1e-5))
    if affine:
        lead = tuple(range(len(shape) - len(ns)))
        assert_close(w.grad, (g * xhat).sum(axis=lead))
        assert_close(b.grad, g.sum(axis=lead))


def test_layer_norm_module_and_errors(device):
    m = nn.LayerNorm(6, bias=False, device=device)
    assert m.bias is None
    x, xr = make((2, 3, 6), tritorch.float32, device, layout="transposed", seed=7)
    assert_close(m(x), ref_norm(xr, (2,), 1e-5), rtol=1e-4, atol=1e-5)
    xg = x.detach().requires_grad_(True)
    assert tritorch.layer_norm(xg, (3, 6)).grad_fn.name() == "NativeLayerNormBackward0"
    with pytest.raises(RuntimeError, match=r"Given normalized_shape=\[5\], expected input with shape \[\*, 5\]"):
        tritorch.layer_norm(x, (5,))
    with pytest.raises(RuntimeError, match="Expected weight to be of same shape as normalized_shape"):
        tritorch.layer_norm(x, (6,), tritorch.ones(5, device=device))


def test_layer_norm_float16(device):
    x, xr = make((3, 40), tritorch.float16, device, seed=8)
    assert_close(tritorch.layer_norm(x, (40,)), ref_norm(xr, (1,), 1e-5), rtol=5e-3, atol=5e-3)


@pytest.mark.parametrize("shape,groups", [((2, 6, 5), 3), ((1, 4, 3, 3), 1), ((3, 5, 2, 2), 5)])
def test_group_norm(device, shape, groups):
    x, xr = make(shape, tritorch.float64, device, seed=10, requires_grad=True)
    C = shape[1]
    rng = np.random.default_rng(11)
    w = tritorch.tensor(rng.uniform(0.5, 1.5, C), dtype=tritorch.float64, device=device, requires_grad=True)
    b = tritorch.tensor(rng.standard_normal(C), dtype=tritorch.float64, device=device, requires_grad=True)
    y = tritorch.group_norm(x, groups, w, b, 1e-5)
    xg = xr.reshape(shape[0], groups, -1)
    xhat = ref_norm(xg, (2,), 1e-5).reshape(shape)
    wr, br = to_np(w).reshape(bshape(xr, C)), to_np(b).reshape(bshape(xr, C))
    assert_close(y, xhat * wr + br)
    g = rng.standard_normal(shape)
    y.backward(tritorch.tensor(g, dtype=tritorch.float64, device=device))
    gx = ref_norm_grad(xg, (g * wr).reshape(xg.shape), (2,), 1e-5).reshape(shape)
    assert_close(x.grad, gx)
    axes = tuple(a for a in range(len(shape)) if a != 1)
    assert_close(w.grad, (g * xhat).sum(axis=axes))
    with pytest.raises(RuntimeError, match="divisible by num_groups"):
        tritorch.group_norm(x, 7)
    assert "3, 6" in repr(nn.GroupNorm(3, 6))


def test_instance_norm(device):
    x, xr = make((2, 3, 4, 5), tritorch.float64, device, seed=12, requires_grad=True)
    m = nn.InstanceNorm2d(3, device=device, dtype=tritorch.float64)
    assert m.weight is None and m.running_mean is None
    y = m(x)
    assert_close(y, ref_norm(xr, (2, 3), 1e-5))
    g = np.random.default_rng(13).standard_normal(xr.shape)
    y.backward(tritorch.tensor(g, dtype=tritorch.float64, device=device))
    assert_close(x.grad, ref_norm_grad(xr, g, (2, 3), 1e-5))
    t = nn.InstanceNorm2d(3, track_running_stats=True, device=device, dtype=tritorch.float64)
    t(x.detach())
    assert_close(t.running_mean, 0.1 * xr.mean(axis=(2, 3)).mean(0))
    assert_close(t.running_var, 0.9 + 0.1 * xr.var(axis=(2, 3), ddof=1).mean(0))
    t.eval()
    rm, rv = to_np(t.running_mean)[None, :, None, None], to_np(t.running_var)[None, :, None, None]
    assert_close(t(x.detach()), (xr - rm) / np.sqrt(rv + 1e-5))


def test_gradcheck_cpu():
    rng = np.random.default_rng(0)
    x = tritorch.tensor(rng.standard_normal((3, 2, 4)), dtype=tritorch.float64, requires_grad=True)
    w = tritorch.tensor(rng.uniform(0.5, 1.5, 2), dtype=tritorch.float64, requires_grad=True)
    b = tritorch.tensor(rng.standard_normal(2), dtype=tritorch.float64, requires_grad=True)
    assert tritorch.autograd.gradcheck(lambda t, w, b: tritorch.batch_norm(t, None, None, w, b, True), (x, w, b))
    lw = tritorch.tensor(rng.uniform(0.5, 1.5, 4), dtype=tritorch.float64, requires_grad=True)
    assert tritorch.autograd.gradcheck(lambda t, w: tritorch.layer_norm(t, (4,), w, None), (x, lw))
    assert tritorch.autograd.gradcheck(lambda t: tritorch.group_norm(t, 2), (x,))


def test_gradgradcheck_cpu():
    rng = np.random.default_rng(1)
    x = tritorch.tensor(rng.standard_normal((3, 2, 4)), dtype=tritorch.float64, requires_grad=True)
    w = tritorch.tensor(rng.uniform(0.5, 1.5, 2), dtype=tritorch.float64, requires_grad=True)
    b = tritorch.tensor(rng.standard_normal(2), dtype=tritorch.float64, requires_grad=True)
    assert tritorch.autograd.gradgradcheck(lambda t, w, b: tritorch.batch_norm(t, None, None, w, b, True),
                                           (x, w, b))
    rm, rv = tritorch.zeros(2, dtype=tritorch.float64), tritorch.ones(2, dtype=tritorch.float64)
    assert tritorch.autograd.gradgradcheck(lambda t, w, b: tritorch.batch_norm(t, rm, rv, w, b, False), (x, w, b))
    lw = tritorch.tensor(rng.uniform(0.5, 1.5, 4), dtype=tritorch.float64, requires_grad=True)
    lb = tritorch.tensor(rng.standard_normal(4), dtype=tritorch.float64, requires_grad=True)
    assert tritorch.autograd.gradgradcheck(lambda t, w, b: tritorch.layer_norm(t, (4,), w, b), (x, lw, lb))


def test_double_backward_cuda_matches_cpu():
    res = []
    for dev in ("cpu", "cuda"):
        x, _ = make((3, 2, 5), tritorch.float64, dev, seed=4, requires_grad=True)
        w = tritorch.tensor([0.7, 1.3], dtype=tritorch.float64, device=dev, requires_grad=True)
        y = tritorch.batch_norm(x, None, None, w, None, True) + tritorch.layer_norm(x, (5,))
        (gx,) = tritorch.autograd.grad((y ** 3).sum(), x, create_graph=True)
        (gx * gx).sum().backward()
        res.append((to_np(x.grad), to_np(w.grad)))
    assert_close(res[1][0], res[0][0], rtol=1e-9)
    assert_close(res[1][1], res[0][1], rtol=1e-9)


def test_bfloat16(device):
    x, xr = make((3, 2, 6), tritorch.bfloat16, device, seed=14, requires_grad=True)
    w = tritorch.ones(2, dtype=tritorch.bfloat16, device=device, requires_grad=True)
    b = tritorch.zeros(2, dtype=tritorch.bfloat16, device=device, requires_grad=True)
    rm, rv = tritorch.zeros(2, device=device), tritorch.ones(2, device=device)
    y = tritorch.batch_norm(x, rm, rv, w, b, True)
    assert y.dtype is tritorch.bfloat16 and rm.dtype is tritorch.float32
    assert_close(y, ref_norm(xr, (0, 2), 1e-5), rtol=3e-2, atol=3e-2)
    assert_close(rm, 0.1 * xr.mean(axis=(0, 2)), rtol=1e-5, atol=1e-6, dtype=tritorch.float32)
    g = np.random.default_rng(15).standard_normal(xr.shape)
    y.backward(tritorch.tensor(g, dtype=tritorch.bfloat16, device=device))
    gr = g.astype(tritorch.bfloat16.np).astype(np.float64)
    assert_close(x.grad, ref_norm_grad(xr, gr, (0, 2), 1e-5), rtol=5e-2, atol=5e-2)
    assert_close(b.grad, gr.sum(axis=(0, 2)), rtol=3e-2, atol=3e-2)
    y = tritorch.layer_norm(x.detach(), (6,))
    assert_close(y, ref_norm(xr, (2,), 1e-5), rtol=3e-2, atol=3e-2)


def test_zero_size_and_instance_norm1d(device):
    x = tritorch.zeros((0, 5), dtype=tritorch.float64, device=device, requires_grad=True)
    w = tritorch.ones(5, dtype=tritorch.float64, device=device, requires_grad=True)
    y = tritorch.layer_norm(x, (5,), w)
    assert tuple(y.shape) == (0, 5)
    y.sum().backward()
    assert tuple(x.grad.shape) == (0, 5) and to_np(w.grad).tolist() == [0.0] * 5
    x, xr = make((2, 3, 7), tritorch.float64, device, layout="strided", seed=16)
    m = nn.InstanceNorm1d(3, affine=True, device=device, dtype=tritorch.float64)
    assert_close(m(x), ref_norm(xr, (2,), 1e-5))
    assert_close(m(x[0]), ref_norm(xr[0], (1,), 1e-5))            # unbatched (C, L)


def test_strided_running_stats(device):
    x, xr = make((4, 3), tritorch.float64, device, seed=17)
    buf = tritorch.zeros(6, dtype=tritorch.float64, device=device)
    rm, rv = buf[::2], tritorch.ones(6, dtype=tritorch.float64, device=device)[1::2]
    w = tritorch.ones(6, dtype=tritorch.float64, device=device)[::2]
    y = tritorch.batch_norm(x, rm, rv, w, None, True, 0.5)
    assert_close(y, ref_norm(xr, (0,), 1e-5))
    assert_close(buf, np.stack([0.5 * xr.mean(0), np.zeros(3)], 1).ravel())
    assert_close(rv, 0.5 + 0.5 * xr.var(0, ddof=1))


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_split_channels(device, training):
    """Channels long enough to be reduced in several chunks (partials combined with Chan's formula)."""
    x, xr = make((5, 2, 60), tritorch.float64, device, layout="transposed", seed=18, requires_grad=True)
    w = tritorch.tensor([0.5, 2.0], dtype=tritorch.float64, device=device, requires_grad=True)
    rm = tritorch.tensor([0.1, -0.1], dtype=tritorch.float64, device=device)
    rv = tritorch.tensor([1.5, 0.7], dtype=tritorch.float64, device=device)
    rm0, rv0 = to_np(rm), to_np(rv)
    y = tritorch.batch_norm(x, rm, rv, w, None, training, 0.1)
    wr = to_np(w)[None, :, None]
    g = np.random.default_rng(19).standard_normal(xr.shape)
    y.backward(tritorch.tensor(g, dtype=tritorch.float64, device=device))
    if training:
        xhat = ref_norm(xr, (0, 2), 1e-5)
        assert_close(rm, 0.9 * rm0 + 0.1 * xr.mean(axis=(0, 2)))
        assert_close(rv, 0.9 * rv0 + 0.1 * xr.var(axis=(0, 2), ddof=1))
        assert_close(x.grad, wr * ref_norm_grad(xr, g, (0, 2), 1e-5))
    else:
        r = 1 / np.sqrt(rv0 + 1e-5)[None, :, None]
        xhat = (xr - rm0[None, :, None]) * r
        assert_close(x.grad, wr * r * g)
    assert_close(y, xhat * wr)
    assert_close(w.grad, (g * xhat).sum(axis=(0, 2)))


# ---- issue 14: non-contiguous parameters, empty batches, degenerate statistics --------------------------------------
def test_layer_norm_non_contiguous_weight_and_bias(device):
    """A sliced weight and an expanded bias (the kernels read parameters with stride 1: they must be copied)."""
    x, xr = make((3, 4, 6), tritorch.float64, device, seed=20, requires_grad=True)
    wbase = tritorch.tensor(np.arange(1.0, 13.0), dtype=tritorch.float64, device=device, requires_grad=True)
    w = wbase[::2]                                                      # stride 2
    b = tritorch.tensor([0.5], dtype=tritorch.float64, device=device).expand(6)     # stride 0
    y = tritorch.layer_norm(x, (6,), w, b)
    xhat = ref_norm(xr, (2,), 1e-5)
    wr = np.arange(1.0, 13.0)[::2]
    assert_close(y, xhat * wr + 0.5)
    g = np.random.default_rng(21).standard_normal(xr.shape)
    y.backward(tritorch.tensor(g, dtype=tritorch.float64, device=device))
    assert_close(x.grad, ref_norm_grad(xr, g * wr, (2,), 1e-5))
    gw = np.zeros(12)
    gw[::2] = (g * xhat).sum(axis=(0, 1))
    assert_close(wbase.grad, gw)
    # a 2-d normalized_shape with a transposed (permuted) weight
    x2, x2r = make((2, 3, 4), tritorch.float64, device, seed=22)
    wt, wtr = make((3, 4), tritorch.float64, device, layout="transposed", seed=23)
    assert not wt.is_contiguous()
    assert_close(tritorch.layer_norm(x2, (3, 4), wt), ref_norm(x2r, (1, 2), 1e-5) * wtr)


def test_layer_norm_bias_without_weight_multi_dim(device):
    """The bias gradient has the bias's shape (normalized_shape), also without a weight, in both backward paths."""
    x, xr = make((2, 3, 4), tritorch.float64, device, seed=24, requires_grad=True)
    b = tritorch.zeros((3, 4), dtype=tritorch.float64, device=device, requires_grad=True)
    g = np.random.default_rng(25).standard_normal(xr.shape)
    gt = tritorch.tensor(g, dtype=tritorch.float64, device=device)
    tritorch.layer_norm(x, (3, 4), None, b).backward(gt)
    assert tuple(b.grad.shape) == (3, 4)
    assert_close(b.grad, g.sum(0))
    assert_close(x.grad, ref_norm_grad(xr, g, (1, 2), 1e-5))
    gx, gb = tritorch.autograd.grad(tritorch.layer_norm(x, (3, 4), None, b), (x, b), gt, create_graph=True)
    assert tuple(gb.shape) == (3, 4)
    assert_close(gb, g.sum(0))


def test_batch_norm_empty_batch(device):
    """Batch 0, as PyTorch: an empty output, zero parameter gradients, running statistics left as they are (the
    module still counts the batch)."""
    for shape in ((0, 3, 4, 4), (0, 3), (2, 3, 0)):
        x = tritorch.zeros(shape, dtype=tritorch.float64, device=device, requires_grad=True)
        w = tritorch.ones(3, dtype=tritorch.float64, device=device, requires_grad=True)
        b = tritorch.zeros(3, dtype=tritorch.float64, device=device, requires_grad=True)
        rm = tritorch.full((3,), 0.5, dtype=tritorch.float64, device=device)
        rv = tritorch.full((3,), 2.0, dtype=tritorch.float64, device=device)
        for training in (True, False):
            y = tritorch.batch_norm(x, rm, rv, w, b, training)
            assert tuple(y.shape) == shape
            y.sum().backward()
            assert tuple(x.grad.shape) == shape
            assert to_np(w.grad).tolist() == [0.0] * 3 and to_np(b.grad).tolist() == [0.0] * 3
            assert to_np(rm).tolist() == [0.5] * 3 and to_np(rv).tolist() == [2.0] * 3
        y = tritorch.batch_norm(x, None, None, None, None, True)
        assert tuple(y.shape) == shape
    m = nn.BatchNorm2d(3, device=device)
    assert tuple(m(tritorch.zeros((0, 3, 2, 2), device=device)).shape) == (0, 3, 2, 2)
    assert int(m.num_batches_tracked.item()) == 1
    assert to_np(m.running_mean).tolist() == [0.0] * 3 and to_np(m.running_var).tolist() == [1.0] * 3


def test_group_and_instance_norm_empty_batch(device):
    x = tritorch.zeros((0, 3, 4), dtype=tritorch.float64, device=device, requires_grad=True)
    w = tritorch.ones(3, dtype=tritorch.float64, device=device, requires_grad=True)
    b = tritorch.zeros(3, dtype=tritorch.float64, device=device, requires_grad=True)
    y = tritorch.group_norm(x, 3, w, b)
    assert tuple(y.shape) == (0, 3, 4)
    y.sum().backward()
    assert tuple(x.grad.shape) == (0, 3, 4) and to_np(w.grad).tolist() == [0.0] * 3
    y = tritorch.instance_norm(x)
    assert tuple(y.shape) == (0, 3, 4)
    # PyTorch's instance norm has no sample to repeat the affine parameters for: it raises an IndexError
    with pytest.raises(IndexError, match="instance_norm"):
        tritorch.instance_norm(x, weight=w, bias=b)
    # and its running statistics become the mean over no samples: NaN
    rm = tritorch.zeros(3, dtype=tritorch.float64, device=device)
    rv = tritorch.ones(3, dtype=tritorch.float64, device=device)
    assert tuple(tritorch.instance_norm(x, rm, rv).shape) == (0, 3, 4)
    assert np.isnan(to_np(rm)).all() and np.isnan(to_np(rv)).all()


def test_norm_degenerate_statistics_errors(device):
    """PyTorch's checks for statistics of a single value and for eps, with its exceptions and messages."""
    x1 = tritorch.ones((2, 3, 1), device=device)
    for x in (x1, tritorch.ones((2, 3), device=device), tritorch.ones((0, 3, 1, 1), device=device)):
        with pytest.raises(ValueError, match=r"Expected more than 1 spatial element when training, got input size "
                                             r"tritorch\.Size"):
            tritorch.instance_norm(x)
    with pytest.raises(ValueError, match="Expected more than 1 spatial element when training"):
        nn.InstanceNorm1d(3, device=device)(x1)
    rm = tritorch.tensor([0.5, 0.0, -1.0], device=device)
    rv = tritorch.tensor([1.0, 4.0, 0.25], device=device)
    y = tritorch.instance_norm(x1, rm, rv, use_input_stats=False)       # running statistics: no check
    assert_close(y, (np.ones((2, 3, 1)) - to_np(rm)[:, None]) / np.sqrt(to_np(rv)[:, None] + 1e-5),
                 rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError, match="Expected running_mean and running_var to be defined"):
        tritorch.instance_norm(x1, use_input_stats=False)
    with pytest.raises(ValueError, match="running_mean and running_var must either both be None or neither"):
        tritorch.instance_norm(tritorch.ones((2, 3, 4), device=device), rm)
    # group norm: PyTorch checks the (N * C / G) * spatial values of a "channel" of its (N * C / G, G, *) view
    with pytest.raises(ValueError, match=r"Expected more than 1 value per channel when training, got input size "
                                         r"\[1, 3, 1\]"):
        tritorch.group_norm(tritorch.ones((1, 3, 1), device=device), 3)
    assert to_np(tritorch.group_norm(x1, 3)).tolist() == np.zeros((2, 3, 1)).tolist()     # accepted there
    with pytest.raises(RuntimeError, match="Expected HxW to be greater than 0, got 0"):
        tritorch.group_norm(tritorch.ones((2, 3, 0), device=device), 3)
    with pytest.raises(RuntimeError, match="Expected number of channels to be greater than 0, got 0"):
        tritorch.group_norm(tritorch.ones((2, 0, 3), device=device), 1)
    # batch norm
    with pytest.raises(ValueError, match=r"Expected more than 1 value per channel when training, got input size "
                                         r"tritorch\.Size\(\[1, 0\]\)"):
        tritorch.batch_norm(tritorch.ones((1, 0), device=device), None, None, training=True)
    xb = tritorch.ones((4, 3), device=device)
    with pytest.raises(ValueError, match="batch_norm eps must be positive during training, but got 0"):
        tritorch.batch_norm(xb, None, None, training=True, eps=0)
    with pytest.raises(ValueError, match="batch_norm eps must be positive during training, but got 0.0"):
        nn.BatchNorm1d(3, eps=0.0, device=device)(xb)
    with pytest.raises(ValueError, match=r"batch_norm eps must be non-negative, but got -1\.0"):
        tritorch.batch_norm(xb, rm, rv, training=False, eps=-1.0)
    y = tritorch.batch_norm(xb, rm, rv, training=False, eps=0.0)         # eval: eps = 0 is allowed
    assert_close(y, (np.ones((4, 3)) - to_np(rm)) / np.sqrt(to_np(rv)), rtol=1e-6, atol=1e-6)


def test_instance_norm_eps_zero_constant_plane(device):
    """With eps = 0 PyTorch's instance norm gives a constant plane rstd 0 (the output is the bias), not 0 / 0."""
    xr = np.ones((2, 3, 4))
    xr[:, 1] = np.random.default_rng(26).standard_normal((2, 4))
    x = tritorch.tensor(xr, dtype=tritorch.float64, device=device)
    w = tritorch.tensor([1.5, 2.0, 3.0], dtype=tritorch.float64, device=device)
    b = tritorch.tensor([0.1, 0.2, 0.3], dtype=tritorch.float64, device=device)
    expect = np.broadcast_to(np.array([0.1, 0.2, 0.3])[None, :, None], xr.shape).copy()
    expect[:, 1] = ref_norm(xr[:, 1], (1,), 0.0) * 2.0 + 0.2
    assert_close(tritorch.instance_norm(x, weight=w, bias=b, eps=0.0), expect)
    rm = tritorch.zeros(3, dtype=tritorch.float64, device=device)
    rv = tritorch.ones(3, dtype=tritorch.float64, device=device)
    assert_close(tritorch.instance_norm(x, rm, rv, w, b, eps=0.0), expect)
    assert_close(rm, 0.1 * xr.mean(axis=2).mean(0))


def test_layer_group_norm_overflowing_variance_gives_bias(device):
    """A variance that overflows gives rstd 0, so the output is the bias (0 without one), on both devices alike.
    (PyTorch's CPU Welford gives NaN instead when the row is shorter than its SIMD width: see KNOWN in
    tests/test_fuzz.py.)"""
    F = tritorch.nn.functional
    x = tritorch.tensor([[1.797e308, 1., 2.]], dtype=tritorch.float64, device=device)
    b = tritorch.tensor([0.5, -1., 2.], dtype=tritorch.float64, device=device)
    assert F.layer_norm(x, (3,), bias=b).tolist() == [[0.5, -1.0, 2.0]]
    assert (to_np(F.group_norm(x.reshape(1, 3, 1), 1)) == 0).all()


def test_batchnorm3d_and_instancenorm3d(device):
    """BatchNorm3d / InstanceNorm3d (issue 17): the (N, C, D, H, W) forms of the same kernels, against PyTorch."""
    torch = pytest.importorskip("torch")
    x, xr = make((2, 3, 3, 4, 5), tritorch.float64, device, "transposed", seed=41, requires_grad=True)
    tx = torch.tensor(xr, requires_grad=True)
    for cls, kw in (("BatchNorm3d", {}), ("InstanceNorm3d", {"affine": True, "track_running_stats": True})):
        m = getattr(nn, cls)(3, momentum=0.3, **kw).to(dtype=tritorch.float64, device=device)
        tm = getattr(torch.nn, cls)(3, momentum=0.3, dtype=torch.float64, **kw)
        y, ty = m(x), tm(tx)
        assert_close(y, ty.detach().numpy())
        assert_close(m.running_var, tm.running_var.numpy())
        g = np.random.default_rng(42).standard_normal(tuple(ty.shape))
        y.backward(tritorch.tensor(g, dtype=tritorch.float64, device=device))
        ty.backward(torch.tensor(g))
        assert_close(x.grad, tx.grad.numpy())
        assert_close(m.weight.grad, tm.weight.grad.numpy())
        x.grad, tx.grad = None, None
        m.eval(), tm.eval()
        assert_close(m(x), tm(tx).detach().numpy())
    assert tuple(nn.InstanceNorm3d(3)(x[0]).shape) == (3, 3, 4, 5)            # unbatched (C, D, H, W)
    with pytest.raises(ValueError, match=r"expected 5D input \(got 4D input\)"):
        nn.BatchNorm3d(3)(x[0])
    with pytest.raises(ValueError, match=r"expected 4D or 5D input \(got 3D input\)"):
        nn.InstanceNorm3d(3)(x[0, 0])


@pytest.mark.parametrize("rows", [1, 64, 128, 129, 300])   # rows in one (128 x 32) tile: one chunk; and several
def test_layer_norm_parameter_grads_are_stored_without_a_copy(rows):
    """The kernels' dw/db are fresh tensors of the parameters' shape: ``.grad`` takes them as they are; one kernel
    reads x and g once for dx and each chunk's partial sums, which one kernel adds for both parameters (rows that
    fit one tile of 4096 elements are one chunk: no second launch)."""
    ln = nn.LayerNorm(32).to("cuda")
    loss = ln(tritorch.randn(rows, 32, device="cuda")).pow(2).sum()
    with profile() as prof:
        loss.backward()
    assert [e.name for e in prof.events() if e.kind == "op" and e.name == "clone"] == []
    assert prof.kernel_launches("_ln_bwd_kernel") == 1 and prof.kernel_launches("_ln_dwdb_sum_kernel") == (rows > 128)
    assert prof.kernel_launches("_ln_bwd_dx_kernel") + prof.kernel_launches("_ln_bwd_dwdb_kernel") == 0
    assert prof.kernel_launches("_reduce_mid_kernel") == 0
    assert ln.weight.grad.shape == (32,) and ln.bias.grad.shape == (32,)


@pytest.mark.parametrize("rows, n, dtype", [
    (64, 64, tritorch.float32),         # all rows in one (64 x 64) tile: one program
    (150, 100, tritorch.float32),       # (32 x 128) tiles: 3 chunks of 64 rows, two tiles each, the last a part tile
    (150, 100, tritorch.float64),       # (16 x 128) tiles (2048 elements in float64)
    (5, 3, tritorch.float64)])          # fewer rows than a tile holds, columns past the edge
@pytest.mark.parametrize("params", ["weight and bias", "weight", "bias"])
def test_layer_norm_backward_in_tiles_of_rows(rows, n, dtype, params):
    """``_ln_bwd_kernel`` reads a tile of rows at a time: dx, dw and db equal float64's for one tile, several tiles
    per chunk, several chunks, a part tile, with a weight and a bias or one of them (``HAS_W``, ``HAS_B``), and with
    the skip connection's gradient added in the kernel."""
    x, xr = make((rows, n), dtype, "cuda", seed=21, requires_grad=True)
    g, gr = make((rows, n), dtype, "cuda", seed=22)
    rng = np.random.default_rng(23)
    wr, br = rng.uniform(0.5, 1.5, n), rng.standard_normal(n)
    w = tritorch.tensor(wr, dtype=dtype, device="cuda", requires_grad=True) if "weight" in params else None
    b = tritorch.tensor(br, dtype=dtype, device="cuda", requires_grad=True) if "bias" in params else None
    y = tritorch.layer_norm(x, (n,), w, b)
    with profile() as prof:
        (x + y).backward(g)                 # the skip's gradient g is added to dx in the kernel
    assert prof.kernel_launches("_ln_bwd_kernel") == 1 and prof.kernel_launches("_ln_bwd_dx_kernel") == 0
    tol = dict(rtol=1e-10, atol=1e-10) if dtype is tritorch.float64 else dict(rtol=1e-4, atol=1e-5)
    xhat = ref_norm(xr, (1,), 1e-5)
    assert_close(x.grad, gr + ref_norm_grad(xr, gr * (wr if w is not None else 1.0), (1,), 1e-5), **tol)
    if w is not None:
        assert_close(w.grad, (gr * xhat).sum(axis=0), **tol)
    if b is not None:
        assert_close(b.grad, gr.sum(axis=0), **tol)


@pytest.mark.parametrize("rows, n", [(64, 64), (150, 100), (3, 4100)])   # one tile, chunks, wider rows
@pytest.mark.parametrize("rms", [False, True])
def test_row_norm_backward_without_dx(rows, n, rms):
    """x needs no gradient (a model's data input): the backward writes no dx (``HAS_DX``; wider rows launch no
    ``_ln_bwd_dx_kernel``), reads and writes dx's bytes less than with it, and dw, db equal float64's."""
    x, xr = make((rows, n), tritorch.float32, "cuda", seed=31)
    g, gr = make((rows, n), tritorch.float32, "cuda", seed=32)
    launches = {}
    for need_x in (False, True):
        w, wr = make((n,), tritorch.float32, "cuda", seed=33, low=0.5, high=1.5, requires_grad=True)
        b, br = make((n,), tritorch.float32, "cuda", seed=34, requires_grad=True)
        xx = x.detach().requires_grad_(need_x)
        y = RowNorm.apply(xx, w, None if rms else b, 1e-5, n, rms)
        with profile() as prof:
            y.backward(g)
        launches[need_x] = (prof.kernel_launches(), prof.kernel_bytes())
        assert (xx.grad is not None) == need_x
        np.testing.assert_array_equal(to_np(x), xr)         # (nothing written where dx would be)
        mean = np.zeros((rows, 1)) if rms else xr.mean(1, keepdims=True)
        xhat = (xr - mean) / np.sqrt(((xr - mean) ** 2).mean(1, keepdims=True) + 1e-5)
        assert_close(w.grad, (gr * xhat).sum(axis=0), rtol=1e-4, atol=1e-4)
        if not rms:
            assert_close(b.grad, gr.sum(axis=0), rtol=1e-4, atol=1e-4)
    wide = n > 4096      # no _ln_bwd_dx_kernel: x, g and dx, w, mean and rstd it is handed; else dx alone
    assert launches[False][0] == launches[True][0] - wide
    assert launches[False][1] == launches[True][1] - (3 * rows * n + n + 2 * rows if wide else rows * n) * 4


@pytest.mark.parametrize("rows, n", [(6, 37), (40, 4100)])     # rows in one block (3 chunks), wider rows (2)
def test_layer_norm_weight_without_bias(device, rows, n):
    """A weight and no bias: the backward kernels skip the bias's partial sums (``HAS_B``), dx and dw as float64's."""
    x, xr = make((rows, n), tritorch.float32, device, seed=9, requires_grad=True)
    w, wr = make((n,), tritorch.float32, device, seed=10, requires_grad=True)
    g, gr = make((rows, n), tritorch.float32, device, seed=11)
    tritorch.layer_norm(x, (n,), w).backward(g)
    xhat = ref_norm(xr, (1,), 1e-5)
    assert_close(x.grad, ref_norm_grad(xr, gr * wr, (1,), 1e-5), atol=1e-5)
    assert_close(w.grad, (gr * xhat).sum(axis=0), rtol=1e-4, atol=1e-4)
