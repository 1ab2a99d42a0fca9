"""kernels/linalg.py against PyTorch: outer/ger, tensordot, einsum, baddbmm/addbmm/addmv (and in-place forms),
cdist; values and gradients on cpu and interpreted cuda, non-contiguous inputs, size 0, errors, gradcheck."""
import math

import numpy as np
import pytest

import tritorch
from tritorch.autograd.gradcheck import gradcheck

from helpers import assert_close, to_np

torch = pytest.importorskip("torch")

F32 = dict(rtol=1e-4, atol=1e-5)


def _inputs(shapes, device, layout="contiguous", seed=0, dtype=tritorch.float32, low=-2.0, high=2.0):
    """tritorch leaves (transposed views when ``layout`` says so) and float64 torch leaves of the same values."""
    rng = np.random.default_rng(seed)
    tts, pts = [], []
    for shape in shapes:
        a = rng.uniform(low, high, size=shape)
        if layout == "transposed" and len(shape) >= 2:
            t = tritorch.tensor(np.ascontiguousarray(np.transpose(a)), dtype=dtype, device=device).permute(
                *reversed(range(len(shape))))
            assert not t.is_contiguous() or 0 in shape or sorted(shape)[-2] == 1
        else:
            t = tritorch.tensor(a, dtype=dtype, device=device)
        t.requires_grad_(True)
        tts.append(t)
        pts.append(torch.tensor(to_np(t), dtype=torch.float64, requires_grad=True))
    return tts, pts


def _check(fn_tt, fn_pt, shapes, device, layout="contiguous", grad=True, seed=0, tol=F32, **kw):
    """Same values and (for a random output weighting) the same input gradients as PyTorch."""
    tts, pts = _inputs(shapes, device, layout, seed, **kw)
    out, ref = fn_tt(*tts), fn_pt(*pts)
    assert tuple(out.shape) == tuple(ref.shape)
    assert_close(out, ref.detach().numpy(), **tol)
    if grad:
        w = np.random.default_rng(seed + 1).standard_normal(tuple(ref.shape))
        out.backward(tritorch.tensor(w, dtype=out.dtype, device=device))
        ref.backward(torch.tensor(w))
        for t, p in zip(tts, pts):
            assert_close(t.grad, p.grad.numpy(), **tol)
    return out


# ---- outer / ger -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n, m", [(5, 3), (0, 4), (1, 1)])
def test_outer(n, m, device):
    _check(tritorch.outer, torch.outer, [(n,), (m,)], device)
    _check(lambda a, b: a.ger(b), torch.ger, [(n,), (m,)], device)


def test_outer_promotes_and_errors(device):
    a = tritorch.arange(3, device=device)
    b = tritorch.tensor([0.5, 2.0], device=device)
    r = tritorch.outer(a, b)
    assert r.dtype is tritorch.float32
    assert_close(r, np.outer(np.arange(3), [0.5, 2.0]))
    with pytest.raises(RuntimeError, match="^outer: Expected 1-D argument self, but got 2-D$"):
        tritorch.outer(tritorch.zeros(2, 2, device=device), b)
    with pytest.raises(RuntimeError, match="^outer: Expected 1-D argument vec2, but got 0-D$"):
        tritorch.outer(b, tritorch.tensor(1.0, device=device))


# ---- tensordot ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shapes, dims", [
    ([(2, 3, 4), (3, 4, 5)], 2), ([(3, 4), (4, 5)], 1), ([(3, 4), (2, 5)], 0),
    ([(2, 3, 4), (4, 2, 3)], ([1, 0], [2, 1])), ([(3, 4), (4, 3)], ([0, 1], [1, 0])), ([(3, 0), (0, 2)], 1),
    ([(2, 3), (2, 3)], 2)])
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_tensordot(shapes, dims, layout, device):
    _check(lambda a, b: tritorch.tensordot(a, b, dims), lambda a, b: torch.tensordot(a, b, dims), shapes, device,
           layout)


