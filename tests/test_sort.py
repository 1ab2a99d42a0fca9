"""The sort family against PyTorch: sort/argsort/msort/topk/kthvalue (stable ties, NaN the largest, rows of 1, 7 and
1000+ crossing the in-register chunk, forced tiny chunks for the merge passes, dim 0 and -1, size 0, 0-d,
non-contiguous, dtypes, backward, gradcheck), unique, searchsorted/bucketize, histc and bincount, and the errors."""
import warnings

import numpy as np
import pytest

import tritorch
from tritorch.autograd.gradcheck import gradcheck
from tritorch.kernels import sort as S
from helpers import assert_close, make, to_np

torch = pytest.importorskip("torch")
warnings.filterwarnings("ignore", category=RuntimeWarning)

CASES = [((1,), 0), ((7,), -1), ((3, 7), 0), ((3, 7), -1), ((2, 1031), -1), ((1031, 2), 0), ((4, 0), 1), ((), 0)]


def _ties_nan(shape, seed=0):
    """Small integers as floats (many ties) with a few NaNs."""
    a = np.random.default_rng(seed).integers(0, 5, size=shape).astype(np.float32)
    if a.size > 3:
        a.reshape(-1)[[0, 2, a.size - 1]] = np.nan
    return a


def _t(a):
    return torch.from_numpy(np.array(a, order="C"))


@pytest.mark.parametrize("shape, dim", CASES)
@pytest.mark.parametrize("descending", [False, True])
def test_sort_matches_torch_stable(shape, dim, descending, device):
    a = _ties_nan(shape)
    got = tritorch.sort(tritorch.tensor(a, device=device), dim, descending)
    exp = torch.sort(_t(a), dim=dim, descending=descending, stable=True)
    np.testing.assert_array_equal(to_np(got.values), exp.values.numpy().astype(np.float64))
    assert got.indices.dtype is tritorch.int64
    np.testing.assert_array_equal(to_np(got.indices), exp.indices.numpy())
    np.testing.assert_array_equal(to_np(tritorch.argsort(tritorch.tensor(a, device=device), dim, descending)),
                                  exp.indices.numpy())


@pytest.mark.parametrize("block_n", [1, 2, 8])
@pytest.mark.parametrize("descending", [False, True])
def test_sort_merge_passes(block_n, descending):
    """Tiny in-register chunks: several merge passes, odd run tails, ties and NaN across runs."""
    a = _ties_nan((3, 37), seed=2).astype(np.float64)
    v, i = S.sort_(tritorch.tensor(a, device="cuda"), 1, descending, block_n=block_n)
    exp = torch.sort(_t(a), dim=1, descending=descending, stable=True)
    np.testing.assert_array_equal(to_np(i), exp.indices.numpy())
    np.testing.assert_array_equal(to_np(v), exp.values.numpy())


@pytest.mark.parametrize("layout", ["transposed", "strided"])
def test_sort_non_contiguous(layout, device):
    x, ref = make((5, 9), tritorch.float32, device, layout)
    for dim in (0, 1):
        got = x.sort(dim, descending=True)
        exp = torch.sort(_t(ref), dim=dim, descending=True, stable=True)
        np.testing.assert_array_equal(to_np(got.indices), exp.indices.numpy())
        assert_close(got.values, exp.values.numpy())


@pytest.mark.parametrize("dt", ["int32", "int64", "uint8", "int8", "bool", "float16", "bfloat16", "float64"])
def test_sort_dtypes(dt, device):
    b = np.random.default_rng(1).integers(0, 3, size=(4, 9))
    x = tritorch.tensor(b, device=device).to(getattr(tritorch, dt))
    got = tritorch.sort(x, 1, descending=True)
    exp = torch.sort(torch.tensor(b).to(getattr(torch, dt)), dim=1, descending=True, stable=True)
    assert got.values.dtype is x.dtype
    np.testing.assert_array_equal(to_np(got.indices), exp.indices.numpy())
    np.testing.assert_array_equal(to_np(got.values), exp.values.double().numpy() if x.dtype.is_floating_point
                                  else exp.values.numpy())


