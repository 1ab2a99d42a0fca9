"""Linear layers in a row as one node (``kernels/linear_chain.py``, ``tritorch.compile``'s ``fuse_linear_chain``):
the activation-backward epilogue of ``launch_linear_grad`` against the separate kernels (bit for bit) and float64,
the chain against the separate layers (outputs and every gradient, double backward included), the pass's
conditions."""
import math

import numpy as np
import pytest

import tritorch
import tritorch.nn as nn
import tritorch.nn.functional as F
from tritorch.compiler import passes
from tritorch.kernels import linear as KL
from tritorch.kernels._common import empty
from tritorch.kernels.dropout import draw, dropout_mask_np, dropout_np
from tritorch.kernels.elementwise import unary
from tritorch.kernels import linear_grad as LG
from tritorch.kernels.linear_grad import launch_linear_grad
from tritorch.kernels.linear_chain import linear_chain
from tritorch.profiler import profile
from helpers import make, to_np

F16, BF16 = tritorch.float16, tritorch.bfloat16


def _bits(t):
    return to_np(t.float()) if t.dtype is not tritorch.float32 else to_np(t)


@pytest.mark.parametrize("act", list(KL.ACTIVATIONS))
@pytest.mark.parametrize("dtype", [tritorch.float32, F16, BF16])
@pytest.mark.parametrize("dropout", [False, True])
def test_epilogue_equals_the_separate_kernels(act, dtype, dropout):
    """gx with the epilogue == act_grad(g @ w) by the separate kernels, bit for bit, with several tiles each way
    (interpreter tiles of 32), a transposed s, strided g and outputs poisoned until written."""
    M, N, K = 70, 45, 37
    g, _ = make((M, N), dtype, "cuda", "strided", seed=1)
    w, _ = make((N, K), dtype, "cuda", seed=2, low=-0.5, high=0.5)
    x, _ = make((M, K), dtype, "cuda", seed=3)
    s, _ = make((M, K), dtype, "cuda", "transposed", seed=4)
    drop = (*draw(M * K, tritorch.device("cuda")), 0.3) if dropout else None
    a = KL.ACTIVATIONS[act] or 0.0
    gx, gw, gb = empty((M, K), dtype, g.device), empty((N, K), dtype, g.device), empty((N,), dtype, g.device)
    launch_linear_grad(g, w, x, gx, gw, gb, epilogue=(s, act, a, drop))
    plain, gw0, gb0 = empty((M, K), dtype, g.device), empty((N, K), dtype, g.device), empty((N,), dtype, g.device)
    launch_linear_grad(g, w, x, plain, gw0, gb0)
    want = KL.act_grad(plain, s, act, a, drop)
    for got, ref in ((gx, want), (gw, gw0), (gb, gb0)):
        np.testing.assert_array_equal(_bits(got), _bits(ref))


def test_epilogue_against_float64():
    """gelu's derivative after dropout: (g @ w) * keep / (1 - p) * gelu'(s), from float64 (the mask: dropout's
    NumPy transcription of the same counters)."""
    M, N, K = 33, 20, 41
    g, rg = make((M, N), tritorch.float32, "cuda", seed=5)
    w, rw = make((N, K), tritorch.float32, "cuda", seed=6)
    s, rs = make((M, K), tritorch.float32, "cuda", seed=7)
    seed, offset = draw(M * K, tritorch.device("cuda"))
    gx = empty((M, K), tritorch.float32, g.device)
    launch_linear_grad(g, w, None, gx, None, None, epilogue=(s, "gelu", 0.0, (seed, offset, 0.25)))
    keep = dropout_mask_np(M * K, 1, seed, offset, 0.25).reshape(M, K)
    erf = np.vectorize(math.erf)
    dgelu = 0.5 * (1 + erf(rs / math.sqrt(2))) + rs * np.exp(-rs * rs / 2) / math.sqrt(2 * math.pi)
    np.testing.assert_allclose(to_np(gx), (rg @ rw) * keep / 0.75 * dgelu, rtol=2e-5, atol=2e-5)
    assert 0.6 < keep.mean() < 0.9


