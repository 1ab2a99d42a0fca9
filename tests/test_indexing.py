"""Indexing (getitem/setitem, basic and advanced), gather/scatter, index_select/index_add, masked ops, nonzero:
forward and backward against NumPy (np.add.at for repeated indices), on cpu and cuda."""
import numpy as np
import pytest

import tritorch as torch
from helpers import assert_close, make, to_np

F64 = torch.float64


def t64(a, device, requires_grad=False):
    return torch.tensor(np.asarray(a, dtype=np.float64), dtype=F64, device=device, requires_grad=requires_grad)


# ---- basic indexing ---------------------------------------------------------------------------------------------

BASIC = [
    (1,), (-1,), (slice(1, None, 2),), (slice(None, None, 3), 2), (Ellipsis, 1), (None, 0, Ellipsis, None),
    (slice(4, 1),), (0, slice(None), -2), (slice(-3, None), None, slice(None, None, 2)),
]


@pytest.mark.parametrize("idx", BASIC)
def test_basic_index_is_view(device, idx):
    x, ref = make((5, 3, 4), F64, device, layout="transposed")
    y = x[idx]
    np.testing.assert_array_equal(to_np(y), ref[idx])
    assert y._storage is x._storage


def test_basic_index_errors(device):
    x, _ = make((2, 3), F64, device)
    with pytest.raises(IndexError, match="index 3 is out of bounds for dimension 1 with size 3"):
        x[0, 3]
    with pytest.raises(IndexError, match="too many indices for tensor of dimension 2"):
        x[0, 0, 0]
    with pytest.raises(IndexError, match="single ellipsis"):
        x[..., ...]


# ---- advanced getitem -------------------------------------------------------------------------------------------

def _adv_cases():
    rng = np.random.default_rng(1)
    m2 = rng.integers(0, 2, (5, 3)).astype(bool)
    return [
        ("list", lambda T: [0, 4, 4, -1], lambda a: a[[0, 4, 4, -1]]),
        ("tensor2d", lambda T: T(np.array([[1, 0], [2, -5]])), lambda a: a[np.array([[1, 0], [2, -5]])]),
        ("slice_then_list", lambda T: (slice(None), [2, 0, 2]), lambda a: a[:, [2, 0, 2]]),
        ("adjacent", lambda T: (slice(1, 4), [0, 2], [3, -1]), lambda a: a[1:4, [0, 2], [3, -1]]),
        ("separated", lambda T: ([0, 4], slice(None), [1, 3]), lambda a: a[[0, 4], :, [1, 3]]),
        ("broadcast", lambda T: (T(np.array([[0], [3]])), slice(None), T(np.array([1, 2, 0]))),
         lambda a: a[np.array([[0], [3]]), :, np.array([1, 2, 0])]),
        ("none_between", lambda T: ([1, 2], None, [0, 1]), lambda a: a[[1, 2], None, [0, 1]]),
        ("ellipsis", lambda T: (Ellipsis, [3, 3, 0]), lambda a: a[..., [3, 3, 0]]),
        ("empty_list", lambda T: [], lambda a: a[np.array([], dtype=np.int64)]),
        ("empty_2nd", lambda T: (slice(None), []), lambda a: a[:, np.array([], dtype=np.int64)]),
        ("mask_full", lambda T: T(m2), lambda a: a[m2]),
        ("mask_dim1", lambda T: (slice(None), [True, False, True]), lambda a: a[:, [True, False, True]]),
        ("mask_all_false", lambda T: T(np.zeros(5, bool)), lambda a: a[np.zeros(5, bool)]),
        ("mask_all_true", lambda T: (slice(None), T(np.ones((3, 4), bool))), lambda a: a[:, np.ones((3, 4), bool)]),
        ("mask_then_slice", lambda T: (T(m2), slice(None)), lambda a: a[m2, :]),
        ("mask_and_index", lambda T: (T(np.array([1, 0, 1, 1, 0], bool)), slice(None), [1, 3, 0]),
         lambda a: a[np.array([1, 0, 1, 1, 0], bool), :, [1, 3, 0]]),
        ("numpy_array", lambda T: np.array([3, 1]), lambda a: a[np.array([3, 1])]),
        ("zero_d_tensor", lambda T: T(np.array(2)), lambda a: a[np.array(2)]),
        ("int32", lambda T: T(np.array([1, 0], dtype=np.int32)), lambda a: a[np.array([1, 0])]),
        ("bool_scalar", lambda T: (True, 1), lambda a: a[None, 1]),
    ]