def test_sort_signed_zero_and_inf(device):
    a = np.array([2.0, np.nan, -0.0, 0.0, 1, np.nan, -np.inf, np.inf])
    for desc in (False, True):
        got = tritorch.sort(tritorch.tensor(a, device=device), descending=desc)
        exp = torch.sort(_t(a), descending=desc, stable=True)
        np.testing.assert_array_equal(to_np(got.indices), exp.indices.numpy())


@pytest.mark.parametrize("largest", [True, False])
def test_topk(largest, device):
    a = _ties_nan((3, 41), seed=4)
    for dim, k in [(1, 5), (0, 2), (-1, 0), (1, 41)]:
        got = tritorch.topk(tritorch.tensor(a, device=device), k, dim, largest)
        exp = torch.topk(_t(a), k, dim, largest)
        np.testing.assert_array_equal(to_np(got.values), exp.values.numpy().astype(np.float64))
        # the picked indices hold the picked values (PyTorch leaves the order of ties open)
        picked = np.take_along_axis(a, to_np(got.indices), dim)
        np.testing.assert_array_equal(picked, exp.values.numpy())
    assert tritorch.topk(tritorch.tensor(3.0, device=device), 1).values.item() == 3.0
    with pytest.raises(RuntimeError, match="selected index k out of range"):
        tritorch.topk(tritorch.ones(2, device=device), 3)


def test_kthvalue(device):
    a = _ties_nan((4, 13), seed=5)
    for dim, k, keep in [(1, 1, False), (1, 7, True), (0, 4, False), (-1, 13, False)]:
        got = tritorch.kthvalue(tritorch.tensor(a, device=device), k, dim, keep)
        exp = torch.kthvalue(_t(a), k, dim, keep)
        np.testing.assert_array_equal(to_np(got.values), exp.values.numpy().astype(np.float64))
        idx = to_np(got.indices) if keep else np.expand_dims(to_np(got.indices), dim)
        vals = exp.values.numpy() if keep else np.expand_dims(exp.values.numpy(), dim)
        np.testing.assert_array_equal(np.take_along_axis(a, idx, dim), vals)
    assert tritorch.kthvalue(tritorch.tensor(5.0, device=device), 1).values.item() == 5.0
    with pytest.raises(RuntimeError, match="selected number k out of range for dimension 0"):
        tritorch.kthvalue(tritorch.ones(2, device=device), 3)
    with pytest.raises(IndexError, match="Expected reduction dim 0 to have non-zero size"):
        tritorch.kthvalue(tritorch.zeros(0, 3, device=device), 1, dim=0)
    assert tritorch.kthvalue(tritorch.zeros(0, 3, device=device), 1, dim=1).values.shape == (0,)


def test_msort_and_errors(device):
    a = _ties_nan((5, 3))
    np.testing.assert_array_equal(to_np(tritorch.msort(tritorch.tensor(a, device=device))),
                                  torch.msort(_t(a)).numpy().astype(np.float64))
    with pytest.raises(IndexError, match="Dimension out of range"):
        tritorch.sort(tritorch.ones(2, device=device), 2)
    with pytest.raises(TypeError):
        tritorch.sort([1, 2])
    assert tritorch.sort(tritorch.tensor(3.0, device=device)).indices.item() == 0


@pytest.mark.parametrize("op", ["sort", "topk", "kthvalue"])
def test_sort_backward(op, device):
    a = np.random.default_rng(6).standard_normal((4, 6))
    fns = {"sort": lambda m, x: m.sort(x, dim=0, descending=True).values,
           "topk": lambda m, x: m.topk(x, 3, dim=1).values,
           "kthvalue": lambda m, x: m.kthvalue(x, 2, 1).values}
    x = tritorch.tensor(a, device=device, requires_grad=True)
    y = fns[op](tritorch, x)
    g = np.random.default_rng(7).standard_normal(y.shape)
    y.backward(tritorch.tensor(g, device=device))
    xt = _t(a).requires_grad_()
    fns[op](torch, xt).backward(_t(g))
    assert_close(x.grad, xt.grad.numpy())
    x64 = tritorch.tensor(a, requires_grad=True)
    assert gradcheck(lambda t: fns[op](tritorch, t), (x64,))