class MLP(nn.Module):
    """``layers`` linears with ``act`` [and dropout] between them, the last [with dropout] [+ x]: the chain, with
    what its last layer may fuse."""

    def __init__(self, act, p=0.0, residual=False, bias=True, layers=2):
        super().__init__()
        widths = [6] + [10 + 3 * i for i in range(layers - 1)] + [6]
        self.lins = nn.ModuleList(nn.Linear(a, b, bias) for a, b in zip(widths, widths[1:]))
        self.act, self.p, self.residual = act, p, residual

    def forward(self, x):
        h = x
        for lin in self.lins[:-1]:
            h = F.dropout(self.act(lin(h)), self.p) if self.p else self.act(lin(h))
        y = self.lins[-1](h)
        y = F.dropout(y, self.p) if self.p else y
        return y + x if self.residual else y


CASES = {"relu": (nn.ReLU(), 0.0, False, True, 2), "gelu": (nn.GELU(), 0.0, False, True, 2),
         "tanh, no bias": (nn.Tanh(), 0.0, False, False, 2), "gelu, residual": (nn.GELU(), 0.0, True, True, 2),
         "relu, dropout, residual": (nn.ReLU(), 0.2, True, True, 2), "silu, dropout": (nn.SiLU(), 0.3, False, True, 2),
         "3 layers, gelu": (nn.GELU(), 0.0, False, True, 3),
         "4 layers, relu, dropout, residual": (nn.ReLU(), 0.2, True, True, 4)}


def _step(fn, m, x):
    """(output, grad of x, grads of the parameters) of one step with dropout's seed fixed, and the backward's
    profile."""
    m.zero_grad()
    x.grad = None
    tritorch.manual_seed(9)
    y = fn(x)
    with profile() as prof:
        (y.float() ** 2).sum().backward()
    res = [y.detach().float().cpu().numpy(), x.grad.float().cpu().numpy()]
    return res + [p.grad.float().cpu().numpy() for p in m.parameters()], prof


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", [tritorch.float32, tritorch.float64, F16])
def test_chain_equals_the_separate_layers(device, case, dtype, monkeypatch):
    """Compiled with the chain (capture, then replay) vs compiled without it: the output, the input's and every
    parameter's gradient bit for bit, on cuda with one launch fewer per inner layer in the backward (no
    ``_act_grad_kernel``); vs eager within the dtype's tolerance (the fused activation computes on the unrounded
    pre-activation)."""
    tritorch.manual_seed(4)
    m = MLP(*CASES[case]).to(device, dtype)
    inner = len(m.lins) - 1
    x = tritorch.randn(3, 5, 6, device=device).to(dtype).requires_grad_(True)
    eager, _ = _step(m, m, x)
    chained = tritorch.compile(m)
    runs = [_step(chained, m, x) for _ in range(2)]             # capture, replay
    assert f"1 linear chains ({inner + 1} layers;" in chained.explain()
    monkeypatch.setattr(tritorch.compiler, "fuse_linear_chain", lambda graph: graph)
    unchained = tritorch.compile(m)
    _step(unchained, m, x)
    want, prof_unchained = _step(unchained, m, x)
    assert "0 linear chains" in unchained.explain()
    got, prof = runs[1]
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    tol = 1e-5 if dtype is not F16 else 1e-2
    for a, b in zip(got, eager):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    if device == "cuda":
        assert prof.kernel_launches("_act_grad_kernel") == 0
        assert prof_unchained.kernel_launches("_act_grad_kernel") == inner
        assert prof.kernel_launches() == prof_unchained.kernel_launches() - inner
    graph = passes.fuse_linear_chain(passes.fuse_linear_residual(passes.fuse_linear_dropout(
        passes.fuse_linear_epilogue(tritorch.jit.trace(m, x, check_trace=False).graph))))
    assert [n.op for n in graph.nodes] == ["linear_chain"]


