"""scaled_dot_product_attention (the fused flash-attention kernels) against a float64 NumPy softmax, the
MultiheadAttention formula, the Transformer layers, and a small character-level Transformer language model."""
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import tritorch
from tritorch import nn
from tritorch.autograd.gradcheck import gradcheck
from tritorch.profiler import profile
from tritorch.kernels.attention import scaled_dot_product_attention as sdpa, np_sdpa_forward, np_sdpa_backward
from tritorch.nn.transformer import (MultiheadAttention, TransformerEncoderLayer, TransformerEncoder,
                                     TransformerDecoderLayer, generate_square_subsequent_mask)

from helpers import make, to_np

DATA = os.path.join(os.path.dirname(__file__), "data", "declaration.txt")

# (query shape, key shape, value shape, mask kind, causal, layout)
CASES = [
    ((2, 3, 19, 16), (2, 3, 23, 16), (2, 3, 23, 16), None, False, "contiguous"),
    ((1, 2, 19, 24), (1, 2, 23, 24), (1, 2, 23, 20), None, True, "contiguous"),
    ((2, 23, 64), (2, 19, 64), (2, 19, 64), None, True, "contiguous"),                  # L > S: causal
    ((2, 3, 19, 16), (2, 3, 23, 16), (2, 3, 23, 16), "bool", False, "transposed"),
    ((3, 19, 24), (3, 23, 24), (3, 23, 24), "float", False, "transposed"),
    ((19, 16), (23, 16), (23, 8), "bool_batch", False, "contiguous"),
    ((2, 1, 19, 16), (1, 3, 23, 16), (2, 3, 23, 16), None, False, "contiguous"),      # batch dims broadcast
    ((2, 2, 1, 3, 17, 16), (2, 2, 1, 3, 5, 16), (2, 2, 1, 3, 5, 16), "float", False, "contiguous"),
]


def _mask(kind, L, S, batch, device, rng):
    if kind is None:
        return None, None
    if kind == "bool":
        m = rng.random((L, S)) > 0.4
        m[2] = False                          # a query that sees no key: zeros, as PyTorch's safe softmax
        m[:, 0] = m[:, 0] | (np.arange(L) != 2)
    elif kind == "bool_batch":
        m = rng.random((L, S)) > 0.3
    else:
        m = rng.standard_normal(batch[-1:] + (L, S) if batch else (L, S))
    dtype = tritorch.bool if m.dtype == np.bool_ else tritorch.float32
    return tritorch.tensor(m, dtype=dtype, device=device), m


@pytest.mark.parametrize("qs,ks,vs,mask,causal,layout", CASES)
def test_sdpa_forward_backward(device, qs, ks, vs, mask, causal, layout):
    rng = np.random.default_rng(1)
    q, qn = make(qs, device=device, layout=layout, seed=1, requires_grad=True)
    k, kn = make(ks, device=device, layout=layout, seed=2, requires_grad=True)
    v, vn = make(vs, device=device, layout=layout, seed=3, requires_grad=True)
    batch = np.broadcast_shapes(qs[:-2], ks[:-2], vs[:-2])
    m, mn = _mask(mask, qs[-2], ks[-2], batch, device, rng)
    out = sdpa(q, k, v, attn_mask=m, is_causal=causal)
    ref, _, _ = np_sdpa_forward(qn, kn, vn, mn, causal)
    np.testing.assert_allclose(to_np(out), ref, rtol=1e-4, atol=2e-5)
    g = rng.standard_normal(ref.shape)
    out.backward(tritorch.tensor(g, dtype=tritorch.float32, device=device))
    dq, dk, dv, _ = np_sdpa_backward(qn, kn, vn, g, mn, causal)
    for t, r in ((q, dq), (k, dk), (v, dv)):
        red = tuple(i for i in range(r.ndim) if i < r.ndim - t.ndim or (t.shape[i - r.ndim + t.ndim] == 1
                                                                         and r.shape[i] != 1))
        r = r.sum(axis=red).reshape(t.shape) if red else r
        np.testing.assert_allclose(to_np(t.grad), r, rtol=1e-4, atol=5e-5)