def test_tensordot_tensor_dims_and_errors(device):
    a, b = tritorch.ones(3, 4, device=device), tritorch.ones(4, 5, device=device)
    assert tritorch.tensordot(a, b, dims=tritorch.tensor([[1], [0]])).shape == (3, 5)
    assert tritorch.tensordot(a, b, dims=tritorch.tensor(1)).shape == (3, 5)
    assert tritorch.tensordot(a, b, dims=[[1], [0]]).shape == (3, 5)
    c = tritorch.ones(3, 4, device=device)
    with pytest.raises(RuntimeError, match=r"^contracted dimensions need to match, but first has size 4 in dim -1 and "
                                           r"second has size 3 in dim 0$"):
        tritorch.tensordot(a, c, 1)
    with pytest.raises(RuntimeError, match=r"^contracted dimensions need to match, but first has size 3 in dim 0 and "
                                           r"second has size 4 in dim 1$"):
        tritorch.tensordot(a, c, dims=([0], [1]))
    with pytest.raises(RuntimeError, match="^both dimension lists should have same length$"):
        tritorch.tensordot(a, c, dims=([0, 1], [0]))
    with pytest.raises(RuntimeError, match="^tensordot expects dims >= 0, but got dims=-1$"):
        tritorch.tensordot(a, c, -1)
    with pytest.raises(RuntimeError, match="^tensordot expects dims < ndim_a or ndim_b, but got dims=3$"):
        tritorch.tensordot(a, c, 3)


# ---- einsum ------------------------------------------------------------------------------------------------------

EINSUM = [
    ("ij,jk->ik", [(3, 4), (4, 5)]), ("ij,jk", [(3, 4), (4, 5)]), ("ba,ca", [(3, 4), (2, 4)]),
    ("ii->i", [(4, 4)]), ("ii", [(4, 4)]), ("ij->ji", [(3, 5)]), ("ij->", [(3, 5)]), ("ij", [(3, 5)]),
    ("ji", [(3, 5)]), ("i,i->", [(5,)] * 2), ("i,i->i", [(5,)] * 2), ("i,j->ij", [(3,), (4,)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]), ("...ij,...jk->...ik", [(2, 1, 3, 4), (3, 4, 2)]),
    ("...ij,...jk", [(2, 3, 4), (4, 5)]), ("b...,b...->b", [(3, 2, 4), (3, 2, 4)]), ("i...->...", [(3, 2, 4)]),
    ("iij->j", [(3, 3, 2)]), ("iji->j", [(3, 2, 3)]), ("ijk,ikl,lm->jm", [(2, 3, 4), (2, 4, 5), (5, 3)]),
    ("bn,anm,bm->ba", [(2, 3), (4, 3, 5), (2, 5)]), ("ij,ij,ij->i", [(3, 4)] * 3), ("aB,Ba", [(3, 4), (4, 3)]),
    ("i,->i", [(4,), ()]), (",->", [(), ()]), ("ij,kl->", [(2, 3), (4, 5)]), ("ik,jk->ijk", [(3, 2), (4, 2)]),
    ("ij,jk->ik", [(3, 0), (0, 5)]), ("ij,jk->ik", [(0, 4), (4, 5)]), ("i j , j k -> i k", [(3, 4), (4, 5)]),
    ("ij,j->i", [(3, 1), (4,)]), ("ij,ij->ij", [(3, 1), (1, 4)]),
]


@pytest.mark.parametrize("eq, shapes", EINSUM, ids=[e for e, _ in EINSUM])
def test_einsum(eq, shapes, device):
    _check(lambda *t: tritorch.einsum(eq, *t), lambda *t: torch.einsum(eq, *t), shapes, device)


@pytest.mark.parametrize("eq, shapes", [("ij,jk->ik", [(3, 4), (4, 5)]), ("bij,bkj->bik", [(2, 3, 4), (2, 5, 4)]),
                                        ("ii->i", [(4, 4)]), ("ijk->kj", [(2, 3, 4)])])
def test_einsum_noncontiguous_and_list_form(eq, shapes, device):
    _check(lambda *t: tritorch.einsum(eq, list(t)), lambda *t: torch.einsum(eq, *t), shapes, device, "transposed")


def test_einsum_diagonal_is_a_view():
    x = tritorch.arange(9.0).reshape(3, 3)
    d = tritorch.einsum("ii->i", x)
    assert d.data_ptr() == x.data_ptr() and tuple(d.stride()) == (4,)


