"""Every candidate configuration of every tunable kernel, forced once through the kernel (Triton's interpreter on
CI, the GPU with TRITORCH_TEST_GPU=1) and compared with the float64 NumPy reference.

A kernel is forced with ``tritorch.autotune.force(name, config)`` through the public op. Each tunable kernel needs
an entry in ``EXAMPLES`` (small inputs: partial tiles, odd sizes, a non-contiguous operand); a kernel that declares
a Tunable without one fails ``test_every_tunable_kernel_has_an_example``.
"""
import math

import numpy as np
import pytest

import tritorch
from tritorch import autotune as at
from tritorch.kernels import matmul as MM
from helpers import assert_close, make

F = tritorch.float32


def _forced(name, cfg, fn):
    """``fn()`` with kernel ``name`` forced to ``cfg``, checking the kernel really ran with it."""
    with at.force(name, cfg):
        out = fn()
    assert [c for (k, _), c in at.seen().items() if k == name][-1] == cfg
    return out


def _matmul_example(cfg):
    """(20, 37) @ (37, 24) with a transposed right operand and a bias: partial tiles in M, N and K."""
    a, ra = make((20, 37), F, "cuda", seed=1)
    b, rb = make((37, 24), F, "cuda", "transposed", seed=2)
    bias, rbias = make((24,), F, "cuda", seed=3)
    return _forced("matmul", cfg, lambda: tritorch.addmm(bias, a, b)), ra @ rb + rbias, 37


def _linear_example(cfg):
    """gelu(x @ W.T + b) for x (21, 19), W (23, 19): the fused epilogue over partial tiles."""
    from tritorch.kernels.linear import linear
    x, rx = make((21, 19), F, "cuda", seed=4)
    w, rw = make((23, 19), F, "cuda", seed=5)
    bias, rb = make((23,), F, "cuda", seed=6)
    z = rx @ rw.T + rb
    expected = 0.5 * z * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))
    return _forced("linear", cfg, lambda: linear(x, w, bias, activation="gelu")), expected, 19


# kernel name -> fn(config) -> (tritorch result, float64 NumPy reference, reduction length for the tolerance)
EXAMPLES = {"matmul": _matmul_example, "linear": _linear_example}


def _kernels():
    """{name: candidates} of every tunable kernel of tritorch."""
    return {n: t.configs for n, t in at.REGISTRY.items() if not n.startswith("test.")}


CASES = [(name, i, cfg) for name, cfgs in sorted(_kernels().items()) for i, cfg in enumerate(cfgs)]


def test_every_tunable_kernel_has_an_example():
    missing = sorted(set(_kernels()) - set(EXAMPLES))
    assert not missing, f"add an example to tests/test_autotune_configs.py EXAMPLES for: {missing}"


@pytest.mark.parametrize("name, i, cfg", CASES, ids=[f"{n}-{i}" for n, i, _ in CASES])
def test_every_candidate_matches_numpy(name, i, cfg):
    if name not in EXAMPLES:
        pytest.fail(f"no example for tunable kernel {name!r}")
    out, expected, k = EXAMPLES[name](cfg)
    tol = 1e-6 * max(k, 1) + 1e-6 if not (tritorch.cuda.is_available() and not tritorch.cuda.is_interpreted()) \
        else 1e-4 * max(k, 1)
    assert_close(out, np.asarray(expected), F, rtol=tol, atol=tol)


def test_two_candidates_agree():
    """A forced config and the default give the same result (only speed may differ)."""
    first, expected, _ = _matmul_example(MM.CANDIDATES[0])
    last, _, _ = _matmul_example(MM.CANDIDATES[-1])
    assert_close(first, expected, F, rtol=1e-4, atol=1e-4)
    assert_close(last, first.cpu().numpy(), F, rtol=1e-4, atol=1e-4)