def test_sdpa_float_mask_grad(device):
    """An additive float mask that requires grad gets dS, reduced to its broadcast shape."""
    q, qn = make((2, 3, 19, 16), device=device, seed=1, requires_grad=True)
    k, kn = make((2, 3, 23, 16), device=device, seed=2)
    v, vn = make((2, 3, 23, 16), device=device, seed=3)
    m, mn = make((3, 19, 23), device=device, seed=4, requires_grad=True)
    g = np.random.default_rng(0).standard_normal((2, 3, 19, 16))
    sdpa(q, k, v, attn_mask=m).backward(tritorch.tensor(g, dtype=tritorch.float32, device=device))
    dq, _, _, ds = np_sdpa_backward(qn, kn, vn, g, mn)
    np.testing.assert_allclose(to_np(q.grad), dq, rtol=1e-4, atol=5e-5)
    np.testing.assert_allclose(to_np(m.grad), ds.sum(0), rtol=1e-4, atol=5e-5)


def test_sdpa_float64_and_scale(device):
    q, qn = make((2, 19, 16), tritorch.float64, device, seed=4, requires_grad=True)
    k, kn = make((2, 23, 16), tritorch.float64, device, seed=5, requires_grad=True)
    v, vn = make((2, 23, 16), tritorch.float64, device, seed=6, requires_grad=True)
    out = sdpa(q, k, v, scale=0.3, is_causal=True)
    np.testing.assert_allclose(to_np(out), np_sdpa_forward(qn, kn, vn, None, True, 0.3)[0], rtol=1e-10, atol=1e-12)
    out.sum().backward()
    for t, r in zip((q, k, v), np_sdpa_backward(qn, kn, vn, np.ones((2, 19, 16)), None, True, 0.3)[:3]):
        np.testing.assert_allclose(to_np(t.grad), r, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("dtype,tol", [(tritorch.float16, 5e-3), (tritorch.bfloat16, 3e-2)])
def test_sdpa_half(device, dtype, tol):
    q, qn = make((1, 19, 16), dtype, device, seed=7, requires_grad=True)
    k, kn = make((1, 23, 16), dtype, device, seed=8, requires_grad=True)
    v, vn = make((1, 23, 16), dtype, device, seed=9, requires_grad=True)
    out = sdpa(q, k, v, is_causal=True)
    assert out.dtype is dtype
    np.testing.assert_allclose(to_np(out), np_sdpa_forward(qn, kn, vn, None, True)[0], rtol=tol, atol=tol)
    out.sum().backward()
    for t, r in zip((q, k, v), np_sdpa_backward(qn, kn, vn, np.ones((1, 19, 16)), None, True)):
        assert t.grad.dtype is dtype
        np.testing.assert_allclose(to_np(t.grad), r, rtol=4 * tol, atol=4 * tol)


@pytest.mark.parametrize("causal", [False, True])
def test_sdpa_gradcheck_cpu(causal):
    rng = np.random.default_rng(3)
    q = tritorch.tensor(rng.standard_normal((2, 5, 4)), requires_grad=True)
    k = tritorch.tensor(rng.standard_normal((2, 6, 4)), requires_grad=True)
    v = tritorch.tensor(rng.standard_normal((2, 6, 3)), requires_grad=True)
    if causal:
        assert gradcheck(lambda a, b, c: sdpa(a, b, c, is_causal=True), (q, k, v))
    else:
        m = tritorch.tensor(rng.standard_normal((5, 6)), requires_grad=True)
        assert gradcheck(lambda a, b, c, d: sdpa(a, b, c, attn_mask=d), (q, k, v, m))


def test_sdpa_dropout_same_on_every_device():
    """In-kernel Philox dropout: cpu (NumPy transcription) and cuda drop the same weights for the same seed, and
    backward regenerates the mask."""
    res = []
    for device in ("cpu", "cuda"):
        tritorch.manual_seed(11)
        q, qn = make((2, 19, 16), device=device, seed=1, requires_grad=True)
        k, kn = make((2, 23, 16), device=device, seed=2, requires_grad=True)
        v, vn = make((2, 23, 16), device=device, seed=3, requires_grad=True)
        out = sdpa(q, k, v, dropout_p=0.3)
        out.sum().backward()
        res.append([to_np(t) for t in (out, q.grad, k.grad, v.grad)])
    for a, b in zip(*res):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)
    plain, _, _ = np_sdpa_forward(qn, kn, vn)
    assert np.abs(res[0][0] - plain).max() > 1e-2
    dropped = np.abs(res[0][0]).sum()
    assert np.isfinite(dropped)


