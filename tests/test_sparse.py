"""Sparse COO tensors (tritorch/sparse/, kernels/sparse.py) against PyTorch: construction and its checks, coalesce,
to_dense / to_sparse, the products with dense matrices (sparse.mm, spmm, mm, matmul, @) and their gradients to the
dense operand and to the values, on cpu and interpreted cuda."""
import numpy as np
import pytest

import tritorch
from tritorch.autograd.gradcheck import gradcheck, gradgradcheck
from helpers import TOL

torch = pytest.importorskip("torch")

IDX = [[0, 1, 1, 0, 2], [2, 0, 2, 2, 1]]          # position (0, 2) twice: a duplicate


def _np(t):
    return t.detach().cpu().numpy()


def _pair(idx, vals, size=None, device="cpu", **kw):
    """The same sparse tensor in tritorch (on ``device``) and in PyTorch."""
    tv = torch.tensor(vals)
    ours = tritorch.sparse_coo_tensor(tritorch.tensor(idx), tritorch.tensor(vals), size, device=device, **kw)
    theirs = torch.sparse_coo_tensor(torch.tensor(idx), tv, *([size] if size is not None else []),
                                     check_invariants=True, **kw)
    return ours, theirs


def _same_sparse(ours, theirs, exact=True):
    assert ours.layout is tritorch.sparse_coo and ours.is_sparse
    assert tuple(ours.shape) == tuple(theirs.shape) and ours._nnz() == theirs._nnz()
    assert ours.dtype.name == str(theirs.dtype).split(".")[1]
    assert ours.is_coalesced() == theirs.is_coalesced()
    np.testing.assert_array_equal(_np(ours._indices()), theirs._indices().numpy())
    check = np.testing.assert_array_equal if exact else np.testing.assert_allclose
    check(_np(ours._values()), theirs._values().detach().numpy())


# ---- construction ------------------------------------------------------------------------------------------------

def test_construction_matches_pytorch(device):
    ours, theirs = _pair(IDX, [1.0, 2.0, 3.0, 4.0, 5.0], (3, 4), device)
    _same_sparse(ours, theirs)
    assert ours.device.type == device and ours.is_cuda == (device == "cuda")
    assert ours.sparse_dim() == 2 and ours.dense_dim() == 0 and ours.ndim == 2 and ours.size(1) == 4
    _same_sparse(*_pair(IDX, [1.0, 2.0, 3.0, 4.0, 5.0], device=device))                 # size inferred: (3, 3)
    _same_sparse(*_pair(IDX, [1, 2, 3, 4, 5], device=device))                            # int64 values
    o = tritorch.sparse_coo_tensor(IDX, [1, 2, 3, 4, 5], dtype=tritorch.float64, device=device)
    t = torch.sparse_coo_tensor(IDX, [1, 2, 3, 4, 5], dtype=torch.float64, check_invariants=True)
    _same_sparse(o, t)
    o = tritorch.sparse_coo_tensor(tritorch.tensor(IDX, dtype=tritorch.float32), tritorch.ones(5), device=device)
    assert o._indices().dtype is tritorch.int64                                        # float indices: cast, as PyTorch
    hybrid = np.arange(10.0).reshape(5, 2)
    _same_sparse(*_pair(IDX, hybrid.tolist(), (3, 3, 2), device))
    assert tritorch.sparse_coo_tensor([[0]], [1.0], (4,)).is_coalesced()                # one entry: coalesced
    empty, tempty = _pair([[], []], [], (3, 3), device)
    _same_sparse(empty, tempty)


def test_repr_matches_pytorch():
    cases = [(IDX, [1.0, 2.0, 3.0, 4.0, 5.0], (3, 4)), (IDX, [1.5, 2, 3, 4, 5], None), ([[], []], [], (2, 3)),
             ([[0, 1]], [[1.0, 2.0], [3.0, 4.0]], (2, 2))]
    for idx, vals, size in cases:
        o, t = _pair(idx, vals, size)
        assert repr(o) == repr(t).replace("torch.", "tritorch."), (repr(o), repr(t))
    o = tritorch.sparse_coo_tensor(IDX, [1, 2, 3, 4, 5], dtype=tritorch.float64, requires_grad=True)
    t = torch.sparse_coo_tensor(IDX, [1, 2, 3, 4, 5], dtype=torch.float64, requires_grad=True)
    assert repr(o) == repr(t).replace("torch.", "tritorch.")
    assert "device='cuda:0', size=(3, 3)" in repr(tritorch.sparse_coo_tensor(IDX, [1.0] * 5, device="cuda"))


