"""Attention written in ops runs as the flash-attention kernels (``kernels/attention.py``'s ``masked_attention``,
``tritorch.compile``'s ``fuse_attention``): the op against the ops it stands for (forward, every gradient, double
backward; NaN and inf where a mask hides them and rows whose keys are all hidden), the pass's spellings and
conditions, and a compiled LLaMA-style block against eager with the launches it saves."""
import math

import numpy as np
import pytest

import tritorch
import tritorch.nn as nn
import tritorch.nn.functional as F
from tritorch.compiler import passes
from tritorch.kernels.attention import masked_attention
from tritorch.profiler import profile
from helpers import assert_close, compiled_equals_eager, make, to_np

F64 = tritorch.float64


def _ops(q, k, v, mask, scale):
    """What ``masked_attention`` stands for, in the eager ops."""
    s = (q @ k.transpose(-2, -1)) * scale
    return F.softmax(s if mask is None else s.masked_fill(mask, float("-inf")), dim=-1) @ v


def _mask(shape, seed, hidden_row=None):
    m = np.random.default_rng(seed).uniform(size=shape) > 0.6
    if hidden_row is not None:
        m[..., hidden_row, :] = True                 # a row whose keys are all hidden: NaN, as softmax of -infs
    return m


def _grads(fn, ins, g):
    y = fn(*ins)
    return [y, *tritorch.autograd.grad(y, ins, g)]


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("dtype", [tritorch.float32, tritorch.float16, tritorch.bfloat16, F64])
@pytest.mark.parametrize("case", ["mask", "broadcast mask, hidden row", "no mask"])
def test_op_against_the_ops_in_float64(device, dtype, case):
    """Forward and the gradients of q, k and v against the eager ops in float64 on the cpu: odd L and S over several
    blocks, a transposed q, batch dims (2, 3), a (L, S) mask broadcast to them, a row that sees no key."""
    L, S, E = 19, 23, 8
    q, rq = make((2, 3, L, E), dtype, device, "transposed", seed=1, requires_grad=True)
    k, rk = make((2, 3, S, E), dtype, device, seed=2, requires_grad=True)
    v, rv = make((2, 3, S, 5), dtype, device, seed=3, requires_grad=True)
    g, rg = make((2, 3, L, 5), dtype, device, seed=4)
    m = None if case == "no mask" else _mask((2, 3, L, S) if case == "mask" else (L, S), 5,
                                             None if case == "mask" else 7)
    scale = 1 / math.sqrt(E)
    got = _grads(lambda q, k, v: masked_attention(q, k, v, None if m is None else tritorch.tensor(m, device=device),
                                                  scale), (q, k, v), g)
    r = [tritorch.tensor(a, requires_grad=True) for a in (rq, rk, rv)]
    want = _grads(lambda q, k, v: _ops(q, k, v, None if m is None else tritorch.tensor(m), scale), r,
                  tritorch.tensor(rg))
    for a, b, name in zip(got, want, ("out", "dq", "dk", "dv")):
        assert_close(a, b, dtype, msg=name)
    if case != "mask" and case != "no mask":
        assert np.isnan(to_np(got[0])[..., 7, :]).all() and np.isnan(to_np(got[3])).all()   # as the ops: dv NaN
        assert np.isfinite(to_np(got[1])).all() and np.isfinite(to_np(got[2])).all()      # hidden: no gradient


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("where", ["q", "k", "v"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nonfinite_where_the_mask_hides_it(device, where, value):
    """A NaN or inf in q, k or v: masked_fill hides the scores it makes where the mask is True (the rows that cannot
    see it stay finite), as the ops do; the float32 kernels against the float64 ops, NaN where they are NaN."""
    L, S, E = 6, 7, 8
    ins = [make(shape, tritorch.float32, device, seed=i, requires_grad=True)
           for i, shape in enumerate(((1, L, E), (1, S, E), (1, S, 4)))]
    raw = [r.copy() for _, r in ins]
    raw[{"q": 0, "k": 1, "v": 2}[where]][0, 2, 1] = value
    ts = [tritorch.tensor(r.astype(np.float32), device=device, requires_grad=True) for r in raw]
    m = _mask((L, S), 9)
    m[:, 2] = True                                   # key 2 (where k or v is poked) hidden from every row
    g, rg = make((1, L, 4), tritorch.float32, device, seed=8)
    got = _grads(lambda q, k, v: masked_attention(q, k, v, tritorch.tensor(m, device=device), 0.5), ts, g)
    r = [tritorch.tensor(a, requires_grad=True) for a in raw]
    want = _grads(lambda q, k, v: _ops(q, k, v, tritorch.tensor(m), 0.5), r, tritorch.tensor(rg))
    for a, b, name in zip(got, want, ("out", "dq", "dk", "dv")):
        assert_close(a, b, tritorch.float32, msg=name)
    if where == "k":        # a NaN/inf key that no row sees: out, dk and dv finite (dq not: 0 * k in ds @ k)
        assert all(np.isfinite(to_np(got[i])).all() for i in (0, 2, 3))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("masked", [False, True])
def test_row_of_minus_inf_scores_is_nan(device, masked):
    """q row 1 = (+inf, 0, ..) against keys whose first component is negative: its scores are all -inf, so softmax
    makes it NaN (and its gradients as the ops': dv NaN, and without a mask dq and dk too)."""
    L, S, E = 4, 5, 3
    rq, rk, rv, rg = (np.random.default_rng(i).uniform(-1, 1, shape) for i, shape in
                      enumerate(((1, L, E), (1, S, E), (1, S, 2), (1, L, 2))))
    rq[0, 1] = [np.inf, 0.0, 0.0]
    rk[0, :, 0] = -np.abs(rk[0, :, 0]) - 0.1
    rk[0, :, 1:] = np.where(rk[0, :, 1:] == 0, 0.5, rk[0, :, 1:])
    m = _mask((L, S), 3) if masked else None
    if masked:
        m[1] = False                                 # row 1 sees every key: its -inf is the scores', not the mask's
    ts = [tritorch.tensor(a.astype(np.float32), device=device, requires_grad=True) for a in (rq, rk, rv)]
    got = _grads(lambda q, k, v: masked_attention(q, k, v, None if m is None else tritorch.tensor(m, device=device),
                                                  1.0), ts, tritorch.tensor(rg.astype(np.float32), device=device))
    r = [tritorch.tensor(a, requires_grad=True) for a in (rq, rk, rv)]
    want = _grads(lambda q, k, v: _ops(q, k, v, None if m is None else tritorch.tensor(m), 1.0), r,
                  tritorch.tensor(rg))
    assert np.isnan(to_np(want[0])[0, 1]).all()
    for a, b, name in zip(got, want, ("out", "dq", "dk", "dv")):
        assert_close(a, b, tritorch.float32, msg=name)


def test_double_backward():
    """gradcheck and gradgradcheck in float64 (the create_graph path: the ops it stands for, recorded)."""
    q, _ = make((2, 4, 3), F64, "cpu", seed=10, requires_grad=True)
    k, _ = make((2, 5, 3), F64, "cpu", seed=11, requires_grad=True)
    v, _ = make((2, 5, 2), F64, "cpu", seed=12, requires_grad=True)
    m = tritorch.tensor(_mask((4, 5), 13))
    f = lambda q, k, v: masked_attention(q, k, v, m, 0.7)     # noqa: E731
    assert tritorch.autograd.gradcheck(f, (q, k, v))
    assert tritorch.autograd.gradgradcheck(f, (q, k, v))


@pytest.mark.parametrize("dtype", [tritorch.float32, F64])
def test_dropout_drops_what_the_op_drops(device, dtype):
    """With dropout_p, the counters the ``dropout`` op would draw and the same weights dropped: forward and every
    gradient equal the ops' (the same seed), the double backward's too; the generator advanced as the op advances
    it."""
    q, rq = make((2, 3, 7, 4), dtype, device, seed=20, requires_grad=True)
    k, rk = make((2, 3, 9, 4), dtype, device, seed=21, requires_grad=True)
    v, rv = make((2, 3, 9, 5), dtype, device, seed=22, requires_grad=True)
    g, _ = make((2, 3, 7, 5), dtype, device, seed=23)
    m = tritorch.tensor(_mask((7, 9), 24), device=device)
    res = []
    for fn in (lambda: masked_attention(q, k, v, m, 0.5, 0.3),
               lambda: F.dropout(F.softmax(((q @ k.transpose(-2, -1)) * 0.5).masked_fill(m, float("-inf")), -1),
                                 0.3) @ v):
        tritorch.manual_seed(5)
        y = fn()
        after = tritorch.rand(1, device=device)
        grads = tritorch.autograd.grad(y, (q, k, v), g, create_graph=True)
        res.append([y, *grads, *tritorch.autograd.grad(sum((d * d).sum() for d in grads), (q, k, v)), after])
    assert not np.allclose(to_np(res[0][0]), to_np(masked_attention(q, k, v, m, 0.5)))    # weights were dropped
    for i, (a, b) in enumerate(zip(*res)):
        assert_close(a, b, dtype, msg=str(i))


def test_errors():
    q = tritorch.randn(2, 4, 3)
    with pytest.raises(RuntimeError, match="expected a boolean mask"):
        masked_attention(q, q, q, tritorch.zeros(4, 4), 1.0)
    with pytest.raises(RuntimeError, match="cannot be broadcast"):
        masked_attention(q, q, q, tritorch.zeros(3, 4, dtype=tritorch.bool), 1.0)


class Block(nn.Module):
    """Causal self-attention with the scores, the mask and the softmax spelled out; ``spelling`` varies how."""

    def __init__(self, spelling="mul", dim=16, heads=2, seq=9):
        super().__init__()
        self.heads, self.spelling = heads, spelling
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.register_buffer("mask", tritorch.ones(seq, seq).triu(1).bool())

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (z.reshape(b, t, self.heads, -1).transpose(1, 2) for z in self.qkv(x).split(d, dim=-1))
        hd = d // self.heads
        if self.spelling == "mul":
            s = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
        elif self.spelling == "rmul":
            s = (1.0 / math.sqrt(hd)) * tritorch.matmul(q, k.transpose(3, 2))
        elif self.spelling == "div":
            s = q @ k.transpose(-1, -2) / math.sqrt(hd)
        else:
            s = q @ k.transpose(-2, -1)
        if self.spelling != "nomask":
            s = s.masked_fill(self.mask[:t, :t], float("-inf"))
        a = s.softmax(-1) @ v
        return self.proj(a.transpose(1, 2).reshape(b, t, d))


class Nano(nn.Module):
    """nanoGPT's causal self-attention: the mask a comparison of a buffer, dropout on the weights."""

    def __init__(self, dim=16, heads=2, seq=9, p=0.2):
        super().__init__()
        self.heads = heads
        self.qkv, self.proj, self.attn_dropout = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim), nn.Dropout(p)
        self.register_buffer("bias", tritorch.tril(tritorch.ones(seq, seq)).view(1, 1, seq, seq))

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in self.qkv(x).split(d, dim=2))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.bias[:, :, :t, :t] == 0, float("-inf"))
        y = self.attn_dropout(F.softmax(att, dim=-1)) @ v
        return self.proj(y.transpose(1, 2).contiguous().view(b, t, d))