@pytest.mark.parametrize("act", [nn.Tanh(), nn.GELU()], ids=["tanh", "gelu"])
@pytest.mark.parametrize("frozen", [None, 0, 1])
def test_chain_double_backward(device, frozen, act):
    """Under create_graph the chain differentiates again: the gradient of sum(grad_x^2) w.r.t. every parameter
    equals the separate layers' (the hidden results recomputed, recorded), also with a layer frozen, and with gelu,
    whose inner layers store their pre-activation only (on cuda)."""
    tritorch.manual_seed(5)
    m = MLP(act, 0.0, True, layers=3).to(device, tritorch.float64)
    if frozen is not None:
        for p in m.lins[frozen].parameters():
            p.requires_grad_(False)
    c = tritorch.compile(m)
    x = tritorch.randn(4, 6, device=device, dtype=tritorch.float64).requires_grad_(True)
    res = []
    for fn in (m, c, c):
        m.zero_grad()
        gx, = tritorch.autograd.grad((fn(x) ** 3).sum(), x, create_graph=True)
        (gx ** 2).sum().backward()
        res.append([to_np(gx.detach())] + [to_np(p.grad) for p in m.parameters() if p.requires_grad])
    for r in res[1:]:
        for a, b in zip(r, res[0]):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("trainable", [(1,), (2,), (0, 2), ()])
def test_some_layers_frozen_and_no_grad(trainable):
    """Only some layers trainable, x without grad: their gradients, none for the others, as the separate layers;
    without grad the chain is the forward."""
    tritorch.manual_seed(6)
    m = MLP(nn.GELU(), layers=3).to("cuda")
    for i, lin in enumerate(m.lins):
        for p in lin.parameters():
            p.requires_grad_(i in trainable)
    x = tritorch.randn(4, 6, device="cuda")
    res = []
    for fn in (m, tritorch.compile(m)):
        fn(x)                                # (the compiled one: capture, then replay)
        m.zero_grad()
        y = fn(x)
        if trainable:
            y.sum().backward()
        res.append([to_np(y.detach())] + [to_np(p.grad) if p.grad is not None else None for p in m.parameters()])
    for a, b in zip(*res):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(a, b)
    params = [t for lin in m.lins for t in (lin.weight, lin.bias)]
    layers = [{"activation": "gelu"}, {"activation": "gelu"}, {}]
    with tritorch.no_grad():
        np.testing.assert_array_equal(to_np(linear_chain(x, params, layers)), res[0][0])


def test_chain_needs_one_reader_an_activation_and_adjacent_dropout():
    a, b, b2 = nn.Linear(3, 4), nn.Linear(4, 3), nn.Linear(4, 4)
    x = tritorch.randn(2, 3)

    def chains(f):
        g = tritorch.jit.trace(f, x).graph
        g = passes.fuse_linear_chain(passes.fuse_linear_dropout(passes.fuse_linear_epilogue(g)))
        return [n.op if n.op != "linear_chain" else f"chain{len(n.kwargs['layers'])}" for n in g.nodes]
    assert chains(lambda x: b(a(x).relu())) == ["chain2"]
    assert chains(lambda x: b(a(x))) == ["linear", "linear"], "no activation"
    assert "chain2" not in chains(lambda x: (lambda h: b(h) + h.sum())(a(x).relu())), "read twice"
    assert "chain2" not in chains(lambda x: (lambda h: (b(h), h))(a(x).relu())), "a graph output"
    assert chains(lambda x: b(b2(a(x).relu()).relu())) == ["chain3"], "three in a row"
    assert chains(lambda x: b(b2(a(x).relu())).relu()) == ["chain2", "linear"], "the middle one without activation"
    between = lambda x: (lambda h, r: b(h) + r)(F.dropout(a(x).relu(), 0.5), F.dropout(x, 0.5).sum())   # noqa
    assert "chain2" not in chains(between), "a draw between the first layer's dropout and the second"


def test_every_epilogue_candidate_equals_the_separate_kernels():
    """Each linear_grad candidate that the epilogue's pruning keeps (tiles of at most 32 accumulators a thread),
    with gelu and dropout's backward in the epilogue: bit for bit the separate kernels' result on the same tiles."""
    M, N, K = 45, 33, 70
    g, _ = make((M, N), tritorch.float32, "cuda", seed=11)
    w, _ = make((N, K), tritorch.float32, "cuda", seed=12)
    s, _ = make((M, K), tritorch.float32, "cuda", seed=13)
    drop = (*draw(M * K, tritorch.device("cuda")), 0.2)
    key = LG._key(g, w, g, M, N, K, tritorch.float32, "gelu")
    kept = LG.TUNABLE.candidates(key)
    assert kept and all(LG.fits_epilogue(c) for c in kept)
    for cfg in kept:
        gx, plain = empty((M, K), tritorch.float32, g.device), empty((M, K), tritorch.float32, g.device)
        launch_linear_grad(g, w, None, gx, None, None, config=cfg, epilogue=(s, "gelu", 0.0, drop))
        launch_linear_grad(g, w, None, plain, None, None, config=cfg)       # the same tiles: the same sums
        want = to_np(KL.act_grad(plain, s, "gelu", 0.0, drop))
        np.testing.assert_array_equal(to_np(gx), want, err_msg=repr(cfg))