ADV = _adv_cases()


@pytest.mark.parametrize("case", ADV, ids=[c[0] for c in ADV])
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_advanced_getitem_and_backward(device, case, layout):
    _, build, ref_fn = case
    x, ref = make((5, 3, 4), F64, device, layout=layout, requires_grad=True)

    def T(a):
        return torch.tensor(a, device=device)
    y = x[build(T)]
    expected = ref_fn(ref)
    assert_close(y, expected)
    g = np.random.default_rng(2).uniform(-1, 1, expected.shape)
    y.backward(t64(g, device))
    # the gradient: every element accumulates the upstream values of the outputs that read it
    pos = np.arange(ref.size).reshape(ref.shape)
    picked = ref_fn(pos).reshape(-1)
    want = np.zeros(ref.size)
    np.add.at(want, picked, g.reshape(-1))
    assert_close(x.grad, want.reshape(ref.shape))


def test_pytorch_placement_rules(device):
    x, ref = make((2, 3, 4, 5), torch.float32, device)
    # ints select first (PyTorch, unlike NumPy): the remaining advanced index stays in place
    assert tuple(x[0, :, [0, 1]].shape) == (3, 2, 5)
    assert tuple(x[:, [0, 1], :, [1, 2]].shape) == (2, 2, 4)          # separated: to the front
    assert tuple(x[:, [0, 1], [1, 2]].shape) == (2, 2, 5)             # adjacent: in place
    assert_close(x[:, [0, 1], :, [1, 2]], ref[:, [0, 1], :, [1, 2]])


def test_repeated_index_backward(device):
    x = t64(np.arange(6.0).reshape(3, 2), device, requires_grad=True)
    x[[0, 0, 1]].sum().backward()
    assert_close(x.grad, np.array([[2.0, 2.0], [1.0, 1.0], [0.0, 0.0]]))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int32, torch.bool, torch.uint8])
def test_getitem_dtypes(device, dtype):
    x, ref = make((4, 5), dtype, device, layout="strided")
    assert_close(x[[3, 0, 0], 1:], ref[[3, 0, 0], 1:], dtype)
    m = (np.arange(20).reshape(4, 5) % 3) == 0
    assert_close(x[torch.tensor(m, device=device)], ref[m], dtype)


def test_index_errors(device):
    x, _ = make((3, 4), F64, device)
    with pytest.raises(IndexError, match="index 5 is out of bounds for dimension 0 with size 3"):
        x[[0, 5]]
    with pytest.raises(IndexError, match="index -5 is out of bounds for dimension 1 with size 4"):
        x[:, torch.tensor([-5], device=device)]
    with pytest.raises(IndexError, match="tensors used as indices must be long, int, byte or bool tensors"):
        x[torch.tensor([0.0, 1.0], device=device)]
    with pytest.raises(IndexError, match="tensors used as indices must be long, int, byte or bool tensors"):
        x[[0.5]]
    with pytest.raises(IndexError, match=r"The shape of the mask \[4\] at index 0 does not match the shape of the "
                                         r"indexed tensor \[3, 4\] at index 0"):
        x[torch.ones(4, dtype=torch.bool, device=device)]
    with pytest.raises(IndexError, match="too many indices"):
        x[[0], [0], [0]]
    with pytest.raises(IndexError, match=r"shape mismatch: indexing tensors could not be broadcast together with "
                                         r"shapes \[2\], \[3\]"):
        x[[0, 1], [0, 1, 2]]


def test_cpu_index_for_cuda_tensor():
    x, ref = make((4, 3), F64, "cuda")
    idx = torch.tensor([3, 1])
    assert_close(x[idx], ref[[3, 1]])
    assert_close(x[torch.tensor([True, False, True, True])], ref[[0, 2, 3]])
    with pytest.raises(RuntimeError, match="indices should be either on cpu or on the same device"):
        make((4, 3), F64, "cpu")[0][torch.tensor([1], device="cuda")]


def test_zero_d_tensor(device):
    x = t64(3.5, device)
    assert_close(x[None], np.array([3.5]))
    assert_close(x[...], np.array(3.5))
    assert_close(x[torch.tensor(True, device=device)], np.array([3.5]))
    assert tuple(x[torch.tensor(False, device=device)].shape) == (0,)


