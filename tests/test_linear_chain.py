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
@pytest.mark.parametrize("dtype", [tritorch.float32, F16])
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
    tol = 1e-5 if dtype is tritorch.float32 else 1e-2
    for a, b in zip(got, eager):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    if device == "cuda":
        assert prof.kernel_launches("_act_grad_kernel") == 0
        assert prof_unchained.kernel_launches("_act_grad_kernel") == inner
        assert prof.kernel_launches() == prof_unchained.kernel_launches() - inner
    graph = passes.fuse_linear_chain(passes.fuse_linear_residual(passes.fuse_linear_dropout(
        passes.fuse_linear_epilogue(tritorch.jit.trace(m, x, check_trace=False).graph))))
    assert [n.op for n in graph.nodes] == ["linear_chain"]


@pytest.mark.parametrize("frozen", [None, 0, 1])
def test_chain_double_backward(device, frozen):
    """Under create_graph the chain differentiates again: the gradient of sum(grad_x^2) w.r.t. every parameter
    equals the separate layers' (the hidden results recomputed, recorded), also with a layer frozen."""
    tritorch.manual_seed(5)
    m = MLP(nn.Tanh(), 0.0, True, layers=3).to(device, tritorch.float64)
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
        assert LG._SPILLS_WITH_DROPOUT[0] in LG.TUNABLE.candidates(LG._key(g, w, x, 512, 512, 512, tritorch.float32))
        assert LG._SPILLS_WITH_DROPOUT[0] not in LG.TUNABLE.candidates(
            LG._key(g, w, x, 512, 512, 512, tritorch.float32, None, True))
    finally:
        tritorch.set_float32_matmul_precision(previous)
