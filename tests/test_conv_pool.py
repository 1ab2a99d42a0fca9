"""A convolution's activation differentiated inside the max pooling that reads it, and both in one forward kernel
(``kernels/conv_pool.py``, ``tritorch.compile``'s ``fuse_conv_pool``): the one-kernel forward against float64 and the
two kernels, the pooling backward's activation epilogue against the separate kernels and float64, the fused op
against the separate ops (outputs and every gradient, double backward included), the pass's conditions and the
launches it saves."""
import numpy as np
import pytest

import tritorch
import tritorch.nn as nn
import tritorch.nn.functional as F
from tritorch.compiler import passes
from tritorch.kernels import conv_pool as CP, pool as P
from tritorch.kernels.conv import EPILOGUE_ACTIVATIONS, Geometry, run_conv
from tritorch.kernels.conv_pool import conv2d_max_pool2d
from tritorch.kernels.linear import act_grad
from tritorch.profiler import profile
from helpers import assert_close, compiled_equals_eager, make, to_np
from test_conv import ref_conv2d

F16, BF16 = tritorch.float16, tritorch.bfloat16

# (kernel_size, stride, padding, dilation, ceil_mode): overlapping windows (an element the argmax of several
# outputs), padding, dilation and a partial last window
WINDOWS = [(2, None, 0, 1, False), (3, 2, 1, 1, False), (3, 1, 1, 2, True), ((2, 3), (1, 2), (1, 0), 1, True)]


# windows that do not overlap (the one-kernel forward): plain 2 x 2, padding with a partial last window, dilation
# with gaps between windows, a (3, 2) window of stride (3, 3)
APART = [(2, None, 0, 1, False), (2, 2, 1, 1, True), (2, 3, 0, 2, False), ((3, 2), 3, (1, 0), 1, True)]
# (x shape, w shape, conv stride, padding, dilation, groups): 3 input channels (the flattened K loop), 32 (tap by
# tap), strided and dilated, grouped
CONVS = [((2, 3, 11, 9), (5, 3, 3, 3), 1, 1, 1, 1), ((1, 32, 9, 8), (6, 32, 3, 3), 1, 1, 1, 1),
         ((2, 4, 13, 12), (6, 4, 3, 2), 2, (1, 0), (1, 2), 1), ((2, 4, 9, 9), (6, 2, 3, 3), 1, 1, 1, 2)]


def _window(k, s, p, d, c):
    return dict(kernel_size=k, pool_stride=s, pool_padding=p, pool_dilation=d, ceil_mode=c)


def _conv_pool_case(dtype, act, conv, window, seed=0):
    """(x, w, b, geo, conv output size, pooling params, pooled size, float64 x, w, b) for one case."""
    xs, ws, stride, pad, dil, groups = conv
    x, rx = make(xs, dtype, "cuda", "transposed" if seed % 2 else "contiguous", seed=seed)
    w, rw = make(ws, dtype, "cuda", seed=seed + 1, low=-0.5, high=0.5)
    b, rb = make(ws[:1], dtype, "cuda", seed=seed + 2)
    two = lambda v: (v, v) if isinstance(v, int) else tuple(v)    # noqa: E731
    geo = Geometry(two(stride), two(pad), two(dil), groups)
    out_hw = tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                   for n, k, s, p, d in zip(xs[2:], ws[2:], geo.stride, geo.padding, geo.dilation))
    params, out3 = P.pool_window((xs[0], ws[0]) + out_hw, P.MAX, 2, *window, True, None, "max_pool2d")
    return x, w, b, geo, out_hw, params, out3, (rx, rw, rb)