# ---- setitem ------------------------------------------------------------------------------------------------------

SET = [
    ("int", lambda T: 1, lambda a: 1),
    ("slice_step", lambda T: (slice(None, None, 2), -1), lambda a: (slice(None, None, 2), -1)),
    ("list", lambda T: [0, 3, -1], lambda a: [0, 3, -1]),
    ("adjacent", lambda T: (slice(None), [0, 2], [1, 1]), lambda a: (slice(None), [0, 2], [1, 1])),
    ("separated", lambda T: ([1, 2], slice(None), [0, 3]), lambda a: ([1, 2], slice(None), [0, 3])),
    ("mask", lambda T: T((np.arange(60).reshape(5, 3, 4) % 7) < 3),
     lambda a: (np.arange(60).reshape(5, 3, 4) % 7) < 3),
    ("mask_all_false", lambda T: T(np.zeros((5, 3), bool)), lambda a: np.zeros((5, 3), bool)),
    ("empty_list", lambda T: [], lambda a: np.array([], dtype=np.int64)),
]


@pytest.mark.parametrize("case", SET, ids=[c[0] for c in SET])
@pytest.mark.parametrize("value_kind", ["scalar", "tensor"])
def test_setitem(device, case, value_kind):
    _, build, np_idx = case
    base = np.random.default_rng(3).uniform(-1, 1, (5, 3, 8))
    parent = t64(base, device)
    x = parent[..., ::2]                             # non-contiguous destination
    ref = base[..., ::2].copy()

    def T(a):
        return torch.tensor(a, device=device)
    target_shape = ref[np_idx(ref)].shape
    if value_kind == "scalar":
        value, vref = 2.5, 2.5
    else:
        vshape = target_shape[-1:] if target_shape else ()       # broadcast along the leading dims
        vref = np.random.default_rng(4).uniform(-1, 1, vshape)
        value = torch.tensor(vref, dtype=torch.float32, device=device)     # cast to the destination dtype
        vref = vref.astype(np.float32).astype(np.float64)
    v0 = x._version
    x[build(T)] = value
    ref[np_idx(ref)] = vref
    assert_close(x, ref)
    assert x._version > v0
    assert_close(parent[..., ::2], ref)               # written through the strides into the parent's storage
    assert_close(parent[..., 1::2], base[..., 1::2])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int64, torch.bool])
def test_setitem_dtypes(device, dtype):
    x, ref = make((4, 3), dtype, device)
    ref = ref.copy()
    x[[2, 0]] = 1
    ref[[2, 0]] = 1
    x[:, 1] = torch.tensor([0, 1, 0, 1], device=device).to(dtype)
    ref[:, 1] = [0, 1, 0, 1]
    assert_close(x, ref, dtype)


def test_setitem_errors(device):
    w = torch.zeros(3, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place"):
        w[0] = 1.0
    x = torch.zeros(3, 4, device=device)
    with pytest.raises(RuntimeError, match="shape mismatch: value tensor of shape \\[3\\] cannot be broadcast to "
                                           "indexing result of shape \\[2, 4\\]"):
        x[[0, 1]] = torch.ones(3, device=device)
    with pytest.raises(RuntimeError, match="The expanded size of the tensor"):
        x[0] = torch.ones(3, device=device)
    with pytest.raises(IndexError, match="index 3 is out of bounds for dimension 0 with size 3"):
        x[[3]] = 1.0


def test_setitem_autograd(device):
    a = t64(np.arange(12.0).reshape(3, 4), device, requires_grad=True)
    v = t64([10.0, 20.0], device, requires_grad=True)
    y = a * 1.0
    y[[0, 2], 1] = v                 # non-leaf: its history is rebased onto an IndexPut node
    assert y.grad_fn.name() == "IndexPutBackward0"
    y[1:, 3] = 0.0
    g = np.arange(12.0).reshape(3, 4) + 1
    y.backward(t64(g, device))
    ga = g.copy()
    ga[[0, 2], 1] = 0
    ga[1:, 3] = 0
    assert_close(a.grad, ga)
    assert_close(v.grad, g[[0, 2], 1])


def test_setitem_value_requires_grad_into_plain_tensor(device):
    v = t64([[1.0, 2.0]], device, requires_grad=True)
    out = torch.zeros(3, 2, dtype=F64, device=device)
    out[torch.tensor([True, False, True], device=device)] = v
    assert out.requires_grad
    out.backward(t64(np.arange(6.0).reshape(3, 2), device))
    assert_close(v.grad, np.array([[4.0 + 0, 6.0]]))


def test_index_put_accumulate(device):
    x = torch.zeros(4, 2, dtype=F64, device=device)
    idx = torch.tensor([0, 3, 0, 0], device=device)
    vals = np.arange(8.0).reshape(4, 2)
    x.index_put_((idx,), t64(vals, device), accumulate=True)
    ref = np.zeros((4, 2))
    np.add.at(ref, [0, 3, 0, 0], vals)
    assert_close(x, ref)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int16, torch.float32])