def test_unique(device):
    a = np.array([[3.0, np.nan, 1], [np.nan, 3, 2]])
    got = tritorch.unique(tritorch.tensor(a, device=device), return_inverse=True, return_counts=True)
    exp = torch.unique(_t(a), return_inverse=True, return_counts=True)
    for g, e in zip(got, exp):
        np.testing.assert_array_equal(to_np(g), e.numpy())
    ints = np.random.default_rng(8).integers(0, 20, size=300)
    got = tritorch.tensor(ints, device=device).unique(sorted=False, return_counts=True)
    exp = torch.unique(_t(ints), return_counts=True)
    for g, e in zip(got, exp):
        np.testing.assert_array_equal(to_np(g), e.numpy())
    empty = tritorch.unique(tritorch.zeros(0, device=device), return_inverse=True, return_counts=True)
    assert [t.shape for t in empty] == [(0,), (0,), (0,)]
    with pytest.raises(NotImplementedError, match="dim"):
        tritorch.unique(tritorch.ones(2, device=device), dim=0)


def test_searchsorted(device):
    seq = np.array([1.0, 2, 2, 3, np.nan])
    vals = np.array([[np.nan, 2, 5], [0, 2.5, 3]])
    for right in (False, True):
        got = tritorch.searchsorted(tritorch.tensor(seq, device=device), tritorch.tensor(vals, device=device),
                                    right=right)
        np.testing.assert_array_equal(to_np(got), torch.searchsorted(_t(seq), _t(vals), right=right).numpy())
    rows = np.sort(np.random.default_rng(9).integers(0, 9, size=(3, 1030)), axis=1)
    v = np.random.default_rng(10).integers(-1, 10, size=(3, 7))
    got = tritorch.searchsorted(tritorch.tensor(rows, device=device), tritorch.tensor(v, device=device),
                                side="right", out_int32=True)
    assert got.dtype is tritorch.int32
    np.testing.assert_array_equal(to_np(got), torch.searchsorted(_t(rows), _t(v), side="right").numpy())
    unsorted = np.array([3.0, 1, 2])
    got = tritorch.searchsorted(tritorch.tensor(unsorted, device=device), tritorch.tensor([2.5, 0.0], device=device),
                                sorter=tritorch.tensor([1, 2, 0], device=device))
    np.testing.assert_array_equal(to_np(got), [2, 0])
    got = tritorch.searchsorted(tritorch.tensor([1, 2, 3], device=device), 2.0)
    assert got.shape == () and got.item() == 1
    assert tritorch.searchsorted(tritorch.tensor([1.0], device=device), tritorch.zeros(0, device=device)).shape == (0,)
    for kw, msg in [(dict(side="foo"), "side can only be"), (dict(side="left", right=True), "can't be set"),
                    (dict(sorter=tritorch.tensor([0], device=device)), "must have the same size"),
                    (dict(sorter=tritorch.tensor([0, 5], device=device)), "sorter index out of range")]:
        with pytest.raises(RuntimeError, match=msg):
            tritorch.searchsorted(tritorch.tensor([1.0, 2], device=device), tritorch.tensor([1.0], device=device), **kw)
    with pytest.raises(RuntimeError, match="first N-1 dimensions"):
        tritorch.searchsorted(tritorch.ones(2, 2, device=device), tritorch.ones(1, device=device))
    with pytest.raises(RuntimeError, match="positive dimension"):
        tritorch.searchsorted(tritorch.tensor(1.0, device=device), tritorch.ones(1, device=device))


