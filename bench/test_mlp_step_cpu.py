"""One MLP training step (forward, cross-entropy, backward, SGD step) on the CPU: tritorch against PyTorch on the
same machine, same model and batch (issue target: tritorch at least half as fast as PyTorch).

    python -m pytest bench/test_mlp_step_cpu.py --benchmark-only -p no:xdist
    python -m bench.test_mlp_step_cpu          # a short table without pytest
"""
import time

import numpy as np
import pytest

SHAPES = {"small": (64, (64, 128, 10)), "mnist": (256, (784, 512, 512, 10))}


def _data(batch, sizes, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((batch, sizes[0])).astype(np.float32),
            rng.integers(0, sizes[-1], batch).astype(np.int64))


def _step_fn(lib, batch, sizes):
    """A closure running one training step with ``lib`` (tritorch or torch) on the cpu."""
    x_np, y_np = _data(batch, sizes)
    lib.manual_seed(0)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(lib.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(lib.nn.ReLU())
    model = lib.nn.Sequential(*layers)
    opt = lib.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = lib.nn.CrossEntropyLoss()
    x, y = lib.from_numpy(x_np), lib.from_numpy(y_np)

    def step():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


def _libs():
    import tritorch
    libs = {"tritorch": tritorch}
    try:
        import torch
        libs["torch"] = torch
    except ImportError:
        pass
    return libs


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("lib", ["tritorch", "torch"])
def test_mlp_step(benchmark, lib, shape):
    libs = _libs()
    if lib not in libs:
        pytest.skip("torch is not installed")
    step = _step_fn(libs[lib], *SHAPES[shape])
    for _ in range(3):
        step()
    benchmark(step)


def _best(step, repeats=7, number=20):
    for _ in range(3):
        step()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(number):
            step()
        best = min(best, (time.perf_counter() - t) / number)
    return best


if __name__ == "__main__":
    libs = _libs()
    print(f"{'shape':8} {'tritorch ms':>12} {'torch ms':>10} {'tritorch/torch speed':>22}")
    for name, (batch, sizes) in SHAPES.items():
        t = {k: _best(_step_fn(lib, batch, sizes)) for k, lib in libs.items()}
        ratio = f"{t['torch'] / t['tritorch']:.2f}x" if "torch" in t else "-"
        torch_ms = f"{t['torch'] * 1e3:.3f}" if "torch" in t else "-"
        print(f"{name:8} {t['tritorch'] * 1e3:12.3f} {torch_ms:>10} {ratio:>22}")
