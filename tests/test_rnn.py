"""RNN / LSTM / GRU and their cells vs float64 NumPy oracles (forward, and backward by central differences of the
NumPy forward), the fused gate kernels, gradcheck, errors, pad_sequence, and a small training run."""
import math

import numpy as np
import pytest

import tritorch
from tritorch.autograd import gradcheck
from tritorch.kernels import rnn as kr
from tritorch.kernels.linear import linear
from tritorch.nn.rnn import RNN, LSTM, GRU, RNNCell, LSTMCell, GRUCell
from tritorch.nn.utils.rnn import (pad_sequence, pack_padded_sequence, pad_packed_sequence, pack_sequence,
                                   unpack_sequence)
from helpers import assert_close, to_np


def sig(x):
    return 1 / (1 + np.exp(-x))


def np_step(mode, x, h, c, w_ih, w_hh, b_ih, b_hh):
    gi = x @ w_ih.T + (b_ih if b_ih is not None else 0)
    gh = h @ w_hh.T + (b_hh if b_hh is not None else 0)
    if mode == "LSTM":
        i, f, g, o = np.split(gi + gh, 4, axis=-1)
        c = sig(f) * c + sig(i) * np.tanh(g)
        return sig(o) * np.tanh(c), c
    if mode == "GRU":
        ir, iz, in_ = np.split(gi, 3, axis=-1)
        hr, hz, hn = np.split(gh, 3, axis=-1)
        r, z = sig(ir + hr), sig(iz + hz)
        n = np.tanh(in_ + r * hn)
        return (1 - z) * n + z * h, None
    a = gi + gh
    return (np.tanh(a) if mode == "RNN_TANH" else np.maximum(a, 0)), None


def np_rnn(mode, params, x, h0, c0, num_layers, bidirectional, bias):
    """x (T, B, I); params[name] arrays; returns output (T, B, D*H), h_n, c_n."""
    D = 2 if bidirectional else 1
    layer_in, hn, cn = x, [], []
    for layer in range(num_layers):
        outs = []
        for d in range(D):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            p = [params["weight_ih" + sfx], params["weight_hh" + sfx],
                 params.get("bias_ih" + sfx) if bias else None, params.get("bias_hh" + sfx) if bias else None]
            h, c = h0[layer * D + d], c0[layer * D + d] if c0 is not None else None
            out = [None] * x.shape[0]
            for t in (reversed(range(x.shape[0])) if d else range(x.shape[0])):
                h, c = np_step(mode, layer_in[t], h, c, *p)
                out[t] = h
            outs.append(np.stack(out))
            hn.append(h)
            cn.append(c)
        layer_in = np.concatenate(outs, axis=-1)
    return layer_in, np.stack(hn), (np.stack(cn) if c0 is not None else None)


def numeric_grads(fn, arrays, eps=1e-6):
    """Central differences of the scalar fn() w.r.t. every element of each array (modified in place)."""
    grads = []
    for a in arrays:
        g = np.zeros_like(a)
        flat, gf = a.reshape(-1), g.reshape(-1)
        for k in range(flat.size):
            v = flat[k]
            flat[k] = v + eps
            up = fn()
            flat[k] = v - eps
            down = fn()
            flat[k] = v
            gf[k] = (up - down) / (2 * eps)
        grads.append(g)
    return grads


MODES = {"LSTM": (LSTM, {}), "GRU": (GRU, {}), "RNN_TANH": (RNN, {}), "RNN_RELU": (RNN, {"nonlinearity": "relu"})}


