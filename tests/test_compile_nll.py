"""``tritorch.compile``: ``nll_loss(log_softmax(x, dim=1), target)`` (PyTorch's MNIST example: the model ends in
``log_softmax``, the loss is ``nll_loss``) runs as ``cross_entropy(x, target)`` (``passes/losses.py``): the same loss
and gradients as eager's, with no log-probabilities written and fewer launches; and what does not fold."""
import numpy as np
import pytest

import tritorch
import tritorch.nn as nn
import tritorch.nn.functional as F
from tritorch.compiler import passes
from tritorch.profiler import profile
from helpers import pass_ops, to_np

CASES = {
    "mean": ((12, 7), {}),
    "weight and ignore_index": ((12, 7), {"weight": True, "ignore_index": 2}),
    "sum": ((12, 7), {"reduction": "sum"}),
    "none": ((12, 7), {"reduction": "none"}),
    "spatial": ((3, 7, 4), {"weight": True}),
}


class _Net(nn.Module):
    """A linear layer over the last dim, then log_softmax over the classes (dim 1), as the MNIST example's net."""

    def __init__(self, spatial):
        super().__init__()
        self.fc, self.spatial = nn.Linear(5, 7), spatial

    def forward(self, x):
        y = self.fc(x)
        y = y.transpose(1, 2) if self.spatial else y          # (N, L, C) -> (N, C, L)
        return F.log_softmax(y, dim=1)


@pytest.mark.parametrize("case", list(CASES))
def test_nll_of_log_softmax_runs_as_cross_entropy(device, case):
    """Losses and gradients (the layer's and the input's) equal eager's at the capture and at a replay; on cuda
    no softmax kernel and fewer launches each way."""
    shape, kw = CASES[case]
    spatial = len(shape) == 3
    tritorch.manual_seed(0)
    net = _Net(spatial).to(device)
    rng = np.random.default_rng(1)
    xs = (shape[0], shape[2], 5) if spatial else (shape[0], 5)
    x = tritorch.tensor(rng.standard_normal(xs).astype(np.float32), device=device, requires_grad=True)
    t = tritorch.tensor(rng.integers(0, 7, (shape[0], shape[2]) if spatial else (shape[0],)), device=device)
    kw = dict(kw)
    if kw.pop("weight", False):
        kw["weight"] = tritorch.tensor(rng.uniform(0.5, 2.0, 7).astype(np.float32), device=device)

    def step(x):
        return F.nll_loss(net(x), t, **kw)

    c = tritorch.compile(step)
    results, launches = [], []
    for fn in (step, c, c):
        net.zero_grad()
        x.grad = None
        with profile() as fwd:
            loss = fn(x)
        with profile() as bwd:
            (loss * loss).sum().backward()
        results.append([to_np(loss), to_np(x.grad), to_np(net.fc.weight.grad), to_np(net.fc.bias.grad)])
        launches.append((fwd.kernel_launches(), bwd.kernel_launches(),
                         [e.name for e in fwd.events() + bwd.events() if e.kind == "kernel"]))
    for got in results[1:]:
        for a, b in zip(got, results[0]):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert "1 nll_loss of log_softmax as cross_entropy" in c.explain()
    if device == "cuda":
        eager, compiled = launches[0], launches[2]
        assert not any("softmax" in n for n in compiled[2]) and any("softmax" in n for n in eager[2])
        assert compiled[0] < eager[0] and compiled[1] < eager[1]


def test_nll_loss_module_and_log_softmax_module():
    """``nn.LogSoftmax(dim=1)`` and ``nn.NLLLoss()`` fold as the functions do."""
    model = nn.Sequential(nn.Linear(4, 3), nn.LogSoftmax(dim=1))
    x, t = tritorch.randn(5, 4), tritorch.tensor([0, 1, 2, 1, 0])
    assert pass_ops(passes.fuse_log_softmax_nll, lambda x: nn.NLLLoss()(model(x), t), x) == \
        ["linear", "cross_entropy"]


def test_what_does_not_fold():
    """Log-probabilities also returned or read again, over another dim than the classes' or in another dtype: each
    keeps its log_softmax and nll_loss."""
    x, t = tritorch.randn(4, 6), tritorch.tensor([0, 5, 2, 3])
    keep = ["log_softmax", "nll_loss"]
    assert pass_ops(passes.fuse_log_softmax_nll, lambda x: (F.nll_loss(lp := F.log_softmax(x, 1), t), lp), x)[:2] \
        == keep
    assert pass_ops(passes.fuse_log_softmax_nll, lambda x: F.nll_loss(lp := F.log_softmax(x, 1), t) + lp.sum(),
                    x)[:2] == keep
    x3, t3 = tritorch.randn(4, 6, 5), tritorch.tensor(np.arange(20).reshape(4, 5) % 6)
    assert pass_ops(passes.fuse_log_softmax_nll, lambda x: F.nll_loss(F.log_softmax(x, -1), t3), x3) == keep
    assert pass_ops(passes.fuse_log_softmax_nll, lambda x: F.nll_loss(F.log_softmax(x, 1, dtype=tritorch.float64),
                                                                      t), x)[:2] == keep
    assert pass_ops(passes.fuse_log_softmax_nll, lambda x: F.nll_loss(F.log_softmax(x, -1), t), x) == \
        ["cross_entropy"]                                   # -1 is the class dim of a 2-D input
    one, t1 = tritorch.randn(6), tritorch.tensor(5)
    assert pass_ops(passes.fuse_log_softmax_nll, lambda x: F.nll_loss(F.log_softmax(x, 0), t1), one) == \
        ["cross_entropy"]                                   # a 1-D input: one row, its class dim 0
