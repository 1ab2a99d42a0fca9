"""``tritorch.compile``: per-signature capture and replay, dead-code elimination, pointwise fusion into generated
Triton kernels (run in the interpreter on ``cuda``), eager fallback where a forward reads tensor values."""
import os

import numpy as np
import pytest

import tritorch
import tritorch.nn as nn
from tritorch import autotune, train
from tritorch.compiler import CompileError, codegen, passes
from tritorch.kernels import _pointwise
from tritorch.profiler import profile
from helpers import assert_close


def chain(x, y):
    z = x * y + 1.0
    w = tritorch.sigmoid(z) * x
    x.exp()                                 # dead: nothing reads it
    return tritorch.relu(w - y) / 2, z


def _count(monkeypatch):
    """Counts of launches of the shared pointwise kernel (eager ops) and of fused kernels."""
    counts = {"eager": 0, "fused": 0}
    kernel, fused = _pointwise._pointwise_kernel, codegen.Fused.__call__

    class Counting:
        def __getitem__(self, grid):
            counts["eager"] += 1
            return kernel[grid]

    def count_fused(self, *a):
        counts["fused"] += 1
        return fused(self, *a)
    monkeypatch.setattr(_pointwise, "_pointwise_kernel", Counting())
    monkeypatch.setattr(codegen.Fused, "__call__", count_fused)
    return counts


def _matches_eager(f, c, inputs, rtol, atol):
    """``f``, then ``c``'s capture and its replay, on ``inputs`` (tensors that require grad): the results and the
    gradients of ``(out * out).sum()`` agree."""
    res = []
    for fn in (f, c, c):
        for t in inputs:
            t.grad = None
        out = fn(*inputs)
        (out * out).sum().backward()
        res.append([t.detach().cpu().numpy() for t in (out, *[x.grad for x in inputs])])
    for r in res[1:]:
        for a, b in zip(r, res[0]):
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def _replayed_in_one_launch(c, *args):
    """``c(*args)`` after its capture, checking that the replay launched one kernel."""
    c(*args)
    with profile() as prof:
        got = c(*args)
    assert prof.kernel_launches() == 1
    return got


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITORCH_CACHE_DIR", str(tmp_path))


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_fused_chain_matches_eager(device, dtype):
    dt = getattr(tritorch, dtype)
    tritorch.manual_seed(0)
    x, y = tritorch.randn(5, 7, device=device, dtype=dt), tritorch.randn(5, 7, device=device, dtype=dt)
    c = tritorch.compile(chain)
    first = c(x, y)                         # the capture's own (eager) result
    again = c(x, y)                         # the replay
    want = chain(x, y)
    tol = dict(rtol=0, atol=0) if dt is tritorch.float32 else dict(rtol=2e-3, atol=2e-3)
    for a, b, e in zip(first, again, want):
        assert a.dtype is dt and b.dtype is dt
        assert_close(a, e.cpu().numpy(), dt, **tol)
        assert_close(b, e.cpu().numpy(), dt, **tol)
    text = c.explain()
    assert "8 ops, 1 dead" in text
    if device == "cuda":
        assert "Fused(mul -> add)" in text and "Fused(sigmoid -> mul -> sub -> relu -> div)" in text
    else:
        assert "fused kernels" not in text  # the cpu runs the NumPy references op by op


def test_fusion_launches_fewer_kernels(monkeypatch):
    x, y = tritorch.randn(33, device="cuda"), tritorch.randn(33, device="cuda")
    c = tritorch.compile(chain)
    c(x, y)
    counts = _count(monkeypatch)
    c(x, y)
    assert counts == {"eager": 0, "fused": 2}, counts        # 8 eager launches become 2
    chain(x, y)
    assert counts["eager"] == 8


def test_generated_source_cached_on_disk(tmp_path):
    x = tritorch.randn(4, device="cuda")
    c = tritorch.compile(lambda a: tritorch.tanh(a * 3.0) - a)
    c(x)
    c(x)
    files = os.listdir(tmp_path / "compiled")
    assert len(files) == 1 and files[0].startswith("fused_")
    src = (tmp_path / "compiled" / files[0]).read_text()
    assert "@triton.jit" in src and "F0(x0, s0b, 1.0, 0.0)" in src
    # the same structure with other ops reuses the same source (the ops are constexpr arguments)
    c2 = tritorch.compile(lambda a: tritorch.sigmoid(a + 2.0) * a)
    c2(x)
    c2(x)
    assert len(os.listdir(tmp_path / "compiled")) == 1


