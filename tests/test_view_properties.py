"""Property tests: random chains of view ops agree with NumPy, share storage, and survive contiguous()/clone()
through the strided-copy kernel and an in-place write through the view."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tritorch
from tritorch.autograd.gradcheck import gradcheck
from tritorch.profiler import profile

from helpers import assert_close, to_np

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def view_chains(draw):
    """A small array shape and a list of view steps, each valid for the shape it is applied to."""
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
    steps, cur = [], shape
    for _ in range(draw(st.integers(1, 4))):
        nd = len(cur)
        kind = draw(st.sampled_from(["permute", "transpose", "slice", "unsqueeze", "squeeze", "expand", "select",
                                     "flip_reshape"]))
        if kind == "permute":
            perm = tuple(draw(st.permutations(range(nd))))
            steps.append(("permute", perm))
            cur = tuple(cur[p] for p in perm)
        elif kind == "transpose" and nd >= 2:
            a, b = draw(st.integers(0, nd - 1)), draw(st.integers(0, nd - 1))
            steps.append(("transpose", (a, b)))
            cur = list(cur)
            cur[a], cur[b] = cur[b], cur[a]
            cur = tuple(cur)
        elif kind == "slice":
            d = draw(st.integers(0, nd - 1))
            start = draw(st.integers(0, cur[d]))
            step = draw(st.integers(1, 3))
            steps.append(("slice", (d, start, step)))
            cur = cur[:d] + (len(range(start, cur[d], step)),) + cur[d + 1:]
        elif kind == "unsqueeze" and nd < 5:
            d = draw(st.integers(-nd - 1, nd))
            steps.append(("unsqueeze", d))
            cur = tuple(np.expand_dims(np.empty(cur), d).shape)
        elif kind == "squeeze" and 1 in cur:
            d = cur.index(1)
            steps.append(("squeeze", d))
            cur = cur[:d] + cur[d + 1:]
        elif kind == "expand" and 1 in cur:
            d = cur.index(1)
            n = draw(st.integers(0, 3))
            steps.append(("expand", (d, n)))
            cur = cur[:d] + (n,) + cur[d + 1:]
        elif kind == "select" and nd >= 2 and cur[0] > 0:
            i = draw(st.integers(-cur[0], cur[0] - 1))
            steps.append(("select", i))
            cur = cur[1:]
        elif kind == "flip_reshape":
            steps.append(("reshape", (-1,)))
            cur = (int(np.prod(cur)),)
    return shape, steps


def _apply(x, steps, is_np):
    for kind, arg in steps:
        if kind == "permute":
            x = np.transpose(x, arg) if is_np else x.permute(*arg)
        elif kind == "transpose":
            x = np.swapaxes(x, *arg) if is_np else x.transpose(*arg)
        elif kind == "slice":
            d, start, step = arg
            idx = (slice(None),) * d + (slice(start, None, step),)
            x = x[idx]
        elif kind == "unsqueeze":
            x = np.expand_dims(x, arg) if is_np else x.unsqueeze(arg)
        elif kind == "squeeze":
            x = np.squeeze(x, arg) if is_np else x.squeeze(arg)
        elif kind == "expand":
            d, n = arg
            shape = x.shape[:d] + (n,) + x.shape[d + 1:]
            x = np.broadcast_to(x, shape) if is_np else x.expand(*shape)
        elif kind == "select":
            x = x[arg]
        elif kind == "reshape":
            x = np.reshape(x, arg) if is_np else x.reshape(*arg)
    return x


@SETTINGS
@given(chain=view_chains(), seed=st.integers(0, 2 ** 16))
def test_view_chain_matches_numpy(chain, seed, device):
    shape, steps = chain
    ref = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    t = tritorch.tensor(ref, device=device)
    v, r = _apply(t, steps, False), _apply(ref, steps, True)
    assert tuple(v.shape) == r.shape
    assert_close(v, r)
    c = v.contiguous()
    assert c.is_contiguous() and tuple(c.shape) == r.shape
    assert_close(c, r)
    assert_close(v.clone(), r)
    if all(k != "reshape" for k, _ in steps):       # reshape of a non-viewable layout copies, as in PyTorch
        assert v.data_ptr() == t.data_ptr() + v.storage_offset() * 4


@SETTINGS
@given(chain=view_chains(), seed=st.integers(0, 2 ** 16))
def test_write_through_view_reaches_base(chain, seed, device):
    shape, steps = chain
    if any(k in ("expand", "reshape") for k, _ in steps):
        return                                     # overlapping or possibly copied views are not write targets
    ref = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    t = tritorch.tensor(ref, device=device)
    v = _apply(t, steps, False)
    r = _apply(ref, steps, True)
    v.mul_(2.0)
    r *= 2.0                                       # NumPy views write through to ref in the same places
    assert_close(t, ref)


@pytest.mark.parametrize("shape", [(0,), (2, 0, 3), (1,), ()])
def test_views_of_empty_and_scalar(shape, device):
    t = tritorch.zeros(shape, device=device)
    assert tuple(t.reshape(-1).shape) == (int(np.prod(shape)),)
    assert tuple(t.unsqueeze(0).shape) == (1,) + shape
    assert_close(t.contiguous(), np.zeros(shape))


def _empty_views(device):
    """Zero-size views whose storage offset lies past the end of their (empty) storage, as PyTorch makes them."""
    return [tritorch.zeros(0, 3, device=device)[:, 1:], tritorch.zeros(4, 0, device=device)[1],
            tritorch.zeros(3, 0, 2, device=device).unbind(0)[1], tritorch.zeros(2, 0, device=device).narrow(0, 1, 1),
            tritorch.zeros(5, 0, device=device).t()[:, 3:].t()]


EMPTY_VIEW_OPS = {
    "add": lambda v: v + 1, "mul_self": lambda v: v * v, "neg": lambda v: -v, "exp": lambda v: v.exp(),
    "clone": lambda v: v.clone(), "contiguous_t": lambda v: v.t().contiguous(), "reshape": lambda v: v.reshape(-1),
    "to_double": lambda v: v.double(), "to_int": lambda v: v.long(), "eq": lambda v: v == v,
    "where": lambda v: tritorch.where(v > 0, v, v), "sum_dim": lambda v: v.sum(-1),
    "cat": lambda v: tritorch.cat([v, v]),
    "stack": lambda v: tritorch.stack([v, v]), "matmul": lambda v: v @ tritorch.ones(v.shape[-1], 2, device=v.device),
    "softmax": lambda v: v.softmax(-1), "add_": lambda v: v.add_(1), "fill_": lambda v: v.fill_(2),
    "copy_": lambda v: v.copy_(tritorch.ones(v.shape, device=v.device)), "cpu": lambda v: v.cpu(),
}


@pytest.mark.parametrize("op", sorted(EMPTY_VIEW_OPS))
def test_ops_on_empty_views_with_offset(op, device):
    """Each op gives on such a view what it gives on a fresh tensor of the same shape."""
    for v in _empty_views(device):
        assert v.numel() == 0 and v.storage_offset() > 0
        r, ref = EMPTY_VIEW_OPS[op](v), EMPTY_VIEW_OPS[op](tritorch.zeros(v.shape, device=device))
        assert r.dtype is ref.dtype and r.device == ref.device
        assert_close(r, to_np(ref))


def test_empty_views_with_offset_convert_print_and_save(device, tmp_path):
    shapes = [(0, 2), (0,), (0, 2), (1, 0), (2, 0)]
    for i, (v, shape) in enumerate(zip(_empty_views(device), shapes)):
        assert tuple(v.shape) == shape
        assert v.tolist() == np.zeros(shape).tolist() and v.cpu().numpy().shape == shape
        assert repr(v).startswith("tensor([]") and v.sum().item() == 0.0
        tritorch.save(v, tmp_path / f"{i}.pt")
        back = tritorch.load(tmp_path / f"{i}.pt")
        assert tuple(back.shape) == shape and back.device.type == device
    x = tritorch.zeros(0, 3, device=device, requires_grad=True)
    (x[:, 1:] * 2).sum().backward()
    assert tuple(x.grad.shape) == (0, 3)


def test_zero_dim_dim_ops_match_pytorch(device):
    s = tritorch.tensor(1.5, device=device)
    for dim in (0, -1):                     # the ops PyTorch defines on a 0-d tensor for dim 0 / -1
        assert s.transpose(dim, 0).shape == () and s.swapaxes(0, dim).shape == ()
        assert s.squeeze(dim).shape == () and s.squeeze((dim,)).shape == ()
        assert s.unsqueeze(dim).shape == (1,)
        assert s.movedim(dim, 0).shape == () and s.movedim([dim], [0]).shape == ()
        assert s.flatten(dim, 0).shape == (1,) and s.flatten(0, dim).shape == (1,)
        with pytest.raises(IndexError, match="^select\\(\\) cannot be applied to a 0-dim tensor.$"):
            s.select(dim, 0)
        with pytest.raises(IndexError, match="^Dimension specified as 0 but tensor has no dimensions$"):
            s.unbind(dim)
        with pytest.raises(RuntimeError, match="^split expects at least a 1-dimensional tensor$"):
            s.split(1, dim)
        with pytest.raises(RuntimeError, match="^split expects at least a 1-dimensional tensor$"):
            s.split([1], dim)
        with pytest.raises(RuntimeError, match="^chunk expects at least a 1-dimensional tensor$"):
            s.chunk(1, dim)
        with pytest.raises(RuntimeError, match="^narrow\\(\\) cannot be applied to a 0-dim tensor.$"):
            s.narrow(dim, 0, 1)
        with pytest.raises(RuntimeError, match="^unflatten got an unexpected error:\nDimension specified as 0 but "
                                               "tensor has no dimensions$"):
            s.unflatten(dim, (1,))
    assert s.movedim(0, 0).item() == 1.5 and s.movedim([], []).shape == ()
    assert s.permute(()).shape == () and s.t().shape == () and s.T.shape == ()
    with pytest.warns(UserWarning, match="Tensor.mT is deprecated on 0-D tensors"):
        assert s.mT.shape == ()
    for bad in (lambda: s.transpose(0, 1), lambda: s.transpose(1, 0), lambda: s.squeeze(1),
                lambda: s.squeeze((1,)), lambda: s.unsqueeze(1), lambda: s.movedim(0, 1), lambda: s.movedim(1, 0),
                lambda: s.flatten(0, 1), lambda: s.flatten(1, 0), lambda: s.unbind(1), lambda: s.unflatten(1, (1,))):
        with pytest.raises(IndexError, match=r"^Dimension out of range \(expected to be in range of \[-1, 0\], but "
                                             r"got 1\)$"):
            bad()
    with pytest.raises(RuntimeError, match="^dim 0 appears multiple times in the list of dims$"):
        s.squeeze((0, -1))
    with pytest.raises(RuntimeError, match=r"^movedim: repeated dim in `source` \(\[0, -1\]\)$"):
        s.movedim([0, -1], [0, 0])
    with pytest.raises(RuntimeError, match="^unflatten: sizes must be non-empty$"):
        s.unflatten(0, ())
    with pytest.raises(IndexError, match="^invalid index of a 0-dim tensor. Use `tensor.item\\(\\)`"):
        s[0]
    with pytest.raises(IndexError, match="^slice\\(\\) cannot be applied to a 0-dim tensor.$"):
        s[:]
    assert s[...].shape == () and s[None].shape == (1,)


def test_dim_list_errors_match_pytorch(device):
    y = tritorch.zeros(2, 1, 3, device=device)
    with pytest.raises(RuntimeError, match="^dim 1 appears multiple times in the list of dims$"):
        y.squeeze((1, -2))
    with pytest.raises(RuntimeError, match=r"^movedim: repeated dim in `destination` \(\[2, 2\]\)$"):
        y.movedim([0, 1], [2, 2])
    with pytest.raises(RuntimeError, match=r"^movedim: Invalid source or destination dims: source \(\[0, 1\] dims\) "
                                           r"should contain the same number of dims as destination \(\[2\] dims\)$"):
        y.movedim([0, 1], [2])
    assert y.movedim((0, 2), (2, 0)).shape == (3, 1, 2)
    with pytest.raises(RuntimeError, match=r"^tensor.mT is only supported on matrices or batches of matrices. Got "
                                           r"1-D tensor.$"):
        tritorch.zeros(3, device=device).mT
    with pytest.raises(RuntimeError, match=r"^unflatten: Provided sizes \[-1, 2\] don't multiply up to the size of "
                                           r"dim 2 \(3\) in the input tensor$"):
        y.unflatten(2, (-1, 2))
    with pytest.raises(RuntimeError, match="^unflatten got an unexpected error:\nonly one dimension can be inferred$"):
        y.unflatten(2, (-1, -1))
    with pytest.raises(RuntimeError, match=r"^invalid shape dimension -2 at index 1 of shape \[3, -2\]$"):
        y.reshape(3, -2)
    with pytest.raises(RuntimeError, match=r"^cannot reshape tensor of 0 elements into shape \[-1, 0\] because the "
                                           r"unspecified dimension size -1 can be any value and is ambiguous$"):
        tritorch.zeros(0, device=device).reshape(-1, 0)


def test_chunk_of_empty_dim_gives_chunks_empties(device):
    """PyTorch: an empty dim splits into ``chunks`` empty pieces."""
    for n, chunks in ((0, 2), (0, 1), (0, 3)):
        parts = tritorch.chunk(tritorch.empty(n, dtype=tritorch.int64, device=device), chunks, dim=0)
        assert [tuple(p.shape) for p in parts] == [(0,)] * chunks
    assert [tuple(p.shape) for p in tritorch.chunk(tritorch.empty(2, 0, device=device), 3, dim=1)] == [(2, 0)] * 3


# ---- diagonal, diag, diag_embed, trace, flip, roll, repeat_interleave, meshgrid (against PyTorch) -----------------

def _pt():
    return pytest.importorskip("torch")


def _same_as_torch(fn_tt, fn_pt, arrays, device, layout="contiguous", grad=True):
    """Values and (for a random output weighting) gradients of a view/copy op equal PyTorch's."""
    torch = _pt()
    tts = []
    for a in arrays:
        if layout == "transposed" and a.ndim >= 2:
            t = tritorch.tensor(np.ascontiguousarray(a.T), device=device).permute(*reversed(range(a.ndim)))
        else:
            t = tritorch.tensor(a, device=device)
        tts.append(t.requires_grad_(grad and t.dtype.is_floating_point))
    pts = [torch.tensor(a, requires_grad=grad and a.dtype.kind == "f") for a in arrays]
    out, ref = fn_tt(*tts), fn_pt(*pts)
    outs, refs = (out, ref) if isinstance(out, tuple) else ((out,), (ref,))
    for o, r in zip(outs, refs):
        assert tuple(o.shape) == tuple(r.shape) and str(o.dtype).split(".")[-1] == str(r.dtype).split(".")[-1]
        assert_close(o, r.detach().numpy())
    if grad:
        w = [np.random.default_rng(i).standard_normal(tuple(r.shape)).astype(np.float32) for i, r in enumerate(refs)]
        sum((o * tritorch.tensor(x, device=device)).sum() for o, x in zip(outs, w)).backward()
        sum((r * torch.tensor(x)).sum() for r, x in zip(refs, w)).backward()
        for t, p in zip(tts, pts):
            if p.requires_grad:
                assert_close(t.grad, p.grad.numpy())
    return out