def test_sdpa_empty_and_single(device):
    q, _ = make((1, 1, 16), device=device)
    k, _ = make((1, 1, 16), device=device, seed=1)
    v, vn = make((1, 1, 16), device=device, seed=2)
    np.testing.assert_allclose(to_np(sdpa(q, k, v)), vn, rtol=1e-6)
    q0 = tritorch.zeros((2, 0, 16), device=device)
    assert tuple(sdpa(q0, k.expand(2, 1, 16), v.expand(2, 1, 16)).shape) == (2, 0, 16)


@pytest.mark.parametrize("kind", ["plain", "causal", "float mask", "dropout", "empty queries", "empty keys"])
def test_sdpa_backward_is_one_launch(kind):
    """The backward is one launch, whose programs compute dQ (a block of queries each) and dK/dV (a block of keys
    each) side by side, and its gradients are the float64 reference's; with no query (key) rows dK and dV (dQ) are
    zeros."""
    L, S = {"empty queries": (0, 21), "empty keys": (19, 0)}.get(kind, (19, 21))
    q, qn = make((2, 3, L, 16), device="cuda", seed=1)
    k, kn = make((2, 3, S, 16), device="cuda", seed=2)
    v, vn = make((2, 3, S, 24), device="cuda", seed=3)
    g, gn = make((2, 3, L, 24), device="cuda", seed=4)
    mask, mn = _mask("float" if kind == "float mask" else None, L, S, (), "cuda", np.random.default_rng(5))
    for t in (q, k, v):
        t.requires_grad_(True)
    p = 0.25 if kind == "dropout" else 0.0
    tritorch.manual_seed(3)
    out = sdpa(q, k, v, attn_mask=mask, dropout_p=p, is_causal=kind == "causal")
    with profile() as prof:
        out.backward(g)
    assert [e.name for e in prof.events() if e.kind == "kernel"] == ["_attn_bwd_kernel"]
    if p:
        return                  # the dropped weights: test_sdpa_dropout_same_on_every_device
    want = np_sdpa_backward(qn, kn, vn, gn, mn, kind == "causal")
    for t, w in zip((q, k, v), want):
        assert tuple(t.grad.shape) == w.shape
        np.testing.assert_allclose(to_np(t.grad), w, rtol=1e-4, atol=1e-5)
    if L == 0:
        assert not to_np(k.grad).any() and not to_np(v.grad).any()


def test_sdpa_errors(device):
    q, _ = make((2, 5, 16), device=device)
    k, _ = make((2, 7, 16), device=device)
    with pytest.raises(RuntimeError, match=r"attn_mask of shape \(5, 6\) cannot be broadcast .*\(2, 5, 7\)"):
        sdpa(q, k, k, attn_mask=tritorch.ones((5, 6), dtype=tritorch.bool, device=device))
    with pytest.raises(RuntimeError, match="Explicit attn_mask should not be set when is_causal=True"):
        sdpa(q, k, k, attn_mask=tritorch.ones((5, 7), dtype=tritorch.bool, device=device), is_causal=True)
    with pytest.raises(RuntimeError, match="same embedding size"):
        sdpa(q, k[..., :8], k)
    with pytest.raises(RuntimeError, match="same dtype"):
        sdpa(q, k.double(), k)
    with pytest.raises(RuntimeError, match="attn_mask dtype to be bool or float"):
        sdpa(q, k, k, attn_mask=tritorch.ones((5, 7), dtype=tritorch.int64, device=device))


# ---- MultiheadAttention against PyTorch's formula in NumPy -----------------------------------------------------------

