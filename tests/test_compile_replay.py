"""``tritorch.compile(mode="reduce-overhead")``: a signature's recorded kernel launches replayed without its ops, on
``cuda`` (Triton's interpreter here), forward and backward; refusals replay the graph as ``"default"``."""
import numpy as np
import pytest

import tritorch
import tritorch.nn as nn
import tritorch.nn.functional as F
from tritorch.profiler import profile
from test_compile import MODELS


def _mlp(device, seed=0):
    tritorch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 12), nn.GELU(), nn.Linear(12, 12), nn.Tanh(), nn.Linear(12, 5)).to(device)


def _data(shape, device, seed):
    return tritorch.tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32), device=device)


def _entry(c):
    (entry,) = c._entries.values()
    return entry


def _recorded(seed):
    """An MLP compiled under reduce-overhead, its third call recorded (forward and backward), and its input."""
    model = _mlp("cuda")
    c = tritorch.compile(model, mode="reduce-overhead")
    x = _data((4, 6), "cuda", seed)
    for _ in range(3):
        c(x).sum().backward()
    return model, c, x


def _train(model, run, steps, x, y):
    """Losses and gradients of ``steps`` SGD steps of ``run`` (a new input batch per step)."""
    opt = tritorch.optim.SGD(model.parameters(), lr=0.1)
    out = []
    for s in range(steps):
        opt.zero_grad()
        loss = run(x[s], y[s])
        loss.backward()
        out.append([float(loss.item())] + [p.grad.cpu().numpy() for p in model.parameters()])
        opt.step()
    return out


def test_training_replays_launches_and_matches_default():
    xs = [_data((7, 6), "cuda", s) for s in range(5)]
    ys = [tritorch.tensor(np.arange(7) % 5, device="cuda") for _ in range(5)]
    runs = {}
    for mode in ("default", "reduce-overhead"):
        model = _mlp("cuda")
        c = tritorch.compile(lambda x, y: F.cross_entropy(model(x), y), mode=mode)
        runs[mode] = _train(model, c, 5, xs, ys)
    entry = _entry(c)
    assert entry.reason is None and entry.fwd.launches and entry.bwd.launches
    for got, want in zip(runs["reduce-overhead"], runs["default"]):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


def test_replay_dispatches_no_op():
    model, c, x = _recorded(1)
    entry = _entry(c)
    with profile() as prof:
        y = c(x)
    ops = [e for e in prof.events() if e.kind == "op"]
    assert ops == [] and prof.kernel_launches() == len(entry.fwd.launches) > 0
    with profile() as prof:
        y.sum().backward()
    assert prof.kernel_launches() >= len(entry.bwd.launches) > 0


def test_inference_signature_records_forward_only():
    model = _mlp("cuda").eval()
    c = tritorch.compile(model, mode="reduce-overhead")
    with tritorch.no_grad():
        outs = [c(_data((3, 6), "cuda", s)) for s in range(4)]
        want = [model(_data((3, 6), "cuda", s)) for s in range(4)]
    entry = _entry(c)
    assert entry.fwd is not None and entry.bwd is None and entry.reason is None
    for a, b in zip(outs, want):                # earlier outputs are not overwritten by later calls
        np.testing.assert_allclose(a.cpu().numpy(), b.cpu().numpy(), rtol=1e-5, atol=1e-6)


def test_gradient_accumulation_over_calls_awaiting_backward():
    model = _mlp("cuda")
    ref = _mlp("cuda")
    c = tritorch.compile(model, mode="reduce-overhead")
    for step in range(4):
        xa, xb = _data((5, 6), "cuda", 2 * step), _data((5, 6), "cuda", 2 * step + 1)
        for m, f in ((model, c), (ref, ref)):
            m.zero_grad()
            ya, yb = f(xa), f(xb)               # both forwards before either backward
            ((ya * ya).sum() + (yb * 2).sum()).backward()
        for p, q in zip(model.parameters(), ref.parameters()):
            np.testing.assert_allclose(p.grad.cpu().numpy(), q.grad.cpu().numpy(), rtol=1e-5, atol=1e-6)
    assert _entry(c).bwd is not None