def test_broadcast_and_scalar_edges_stay_correct():
    x, b = tritorch.randn(3, 4, device="cuda"), tritorch.randn(4, device="cuda")
    f = lambda a, bias: tritorch.relu(a + bias) * -0.0 + tritorch.exp(a) * 2
    c = tritorch.compile(f)
    c(x, b)
    assert_close(c(x, b), f(x, b).cpu().numpy(), tritorch.float32, rtol=0, atol=0)
    # the broadcast add fuses; the -0.0 product runs eagerly (a kernel argument would lose the zero's sign)
    assert "Fused(add -> relu), Fused(exp -> mul -> add)" in c.explain()


def _scaled(x, bias, row, s):
    return tritorch.sigmoid(x * row + bias) * s - tritorch.tanh(bias) * row


@pytest.mark.parametrize("dtype", [tritorch.float32, tritorch.float16])
def test_broadcast_operands_fuse_forward_and_backward(device, dtype):
    """A bias (last dim), a per-row scale (size-1 dim), a 0-dim tensor and a member of a broadcast shape
    (``tanh(bias) * row``) in one group: one generated kernel; each input's gradient summed back to its shape."""
    tritorch.manual_seed(4)
    x = tritorch.randn(2, 5, 7, device=device, dtype=dtype, requires_grad=True)
    bias = tritorch.randn(7, device=device, dtype=dtype, requires_grad=True)
    row = tritorch.randn(2, 5, 1, device=device, dtype=dtype, requires_grad=True)
    s = tritorch.tensor(1.5, device=device, dtype=dtype, requires_grad=True)
    c = tritorch.compile(_scaled)
    res = []
    for fn in (_scaled, c, c, c):
        for t in (x, bias, row, s):
            t.grad = None
        out = fn(x, bias, row, s)
        (out.float() * out.float()).sum().backward()
        res.append([t.detach().cpu().numpy().astype(np.float64) for t in (out, x.grad, bias.grad, row.grad, s.grad)])
    tol = dict(rtol=1e-5, atol=1e-5) if dtype is tritorch.float32 else dict(rtol=1e-2, atol=1e-2)
    for r in res[1:]:
        for a, b in zip(r, res[0]):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, **tol)
    if device == "cuda":
        assert "1 fused kernels (7 ops): Fused(mul -> add -> sigmoid -> mul -> tanh -> mul -> sub)" in c.explain()
        plain = [t.detach() for t in (x, bias, row, s)]
        c(*plain)                                   # another signature (no grad): captured first
        with profile() as prof:
            c(*plain)
        assert prof.kernel_launches() == 1          # no copy or expand: each input read in place


def test_strided_inputs_read_in_place_without_copies():
    """Transposed, sliced and expanded views are read through their strides: one launch, no ``contiguous``."""
    f = lambda a, b: tritorch.sigmoid(a * b) - b
    base = tritorch.randn(9, 6, device="cuda")
    views = [(base.t()[:5], tritorch.randn(5, 9, device="cuda")),              # a transposed slice
             (base[::2, 1:], tritorch.randn(5, 5, device="cuda")),             # steps along both dims
             (tritorch.randn(6, 1, device="cuda").expand(6, 4), tritorch.randn(6, 4, device="cuda"))]
    for a, b in views:
        got = _replayed_in_one_launch(tritorch.compile(f), a, b)
        np.testing.assert_allclose(got.cpu().numpy(), f(a, b).cpu().numpy(), rtol=1e-6, atol=1e-7)


def test_layout_coalesces_dims():
    t = lambda *shape: tritorch.empty(*shape, device="cuda")
    assert codegen.layout((4, 5, 6), [t(4, 5, 6), t(4, 5, 6)]) == ([], [120], [])       # flat: no strides at all
    assert codegen.layout((4, 5, 6), [t(4, 5, 6), t(6)]) == ([1], [20, 6], [[0, 1]])      # a bias: two dims
    assert codegen.layout((4, 5, 6), [t(4, 5, 1)]) == ([0], [20, 6], [[1, 0]])           # per row
    assert codegen.layout((4, 1, 6), [t(6, 4).t().unsqueeze(1)]) == ([0], [4, 6], [[1, 4]])  # transposed, a 1 dropped
    assert codegen.layout((2, 3), [t()]) == ([0], [6], [[0]])                             # a 0-dim tensor
    assert codegen.layout((1, 1), [t(1)]) == ([0], [1], [[0]])
    assert passes.pointwise._broadcasts_to((3, 1), (2, 3, 4)) and not passes.pointwise._broadcasts_to((2, 4), (2, 3, 4))


def test_groups_of_one_structure_keep_their_own_ops_and_shapes():
    """Two groups whose kernels share one source (the ops are constexpr arguments) are two nodes of the graph:
    each keeps its ops and its shape (they once shared a node name, and the second group ran for both)."""
    f = lambda a, b: (tritorch.exp(a) * 2.0, tritorch.sigmoid(b) * 3.0)
    a, b = tritorch.randn(3, 4, device="cuda"), tritorch.randn(5, device="cuda")
    c = tritorch.compile(f)
    c(a, b)
    for got, want in zip(c(a, b), f(a, b)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got.cpu().numpy(), want.cpu().numpy(), rtol=1e-6, atol=1e-7)
    assert "Fused(exp -> mul), Fused(sigmoid -> mul)" in c.explain()


