"""cat / stack / hstack / vstack / dstack / column_stack, repeat / tile: forward and backward against NumPy, cpu and
cuda."""
import numpy as np
import pytest

import tritorch as torch
from tritorch.profiler import profile
from helpers import assert_close, make, to_np

F64 = torch.float64


@pytest.mark.parametrize("dim", [0, 1, 2, -1, -3])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "strided"])
def test_cat(device, dim, layout):
    shapes = [(3, 2, 5), (3, 2, 5), (3, 2, 5)]
    shapes = [tuple(s if k != dim % 3 else s + i for k, s in enumerate(sh)) for i, sh in enumerate(shapes)]
    ins = [make(s, F64, device, layout=layout if i != 1 else "contiguous", seed=i, requires_grad=True)
           for i, s in enumerate(shapes)]
    out = torch.cat([t for t, _ in ins], dim)
    want = np.concatenate([r for _, r in ins], axis=dim)
    assert_close(out, want)
    assert out.is_contiguous()
    g = np.random.default_rng(1).uniform(-1, 1, want.shape)
    out.backward(torch.tensor(g, device=device))
    for (t, _), gi in zip(ins, np.split(g, np.cumsum([s[dim] for s in shapes])[:-1], axis=dim)):
        assert_close(t.grad, gi)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int8, torch.bool])