@pytest.mark.parametrize("args, kw", [
    (([[0, 1, 1, 0], [2, 0, 2, 2]], [1.0, 2.0, 3.0]), {}),
    (([0, 1, 1], [1.0, 2.0, 3.0]), {}),
    (([[0, 1], [2, 0]], [1.0, 2.0], (2,)), {}),
    (([[0, 1], [2, 0]], [[1.0] * 4] * 2, (2, 3, 5)), {}),
    (([[0, -1], [0, 0]], [1.0, 2.0], (2, 2)), {}),
    (([[0, 1], [2, 0]], [1.0, 2.0], (2, 2)), {}),
    (([[0, 1], [2, 0]], [1.0, 2.0], (2, -3)), {}),
], ids=["nnz", "indices-1d", "len-size", "dense-size", "negative", "out-of-range", "negative-size"])
def test_construction_errors_match_pytorch(args, kw):
    """PyTorch's messages; indices out of range are refused as PyTorch's check_invariants=True does (its default
    leaves them unchecked)."""
    with pytest.raises(RuntimeError) as theirs:
        torch.sparse_coo_tensor(*[torch.tensor(a) if isinstance(a, list) else a for a in args], check_invariants=True)
    with pytest.raises(RuntimeError) as ours:
        tritorch.sparse_coo_tensor(*args, **kw)
    if "negative dimension" not in str(ours.value):                 # PyTorch: "numel: integer multiplication ..."
        assert str(ours.value) == str(theirs.value)


def test_construction_device_and_coalesced_flag_errors():
    with pytest.raises(RuntimeError, match="must match device of values"):
        tritorch.sparse_coo_tensor(tritorch.tensor(IDX), tritorch.ones(5, device="cuda"))
    moved = tritorch.sparse_coo_tensor(tritorch.tensor(IDX), tritorch.ones(5, device="cuda"), device="cpu")
    assert moved.device.type == "cpu" and moved._indices().device.type == "cpu"
    with pytest.raises(RuntimeError, match="is_coalesced=True"):
        tritorch.sparse_coo_tensor(IDX, [1.0] * 5, is_coalesced=True)
    assert tritorch.sparse_coo_tensor([[0, 1], [1, 0]], [1.0, 2.0], is_coalesced=True).is_coalesced()
    with pytest.raises(RuntimeError, match="floating point"):
        tritorch.sparse_coo_tensor(IDX, [1, 2, 3, 4, 5], requires_grad=True)


# ---- coalesce, to_dense, to_sparse ----------------------------------------------------------------------------------

@pytest.mark.parametrize("values", [[1.0, 2.0, 3.0, 4.0, 5.0], np.arange(15.0).reshape(5, 3).tolist()],
                         ids=["scalar", "hybrid"])
def test_coalesce_to_dense_match_pytorch(values, device):
    size = (3, 4) + ((3,) if isinstance(values[0], list) else ())
    o, t = _pair(IDX, values, size, device)
    c, tc = o.coalesce(), t.coalesce()
    _same_sparse(c, tc)
    assert c.coalesce() is c
    np.testing.assert_array_equal(_np(c.indices()), tc.indices().numpy())
    np.testing.assert_array_equal(_np(c.values()), tc.values().numpy())
    with pytest.raises(RuntimeError, match="uncoalesced"):
        o.values()
    np.testing.assert_array_equal(_np(o.to_dense()), t.to_dense().numpy())
    assert o.to_dense().device.type == device
    assert o.to_dense(tritorch.float64).dtype is tritorch.float64