@pytest.mark.parametrize("training", [True, False])
def test_compiled_nanogpt_attention_equals_eager(device, training):
    """Training mode: the same weights dropped as eager (same seed), outputs and gradients equal; eval mode: the
    dropout is the identity; both fused."""
    tritorch.manual_seed(6)
    m = Nano().to(device).train(training)
    c = tritorch.compile(m)
    x = tritorch.randn(3, 9, 16, device=device)
    out, grads = [], []
    for fn in (m, c, c):
        m.zero_grad()
        tritorch.manual_seed(7)
        y = fn(x)
        (y * y).sum().backward()
        out.append(to_np(y))
        grads.append([to_np(p.grad) for p in m.parameters()])
    for i in (1, 2):
        np.testing.assert_allclose(out[i], out[0], rtol=1e-4, atol=1e-5)
        for a, b in zip(grads[i], grads[0]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert "1 attentions written in ops as flash attention" in c.explain()


def _graph_ops(fn, *xs):
    return [n.op for n in passes.fuse_attention(tritorch.jit.trace(fn, xs, check_trace=False).graph).nodes]


@pytest.mark.parametrize("spelling", ["mul", "rmul", "div", "nomask"])
def test_pass_spellings(spelling):
    x = tritorch.randn(2, 9, 16)
    ops = _graph_ops(Block(spelling), x)
    assert ops.count("masked_attention") == 1 and "softmax" not in ops and "__matmul__" not in ops


def test_pass_conditions():
    q, k, v = tritorch.randn(2, 5, 4), tritorch.randn(2, 6, 4), tritorch.randn(2, 6, 3)
    m, k3 = tritorch.zeros(5, 6, dtype=tritorch.bool), tritorch.randn(6, 4, 2)
    ok = lambda q, k, v: F.softmax((q @ k.transpose(-2, -1)).masked_fill(m, float("-inf")), -1) @ v   # noqa: E731
    assert _graph_ops(ok, q, k, v) == ["masked_attention"]
    drop = lambda q, k, v: F.dropout(F.softmax(q @ k.transpose(-2, -1), -1), 0.1) @ v   # noqa: E731
    assert _graph_ops(drop, q, k, v) == ["masked_attention"]
    no = {
        "scores read twice": lambda q, k, v: (lambda s: F.softmax(s, -1) @ v + s.sum())(q @ k.transpose(-2, -1)),
        "softmax over dim 1": lambda q, k, v: F.softmax(q @ k.transpose(-2, -1), 1) @ v,
        "fill with -1e9": lambda q, k, v: F.softmax((q @ k.transpose(-2, -1)).masked_fill(m, -1e9), -1) @ v,
        "float mask added": lambda q, k, v: F.softmax(q @ k.transpose(-2, -1) + m.float(), -1) @ v,
        "not the last two dims": lambda q, k, v: F.softmax(q @ k3.transpose(0, 2), -1) @ v,
        "softmax in float64": lambda q, k, v: F.softmax(q @ k.transpose(-2, -1), -1, dtype=F64) @ v.double(),
        "weights an output": lambda q, k, v: (lambda p: (p @ v, p))(F.softmax(q @ k.transpose(-2, -1), -1)),
        "dropout p = 0 (draws)": lambda q, k, v: F.dropout(F.softmax(q @ k.transpose(-2, -1), -1), 0.0) @ v,
        "dropout p = 1": lambda q, k, v: F.dropout(F.softmax(q @ k.transpose(-2, -1), -1), 1.0) @ v,
        "dropout, v made after it": lambda q, k, v: (lambda p: p @ (v * 2.0))(
            F.dropout(F.softmax(q @ k.transpose(-2, -1), -1), 0.1)),
        "dropout, broadcast batch": lambda q, k, v: F.dropout(F.softmax(q @ k[:1].transpose(-2, -1), -1), 0.1) @ v,
    }
    for why, fn in no.items():
        assert "masked_attention" not in _graph_ops(fn, q, k, v), why


def test_compiled_block_equals_eager_and_runs_one_attention_kernel(device):
    tritorch.manual_seed(4)
    m = Block().to(device)
    c = tritorch.compile(m)
    x = tritorch.randn(3, 9, 16, device=device)
    prof = compiled_equals_eager(m, c, x, rtol=1e-4, atol=1e-5, grad_rtol=1e-4, grad_atol=1e-5)
    assert "1 attentions written in ops as flash attention" in c.explain()
    if device == "cuda":
        names = [e.name for e in prof.events() if e.kind == "kernel"]
        assert names.count("_attn_bwd_kernel") == 1 and not any(n.startswith("_attn_bwd_d") for n in names)
        assert "_matmul_kernel" not in names
        with profile() as fwd:
            c(x)
        names = [e.name for e in fwd.events() if e.kind == "kernel"]
        assert names.count("_attn_fwd_kernel") == 1 and "_matmul_kernel" not in names


def test_compile_under_autocast_keeps_the_ops():
    m = Block()
    c = tritorch.compile(m)
    with tritorch.autocast("cpu", dtype=tritorch.bfloat16):
        c(tritorch.randn(2, 9, 16))
    assert "0 attentions written in ops" in c.explain()