def test_index_put_accumulate_dtypes(device, dtype):
    x = torch.zeros(3, dtype=dtype, device=device)
    x.index_put_((torch.tensor([1, 1, 2, 1], device=device),), torch.ones(4, dtype=dtype, device=device),
                 accumulate=True)
    assert_close(x, np.array([0, 3, 1]), dtype)


# ---- gather / scatter -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_gather(device, dim, layout):
    x, ref = make((4, 5), F64, device, layout=layout, requires_grad=True)
    d = dim % 2
    ishape = (3, 4)
    idx = np.random.default_rng(5).integers(0, ref.shape[d], ishape)
    out = torch.gather(x, dim, torch.tensor(idx, device=device))
    sub = ref[:ishape[0], :] if d == 1 else ref[:, :ishape[1]]
    assert_close(out, np.take_along_axis(sub, idx, d))
    g = np.random.default_rng(6).uniform(-1, 1, ishape)
    out.backward(t64(g, device))
    want = np.zeros_like(ref)
    rows, cols = np.indices(ishape)
    np.add.at(want, (idx, cols) if d == 0 else (rows, idx), g)
    assert_close(x.grad, want)


def test_gather_errors(device):
    x, _ = make((3, 4), F64, device)
    with pytest.raises(IndexError, match="index 4 is out of bounds for dimension 1 with size 4"):
        x.gather(1, torch.tensor([[0, 4]], device=device))
    with pytest.raises(IndexError, match="index -1 is out of bounds"):
        x.gather(0, torch.tensor([[-1]], device=device))
    with pytest.raises(RuntimeError, match="Expected dtype int64 for index"):
        x.gather(0, torch.tensor([[0]], dtype=torch.int32, device=device))
    with pytest.raises(RuntimeError, match="Index tensor must have the same number of dimensions as input tensor"):
        x.gather(0, torch.tensor([0], device=device))
    with pytest.raises(RuntimeError, match="Size does not match at dimension 1"):
        x.gather(0, torch.zeros(1, 5, dtype=torch.int64, device=device))


@pytest.mark.parametrize("add", [False, True])
def test_scatter_and_scatter_add(device, add):
    x, ref = make((4, 3), F64, device, requires_grad=True)
    src, sref = make((3, 3), F64, device, layout="transposed", seed=7, requires_grad=True)
    if add:
        idx = np.array([[0, 1, 3], [0, 1, 3], [2, 1, 0]])          # repeated: accumulated
    else:
        idx = np.array([[0, 1, 3], [1, 2, 0]])                       # unique per column: deterministic
    ti = torch.tensor(idx, device=device)
    out = torch.scatter_add(x, 0, ti, src) if add else torch.scatter(x, 0, ti, src)
    want = ref.copy()
    cols = np.indices(idx.shape)[1]
    s = sref[:idx.shape[0]]
    if add:
        np.add.at(want, (idx, cols), s)
    else:
        want[idx, cols] = s
    assert_close(out, want)
    g = np.random.default_rng(8).uniform(-1, 1, (4, 3))
    out.backward(t64(g, device))
    gx = g.copy()
    if not add:
        gx[idx, cols] = 0
    assert_close(x.grad, gx)
    gs = np.zeros((3, 3))
    gs[:idx.shape[0]] = g[idx, cols]
    assert_close(src.grad, gs)