ACTIVATION_TREES = [lambda a, b: nn.functional.silu(a) * b,                       # SwiGLU's gate
                    lambda a, b: nn.functional.gelu(a + b),
                    lambda a, b: nn.functional.gelu(a, approximate="tanh") - b,
                    lambda a, b: nn.functional.leaky_relu(a * b, 0.2) + 1.0,
                    lambda a, b: nn.functional.elu(a, alpha=0.5) * nn.functional.leaky_relu(b)]


@pytest.mark.parametrize("i", range(len(ACTIVATION_TREES)))
def test_activations_fuse_with_their_parameters(device, i):
    """silu, gelu (both forms), leaky_relu and elu are members of fused trees; a slope or alpha is the row's
    parameter, not an operand; forward and gradients equal eager's."""
    f = ACTIVATION_TREES[i]
    x = tritorch.randn(5, 6, device=device, requires_grad=True)
    y = tritorch.randn(6, device=device, requires_grad=True)
    c = tritorch.compile(f)
    _matches_eager(f, c, (x, y), rtol=1e-5, atol=1e-6)
    want = ["Fused(silu -> mul)", "Fused(add -> gelu)", "Fused(gelu_tanh -> sub)", "Fused(mul -> leaky_relu -> add)",
            "Fused(elu -> leaky_relu -> mul)"][i]
    assert (want in c.explain()) == (device == "cuda")


def test_dead_code_keeps_in_place_writes():
    def f(x):
        t = x.clone()
        t.add_(1)                           # its result is unused, but it writes t
        x.neg()                             # dead
        return t
    g = tritorch.jit.trace(f, tritorch.zeros(3), check_trace=False)
    pruned = passes.eliminate_dead_code(g.graph)
    assert [n.op for n in pruned.nodes] == ["clone", "add_"]
    assert tritorch.compile(f)(tritorch.zeros(3)).tolist() == [1.0, 1.0, 1.0]


def test_dead_code_keeps_random_draws(device, tmp_path):
    """A dropout nothing reads still takes its counters: the numbers every later op and call draws are eager's
    (as PyTorch's eager; the draw is noted at capture, also through a generator argument, and saved by jit.save)."""
    gen = tritorch.Generator(device)

    def f(x):
        tritorch.nn.functional.dropout(x, 0.5)              # dead, but it moves the generator
        tritorch.rand(4, generator=gen, device=device)      # dead, moves gen
        x.neg()                                             # dead, draws nothing
        return tritorch.nn.functional.dropout(x, 0.5) + tritorch.rand(4, generator=gen, device=device)
    x = tritorch.ones(4, device=device)
    traced = tritorch.jit.trace(f, x, check_trace=False)
    assert [n.draws for n in traced.graph.nodes] == [True, True, False, True, True, False]
    assert [n.op for n in passes.eliminate_dead_code(traced.graph).nodes] == ["dropout", "rand", "dropout", "rand",
                                                                            "__add__"]
    c = tritorch.compile(f)

    def run(fn):
        tritorch.manual_seed(3)
        gen.manual_seed(4)
        return [fn(x).tolist(), tritorch.rand(3, device=device).tolist(), tritorch.rand(3, generator=gen).tolist()
                if device == "cpu" else tritorch.rand(3, generator=gen, device=device).tolist()]
    want = run(f)
    for _ in range(2):                                      # the capture, then the replay
        assert run(c) == want
    plain = tritorch.jit.trace(lambda x: (tritorch.nn.functional.dropout(x, 0.5), x.neg())[1], x, check_trace=False)
    tritorch.jit.save(plain, tmp_path / "f.pt")
    assert [n.draws for n in tritorch.jit.load(tmp_path / "f.pt").graph.nodes] == [True, False]


def test_guards_recapture(device):
    m = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Tanh()).to(device)
    c = tritorch.compile(m)
    x = tritorch.randn(2, 4, device=device)
    m.eval()
    with tritorch.no_grad():
        assert_close(c(x), m(x).cpu().numpy(), tritorch.float32, rtol=0, atol=0)
        assert_close(c(x), m(x).cpu().numpy(), tritorch.float32, rtol=0, atol=0)
        c(tritorch.randn(3, 4, device=device))                  # new shape
    c(x)                                                         # grad mode on
    m.train()
    c(x)                                                         # training mode
    assert c.explain().count("signature") == 4
    assert c.parameters is not None and list(c.parameters()) == list(m.parameters())


