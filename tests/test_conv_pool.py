"""A convolution's activation differentiated inside the max pooling that reads it (``kernels/conv_pool.py``,
``tritorch.compile``'s ``fuse_conv_pool``): the pooling backward's activation epilogue against the separate kernels
and float64, the fused op against the separate ops (outputs and every gradient, double backward included), the
pass's conditions and the launches it saves."""
import numpy as np
import pytest

import tritorch
import tritorch.nn as nn
import tritorch.nn.functional as F
from tritorch.compiler import passes
from tritorch.kernels import pool as P
from tritorch.kernels.conv import EPILOGUE_ACTIVATIONS
from tritorch.kernels.conv_pool import conv2d_max_pool2d
from tritorch.kernels.linear import act_grad
from helpers import assert_close, compiled_equals_eager, make, to_np

F16, BF16 = tritorch.float16, tritorch.bfloat16

# (kernel_size, stride, padding, dilation, ceil_mode): overlapping windows (an element the argmax of several
# outputs), padding, dilation and a partial last window
WINDOWS = [(2, None, 0, 1, False), (3, 2, 1, 1, False), (3, 1, 1, 2, True), ((2, 3), (1, 2), (1, 0), 1, True)]


def _window(k, s, p, d, c):
    return dict(kernel_size=k, pool_stride=s, pool_padding=p, pool_dilation=d, ceil_mode=c)


@pytest.mark.parametrize("act", EPILOGUE_ACTIVATIONS)
@pytest.mark.parametrize("dtype", [tritorch.float32, F16, BF16, tritorch.float64])
@pytest.mark.parametrize("window", WINDOWS)
def test_epilogue_against_the_separate_kernels(act, dtype, window):
    """dx with the epilogue == act_grad(dx of the plain pooling) by the separate kernels (bit for bit for relu, the
    separate rounding otherwise), odd sizes, dx poisoned until written (TRITORCH_POISON)."""
    k, s, p, d, c = window
    h = F.conv2d(make((2, 3, 11, 9), dtype, "cuda", seed=1)[0], make((5, 3, 3, 3), dtype, "cuda", seed=2)[0],
                 padding=1, activation=act)
    params, out3 = P.pool_window(h._shape, P.MAX, 2, k, s, p, d, c, True, None, "max_pool2d")
    y, idx = P.pool_forward(h, params, out3)
    g, _ = make(y.shape, dtype, "cuda", seed=3)
    got = P.pool_grad(g, idx, params, h._shape, dtype, g.device, act, y)
    want = act_grad(P.pool_grad(g, idx, params, h._shape, dtype, g.device).reshape(-1, h.shape[-1]),
                    h.reshape(-1, h.shape[-1]), act, 0.0).reshape(h.shape)
    if act == "relu":
        np.testing.assert_array_equal(to_np(got), to_np(want))
    else:
        assert_close(got, want, dtype)


@pytest.mark.parametrize("act", EPILOGUE_ACTIVATIONS)
def test_epilogue_against_float64(device, act):
    """The pooled input's pre-activation gradient from float64 NumPy: act'(y) * g sent to each window's argmax."""
    h, rh = make((2, 4, 9, 10), tritorch.float32, device, seed=4)
    h = getattr(tritorch, act)(h)
    rh = {"relu": np.maximum(rh, 0), "sigmoid": 1 / (1 + np.exp(-rh)), "tanh": np.tanh(rh)}[act]
    params, out3 = P.pool_window(h._shape, P.MAX, 2, 3, 2, 1, 1, True, True, None, "max_pool2d")
    y, idx = P.pool_forward(h, params, out3)
    g, rg = make(y.shape, tritorch.float32, device, seed=5)
    ry = to_np(y)
    deriv = {"relu": (ry > 0).astype(np.float64), "sigmoid": ry * (1 - ry), "tanh": 1 - ry * ry}[act]
    want = np.zeros((8, 90))
    for r, (gr, ir) in enumerate(zip((rg * deriv).reshape(8, -1), to_np(idx).reshape(8, -1))):
        np.add.at(want[r], ir.astype(np.int64), gr)
    np.testing.assert_allclose(to_np(P.pool_grad(g, idx, params, h._shape, h.dtype, h.device, act, y)),
                               want.reshape(h.shape), rtol=1e-5, atol=1e-6)
    assert np.all(want.reshape(h.shape)[rh <= 0] == 0) if act == "relu" else True