def run_case(mode, device, dtype, num_layers, bidirectional, batch_first, bias, with_state, T=3, B=2, n_in=2, H=3):
    cls, kw = MODES[mode]
    tritorch.manual_seed(0)
    m = cls(n_in, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, bias=bias,
            **kw).to(device=device, dtype=dtype)
    rng = np.random.default_rng(1)
    D = 2 if bidirectional else 1
    x_np = rng.uniform(-1, 1, (T, B, n_in))
    h0_np = rng.uniform(-1, 1, (num_layers * D, B, H)) if with_state else np.zeros((num_layers * D, B, H))
    c0_np = (rng.uniform(-1, 1, h0_np.shape) if with_state else np.zeros_like(h0_np)) if mode == "LSTM" else None
    x = tritorch.tensor(x_np.transpose(1, 0, 2) if batch_first else x_np, dtype=dtype, device=device,
                        requires_grad=True)
    hx = None
    if with_state:
        h0 = tritorch.tensor(h0_np, dtype=dtype, device=device, requires_grad=True)
        hx = (h0, tritorch.tensor(c0_np, dtype=dtype, device=device, requires_grad=True)) if mode == "LSTM" else h0
    out, state = m(x, hx)
    h_n, c_n = state if mode == "LSTM" else (state, None)
    params = {n: to_np(p) for n, p in m.named_parameters()}
    ref_out, ref_h, ref_c = np_rnn(mode, params, x_np, h0_np, c0_np, num_layers, bidirectional, bias)
    assert_close(out, ref_out.transpose(1, 0, 2) if batch_first else ref_out, dtype, rtol=1e-4, atol=1e-5)
    assert_close(h_n, ref_h, dtype, rtol=1e-4, atol=1e-5)
    if mode == "LSTM":
        assert_close(c_n, ref_c, dtype, rtol=1e-4, atol=1e-5)
    # backward of sum(out * R) + sum(h_n * S) (+ sum(c_n * U)) vs central differences of the NumPy forward
    R, S = rng.uniform(-1, 1, ref_out.shape), rng.uniform(-1, 1, ref_h.shape)
    U = rng.uniform(-1, 1, ref_h.shape)
    loss = (out * tritorch.tensor(R.transpose(1, 0, 2) if batch_first else R, dtype=dtype, device=device)).sum() \
        + (h_n * tritorch.tensor(S, dtype=dtype, device=device)).sum()
    if mode == "LSTM":
        loss = loss + (c_n * tritorch.tensor(U, dtype=dtype, device=device)).sum()
    loss.backward()

    def f():
        o, h, c = np_rnn(mode, params, x_np, h0_np, c0_np, num_layers, bidirectional, bias)
        return (o * R).sum() + (h * S).sum() + ((c * U).sum() if c is not None else 0)

    names = list(params)
    arrays = [params[n] for n in names] + [x_np] + ([h0_np] + ([c0_np] if c0_np is not None else [])
                                                    if with_state else [])
    grads = numeric_grads(f, arrays)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == tritorch.float64 else dict(rtol=2e-3, atol=2e-4)
    for n, g in zip(names, grads):
        assert_close(dict(m.named_parameters())[n].grad, g, dtype, msg=n, **tol)
    gx = grads[len(names)]
    assert_close(x.grad, gx.transpose(1, 0, 2) if batch_first else gx, dtype, **tol)
    if with_state:
        hs = hx if mode == "LSTM" else (hx,)
        for t, g in zip(hs, grads[len(names) + 1:]):
            assert_close(t.grad, g, dtype, **tol)


# the interpreter runs ~100 launches per case: cuda covers each mode once, batch_first both ways across the two
@pytest.mark.parametrize("device, mode, batch_first", [
    ("cpu", "LSTM", False), ("cpu", "LSTM", True), ("cpu", "GRU", False), ("cpu", "GRU", True),
    ("cuda", "LSTM", True), ("cuda", "GRU", False)])
def test_bidirectional_two_layer(device, mode, batch_first):
    run_case(mode, device, tritorch.float32 if device == "cuda" else tritorch.float64, 2, True, batch_first,
             True, with_state=batch_first)


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_TANH", "RNN_RELU"])
def test_single_layer_states_no_bias(device, mode):
    run_case(mode, device, tritorch.float32 if device == "cuda" else tritorch.float64, 1, False, False, False,
             with_state=True, T=3, B=3, n_in=2, H=3)


def test_rnn_two_layer_bidirectional_relu_cpu():
    run_case("RNN_RELU", "cpu", tritorch.float64, 2, True, True, True, with_state=False)


def test_parameters_names_shapes_init():
    tritorch.manual_seed(0)
    m = LSTM(4, 8, num_layers=2, bidirectional=True)
    names = [n for n, _ in m.named_parameters()]
    assert names[:5] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_ih_l0_reverse"]
    assert len(names) == 16
    assert m.weight_ih_l1.shape == (32, 16) and m.weight_hh_l1_reverse.shape == (32, 8)
    bound = 1 / math.sqrt(8)
    for _, p in m.named_parameters():
        a = to_np(p)
        assert a.min() >= -bound and a.max() <= bound and a.std() > bound / 4
    assert GRU(3, 5).weight_ih_l0.shape == (15, 3)
    assert [n for n, _ in RNN(3, 5, bias=False).named_parameters()] == ["weight_ih_l0", "weight_hh_l0"]
    assert repr(LSTM(4, 8, num_layers=2, batch_first=True)) == "LSTM(4, 8, num_layers=2, batch_first=True)"