def test_guards_hold_every_called_modules_training_mode(device):
    """A submodule switched to eval, or the model under a compiled function: its dropout is baked into the capture,
    so the replay must not serve the other mode (it once did: dropout after eval())."""
    m = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5))
    m.to(device)
    x = tritorch.randn(4, 8, device=device)
    f = tritorch.compile(lambda a: m(a))
    c = tritorch.compile(m)
    for run in (f, c):
        m.train()
        run(x)
        run(x)
        m[1].eval()
        for _ in range(2):
            assert_close(run(x), m(x).detach().cpu().numpy(), tritorch.float32, rtol=0, atol=0)
        m[1].train()
        assert (run(x) == 0).float().mean().item() > 0.2            # dropping again
        assert len(run._entries) == 2


def test_training_step_gradients_match_eager(device):
    tritorch.manual_seed(1)
    m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1)).to(device)
    c = tritorch.compile(m)
    x = tritorch.randn(6, 4, device=device)
    grads = []
    for fn in (m, c, c):
        m.zero_grad()
        (fn(x) * 2.0).sum().backward()
        grads.append([p.grad.cpu().numpy().copy() for p in m.parameters()])
    for g in grads[1:]:
        for a, b in zip(g, grads[0]):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert "1 activations, 0 dropouts and 0 residual adds fused into linear/conv epilogues" in c.explain()


def test_value_read_runs_eagerly_or_raises_with_fullgraph():
    def f(x):
        if x.sum() > 0:
            return x * 2
        return x - 1
    c = tritorch.compile(f)
    pos, neg = tritorch.ones(3), -tritorch.ones(3)
    assert c(pos).tolist() == [2.0] * 3
    assert c(neg).tolist() == [-2.0] * 3                # same signature: eager, so the other branch runs
    assert "reads a tensor as a Python value (__bool__)" in c.explain()
    with pytest.raises(CompileError, match="fullgraph=True"):
        tritorch.compile(f, fullgraph=True)(pos)


def test_api_forms():
    @tritorch.compile
    def f(x):
        return x + 1

    @tritorch.compile(mode="max-autotune")
    def g(x):
        return x * 2
    assert f(tritorch.zeros(2)).tolist() == [1.0, 1.0] and g(tritorch.ones(1)).tolist() == [2.0]
    assert tritorch.compile(f, disable=True) is f
    with pytest.raises(RuntimeError, match="Unrecognized mode=fast"):
        tritorch.compile(f, mode="fast")


ACTS = [nn.ReLU(), nn.ReLU(inplace=True), nn.GELU(), nn.GELU(approximate="tanh"), nn.LeakyReLU(0.2), nn.ELU(0.5),
        nn.SiLU(), nn.Sigmoid(), nn.Tanh()]


@pytest.mark.parametrize("act", ACTS, ids=[repr(a) for a in ACTS])
def test_linear_epilogue_fusion_forward_and_backward(device, act):
    tritorch.manual_seed(2)
    m = nn.Sequential(nn.Linear(5, 6), act, nn.Linear(6, 3)).to(device)
    c = tritorch.compile(m)
    x = tritorch.randn(4, 5, device=device)
    out, grads = [], []
    for fn in (m, c, c):                    # eager, capture, replay
        m.zero_grad()
        y = fn(x)
        (y * y).sum().backward()
        out.append(y.detach().cpu().numpy())
        grads.append([p.grad.cpu().numpy().copy() for p in m.parameters()])
    for i in (1, 2):
        np.testing.assert_allclose(out[i], out[0], rtol=1e-6, atol=1e-6)
        for a, b in zip(grads[i], grads[0]):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert "1 activations, 0 dropouts and 0 residual adds fused into linear/conv epilogues" in c.explain()
    graph = passes.fuse_linear_epilogue(tritorch.jit.trace(m, x).graph)
    assert [n.op for n in graph.nodes] == ["linear", "linear"] and "activation" in graph.nodes[0].kwargs


def test_conv_epilogue_fusion():
    """conv2d/conv1d read only by relu, sigmoid or tanh take it as their epilogue; gelu (differentiated from its
    input, which the conv does not keep) stays an op of its own."""
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(inplace=True), nn.Conv2d(2, 2, 3), nn.GELU())
    graph = passes.fuse_linear_epilogue(tritorch.jit.trace(m, tritorch.randn(1, 1, 7, 7)).graph)
    assert [(n.op, n.kwargs.get("activation")) for n in graph.nodes] == [("conv2d", "relu"), ("conv2d", None),
                                                                         ("gelu", None)]
    c1 = nn.Conv1d(2, 3, 3)
    graph = passes.fuse_linear_epilogue(tritorch.jit.trace(lambda x: tritorch.tanh(c1(x)),
                                                           tritorch.randn(1, 2, 5)).graph)
    assert [(n.op, n.kwargs.get("activation")) for n in graph.nodes] == [("conv1d", "tanh")]


