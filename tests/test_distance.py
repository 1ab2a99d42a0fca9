"""kernels/distance.py against PyTorch: F.one_hot, F.normalize, F.cosine_similarity / nn.CosineSimilarity,
F.pairwise_distance / nn.PairwiseDistance and the triplet-margin, cosine-embedding and margin-ranking losses (and
their modules): values and gradients on cpu and interpreted cuda, non-contiguous inputs, size 0, errors,
gradcheck."""
import math

import numpy as np
import pytest

import tritorch
import tritorch.nn.functional as TF
from tritorch import nn
from tritorch.autograd.gradcheck import gradcheck

from helpers import assert_close, to_np

torch = pytest.importorskip("torch")
F = torch.nn.functional

TOL = dict(rtol=1e-4, atol=1e-5)


def _leaf(a, device, layout="contiguous", dtype=tritorch.float32):
    if layout == "transposed" and a.ndim >= 2:
        t = tritorch.tensor(np.ascontiguousarray(a.T), dtype=dtype, device=device).permute(*reversed(range(a.ndim)))
    else:
        t = tritorch.tensor(a, dtype=dtype, device=device)
    return t.requires_grad_(dtype.is_floating_point)


def _check(fn_tt, fn_pt, arrays, device, layout="contiguous", grad=True, seed=1):
    """Same values and gradients as PyTorch. ``arrays``: float arrays (inputs that require grad) or int arrays."""
    tts = [_leaf(a, device, layout) if a.dtype.kind == "f" else tritorch.tensor(a, device=device) for a in arrays]
    pts = [torch.tensor(to_np(t), dtype=torch.float64, requires_grad=True) if a.dtype.kind == "f"
           else torch.tensor(a) for a, t in zip(arrays, tts)]
    out, ref = fn_tt(*tts), fn_pt(*pts)
    assert tuple(out.shape) == tuple(ref.shape)
    assert_close(out, ref.detach().numpy(), **TOL)
    if grad:
        w = np.random.default_rng(seed).standard_normal(tuple(ref.shape))
        out.backward(tritorch.tensor(w, dtype=out.dtype, device=device))
        ref.backward(torch.tensor(w))
        for a, t, p in zip(arrays, tts, pts):
            if a.dtype.kind == "f":
                assert_close(t.grad, p.grad.numpy(), **TOL)
    return out


def _rand(*shape, seed=0):
    return np.random.default_rng(seed + sum(shape)).uniform(-2, 2, size=shape)


def _signs(*shape, seed=0):
    return np.where(np.random.default_rng(seed).random(shape) < 0.5, -1.0, 1.0)


# ---- one_hot -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("idx, n", [([0, 2, 1], -1), ([[0, 3], [1, 1]], 5), (2, -1), (2, 3), ([], 4),
                                    ([[0, 1, 2]], -1)])
def test_one_hot(idx, n, device):
    x = tritorch.tensor(idx, dtype=tritorch.int64, device=device)
    r = TF.one_hot(x, n)
    ref = F.one_hot(torch.tensor(idx, dtype=torch.int64), n)
    assert r.dtype is tritorch.int64 and tuple(r.shape) == tuple(ref.shape)
    assert_close(r, ref.numpy())


def test_one_hot_noncontiguous(device):
    a = np.array([[0, 3, 1], [2, 2, 0]])
    x = tritorch.tensor(a, device=device).t()
    assert_close(TF.one_hot(x), F.one_hot(torch.tensor(a).t()).numpy())


def test_one_hot_errors(device):
    t = lambda v, **k: tritorch.tensor(v, device=device, **k)   # noqa: E731
    cases = [(lambda: TF.one_hot(t([1.0])), "one_hot is only applicable to index tensor of type LongTensor."),
             (lambda: TF.one_hot(t([1, 2], dtype=tritorch.int32)),
              "one_hot is only applicable to index tensor of type LongTensor."),
             (lambda: TF.one_hot(t([-1])), "Class values must be non-negative."),
             (lambda: TF.one_hot(t([3]), 3), "Class values must be smaller than num_classes."),
             (lambda: TF.one_hot(t([1]), -2), "Class values must be smaller than num_classes."),
             (lambda: TF.one_hot(t([], dtype=tritorch.int64)), "Can not infer total number of classes from empty "
                                                                "tensor."),
             (lambda: TF.one_hot(t([], dtype=tritorch.int64), 0), "Can not infer total number of classes from empty "
                                                                   "tensor.")]
    for fn, msg in cases:
        with pytest.raises(RuntimeError) as e:
            fn()
        assert str(e.value) == msg