def test_unbatched_and_dropout(device):
    tritorch.manual_seed(0)
    m = GRU(3, 4, num_layers=2, dropout=0.5).to(device)
    x = tritorch.randn(3, 3, device=device)
    out, h = m(x)
    assert out.shape == (3, 4) and h.shape == (2, 4)
    m.eval()
    a, _ = m(x)
    b, _ = m(x)
    assert_close(a, to_np(b))
    out3, _ = m(x.unsqueeze(1))
    assert_close(out3.squeeze(1), to_np(a), rtol=1e-5, atol=1e-6)


def test_errors(device):
    m = LSTM(4, 8, num_layers=2).to(device)
    with pytest.raises(RuntimeError, match=r"input.size\(-1\) must be equal to input_size. Expected 4, got 5"):
        m(tritorch.randn(2, 3, 5, device=device))
    h = tritorch.zeros(1, 3, 8, device=device)
    with pytest.raises(RuntimeError, match=r"Expected hidden\[0\] size \(2, 3, 8\), got \[1, 3, 8\]"):
        m(tritorch.randn(2, 3, 4, device=device), (h, h))
    g = GRU(4, 8, num_layers=2).to(device)
    with pytest.raises(RuntimeError, match=r"Expected hidden size \(2, 3, 8\), got \[1, 3, 8\]"):
        g(tritorch.randn(2, 3, 4, device=device), h)
    with pytest.raises(ValueError, match="Unknown nonlinearity"):
        RNN(2, 3, nonlinearity="gelu")
    with pytest.raises(RuntimeError, match="input.size"):
        LSTMCell(4, 3).to(device)(tritorch.randn(2, 5, device=device))
    with pytest.raises(RuntimeError, match="Input batch size 2 doesn't match hidden0 batch size 3"):
        GRUCell(4, 3).to(device)(tritorch.randn(2, 4, device=device), tritorch.zeros(3, 3, device=device))


# ---- cells and the fused kernels -------------------------------------------------------------------------------
@pytest.mark.parametrize("H", [1, 5, 33])
def test_gate_kernels_vs_reference(device, H):
    rng = np.random.default_rng(H)
    B = 3
    for name, G in (("lstm", 4), ("gru", 3)):
        gi_np, gh_np, s_np = rng.uniform(-2, 2, (B, G * H)), rng.uniform(-2, 2, (B, G * H)), rng.uniform(-1, 1, (B, H))
        gi, gh, s = (tritorch.tensor(a, dtype=tritorch.float32, device=device, requires_grad=True)
                     for a in (gi_np, gh_np, s_np))
        dh_np = rng.uniform(-1, 1, (B, H))
        if name == "lstm":
            h, c = kr.lstm_cell(gi, gh, s)
            eh, ec = kr.lstm_cell_fwd_np(gi_np, gh_np, s_np)
            assert_close(h, eh, rtol=1e-5, atol=1e-6)
            assert_close(c, ec, rtol=1e-5, atol=1e-6)
            dc_np = rng.uniform(-1, 1, (B, H))
            tritorch.autograd.backward([h, c], [tritorch.tensor(dh_np, dtype=tritorch.float32, device=device),
                                                tritorch.tensor(dc_np, dtype=tritorch.float32, device=device)])
            dg, dcp = kr.lstm_cell_bwd_np(gi_np, gh_np, s_np, dh_np, dc_np)
            assert_close(gi.grad, dg, rtol=1e-5, atol=1e-6)
            assert_close(gh.grad, dg, rtol=1e-5, atol=1e-6)
            assert_close(s.grad, dcp, rtol=1e-5, atol=1e-6)
        else:
            h = kr.gru_cell(gi, gh, s)
            assert_close(h, kr.gru_cell_fwd_np(gi_np, gh_np, s_np), rtol=1e-5, atol=1e-6)
            h.backward(tritorch.tensor(dh_np, dtype=tritorch.float32, device=device))
            dgi, dgh, dhp = kr.gru_cell_bwd_np(gi_np, gh_np, s_np, dh_np)
            assert_close(gi.grad, dgi, rtol=1e-5, atol=1e-6)
            assert_close(gh.grad, dgh, rtol=1e-5, atol=1e-6)
            assert_close(s.grad, dhp, rtol=1e-5, atol=1e-6)