def test_coalesce_and_to_dense_are_differentiable(device):
    for op in ("coalesce", "to_dense"):
        v = tritorch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], device=device, requires_grad=True)
        tv = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], requires_grad=True)
        w = torch.arange(12.0).reshape(3, 4)
        s = tritorch.sparse_coo_tensor(IDX, v, (3, 4))
        ts = torch.sparse_coo_tensor(torch.tensor(IDX), tv, (3, 4))
        assert s.requires_grad and s.grad_fn is not None and not s.is_leaf
        out = s.coalesce().to_dense() if op == "coalesce" else s.to_dense()
        (out * tritorch.tensor(w.numpy(), device=device)).sum().backward()
        (ts.coalesce().to_dense() * w).sum().backward()
        np.testing.assert_array_equal(_np(v.grad), tv.grad.numpy())


@pytest.mark.parametrize("sparse_dim", [None, 1])
def test_to_sparse_matches_pytorch(sparse_dim, device):
    a = np.array([[0.0, 1.5, 0.0], [0.0, 0.0, 0.0], [-2.0, 0.0, np.nan]])
    args = () if sparse_dim is None else (sparse_dim,)
    ours = tritorch.tensor(a, device=device).to_sparse(*args)
    theirs = torch.tensor(a).to_sparse(*args)
    np.testing.assert_array_equal(_np(ours._indices()), theirs._indices().numpy())
    np.testing.assert_array_equal(_np(ours._values()), theirs._values().numpy())
    assert ours.is_coalesced() and tuple(ours.shape) == (3, 3)
    z = tritorch.zeros(2, 3, device=device).to_sparse()
    assert z._nnz() == 0 and tuple(z._indices().shape) == (2, 0)
    s0 = tritorch.tensor(3.0, device=device).to_sparse()
    t0 = torch.tensor(3.0).to_sparse()
    assert tuple(s0._indices().shape) == tuple(t0._indices().shape) and _np(s0._values()).tolist() == [3.0]
    x = tritorch.tensor(a[:, :2], device=device, requires_grad=True)      # differentiable (through indexing)
    (x.to_sparse().to_dense() * 3).sum().backward()
    np.testing.assert_array_equal(_np(x.grad), np.where(a[:, :2] != 0, 3.0, 0.0))
    assert tritorch.ones(2).layout is tritorch.strided and not tritorch.ones(2).is_sparse
    assert repr(tritorch.strided) == "tritorch.strided" and repr(tritorch.sparse_coo) == "tritorch.sparse_coo"
    d = tritorch.ones(2)
    assert d.to_dense() is d


# ---- products ---------------------------------------------------------------------------------------------------

def _random_sparse(m, k, nnz, dtype, device, seed=0):
    rng = np.random.default_rng(seed)
    idx = np.stack([rng.integers(0, max(m, 1), nnz), rng.integers(0, max(k, 1), nnz)]) if m and k else \
        np.zeros((2, 0), np.int64)
    vals = rng.uniform(-2, 2, idx.shape[1])
    s = tritorch.sparse_coo_tensor(idx, tritorch.tensor(vals, dtype=dtype), (m, k), device=device)
    dense = np.zeros((m, k))
    np.add.at(dense, (idx[0], idx[1]), _np(s._values()).astype(np.float64))
    return s, dense, idx


@pytest.mark.parametrize("m, k, n, nnz", [(5, 7, 9, 23), (37, 3, 70, 40), (4, 6, 0, 5), (3, 4, 5, 0), (0, 4, 3, 0)],
                         ids=["odd", "wide", "n0", "nnz0", "m0"])
@pytest.mark.parametrize("dtype", [tritorch.float32, tritorch.float64, tritorch.float16, tritorch.bfloat16])
def test_sparse_mm_forward(m, k, n, nnz, dtype, device):
    s, ref_s, _ = _random_sparse(m, k, nnz, dtype, device)
    b = tritorch.tensor(np.random.default_rng(1).uniform(-2, 2, (n, k)), dtype=dtype, device=device).t()  # strided
    out = tritorch.sparse.mm(s, b)
    assert out.dtype is dtype and tuple(out.shape) == (m, n) and out.device.type == device
    ref = ref_s @ _np(b).astype(np.float64)
    rtol, atol = TOL[dtype]
    np.testing.assert_allclose(_np(out).astype(np.float64), ref, rtol=rtol * 5, atol=atol * 5 * max(k, 1))