@pytest.mark.parametrize("dtype", [tritorch.float32, F16, tritorch.float64])
@pytest.mark.parametrize("conv", range(len(CONVS)))
@pytest.mark.parametrize("window", range(len(APART)))
def test_one_kernel_forward_against_float64(dtype, conv, window):
    """y and idx of ``_conv_pool_fwd_kernel`` (outputs poisoned until written): y is each window's maximum of the
    float64 activation within dtype tolerance, and idx names an element of that window whose float64 value is that
    maximum (within tolerance); the same as the conv and pooling kernels within tolerance. Each activation (and
    none) meets each convolution and each window once per dtype."""
    act, window = [*EPILOGUE_ACTIVATIONS, None][(conv + window) % 4], APART[window]
    x, w, b, geo, out_hw, params, out3, (rx, rw, rb) = _conv_pool_case(dtype, act, CONVS[conv], window, seed=conv)
    assert CP.fusable(x, params)
    with profile() as prof:
        y, idx = CP.launch_conv_pool(x, w, b, geo, out_hw, act, params, out3)
    assert [e.name for e in prof.events() if e.kind == "kernel"] == ["_conv_pool_fwd_kernel"]
    h = ref_conv2d(rx, rw, rb, geo.stride, geo.padding, geo.dilation, geo.groups)
    h = {None: h, "relu": np.maximum(h, 0), "sigmoid": 1 / (1 + np.exp(-h)), "tanh": np.tanh(h)}[act]
    rows = h.reshape(h.shape[0] * h.shape[1], -1)
    flat_idx = to_np(idx).reshape(rows.shape[0], -1).astype(np.int64)
    assert flat_idx.min() >= 0 and flat_idx.max() < rows.shape[1]
    picked = np.take_along_axis(rows, flat_idx, 1).reshape(y.shape)
    want, want_idx = P.pool_forward(tritorch.tensor(h, device="cuda"), params, out3)     # float64 windows' maxima
    assert_close(y, to_np(want), dtype)
    assert_close(tritorch.tensor(picked), to_np(want), dtype)
    # each argmax lies in its own window: the float64 pooling's argmax is in the same window, so both rows match
    (k, s, p, d, c) = window
    two = lambda v: (v, v) if isinstance(v, int) else tuple(v)    # noqa: E731
    s = two(s if s is not None else k)
    oh, ow = flat_idx // h.shape[3], flat_idx % h.shape[3]
    wh, ww = to_np(want_idx).reshape(flat_idx.shape) // h.shape[3], to_np(want_idx).reshape(flat_idx.shape) % h.shape[3]
    assert np.all((oh + two(p)[0]) // s[0] == (wh + two(p)[0]) // s[0])
    assert np.all((ow + two(p)[1]) // s[1] == (ww + two(p)[1]) // s[1])
    sy, sidx = P.pool_forward(run_conv(x, w, b, geo, out_hw, act), params, out3)
    assert_close(y, to_np(sy), dtype)
    if dtype is tritorch.float64:
        np.testing.assert_array_equal(to_np(idx), to_np(sidx))


def test_one_kernel_forward_nan_and_ties():
    """A NaN in x spreads to the convolution pixels that read it: the window takes the NaN (and its index), as the
    pooling kernel does; relu's zeros tie, and the first in window order wins (float64: the same bits as the two
    kernels)."""
    x, w, b, geo, out_hw, params, out3, _ = _conv_pool_case(tritorch.float64, "relu", CONVS[0], APART[1])
    x = x.clone()
    x[0, 1, 4, 4] = float("nan")
    b = b - 10.0                                # most pre-activations negative: windows of zeros
    y, idx = CP.launch_conv_pool(x, w, b, geo, out_hw, "relu", params, out3)
    sy, sidx = P.pool_forward(run_conv(x, w, b, geo, out_hw, "relu"), params, out3)
    assert np.isnan(to_np(y)).any() and (to_np(y) == 0).any()
    np.testing.assert_array_equal(to_np(y), to_np(sy))
    np.testing.assert_array_equal(to_np(idx), to_np(sidx))


def test_one_kernel_forward_is_chosen_only_for_windows_apart():
    """Overlapping windows, the cpu and bfloat16 in the interpreter run the two kernels."""
    x, w, b, geo, out_hw, params, out3, _ = _conv_pool_case(tritorch.float32, "relu", CONVS[0], WINDOWS[1])
    assert not CP.fusable(x, params)
    assert CP.fusable(x, _conv_pool_case(tritorch.float32, "relu", CONVS[0], APART[0])[5])
    assert not CP.fusable(x.cpu(), _conv_pool_case(tritorch.float32, "relu", CONVS[0], APART[0])[5])
    with profile() as prof:
        conv2d_max_pool2d(x, w, b, padding=1, activation="relu", kernel_size=3, pool_stride=2, pool_padding=1)
        conv2d_max_pool2d(x, w, b, padding=1, activation="relu", kernel_size=2)
    assert [e.name for e in prof.events() if e.kind == "kernel"] == \
        ["_conv_fwd_kernel", "_pool_fwd_kernel", "_conv_pool_fwd_kernel"]


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
@pytest.mark.parametrize("window", [WINDOWS[1], APART[1]])
def test_op_layouts_and_dtypes(dtype, case, window):
    kw = {"transposed": dict(layout="transposed"), "unbatched": dict(batched=False), "groups": dict(groups=2),
          "no bias": dict(bias=False)}[case]
    fused, plain = _both("cuda", dtype, "relu", window, **kw)
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
        x = tritorch.randn(3, 1, 12, 11, device=device)
        with profile() as fwd:
            c(x)
        # forward: each pair one kernel (2 x 2 windows do not overlap), the convolution's result never stored
        assert [e.name for e in fwd.events() if e.kind == "kernel"] == ["_conv_pool_fwd_kernel"] * 2