def _r(*shape):
    return np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("shape, off, d1, d2", [((4, 5), 0, 0, 1), ((4, 5), 2, 0, 1), ((4, 5), -3, 1, 0),
                                                ((3, 4, 5), 1, -1, 0), ((2, 3, 4), 0, 2, 1), ((4, 5), 9, 0, 1),
                                                ((0, 3), 0, 0, 1), ((3, 0, 2), -1, 0, 2)])
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_diagonal_matches_pytorch_and_is_a_view(shape, off, d1, d2, layout, device):
    v = _same_as_torch(lambda x: x.diagonal(off, d1, d2), lambda x: x.diagonal(off, d1, d2), [_r(*shape)], device,
                       layout)
    base = tritorch.tensor(_r(*shape), device=device)
    ref = to_np(base).copy()
    d = tritorch.diagonal(base, off, d1, d2)
    assert d._storage is base._storage
    d.mul_(3.0)
    idx = np.indices(shape)
    ref[(idx[d2 % len(shape)] - idx[d1 % len(shape)]) == off] *= 3.0       # the elements of that diagonal
    assert_close(base, ref)
    assert v.shape == d.shape


def test_diagonal_write_through_is_differentiable(device):
    x = tritorch.ones(3, 3, device=device, requires_grad=True)
    y = x * 2
    y.diagonal().mul_(5.0)
    y.sum().backward()
    assert_close(x.grad, np.where(np.eye(3) > 0, 10.0, 2.0))


