"""A seeded, bounded fuzzer for ``tritorch.compile``'s pointwise and reduction fusion: random expression DAGs over
inputs of broadcasting shapes (views among them), elementwise ops of the fusible set, Python scalars, shared
subexpressions, sums/means over trailing or leading dims and last-dim softmaxes; the compiled forward and gradients
must equal eager's, and so must their launch replays under ``mode="reduce-overhead"``.
``TRITORCH_FUZZ_SEEDS=400`` widens it (24 seeds by default; 400 passed when it was written)."""
import os

import numpy as np
import pytest

import tritorch
import tritorch.nn.functional as F

UNARY = [tritorch.exp, tritorch.tanh, tritorch.sigmoid, tritorch.relu, tritorch.neg, tritorch.abs, tritorch.sin,
         lambda a: a ** 2, lambda a: tritorch.log1p(a.abs()), lambda a: tritorch.sqrt(a.abs() + 0.5),
         F.silu, F.gelu, lambda a: F.gelu(a, approximate="tanh"), lambda a: F.leaky_relu(a, 0.1),
         lambda a: F.elu(a, alpha=0.7), lambda a: (a.abs() + 0.5) ** 1.5, lambda a: a ** 3]
BINARY = [lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b, lambda a, b: a / (b.abs() + 1.0),
          tritorch.maximum, tritorch.minimum, lambda a, b: tritorch.where(a > b, a, b * 0.5),
          lambda a, b: (a + b * 0.0).masked_fill(b > 0.5, -1.5)]
SEEDS = int(os.environ.get("TRITORCH_FUZZ_SEEDS", 24))
SHAPES = [(3, 5, 6), (5, 6), (6,), (3, 1, 6), (1, 5, 1), (3, 5, 1), ()]


def _input(rng, shape, device):
    """A tensor of ``shape``; sometimes a transposed or sliced view of a bigger one."""
    kind = rng.integers(3) if len(shape) >= 2 else 0
    if kind == 1:                                       # transposed last two dims
        base = rng.standard_normal(shape[:-2] + (shape[-1], shape[-2]))
        return tritorch.tensor(base.astype(np.float32), device=device).transpose(-1, -2)
    if kind == 2:                                       # every other row of a taller one
        base = rng.standard_normal(shape[:-2] + (2 * shape[-2], shape[-1]))
        return tritorch.tensor(base.astype(np.float32), device=device)[..., ::2, :]
    return tritorch.tensor(rng.standard_normal(shape).astype(np.float32), device=device)


def _program(rng):
    """A random program: a list of steps over a value pool (indices), ending in a few outputs."""
    n_in = int(rng.integers(1, 4))
    steps = []
    pool = n_in
    for _ in range(int(rng.integers(2, 9))):
        if rng.random() < 0.4:
            steps.append(("u", int(rng.integers(len(UNARY))), int(rng.integers(pool))))
        elif rng.random() < 0.8:
            steps.append(("b", int(rng.integers(len(BINARY))), int(rng.integers(pool)), int(rng.integers(pool))))
        else:
            steps.append(("s", float(np.round(rng.uniform(-2, 2), 2)), int(rng.integers(pool))))
        pool += 1
    tail = rng.integers(8)      # 0: as is, 1: sum(-1), 2: mean(-1, keepdim), 3: sum(), 4: sum(0), 5: mean((0, 1)),
    #                             6: softmax(-1), 7: log_softmax(-1)
    shared = int(rng.integers(n_in, pool))              # a second output: an intermediate read twice
    return n_in, steps, int(tail), shared


def _run(program, inputs):
    n_in, steps, tail, shared = program
    vals = list(inputs)
    for step in steps:
        if step[0] == "u":
            vals.append(UNARY[step[1]](vals[step[2]]))
        elif step[0] == "b":
            vals.append(BINARY[step[1]](vals[step[2]], vals[step[3]]))
        else:
            vals.append(vals[step[2]] * step[1] + 1.0)
    out = vals[-1]
    if out.ndim and tail == 1:
        out = out.sum(-1)
    elif out.ndim and tail == 2:
        out = out.mean(-1, keepdim=True)
    elif tail == 3:
        out = out.sum()
    elif out.ndim and tail == 4:
        out = out.sum(0)
    elif out.ndim >= 2 and tail == 5:
        out = out.mean((0, 1), keepdim=True)
    elif out.ndim and tail == 6:
        out = F.softmax(out, dim=-1)
    elif out.ndim and tail == 7:
        out = F.log_softmax(out, -1)
    return out, vals[shared] * 1.5


@pytest.mark.parametrize("seed", range(SEEDS))
def test_fuzz_compiled_matches_eager(seed):
    rng = np.random.default_rng(1000 + seed)
    program = _program(rng)
    shapes = [SHAPES[int(i)] for i in rng.integers(len(SHAPES), size=program[0])]
    inputs = [_input(rng, s, "cuda").requires_grad_(bool(rng.integers(2))) for s in shapes]
    fn = lambda *xs: _run(program, xs)                 # noqa: E731
    c = tritorch.compile(fn)
    want = _results(fn, inputs)
    for _ in range(2):
        _agree(_results(c, inputs), want)


@pytest.mark.parametrize("seed", range(SEEDS // 2))
def test_fuzz_reduce_overhead_matches_eager(seed):
    """The same programs under mode="reduce-overhead", five calls with new values in the same inputs: the third
    records the launches, the fourth and fifth replay them on the inputs where they are."""
    rng = np.random.default_rng(2000 + seed)
    program = _program(rng)
    shapes = [SHAPES[int(i)] for i in rng.integers(len(SHAPES), size=program[0])]
    inputs = [_input(rng, s, "cuda").requires_grad_(bool(rng.integers(2))) for s in shapes]
    fn = lambda *xs: _run(program, xs)                 # noqa: E731
    c = tritorch.compile(fn, mode="reduce-overhead")
    for _ in range(5):
        with tritorch.no_grad():
            for x in inputs:
                x.copy_(tritorch.tensor(rng.standard_normal(x.shape).astype(np.float32), device="cuda"))
        _agree(_results(c, inputs), _results(fn, inputs))


def _results(run, inputs):
    """The outputs of ``run`` and the gradients of their summed squares."""
    for x in inputs:
        x.grad = None
    outs = run(*inputs)
    if any(o.requires_grad for o in outs):
        sum((o * o).sum() for o in outs if o.requires_grad).backward()
    return [o.detach().cpu().numpy() for o in outs] + [x.grad.cpu().numpy() if x.grad is not None else None
                                                        for x in inputs]


def _agree(got, want):
    for a, b in zip(got, want):
        assert (a is None) == (b is None)
        if a is not None:
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5, equal_nan=True)