def test_lstm_kernel_only_h_used(device):
    gi = tritorch.randn(2, 12, device=device, requires_grad=True)
    gh = tritorch.randn(2, 12, device=device)
    c = tritorch.randn(2, 3, device=device, requires_grad=True)
    h, _ = kr.lstm_cell(gi, gh, c)
    h.sum().backward()
    dg, dcp = kr.lstm_cell_bwd_np(to_np(gi), to_np(gh), to_np(c), np.ones((2, 3)), None)
    assert_close(gi.grad, dg, rtol=1e-5, atol=1e-6)
    assert_close(c.grad, dcp, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [RNNCell, LSTMCell, GRUCell])
def test_cells_gradcheck_cpu(cls):
    """gradcheck of the cell's computation as a function of its input, state(s) and parameters (gradcheck
    perturbs copies, so the parameters are arguments of the checked function)."""
    tritorch.manual_seed(0)
    cell = cls(3, 4).to(dtype=tritorch.float64)
    x = tritorch.randn(2, 3, dtype=tritorch.float64, requires_grad=True)
    h = tritorch.randn(2, 4, dtype=tritorch.float64, requires_grad=True)
    c = tritorch.randn(2, 4, dtype=tritorch.float64, requires_grad=True)
    params = tuple(p.detach().requires_grad_(True) for p in cell.parameters())

    def step(x, h, c, w_ih, w_hh, b_ih, b_hh):
        gi, gh = linear(x, w_ih, b_ih), linear(h, w_hh, b_hh)
        if cls is LSTMCell:
            return kr.lstm_cell(gi, gh, c)
        return kr.gru_cell(gi, gh, h) if cls is GRUCell else (gi + gh).tanh()

    expected = step(x, h, c, *params)
    got = cell(x, (h, c)) if cls is LSTMCell else cell(x, h)
    for a, b in zip(got if cls is LSTMCell else [got], expected if cls is LSTMCell else [expected]):
        assert_close(a, to_np(b))
    assert gradcheck(step, (x, h, c) + params)


def test_gate_functions_gradgradcheck_cpu():
    rng = np.random.default_rng(0)
    gi, gh = (tritorch.tensor(rng.uniform(-1, 1, (2, 8)), requires_grad=True) for _ in range(2))
    c = tritorch.tensor(rng.uniform(-1, 1, (2, 2)), requires_grad=True)
    assert tritorch.autograd.gradgradcheck(lambda a, b, c: kr.lstm_cell(a, b, c), (gi, gh, c))
    gi3, gh3 = (tritorch.tensor(rng.uniform(-1, 1, (2, 6)), requires_grad=True) for _ in range(2))
    assert tritorch.autograd.gradgradcheck(kr.gru_cell, (gi3, gh3, c))


@pytest.mark.parametrize("mode", ["RNN_TANH", "LSTM", "GRU"])
def test_cells_vs_reference_unbatched(device, mode):
    cls = {"RNN_TANH": RNNCell, "LSTM": LSTMCell, "GRU": GRUCell}[mode]
    tritorch.manual_seed(1)
    cell = cls(3, 5).to(device)
    p = [to_np(cell.weight_ih), to_np(cell.weight_hh), to_np(cell.bias_ih), to_np(cell.bias_hh)]
    x_np, h_np, c_np = np.full(3, 0.5), np.linspace(-1, 1, 5), np.linspace(1, -1, 5)
    x = tritorch.tensor(x_np, dtype=tritorch.float32, device=device)
    h = tritorch.tensor(h_np, dtype=tritorch.float32, device=device)
    eh, ec = np_step(mode, x_np, h_np, c_np, *p)
    if mode == "LSTM":
        out_h, out_c = cell(x, (h, tritorch.tensor(c_np, dtype=tritorch.float32, device=device)))
        assert out_h.shape == (5,)
        assert_close(out_c, ec, rtol=1e-5, atol=1e-6)
    else:
        out_h = cell(x, h)
    assert_close(out_h, eh, rtol=1e-5, atol=1e-6)
    zero = cell(x.unsqueeze(0))
    assert (zero[0] if mode == "LSTM" else zero).shape == (1, 5)


# ---- pad_sequence ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("side", ["right", "left"])
def test_pad_sequence(device, batch_first, side):
    seqs_np = [np.arange(6.0).reshape(3, 2), np.arange(2.0).reshape(1, 2) + 10, np.zeros((0, 2))]
    seqs = [tritorch.tensor(a, dtype=tritorch.float32, device=device, requires_grad=True) for a in seqs_np]
    out = pad_sequence(seqs, batch_first=batch_first, padding_value=-1.0, padding_side=side)
    exp = np.full((3, 3, 2), -1.0)
    for b, a in enumerate(seqs_np):
        if len(a):
            if side == "right":
                exp[b, :len(a)] = a
            else:
                exp[b, 3 - len(a):] = a
    assert_close(out, exp if batch_first else exp.transpose(1, 0, 2))
    out.sum().backward()
    assert_close(seqs[0].grad, np.ones((3, 2)))
    with pytest.raises(ValueError, match="padding_side"):
        pad_sequence(seqs, padding_side="middle")


