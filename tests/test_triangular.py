"""triu/tril (and their in-place forms) on cpu and interpreted cuda against NumPy's triu/tril: batched, odd sizes,
every diagonal from far below to far above, non-contiguous views, size 0, every dtype, gradients, bad input."""
import numpy as np
import pytest

import tritorch
from helpers import assert_close, make

DTYPES = [tritorch.float32, tritorch.float64, tritorch.float16, tritorch.bfloat16, tritorch.int64, tritorch.uint8,
          tritorch.bool]


@pytest.mark.parametrize("name", ["triu", "tril"])
@pytest.mark.parametrize("shape,layout", [((5, 7), "contiguous"), ((3, 6, 4), "transposed"), ((2, 5, 9), "strided"),
                                          ((1, 1), "contiguous"), ((0, 3), "contiguous"), ((2, 0, 4), "contiguous"),
                                          ((33, 40), "contiguous")])
def test_values(device, name, shape, layout):
    x, ref = make(shape, device=device, layout=layout)
    fn, np_fn = getattr(tritorch, name), getattr(np, name)
    for k in (-100, -3, -1, 0, 1, 2, 100):
        out = fn(x, k)
        assert out.shape == x.shape and out.device == x.device and out.is_contiguous()
        assert_close(out, np_fn(ref, k), msg=f"{name} diagonal {k}")
    assert_close(getattr(x, name)(diagonal=1), np_fn(ref, 1))       # the method, keyword argument


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_dtypes(device, dtype):
    x, ref = make((4, 6), dtype=dtype, device=device, low=0.5, high=2.0)
    out = tritorch.tril(x, 1)
    assert out.dtype is dtype
    assert_close(out, np.tril(ref, 1))
    assert_close(tritorch.triu(x, -1), np.triu(ref, -1))


def test_causal_mask_idiom(device):
    mask = tritorch.triu(tritorch.ones(5, 5, dtype=tritorch.bool, device=device), diagonal=1)
    assert mask.tolist() == np.triu(np.ones((5, 5), bool), 1).tolist()
    scores = tritorch.zeros(5, 5, device=device).masked_fill(mask, float("-inf"))
    assert np.isinf(scores.cpu().numpy()).sum() == 10


@pytest.mark.parametrize("name", ["triu", "tril"])
def test_backward(device, name):
    x, _ = make((2, 4, 5), device=device, requires_grad=True)
    g, gref = make((2, 4, 5), device=device, seed=3)
    out = getattr(tritorch, name)(x, 1)
    assert out.grad_fn.name() == ("TriuBackward0" if name == "triu" else "TrilBackward0")
    out.backward(g)
    assert_close(x.grad, getattr(np, name)(gref, 1))


def test_gradcheck_float64():
    x = tritorch.randn(3, 4, dtype=tritorch.float64, requires_grad=True)
    assert tritorch.autograd.gradcheck(lambda t: tritorch.triu(t, -1) * tritorch.tril(t, 1), (x,))
    assert tritorch.autograd.gradgradcheck(lambda t: tritorch.triu(t) ** 2, (x,))


@pytest.mark.parametrize("name", ["triu_", "tril_"])
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_in_place(device, name, layout):
    x, ref = make((4, 6), device=device, layout=layout)
    version = x._storage.version
    assert getattr(x, name)(-1) is x
    assert_close(x, getattr(np, name[:-1])(ref, -1))
    assert x._storage.version > version
    # through autograd: a non-leaf written in place passes the masked gradient on
    leaf, _ = make((4, 6), device=device, requires_grad=True)
    y = leaf * 2
    getattr(y, name)(0)
    y.sum().backward()
    assert_close(leaf.grad, getattr(np, name[:-1])(np.full((4, 6), 2.0), 0))


def test_bad_input(device):
    with pytest.raises(RuntimeError, match="triu: input tensor must have at least 2 dimensions, got 1"):
        tritorch.triu(tritorch.ones(3, device=device))
    with pytest.raises(TypeError, match="'diagonal' must be int, not float"):
        tritorch.tril(tritorch.ones(2, 2, device=device), 0.5)
    leaf = tritorch.ones(2, 2, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        leaf.triu_()
    assert leaf.tolist() == [[1.0, 1.0], [1.0, 1.0]]            # refused before any write