def _both(device, dtype, act, window, layout="contiguous", batched=True, groups=1, bias=True):
    """(fused, separate) results and gradients of x, w and b for one case."""
    shape = (2, 4, 10, 7) if batched else (4, 10, 7)
    x, _ = make(shape, dtype, device, layout, seed=6, requires_grad=True)
    w, _ = make((6, 4 // groups, 3, 3), dtype, device, seed=7, low=-0.5, high=0.5, requires_grad=True)
    b = make((6,), dtype, device, seed=8, requires_grad=True)[0] if bias else None
    ins = [t for t in (x, w, b) if t is not None]
    k, s, p, d, c = window
    fused = conv2d_max_pool2d(x, w, b, 1, 1, 1, groups, activation=act, **_window(*window))
    plain = F.max_pool2d(F.conv2d(x, w, b, 1, 1, 1, groups, activation=act), k, s, p, d, c)
    g, _ = make(plain.shape, dtype, device, seed=9)
    return [(y, *tritorch.autograd.grad(y, ins, g)) for y in (fused, plain)]


@pytest.mark.parametrize("act", [*EPILOGUE_ACTIVATIONS, None])
@pytest.mark.parametrize("window", WINDOWS)
def test_op_equals_the_separate_ops(device, act, window):
    fused, plain = _both(device, tritorch.float32, act, window)
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(to_np(a), to_np(b), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [F16, BF16, tritorch.float64])
@pytest.mark.parametrize("case", ["transposed", "unbatched", "groups", "no bias"])
def test_op_layouts_and_dtypes(dtype, case):
    kw = {"transposed": dict(layout="transposed"), "unbatched": dict(batched=False), "groups": dict(groups=2),
          "no bias": dict(bias=False)}[case]
    fused, plain = _both("cuda", dtype, "relu", WINDOWS[1], **kw)
    for a, b in zip(fused, plain):
        assert_close(a, b, dtype)


def test_double_backward():
    """gradcheck and gradgradcheck in float64 (cpu: the create_graph path is the same recorded ops on every
    device; the interpreted cuda case below compares it with the separate ops')."""
    x, _ = make((1, 2, 6, 5), tritorch.float64, "cpu", seed=10, requires_grad=True)
    w, _ = make((3, 2, 3, 3), tritorch.float64, "cpu", seed=11, requires_grad=True)
    b, _ = make((3,), tritorch.float64, "cpu", seed=12, requires_grad=True)
    for act in ("sigmoid", "relu"):
        f = lambda x, w, b: conv2d_max_pool2d(x, w, b, padding=1, activation=act, kernel_size=3, pool_stride=2)
        assert tritorch.autograd.gradcheck(f, (x, w, b))
        assert tritorch.autograd.gradgradcheck(f, (x, w, b))


def test_double_backward_equals_the_separate_ops():
    x, _ = make((2, 2, 7, 6), tritorch.float32, "cuda", seed=13, requires_grad=True)
    w, _ = make((3, 2, 3, 3), tritorch.float32, "cuda", seed=14, requires_grad=True)
    g, _ = make((2, 3, 4, 3), tritorch.float32, "cuda", seed=15)
    res = []
    for fused in (True, False):
        y = conv2d_max_pool2d(x, w, None, padding=1, activation="tanh", kernel_size=3, pool_stride=2, pool_padding=1) \
            if fused else F.max_pool2d(F.conv2d(x, w, None, padding=1, activation="tanh"), 3, 2, 1)
        gx, gw = tritorch.autograd.grad(y, (x, w), g, create_graph=True)
        res.append(tritorch.autograd.grad((gx * gx).sum() + (gw * gw).sum(), (x, w)))
    for a, b in zip(*res):
        np.testing.assert_allclose(to_np(a), to_np(b), rtol=1e-5, atol=1e-6)


def test_errors_name_the_pooling():
    x, w = tritorch.randn(1, 2, 4, 4), tritorch.randn(3, 2, 3, 3)
    with pytest.raises(RuntimeError, match="pad should be at most half of effective kernel size"):
        conv2d_max_pool2d(x, w, activation="relu", kernel_size=2, pool_padding=2)
    with pytest.raises(RuntimeError, match="Output size is too small"):
        conv2d_max_pool2d(x, w, activation="relu", kernel_size=3)
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        conv2d_max_pool2d(x, w, activation="gelu", kernel_size=2)


class CNN(nn.Module):
    def __init__(self, act=nn.ReLU, pool=None):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 5, 3)
        self.act, self.pool = act(), pool or nn.MaxPool2d(2)

    def forward(self, x):
        return self.pool(self.act(self.c2(self.pool(self.act(self.c1(x)))))).flatten(1)


def _ops(m, *xs):
    graph = passes.fuse_linear_epilogue(tritorch.jit.trace(m, *xs).graph)
    return [n.op for n in passes.fuse_conv_pool(graph).nodes]


def test_pass_conditions():
    x = tritorch.randn(2, 1, 12, 12)
    assert _ops(CNN(), x) == ["conv2d_max_pool2d", "conv2d_max_pool2d", "flatten"]
    assert _ops(CNN(nn.Tanh), x) == ["conv2d_max_pool2d", "conv2d_max_pool2d", "flatten"]
    assert _ops(CNN(nn.GELU), x) == ["conv2d", "gelu", "max_pool2d", "conv2d", "gelu", "max_pool2d", "flatten"]
    assert _ops(CNN(pool=nn.AvgPool2d(2)), x)[:2] == ["conv2d", "avg_pool2d"]
    c = nn.Conv2d(1, 2, 3)
    assert _ops(lambda x: F.max_pool2d(c(x), 2), x) == ["conv2d", "max_pool2d"]             # no activation
    assert _ops(lambda x: F.max_pool2d(F.relu(c(x)), 2, return_indices=True), x)[:2] == ["conv2d", "max_pool2d"]
    two = lambda x: (lambda h: F.max_pool2d(h, 2).sum() + h.sum())(F.relu(c(x)))          # h read twice
    assert _ops(two, x)[:2] == ["conv2d", "max_pool2d"]
    out = lambda x: (lambda h: (F.max_pool2d(h, 2), h))(F.relu(c(x)))                      # h is an output
    assert _ops(out, x)[:2] == ["conv2d", "max_pool2d"]
    assert _ops(lambda x: F.max_pool2d(F.relu(c(x)), kernel_size=3, stride=1, padding=1, ceil_mode=True), x) == \
        ["conv2d_max_pool2d"]


def test_compiled_cnn_equals_eager_and_saves_the_activation_launches(device):
    tritorch.manual_seed(3)
    m = CNN().to(device)
    c = tritorch.compile(m)
    prof = compiled_equals_eager(m, c, tritorch.randn(3, 1, 12, 11, device=device))
    assert "2 conv + max pool pairs" in c.explain()
    if device == "cuda":
        names = [e.name for e in prof.events() if e.kind == "kernel"]
        assert "_act_grad_kernel" not in names and names.count("_pool_bwd_kernel") == 2