def test_sparse_mm_integers(device):
    s = tritorch.sparse_coo_tensor(IDX, [1, 2, 3, 4, 5], (3, 4), device=device)
    b = tritorch.arange(8, device=device).reshape(4, 2)
    t = torch.sparse_coo_tensor(torch.tensor(IDX), torch.tensor([1, 2, 3, 4, 5]), (3, 4))
    out = tritorch.sparse.mm(s, b)
    assert out.dtype is tritorch.int64
    np.testing.assert_array_equal(_np(out), torch.sparse.mm(t, torch.arange(8).reshape(4, 2)).numpy())


@pytest.mark.parametrize("entry", ["sparse.mm", "spmm", "mm", "matmul", "@"])
def test_sparse_mm_gradients_match_pytorch(entry, device):
    """Gradients reach the dense operand and the values (one per entry: duplicates get the same one)."""
    rng = np.random.default_rng(2)
    vals, b = rng.uniform(-1, 1, 5), rng.uniform(-1, 1, (3, 4))
    g = rng.uniform(-1, 1, (3, 4))
    fn = {"sparse.mm": lambda lib: lib.sparse.mm, "spmm": lambda lib: lib.spmm, "mm": lambda lib: lib.mm,
          "matmul": lambda lib: lib.matmul, "@": lambda lib: (lambda x, y: x @ y)}[entry]
    res = []
    for lib, dev in ((tritorch, device), (torch, "cpu")):
        v = lib.tensor(vals, device=dev, requires_grad=True)
        d = lib.tensor(b, device=dev, requires_grad=True)
        s = lib.sparse_coo_tensor(lib.tensor(IDX, device=dev), v, (3, 3))
        out = fn(lib)(s, d)
        out.backward(lib.tensor(g, device=dev))
        res.append((out, v.grad, d.grad, out.grad_fn.name()))
    (o, ov, od, on), (t, tv, td, tn) = res
    assert on == tn
    for x, y in ((o, t), (ov, tv), (od, td)):
        np.testing.assert_allclose(_np(x), y.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_sparse_leaf_grad_matches_pytorch(device):
    rng = np.random.default_rng(3)
    b = rng.uniform(-1, 1, (3, 4))
    s = tritorch.sparse_coo_tensor(IDX, [1.0, 2.0, 3.0, 4.0, 5.0], (3, 3), device=device, requires_grad=True)
    t = torch.sparse_coo_tensor(torch.tensor(IDX), torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]), (3, 3),
                                requires_grad=True)
    assert s.is_leaf and s.requires_grad and s.grad is None
    tritorch.sparse.mm(s, tritorch.tensor(b, dtype=tritorch.float32, device=device)).sum().backward()
    torch.sparse.mm(t, torch.tensor(b, dtype=torch.float32)).sum().backward()
    _same_sparse(s.grad, t.grad, exact=False)
    s.grad = None
    assert s.grad is None


def test_dense_times_sparse_and_sparse_times_sparse(device):
    rng = np.random.default_rng(4)
    a = rng.uniform(-1, 1, (2, 3))
    o, t = _pair(IDX, [1.0, 2.0, 3.0, 4.0, 5.0], (3, 3), device)
    oa, ta = tritorch.tensor(a, dtype=tritorch.float32, device=device), torch.tensor(a, dtype=torch.float32)
    for ours, theirs in ((oa @ o, ta @ t), (tritorch.mm(oa, o), torch.mm(ta, t))):
        assert not ours.is_sparse and ours.layout is tritorch.strided
        np.testing.assert_allclose(_np(ours), theirs.numpy(), rtol=1e-6)
    ss, ts = tritorch.sparse.mm(o, o.t()), torch.sparse.mm(t, t.t())
    assert ss.is_sparse and ts.is_sparse
    np.testing.assert_allclose(_np(ss.to_dense()), ts.to_dense().numpy(), rtol=1e-6)