@pytest.mark.parametrize("shape, k", [((4,), 0), ((4,), 2), ((4,), -1), ((0,), 1), ((3, 5), 0), ((3, 5), 2),
                                      ((3, 5), -2), ((3, 5), 7)])
def test_diag_and_diag_embed(shape, k, device):
    torch = _pt()
    _same_as_torch(lambda x: tritorch.diag(x, k), lambda x: torch.diag(x, k), [_r(*shape)], device, "transposed")
    _same_as_torch(lambda x: x.diag_embed(k, 0, -1), lambda x: x.diag_embed(k, 0, -1), [_r(*shape)], device)
    with pytest.raises(RuntimeError, match="^diag\\(\\): Supports 1D or 2D tensors. Got 3D$"):
        tritorch.diag(tritorch.zeros(2, 2, 2, device=device))
    with pytest.raises(RuntimeError, match="^diag\\(\\): Supports 1D or 2D tensors. Got 0D$"):
        tritorch.diag(tritorch.tensor(1.0, device=device))


def test_trace(device):
    torch = _pt()
    for shape in ((4, 4), (3, 5), (0, 2)):
        _same_as_torch(tritorch.trace, torch.trace, [_r(*shape)], device, "transposed")
    r = tritorch.trace(tritorch.ones(3, 3, dtype=tritorch.int32, device=device))
    assert r.dtype is tritorch.int64 and r.item() == 3
    with pytest.raises(RuntimeError, match="^trace: expected a matrix, but got tensor with dim 1$"):
        tritorch.trace(tritorch.zeros(3, device=device))
    with pytest.raises(NotImplementedError, match="^\"trace\" not implemented for 'Bool'$"):
        tritorch.trace(tritorch.zeros(3, 3, dtype=tritorch.bool, device=device))
    with pytest.raises(RuntimeError, match="^diagonal dimensions cannot be identical 0, 0$"):
        tritorch.zeros(3, 3, device=device).diagonal(0, 0, 0)


