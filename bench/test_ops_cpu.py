"""Op-level benchmarks on the ``cpu`` device (the NumPy references), with pytest-benchmark.

    python -m pytest bench/ --benchmark-only            # time them
    python -m pytest bench/ --benchmark-disable -q      # run each once (a smoke test)

The host cost of a small op is the number that matters here: a 1,000-element add through tritorch against NumPy's
own add (target: at most 10 us more). ``TRITORCH_BENCH_STRICT=1`` makes that target a failing check.
"""
import os
import timeit

import numpy as np
import pytest

import tritorch
from bench.cases import CASES, HOST_COST, Missing, make_input

HOST_TARGET_US = 10.0


@pytest.mark.parametrize("case", CASES, ids=[c.name.split(" ")[0] + "-" + c.dtype for c in CASES])
def test_op_cpu(benchmark, case):
    try:
        fn = case.build(tritorch, "cpu", case.cpu, case.dtype)
    except Missing as e:
        pytest.skip(str(e))
    benchmark.group = case.family
    benchmark.extra_info.update(shape=list(case.cpu), dtype=case.dtype)
    out = benchmark(fn)
    assert tuple(out.shape) == tuple(fn().shape)


def _host_inputs():
    a = make_input(tritorch, HOST_COST.cpu, "float32", "cpu", 1)
    b = make_input(tritorch, HOST_COST.cpu, "float32", "cpu", 2)
    return a, b


def test_host_cost_add_1000_tritorch(benchmark):
    a, b = _host_inputs()
    benchmark.group = "host cost: 1,000-element add"
    out = benchmark(tritorch.add, a, b)
    np.testing.assert_array_equal(out.numpy(), a.numpy() + b.numpy())


def test_host_cost_add_1000_numpy(benchmark):
    a, b = (t.numpy() for t in _host_inputs())
    benchmark.group = "host cost: 1,000-element add"
    benchmark(np.add, a, b)


def host_cost_us(n=2000, repeat=5):
    """(tritorch, numpy) microseconds per 1,000-element add on cpu: the best of ``repeat`` loops of ``n`` calls."""
    a, b = _host_inputs()
    an, bn = a.numpy(), b.numpy()
    for _ in range(100):
        tritorch.add(a, b)
    t = min(timeit.repeat(lambda: tritorch.add(a, b), number=n, repeat=repeat)) / n * 1e6
    ref = min(timeit.repeat(lambda: np.add(an, bn), number=n, repeat=repeat)) / n * 1e6
    return t, ref


def test_host_cost_target():
    t, ref = host_cost_us(n=500, repeat=3)
    msg = f"1,000-element add on cpu: tritorch {t:.1f} us, NumPy {ref:.1f} us (target: at most +{HOST_TARGET_US} us)"
    if os.environ.get("TRITORCH_BENCH_STRICT", "0") not in ("", "0"):
        assert t - ref <= HOST_TARGET_US, msg
    elif t - ref > HOST_TARGET_US:
        pytest.skip(msg + "; TRITORCH_BENCH_STRICT=1 enforces it")