def test_einsum_errors(device):
    x = tritorch.zeros(3, 4, device=device)
    cases = [
        (("ij,jk", x, tritorch.zeros(3, 4, device=device)),
         "einsum(): subscript j has size 3 for operand 1 which does not broadcast with previously seen size 4"),
        (("ij,jk->ik", x), "einsum(): fewer operands were provided than specified in the equation"),
        (("ij", x, x), "einsum(): more operands were provided than specified in the equation"),
        (("ij->ik", x), "einsum(): output subscript k does not appear in the equation for any input operand"),
        (("ij->ii", x), "einsum(): output subscript i appears more than once in the output"),
        (("ijk->i", x), "einsum(): the number of subscripts in the equation (3) does not match the number of "
                        "dimensions (2) for operand 0 and no ellipsis was given"),
        (("ii->i", x), "einsum(): subscript i is repeated for operand 0 but the sizes don't match, 4 != 3"),
        (("i0->i", x), "einsum(): invalid subscript given at index 1 in the equation string, subscripts must be in "
                       "[a-zA-Z]"),
        (("ij-k", x), "einsum(): invalid subscript given at index 2 in the equation string, subscripts must be in "
                      "[a-zA-Z]"),
        (("ij..", x), "einsum(): found '.' for operand 0 that is not part of any ellipsis"),
        (("...ij,...jk", tritorch.zeros(2, 3, 4, device=device), tritorch.zeros(3, 4, 5, device=device)),
         "einsum(): dimension 0 covered by ellipsis in operand 1has size 3 which does not broadcast with previously "
         "seen ellipsis with size 2 for the respective dimension"),
    ]
    for args, msg in cases:
        with pytest.raises(RuntimeError) as e:
            tritorch.einsum(*args)
        assert str(e.value) == msg
        with pytest.raises(RuntimeError) as e:
            torch.einsum(args[0], *(torch.zeros(tuple(t.shape)) for t in args[1:]))
        assert str(e.value) == msg


def test_einsum_gradcheck():
    a = tritorch.randn(2, 3, 3, dtype=tritorch.float64, requires_grad=True)
    b = tritorch.randn(2, 3, 4, dtype=tritorch.float64, requires_grad=True)
    c = tritorch.randn(4, dtype=tritorch.float64, requires_grad=True)
    assert gradcheck(lambda a, b, c: tritorch.einsum("bii,bij,j->bi", a, b, c), (a, b, c))
    assert gradcheck(lambda a, b: tritorch.einsum("...ij,...kj->...ik", a, b), (a, b.transpose(1, 2).detach()
                                                                               .requires_grad_()))


# ---- baddbmm / addbmm / addmv / in-place ------------------------------------------------------------------------

@pytest.mark.parametrize("bias", [(2, 3, 5), (5,), (3, 1), ()])
@pytest.mark.parametrize("beta, alpha", [(1, 1), (0.5, -2.0), (0, 1.5)])
def test_baddbmm(bias, beta, alpha, device):
    _check(lambda i, a, b: tritorch.baddbmm(i, a, b, beta=beta, alpha=alpha),
           lambda i, a, b: torch.baddbmm(i, a, b, beta=beta, alpha=alpha), [bias, (2, 3, 4), (2, 4, 5)], device)


@pytest.mark.parametrize("bias", [(3, 5), (5,), ()])
@pytest.mark.parametrize("beta, alpha", [(1, 1), (0.5, -2.0)])
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_addbmm(bias, beta, alpha, layout, device):
    _check(lambda i, a, b: tritorch.addbmm(i, a, b, beta=beta, alpha=alpha),
           lambda i, a, b: torch.addbmm(i, a, b, beta=beta, alpha=alpha), [bias, (2, 3, 4), (2, 4, 5)], device, layout)


@pytest.mark.parametrize("bias", [(3,), (1,), ()])
@pytest.mark.parametrize("beta, alpha", [(1, 1), (0.5, -2.0)])
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_addmv(bias, beta, alpha, layout, device):
    _check(lambda i, a, b: tritorch.addmv(i, a, b, beta=beta, alpha=alpha),
           lambda i, a, b: torch.addmv(i, a, b, beta=beta, alpha=alpha), [bias, (3, 4), (4,)], device, layout)


def test_add_products_size_zero(device):
    _check(tritorch.baddbmm, torch.baddbmm, [(2, 3, 5), (2, 3, 0), (2, 0, 5)], device)
    _check(tritorch.baddbmm, torch.baddbmm, [(0, 3, 5), (0, 3, 4), (0, 4, 5)], device)
    _check(tritorch.addbmm, torch.addbmm, [(3, 5), (0, 3, 4), (0, 4, 5)], device)
    _check(tritorch.addmv, torch.addmv, [(0,), (0, 4), (4,)], device)
    _check(tritorch.addmv, torch.addmv, [(3,), (3, 0), (0,)], device)