def test_input_gradient_and_unused_parameter():
    lin, unused = nn.Linear(4, 3).to("cuda"), nn.Linear(4, 3).to("cuda")

    def f(x):
        return tritorch.relu(lin(x)) * 2
    c = tritorch.compile(f, mode="reduce-overhead")
    for s in range(4):
        x = _data((2, 4), "cuda", s).requires_grad_()
        lin.zero_grad()
        c(x).pow(2).sum().backward()
        gx, gw = x.grad.cpu().numpy(), lin.weight.grad.cpu().numpy()
        x.grad = None
        lin.zero_grad()
        f(x).pow(2).sum().backward()
        np.testing.assert_allclose(gx, x.grad.cpu().numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(gw, lin.weight.grad.cpu().numpy(), rtol=1e-5, atol=1e-6)
    assert unused.weight.grad is None and _entry(c).bwd is not None


def test_host_check_is_replayed():
    model = _mlp("cuda")
    c = tritorch.compile(lambda x, y: F.cross_entropy(model(x), y), mode="reduce-overhead")
    x = _data((3, 6), "cuda", 0)
    for _ in range(3):
        c(x, tritorch.tensor([0, 1, 4], device="cuda")).backward()
    assert _entry(c).fwd.checks
    with pytest.raises(IndexError, match="Target 5 is out of bounds"):
        c(x, tritorch.tensor([0, 5, 1], device="cuda"))


def test_random_ops_draw_anew_per_replay():
    """Each replay draws from the generator as the graph's replay does, and so does the recording call (the third:
    its launches get its draws in place of the markers it records, forward and backward): the same dropout masks
    and gradients, call by call, as mode="default"."""
    res = {}
    x = _data((4, 6), "cuda", 0)
    for mode in ("default", "reduce-overhead"):
        tritorch.manual_seed(3)
        model = nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.5), nn.Linear(8, 3)).to("cuda")
        c = tritorch.compile(model, mode=mode)
        res[mode] = []
        for _ in range(6):
            model.zero_grad()
            y = c(x)
            y.pow(2).sum().backward()
            res[mode].append([y.detach().cpu().numpy()] + [p.grad.cpu().numpy() for p in model.parameters()])
    entry = _entry(c)
    assert entry.reason is None and entry.fwd.draws and entry.bwd is not None
    for step in range(6):
        for a, b in zip(res["reduce-overhead"][step], res["default"][step]):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    outs = [r[0] for r in res["reduce-overhead"][3:]]
    assert (outs[0] != outs[1]).any() and (outs[1] != outs[2]).any()       # new numbers per call


def test_other_strides_take_the_graph():
    model, c, x = _recorded(0)
    xt = _data((6, 4), "cuda", 1).t()           # the same shape, other strides: not what was recorded
    with profile() as prof:
        y = c(xt)
    assert [e for e in prof.events() if e.kind == "op"]
    np.testing.assert_allclose(y.detach().cpu().numpy(), model(xt).detach().cpu().numpy(), rtol=1e-5, atol=1e-6)


def test_backward_dropped_before_recording_records_again():
    model = _mlp("cuda")
    c = tritorch.compile(model, mode="reduce-overhead")
    x = _data((4, 6), "cuda", 0)
    c(x)
    c(x)                                        # recorded forward; its backward never comes
    assert _entry(c).bwd is None
    for _ in range(2):
        model.zero_grad()
        c(x).sum().backward()
    g = [p.grad.cpu().numpy() for p in model.parameters()]
    model.zero_grad()
    model(x).sum().backward()
    assert _entry(c).bwd is not None
    for a, p in zip(g, model.parameters()):
        np.testing.assert_allclose(a, p.grad.cpu().numpy(), rtol=1e-5, atol=1e-6)


