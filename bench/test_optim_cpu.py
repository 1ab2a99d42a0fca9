"""Optimizer step benchmarks on the ``cpu`` device (the NumPy references of the update rules), with pytest-benchmark.

    python -m pytest bench/test_optim_cpu.py --benchmark-only

One Adam (and AdamW with amsgrad) step over a few parameters of a small MLP's sizes: what the Python path of a step
costs (grouping, state lookup, one reference call per tensor) on top of the arithmetic.
"""
import numpy as np
import pytest

import tritorch
from tritorch import optim

SHAPES = [(128, 784), (128,), (10, 128), (10,)]


def _params():
    rng = np.random.default_rng(0)
    ps = [tritorch.tensor(rng.uniform(-1, 1, size=s), dtype=tritorch.float32, requires_grad=True) for s in SHAPES]
    for p in ps:
        p.grad = tritorch.tensor(rng.uniform(-1, 1, size=p.shape), dtype=tritorch.float32)
    return ps


@pytest.mark.parametrize("cls,kw", [(optim.Adam, {}), (optim.AdamW, dict(amsgrad=True)),
                                    (optim.SGD, dict(momentum=0.9))], ids=["adam", "adamw-amsgrad", "sgd-momentum"])
def test_optimizer_step_cpu(benchmark, cls, kw):
    ps = _params()
    opt = cls(ps, lr=1e-3, **kw)
    opt.step()
    benchmark.group = "optimizer step, 4 params (101,770 elements), cpu"
    benchmark(opt.step)
    assert all(np.isfinite(p.detach().numpy()).all() for p in ps)