def test_linear_epilogue_needs_a_single_reader():
    lin = nn.Linear(3, 3)
    f = lambda x: tritorch.relu(lin(x)) + lin(x).sum()
    g = lambda x: (lambda z: tritorch.relu(z) + z)(lin(x))        # z read twice: no fusion
    x = tritorch.randn(2, 3)
    assert [n.op for n in passes.fuse_linear_epilogue(tritorch.jit.trace(f, x).graph).nodes][:1] == ["linear"]
    assert [n.op for n in passes.fuse_linear_epilogue(tritorch.jit.trace(g, x).graph).nodes] == \
        ["linear", "relu", "__add__"]


class Residual(nn.Module):
    """Two skip connections: one around a plain linear, one around a linear whose activation is fused too."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(6, 6), nn.Linear(6, 6)

    def forward(self, x):
        x = x + self.a(x)
        return self.b(x).relu() + x


@pytest.mark.parametrize("dtype", [tritorch.float32, tritorch.float16])
def test_linear_residual_fusion_forward_and_backward(device, dtype):
    tritorch.manual_seed(3)
    m = Residual().to(device, dtype)
    c = tritorch.compile(m)
    x = tritorch.randn(2, 3, 6, device=device).to(dtype).requires_grad_(True)
    res = []
    for fn in (m, c, c):                    # eager, capture, replay
        m.zero_grad()
        x.grad = None
        y = fn(x)
        (y.float() ** 2).sum().backward()
        res.append([y.detach().float().cpu().numpy(), x.grad.float().cpu().numpy()] +
                   [p.grad.float().cpu().numpy() for p in m.parameters()])
    for r in res[1:]:
        for a, b in zip(r, res[0]):
            np.testing.assert_array_equal(a, b)      # the fused add rounds as the separate one: bit for bit
    assert "1 activations, 0 dropouts and 2 residual adds fused into linear/conv epilogues" in c.explain()
    graph = passes.fuse_linear_residual(passes.fuse_linear_epilogue(tritorch.jit.trace(m, x).graph))
    assert [n.op for n in graph.nodes] == ["linear", "linear"]
    assert graph.nodes[1].kwargs["activation"] == "relu" and "residual" in graph.nodes[1].kwargs


def test_linear_residual_needs_a_single_reader_and_the_same_shape():
    lin = nn.Linear(3, 3)
    x = tritorch.randn(2, 3)
    cases = {
        "read twice": lambda x: (lambda z: z + x + z.sum())(lin(x)),
        "broadcast": lambda x: lin(x) + tritorch.ones(3),
        "alpha": lambda x: tritorch.add(x, lin(x), alpha=2.0),
        "graph output": lambda x: (lambda z: (z + x, z))(lin(x)),
    }
    for why, f in cases.items():
        ops = [n.op for n in passes.fuse_linear_residual(tritorch.jit.trace(f, x).graph).nodes]
        assert "linear" in ops and all(n.op != "linear" or "residual" not in n.kwargs
                                       for n in passes.fuse_linear_residual(tritorch.jit.trace(f, x).graph).nodes), why
    fused = passes.fuse_linear_residual(tritorch.jit.trace(lambda x: x + lin(x), x).graph)
    assert [n.op for n in fused.nodes] == ["linear"]


class DropoutBlock(nn.Module):
    """A transformer's MLP and projection with dropout: linear -> relu -> dropout, linear -> dropout -> + x."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.drop = nn.Linear(6, 12), nn.Linear(12, 6), nn.Dropout(0.25)

    def forward(self, x):
        return x + self.drop(self.b(self.drop(self.a(x).relu())))


@pytest.mark.parametrize("dtype", [tritorch.float32, tritorch.float16])
def test_linear_dropout_fusion_forward_and_backward(device, dtype):
    """Dropout fused into the linear kernels drops the elements eager dropout drops (same seed, same step):
    outputs and gradients equal bit for bit, at capture and replay; the replay launches no dropout kernel, forward or
    backward (the linear without an activation reads its gradient through the mask in its products)."""
    tritorch.manual_seed(3)
    m = DropoutBlock().to(device, dtype)
    c = tritorch.compile(m)
    x = tritorch.randn(2, 5, 6, device=device).to(dtype).requires_grad_(True)
    res = []
    for i, fn in enumerate((m, c, c)):      # eager, capture (runs eagerly), replay
        m.zero_grad()
        x.grad = None
        tritorch.manual_seed(11)
        with profile() as prof:
            y = fn(x)
        fwd = prof.kernel_launches("_dropout_kernel")
        with profile() as prof:
            (y.float() ** 2).sum().backward()
        res.append([y.detach().float().cpu().numpy(), x.grad.float().cpu().numpy()] +
                   [p.grad.float().cpu().numpy() for p in m.parameters()])
        if device == "cuda":
            assert (fwd, prof.kernel_launches("_dropout_kernel")) == ((0, 0) if i == 2 else (2, 2))
    for r in res[1:]:
        for a, b in zip(r, res[0]):
            np.testing.assert_array_equal(a, b)
    assert "1 activations, 2 dropouts and 1 residual adds fused into linear/conv epilogues" in c.explain()