def test_scatter_value_and_inplace(device):
    x = torch.zeros(2, 5, dtype=F64, device=device)
    x.scatter_(1, torch.tensor([[4, 0]], device=device), 1.5)
    ref = np.zeros((2, 5))
    ref[0, [4, 0]] = 1.5
    assert_close(x, ref)
    y = torch.ones(5, dtype=torch.float16, device=device)
    y.scatter_add_(0, torch.tensor([1, 1, 1], device=device), torch.ones(3, dtype=torch.float16, device=device))
    assert_close(y, np.array([1, 4, 1, 1, 1]), torch.float16)
    with pytest.raises(IndexError, match="index 5 is out of bounds for dimension 1 with size 5"):
        x.scatter_(1, torch.tensor([[5]], device=device), 0.0)


# ---- index_select / index_add -----------------------------------------------------------------------------------

@pytest.mark.parametrize("dim", [0, 1, -1])
def test_index_select(device, dim):
    x, ref = make((3, 5, 2), F64, device, layout="strided", requires_grad=True)
    idx = np.array([4, 0, 4, 1]) % ref.shape[dim]
    out = torch.index_select(x, dim, torch.tensor(idx, device=device))
    assert_close(out, np.take(ref, idx, axis=dim))
    g = np.random.default_rng(9).uniform(-1, 1, out.shape)
    out.backward(t64(g, device))
    want = np.zeros_like(ref)
    key = [slice(None)] * 3
    key[dim] = idx
    np.add.at(want, tuple(key), g)
    assert_close(x.grad, want)


def test_index_select_errors(device):
    x, _ = make((3, 4), F64, device)
    with pytest.raises(IndexError, match="index 3 is out of bounds for dimension 0 with size 3"):
        x.index_select(0, torch.tensor([3], device=device))
    with pytest.raises(IndexError, match="index -1 is out of bounds"):
        x.index_select(0, torch.tensor([-1], device=device))
    with pytest.raises(IndexError, match="Index is supposed to be a vector"):
        x.index_select(0, torch.tensor([[0]], device=device))
    assert tuple(x.index_select(1, torch.tensor([], dtype=torch.int64, device=device)).shape) == (3, 0)


def test_index_add(device):
    x, ref = make((5, 3), F64, device, requires_grad=True)
    src, sref = make((4, 3), F64, device, seed=3, requires_grad=True)
    idx = np.array([0, 4, 0, 2])
    out = torch.index_add(x, 0, torch.tensor(idx, device=device), src, alpha=2.0)
    want = ref.copy()
    np.add.at(want, idx, 2.0 * sref)
    assert_close(out, want)
    g = np.random.default_rng(10).uniform(-1, 1, (5, 3))
    out.backward(t64(g, device))
    assert_close(x.grad, g)
    assert_close(src.grad, 2.0 * g[idx])
    y = torch.zeros(2, 3, dtype=torch.int32, device=device)
    y.index_add_(1, torch.tensor([2, 2], device=device), torch.ones(2, 2, dtype=torch.int32, device=device))
    assert_close(y, np.array([[0, 0, 2], [0, 0, 2]]))
    with pytest.raises(RuntimeError, match="source shape"):
        y.index_add_(1, torch.tensor([2], device=device), torch.ones(2, 2, dtype=torch.int32, device=device))


# ---- masks and nonzero ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(), (0,), (7,), (3, 5), (2, 1, 3, 2)])
@pytest.mark.parametrize("fill", ["random", "none", "all"])
def test_nonzero(device, shape, fill):
    rng = np.random.default_rng(11)
    a = {"random": rng.integers(0, 2, shape), "none": np.zeros(shape, np.int64),
         "all": np.ones(shape, np.int64)}[fill].astype(np.float32)
    x = torch.tensor(a, device=device)
    nz = torch.nonzero(x)
    assert nz.dtype is torch.int64
    np.testing.assert_array_equal(to_np(nz), np.argwhere(a))
    parts = x.nonzero(as_tuple=True)
    if a.ndim == 0:
        assert len(parts) == 1 and tuple(parts[0].shape) == (int(a != 0),)
    else:
        for p, e in zip(parts, np.nonzero(a)):
            np.testing.assert_array_equal(to_np(p), e)
    w = torch.where(x != 0)
    assert len(w) == max(a.ndim, 1)


def test_nonzero_noncontiguous(device):
    x, ref = make((4, 6), torch.int32, device, layout="transposed")
    np.testing.assert_array_equal(to_np(x.nonzero()), np.argwhere(ref))