def test_parameter_changed_before_backward_raises():
    model, c, x = _recorded(0)
    y = c(x)
    with tritorch.no_grad():
        model[0].weight.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_cpu_runs_as_default():
    model = _mlp("cpu")
    c = tritorch.compile(model, mode="reduce-overhead")
    x = _data((4, 6), "cpu", 0)
    for _ in range(3):
        y = c(x)
    np.testing.assert_allclose(y.detach().numpy(), model(x).detach().numpy(), rtol=1e-6)
    assert not hasattr(_entry(c), "fwd")


def test_embedding_model_replays_and_checks_indices():
    """Token embedding + linear head + cross-entropy: the index and target range checks are kernels whose results
    the replay checks again, so the signature replays from launches and a bad token still raises."""
    tritorch.manual_seed(0)
    emb, head = nn.Embedding(11, 8).to("cuda"), nn.Linear(8, 11).to("cuda")

    def f(tok, y):
        return F.cross_entropy(head(emb(tok)).reshape(-1, 11), y.reshape(-1))
    c = tritorch.compile(f, mode="reduce-overhead")
    tok = tritorch.tensor(np.arange(12).reshape(3, 4) % 11, device="cuda")
    for _ in range(4):
        emb.zero_grad()
        loss = c(tok, (tok + 1) % 11)
        loss.backward()
    got = [float(loss.item()), emb.weight.grad.cpu().numpy()]
    emb.zero_grad()
    loss = f(tok, (tok + 1) % 11)
    loss.backward()
    assert _entry(c).reason is None and _entry(c).bwd is not None
    np.testing.assert_allclose(got[0], float(loss.item()), rtol=1e-6)
    np.testing.assert_allclose(got[1], emb.weight.grad.cpu().numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(IndexError, match="index out of range in self"):
        c(tok + 5, tok)


def test_retained_backward_twice_and_no_double_backward():
    model = _mlp("cuda")
    c = tritorch.compile(model, mode="reduce-overhead")
    x = _data((4, 6), "cuda", 0)
    for step in range(4):                       # the third call records, the fourth replays
        model.zero_grad()
        loss = c(x).pow(2).sum()
        loss.backward(retain_graph=True)
        once = [p.grad.clone() for p in model.parameters()]
        loss.backward()
        for a, p in zip(once, model.parameters()):
            np.testing.assert_allclose(2 * a.cpu().numpy(), p.grad.cpu().numpy(), rtol=1e-5, atol=1e-6)
    (g,) = tritorch.autograd.grad(c(x).pow(2).sum(), [model[0].weight], create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|not differentiable|twice"):
        g.sum().backward()


def test_host_constants_are_read_in_place_unless_written():
    """A Python number made a tensor (``where``'s two scalars in maximum's backward) is a constant the replays read
    where it is; a tensor made from host data and then written by a kernel is refused (each call must start from
    the host data)."""
    c = tritorch.compile(lambda a, b: tritorch.maximum(a, b), mode="reduce-overhead")
    for i in range(5):
        a = _data((3,), "cuda", i).requires_grad_()
        b = a.detach().clone() if i == 4 else _data((3,), "cuda", 10 + i)       # ties on the last call
        c(a, b).backward(tritorch.tensor([1.0, 2.0, 3.0], device="cuda"))
        want = np.where(a.detach().cpu().numpy() > b.cpu().numpy(), 1.0, 0.0)
        want = np.where(a.detach().cpu().numpy() == b.cpu().numpy(), 0.5, want)
        np.testing.assert_allclose(a.grad.cpu().numpy(), want * [1.0, 2.0, 3.0])
    assert _entry(c).bwd.constants and _entry(c).reason is None

    x = tritorch.ones(2, device="cuda")

    def f(x):
        t = tritorch.tensor([1.0, 2.0], device="cuda")
        t.add_(x.sum())
        return t * x
    c = tritorch.compile(f, mode="reduce-overhead")
    assert [c(x).tolist() for _ in range(5)] == [[3.0, 4.0]] * 5
    assert "a kernel wrote into host data" in c.explain()


def test_conv_batchnorm_model_replays():
    """Conv, batch norm (its running statistics updated in place by the replayed kernels), pooling: training steps
    and then an eval call agree with the graph's replay."""
    x = [_data((2, 1, 6, 6), "cuda", s) for s in range(5)]
    res = {}
    for mode in ("default", "reduce-overhead"):
        tritorch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Flatten(), nn.Linear(27, 4)).to("cuda")
        c = tritorch.compile(model, mode=mode)
        opt = tritorch.optim.SGD(model.parameters(), lr=0.1)
        out = []
        for s in range(5):
            opt.zero_grad()
            c(x[s]).pow(2).mean().backward()
            opt.step()
            out.append([p.detach().cpu().numpy().copy() for p in model.parameters()] +
                       [model[1].running_mean.cpu().numpy(), model[1].running_var.cpu().numpy()])
        res[mode] = out
        if mode != "default":
            assert _entry(c).reason is None and _entry(c).bwd is not None
    for got, want in zip(res["reduce-overhead"], res["default"]):
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(MODELS))
def test_models_replay_as_eager(name):
    """The compile tests' models (MLP, CNN, autoencoder, GAN generator, LSTM, GPT block), five calls with new data:
    outputs and gradients as eager's, the later calls replayed from launches."""
    make, data = MODELS[name]
    tritorch.manual_seed(0)
    m = make().to("cuda")
    c = tritorch.compile(m, mode="reduce-overhead")
    kw = {"src_mask": nn.Transformer.generate_square_subsequent_mask(5).to("cuda"), "is_causal": True} \
        if name == "gpt_block" else {}
    for _ in range(5):
        x = data("cuda", 2)
        res = []
        for fn in (m, c):
            m.zero_grad()
            y = fn(x, **kw)
            (y.float() ** 2).mean().backward()
            res.append([y.detach().cpu().numpy()] + [p.grad.cpu().numpy().copy() for p in m.parameters()])
        for a, b in zip(*res):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert _entry(c).reason is None and _entry(c).bwd is not None