# ---- a program: an LSTM learns next-value prediction on sine waves -----------------------------------------------
def test_lstm_sine_next_value_loss_falls_10x():
    tritorch.manual_seed(0)
    rng = np.random.default_rng(0)
    T, B = 12, 16
    phase = rng.uniform(0, 2 * np.pi, (B, 1))
    seq = np.sin(phase + 0.5 * np.arange(T + 1)[None, :]).astype(np.float32)
    x = tritorch.tensor(seq[:, :-1, None])
    y = tritorch.tensor(seq[:, 1:, None])

    class Model(tritorch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = LSTM(1, 16, batch_first=True)
            self.head = tritorch.nn.Linear(16, 1)

        def forward(self, x):
            return self.head(self.lstm(x)[0])

    model = Model()
    opt = tritorch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(150):
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])


# ---- packed sequences ------------------------------------------------------------------------------------------
def test_pack_pad_roundtrip(device):
    lengths = [2, 4, 1]
    x_np = np.arange(4 * 3 * 2, dtype=np.float64).reshape(3, 4, 2)
    x = tritorch.tensor(x_np, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="must be sorted in decreasing order"):
        pack_padded_sequence(x, lengths, batch_first=True)
    p = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    assert p.batch_sizes.tolist() == [3, 2, 1, 1]
    assert p.sorted_indices.tolist() == [1, 0, 2] and p.unsorted_indices.tolist() == [1, 0, 2]
    assert_close(p.data, np.concatenate([x_np[[1, 0, 2], 0], x_np[[1, 0], 1], x_np[[1], 2], x_np[[1], 3]]))
    padded, lens = pad_packed_sequence(p, batch_first=True, padding_value=-1.0, total_length=5)
    exp = np.full((3, 5, 2), -1.0)
    for b, n in enumerate(lengths):
        exp[b, :n] = x_np[b, :n]
    assert_close(padded, exp)
    assert lens.tolist() == lengths
    padded.sum().backward()
    mask = np.zeros((3, 4, 1))
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
    assert_close(x.grad, np.broadcast_to(mask, (3, 4, 2)))
    seqs = unpack_sequence(pack_sequence([x[0, :2], x[1], x[2, :1]], enforce_sorted=False))
    for s, b, n in zip(seqs, range(3), lengths):
        assert_close(s, x_np[b, :n])


@pytest.mark.parametrize("device, mode, layers", [("cpu", "LSTM", 2), ("cpu", "GRU", 2), ("cuda", "LSTM", 1)])
def test_packed_bidirectional_matches_per_sequence(device, mode, layers):
    tritorch.manual_seed(0)
    cls = LSTM if mode == "LSTM" else GRU
    dtype = tritorch.float64 if device == "cpu" else tritorch.float32
    m = cls(2, 3, num_layers=layers, bidirectional=True).to(device=device, dtype=dtype)
    lengths = [2, 3, 1]
    rng = np.random.default_rng(0)
    x = tritorch.tensor(rng.uniform(-1, 1, (3, 3, 2)), dtype=dtype, device=device)
    h0 = tritorch.tensor(rng.uniform(-1, 1, (2 * layers, 3, 3)), dtype=dtype, device=device)
    hx = (h0, h0 * 0.5) if mode == "LSTM" else h0
    out, state = m(pack_padded_sequence(x, lengths, enforce_sorted=False), hx)
    padded, _ = pad_packed_sequence(out)
    for b, n in enumerate(lengths):
        hb = (h0[:, b:b + 1], h0[:, b:b + 1] * 0.5) if mode == "LSTM" else h0[:, b:b + 1]
        ob, sb = m(x[:n, b:b + 1], hb)
        assert_close(padded[:n, b:b + 1], to_np(ob), rtol=1e-5, atol=1e-6)
        assert_close(padded[n:, b], np.zeros((3 - n, 6)))
        for s, e in zip(state if mode == "LSTM" else [state], sb if mode == "LSTM" else [sb]):
            assert_close(s[:, b:b + 1], to_np(e), rtol=1e-5, atol=1e-6)
    out.data.sum().backward()
    assert m.weight_ih_l0_reverse.grad is not None