@pytest.mark.parametrize("mask_shape", [(3, 4), (4,), (3, 1)])
def test_masked_fill(device, mask_shape):
    x, ref = make((3, 4), F64, device, layout="transposed", requires_grad=True)
    m = np.random.default_rng(12).integers(0, 2, mask_shape).astype(bool)
    tm = torch.tensor(m, device=device)
    out = x.masked_fill(tm, -7.0)
    assert_close(out, np.where(m, -7.0, ref))
    g = np.random.default_rng(13).uniform(-1, 1, (3, 4))
    out.backward(t64(g, device))
    assert_close(x.grad, np.where(m, 0.0, g))


def test_masked_fill_value_tensor_grad(device):
    x = t64(np.arange(6.0).reshape(2, 3), device, requires_grad=True)
    v = t64(2.0, device, requires_grad=True)
    m = np.array([[True, False, True], [False, False, True]])
    out = torch.masked_fill(x, torch.tensor(m, device=device), v)
    out.sum().backward()
    assert_close(v.grad, np.array(3.0))
    assert_close(x.grad, np.where(m, 0.0, 1.0))
    with pytest.raises(RuntimeError, match="only supports a 0-dimensional value tensor"):
        x.masked_fill(torch.tensor(m, device=device), t64([1.0], device))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int64, torch.bool])
def test_masked_fill_inplace(device, dtype):
    x, ref = make((5, 3), dtype, device, layout="strided")
    ref = ref.copy()
    m = np.random.default_rng(14).integers(0, 2, (5, 3)).astype(bool)
    v0 = x._version
    x.masked_fill_(torch.tensor(m, device=device), 1)
    ref[m] = 1
    assert_close(x, ref, dtype)
    assert x._version > v0
    with pytest.raises(RuntimeError, match="expected BoolTensor for mask"):
        x.masked_fill_(torch.tensor(m.astype(np.int64), device=device), 1)


@pytest.mark.parametrize("mask_shape", [(3, 4), (4,), (1, 4)])
def test_masked_select(device, mask_shape):
    x, ref = make((3, 4), F64, device, layout="transposed", requires_grad=True)
    m = np.random.default_rng(15).integers(0, 2, mask_shape).astype(bool)
    out = torch.masked_select(x, torch.tensor(m, device=device))
    mb = np.broadcast_to(m, (3, 4))
    assert_close(out, ref[mb])
    g = np.arange(out.numel(), dtype=np.float64) + 1
    out.backward(t64(g, device))
    want = np.zeros((3, 4))
    want[mb] = g
    assert_close(x.grad, want)


def test_masked_select_all_false_and_dtypes(device):
    x, _ = make((2, 3), torch.float16, device)
    assert tuple(torch.masked_select(x, torch.zeros(2, 3, dtype=torch.bool, device=device)).shape) == (0,)
    y, yref = make((2, 3), torch.bfloat16, device)
    assert_close(y.masked_select(torch.ones(3, dtype=torch.bool, device=device)), yref.reshape(-1), torch.bfloat16)


# ---- in-place writes into views, gradcheck --------------------------------------------------------------------------

def test_setitem_on_view_rebases_base(device):
    a = t64(np.arange(12.0).reshape(3, 4), device, requires_grad=True)
    v = t64([10.0, 20.0], device, requires_grad=True)
    y = a * 1.0
    row = y[1]
    row[[0, 2]] = v                      # a write into a view: recorded on y (CopySlices)
    assert y.grad_fn.name() == "CopySlices"
    assert_close(y[1], np.array([10.0, 5.0, 20.0, 7.0]))
    g = np.arange(12.0).reshape(3, 4)
    y.backward(t64(g, device))
    ga = g.copy()
    ga[1, [0, 2]] = 0
    assert_close(a.grad, ga)
    assert_close(v.grad, g[1, [0, 2]])
    out = torch.zeros(3, 4, dtype=F64, device=device)
    out[0][1:3] = v                      # a view of a tensor that did not require grad
    assert out.requires_grad
    v.grad = None
    out.backward(t64(g, device))
    assert_close(v.grad, g[0, 1:3])


def test_inplace_on_view_of_leaf_is_refused(device):
    w = torch.zeros(3, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="a view of a leaf Variable that requires grad is being used in an "
                                           "in-place operation"):
        w[1:][0] = 1.0


def test_masked_fill_inplace_on_view_grad(device):
    a = t64(np.ones((2, 4)), device, requires_grad=True)
    z = a * 2.0
    z[0].masked_fill_(torch.tensor([True, False, False, True], device=device), 0.0)
    z.sum().backward()
    assert_close(a.grad, np.array([[0.0, 2.0, 2.0, 0.0], [2.0, 2.0, 2.0, 2.0]]))