@pytest.mark.parametrize("act", [None, "gelu"])
def test_every_g_dropout_candidate_equals_dropout_then_the_products(act):
    """Each linear_grad candidate kept for g read through a dropout's mask (alone, or with an epilogue's activation):
    gx, gw and gb bit for bit those of the same tiles on dropout's backward of g, computed apart; the FMA tile that
    spilled with Philox in the loop is not among float32's candidates under "highest" precision."""
    M, N, K = 45, 33, 70
    g, _ = make((M, N), tritorch.float32, "cuda", seed=21)
    w, _ = make((N, K), tritorch.float32, "cuda", seed=22)
    x, _ = make((M, K), tritorch.float32, "cuda", seed=23)
    s, _ = make((M, K), tritorch.float32, "cuda", seed=24)
    g_drop = (*draw(M * N, tritorch.device("cuda")), 0.3)
    dropped = tritorch.tensor(dropout_np(to_np(g).astype(np.float32), 1, *g_drop), device="cuda")
    epilogue = None if act is None else (s, act, 0.0, None)
    key = LG._key(g, w, x, M, N, K, tritorch.float32, act, True)
    kept = LG.TUNABLE.candidates(key)
    assert kept and all(LG.fits_epilogue(c) for c in kept)
    for cfg in kept:
        got = [empty(shape, tritorch.float32, g.device) for shape in ((M, K), (N, K), (N,))]
        want = [empty(shape, tritorch.float32, g.device) for shape in ((M, K), (N, K), (N,))]
        launch_linear_grad(g, w, x, *got, config=cfg, epilogue=epilogue, g_drop=g_drop)
        launch_linear_grad(dropped, w, x, *want, config=cfg, epilogue=epilogue)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(to_np(a), to_np(b), err_msg=repr(cfg))
    previous = tritorch.get_float32_matmul_precision()
    try:
        tritorch.set_float32_matmul_precision("highest")
        assert LG._SPILLS_IN_LOOP[0] in LG.TUNABLE.candidates(LG._key(g, w, x, 512, 512, 512, tritorch.float32))
        assert LG._SPILLS_IN_LOOP[0] not in LG.TUNABLE.candidates(
            LG._key(g, w, x, 512, 512, 512, tritorch.float32, None, True))
    finally:
        tritorch.set_float32_matmul_precision(previous)


DEFERRED = ["gelu", "gelu_tanh", "silu", "elu", "leaky_relu"]


@pytest.mark.parametrize("dtype", [tritorch.float32, tritorch.float64])
@pytest.mark.parametrize("act", DEFERRED)
def test_x_act_equals_the_activation_then_the_products(act, dtype):
    """``x_act``: the forward on act(x) computed as x's tiles load equals the product on the stored act(x) bit for
    bit, and so do the backward's gw (gx, gb and an epilogue unchanged), for odd sizes and a transposed x."""
    M, N, K = 37, 19, 45
    xt, _ = make((K, M), dtype, "cuda", seed=31)
    x = xt.t()                                         # strided: (M, K) with strides (1, M)
    w, _ = make((N, K), dtype, "cuda", seed=32)
    b, _ = make((N,), dtype, "cuda", seed=33)
    g, _ = make((M, N), dtype, "cuda", seed=34)
    w2, _ = make((K, N), dtype, "cuda", seed=35)
    a = KL.ACTIVATIONS[act] or 0.3
    ax = unary(act, x, a)                             # the same Triton activation, stored
    got, want = (empty((M, N), dtype, x.device) for _ in range(2))
    KL.launch_linear(x, w, b, got, None, "tanh", 0.0, x_act=(act, a))
    KL.launch_linear(ax, w, b, want, None, "tanh", 0.0)
    np.testing.assert_array_equal(to_np(got), to_np(want))
    for epilogue in (None, (x, act, a, None)):
        got = [empty(shape, dtype, g.device) for shape in ((M, K), (N, K), (N,))]
        want = [empty(shape, dtype, g.device) for shape in ((M, K), (N, K), (N,))]
        launch_linear_grad(g, w, x, *got, epilogue=epilogue, x_act=(act, a))
        launch_linear_grad(g, w, ax, *want, epilogue=epilogue)
        for u, v in zip(got, want):
            np.testing.assert_array_equal(to_np(u), to_np(v))
        gw = empty((N, K), dtype, g.device)                      # gw alone
        launch_linear_grad(g, None, x, None, gw, None, x_act=(act, a))
        np.testing.assert_array_equal(to_np(gw), to_np(want[1]))
    np.testing.assert_allclose(to_np(want[1]), to_np(g).T @ LG.act_np(to_np(x), act, a, tritorch.float64),
                               rtol=1e-5, atol=1e-5)


