"""A seeded, bounded fuzzer for ``tritorch.compile``'s model passes: random models over a pool of (B, T, width)
values built from linears (bias or not), the epilogue activations, training-mode dropout, residual adds, gated
products, layer norms, RMS norms written in ops, attention written in ops (scaled scores, an optional causal
``masked_fill``, softmax, an optional dropout on the weights) and values read twice or returned besides the result:
exactly the places where a pass must check that an intermediate has no other reader. The compiled model's outputs
and every gradient (input and parameters) must equal eager's with the same random seed, on the replay after the
capture and under ``mode="reduce-overhead"``; the models are those of tests/model_programs.py.
``TRITORCH_FUZZ_SEEDS=200`` widens it (16 seeds by default)."""
import os

import numpy as np
import pytest

import tritorch
import tritorch.nn as nn
import tritorch.nn.functional as F
from tests import model_programs as mp
from tests.model_programs import B, T

SEEDS = int(os.environ.get("TRITORCH_FUZZ_SEEDS", 16))


def _results(run, model, x, seed):
    """The outputs, the gradients of their summed squares with respect to x and every parameter, and the numbers
    drawn after them (a compiled call must leave the generator where eager leaves it)."""
    x.grad = None
    model.zero_grad()
    tritorch.manual_seed(seed)
    outs = run(x)
    sum((o * o).sum() for o in outs).backward()
    return [o.detach().cpu().numpy() for o in outs] + [x.grad.cpu().numpy()] + \
        [p.grad.cpu().numpy() if p.grad is not None else None for p in model.parameters()] + \
        [tritorch.rand(3, device=x.device).cpu().numpy()]


def _agree(got, want, what, tol=1e-4):
    """Equal dtypes and shapes, values to ``tol`` (float32 sums reordered by fusion; float16 under autocast, where
    a fused kernel keeps float32 between ops that eager rounds to float16)."""
    assert len(got) == len(want)
    # absolute errors scale with the largest value of the step: a parameter's gradient that sums to nearly 0 from
    # terms of that size carries their rounding (one seed of 200: a bias gradient of 0.006 from terms of 50)
    scale = max([1.0] + [float(np.nanmax(np.abs(b.astype(np.float64)), initial=0.0)) for b in want if b is not None])
    for k, (a, b) in enumerate(zip(got, want)):
        assert (a is None) == (b is None), (what, k)
        if a is not None:
            assert a.dtype == b.dtype, (what, k, a.dtype, b.dtype)
            np.testing.assert_allclose(a.astype(np.float64), b.astype(np.float64), rtol=tol, atol=tol / 5 * scale,
                                       equal_nan=True, err_msg=f"{what}: result {k}")


def _case(seed, device="cuda", dtype=tritorch.float32):
    rng = np.random.default_rng(5000 + seed)
    program = mp.program(rng)
    tritorch.manual_seed(seed)
    model = mp.Net(program).to(device, dtype)
    x = tritorch.tensor(rng.standard_normal((B, T, program[1][0])), dtype=dtype, device=device, requires_grad=True)
    return program, model, x