def test_bucketize(device):
    b = np.array([1.0, 3, 5, 7])
    x = np.array([[0.0, 1, 3.5], [7, 9, 5]])
    for right in (False, True):
        got = tritorch.bucketize(tritorch.tensor(x, device=device), tritorch.tensor(b, device=device), right=right)
        np.testing.assert_array_equal(to_np(got), torch.bucketize(_t(x), _t(b), right=right).numpy())
    assert tritorch.bucketize(3, tritorch.tensor(b, device=device)).item() == 1
    with pytest.raises(RuntimeError, match=r"must be 1 dimension, but got dim\(2\)"):
        tritorch.bucketize(tritorch.ones(1, device=device), tritorch.ones(1, 2, device=device))


def test_histc(device):
    a = np.array([1.0, np.nan, 3, 4, 5, 0.5, 2, 1.75])
    for kw in [dict(bins=4, min=1, max=4), dict(bins=3), dict(bins=5, min=-1, max=6)]:
        x = np.where(np.isnan(a), 0, a) if "min" not in kw else a
        got = tritorch.histc(tritorch.tensor(x, dtype=tritorch.float32, device=device), **kw)
        exp = torch.histc(_t(x.astype(np.float32)), **kw)
        assert got.dtype is tritorch.float32
        np.testing.assert_array_equal(to_np(got), exp.numpy())
    big = np.random.default_rng(11).standard_normal(1500)
    np.testing.assert_array_equal(to_np(tritorch.histc(tritorch.tensor(big, device=device), bins=7)),
                                  torch.histc(_t(big), bins=7).numpy())
    assert to_np(tritorch.histc(tritorch.tensor([1.0, 1.0], device=device), bins=4)).tolist() == [0, 0, 2, 0]
    with pytest.raises(RuntimeError, match="max must be larger than min"):
        tritorch.histc(tritorch.ones(1, device=device), bins=3, min=2, max=1)
    with pytest.raises(RuntimeError, match="bins must be > 0"):
        tritorch.histc(tritorch.ones(1, device=device), bins=0)
    with pytest.raises(RuntimeError, match="is not finite"):
        tritorch.histc(tritorch.tensor([1.0, np.nan], device=device), bins=2)
    with pytest.raises(NotImplementedError, match="not implemented for 'Long'"):
        tritorch.histc(tritorch.tensor([1, 2], device=device))


def test_bincount(device):
    x = np.random.default_rng(12).integers(0, 9, size=1100)
    w = np.random.default_rng(13).standard_normal(1100)
    np.testing.assert_array_equal(to_np(tritorch.bincount(tritorch.tensor(x, device=device))),
                                  torch.bincount(_t(x)).numpy())
    for wdt, tdt in [(tritorch.float32, torch.float32), (tritorch.float64, torch.float64),
                     (tritorch.int32, torch.int32)]:
        got = tritorch.bincount(tritorch.tensor(x, device=device), tritorch.tensor(w, device=device).to(wdt),
                                minlength=12)
        exp = torch.bincount(_t(x), _t(w).to(tdt), minlength=12)
        assert got.dtype.name == str(exp.dtype).split(".")[1]
        assert_close(got, exp.double().numpy(), rtol=1e-4, atol=1e-4)
    assert to_np(tritorch.bincount(tritorch.zeros(0, dtype=tritorch.int64, device=device), minlength=3)).tolist() \
        == [0, 0, 0]
    for bad, msg in [(tritorch.tensor([1, -2], device=device), "non-negative"),
                     (tritorch.tensor([[1]], device=device), "1-d")]:
        with pytest.raises(RuntimeError, match=msg):
            tritorch.bincount(bad)
    with pytest.raises(RuntimeError, match="minlength should be >= 0"):
        tritorch.bincount(tritorch.tensor([1], device=device), minlength=-1)
    with pytest.raises(RuntimeError, match="same length"):
        tritorch.bincount(tritorch.tensor([1, 2], device=device), tritorch.ones(1, device=device))
    with pytest.raises(NotImplementedError, match="not implemented for 'Float'"):
        tritorch.bincount(tritorch.ones(2, device=device))
