"""The engine hands a node the gradient already waiting for one of its arguments (``Function._accumulates``), and
layer_norm's backward adds it in its own kernel: the residual block's ``x + f(layer_norm(x))`` then needs no
separate add. Same gradients as the separate add (bit for bit), one launch fewer; not where a hook, create_graph,
a non-contiguous or other-dtype gradient would see the difference."""
import numpy as np
import pytest

import tritorch
import tritorch.nn as nn
import tritorch.nn.functional as F
from tritorch.kernels import linear, norm
from tritorch.profiler import profile
from helpers import to_np


class PreNorm(nn.Module):
    """x + lin(layer_norm(x)) twice: the pre-norm residual blocks of a transformer."""

    def __init__(self, n=40):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(n), nn.LayerNorm(n)
        self.f1, self.f2 = nn.Linear(n, n), nn.Linear(n, n)

    def forward(self, x):
        x = x + self.f1(self.ln1(x))
        return x + self.f2(self.ln2(x))


def _grads(m, x, monkeypatch=None, off=False, fn=norm.RowNorm):
    """x's and the parameters' gradients of ``(m(x) ** 2).sum()`` and the profile, with ``fn`` adding the pending
    gradient in its kernel or (``off``) not."""
    if off:
        monkeypatch.setattr(fn, "_accumulates", ())
    m.zero_grad()
    x.grad = None
    with profile() as prof:
        (m(x).float() ** 2).sum().backward()
    if off:
        monkeypatch.undo()
    return [to_np(x.grad.float())] + [to_np(p.grad.float()) for p in m.parameters()], prof


@pytest.mark.parametrize("dtype", [tritorch.float32, tritorch.float16, tritorch.float64])
@pytest.mark.parametrize("rows", [1, 37])
def test_residual_gradient_added_in_the_layer_norm_kernel(dtype, rows, monkeypatch):
    tritorch.manual_seed(0)
    m = PreNorm().to("cuda", dtype)
    x = tritorch.randn(rows, 3, 40, device="cuda").to(dtype).requires_grad_(True)
    got, prof = _grads(m, x)
    want, prof_off = _grads(m, x, monkeypatch, off=True)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    assert prof.kernel_launches() == prof_off.kernel_launches() - 2            # both blocks' adds
    assert prof.kernel_launches("_pointwise_kernel") == prof_off.kernel_launches("_pointwise_kernel") - 2


def test_wide_rows_take_the_dx_kernel(monkeypatch):
    """Rows wider than one block (and no parameter gradient) go through ``_ln_bwd_dx_kernel``, which adds it too."""
    tritorch.manual_seed(1)
    n = 5000
    x = tritorch.randn(3, n, device="cuda", requires_grad=True)
    h = x * 2.0
    y = h + F.layer_norm(h, (n,))
    with profile() as prof:
        y.backward(tritorch.randn(3, n, device="cuda"))
    assert prof.kernel_launches("_ln_bwd_dx_kernel") == 1
    got = to_np(x.grad)
    x.grad = None
    monkeypatch.setattr(norm.RowNorm, "_accumulates", ())
    tritorch.manual_seed(1)
    tritorch.randn(3, n, device="cuda")
    h = x * 2.0
    (h + F.layer_norm(h, (n,))).backward(tritorch.randn(3, n, device="cuda"))
    np.testing.assert_array_equal(got, to_np(x.grad))


def _run(f, x, g, monkeypatch, off, ln):
    """x's gradient of f(x) (backward with ``g``) and the launches, with the pending add on or off."""
    if off:
        monkeypatch.setattr(norm.RowNorm, "_accumulates", ())
    x.grad = None
    ln.zero_grad()
    seen = []
    with profile() as prof:
        f(x, seen).backward(g)
    monkeypatch.undo()
    return to_np(x.grad), prof.kernel_launches(), [to_np(t) for t in seen]


def _hooked(ln):
    def f(x, seen):
        out = ln(x)
        out.grad_fn.register_hook(lambda grad_inputs, grad_outputs: seen.append(grad_inputs[0]))
        return x * 3.0 + out
    return f


def test_taken_only_where_it_cannot_show(monkeypatch):
    """The waiting gradient is added in the kernel when it is contiguous (one launch fewer); not when it is a
    transposed view, nor when a hook on the node would see it (the hook gets the node's own gradient): the engine
    adds as before. The gradients equal the separate add's every time."""
    tritorch.manual_seed(2)
    ln = nn.LayerNorm(6).to("cuda")
    x = tritorch.randn(6, 6, device="cuda", requires_grad=True)
    g = tritorch.randn(6, 6, device="cuda")
    cases = {     # name: (f(x, seen), whether the add is saved); the other reader runs first: it is made later
        "contiguous": (lambda x, seen: (lambda out: x * 3.0 + out)(ln(x)), True),
        "transposed view": (lambda x, seen: (lambda out: (x.t() * 3.0).t() + out)(ln(x)), False),
        "hook on the node": (_hooked(ln), False),
    }
    for why, (f, saved) in cases.items():
        got, n, seen = _run(f, x, g, monkeypatch, False, ln)
        want, n_off, seen_off = _run(f, x, g, monkeypatch, True, ln)
        np.testing.assert_array_equal(got, want, err_msg=why)
        assert n == n_off - (1 if saved else 0), why
        for a, b in zip(seen, seen_off):
            np.testing.assert_array_equal(a, b, err_msg=why)


