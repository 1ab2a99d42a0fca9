"""Dropout and residual epilogues of the convolutions: ``conv1d``/``conv2d(..., activation=, dropout_p=,
dropout_channels=, residual=)`` against the separate ops with the same seed (outputs, every gradient, the
generator's next numbers, double backward), their checks, and ``tritorch.compile`` fusing ``dropout``,
``dropout2d`` and skip connections into the convolution (``compiler/passes/epilogues.py``)."""
import itertools
import warnings

import numpy as np
import pytest

import tritorch
import tritorch.nn as nn
import tritorch.nn.functional as F
from tritorch.compiler import passes
from tritorch.profiler import profile
from helpers import pass_ops, to_np

TOL = {tritorch.float64: 1e-10, tritorch.float32: 1e-5, tritorch.float16: 2e-3, tritorch.bfloat16: 1.6e-2}


def _conv(nd):
    return F.conv1d if nd == 1 else F.conv2d


def _separate(y, act, p, channels, r):
    """The epilogue as the separate ops."""
    y = y if act is None else getattr(F, act)(y)
    if p:
        with warnings.catch_warnings():     # dropout2d of a 3-D (N, C, L) result: channel-wise, with a warning
            warnings.simplefilter("ignore")
            y = F.dropout2d(y, p) if channels else F.dropout(y, p)
    return y if r is None else y + r