CASES = [(seed, "cuda", tritorch.float32) for seed in range(SEEDS)] + \
    [(seed, "cpu", tritorch.float32) for seed in range(SEEDS // 2)] + \
    [(seed, "cuda", tritorch.float64) for seed in range(SEEDS // 4)]


@pytest.mark.parametrize("seed", range(SEEDS // 4))
def test_fuzz_compiled_model_under_autocast_matches_eager(seed):
    """Under float16 autocast (a signature of its own, without the attention pass): the dtypes eager gives, the
    values to float16's tolerance."""
    program, model, x = _case(seed + 3000)
    c = tritorch.compile(model)

    def results(run):
        with tritorch.autocast("cuda", dtype=tritorch.float16):
            return _results(run, model, x, seed)
    want = results(model)
    for call in range(2):
        _agree(results(c), want, f"program {program}, call {call}", tol=3e-2)


@pytest.mark.parametrize("seed,device,dtype", CASES)
def test_fuzz_compiled_model_matches_eager(seed, device, dtype):
    """On cuda (generated kernels, every pass) in float32 and float64, and on cpu (the NumPy references, the passes
    that do not generate kernels)."""
    program, model, x = _case(seed, device, dtype)
    c = tritorch.compile(model)
    want = _results(model, model, x, seed)
    for call in range(2):                               # the capture, then the replay of the optimised graph
        _agree(_results(c, model, x, seed), want, f"program {program}, call {call}")
    model.eval()                                        # a failed guard (training mode) re-captures
    _agree(_results(c, model, x, seed), _results(model, model, x, seed), f"program {program}, eval")


@pytest.mark.parametrize("seed", range(SEEDS // 2))
def test_fuzz_reduce_overhead_model_matches_eager(seed):
    program, model, x = _case(seed + 1000)
    c = tritorch.compile(model, mode="reduce-overhead")
    rng = np.random.default_rng(seed)
    for call in range(4):                               # capture, warm-up, record, replay
        with tritorch.no_grad():
            x.copy_(tritorch.tensor(rng.standard_normal(x.shape).astype(np.float32), device="cuda"))
        _agree(_results(c, model, x, seed + call), _results(model, model, x, seed + call),
               f"program {program}, call {call}")
    for call in range(4):                               # without gradients: a signature recording its forward only
        tritorch.manual_seed(call)
        with tritorch.no_grad():
            got = [o.cpu().numpy() for o in c(x)] + [tritorch.rand(3, device="cuda").cpu().numpy()]
            tritorch.manual_seed(call)
            want = [o.cpu().numpy() for o in model(x)] + [tritorch.rand(3, device="cuda").cpu().numpy()]
        _agree(got, want, f"program {program}, no_grad call {call}")


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
@pytest.mark.parametrize("seed", range(SEEDS // 2))
def test_fuzz_compiled_image_model_matches_eager(seed, mode):
    """Convolutions (1x1 and 3x3, strided or not, with and without bias), their activations, max pooling that
    does and does not overlap, average pooling, batch norm, residual adds and both dropouts: two copies of the
    model, one eager and one compiled, in training (outputs, gradients, the batch norms' running statistics after
    each call) and then in eval mode without gradients."""
    rng = np.random.default_rng(7000 + seed)
    program = mp.image_program(rng)
    models = []
    for _ in range(2):
        tritorch.manual_seed(seed)
        models.append(mp.ImageNet(program).to("cuda"))
    eager, model = models
    x = tritorch.tensor(rng.standard_normal((B, program[1][0][0], 8, 8)).astype(np.float32), device="cuda",
                        requires_grad=True)
    c = tritorch.compile(model, mode=mode)
    buffers = lambda m: [b.cpu().numpy() for b in m.buffers()]          # noqa: E731
    for call in range(4 if mode == "reduce-overhead" else 2):
        want = _results(eager, eager, x, seed + call)
        _agree(_results(c, model, x, seed + call), want, f"program {program}, call {call}")
        _agree(buffers(model), buffers(eager), f"program {program}, call {call}: buffers")
    for m in models:
        m.eval()
    with tritorch.no_grad():
        for call in range(4 if mode == "reduce-overhead" else 2):
            _agree([c(x)[0].cpu().numpy()], [eager(x)[0].cpu().numpy()], f"program {program}, eval call {call}")


@pytest.mark.parametrize("seed", range(SEEDS // 4))
def test_fuzz_compiled_recurrent_model_matches_eager(seed):
    """A recurrent layer (LSTM, GRU or RNN; 1-2 layers, dropout between them, one or two directions) under a linear
    and an activation, captured as one node: as eager, including the generator's state after the call."""
    rng = np.random.default_rng(9000 + seed)
    kind = [nn.LSTM, nn.GRU, nn.RNN][int(rng.integers(3))]
    layers, bidirectional, batch_first = int(rng.integers(1, 3)), bool(rng.integers(2)), bool(rng.integers(2))
    tritorch.manual_seed(seed)

    class _Recurrent(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = kind(6, 5, num_layers=layers, dropout=0.3 if layers > 1 else 0.0, bidirectional=bidirectional,
                            batch_first=batch_first)
            self.head = nn.Linear(10 if bidirectional else 5, 3)

        def forward(self, x):
            return (F.gelu(self.head(F.dropout(self.rnn(x)[0], 0.2, self.training))),)

    model = _Recurrent().to("cuda")
    x = tritorch.tensor(rng.standard_normal((B, T, 6) if batch_first else (T, B, 6)).astype(np.float32),
                        device="cuda", requires_grad=True)
    c = tritorch.compile(model)
    for call in range(2):
        want = _results(model, model, x, seed + call)
        _agree(_results(c, model, x, seed + call), want, f"{kind.__name__} {layers} {bidirectional}, call {call}")
