"""tritorch.jit: trace / replay equality, gradients through a traced module, TracerWarning, check_trace, script."""
import os

import numpy as np
import pytest

import tritorch
from tritorch import nn
from tritorch.train import build_model


def _np(t):
    return t.detach().cpu().numpy()


class _DictNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 4), nn.Linear(3, 4)

    def forward(self, inp):
        y = self.a(inp["x"]) + self.b(inp["y"])
        return y.relu(), (y * 2, y.sum())


class _LSTMNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(11, 4)
        self.rnn = nn.LSTM(4, 5, batch_first=True)
        self.out = nn.Linear(5, 11)

    def forward(self, tokens):
        y, (h, c) = self.rnn(self.emb(tokens))
        return self.out(y), h


def _models(device):
    tritorch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    cnn = build_model(8)
    enc = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
    return [(mlp, (tritorch.randn(3, 5),)), (cnn, (tritorch.randn(2, 1, 8, 8),)),
            (enc.eval(), (tritorch.randn(2, 3, 8),)), (_LSTMNet(), (tritorch.randint(0, 11, (2, 3)),))]


@pytest.mark.parametrize("which", [0, 1, 2, 3])
def test_trace_replay_equal(which, device):
    model, args = _models(device)[which]
    model.to(device)
    args = tuple(a.to(device) for a in args)
    traced = tritorch.jit.trace(model, args)
    assert traced.graph.nodes and "return" in str(traced.graph) and "def forward" in traced.code
    eager, replay = model(*args), traced(*args)
    for e, r in zip(*(tritorch.jit.flatten(o, lambda x: isinstance(x, tritorch.Tensor))[0] for o in (eager, replay))):
        np.testing.assert_allclose(_np(r), _np(e), rtol=1e-5, atol=1e-5)
    assert list(traced.state_dict()) == list(model.state_dict())


def test_lstm_is_one_node():
    model, args = _models("cpu")[3]
    g = tritorch.jit.trace(model, args).graph
    ops = [n.op for n in g.nodes]
    assert ops == ["embedding", "module:LSTM", "linear"], ops
    node = g.nodes[1]
    assert node.scope == "rnn" and node.module_type == "LSTM" and node.out_struct == (0, (1, 2))
    assert node.kwargs["hidden_size"] == 5 and "rnn.weight_ih_l0" in g.params


def test_gradients_through_traced_equal_eager():
    tritorch.manual_seed(1)
    model = build_model(8).double()
    x = tritorch.randn(2, 1, 8, 8, dtype=tritorch.float64)
    traced = tritorch.jit.trace(model, x)
    model(x).pow(2).sum().backward()
    eager = [p.grad.numpy().copy() for p in model.parameters()]
    model.zero_grad()
    traced(x).pow(2).sum().backward()
    for g, p in zip(eager, traced.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), g, rtol=1e-10)


def test_dict_tuple_inputs_outputs_and_strict():
    tritorch.manual_seed(2)
    net = _DictNet()
    inp = {"x": tritorch.randn(2, 3), "y": tritorch.randn(2, 3)}
    traced = tritorch.jit.trace(net, (inp,))
    r, e = traced(inp), net(inp)
    np.testing.assert_allclose(_np(r[1][1]), _np(e[1][1]), rtol=1e-6)
    with pytest.raises(RuntimeError, match="shape"):
        traced({"x": tritorch.randn(3, 3), "y": tritorch.randn(3, 3)})
    with pytest.raises(RuntimeError, match="list at the output"):
        tritorch.jit.trace(lambda x: [x + 1], tritorch.randn(2))
    out = tritorch.jit.trace(lambda x: [x + 1], tritorch.randn(2), strict=False)(tritorch.ones(2))
    assert isinstance(out, list) and _np(out[0]).tolist() == [2.0, 2.0]


def test_value_read_warns_and_is_baked():
    def f(x):
        return x * float(x.sum())
    x = tritorch.ones(3)
    with pytest.warns(tritorch.jit.TracerWarning, match="Python value"):
        traced = tritorch.jit.trace(f, x, check_trace=False)
    assert _np(traced(tritorch.full((3,), 2.0))).tolist() == [6.0, 6.0, 6.0]     # 2 * the baked 3.0


def test_factory_ops_are_nodes_and_follow_device(device):
    def f(x):
        return x + tritorch.zeros(x.shape, device=x.device) + tritorch.arange(3, dtype=tritorch.float32,
                                                                           device=x.device)
    traced = tritorch.jit.trace(f, tritorch.ones(3))
    assert [n.op for n in traced.graph.nodes][:2] == ["zeros", "__add__"]
    assert _np(traced(tritorch.ones(3, device=device))).tolist() == [1.0, 2.0, 3.0]


def test_check_trace_failure():
    calls = []

    def f(x):
        calls.append(1)
        return x.relu() if len(calls) % 2 else x.sigmoid()
    with pytest.raises(tritorch.jit.TracingCheckError, match="differed"):
        tritorch.jit.trace(f, tritorch.randn(3))


def test_inplace_ops_replay():
    def f(x):
        y = x * 1
        y[0] = 5.0
        y.add_(1)
        return y
    traced = tritorch.jit.trace(f, tritorch.zeros(3))
    assert _np(traced(tritorch.ones(3))).tolist() == [6.0, 2.0, 2.0]