@pytest.mark.parametrize("shape, dims", [((5, 7), (0,)), ((5, 7), (1, 0)), ((2, 3, 4), (-1, 0)), ((2, 3, 4), ()),
                                         ((0, 3), (0, 1)), ((), ()), ((9,), (0,)), ((1, 1, 1, 1, 1, 2, 1, 3), (7, 5))])
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_flip(shape, dims, layout, device):
    torch = _pt()
    _same_as_torch(lambda x: x.flip(dims), lambda x: x.flip(dims), [_r(*shape)], device, layout)
    if len(shape) >= 2:
        _same_as_torch(tritorch.fliplr, torch.fliplr, [_r(*shape)], device, layout)
    if len(shape) >= 1:
        _same_as_torch(tritorch.flipud, torch.flipud, [_r(*shape)], device, layout)


def test_flip_dtypes_and_errors(device):
    torch = _pt()
    for dt in ("int64", "bool", "float16", "bfloat16"):
        a = np.arange(12).reshape(3, 4) % 3
        x = tritorch.tensor(a, device=device).to(getattr(tritorch, dt))
        ref = torch.tensor(a).to(getattr(torch, dt))
        assert_close(x.flip((0, 1)).float(), ref.flip((0, 1)).float().numpy())
        assert_close(x.roll(2, 1).float(), ref.roll(2, 1).float().numpy())
    x = tritorch.zeros(3, 4, device=device)
    with pytest.raises(RuntimeError, match="^dim 0 appears multiple times in the list of dims$"):
        x.flip((0, -2))
    with pytest.raises(TypeError, match="must be tuple of ints, not int"):
        x.flip(0)
    with pytest.raises(RuntimeError, match="^Input must be >= 2-d.$"):
        tritorch.fliplr(tritorch.zeros(3, device=device))
    with pytest.raises(RuntimeError, match="^Input must be >= 1-d.$"):
        tritorch.flipud(tritorch.tensor(1.0, device=device))
    with pytest.raises(IndexError,
                       match=r"^Dimension out of range \(expected to be in range of \[-2, 1\], but got 2\)"):
        x.flip((2,))