def _run(fused, device, dtype, nd, act, p, channels, residual, batched=True, stride=1, groups=1, r_layout="plain"):
    """(result, gradients of x, w, bias and the residual, the generator's next numbers) of one convolution with
    its epilogue, fused or as separate ops."""
    tritorch.manual_seed(3)
    shape = (2, 4, 7, 6)[:nd + 2] if nd == 2 else (2, 4, 9)
    shape = shape if batched else shape[1:]
    x = tritorch.randn(*shape, device=device, dtype=dtype, requires_grad=True)
    w = tritorch.randn(5 * groups, 4 // groups, *(3,) * nd, device=device, dtype=dtype, requires_grad=True)
    b = tritorch.randn(5 * groups, device=device, dtype=dtype, requires_grad=True)
    conv = _conv(nd)
    kw = dict(stride=stride, padding=1, groups=groups)
    out = conv(x, w, b, **kw).shape
    r = None
    if residual:
        r = tritorch.randn(*out[::-1], device=device, dtype=dtype).permute(*reversed(range(len(out)))) \
            if r_layout == "transposed" else tritorch.randn(*out, device=device, dtype=dtype)
        r.requires_grad_(True)
    tritorch.manual_seed(5)
    if fused:
        y = conv(x, w, b, **kw, activation=act, dropout_p=p, dropout_channels=channels, residual=r)
    else:
        y = _separate(conv(x, w, b, **kw), act, p, channels, r)
    after = tritorch.rand(4, device=device)
    y.backward(tritorch.randn(*y.shape, device=device, dtype=dtype))
    return [y, x.grad, w.grad, b.grad] + ([r.grad] if residual else []) + [after]


def _agree(got, want, dtype, why):
    for i, (a, b) in enumerate(zip(got, want)):
        assert a.dtype == b.dtype and a.shape == b.shape, why
        ref = to_np(b)
        np.testing.assert_allclose(to_np(a), ref, rtol=TOL[a.dtype], atol=TOL[a.dtype] * max(1.0, np.abs(ref).max()),
                                   err_msg=f"{why}: output {i}")


CASES = [(act, p, ch, res) for act, p, ch, res in itertools.product((None, "relu", "tanh"), (0.0, 0.4), (False, True),
                                                                     (False, True)) if (p or not ch) and (p or res)]


@pytest.mark.parametrize("act,p,channels,residual", CASES)
@pytest.mark.parametrize("nd", [1, 2])
def test_epilogue_equals_the_separate_ops(device, nd, act, p, channels, residual):
    """Dropout (elements or channels) after the activation, then the residual: the same result, gradients and
    generator state as the ops one after another."""
    why = f"conv{nd}d {device} act={act} p={p} channels={channels} residual={residual}"
    _agree(_run(True, device, tritorch.float32, nd, act, p, channels, residual),
           _run(False, device, tritorch.float32, nd, act, p, channels, residual), tritorch.float32, why)


@pytest.mark.parametrize("dtype", [tritorch.float64, tritorch.float16, tritorch.bfloat16])
def test_epilogue_dtypes(dtype):
    for act, p, channels in (("relu", 0.3, False), ("sigmoid", 0.3, True), (None, 0.5, False)):
        _agree(_run(True, "cuda", dtype, 2, act, p, channels, True), _run(False, "cuda", dtype, 2, act, p, channels,
                                                                           True), dtype, f"{dtype} {act} {channels}")


def test_epilogue_strided_grouped_unbatched_and_a_transposed_residual(device):
    for kw in (dict(stride=2), dict(groups=2), dict(batched=False), dict(r_layout="transposed")):
        for act, p, channels in (("relu", 0.3, False), (None, 0.3, True)):
            if channels and not kw.get("batched", True):
                continue
            _agree(_run(True, device, tritorch.float32, 2, act, p, channels, True, **kw),
                   _run(False, device, tritorch.float32, 2, act, p, channels, True, **kw), tritorch.float32, str(kw))


def test_no_input_channels_and_p_one(device):
    """An empty reduction (no input channels: the bias, activated, dropped, plus the residual) and p = 1 (all
    dropped)."""
    for c_in, p in ((0, 0.5), (3, 1.0)):
        got, want = [], []
        for fused, out in ((True, got), (False, want)):
            x = tritorch.ones(2, c_in, 5, 5, device=device)
            w = tritorch.ones(3, c_in, 3, 3, device=device)
            b = tritorch.tensor([0.5, -1.0, 2.0], device=device)
            r = tritorch.arange(150.0, device=device).reshape(2, 3, 5, 5)
            tritorch.manual_seed(1)
            y = F.conv2d(x, w, b, padding=1, activation="relu", dropout_p=p, residual=r) if fused else \
                _separate(F.conv2d(x, w, b, padding=1), "relu", p, False, r)
            out += [y, tritorch.rand(2, device=device)]
        _agree(got, want, tritorch.float32, f"c_in={c_in} p={p}")


@pytest.mark.parametrize("act,p,channels", [("tanh", 0.3, False), ("sigmoid", 0.3, True), ("relu", 0.0, False)])
def test_double_backward(device, act, p, channels):
    """create_graph through the fused epilogue (the activation recomputed, recorded) equals the separate ops'."""
    res = []
    for fused in (True, False):
        tritorch.manual_seed(3)
        x = tritorch.randn(2, 3, 5, 5, device=device, dtype=tritorch.float64, requires_grad=True)
        w = tritorch.randn(4, 3, 3, 3, device=device, dtype=tritorch.float64, requires_grad=True)
        r = tritorch.randn(2, 4, 5, 5, device=device, dtype=tritorch.float64, requires_grad=True)
        tritorch.manual_seed(5)
        y = F.conv2d(x, w, None, padding=1, activation=act, dropout_p=p, dropout_channels=channels, residual=r) \
            if fused else _separate(F.conv2d(x, w, None, padding=1), act, p, channels, r)
        gx, gw = tritorch.autograd.grad((y * y).sum(), (x, w), create_graph=True)
        (gx.square().sum() + gw.square().sum()).backward()
        res.append([y, gx, gw, x.grad, w.grad, r.grad])
    _agree(res[0], res[1], tritorch.float64, f"{act} {p} {channels}")


def test_epilogue_checks():
    x, w = tritorch.randn(2, 3, 5, 5), tritorch.randn(4, 3, 3, 3)
    with pytest.raises(RuntimeError, match=r"residual must have the result's shape \[2, 4, 3, 3\] and dtype"):
        F.conv2d(x, w, residual=tritorch.randn(2, 4, 5, 5))
    with pytest.raises(RuntimeError, match="residual must have the result's shape"):
        F.conv2d(x, w, residual=tritorch.randn(2, 4, 3, 3, dtype=tritorch.float64))
    with pytest.raises(TypeError, match="argument 'residual' must be Tensor"):
        F.conv2d(x, w, residual=1.0)
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1"):
        F.conv1d(tritorch.randn(2, 3, 5), tritorch.randn(4, 3, 3), dropout_p=1.5)
    with pytest.raises(RuntimeError, match="expected all tensors to be on the same device"):
        F.conv2d(x, w, residual=tritorch.randn(2, 4, 3, 3, device="cuda"))


class ConvBlock(nn.Module):
    """conv -> relu -> dropout (or dropout2d) -> conv -> + x, a pre-activation ResNet's skip connection."""

    def __init__(self, channels, conv=nn.Conv2d):
        super().__init__()
        self.a, self.b = conv(4, 4, 3, padding=1), conv(4, 4, 3, padding=1, bias=False)
        self.channels = channels

    def forward(self, x):
        h = self.a(x).relu()
        h = F.dropout2d(h, 0.25, self.training) if self.channels else F.dropout(h, 0.25, self.training)
        return x + self.b(h)


@pytest.mark.parametrize("channels", [False, True])
@pytest.mark.parametrize("conv", [nn.Conv2d, nn.Conv1d])
def test_compiled_block_fuses_dropout_and_the_skip_connection(device, channels, conv):
    """The compiled block runs both convolutions with their whole epilogue (no dropout or add kernel forward), with
    the results, gradients and generator state of eager at capture and replay."""
    if conv is nn.Conv1d and channels:          # dropout2d of (N, C, L): channel-wise, with a warning
        warnings.filterwarnings("ignore", "dropout2d: Received a 3D input")
    tritorch.manual_seed(3)
    m = ConvBlock(channels, conv).to(device)
    c = tritorch.compile(m)
    x = tritorch.randn(*((2, 4, 6, 5) if conv is nn.Conv2d else (2, 4, 9)), device=device, requires_grad=True)
    res, launches = [], []
    for fn in (m, c, c):
        m.zero_grad()
        x.grad = None
        tritorch.manual_seed(11)
        with profile() as prof:
            y = fn(x)
        launches.append(prof.kernel_launches())
        (y * y).sum().backward()
        res.append([y, x.grad] + [p.grad for p in m.parameters()] + [tritorch.rand(3, device=device)])
    for r in res[1:]:
        _agree(r, res[0], tritorch.float32, f"{conv.__name__} channels={channels}")
    assert "1 activations, 1 dropouts and 1 residual adds fused into linear/conv epilogues" in c.explain()
    if device == "cuda":
        assert launches[0] == 5 and launches[2] == 2, launches


def test_conv_epilogue_pass_conditions():
    """What the dropout and residual passes leave alone: a result read twice or returned, an unbatched convolution,
    dropout2d of a linear, a broadcast residual; a convolution called with keywords fuses, its keywords kept."""
    conv = nn.Conv2d(3, 3, 3, padding=1)
    lin = nn.Linear(4, 4)
    x, x3 = tritorch.randn(2, 3, 4, 4), tritorch.randn(3, 4, 4)
    kept = {
        "read twice": (lambda x: (lambda z: F.dropout(z, 0.5) + z)(conv(x)), x),
        "returned": (lambda x: (lambda z: (F.dropout(z, 0.5), z))(conv(x)), x),
        "unbatched": (lambda x: F.dropout2d(conv(x), 0.5), x3),
        "unbatched residual": (lambda x: conv(x) + x, x3),
        "dropout2d of a linear": (lambda x: F.dropout2d(lin(x), 0.5), x),
        "broadcast residual": (lambda x: conv(x) + tritorch.ones(3, 1, 1), x),
    }
    for why, (fn, xs) in kept.items():
        with warnings.catch_warnings():         # dropout2d of the unbatched (C, H, W) result
            warnings.simplefilter("ignore")
            graph = tritorch.jit.trace(fn, xs, check_trace=False).graph
        graph = passes.fuse_linear_residual(passes.fuse_linear_dropout(graph))
        assert not any({"dropout_p", "residual"} & set(n.kwargs) for n in graph.nodes), why
    graph = passes.fuse_linear_residual(passes.fuse_linear_dropout(tritorch.jit.trace(
        lambda x: x + F.dropout2d(F.conv2d(x, conv.weight, conv.bias, padding=1), 0.5), x, check_trace=False).graph))
    assert [(n.op, sorted(n.kwargs)) for n in graph.nodes] == \
        [("conv2d", ["dropout_channels", "dropout_p", "padding", "residual"])]
    assert pass_ops(passes.fuse_linear_residual, lambda x: conv(x) + x, x) == ["conv2d"]


@pytest.mark.parametrize("act", [None, "relu", "tanh"])
@pytest.mark.parametrize("channels", [False, True])
def test_bf16_forward_equals_the_separate_ops_bit_for_bit(device, act, channels):
    """In bfloat16 dropout scales the activation's result rounded to bf16 and the sum rounds again, as the separate
    ops do (in Triton's interpreter too, whose kernels compute bf16 in float32: the mask is applied after the
    rounding on the host)."""
    rng = np.random.default_rng(0)
    x, w, r = (tritorch.tensor(rng.standard_normal(s), device=device).to(tritorch.bfloat16)
               for s in ((2, 3, 6, 5), (4, 3, 3, 3), (2, 4, 6, 5)))
    tritorch.manual_seed(1)
    fused = F.conv2d(x, w, None, padding=1, activation=act, dropout_p=0.3, dropout_channels=channels, residual=r)
    tritorch.manual_seed(1)
    h = F.conv2d(x, w, None, padding=1, activation=act)
    apart = r + (F.dropout2d(h, 0.3) if channels else F.dropout(h, 0.3))
    np.testing.assert_array_equal(to_np(fused.float()), to_np(apart.float()))