def test_sparse_mm_gradcheck():
    rng = np.random.default_rng(5)
    idx = tritorch.tensor(np.stack([rng.integers(0, 4, 9), rng.integers(0, 5, 9)]))
    v = tritorch.tensor(rng.uniform(-1, 1, 9), dtype=tritorch.float64, requires_grad=True)
    b = tritorch.tensor(rng.uniform(-1, 1, (5, 3)), dtype=tritorch.float64, requires_grad=True)
    fn = lambda v, b: tritorch.sparse.mm(tritorch.sparse_coo_tensor(idx, v, (4, 5)), b)   # noqa: E731
    assert gradcheck(fn, (v, b))
    assert gradgradcheck(fn, (v, b))


def test_sparse_mm_errors_match_pytorch():
    o, t = _pair(IDX, [1.0, 2.0, 3.0, 4.0, 5.0], (3, 3))
    cases = [lambda lib: lib.ones(3, 2, dtype=lib.float64), lambda lib: lib.ones(4, 2),
             lambda lib: lib.ones(3), lambda lib: lib.ones(3, 2, 2)]
    for make in cases:
        with pytest.raises((RuntimeError, IndexError)) as theirs:
            torch.sparse.mm(t, make(torch))
        with pytest.raises(theirs.type) as ours:
            tritorch.sparse.mm(o, make(tritorch))
        assert str(ours.value) == str(theirs.value)
    ob = tritorch.sparse_coo_tensor([[0, 1], [1, 0]], [True, False])
    with pytest.raises(NotImplementedError, match="not implemented for 'Bool'"):
        tritorch.sparse.mm(ob, tritorch.ones(2, 2, dtype=tritorch.bool))
    with pytest.raises(RuntimeError, match="same device"):
        tritorch.sparse.mm(o, tritorch.ones(3, 2, device="cuda"))
    with pytest.raises(NotImplementedError, match="reduce"):
        tritorch.sparse.mm(o, tritorch.ones(3, 2), reduce="mean")
    hybrid = tritorch.sparse_coo_tensor([[0, 1]], [[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(RuntimeError, match="matrices expected, got 1D tensor"):     # as PyTorch
        tritorch.sparse.mm(hybrid, tritorch.ones(2, 2))
    with pytest.raises(TypeError):
        tritorch.mm(o, [[1.0]])


# ---- conversions and small ops ------------------------------------------------------------------------------------

def test_conversions_and_elementwise(device):
    o, t = _pair(IDX, [1.0, 2.0, 3.0, 4.0, 5.0], (3, 3))
    moved = o.to(device)
    assert moved.device.type == device and moved._indices().device.type == device
    assert o.to("cpu") is o and o.cuda().is_cuda and not o.cuda().cpu().is_cuda
    assert o.double().dtype is tritorch.float64 and o.to(tritorch.float16).dtype is tritorch.float16
    _same_sparse(o.t(), t.t())
    _same_sparse(o.transpose(1, 0), t.transpose(1, 0))
    _same_sparse(o * 2, t * 2)
    _same_sparse(2 * o, 2 * t)
    _same_sparse(-o, -t)
    np.testing.assert_array_equal(_np((o + o.t()).to_dense()), (t + t.t()).to_dense().numpy())
    assert not (o + o).is_coalesced()
    with pytest.raises(RuntimeError, match=r"add\(sparse, dense\) is not supported"):
        o + tritorch.ones(3, 3)
    c = o.clone()
    assert c._values().data_ptr() != o._values().data_ptr()
    assert not o.detach().requires_grad


def test_legacy_sparse_constructors():
    i, v = tritorch.tensor(IDX), tritorch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    ours = tritorch.sparse.FloatTensor(i, v, tritorch.Size([3, 3]))
    theirs = torch.sparse.FloatTensor(torch.tensor(IDX), torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]),
                                      torch.Size([3, 3]))
    _same_sparse(ours, theirs)
    assert isinstance(ours, tritorch.sparse.FloatTensor) and not isinstance(ours, tritorch.sparse.DoubleTensor)
    e, te = tritorch.sparse.DoubleTensor(2, 3), torch.sparse.DoubleTensor(2, 3)
    _same_sparse(e, te)
    assert tritorch.sparse.LongTensor((4,)).dtype is tritorch.int64