def test_script_recaptures_and_rejects_value_dependent():
    tritorch.manual_seed(3)
    mlp = nn.Sequential(nn.Linear(5, 7), nn.Dropout(0.5), nn.Linear(7, 3)).eval()
    s = tritorch.jit.script(mlp)
    a, b = tritorch.randn(2, 5), tritorch.randn(4, 5)
    for x in (a, a, b, b):
        np.testing.assert_allclose(_np(s(x)), _np(mlp(x)), rtol=1e-6)
    assert len(s._cache) == 2 and list(s.state_dict()) == list(mlp.state_dict())
    s.train()
    s(a)
    assert len(s._cache) == 3

    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x
    with pytest.raises(RuntimeError, match="jit.trace"):
        tritorch.jit.script(Branchy())(tritorch.ones(2))


def test_jit_decorators_and_flags():
    seen = []

    class M(nn.Module):
        @tritorch.jit.ignore
        def helper(self):
            return 1

        @tritorch.jit.export
        def other(self):
            return 2

        def forward(self, x):
            seen.append((tritorch.jit.is_tracing(), tritorch.jit.is_scripting()))
            return x + self.helper()
    tritorch.jit.trace(M(), tritorch.ones(1), check_trace=False)
    tritorch.jit.script(M())(tritorch.ones(1))
    assert seen == [(True, False), (False, True)] and not tritorch.jit.is_tracing()
    assert tritorch.jit.unused(len) is len and tritorch.jit.Final[int] is int


_RUN_LOADED = """
import sys, numpy as np, tritorch
m = tritorch.jit.load(sys.argv[1])
assert not any(k.startswith("test_jit") for k in sys.modules)
out, h = m(tritorch.tensor(np.load(sys.argv[2])))
np.save(sys.argv[3], out.detach().numpy())
"""


def test_save_load_roundtrip_in_subprocess(tmp_path):
    import subprocess
    import sys
    model, (tokens,) = _models("cpu")[3]
    traced = tritorch.jit.trace(model, tokens)
    path = tmp_path / "lm.pt"
    traced.save(str(path))
    loaded = tritorch.jit.load(str(path))
    np.testing.assert_allclose(_np(loaded(tokens)[0]), _np(model(tokens)[0]), rtol=1e-6)
    assert list(loaded.state_dict()) == list(model.state_dict())
    np.save(tmp_path / "x.npy", tokens.numpy())
    root = os.path.dirname(os.path.dirname(os.path.abspath(tritorch.__file__)))
    subprocess.run([sys.executable, "-c", _RUN_LOADED, str(path), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
                   check=True, cwd=str(tmp_path), env={**os.environ, "PYTHONPATH": root})
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), _np(model(tokens)[0]), rtol=1e-6)


def test_saved_program_cnn_script(tmp_path):
    cnn = build_model(8)
    s = tritorch.jit.script(cnn)
    x = tritorch.randn(2, 1, 8, 8)
    s(x)
    tritorch.jit.save(s, tmp_path / "cnn.pt")
    np.testing.assert_allclose(_np(tritorch.jit.load(tmp_path / "cnn.pt")(x)), _np(cnn(x)), rtol=1e-6)


def test_tampered_and_truncated_programs(tmp_path):
    traced = tritorch.jit.trace(nn.Sequential(nn.Linear(3, 2), nn.Tanh()), tritorch.randn(1, 3))
    path = tmp_path / "p.pt"
    traced.save(path)
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[:len(data) - 5])
    with pytest.raises(tritorch.serialization.CorruptFileError, match="truncated|corrupt"):
        tritorch.jit.load(tmp_path / "cut.pt")
    bad = data.replace(b'\\"op\\":\\"tanh\\"', b'\\"op\\":\\"tanx\\"')
    assert bad != data
    (tmp_path / "bad.pt").write_bytes(bad)
    with pytest.raises(tritorch.serialization.CorruptFileError, match="checksum"):
        tritorch.jit.load(tmp_path / "bad.pt")
    flipped = bytearray(data)
    flipped[-1] ^= 0xFF
    (tmp_path / "flip.pt").write_bytes(bytes(flipped))
    with pytest.raises(tritorch.serialization.CorruptFileError, match="checksum"):
        tritorch.jit.load(tmp_path / "flip.pt")
    tritorch.save({"a": tritorch.ones(1)}, tmp_path / "ckpt.pt")
    with pytest.raises(tritorch.serialization.CorruptFileError, match="not a tritorch.jit program"):
        tritorch.jit.load(tmp_path / "ckpt.pt")


def test_replay_frees_intermediates_after_their_last_reader():
    """The memory plan: a chain of 20 ops keeps two intermediates alive at a time, not 20."""
    def f(x):
        for _ in range(20):
            x = x * 1.01
        return x
    x = tritorch.randn(64 * 1024, device="cuda")            # 256 KiB
    traced = tritorch.jit.trace(f, x, check_trace=False)
    with tritorch.no_grad():
        base = tritorch.cuda.memory_allocated()
        tritorch.cuda.reset_peak_memory_stats()
        y = traced(x)
        peak = tritorch.cuda.max_memory_allocated() - base
    assert peak <= 2 * x.nbytes, peak
    assert np.allclose(y.cpu().numpy(), f(x).cpu().numpy())