def test_every_x_act_candidate_equals_the_activation_then_the_products():
    """Each candidate kept for x read through an activation (tiles that fit a costly epilogue), forward and
    backward, bit for bit the same tiles on the stored activation; x_act takes float32 and float64 only."""
    M, N, K = 45, 33, 70
    x, _ = make((M, K), tritorch.float32, "cuda", seed=41)
    w, _ = make((N, K), tritorch.float32, "cuda", seed=42)
    g, _ = make((M, N), tritorch.float32, "cuda", seed=43)
    ax = unary("gelu", x)
    fkey = (tritorch.float32, None) + KL._mm._key(x, w, M, N, K, tritorch.float32)[1:] + (False, False, "gelu")
    kept = KL.TUNABLE.candidates(fkey)
    assert kept and all(LG.fits_epilogue(c) for c in kept)
    for cfg in kept:
        got, want = (empty((M, N), tritorch.float32, x.device) for _ in range(2))
        KL.launch_linear(x, w, None, got, config=cfg, x_act=("gelu", 0.0))
        KL.launch_linear(ax, w, None, want, config=cfg)
        np.testing.assert_array_equal(to_np(got), to_np(want), err_msg=repr(cfg))
    kept = LG.TUNABLE.candidates(LG._key(g, w, x, M, N, K, tritorch.float32, None, False, "gelu"))
    assert kept and all(LG.fits_epilogue(c) for c in kept)
    for cfg in kept:
        got, want = (empty((N, K), tritorch.float32, x.device) for _ in range(2))
        launch_linear_grad(g, None, x, None, got, None, config=cfg, x_act=("gelu", 0.0))
        launch_linear_grad(g, None, ax, None, want, None, config=cfg)
        np.testing.assert_array_equal(to_np(got), to_np(want), err_msg=repr(cfg))
    previous = tritorch.get_float32_matmul_precision()
    try:                    # the FMA tile that spilled with gelu in the loop: neither a candidate nor the default
        tritorch.set_float32_matmul_precision("highest")
        key = LG._key(g, w, x, 512, 384, 1536, tritorch.float32, None, False, "gelu")
        assert LG._SPILLS_IN_LOOP[0] in LG.TUNABLE.candidates(key[:8])
        assert LG._SPILLS_IN_LOOP[0] not in LG.TUNABLE.candidates(key) and LG._spills(LG._SPILLS_IN_LOOP[0], key)
    finally:
        tritorch.set_float32_matmul_precision(previous)
    for dtype, x_act in ((F16, ("gelu", 0.0)), (BF16, ("silu", 0.0)), (tritorch.float32, ("swish", 0.0)),
                         (tritorch.float32, ("reciprocal", 0.0)), (tritorch.float64, ("log", 0.0))):
        xh, wh = x.to(dtype), w.to(dtype)
        with pytest.raises(ValueError, match="activation of x as it loads"):
            KL.launch_linear(xh, wh, None, empty((M, N), dtype, x.device), x_act=x_act)
        with pytest.raises(ValueError, match="activation of x as it loads"):
            launch_linear_grad(g.to(dtype), None, xh, None, empty((N, K), dtype, x.device), None, x_act=x_act)