# ---- normalize ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, p, dim", [((4, 5), 2.0, 1), ((3, 4, 5), 1.0, -1), ((4, 5), 3.0, 0), ((7,), 2, 0),
                                           ((0, 3), 2.0, 1), ((3, 0), 2.0, 1), ((4, 5), math.inf, 1)])
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_normalize(shape, p, dim, layout, device):
    _check(lambda x: TF.normalize(x, p, dim), lambda x: F.normalize(x, p, dim), [_rand(*shape)], device, layout)


def test_normalize_zero_rows_and_eps(device):
    a = np.zeros((2, 3))
    a[1] = [1e-14, 0, 0]
    _check(lambda x: TF.normalize(x, eps=1e-12), lambda x: F.normalize(x, eps=1e-12), [a], device)
    _check(lambda x: TF.normalize(x, eps=0.5), lambda x: F.normalize(x, eps=0.5), [_rand(3, 2) / 4], device)


def test_normalize_errors(device):
    with pytest.raises(IndexError, match=r"^Dimension out of range \(expected to be in range of \[-1, 0\], but got "
                                         r"1\)$"):
        TF.normalize(tritorch.zeros(3, device=device))
    with pytest.raises(RuntimeError, match="^linalg.vector_norm: Expected a floating point or complex tensor as input. "
                                           "Got Long$"):
        TF.normalize(tritorch.zeros(3, 4, dtype=tritorch.int64, device=device))


# ---- cosine_similarity, pairwise_distance ------------------------------------------------------------------------

@pytest.mark.parametrize("s1, s2, dim", [((4, 5), (4, 5), 1), ((3, 4, 5), (4, 5), -1), ((4, 5), (1, 5), 0),
                                         ((6,), (6,), 0), ((3, 1, 5), (1, 4, 5), 2), ((0, 5), (0, 5), 1)])
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_cosine_similarity(s1, s2, dim, layout, device):
    _check(lambda a, b: TF.cosine_similarity(a, b, dim), lambda a, b: F.cosine_similarity(a, b, dim),
           [_rand(*s1), _rand(*s2, seed=1)], device, layout)
    _check(lambda a, b: nn.CosineSimilarity(dim, 1e-6)(a, b), lambda a, b: torch.nn.CosineSimilarity(dim, 1e-6)(a, b),
           [_rand(*s1), _rand(*s2, seed=1)], device, layout, grad=False)


def test_cosine_similarity_zero_vector_dtypes_and_errors(device):
    r = TF.cosine_similarity(tritorch.zeros(2, 3, device=device), tritorch.ones(2, 3, device=device))
    assert_close(r, np.zeros(2))
    mixed = TF.cosine_similarity(tritorch.ones(2, 3, device=device), tritorch.ones(2, 3, dtype=tritorch.float64,
                                                                                   device=device))
    assert mixed.dtype is tritorch.float64
    with pytest.raises(RuntimeError, match=r"^The size of tensor a \(3\) must match the size of tensor b \(2\) at "
                                           r"non-singleton dimension 0$"):
        TF.cosine_similarity(tritorch.zeros(3, 4, device=device), tritorch.zeros(2, 4, device=device))
    with pytest.raises(RuntimeError, match="^expected common dtype to be floating point, yet common dtype is Long$"):
        TF.cosine_similarity(tritorch.zeros(3, 4, dtype=tritorch.int64, device=device),
                             tritorch.zeros(3, 4, dtype=tritorch.int64, device=device))
    with pytest.raises(IndexError, match=r"^Dimension out of range \(expected to be in range of \[-2, 1\], but got "
                                         r"2\)$"):
        TF.cosine_similarity(tritorch.zeros(3, 4, device=device), tritorch.zeros(3, 4, device=device), dim=2)


@pytest.mark.parametrize("s1, s2", [((4, 5), (4, 5)), ((3, 4, 5), (4, 5)), ((6,), (6,)), ((), ()), ((4, 5), (1, 5)),
                                    ((0, 5), (0, 5)), ((4, 0), (4, 0))])
