"""Op-level, fwd+bwd and training-step benchmarks on the ``cpu`` device (the NumPy references), with pytest-benchmark.

    python -m pytest bench/ --benchmark-only            # time them
    python -m pytest bench/ --benchmark-disable -q      # run each once (a smoke test)

The host cost of a small op is the number that matters here: a 1,000-element add through tritorch against NumPy's
own add (target: at most 10 us more), and the autograd engine's cost per graph node of a forward+backward chain of
muls (or relu, or tanh nodes) beyond the NumPy work itself (target: at most 15 us). ``TRITORCH_BENCH_STRICT=1``
makes the targets failing checks. The numbers at a glance: ``python -m bench.test_ops_cpu``.
"""
import os
import time
import timeit

import numpy as np
import pytest

import tritorch
from tritorch.benchmark import CASES, HOST_COST, Missing, _to_numpy, make_input
from tritorch.kernels.elementwise import UNARY

HOST_TARGET_US = 10.0
NODE_TARGET_US = 15.0
CHAIN = 50          # graph nodes of the autograd chain


@pytest.mark.parametrize("case", CASES, ids=[c.name.split(" ")[0] + "-" + c.dtype for c in CASES])
def test_op_cpu(benchmark, case):
    try:
        fn = case.make(tritorch, "cpu", case.cpu)
    except Missing as e:
        pytest.skip(str(e))
    benchmark.group = case.family
    benchmark.extra_info.update(shape=list(case.cpu), dtype=case.dtype)
    out = benchmark(fn)
    assert _to_numpy(out).shape == _to_numpy(fn()).shape


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


def _best_us(fn, n, repeat):
    """Microseconds per call: the best of ``repeat`` loops of ``n`` calls, in this process's CPU time (on a shared
    machine the wall clock also counts the other processes' turns)."""
    return min(timeit.repeat(fn, number=n, repeat=repeat, timer=time.process_time)) / n * 1e6


def host_cost_us(n=2000, repeat=5):
    """(tritorch, numpy) microseconds per 1,000-element add on cpu: the best of ``repeat`` loops of ``n`` calls."""
    a, b = _host_inputs()
    an, bn = a.numpy(), b.numpy()
    for _ in range(100):
        tritorch.add(a, b)
    return _best_us(lambda: tritorch.add(a, b), n, repeat), _best_us(lambda: np.add(an, bn), n, repeat)


def test_host_cost_target():
    t, ref = host_cost_us(n=500, repeat=3)
    msg = f"1,000-element add on cpu: tritorch {t:.1f} us, NumPy {ref:.1f} us (target: at most +{HOST_TARGET_US} us)"
    if os.environ.get("TRITORCH_BENCH_STRICT", "0") not in ("", "0"):
        assert t - ref <= HOST_TARGET_US, msg
    elif t - ref > HOST_TARGET_US:
        pytest.skip(msg + "; TRITORCH_BENCH_STRICT=1 enforces it")


def test_host_cost_add_operator_1000(benchmark):
    a, b = _host_inputs()
    benchmark.group = "host cost: 1,000-element add"
    benchmark(lambda: a + b)


def test_host_cost_mul_scalar_1000(benchmark):
    a, _ = _host_inputs()
    benchmark.group = "host cost: 1,000-element ops"
    benchmark(lambda: a * 0.5)


def test_host_cost_relu_1000(benchmark):
    a, _ = _host_inputs()
    benchmark.group = "host cost: 1,000-element ops"
    benchmark(tritorch.relu, a)


def _chain(op="mul"):
    """A forward+backward chain of ``CHAIN`` nodes on 1,000 float32 elements, and the same work in NumPy alone (the
    kernels' own time): ``mul`` by a constant tensor (its forward products and the backward's gradient products), or
    a unary op (its NumPy reference forward, and its backward reference on the saved input or output)."""
    x = make_input(tritorch, (1000,), "float32", "cpu", 3).requires_grad_(True)
    w = make_input(tritorch, (1000,), "float32", "cpu", 4)
    g = tritorch.ones(1000)
    xn, wn, gn = x.detach().numpy(), w.numpy(), g.numpy()
    if op == "mul":
        step = lambda y: y * w

        def run_numpy():
            y, gy = xn, gn
            for _ in range(CHAIN):
                y = y * wn
            for _ in range(CHAIN):
                gy = gy * wn
            return y, gy
    else:
        u = UNARY[op]
        step = getattr(tritorch, op)
        on_input = u.bwd_uses == "x"            # what the backward reads: the node's input, or its output

        def run_numpy():
            ys = [xn]
            for _ in range(CHAIN):
                ys.append(u.ref(ys[-1], 0.0, 0.0))
            gy = gn
            for i in range(CHAIN, 0, -1):
                gy = u.bwd_ref(gy, ys[i - 1] if on_input else ys[i], 0.0)
            return ys[-1], gy

    def run():
        y = x
        for _ in range(CHAIN):
            y = step(y)
        y.backward(g)
        gx, x.grad = x.grad, None
        return y, gx
    return run, run_numpy


def test_autograd_chain_tritorch(benchmark):
    run, _ = _chain()
    benchmark.group = f"autograd: forward+backward chain of {CHAIN} muls, 1,000 elements"
    benchmark.extra_info.update(nodes=CHAIN)
    benchmark(run)


def test_autograd_chain_numpy(benchmark):
    _, run_numpy = _chain()
    benchmark.group = f"autograd: forward+backward chain of {CHAIN} muls, 1,000 elements"
    benchmark.extra_info.update(nodes=CHAIN)
    benchmark(run_numpy)


def node_cost_us(n=50, repeat=5, op="mul"):
    """(tritorch, numpy) microseconds per graph node of the chain: the best of ``repeat`` loops of ``n`` chains,
    the two sides' loops interleaved so that a busy spell of a shared machine weighs on both alike."""
    run, run_numpy = _chain(op)
    for _ in range(5):
        run()
        run_numpy()
    t = ref = float("inf")
    for _ in range(repeat):
        t = min(t, _best_us(run, n, 1))
        ref = min(ref, _best_us(run_numpy, n, 1))
    return t / CHAIN, ref / CHAIN


@pytest.mark.parametrize("op", ["mul", "relu", "tanh"])
def test_node_cost_target(op):
    t, ref = node_cost_us(n=10, repeat=3, op=op)
    msg = (f"autograd chain of {op} nodes on cpu: tritorch {t:.1f} us per node, NumPy {ref:.1f} us (target: at "
           f"most +{NODE_TARGET_US} us)")
    if os.environ.get("TRITORCH_BENCH_STRICT", "0") not in ("", "0"):
        assert t - ref <= NODE_TARGET_US, msg
    elif t - ref > NODE_TARGET_US:
        pytest.skip(msg + "; TRITORCH_BENCH_STRICT=1 enforces it")


if __name__ == "__main__":
    t, ref = host_cost_us()
    print(f"1,000-element float32 add on cpu: tritorch {t:.2f} us, NumPy {ref:.2f} us, +{t - ref:.2f} us "
          f"(target +{HOST_TARGET_US} us)")
    for op in ("mul", "relu", "tanh"):
        t, ref = node_cost_us(repeat=10, op=op)
        print(f"autograd chain of {CHAIN} {op} nodes (forward+backward), per node: tritorch {t:.2f} us, NumPy "
              f"{ref:.2f} us, +{t - ref:.2f} us (target +{NODE_TARGET_US} us)")