def test_cat_batches_contiguous_pieces_into_one_launch(dtype):
    """Contiguous inputs of the result's dtype: one launch of the batched kernel per eight (bfloat16 in the
    interpreter: a strided copy each); odd and unequal sizes, an empty piece, 1-element pieces, every element written
    (outputs are poisoned in the tests)."""
    rng = np.random.default_rng(5)
    for shapes, dim in ((((3, 5), (7, 5), (1, 5)), 0), (((2, 1, 3), (2, 6, 3), (2, 0, 3), (2, 11, 3)), 1),
                        ([(4, 3, 2 + k % 3) for k in range(11)], -1), (((1,), (1,)), 0)):
        refs = [rng.uniform(-50, 50, s).astype(np.float32) for s in shapes]
        ins = [torch.tensor(r, device="cuda").to(dtype) for r in refs]
        with profile() as prof:
            out = torch.cat(ins, dim)
        want = np.concatenate([to_np(t) for t in ins], axis=dim)
        np.testing.assert_array_equal(to_np(out), want)
        live = sum(t.numel() > 0 for t in ins)
        interpreted_bf16 = torch.cuda.is_interpreted() and dtype is torch.bfloat16
        assert prof.kernel_launches() == (live if interpreted_bf16 else -(-live // 8))


def test_cat_mixes_batched_and_copied_pieces():
    """Pieces of the result's dtype (contiguous, or strided with at most four dims) go in one batched launch; a
    piece of another dtype, or strided with five dims, takes the strided copy."""
    a, ra = make((2, 1, 3, 1, 6), torch.float32, "cuda", seed=1)
    b, rb = make((4, 1, 1, 2, 3), torch.float32, "cuda", seed=2)
    b, rb = b.permute(3, 2, 4, 1, 0), rb.transpose(3, 2, 4, 1, 0)     # five strided dims
    c, rc = make((2, 1, 3, 1, 2), torch.float16, "cuda", seed=3)
    with profile() as prof:
        out = torch.cat([a, b, a, c], -1)
    assert_close(out, np.concatenate([ra, rb, ra, rc.astype(np.float32)], -1), torch.float32)
    assert prof.kernel_launches() == 3
    x, rx = make((5, 4, 3), torch.float32, "cuda", layout="transposed", seed=4)   # strided, three dims: batched
    with profile() as prof:
        out = torch.cat([x, x[:, 1:], x.transpose(0, 2)[:, :3].transpose(0, 2)], 1)
    assert_close(out, np.concatenate([rx, rx[:, 1:], rx.transpose(2, 1, 0)[:, :3].transpose(2, 1, 0)], 1))
    assert prof.kernel_launches() == 1


@pytest.mark.parametrize("dim", [0, 1, 2, 3])
def test_cat_batches_strided_four_dim_pieces_along_each_dim(dim):
    """Four-dim strided pieces (each its own permutation) in one launch, joined along each dim: every index of the
    kernel's coordinates and of the result's offset."""
    rng = np.random.default_rng(dim)
    base = [2, 3, 4, 5]
    ins, refs = [], []
    for k, perm in enumerate(((3, 1, 0, 2), (0, 1, 2, 3), (2, 0, 3, 1))):
        shape = list(base)
        shape[dim] += k
        r = rng.uniform(-1, 1, [shape[p] for p in perm]).astype(np.float32)
        inv = np.argsort(perm)
        ins.append(torch.tensor(r, device="cuda").permute(*inv.tolist()))
        refs.append(r.transpose(inv))
    with profile() as prof:
        out = torch.cat(ins, dim)
    np.testing.assert_array_equal(to_np(out), np.concatenate(refs, dim))
    assert prof.kernel_launches() == 1


def test_cat_aliases_and_odd_sizes(device):
    a, ra = make((1, 7), torch.float32, device)
    b, rb = make((0, 7), torch.float32, device)
    c, rc = make((5, 7), torch.float32, device, layout="transposed")
    want = np.concatenate([ra, rb, rc])
    for fn in (torch.cat, torch.concat, torch.concatenate):
        assert_close(fn((a, b, c)), want)
    assert_close(torch.cat([a], 1), ra)


def test_cat_promotes_dtypes(device):
    i = torch.tensor([[1, 2]], dtype=torch.int32, device=device)
    f = torch.tensor([[0.5, 1.5]], dtype=torch.float16, device=device)
    b = torch.tensor([[True, False]], device=device)
    out = torch.cat([i, f, b])
    assert out.dtype is torch.float16
    assert_close(out, np.array([[1, 2], [0.5, 1.5], [1, 0]]), torch.float16)
    out = torch.cat([b, torch.tensor([[3, 4]], dtype=torch.int64, device=device)], 1)
    assert out.dtype is torch.int64
    np.testing.assert_array_equal(to_np(out), [[1, 0, 3, 4]])
    bf = torch.tensor([1.0], dtype=torch.bfloat16, device=device)
    assert torch.cat([bf, torch.tensor([2.0], dtype=torch.float16, device=device)]).dtype is torch.float32


def test_cat_grad_cast_back_to_input_dtype(device):
    a = torch.tensor([1.0, 2.0], dtype=torch.float32, device=device, requires_grad=True)
    b = torch.tensor([3.0], dtype=F64, device=device, requires_grad=True)
    out = torch.cat([a, b])
    assert out.dtype is F64
    out.backward(torch.tensor([1.0, 2.0, 3.0], dtype=F64, device=device))
    assert a.grad.dtype is torch.float32 and b.grad.dtype is F64
    assert_close(a.grad, np.array([1.0, 2.0]))
    assert_close(b.grad, np.array([3.0]))


def test_cat_skips_legacy_empty(device):
    x, rx = make((2, 3), F64, device, requires_grad=True)
    e = torch.tensor([], dtype=F64, device=device, requires_grad=True)
    out = torch.cat([e, x, e], 1)
    assert_close(out, rx)
    out.sum().backward()
    assert_close(x.grad, np.ones((2, 3)))
    assert tuple(e.grad.shape) == (0,)
    assert tuple(torch.cat([e, e]).shape) == (0,)


def test_cat_errors(device):
    a = torch.zeros(2, 3, device=device)
    with pytest.raises(RuntimeError, match="Sizes of tensors must match except in dimension 1. Expected size 2 but "
                                           "got size 3 for tensor number 1 in the list."):
        torch.cat([a, torch.zeros(3, 3, device=device)], 1)
    with pytest.raises(RuntimeError, match="Tensors must have same number of dimensions: got 2 and 3"):
        torch.cat([a, torch.zeros(2, 3, 1, device=device)])
    with pytest.raises(RuntimeError, match="zero-dimensional tensor \\(at position 1\\) cannot be concatenated"):
        torch.cat([a, torch.zeros((), device=device)])
    with pytest.raises(RuntimeError, match="expected a non-empty list of Tensors"):
        torch.cat([])
    with pytest.raises(IndexError, match="Dimension out of range"):
        torch.cat([a, a], 2)
    with pytest.raises(TypeError, match="must be tuple of Tensors"):
        torch.cat(a)


def test_cat_device_mismatch():
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        torch.cat([torch.zeros(2), torch.zeros(2, device="cuda")])


def test_cat_out(device):
    out = torch.empty(4, dtype=F64, device=device)
    res = torch.cat([torch.ones(2, dtype=F64, device=device), torch.zeros(2, dtype=F64, device=device)], out=out)
    assert res is out
    assert_close(out, np.array([1.0, 1.0, 0.0, 0.0]))


@pytest.mark.parametrize("dim", [0, 1, 2, -1])
def test_stack(device, dim):
    ins = [make((2, 3), F64, device, layout="transposed" if i else "contiguous", seed=i, requires_grad=True)
           for i in range(3)]
    out = torch.stack([t for t, _ in ins], dim)
    want = np.stack([r for _, r in ins], axis=dim)
    assert_close(out, want)
    g = np.random.default_rng(2).uniform(-1, 1, want.shape)
    out.backward(torch.tensor(g, device=device))
    for i, (t, _) in enumerate(ins):
        assert_close(t.grad, np.take(g, i, axis=dim))


def test_stack_zero_d_and_errors(device):
    a = torch.tensor(1.0, device=device)
    assert_close(torch.stack([a, a * 2]), np.array([1.0, 2.0]))
    with pytest.raises(RuntimeError, match=r"stack expects each tensor to be equal size, but got \[2\] at entry 0 "
                                           r"and \[3\] at entry 1"):
        torch.stack([torch.zeros(2, device=device), torch.zeros(3, device=device)])
    with pytest.raises(IndexError, match="Dimension out of range"):
        torch.stack([a, a], 2)


def test_hstack_vstack_dstack_column_stack(device):
    a, ra = make((3,), torch.float32, device)
    b, rb = make((3,), torch.float32, device, seed=1)
    m, rm = make((3, 2), torch.float32, device, layout="transposed", seed=2)
    assert_close(torch.hstack([a, b]), np.hstack([ra, rb]))
    assert_close(torch.hstack([m, m]), np.hstack([rm, rm]))
    assert_close(torch.vstack([a, b]), np.vstack([ra, rb]))
    assert_close(torch.row_stack([a, b]), np.vstack([ra, rb]))
    assert_close(torch.dstack([a, b]), np.dstack([ra, rb]))
    assert_close(torch.dstack([m, m]), np.dstack([rm, rm]))
    assert_close(torch.column_stack([a, m]), np.column_stack([ra, rm]))
    z = torch.tensor(2.0, device=device)
    assert_close(torch.hstack([z, a]), np.hstack([2.0, ra]))
    assert_close(torch.vstack([z, z]), np.vstack([2.0, 2.0]))


def test_cat_gradcheck(device):
    a = torch.tensor(np.random.default_rng(3).uniform(-1, 1, (2, 3)), device=device, requires_grad=True)
    b = torch.tensor(np.random.default_rng(4).uniform(-1, 1, (2, 1)), device=device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y: torch.cat([x, y * y], 1), (a, b))
    assert torch.autograd.gradgradcheck(lambda x, y: torch.stack([x * y, x], -1) ** 2, (a, b))


# ---- repeat / tile ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,layout,reps", [((2, 3), "contiguous", (2, 1)), ((3, 4), "transposed", (1, 2, 3)),
                                               ((5,), "strided", (3,)), ((), "contiguous", (2, 2)),
                                               ((0, 2), "contiguous", (2, 3)), ((2, 3), "contiguous", (0, 1))])