@pytest.mark.parametrize("shape, shifts, dims", [((5, 7), 2, None), ((5, 7), -3, 1), ((5, 7), (1, 9), (0, 1)),
                                                 ((2, 3, 4), (1, 1), (2, 2)), ((0, 3), 1, 0), ((), 3, None),
                                                 ((6,), -13, 0), ((2, 3, 4), 5, None)])
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_roll(shape, shifts, dims, layout, device):
    _same_as_torch(lambda x: x.roll(shifts, dims), lambda x: x.roll(shifts, dims), [_r(*shape)], device, layout)


def test_roll_errors(device):
    x = tritorch.zeros(3, 4, device=device)
    with pytest.raises(RuntimeError, match="^shifts and dimensions must align. shifts: 2, dims:1$"):
        x.roll((1, 2), (0,))
    with pytest.raises(IndexError, match="^Dimension specified as 0 but tensor has no dimensions$"):
        tritorch.tensor(1.0, device=device).roll(1, 0)
    with pytest.raises(IndexError, match=r"^Dimension out of range"):
        x.roll(1, 5)


@pytest.mark.parametrize("shape, repeats, dim", [((3, 4), 2, None), ((3, 4), 2, 1), ((3, 4), [1, 0, 3], 0),
                                                 ((3, 4), [2], 1), ((0, 4), 3, 0), ((3, 4), 0, 0), ((), 2, None),
                                                 ((2, 3, 2), [1, 2, 1], -2)])
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_repeat_interleave(shape, repeats, dim, layout, device):
    torch = _pt()
    rt = (lambda m: m.tensor(repeats, device=device) if m is tritorch else m.tensor(repeats)) \
        if isinstance(repeats, list) else (lambda m: repeats)
    _same_as_torch(lambda x: x.repeat_interleave(rt(tritorch), dim),
                   lambda x: x.repeat_interleave(rt(torch), dim), [_r(*shape)], device, layout)