def test_beta_zero_ignores_nan_input(device):
    nan = tritorch.full((2, 3, 5), float("nan"), device=device)
    a, b = tritorch.ones(2, 3, 4, device=device), tritorch.ones(2, 4, 5, device=device)
    assert_close(tritorch.baddbmm(nan, a, b, beta=0), np.full((2, 3, 5), 4.0))
    assert_close(tritorch.addbmm(nan[0], a, b, beta=0), np.full((3, 5), 8.0))
    assert_close(tritorch.addmv(nan[0, 0, :3], a[0], b[0, :, 0], beta=0, alpha=2), np.full(3, 8.0))


@pytest.mark.parametrize("op", ["baddbmm_", "addbmm_", "addmv_", "addmm_"])
def test_inplace_products(op, device):
    shapes = {"baddbmm_": [(2, 3, 5), (2, 3, 4), (2, 4, 5)], "addbmm_": [(3, 5), (2, 3, 4), (2, 4, 5)],
              "addmv_": [(3,), (3, 4), (4,)], "addmm_": [(3, 5), (3, 4), (4, 5)]}[op]

    def tt(i, a, b):
        base = i * 1
        r = getattr(base, op)(a, b, beta=0.5, alpha=2.0)
        assert r is base
        return r

    def pt(i, a, b):
        return getattr(i * 1, op)(a, b, beta=0.5, alpha=2.0)
    _check(tt, pt, shapes, device)
    x = tritorch.zeros(shapes[0], device=device)
    v = x[..., :1] if op != "addmv_" else x[:1]
    with pytest.raises(RuntimeError, match=r"^Bad in-place call: input tensor size \[.*\] and output tensor size "
                                           r"\[.*\] should match$"):
        getattr(v, op)(*(tritorch.zeros(s, device=device) for s in shapes[1:]))


def test_add_products_errors(device):
    z = lambda *s: tritorch.zeros(*s, device=device)   # noqa: E731
    cases = [
        (lambda: tritorch.baddbmm(z(3), z(2, 3, 4), z(2, 4, 5)),
         "The expanded size of the tensor (5) must match the existing size (3) at non-singleton dimension 2.  Target "
         "sizes: [2, 3, 5].  Tensor sizes: [3]"),
        (lambda: tritorch.baddbmm(z(5), z(3, 4), z(2, 4, 5)), "batch1 must be a 3D tensor"),
        (lambda: tritorch.baddbmm(z(5), z(2, 3, 4), z(3, 4, 5)),
         "Expected size for first two dimensions of batch2 tensor to be: [2, 4] but got: [3, 4]."),
        (lambda: tritorch.baddbmm(z(5), z(2, 3, 4), z(2, 3, 5)),
         "Expected size for first two dimensions of batch2 tensor to be: [2, 4] but got: [2, 3]."),
        (lambda: tritorch.addbmm(z(4), z(2, 3, 4), z(2, 4, 5)),
         "The expanded size of the tensor (5) must match the existing size (4) at non-singleton dimension 1.  Target "
         "sizes: [3, 5].  Tensor sizes: [4]"),
        (lambda: tritorch.addbmm(z(5), z(3, 4), z(2, 4, 5)), "batch1 must be a 3D tensor"),
        (lambda: tritorch.addmv(z(4), z(3, 4), z(4)), "size mismatch, got input (4), mat (3x4), vec (4)"),
        (lambda: tritorch.addmv(z(3), z(3, 4), z(5)), "size mismatch, got input (3), mat (3x4), vec (5)"),
        (lambda: tritorch.addmv(z(3), z(3, 4, 1), z(4)), "vector + matrix @ vector expected, got 1, 3, 1"),
    ]
    for fn, msg in cases:
        with pytest.raises(RuntimeError) as e:
            fn()
        assert str(e.value) == msg
    with pytest.raises(RuntimeError, match="^expected m1 and m2 to have the same dtype"):
        tritorch.baddbmm(z(5), z(2, 3, 4), z(2, 4, 5).double())