@pytest.mark.parametrize("p", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("keepdim", [False, True])
def test_pairwise_distance(s1, s2, p, keepdim, device):
    if p == math.inf and s1 and s1[-1] == 0:       # PyTorch refuses the inf norm of an empty dim, and so do we
        for fn, mod in ((TF.pairwise_distance, tritorch), (F.pairwise_distance, torch)):
            with pytest.raises(RuntimeError, match="cannot compute the inf norm on the dimension"):
                fn(mod.zeros(s1), mod.zeros(s2), p)
        return
    _check(lambda a, b: TF.pairwise_distance(a, b, p, 1e-6, keepdim),
           lambda a, b: F.pairwise_distance(a, b, p, 1e-6, keepdim), [_rand(*s1), _rand(*s2, seed=1)], device,
           grad=p != math.inf or 0 not in s1)


def test_pairwise_distance_module_and_errors(device):
    _check(lambda a, b: nn.PairwiseDistance(1.0, 1e-3, True)(a, b),
           lambda a, b: torch.nn.PairwiseDistance(1.0, 1e-3, True)(a, b), [_rand(3, 4), _rand(3, 4, seed=2)], device,
           "transposed")
    with pytest.raises(RuntimeError, match=r"^The size of tensor a \(3\) must match the size of tensor b \(2\) at "
                                           r"non-singleton dimension 0$"):
        TF.pairwise_distance(tritorch.zeros(3, 4, device=device), tritorch.zeros(2, 4, device=device))
    with pytest.raises(RuntimeError, match="^expected common dtype to be floating point, yet common dtype is Long$"):
        TF.pairwise_distance(tritorch.zeros(3, dtype=tritorch.int64, device=device),
                             tritorch.zeros(3, dtype=tritorch.int64, device=device))


# ---- losses ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(5, 4), (4,), (0, 3)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kw", [{}, {"swap": True, "p": 1.0, "margin": 0.5}, {"p": 3.0, "eps": 1e-3}])
def test_triplet_margin_loss(shape, reduction, kw, device):
    arrays = [_rand(*shape), _rand(*shape, seed=1) * 0.5, _rand(*shape, seed=2)]
    _check(lambda a, p, n: TF.triplet_margin_loss(a, p, n, reduction=reduction, **kw),
           lambda a, p, n: F.triplet_margin_loss(a, p, n, reduction=reduction, **kw), arrays, device,
           grad=reduction != "mean" or shape[0] != 0)
    _check(lambda a, p, n: nn.TripletMarginLoss(reduction=reduction, **kw)(a, p, n),
           lambda a, p, n: torch.nn.TripletMarginLoss(reduction=reduction, **kw)(a, p, n), arrays, device,
           "transposed", grad=False)


@pytest.mark.parametrize("shapes", [[(5, 4), (5, 4), (5,)], [(4,), (4,), ()], [(0, 3), (0, 3), (0,)]])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("margin", [0.0, 0.3, -0.2])
def test_cosine_embedding_loss(shapes, reduction, margin, device):
    target = _signs(*shapes[2])
    if target.ndim:
        target[:1] = 0.0 if target.size > 2 else target[:1]        # a target that is neither 1 nor -1 counts 0
    arrays = [_rand(*shapes[0]), _rand(*shapes[1], seed=1), target.astype(np.int64)]
    _check(lambda a, b, t: TF.cosine_embedding_loss(a, b, t, margin, reduction=reduction),
           lambda a, b, t: F.cosine_embedding_loss(a, b, t, margin, reduction=reduction), arrays, device,
           grad=reduction != "mean" or shapes[0][0] != 0)
    arrays[2] = target
    _check(lambda a, b, t: nn.CosineEmbeddingLoss(margin, reduction=reduction)(a, b, t),
           lambda a, b, t: torch.nn.CosineEmbeddingLoss(margin, reduction=reduction)(a, b, t), arrays, device,
           "transposed", grad=False)


@pytest.mark.parametrize("shape", [(6,), (3, 4), (), (0,)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("margin", [0.0, 0.5])
def test_margin_ranking_loss(shape, reduction, margin, device):
    arrays = [_rand(*shape), _rand(*shape, seed=1), _signs(*shape)]
    _check(lambda a, b, t: TF.margin_ranking_loss(a, b, t, margin, reduction=reduction),
           lambda a, b, t: F.margin_ranking_loss(a, b, t, margin, reduction=reduction), arrays, device,
           grad=reduction != "mean" or 0 not in shape)
    _check(lambda a, b, t: nn.MarginRankingLoss(margin, reduction=reduction)(a, b, t),
           lambda a, b, t: torch.nn.MarginRankingLoss(margin, reduction=reduction)(a, b, t), arrays, device,
           "transposed", grad=False)


def test_loss_errors(device):
    z = lambda *s, **k: tritorch.zeros(*s, device=device, **k)   # noqa: E731
    cases = [
        (lambda: TF.triplet_margin_loss(z(3, 4), z(4), z(3, 4)), RuntimeError,
         "The anchor, positive, and negative tensors are expected to have the same number of dimensions, but got: "
         "anchor 2D, positive 1D, and negative 2D inputs"),
        (lambda: TF.triplet_margin_loss(z(3, 4), z(3, 4), z(3, 4), margin=-1), ValueError,
         "margin must be greater than 0, got -1"),
        (lambda: TF.triplet_margin_loss(z(3, 4), z(3, 4), z(3, 4), reduction="foo"), ValueError,
         "foo is not a valid value for reduction"),
        (lambda: nn.TripletMarginLoss(margin=-1), ValueError,
         "TripletMarginLoss: expected margin to be greater than 0, got -1 instead"),
        (lambda: TF.cosine_embedding_loss(z(3, 4), z(3, 4), z(3, 4)), RuntimeError,
         "0D or 1D target tensor expected, multi-target not supported"),
        (lambda: TF.cosine_embedding_loss(z(3, 4), z(3, 4), z(())), RuntimeError,
         "0D target tensor expects 1D input tensors, but found inputs with sizes [3, 4] and [3, 4]."),
        (lambda: TF.cosine_embedding_loss(z(4), z(4), z(3)), RuntimeError,
         "1D target tensor expects 2D input tensors, but found inputs with sizes [4] and [4]."),
        (lambda: TF.cosine_embedding_loss(z(3, 4), z(3, 4), z(3), reduction="avg"), ValueError,
         "avg is not a valid value for reduction"),
        (lambda: TF.margin_ranking_loss(z(3), z(3), z(3, 1)), RuntimeError,
         "margin_ranking_loss : All input tensors should have same dimension but got sizes: input1: torch.Size([3]), "
         "input2: torch.Size([3]), target: torch.Size([3, 1]) "),
        (lambda: TF.margin_ranking_loss(z(3), z(3), z(3), reduction="x"), ValueError,
         "x is not a valid value for reduction"),
    ]
    for fn, kind, msg in cases:
        with pytest.raises(kind) as e:
            fn()
        assert str(e.value) == msg


def test_legacy_reduction_flags(device):
    a, b, t = (tritorch.tensor(v, device=device) for v in (_rand(4), _rand(4, seed=1), _signs(4)))
    with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated"):
        r = TF.margin_ranking_loss(a, b, t, size_average=False)
    assert_close(r, F.margin_ranking_loss(*(torch.tensor(to_np(x)) for x in (a, b, t)), reduction="sum").numpy(),
                 **TOL)


def test_gradcheck():
    d = dict(dtype=tritorch.float64, requires_grad=True)
    x, y, z = (tritorch.tensor(_rand(3, 4, seed=s), **d) for s in (0, 1, 2))
    assert gradcheck(lambda a: TF.normalize(a, 3.0, 1), (x,))
    assert gradcheck(lambda a, b: TF.cosine_similarity(a, b, 1), (x, y))
    assert gradcheck(lambda a, b: TF.pairwise_distance(a, b, 1.5), (x, y))
    assert gradcheck(lambda a, b, c: TF.triplet_margin_loss(a, b, c, margin=3.0, swap=True), (x, y, z))
    t = tritorch.tensor([1.0, -1.0, 1.0], dtype=tritorch.float64)
    assert gradcheck(lambda a, b: TF.cosine_embedding_loss(a, b, t, -0.5), (x, y))
    assert gradcheck(lambda a, b: TF.margin_ranking_loss(a, b, tritorch.sign(a.detach() - 0.3), 0.1), (x, y))
