"""``F.rms_norm`` and ``nn.RMSNorm`` against PyTorch (the oracle, where installed): values and gradients, the
default eps, no weight, several normalized dims, half types, bad shapes; and ``tritorch.compile`` fusing it."""
import numpy as np
import pytest

import tritorch
import tritorch.nn as nn
from tritorch.profiler import profile

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("shape, ns, weight, eps", [((4, 7, 16), (16,), True, None), ((3, 5, 6), (5, 6), True, 1e-3),
                                                    ((9, 33), 33, False, None), ((1, 1), (1,), True, 1e-6)])
def test_matches_pytorch(device, shape, ns, weight, eps):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal(ns if isinstance(ns, tuple) else (ns,)).astype(np.float32)
    tx = tritorch.tensor(x, device=device, requires_grad=True)
    tw = tritorch.tensor(w, device=device, requires_grad=True) if weight else None
    px = torch.tensor(x, requires_grad=True)
    pw = torch.tensor(w, requires_grad=True) if weight else None
    out = tritorch.nn.functional.rms_norm(tx, ns, tw, eps)
    want = torch.nn.functional.rms_norm(px, list(ns) if isinstance(ns, tuple) else [ns], pw, eps)
    g = rng.standard_normal(shape).astype(np.float32)
    out.backward(tritorch.tensor(g, device=device))
    want.backward(torch.tensor(g))
    np.testing.assert_allclose(out.detach().cpu().numpy(), want.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tx.grad.cpu().numpy(), px.grad.numpy(), rtol=1e-4, atol=1e-5)
    if weight:
        np.testing.assert_allclose(tw.grad.cpu().numpy(), pw.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_module_half_types_and_errors(device):
    m = nn.RMSNorm(8).to(device)
    assert repr(m) == "RMSNorm((8,), eps=None, elementwise_affine=True)" == repr(torch.nn.RMSNorm(8))
    assert [n for n, _ in m.named_parameters()] == ["weight"]
    assert list(nn.RMSNorm([2, 3], elementwise_affine=False).parameters()) == []
    x = np.random.default_rng(1).standard_normal((5, 8)).astype(np.float32) * 300    # x * x overflows float16
    got = m.half()(tritorch.tensor(x, device=device).half())
    want = torch.nn.RMSNorm(8).half()(torch.tensor(x).half())
    assert got.dtype is tritorch.float16
    np.testing.assert_allclose(got.detach().float().cpu().numpy(), want.detach().float().numpy(), rtol=2e-3, atol=2e-3)
    with pytest.raises(RuntimeError, match="expected input with shape"):
        m(tritorch.randn(5, 7, device=device))
    with pytest.raises(RuntimeError, match="Expected weight to be of same shape"):
        tritorch.nn.functional.rms_norm(tritorch.randn(2, 8), [8], tritorch.ones(4))


def test_compile_fuses_it():
    """Written in ops, not routed: the capture sees them and ``tritorch.compile`` runs them as the row-norm kernel
    (``fuse_rms_norm``; eager: one per op)."""
    m = nn.RMSNorm(32).to("cuda")
    x = tritorch.randn(4, 6, 32, device="cuda")
    c = tritorch.compile(m)
    with tritorch.no_grad():
        c(x)
        with profile() as fused:
            got = c(x)
        with profile() as eager:
            want = m(x)
    assert (fused.kernel_launches(), eager.kernel_launches()) == (1, 6)
    np.testing.assert_allclose(got.cpu().numpy(), want.cpu().numpy(), rtol=1e-5, atol=1e-6)