def test_repeat_interleave_index_form_and_errors(device):
    t = lambda v, **k: tritorch.tensor(v, device=device, **k)   # noqa: E731
    r = tritorch.repeat_interleave(t([2, 0, 3]))
    assert r.dtype is tritorch.int64 and r.tolist() == [0, 0, 2, 2, 2]
    x = tritorch.zeros(3, 4, device=device)
    assert tritorch.repeat_interleave(x, t([1, 2, 3]), 0, output_size=6).shape == (6, 4)
    cases = [(lambda: x.repeat_interleave(t([1, 2]), 0), RuntimeError,
              "repeats must have the same size as input along dim, but got repeats.size(0) = 2 and input.size(0) = 3"),
             (lambda: x.repeat_interleave(t([1, -2, 1]), 0), RuntimeError, "repeats can not be negative"),
             (lambda: x.repeat_interleave(-1), RuntimeError, "Repeats must be non-negative"),
             (lambda: x.repeat_interleave(t([[1]]), 0), RuntimeError, "repeats must be 0-dim or 1-dim tensor"),
             (lambda: x.repeat_interleave(t([1.0, 2, 3]), 0), NotImplementedError,
              "\"repeat_interleave_cpu\" not implemented for 'Float'"),
             (lambda: x.repeat_interleave(t([1, 2, 3]), 0, output_size=5), RuntimeError,
              "allocated size does not match required size")]
    for fn, kind, msg in cases:
        with pytest.raises(kind) as e:
            fn()
        assert str(e.value) == msg


@pytest.mark.parametrize("indexing", ["ij", "xy"])
@pytest.mark.parametrize("shapes", [[(3,), (4,)], [(2,), (), (5,)], [(0,), (3,)], [(4,)]])
def test_meshgrid(indexing, shapes, device):
    torch = _pt()
    out = _same_as_torch(lambda *t: tritorch.meshgrid(*t, indexing=indexing),
                         lambda *t: torch.meshgrid(*t, indexing=indexing), [_r(*s) for s in shapes], device)
    ref = torch.meshgrid(*(torch.tensor(_r(*s)) for s in shapes), indexing=indexing)
    for o, r in zip(out, ref):
        assert tuple(o.stride()) == tuple(r.stride())        # expanded views, as in PyTorch