def test_not_under_create_graph(monkeypatch):
    """create_graph: the sum stays a recorded op (the double backward needs it); second derivatives as before."""
    tritorch.manual_seed(3)
    ln = nn.LayerNorm(5).to("cuda", tritorch.float64)
    x = tritorch.randn(4, 5, device="cuda", dtype=tritorch.float64, requires_grad=True)
    res = []
    for off in (False, True):
        if off:
            monkeypatch.setattr(norm.RowNorm, "_accumulates", ())
        x.grad = None
        gx, = tritorch.autograd.grad((x * x + ln(x)).pow(2).sum(), x, create_graph=True)
        gx.pow(2).sum().backward()
        res.append((to_np(gx.detach()), to_np(x.grad)))
    for a, b in zip(*res):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_autograd_grad_with_inputs_sees_the_sum(monkeypatch):
    """``autograd.grad`` of an intermediate reads the gradient arriving there: the sum, whichever way it was added."""
    tritorch.manual_seed(4)
    m = PreNorm().to("cuda")
    x = tritorch.randn(2, 40, device="cuda", requires_grad=True)
    res = []
    for off in (False, True):
        if off:
            monkeypatch.setattr(norm.RowNorm, "_accumulates", ())
        h = m.f1(m.ln1(x)) + x
        y = h + m.f2(m.ln2(h))
        res.append([to_np(t) for t in tritorch.autograd.grad(y.pow(2).sum(), (h, x))])
    for a, b in zip(*res):
        np.testing.assert_array_equal(a, b)


class Projections(nn.Module):
    """One input read by several linears: the q/k/v projections of attention, SwiGLU's gate and up."""

    def __init__(self, n=24, bias=False):
        super().__init__()
        self.q, self.k, self.v = (nn.Linear(n, n, bias=bias) for _ in range(3))
        self.w1, self.w3 = nn.Linear(n, 40, bias=bias), nn.Linear(n, 40, bias=bias)

    def forward(self, x):
        h = x * 1.5
        y = self.q(h) * self.k(h) + self.v(h)
        return y.sum(-1, keepdim=True) * (F.silu(self.w1(h)) * self.w3(h))


@pytest.mark.parametrize("dtype", [tritorch.float32, tritorch.float16, tritorch.bfloat16, tritorch.float64])
@pytest.mark.parametrize("shape, bias", [((2, 7, 24), False), ((1, 24), True), ((3, 1, 2, 24), True)])
def test_gradient_of_an_input_read_by_several_linears_added_in_their_kernel(dtype, shape, bias, monkeypatch):
    """Each linear after the first adds the gradient already waiting for its input into grad_x in the kernel: the
    same gradients bit for bit as the separate adds (rounded as they round), one add launch fewer per extra reader
    (4 of 5 here); inputs of any number of leading dims."""
    tritorch.manual_seed(5)
    m = Projections(bias=bias).to("cuda", dtype)
    x = tritorch.randn(*shape, device="cuda").to(dtype).requires_grad_(True)
    got, prof = _grads(m, x)
    want, prof_off = _grads(m, x, monkeypatch, off=True, fn=linear.Linear)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    assert prof.kernel_launches() == prof_off.kernel_launches() - 4
    assert prof.kernel_launches("_linear_grad_kernel") == prof_off.kernel_launches("_linear_grad_kernel") == 5


def test_linear_pending_not_under_create_graph_nor_for_strided_inputs(monkeypatch):
    """create_graph: the sum stays a recorded op and second derivatives reach x through every layer (also through
    the saved input of a 3-D x); a non-contiguous 3-D input (copied to rows inside the node) differentiates once and
    twice as the finite differences say."""
    tritorch.manual_seed(6)
    m = Projections(6, bias=True).to("cuda", tritorch.float64)
    x = tritorch.randn(3, 2, 6, device="cuda", dtype=tritorch.float64, requires_grad=True)
    res = []
    for off in (False, True):
        if off:
            monkeypatch.setattr(linear.Linear, "_accumulates", ())
        x.grad = None
        gx, = tritorch.autograd.grad(m(x).pow(2).sum(), x, create_graph=True)
        gx.pow(2).sum().backward()
        res.append((to_np(gx.detach()), to_np(x.grad)))
    monkeypatch.undo()
    for a, b in zip(*res):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    w = tritorch.randn(3, 4, device="cuda", dtype=tritorch.float64, requires_grad=True)
    t = tritorch.randn(2, 2, 4, device="cuda", dtype=tritorch.float64).transpose(0, 1).requires_grad_(True)
    f = lambda t, w: F.linear(t, w) * F.linear(t, w * 2.0)       # noqa: E731 (t read by two linears)
    assert tritorch.autograd.gradcheck(f, (t, w))
    assert tritorch.autograd.gradgradcheck(f, (t, w))