def test_linear_dropout_fuses_only_training_mode_out_of_place():
    lin = nn.Linear(3, 3)
    x = tritorch.randn(2, 3)
    cases = {
        "eval": lambda x: tritorch.nn.functional.dropout(lin(x), 0.5, training=False),
        "p = 0": lambda x: tritorch.nn.functional.dropout(lin(x), 0.0),
        "inplace": lambda x: tritorch.nn.functional.dropout(lin(x), 0.5, inplace=True),
        "read twice": lambda x: (lambda z: tritorch.nn.functional.dropout(z, 0.5) + z)(lin(x)),
        "graph output": lambda x: (lambda z: (tritorch.nn.functional.dropout(z, 0.5), z))(lin(x)),
    }
    for why, f in cases.items():
        graph = passes.fuse_linear_dropout(tritorch.jit.trace(f, x).graph)
        assert all("dropout_p" not in n.kwargs for n in graph.nodes), why
    graph = passes.fuse_linear_dropout(tritorch.jit.trace(lambda x: tritorch.nn.functional.dropout(lin(x), 0.5),
                                                          x).graph)
    assert [(n.op, n.kwargs) for n in graph.nodes] == [("linear", {"dropout_p": 0.5})]


def loss_chain(x, y):
    z = x * y + 1.0
    w = tritorch.sigmoid(z) * x
    return tritorch.relu(w - y) / 2 + tritorch.tanh(x).exp() * tritorch.maximum(x, y)


def test_fused_backward_matches_eager(device):
    tritorch.manual_seed(3)
    x = tritorch.randn(5, 7, device=device, requires_grad=True)
    y = tritorch.randn(5, 7, device=device, requires_grad=True)
    y.data[0, :3] = x.data[0, :3]           # ties: maximum's gradient splits evenly
    c = tritorch.compile(loss_chain)
    _matches_eager(loss_chain, c, (x, y), rtol=1e-6, atol=1e-6)
    if device == "cuda":
        assert "their backward derived from the rows' gradient rules" in c.explain()
        out = c(x, y)
        assert type(out.grad_fn).__name__ == "FusedFunctionBackward"
        out.sum().backward()
        fused = next(iter(c._entries.values()))._program.steps[0][0]
        # the backward's own pointwise trees, fused: x's and y's side by side, in one kernel with two results
        assert [len(k.roots or ()) for k in fused.backward_kernels] == [2]


def test_fused_backward_double_backward():
    x = tritorch.randn(4, device="cuda", requires_grad=True)
    f = lambda a: tritorch.sigmoid(a * a) * a
    c = tritorch.compile(f)
    c(x)
    gx, = tritorch.autograd.grad(c(x).sum(), x, create_graph=True)
    gx.sum().backward()
    want_gx, = tritorch.autograd.grad(f(x).sum(), x, create_graph=True)
    x2 = x.grad.clone()
    x.grad = None
    want_gx.sum().backward()
    np.testing.assert_allclose(gx.detach().cpu().numpy(), want_gx.detach().cpu().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(x2.cpu().numpy(), x.grad.cpu().numpy(), rtol=1e-5, atol=1e-6)


class LSTMModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.lstm, self.fc = nn.Embedding(10, 8), nn.LSTM(8, 8, batch_first=True), nn.Linear(8, 10)

    def forward(self, x):
        h, _ = self.lstm(self.emb(x))
        return self.fc(h[:, -1])


MODELS = {   # name: (model, input of a batch size)
    "mlp": (lambda: nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)), lambda d, b: tritorch.randn(b, 8,
                                                                                                           device=d)),
    "cnn": (lambda: nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                  nn.Linear(4 * 4 * 4, 10)), lambda d, b: tritorch.randn(b, 1, 8, 8, device=d)),
    "autoencoder": (lambda: nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(),
                                          nn.ConvTranspose2d(4, 1, 4, stride=2, padding=1), nn.Sigmoid()),
                    lambda d, b: tritorch.randn(b, 1, 8, 8, device=d)),
    "gan": (lambda: nn.Sequential(nn.ConvTranspose2d(4, 8, 4, 1, 0, bias=False), nn.BatchNorm2d(8), nn.ReLU(True),
                                  nn.ConvTranspose2d(8, 1, 4, 2, 1, bias=False), nn.Tanh()),
            lambda d, b: tritorch.randn(b, 4, 1, 1, device=d)),
    "lstm": (LSTMModel, lambda d, b: tritorch.randint(0, 10, (b, 5), device=d)),
    "gpt_block": (lambda: nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True, norm_first=True,
                                                     activation="gelu"),
                  lambda d, b: tritorch.randn(b, 5, 16, device=d)),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_models_forward_and_backward_match_eager(device, name):
    make, data = MODELS[name]
    tritorch.manual_seed(0)
    m = make().to(device)
    c = tritorch.compile(m)
    kw = {"src_mask": nn.Transformer.generate_square_subsequent_mask(5).to(device), "is_causal": True} \
        if name == "gpt_block" else {}
    for batch in (2, 3):                    # the second batch size re-captures
        x = data(device, batch)
        res = []
        for fn in (m, c, c):
            m.zero_grad()
            y = fn(x, **kw)
            (y.float() ** 2).mean().backward()
            res.append([y.detach().cpu().numpy()] + [p.grad.cpu().numpy().copy() for p in m.parameters()])
        for r in res[1:]:
            for a, b in zip(r, res[0]):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert c.explain().count("signature") == 2