def test_meshgrid_default_warns_and_errors(device):
    a, b = tritorch.ones(2, device=device), tritorch.ones(3, device=device)
    with pytest.warns(UserWarning, match="torch.meshgrid: in an upcoming release, it will be required to pass the "
                                         "indexing argument."):
        assert [tuple(t.shape) for t in tritorch.meshgrid(a, b)] == [(2, 3), (2, 3)]
    assert [tuple(t.shape) for t in tritorch.meshgrid([a, b], indexing="xy")] == [(3, 2), (3, 2)]
    with pytest.raises(RuntimeError, match='^torch.meshgrid: indexing must be one of "xy" or "ij", but received: foo$'):
        tritorch.meshgrid(a, b, indexing="foo")
    with pytest.raises(RuntimeError, match="^torch.meshgrid: Expected 0D or 1D tensor in the tensor list but got"):
        tritorch.meshgrid(tritorch.ones(2, 2, device=device), b, indexing="ij")
    with pytest.raises(RuntimeError, match="^meshgrid expects all tensors to have the same dtype$"):
        tritorch.meshgrid(a, b.double(), indexing="ij")
    with pytest.raises(RuntimeError, match="^meshgrid expects a non-empty TensorList$"):
        tritorch.meshgrid(indexing="ij")


def test_view_copy_ops_gradcheck():
    x = tritorch.randn(3, 4, dtype=tritorch.float64, requires_grad=True)
    v = tritorch.randn(4, dtype=tritorch.float64, requires_grad=True)
    assert gradcheck(lambda x: x.diagonal(1), (x,))
    assert gradcheck(lambda v: tritorch.diag(v, -1), (v,))
    assert gradcheck(tritorch.trace, (x,))
    assert gradcheck(lambda x: x.flip((0, 1)), (x,))
    assert gradcheck(lambda x: x.roll((1, -2), (0, 1)), (x,))
    assert gradcheck(lambda x: x.repeat_interleave(tritorch.tensor([2, 0, 1]), 0), (x,))
    assert gradcheck(lambda a, b: tritorch.meshgrid(a, b, indexing="xy"), (v, x[0].detach().requires_grad_()))


@pytest.mark.parametrize("op,args", [("unbind", (1,)), ("split", (2, 1)), ("split", ([1, 0, 5], 1)),
                                     ("chunk", (2, 0))])
def test_pieces_are_one_node_and_join_their_gradients(device, op, args):
    """split/chunk/unbind: every piece a view with one grad_fn between them (PyTorch's names); backward writes each
    piece's gradient once (zeros only for the pieces that got none), equal to PyTorch's, and differentiates again."""
    torch = pytest.importorskip("torch")
    xn = np.arange(24, dtype=np.float64).reshape(4, 6) / 7
    x = tritorch.tensor(xn, device=device, requires_grad=True)
    xr = torch.tensor(xn, requires_grad=True)
    ours, theirs = getattr(x, op)(*args), getattr(xr, op)(*args)
    assert len(ours) == len(theirs) and len({id(p.grad_fn) for p in ours}) == 1
    assert ours[0].grad_fn.name() == theirs[0].grad_fn.name().replace("WithSizes", "")
    assert all(p._base is x for p in ours)
    used = [i for i in range(len(ours)) if i != 1 and ours[i].numel()]      # piece 1 gets no gradient
    loss = sum((ours[i] * (i + 1)).pow(2).sum() for i in used)
    g, = tritorch.autograd.grad(loss, x, create_graph=True)
    gr, = torch.autograd.grad(sum((theirs[i] * (i + 1)).pow(2).sum() for i in used), xr, create_graph=True)
    np.testing.assert_allclose(to_np(g), gr.detach().numpy(), rtol=1e-12)
    gg, = tritorch.autograd.grad(g.sum(), x)
    np.testing.assert_allclose(to_np(gg), torch.autograd.grad(gr.sum(), xr)[0].numpy(), rtol=1e-12)
    if device == "cuda":
        pieces = getattr(x, op)(*args)
        loss = sum(pieces[i].sum() for i in used)
        with profile() as prof:
            loss.backward()
        missing = sum(p.numel() > 0 for p in pieces) - len(used)
        copies = [e for e in prof.events() if e.kind == "kernel" and e.cpu_parent.name == "cat"]
        assert len(copies) == 1          # one batched launch writes every piece
        assert copies[0].grid[1] == sum(p.shape[args[-1]] > 0 if op != "unbind" else 1 for p in pieces)
        assert prof.kernel_launches("_fill_kernel") == missing + 1    # zeros for the pieces without; the seed