GRADCHECK = [
    ("getitem", lambda x, dev: x[[0, 2, 0], 1:]),
    ("getitem_mask", lambda x, dev: x[torch.tensor([[True, False, True], [False, True, True], [True] * 3],
                                                   device=dev)]),
    ("gather", lambda x, dev: x.gather(1, torch.tensor([[2, 2], [0, 1], [1, 1]], device=dev))),
    ("index_select", lambda x, dev: x.index_select(0, torch.tensor([2, 2, 1], device=dev))),
    ("masked_select", lambda x, dev: x.masked_select(torch.tensor([True, False, True], device=dev))),
    ("masked_fill", lambda x, dev: x.masked_fill(torch.tensor([False, True, True], device=dev), 3.0) * x),
    ("scatter_add", lambda x, dev: torch.zeros(2, 3, dtype=F64, device=dev).scatter_add(
        0, torch.tensor([[1, 0, 1], [1, 1, 0]], device=dev), x[:2])),
    ("index_add", lambda x, dev: torch.ones(4, 3, dtype=F64, device=dev).index_add(
        0, torch.tensor([3, 0, 3], device=dev), x, alpha=-2.0)),
]


@pytest.mark.parametrize("case", GRADCHECK, ids=[c[0] for c in GRADCHECK])
def test_gradcheck(device, case):
    x = t64(np.random.default_rng(16).uniform(-1, 1, (3, 3)), device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: case[1](t, device), (x,))


@pytest.mark.parametrize("case", GRADCHECK[:3], ids=[c[0] for c in GRADCHECK[:3]])
def test_gradgradcheck(device, case):
    x = t64(np.random.default_rng(17).uniform(-1, 1, (3, 3)), device, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: case[1](t, device) ** 2, (x,))


def test_setitem_from_overlapping_self(device):
    x = t64(np.arange(5.0), device)
    x[[4, 3, 2, 1, 0]] = x
    assert_close(x, np.arange(5.0)[::-1])
    y = t64(np.arange(6.0), device)
    y[1:] = y[:-1]
    assert_close(y, np.array([0.0, 0, 1, 2, 3, 4]))


def test_index_select_zero_d(device):
    x = t64(4.5, device, requires_grad=True)
    out = x.index_select(0, torch.tensor([0], device=device))
    assert tuple(out.shape) == ()
    out.backward()
    assert_close(x.grad, np.array(1.0))
    with pytest.raises(IndexError, match="Index to scalar can have only 1 value"):
        x.index_select(0, torch.tensor([0, 0], device=device))


def test_index_add_alpha_for_integer_and_bool_tensors(device):
    """Issue 14: alpha is read in self's dtype as PyTorch does: truncated toward zero for integers (0.5 adds
    nothing), wrapped for uint8, anything nonzero for bool, an overflow error where the dtype cannot hold it."""
    def add(vals, dtype, alpha, idx=(0, 1)):
        x = torch.tensor(vals, dtype=dtype, device=device)
        src = torch.tensor([3, 5, 7][:len(idx)], dtype=dtype, device=device)
        return x.index_add(0, torch.tensor(list(idx), device=device), src, alpha=alpha).tolist()
    assert add([1, 2], torch.int64, 0.5) == [1, 2]
    assert add([1, 2], torch.int64, 2.7) == [7, 12]
    assert add([1, 2], torch.int32, -2.7) == [-5, -8]
    assert add([1, 2], torch.int64, 2 ** 40) == [3 * 2 ** 40 + 1, 5 * 2 ** 40 + 2]
    assert add([1, 2], torch.int8, 127.9, idx=(0, 0)) == [1 + 127 * 8 - 1024, 2]          # int8 arithmetic wraps
    assert add([1, 2], torch.uint8, -1) == [254, 253]
    assert add([1, 2], torch.float32, 0.5) == [2.5, 4.5]
    assert add([False, False], torch.bool, 0.5) == [True, True]
    assert add([False, False], torch.bool, 0) == [False, False]
    assert add([1, 2], torch.int64, torch.tensor(2)) == [7, 12]
    for dtype, alpha, name in ((torch.int8, 128.0, "int8_t"), (torch.uint8, -0.5, "uint8_t"),
                               (torch.int64, float("nan"), "int64_t"), (torch.float16, 1e10, "c10::Half")):
        with pytest.raises(RuntimeError, match=f"value cannot be converted to type {name} without overflow"):
            add([1, 2], dtype, alpha)
    x = torch.zeros(3, dtype=torch.int32, device=device)
    x.index_add_(0, torch.tensor([2, 0, 2], device=device), torch.ones(3, dtype=torch.int32, device=device), alpha=3.9)
    assert x.tolist() == [3, 0, 6]