@pytest.mark.parametrize("dtype", [tritorch.float32, tritorch.float64])
@pytest.mark.parametrize("layers", [2, 3])
def test_inner_activation_is_never_stored(layers, dtype):
    """A chain's inner gelu layer stores its pre-activation only: its forward kernel writes one (M, hidden) tensor
    and the next layer's kernels read that one, forward and backward, with no (M, hidden) tensor more; the step
    equals the separate layers bit for bit (``test_chain_equals_the_separate_layers``)."""
    tritorch.manual_seed(7)
    m = MLP(nn.GELU(), layers=layers).to("cuda", dtype)
    x = tritorch.randn(3, 5, 6, device="cuda", dtype=dtype)
    params = [t for lin in m.lins for t in (lin.weight, lin.bias)]
    layers_kw = [{"activation": "gelu"}] * (layers - 1) + [{}]
    with profile() as prof:
        y = linear_chain(x, params, layers_kw)
        (y ** 2).sum().backward()
    item = dtype.itemsize
    hidden = [lin.out_features for lin in m.lins[:-1]]
    fwd = [e for e in prof.events() if e.kind == "kernel" and e.name == "_linear_kernel"]
    bwd = [e for e in prof.events() if e.kind == "kernel" and e.name == "_linear_grad_kernel"]
    assert len(fwd) == len(bwd) == layers
    widths = [6] + hidden + [6]
    for i, e in enumerate(fwd):       # x (or the pre-activation read), w, b, y: nothing else
        n_in, n_out = widths[i], widths[i + 1]
        assert e.bytes == item * (15 * n_in + n_out * n_in + n_out + 15 * n_out), i
    for j, e in enumerate(bwd):       # layers last to first: g, w, x, gx, gw, gb (gx: the pre-activation's)
        i = layers - 1 - j
        n_in, n_out = widths[i], widths[i + 1]
        need_x = i > 0
        assert e.bytes == item * (15 * n_out + (n_out * n_in if need_x else 0) + 15 * n_in +
                                  (15 * n_in if need_x else 0) + n_out * n_in + n_out), i
    h = x
    for lin in m.lins[:-1]:
        h = F.gelu(lin(h))
    np.testing.assert_array_equal(to_np(y.detach()), to_np(m.lins[-1](h).detach()))


def test_linear_node_with_x_act(device):
    """``Linear`` with ``x_act`` (the chain's inner node), on every path: y = tanh(linear(silu(x))) and its
    gradients for x, w and b as the composed ops', with a gradient already waiting for x (``_accumulates``) and
    under create_graph (second derivatives too)."""
    tritorch.manual_seed(8)
    x = tritorch.randn(7, 9, device=device, dtype=tritorch.float64, requires_grad=True)
    w = tritorch.randn(5, 9, device=device, dtype=tritorch.float64, requires_grad=True)
    b = tritorch.randn(5, device=device, dtype=tritorch.float64, requires_grad=True)
    g = tritorch.randn(7, 5, device=device, dtype=tritorch.float64)
    other = lambda: (x[:, :5] ** 2) * 0.5                    # noqa: E731  (x read twice: a gradient waits)
    fused = lambda: KL.Linear.apply(x, w, b, "tanh", 0.0, None, None, x_act=("silu", 0.0)) + other()  # noqa: E731
    composed = lambda: tritorch.tanh(F.linear(F.silu(x), w, b)) + other()                              # noqa: E731
    res = []
    for fn in (fused, composed):
        x.grad = w.grad = b.grad = None
        (fn() * g).sum().backward()
        (fn() * g).sum().backward()          # the second: x's gradient waits for the node's
        y = fn()
        first = tritorch.autograd.grad(y, (x, w, b), g, create_graph=True)
        second = tritorch.autograd.grad((first[0] ** 2).sum() + (first[1] ** 2).sum(), (x, w))
        res.append([y.detach(), x.grad, w.grad, b.grad, *(t.detach() for t in first), *second])
    for u, v in zip(*res):
        np.testing.assert_allclose(to_np(u), to_np(v), rtol=1e-10, atol=1e-12)
    w.requires_grad_(False)                  # grad_x alone: x is still saved, for act's derivative
    got = [tritorch.autograd.grad((fn() * g).sum(), x)[0] for fn in (fused, composed)]
    np.testing.assert_allclose(to_np(got[0]), to_np(got[1]), rtol=1e-10, atol=1e-12)