def test_train_compile_flag_matches_eager(tmp_path):
    common = ["--epochs", "1", "--limit-batches", "6", "--quiet", "--device", "cpu"]
    eager = train.run(train.build_parser().parse_args(common + ["--out", str(tmp_path / "a.ckpt")]))
    compiled = train.run(train.build_parser().parse_args(common + ["--out", str(tmp_path / "b.ckpt"), "--compile"]))
    assert eager == compiled


def test_train_compile_takes_a_mode(tmp_path):
    common = ["--epochs", "1", "--limit-batches", "4", "--quiet", "--device", "cpu"]
    args = train.build_parser().parse_args(common + ["--out", str(tmp_path / "b.ckpt"), "--compile", "reduce-overhead"])
    assert args.compile == "reduce-overhead"
    assert train.run(train.build_parser().parse_args(common + ["--out", str(tmp_path / "a.ckpt")])) == train.run(args)


def test_comparisons_and_where_fuse_inside_a_group(device):
    f = lambda x, y: tritorch.where(x > y, x * 2.0, 0.5) + tritorch.where((x - y).abs() <= 0.1, y, x).logical_not()
    g = lambda x, y: tritorch.where(x > y, x * 2.0, 0.5) - tritorch.relu(y)
    x = tritorch.randn(6, 5, device=device, requires_grad=True)
    y = tritorch.randn(6, 5, device=device, requires_grad=True)
    for fn in (f, g):
        c = tritorch.compile(fn)
        res = []
        for h in (fn, c, c):
            x.grad = y.grad = None
            out = h(x, y)
            if out.requires_grad:
                (out * out).sum().backward()
            res.append([out.detach().cpu().numpy()] + [t.grad.cpu().numpy() for t in (x, y) if t.grad is not None])
        for r in res[1:]:
            for a, b in zip(r, res[0]):
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    if device == "cuda":
        assert "Fused(gt -> mul -> where -> relu -> sub)" in c.explain()


@pytest.mark.parametrize("shape", [(0, 3), (1,), (7, 13), (3, 1, 5)])
def test_generated_kernel_edges(shape):
    """Odd sizes, size 0 and 1, non-contiguous inputs (transposed views), a poisoned output (TRITORCH_POISON=1 in
    the tests: every element must be written)."""
    f = lambda a, b: tritorch.sigmoid(a * b) - tritorch.exp(-a)
    a = tritorch.randn(*shape[::-1], device="cuda").permute(*range(len(shape) - 1, -1, -1))
    b = tritorch.randn(*shape, device="cuda")
    c = tritorch.compile(f)
    c(a, b)
    got = c(a, b)
    assert tuple(got.shape) == shape and got.is_contiguous()
    np.testing.assert_allclose(got.cpu().numpy(), f(a, b).cpu().numpy(), rtol=1e-6, atol=1e-7)
    assert "Fused(mul -> sigmoid -> neg -> exp -> sub)" in c.explain() or 0 in shape


def test_generated_kernels_are_tuned_like_the_hand_written_ones():
    """Every candidate of the shared pointwise kernel's list runs the generated kernel correctly, and with a timer
    the tuner times them and keeps the winner per (source, dtype, size bucket)."""
    f = lambda a: tritorch.tanh(a * 3.0) - a
    x = tritorch.randn(5000, device="cuda")
    c = tritorch.compile(f)
    c(x)
    want = f(x).cpu().numpy()
    for i in range(len(codegen.TUNABLE.configs)):
        with autotune.force("compiled_pointwise", i):
            np.testing.assert_allclose(c(x).cpu().numpy(), want, rtol=1e-6, atol=1e-7)
    timed = []

    def timer(run):
        timed.append(1)
        run()
        return float(len(timed))            # the first candidate timed is the fastest
    with autotune.tuning(), autotune.set_timer(timer):
        y = c(x)
    np.testing.assert_allclose(y.cpu().numpy(), want, rtol=1e-6, atol=1e-7)
    assert len(timed) >= len(codegen.TUNABLE.candidates((None, None, autotune.bucket(5000)))) > 1  # + the default