def test_zero_d_integer_tensor_index_drops_the_dim(device):
    """Issue 14: a 0-d integer tensor indexes like an int (no dim left), alone or with other indices."""
    x, ref = make((3, 4), F64, device)
    one, two = torch.tensor(1, device=device), torch.tensor(2, device=device)
    v = torch.arange(3.0, device=device)[one]
    assert tuple(v.shape) == () and v.item() == 1.0
    for idx, want in (((one,), ref[1]), ((one, 0), ref[1, 0]), ((one, two), ref[1, 2]),
                      ((slice(None), one), ref[:, 1]), ((Ellipsis, torch.tensor(-1, device=device)), ref[:, -1]),
                      ((one, None), ref[1, None]),
                      ((torch.tensor(1, dtype=torch.int32, device=device), two), ref[1, 2]),
                      ((torch.tensor(True, device=device),), ref[None]),
                      ((torch.tensor(False, device=device), one), ref[None][:0, 1]),
                      ((one, torch.tensor([0, 3], device=device)), ref[1, [0, 3]])):
        out = x[idx]
        assert tuple(out.shape) == np.shape(want), idx
        np.testing.assert_array_equal(to_np(out), want)
    y = t64(ref, device, requires_grad=True)
    y[one, two].backward()
    g = np.zeros((3, 4))
    g[1, 2] = 1
    assert_close(y.grad, g)
    z = x.clone()
    z[one] = 5.0
    z[:, two] = t64([7.0, 8.0, 9.0], device)
    z[torch.tensor(0, device=device), one] = t64(-1.0, device)
    want = ref.copy()
    want[1] = 5.0
    want[:, 2] = [7.0, 8.0, 9.0]
    want[0, 1] = -1.0
    assert_close(z, want)


def test_scalar_fills_check_overflow(device):
    """Issue 14: masked_fill, scatter and setitem refuse a number the dtype cannot hold (RuntimeError, PyTorch's
    message), even on a size-0 tensor; in-range numbers convert as in PyTorch."""
    m = torch.tensor([True, False, True], device=device)

    def z(dtype, n=3):
        return torch.zeros(n, dtype=dtype, device=device)
    for fill in (lambda t: t.masked_fill(m, 1e10), lambda t: t.masked_fill_(m, float("nan")),
                 lambda t: t.masked_fill(m, torch.tensor(2 ** 40, device=device)),
                 lambda t: t.scatter(0, torch.tensor([1], device=device), 2 ** 31),
                 lambda t: t.__setitem__(1, 2 ** 31),
                 lambda t: t.__setitem__(torch.tensor([0, 2], device=device), 1e10)):
        with pytest.raises(RuntimeError, match="value cannot be converted to type int without overflow"):
            fill(z(torch.int32))
    with pytest.raises(RuntimeError, match="value cannot be converted to type uint8_t without overflow"):
        z(torch.uint8).masked_fill(m, float("nan"))
    with pytest.raises(RuntimeError, match="value cannot be converted to type uint8_t without overflow"):
        z(torch.uint8, 0).masked_fill(torch.tensor([], dtype=torch.bool, device=device), 300)
    with pytest.raises(RuntimeError, match="value cannot be converted to type c10::Half without overflow"):
        z(torch.float16).masked_fill(m, 70000)
    assert z(torch.uint8).masked_fill(m, -1).tolist() == [255, 0, 255]
    assert z(torch.int64).masked_fill(m, -1.5).tolist() == [-1, 0, -1]
    assert z(torch.bool).masked_fill(m, float("nan")).tolist() == [True, False, True]
    assert z(torch.uint8).scatter(0, torch.tensor([1], device=device), 255.9).tolist() == [0, 255, 0]
    h = z(torch.float16)
    h[1] = 1e10                                          # PyTorch: setitem into half types rounds to inf
    assert to_np(h).tolist() == [0.0, np.inf, 0.0]