def test_gather_and_advanced_indexing_replay_and_check_bounds():
    """gather and x[idx] check their indices with a kernel's flags read by ``host_check``: the signature replays
    from launches, and an index out of range still raises on a replayed call."""
    lin = nn.Linear(6, 5).to("cuda")

    def f(x, y, rows):
        logp = F.log_softmax(lin(x), -1)
        return -logp.gather(1, y[:, None]).mean() + logp[rows].sum()
    c = tritorch.compile(f, mode="reduce-overhead")
    x = _data((4, 6), "cuda", 0)
    y, rows = tritorch.tensor([0, 4, 2, 1], device="cuda"), tritorch.tensor([3, 0], device="cuda")
    for _ in range(4):
        lin.zero_grad()
        loss = c(x, y, rows)
        loss.backward()
    got = [float(loss.item()), lin.weight.grad.cpu().numpy()]
    lin.zero_grad()
    loss = f(x, y, rows)
    loss.backward()
    assert _entry(c).reason is None and _entry(c).bwd is not None
    np.testing.assert_allclose(got[0], float(loss.item()), rtol=1e-6)
    np.testing.assert_allclose(got[1], lin.weight.grad.cpu().numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(IndexError, match="index 5 is out of bounds for dimension 1 with size 5"):
        c(x, tritorch.tensor([0, 5, 2, 1], device="cuda"), rows)
    with pytest.raises(IndexError, match="index 4 is out of bounds for dimension 0 with size 4"):
        c(x, y, tritorch.tensor([4, 0], device="cuda"))