def test_add_products_gradcheck():
    d = dict(dtype=tritorch.float64, requires_grad=True)
    i, a, b = tritorch.randn(3, 1, **d), tritorch.randn(2, 3, 4, **d), tritorch.randn(2, 4, 5, **d)
    assert gradcheck(lambda i, a, b: tritorch.baddbmm(i, a, b, beta=0.5, alpha=-1.5), (i, a, b))
    j = tritorch.randn(5, **d)
    assert gradcheck(lambda i, a, b: tritorch.addbmm(i, a, b, beta=2.0, alpha=0.5), (j, a, b))
    m, v, k = tritorch.randn(3, 4, **d), tritorch.randn(4, **d), tritorch.randn(3, **d)
    assert gradcheck(lambda i, a, b: tritorch.addmv(i, a, b, beta=0.5, alpha=3.0), (k, m, v))


# ---- cdist -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("p", [2.0, 1.0, 0.5, 3.0, math.inf, 0.0])
@pytest.mark.parametrize("shapes", [[(5, 3), (4, 3)], [(2, 5, 3), (1, 4, 3)], [(0, 3), (4, 3)], [(3, 0), (2, 0)]])
def test_cdist(p, shapes, device):
    _check(lambda a, b: tritorch.cdist(a, b, p), lambda a, b: torch.cdist(a, b, p), shapes, device, grad=p != 0.0)


@pytest.mark.parametrize("mode", ["use_mm_for_euclid_dist", "donot_use_mm_for_euclid_dist",
                                  "use_mm_for_euclid_dist_if_necessary"])
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_cdist_compute_modes(mode, layout, device):
    big = 27 if mode.endswith("necessary") else 5     # past 25 rows the default mode switches to the mm identity
    _check(lambda a, b: tritorch.cdist(a, b, compute_mode=mode), lambda a, b: torch.cdist(a, b, compute_mode=mode),
           [(big, 3), (4, 3)], device, layout, tol=dict(rtol=1e-4, atol=1e-4))


def test_cdist_zero_distance_has_zero_gradient(device):
    for n in (3, 30):           # the direct path and the mm identity (clamped at 1e-30 before the sqrt)
        x = tritorch.zeros(n, 2, device=device, requires_grad=True)
        d = tritorch.cdist(x, tritorch.zeros(n, 2, device=device))
        d.sum().backward()
        assert_close(d, np.zeros((n, n)), atol=1e-12)
        assert_close(x.grad, np.zeros((n, 2)))


def test_cdist_errors(device):
    z = lambda *s, **k: tritorch.zeros(*s, device=device, **k)   # noqa: E731
    with pytest.raises(RuntimeError, match="^cdist only supports at least 2D tensors, X1 got: 1D$"):
        tritorch.cdist(z(3), z(3, 3))
    with pytest.raises(RuntimeError, match="^X1 and X2 must have the same number of columns. X1: 2 X2: 3$"):
        tritorch.cdist(z(3, 2), z(3, 3))
    with pytest.raises(RuntimeError, match="^cdist only supports non-negative p values$"):
        tritorch.cdist(z(3, 2), z(3, 2), p=-1)
    with pytest.raises(RuntimeError, match="^cdist only supports floating-point dtypes, X1 got: Long$"):
        tritorch.cdist(z(3, 2, dtype=tritorch.int64), z(3, 2, dtype=tritorch.int64))
    with pytest.raises(ValueError, match="^foo is not a valid value for compute_mode$"):
        tritorch.cdist(z(3, 2), z(3, 2), compute_mode="foo")
    with pytest.raises(RuntimeError, match=r"^The size of tensor a \(2\) must match the size of tensor b \(4\) at "
                                           r"non-singleton dimension 0$"):
        tritorch.cdist(z(2, 3, 2), z(4, 3, 2))
    with pytest.raises(RuntimeError, match="^expected scalar type Float but found Double$"):
        tritorch.cdist(z(3, 2), z(3, 2, dtype=tritorch.float64))


def test_cdist_gradcheck():
    a = tritorch.randn(4, 3, dtype=tritorch.float64, requires_grad=True)
    b = tritorch.randn(2, 3, dtype=tritorch.float64, requires_grad=True)
    for p, mode in ((2.0, "use_mm_for_euclid_dist"), (2.0, "donot_use_mm_for_euclid_dist"), (1.5, None),
                    (math.inf, None)):
        kw = {"compute_mode": mode} if mode else {}
        assert gradcheck(lambda a, b: tritorch.cdist(a, b, p, **kw), (a, b))