def _np_mha(m, q, k, v, kpm, attn_mask, average):
    """nn.MultiheadAttention's forward (batch second) in float64 NumPy: (output, weights)."""
    P = {n: to_np(p) for n, p in m.named_parameters()}
    E, H = m.embed_dim, m.num_heads
    hd = E // H
    if "in_proj_weight" in P:
        wq, wk, wv = np.split(P["in_proj_weight"], 3)
    else:
        wq, wk, wv = P["q_proj_weight"], P["k_proj_weight"], P["v_proj_weight"]
    bq, bk, bv = np.split(P["in_proj_bias"], 3)
    L, N, _ = q.shape
    S = k.shape[0]

    def heads(x, n):
        return x.reshape(n, N * H, hd).transpose(1, 0, 2)

    qh, kh, vh = heads(q @ wq.T + bq, L), heads(k @ wk.T + bk, S), heads(v @ wv.T + bv, S)
    s = qh @ kh.transpose(0, 2, 1) / math.sqrt(hd)
    if attn_mask is not None:
        s = s + (np.where(attn_mask, -np.inf, 0.0) if attn_mask.dtype == np.bool_ else attn_mask)
    if kpm is not None:
        s = s + np.repeat(np.where(kpm, -np.inf, 0.0)[:, None, :], H, axis=0)
    w = np.exp(s - s.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    o = (w @ vh).transpose(1, 0, 2).reshape(L, N, E)
    o = o @ P["out_proj.weight"].T + P["out_proj.bias"]
    w = w.reshape(N, H, L, S)
    return o, (w.mean(1) if average else w)


@pytest.mark.parametrize("batch_first,kv_dims,mask", [(False, None, "kpm"), (True, (12, 20), "both")])
def test_multihead_attention(device, batch_first, kv_dims, mask):
    tritorch.manual_seed(0)
    E, H, L, S, N = 32, 2, 7, 9, 3
    kdim, vdim = kv_dims or (E, E)
    m = MultiheadAttention(E, H, kdim=kdim, vdim=vdim, batch_first=batch_first).to(device)
    with tritorch.no_grad():
        m.in_proj_bias.uniform_(-0.5, 0.5)
        m.out_proj.bias.uniform_(-0.5, 0.5)
    q, qn = make((L, N, E), device=device, seed=1)
    k, kn = make((S, N, kdim), device=device, seed=2)
    v, vn = make((S, N, vdim), device=device, seed=3)
    kpm = np.zeros((N, S), dtype=bool)
    kpm[0, -3:] = kpm[2, :2] = True
    am = np.triu(np.ones((L, S), dtype=bool), 4) if mask == "both" else None
    tk = tritorch.tensor(kpm, device=device)
    ta = None if am is None else tritorch.tensor(am, device=device)
    args = (q, k, v) if not batch_first else (q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1))
    for average in (True, False):
        ref_o, ref_w = _np_mha(m, qn, kn, vn, kpm, am, average)
        out, w = m(*args, key_padding_mask=tk, attn_mask=ta, average_attn_weights=average)
        out = out.transpose(0, 1) if batch_first else out
        np.testing.assert_allclose(to_np(out), ref_o, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(to_np(w), ref_w, rtol=1e-4, atol=1e-6)
    out, w = m(*args, key_padding_mask=tk, attn_mask=ta, need_weights=False)
    assert w is None
    np.testing.assert_allclose(to_np(out.transpose(0, 1) if batch_first else out), ref_o, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layout", ["seq_first", "batch_first", "unbatched"])
def test_self_attention_matches_torch(device, layout):
    """query is key is value: one packed projection split into q, k, v (PyTorch's fast path), outputs and every
    gradient as PyTorch's (float64), with and without the weights."""
    torch = pytest.importorskip("torch")
    E, H, L, N = 16, 4, 5, 3
    tritorch.manual_seed(0)
    m = MultiheadAttention(E, H, batch_first=layout == "batch_first").to(device).double()
    ref = torch.nn.MultiheadAttention(E, H, batch_first=layout == "batch_first", dtype=torch.float64)
    with tritorch.no_grad():
        m.in_proj_bias.uniform_(-0.5, 0.5)
        m.out_proj.bias.uniform_(-0.5, 0.5)
    ref.load_state_dict({k: torch.tensor(to_np(v)) for k, v in m.state_dict().items()})
    shape = {"seq_first": (L, N, E), "batch_first": (N, L, E), "unbatched": (L, E)}[layout]
    rng = np.random.default_rng(0)
    xn, gn = rng.standard_normal(shape), rng.standard_normal(shape)
    mask = np.triu(np.full((L, L), -np.inf), 1)
    for need_weights in (False, True):
        m.zero_grad()
        ref.zero_grad()
        x = tritorch.tensor(xn, device=device, requires_grad=True)
        xr = torch.tensor(xn, requires_grad=True)
        out, w = m(x, x, x, attn_mask=tritorch.tensor(mask, device=device), need_weights=need_weights)
        r_out, r_w = ref(xr, xr, xr, attn_mask=torch.tensor(mask), need_weights=need_weights)
        np.testing.assert_allclose(to_np(out), r_out.detach().numpy(), rtol=1e-9, atol=1e-10)
        assert (w is None) == (r_w is None)
        if w is not None:
            np.testing.assert_allclose(to_np(w), r_w.detach().numpy(), rtol=1e-9, atol=1e-10)
        (out * tritorch.tensor(gn, device=device)).sum().backward()
        (r_out * torch.tensor(gn)).sum().backward()
        np.testing.assert_allclose(to_np(x.grad), xr.grad.numpy(), rtol=1e-9, atol=1e-10)
        for (name, p), rp in zip(m.named_parameters(), ref.parameters()):
            np.testing.assert_allclose(to_np(p.grad), rp.grad.numpy(), rtol=1e-9, atol=1e-10, err_msg=name)


def test_self_attention_launches():
    """Batch-first self-attention without weights is three kernels (the packed projection, attention, the output
    projection: no transposes); its backward fills no zeros and copies nothing to join dq, dk, dv: attention
    writes them where the packed projection's gradient has them."""
    tritorch.manual_seed(0)
    m = MultiheadAttention(16, 4, batch_first=True).to("cuda")
    x = tritorch.randn(2, 5, 16, device="cuda", requires_grad=True)
    with profile() as prof:
        out, _ = m(x, x, x, need_weights=False)
    assert [e.name for e in prof.events() if e.kind == "kernel"] == ["_linear_kernel", "_attn_fwd_kernel",
                                                                     "_linear_kernel"]
    assert out.is_contiguous() and tuple(out.shape) == (2, 5, 16)
    loss = out.sum()
    with profile() as prof:
        loss.backward()
    kernels = [e.name for e in prof.events() if e.kind == "kernel"]
    assert kernels[0] == "_fill_kernel" and "_fill_kernel" not in kernels[1:]      # the first: the seed gradient
    assert "stack" not in [e.name for e in prof.events() if e.kind == "op"]
    assert prof.kernel_launches("_pointwise_kernel") == 1             # x.grad (a view) copied


@pytest.mark.parametrize("start,width", [(8, 8), (4, 8), (0, 8)], ids=["packed", "overlapping", "same"])
def test_sdpa_grads_of_views_of_one_tensor(device, start, width):
    """q, k, v as views of one tensor (disjoint: the kernels write their gradients into one buffer laid out as
    they are; overlapping or identical: separate buffers, summed by the views' backward): the gradient of that
    tensor equals the one through independent copies."""
    x, _ = make((2, 3, 11, 3 * 8), tritorch.float32, device, seed=5, requires_grad=True)
    g, _ = make((2, 3, 11, width), x.dtype, device, seed=6)
    views = [x[..., i * start:i * start + width] for i in range(3)]
    (sdpa(*views, is_causal=True) * g).sum().backward()
    ours, x.grad = x.grad, None
    copies = [v.clone() for v in views]
    (sdpa(*copies, is_causal=True) * g).sum().backward()
    np.testing.assert_allclose(to_np(ours), to_np(x.grad), rtol=1e-5, atol=1e-6)


def test_multihead_attention_errors():
    m = MultiheadAttention(8, 2)
    x = tritorch.randn(4, 2, 8)
    with pytest.raises(RuntimeError, match=r"shape of the 2D attn_mask is \(4, 5\), but should be \(4, 4\)"):
        m(x, x, x, attn_mask=tritorch.zeros(4, 5))
    with pytest.raises(AssertionError, match="expecting key_padding_mask shape of"):
        m(x, x, x, key_padding_mask=tritorch.zeros((3, 4), dtype=tritorch.bool))
    with pytest.raises(AssertionError, match="embed_dim must be divisible by num_heads"):
        MultiheadAttention(10, 3)


# one configuration through the interpreter is enough: the layer code is device-independent
@pytest.mark.parametrize("device,norm_first,activation", [("cpu", False, "relu"), ("cpu", True, "gelu"),
                                                          ("cuda", False, "relu")])
def test_encoder_layer_runs(device, norm_first, activation):
    tritorch.manual_seed(0)
    layer = TransformerEncoderLayer(16, 2, 32, dropout=0.1, activation=activation, batch_first=True,
                                    norm_first=norm_first).to(device)
    x = tritorch.randn(2, 5, 16, device=device, requires_grad=True)
    mask = generate_square_subsequent_mask(5, device=device)
    y = layer(x, src_mask=mask, is_causal=True)
    y.square().sum().backward()
    assert tuple(y.shape) == (2, 5, 16) and np.isfinite(to_np(y)).all()
    assert np.isfinite(to_np(x.grad)).all()
    assert all(p.grad is not None for p in layer.parameters())


def test_encoder_and_decoder_shapes():
    tritorch.manual_seed(0)
    enc = TransformerEncoder(TransformerEncoderLayer(16, 4, 24, dropout=0.0), 2, norm=nn.LayerNorm(16))
    assert len(enc.layers) == 2 and enc.layers[0] is not enc.layers[1]
    src = tritorch.randn(6, 2, 16)
    kpm = tritorch.tensor([[False] * 5 + [True], [False] * 6])
    mem = enc(src, src_key_padding_mask=kpm)
    dec = TransformerDecoderLayer(16, 4, 24, dropout=0.0)
    tgt = tritorch.randn(4, 2, 16, requires_grad=True)
    out = dec(tgt, mem, tgt_mask=generate_square_subsequent_mask(4), memory_key_padding_mask=kpm)
    out.sum().backward()
    assert tuple(out.shape) == (4, 2, 16) and tgt.grad is not None


# ---- the seeds' program: a character-level Transformer language model -----------------------------------------------

class CharLM(nn.Module):
    def __init__(self, vocab, d, heads, layers, ctx):
        super().__init__()
        self.tok = nn.Parameter(tritorch.randn(vocab, d) * 0.1)
        self.pos = nn.Parameter(tritorch.randn(ctx, d) * 0.1)
        self.encoder = TransformerEncoder(TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, batch_first=True,
                                                                  norm_first=True), layers, norm=nn.LayerNorm(d))
        self.head = nn.Linear(d, vocab)
        self.register_buffer("mask", generate_square_subsequent_mask(ctx))

    def forward(self, idx):
        T = idx.shape[1]
        x = self.tok[idx] + self.pos[:T]
        return self.head(self.encoder(x, mask=self.mask[:T, :T], is_causal=True))


def train_char_lm(steps=120):
    """Train the 2-layer model on the paragraph; returns (losses, unigram entropy in nats, wall seconds)."""
    with open(DATA) as f:
        text = f.read()
    chars = sorted(set(text))
    ids = np.array([chars.index(c) for c in text])
    p = np.bincount(ids) / len(ids)
    unigram = float(-(p * np.log(p)).sum())
    tritorch.manual_seed(0)
    ctx, batch = 32, 16
    model = CharLM(len(chars), 32, 2, 2, ctx)
    opt = tritorch.optim.Adam(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    start, losses = time.perf_counter(), []
    for _ in range(steps):
        at = rng.integers(0, len(ids) - ctx - 1, batch)
        x = tritorch.tensor(np.stack([ids[a:a + ctx] for a in at]))
        y = tritorch.tensor(np.stack([ids[a + 1:a + ctx + 1] for a in at]))
        loss = tritorch.nn.functional.cross_entropy(model(x).reshape(-1, len(chars)), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, unigram, time.perf_counter() - start


def test_char_transformer_learns_text():
    """The seeds' program, in a process of its own with single-threaded BLAS: on a busy machine OpenBLAS threads
    spinning over these small matrices cost several times the work itself."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import test_attention as t; "
            "print(json.dumps(t.train_char_lm()))")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-c", code, os.path.dirname(__file__)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    losses, unigram, elapsed = json.loads(res.stdout.strip().splitlines()[-1])
    final = float(np.mean(losses[-10:]))
    assert losses[0] > unigram - 0.3
    assert final < unigram - 0.8, (final, unigram)       # about 2.9 nats -> 1.7
    assert elapsed < 30, elapsed


def test_sdpa_double_backward_cpu():
    from tritorch.autograd.gradcheck import gradgradcheck
    rng = np.random.default_rng(5)
    q, k, v = (tritorch.tensor(rng.standard_normal(s), requires_grad=True) for s in ((4, 3), (5, 3), (5, 2)))
    m = tritorch.tensor(rng.random((4, 5)) > 0.3)
    assert gradgradcheck(lambda a, b, c: sdpa(a, b, c, attn_mask=m), (q, k, v))
    f = tritorch.tensor(rng.standard_normal((4, 5)), requires_grad=True)
    assert gradgradcheck(lambda a, b, c, d: sdpa(a, b, c, attn_mask=d), (q, k, v, f))
    assert gradgradcheck(lambda a, b, c: sdpa(a, b, c, is_causal=True), (q, k, v))


# ---- NaN and inf: PyTorch's math path (softmax(q @ k^T * scale + bias) @ v) on every device -------------------------
def _poke(name, i, j, val):
    def f(q, k, v, m):
        {"q": q, "k": k, "v": v, "m": m}[name][..., i, j] = val
    return f


NAN, INF = float("nan"), float("inf")
# (case, change to q/k/v/mask, mask kind, is_causal, torch backend that is the oracle, (L, S)); the scores of keys
# hidden by is_causal are never computed (PyTorch's flash kernel, its default, does the same; its math path adds -inf
# to them, so a NaN there would spread): those cases put the NaN or inf where the causal mask hides it, against flash.
# A NaN or inf in v reaches every row, hidden or not (weight 0 times it), in both (PyTorch's CPU flash kernel skips
# only past 512-key blocks): the cases past the diagonal block (16 rows in the interpreter) check that the kernels
# then walk every key block.
NONFINITE = [
    ("nan q", _poke("q", 1, 0, NAN), None, False, "math", (5, 6)),
    ("nan k", _poke("k", 2, 3, NAN), None, False, "math", (5, 6)),
    ("nan k, several key blocks", _poke("k", 20, 3, NAN), None, False, "math", (19, 23)),
    ("nan v", _poke("v", 2, 1, NAN), None, False, "math", (5, 6)),
    ("+inf q", _poke("q", 1, 0, INF), None, False, "math", (5, 6)),
    ("-inf q", _poke("q", 3, 2, -INF), None, False, "math", (5, 6)),
    ("+inf k", _poke("k", 2, 0, INF), None, False, "math", (5, 6)),
    ("-inf k", _poke("k", 4, 5, -INF), None, False, "math", (5, 6)),
    ("-inf q row", _poke("q", 2, slice(None), -INF), None, False, "math", (5, 6)),
    ("fully masked row", lambda q, k, v, m: None, "bool", False, "math", (5, 6)),
    ("fully masked row, several key blocks", lambda q, k, v, m: None, "bool", False, "math", (19, 23)),
    ("nan k where the mask hides it", _poke("k", 1, 0, NAN), "bool", False, "math", (5, 6)),
    ("+inf q in a fully masked row", _poke("q", 2, 0, INF), "bool", False, "math", (5, 6)),
    ("nan v where the mask hides it", _poke("v", 1, 0, NAN), "bool", False, "math", (5, 6)),
    ("-inf float mask row", lambda q, k, v, m: None, "float", False, "math", (5, 6)),
    ("nan in a float mask", _poke("m", 3, 2, NAN), "float", False, "math", (5, 6)),
    ("+inf in a float mask", _poke("m", 0, 4, INF), "float", False, "math", (5, 6)),
    ("nan q, causal", _poke("q", 3, 1, NAN), None, True, "math", (5, 6)),
    ("+inf q, causal", _poke("q", 4, 1, INF), None, True, "math", (5, 6)),
    ("-inf k, causal", _poke("k", 0, 1, -INF), None, True, "math", (5, 6)),
    ("nan k seen by later rows, causal", _poke("k", 2, 0, NAN), None, True, "flash", (5, 6)),
    ("nan k hidden from every row, causal", _poke("k", 5, 0, NAN), None, True, "flash", (5, 6)),
    ("+inf k hidden from every row, causal", _poke("k", 5, 0, INF), None, True, "flash", (5, 6)),
    ("nan v, causal", _poke("v", 1, 3, NAN), None, True, "math", (5, 6)),
    ("nan v past the diagonal block, causal", _poke("v", 20, 3, NAN), None, True, "math", (22, 23)),
    ("nan v past the diagonal block, causal, flash", _poke("v", 20, 3, NAN), None, True, "flash", (22, 23)),
    ("+inf v past the diagonal block, causal", _poke("v", 21, 0, INF), None, True, "math", (22, 22)),
    ("-inf v hidden from every row, causal", _poke("v", 40, 5, -INF), None, True, "math", (3, 41)),
]


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("case,change,mask_kind,causal,oracle,ls", NONFINITE, ids=[c[0] for c in NONFINITE])
def test_sdpa_nan_and_inf_match_torch(device, case, change, mask_kind, causal, oracle, ls):
    torch = pytest.importorskip("torch")
    attention = pytest.importorskip("torch.nn.attention")
    L, S = ls
    g = torch.Generator().manual_seed(7)
    q, k, v = (torch.randn(1, 2, n, 8, generator=g) for n in (L, S, S))
    m = None
    if mask_kind == "bool":
        m = torch.rand(L, S, generator=g) > 0.3
        m[:, 1] = True
        m[2] = False                                   # row 2 sees no key
    elif mask_kind == "float":
        m = torch.randn(L, S, generator=g)
        m[1] = -INF                                    # row 1 sees no key
    change(q, k, v, m)
    backend = attention.SDPBackend.MATH if oracle == "math" else attention.SDPBackend.FLASH_ATTENTION
    with attention.sdpa_kernel(backend):
        want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=m, is_causal=causal).numpy()
    tt = [tritorch.tensor(t.numpy(), device=device) for t in (q, k, v)]
    tm = None if m is None else tritorch.tensor(m.numpy(), device=device)
    got = to_np(sdpa(*tt, attn_mask=tm, is_causal=causal))
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6, equal_nan=True, err_msg=case)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("case", ["nan q", "nan v", "masked row"])
def test_sdpa_nan_and_masked_rows_gradients_match_torch(device, case):
    """A NaN row's gradients are NaN, as PyTorch's math path; a row that sees no key contributes none."""
    torch = pytest.importorskip("torch")
    attention = pytest.importorskip("torch.nn.attention")
    g = torch.Generator().manual_seed(3)
    q, k, v, go = (torch.randn(1, n, 8, generator=g) for n in (5, 6, 6, 5))
    m = torch.ones(5, 6, dtype=torch.bool)
    m[1] = False
    if case == "nan q":
        q[0, 3, 2] = NAN
    elif case == "nan v":
        v[0, 4, 1] = NAN
    tq, tk, tv = (tritorch.tensor(t.numpy(), device=device, requires_grad=True) for t in (q, k, v))
    out = sdpa(tq, tk, tv, attn_mask=tritorch.tensor(m.numpy(), device=device))
    tgo = tritorch.tensor(go.numpy(), device=device)
    composed = tritorch.autograd.grad(out, (tq, tk, tv), tgo, retain_graph=True, create_graph=True)
    out.backward(tgo)
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    with attention.sdpa_kernel(attention.SDPBackend.MATH):
        torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=m).backward(go)
    assert (case == "masked row") == all(np.isfinite(t.grad.numpy()).all() for t in (q, k, v))
    for name, a, c, b in (("dq", tq, composed[0], q), ("dk", tk, composed[1], k), ("dv", tv, composed[2], v)):
        np.testing.assert_allclose(to_np(a.grad), b.grad.numpy(), rtol=1e-4, atol=1e-5, equal_nan=True, err_msg=name)
        np.testing.assert_allclose(to_np(c), b.grad.numpy(), rtol=1e-4, atol=1e-5, equal_nan=True,
                                   err_msg=f"{name} (create_graph)")


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("ls", [(20, 20), (3, 37)], ids=["square", "keys past every row"])
def test_sdpa_causal_nan_v_past_the_diagonal_gradients_match_torch(device, ls):
    """A NaN in v past the diagonal block (causal): out NaN in its column for every row, dq and dk NaN, dv finite,
    as PyTorch's math path and its CPU default."""
    torch = pytest.importorskip("torch")
    attention = pytest.importorskip("torch.nn.attention")
    L, S = ls
    g = torch.Generator().manual_seed(4)
    q, k, v, go = (torch.randn(1, n, 8, generator=g, dtype=torch.float64) for n in (L, S, S, L))
    v[0, S - 2, 3] = NAN
    tq, tk, tv = (tritorch.tensor(t.numpy(), device=device, requires_grad=True) for t in (q, k, v))
    out = sdpa(tq, tk, tv, is_causal=True)
    out.backward(tritorch.tensor(go.numpy(), device=device))
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    for backend in (attention.SDPBackend.MATH, None):
        if backend is None:
            want = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            with attention.sdpa_kernel(backend):
                want = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        grads = torch.autograd.grad(want, (q, k, v), go)
        np.testing.assert_allclose(to_np(out), want.detach().numpy(), rtol=1e-10, atol=1e-12, equal_nan=True)
        for name, a, b in (("dq", tq, grads[0]), ("dk", tk, grads[1]), ("dv", tv, grads[2])):
            np.testing.assert_allclose(to_np(a.grad), b.numpy(), rtol=1e-10, atol=1e-12, equal_nan=True,
                                       err_msg=f"{name} ({backend})")
    assert np.isnan(to_np(out))[:, :, 3].all() and np.isfinite(to_np(out)[:, :, :3]).all()
    assert np.isnan(to_np(tk.grad)).all() and np.isfinite(to_np(tv.grad)).all()
