"""``tritorch.compile``'s layout pass (``compiler/passes/layout.py``): a batched product read only by a transpose that a
reshape would copy is computed in the transpose's contiguous order, so the reshape is a view: no copy launch, the
same results and gradients as eager."""
import numpy as np
import pytest

import tritorch
from tritorch.compiler.passes import layout
from tritorch.jit import trace
from tritorch.profiler import profile


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITORCH_CACHE_DIR", str(tmp_path))


def heads(q, k, v):
    """Attention's tail written in ops: the heads' outputs merged back into one row per token (the softmax over
    dim -2, not -1, which ``fuse_attention`` would take with the products into the flash-attention kernels)."""
    b, h, t, dh = q.shape
    return ((q @ k @ q.transpose(-2, -1)).softmax(-2) @ v).transpose(1, 2).reshape(b, t, h * dh)


def _inputs(dtype, grad, seed=0):
    """q, v: (2, 3, 5, 4); k: (2, 3, 4, 4) (q @ k @ v is a product chain too)."""
    rng = np.random.default_rng(seed)
    return [tritorch.tensor(rng.uniform(-1, 1, shape), device="cuda", dtype=dtype, requires_grad=grad)
            for shape in ((2, 3, 5, 4), (2, 3, 4, 4), (2, 3, 5, 4))]


@pytest.mark.parametrize("dtype", [tritorch.float32, tritorch.float16, tritorch.float64])
@pytest.mark.parametrize("grad", [False, True])
def test_product_laid_out_for_its_reshape(dtype, grad):
    ins = _inputs(dtype, grad)
    want = heads(*ins)
    if grad:
        want.float().pow(2).sum().backward()
        want_g = [t.grad.float().cpu().numpy() for t in ins]
    c = tritorch.compile(heads)
    for _ in range(3):                                  # the capture, then two replays
        for t in ins:
            t.grad = None
        with profile() as prof:
            got = c(*ins)
        np.testing.assert_array_equal(got.detach().float().cpu().numpy(), want.detach().float().cpu().numpy())
        if grad:
            got.float().pow(2).sum().backward()
            for t, g in zip(ins, want_g):
                np.testing.assert_array_equal(t.grad.float().cpu().numpy(), g)
    assert "1 products laid out for their reader" in c.explain()
    assert prof.kernel_launches("_pointwise_kernel") == 0       # eagerly: the reshape's copy
    assert got.is_contiguous()


def _graph(fn, *ins):
    return trace(fn, tuple(ins), check_trace=False, strict=False).graph


def test_left_alone_where_the_reshape_is_a_view_or_the_product_has_other_readers():
    q, k, v = _inputs(tritorch.float32, False)
    assert layout.plan_layouts(_graph(heads, q, k, v))[1] == 1
    cases = {
        "a view already": lambda q, k, v: (q @ q.transpose(-2, -1)).transpose(2, 3).reshape(6, 5, 5),
        "another reader": lambda q, k, v: (lambda p: p.transpose(1, 2).reshape(2, 5, 12) + p.sum())(q @ k),
        "a graph output": lambda q, k, v: (lambda p: (p, p.transpose(1, 2).reshape(2, 5, 12)))(q @ k),
        "no transpose": lambda q, k, v: (q @ k).reshape(2, 15, 4),
        "a matrix operand": lambda q, k, v: (q @ k[0, 0]).transpose(1, 2).reshape(2, 5, 12),
    }
    for why, fn in cases.items():
        g, n = layout.plan_layouts(_graph(fn, q, k, v))
        assert n == 0, why
        assert not any(node.kwargs.get("order") for node in g.nodes), why