def test_rematerialize_computes_a_shared_value_again_per_read():
    """exp(x), read by three elementwise ops: after the pass each read has its own copy, and fusion makes one
    kernel of each tree; a value the graph returns or a matmul reads is left alone."""
    def f(x, y):
        e = tritorch.exp(x)
        return (e * y + e) - tritorch.sigmoid(e)

    def g(x, y):
        e = tritorch.exp(x)
        return e @ y + tritorch.sigmoid(e), e
    x, y = tritorch.randn(4, 4, device="cuda"), tritorch.randn(4, 4, device="cuda")
    graph = passes.rematerialize(tritorch.jit.trace(f, (x, y)).graph)
    exps = [n for n in graph.nodes if n.op == "exp"]
    assert len(exps) == 3 and len({n.outputs[0].name for n in exps}) == 3
    assert all(passes.graph.uses(graph)[n.outputs[0].name] == 1 for n in exps)
    assert len(passes.rematerialize(tritorch.jit.trace(g, (x, y)).graph).nodes) == 4
    got = _replayed_in_one_launch(tritorch.compile(f), x, y)
    np.testing.assert_allclose(got.cpu().numpy(), f(x, y).cpu().numpy(), rtol=1e-6, atol=1e-6)


def test_fused_backward_adds_the_pending_gradient(monkeypatch):
    """x read by two fused trees: the second backward to run adds the first one's gradient for x in its own kernel
    (one launch fewer than the engine's add), with the same gradient."""
    from tritorch.compiler.autodiff import FusedFunction
    f = lambda a: ((tritorch.sigmoid(a) * 2.0) ** 2).sum() + ((tritorch.exp(a) - 1.0) ** 2).sum()
    x = tritorch.randn(6, 5, device="cuda", requires_grad=True)
    counts, grads = [], []
    for accumulates in (FusedFunction._accumulates, ()):
        monkeypatch.setattr(FusedFunction, "_accumulates", accumulates)
        c = tritorch.compile(f)
        for _ in range(3):
            x.grad = None
            loss = c(x)
            with profile() as prof:
                loss.backward()
        counts.append(prof.kernel_launches())
        grads.append(x.grad.cpu().numpy())
    x.grad = None
    f(x).backward()
    assert counts[0] == counts[1] - 1
    for g in grads:
        np.testing.assert_allclose(g, x.grad.cpu().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("f, want", [(lambda a: (a.abs() + 0.5) ** 0.5 * 2.0, "Fused(abs -> add -> pow_scalar -> mul)"),
                                     (lambda a: tritorch.pow(a, 3) - a, "Fused(pow_scalar -> sub)"),
                                     (lambda a: (a ** 0) * a, "Fused(pow_scalar -> mul)")])
def test_scalar_powers_fuse(device, f, want):
    """``x ** a`` for a number a (other than 2, the square row) is the pow_scalar row with a as its parameter, as
    the eager op runs it; ``x ** 0`` included (its gradient is 0)."""
    x = tritorch.randn(5, 6, device=device, requires_grad=True)
    c = tritorch.compile(f)
    _matches_eager(f, c, (x,), rtol=1e-5, atol=1e-6)
    assert (want in c.explain()) == (device == "cuda")


def _written_after_read_linear(lin):
    def f(x, r):
        h = x * 1.0
        y = lin(h)
        h.mul_(3.0)                     # h written after the linear read it
        return y + r, h
    return f


def _written_after_read_pointwise(x, r):
    h = x * 1.0
    a = h * 2.0
    h.add_(r)
    return a + h


def test_no_fused_node_reads_a_tensor_after_an_in_place_write(device):
    """A fused node goes where its last member was and reads its inputs there: after an in-place op that wrote one
    of them (the replay read the written values: a wrong answer at every replay). Such a graph fuses nothing; an
    in-place op on a tensor no other op read before (``relu_`` of a fresh result) still fuses."""
    lin = nn.Linear(4, 4).to(device)
    x, r = tritorch.randn(2, 4, device=device), tritorch.randn(2, 4, device=device)
    for f in (_written_after_read_linear(lin), _written_after_read_pointwise):
        c = tritorch.compile(f)
        outs = lambda res: [o.detach().cpu().numpy() for o in (res if isinstance(res, tuple) else (res,))]  # noqa
        want = outs(f(x, r))
        for _ in range(3):                                  # the capture, then replays
            got = outs(c(x, r))
            for a, b in zip(got, want):
                np.testing.assert_array_equal(a, b)
        assert "no fusion: an in-place op writes a tensor an earlier op read" in c.explain()
    c = tritorch.compile(lambda x: lin(x).relu_() + 1.0)
    c(x)
    assert "1 activations" in c.explain() and "no fusion" not in c.explain()