def test_repeat_matches_numpy_tile(device, shape, layout, reps):
    x, ref = make(shape, device=device, layout=layout)
    out = x.repeat(*reps)
    assert out.device == x.device and out.is_contiguous()
    assert_close(out, np.tile(ref, reps))
    assert_close(x.repeat(list(reps)), np.tile(ref, reps))


def test_repeat_backward_sums_the_copies(device):
    x, _ = make((2, 3), device=device, requires_grad=True)
    g, gref = make((4, 9), device=device, seed=5)
    x.repeat(2, 3).backward(g)
    assert_close(x.grad, gref.reshape(2, 2, 3, 3).sum(axis=(0, 2)))


@pytest.mark.parametrize("dims", [(2,), (2, 2), (1, 2, 3), 3])
def test_tile(device, dims):
    x, ref = make((2, 3), device=device)
    assert_close(torch.tile(x, dims if isinstance(dims, tuple) else (dims,)),
                 np.tile(ref, dims))
    assert_close(x.tile(dims if isinstance(dims, tuple) else (dims,)), np.tile(ref, dims))


def test_repeat_bad_input(device):
    x = torch.ones(2, 3, device=device)
    with pytest.raises(RuntimeError, match="can not be smaller than number of dimensions"):
        x.repeat(2)
    with pytest.raises(RuntimeError, match="negative dimension"):
        x.repeat(2, -1)
    with pytest.raises(TypeError, match="must be a tuple of ints"):
        x.repeat(2.0, 1)


def test_type_as(device):
    x = torch.ones(2, device=device)
    assert x.type_as(torch.zeros(1, dtype=torch.int64)).dtype is torch.int64
    assert x.type_as(x) is x                                  # already that dtype: no copy, as PyTorch


def test_repeat_is_a_new_tensor(device):
    x = torch.ones(2, 3, device=device)
    y = x.repeat(1, 1)
    y[0, 0] = 5.0
    assert x[0, 0].item() == 1.0 and y.is_contiguous()
