"""Embedding and EmbeddingBag: the gather kernel and the scatter-add backward vs float64 NumPy oracles."""
import numpy as np
import pytest

import tritorch
from tritorch.kernels.embedding import embedding, embedding_bag
from tritorch.nn.sparse import Embedding, EmbeddingBag
from helpers import assert_close, make, to_np


def ref_embedding_grad(idx, g, num, padding_idx=None):
    gw = np.zeros((num, g.shape[-1]))
    np.add.at(gw, idx.reshape(-1), g.reshape(-1, g.shape[-1]))
    if padding_idx is not None:
        gw[padding_idx] = 0
    return gw


def ref_bag(w, idx, bounds, mode, psw=None):
    rows = w[idx] * (psw[:, None] if psw is not None else 1)
    out = np.zeros((len(bounds) - 1, w.shape[1]))
    for b in range(len(bounds) - 1):
        s = rows[bounds[b]:bounds[b + 1]]
        out[b] = s.sum(0) / (max(len(s), 1) if mode == "mean" else 1)
    return out


@pytest.mark.parametrize("dtype", [tritorch.float32, tritorch.float64, tritorch.float16])
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_embedding_forward_backward_repeated(device, dtype, layout):
    w, wr = make((7, 5), dtype, device, layout, requires_grad=True)
    idx_np = np.array([[1, 2, 1], [6, 0, 1], [1, 1, 3]])
    idx = tritorch.tensor(idx_np, device=device)
    y = embedding(idx, w)
    assert y.shape == (3, 3, 5)
    assert_close(y, wr[idx_np], dtype)
    g, gr = make((3, 3, 5), dtype, device, seed=1)
    y.backward(g)
    assert_close(w.grad, ref_embedding_grad(idx_np, gr, 7), dtype, rtol=1e-2 if dtype == tritorch.float16 else None)


@pytest.mark.parametrize("padding_idx", [0, -1, 3])
def test_embedding_padding_idx_grad_zero(device, padding_idx):
    w, wr = make((4, 3), tritorch.float64, device, requires_grad=True)
    idx_np = np.array([0, 3, 3, 1, 0, 2])
    y = embedding(tritorch.tensor(idx_np, device=device), w, padding_idx=padding_idx)
    g, gr = make((6, 3), tritorch.float64, device, seed=2)
    y.backward(g)
    pad = padding_idx % 4
    assert_close(w.grad, ref_embedding_grad(idx_np, gr, 4, pad))
    assert np.all(to_np(w.grad)[pad] == 0)
    assert y.grad_fn is not None


def test_embedding_int32_0d_and_empty(device):
    w, wr = make((5, 4), tritorch.float32, device, requires_grad=True)
    y = embedding(tritorch.tensor(3, dtype=tritorch.int32, device=device), w)
    assert y.shape == (4,)
    assert_close(y, wr[3])
    e = embedding(tritorch.tensor(np.zeros((2, 0), np.int64), device=device), w)
    assert e.shape == (2, 0, 4)
    e.backward(tritorch.ones(2, 0, 4, device=device))
    assert_close(w.grad, np.zeros((5, 4)))


def test_embedding_errors(device):
    w = tritorch.randn(5, 3, device=device)
    with pytest.raises(IndexError, match="index out of range in self"):
        embedding(tritorch.tensor([1, 5], device=device), w)
    with pytest.raises(IndexError, match="index out of range in self"):
        embedding(tritorch.tensor([-1], device=device), w)
    with pytest.raises(RuntimeError, match="Expected tensor for argument #1 'indices'"):
        embedding(tritorch.tensor([1.0], device=device), w)
    with pytest.raises(NotImplementedError, match="sparse"):
        embedding(tritorch.tensor([1], device=device), w, sparse=True)
    with pytest.raises(NotImplementedError, match="sparse"):
        Embedding(5, 3, sparse=True)
    with pytest.raises(AssertionError, match="Padding_idx must be within num_embeddings"):
        Embedding(5, 3, padding_idx=5)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0])
def test_embedding_max_norm_renormalises_in_place(device, norm_type):
    w, wr = make((6, 4), tritorch.float64, device, low=-3, high=3)
    idx_np = np.array([1, 4, 1])
    y = embedding(tritorch.tensor(idx_np, device=device), w, max_norm=1.5, norm_type=norm_type)
    exp = wr.copy()
    for r in (1, 4):
        n = np.sum(np.abs(exp[r]) ** norm_type) ** (1 / norm_type)
        if n > 1.5:
            exp[r] *= 1.5 / (n + 1e-7)
    assert_close(w, exp)
    assert_close(y, exp[idx_np])


def test_embedding_module_and_from_pretrained(device):
    tritorch.manual_seed(0)
    m = Embedding(10, 3, padding_idx=2, device=device)
    assert m.weight.shape == (10, 3) and np.all(to_np(m.weight)[2] == 0)
    assert repr(m) == "Embedding(10, 3, padding_idx=2)"
    w, wr = make((4, 2), tritorch.float32, device)
    e = Embedding.from_pretrained(w)
    assert not e.weight.requires_grad
    assert_close(e(tritorch.tensor([3, 0], device=device)), wr[[3, 0]])
    e2 = Embedding.from_pretrained(w, freeze=False, padding_idx=0)
    e2(tritorch.tensor([0, 1, 1], device=device)).sum().backward()
    assert_close(e2.weight.grad, np.array([[0, 0], [2, 2], [0, 0], [0, 0]]))
    assert tritorch.embedding is embedding


@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_embedding_bag_offsets(device, mode):
    w, wr = make((6, 5), tritorch.float64, device, requires_grad=True)
    idx_np = np.array([1, 2, 1, 5, 0, 1, 1])
    off_np = np.array([0, 3, 3, 5])
    y = embedding_bag(tritorch.tensor(idx_np, device=device), w, tritorch.tensor(off_np, device=device), mode=mode)
    bounds = np.append(off_np, len(idx_np))
    assert_close(y, ref_bag(wr, idx_np, bounds, mode))
    g, gr = make((4, 5), tritorch.float64, device, seed=3)
    y.backward(g)
    exp = np.zeros((6, 5))
    for b in range(4):
        for j in range(bounds[b], bounds[b + 1]):
            exp[idx_np[j]] += gr[b] / ((bounds[b + 1] - bounds[b]) if mode == "mean" else 1)
    assert_close(w.grad, exp)


def test_embedding_bag_per_sample_weights_2d_and_last_offset(device):
    w, wr = make((5, 3), tritorch.float64, device, requires_grad=True)
    psw, pr = make((2, 3), tritorch.float64, device, seed=4, requires_grad=True)
    idx_np = np.array([[0, 4, 4], [2, 3, 0]])
    y = embedding_bag(tritorch.tensor(idx_np, device=device), w, mode="sum", per_sample_weights=psw)
    assert_close(y, ref_bag(wr, idx_np.reshape(-1), [0, 3, 6], "sum", pr.reshape(-1)))
    g, gr = make((2, 3), tritorch.float64, device, seed=5)
    y.backward(g)
    seg = np.repeat([0, 1], 3)
    assert_close(psw.grad, np.einsum("nd,nd->n", gr[seg], wr[idx_np.reshape(-1)]).reshape(2, 3))
    exp = np.zeros((5, 3))
    np.add.at(exp, idx_np.reshape(-1), gr[seg] * pr.reshape(-1, 1))
    assert_close(w.grad, exp)
    y2 = embedding_bag(tritorch.tensor([1, 2, 3], device=device), w, tritorch.tensor([0, 1, 3], device=device),
                       mode="sum", include_last_offset=True)
    assert_close(y2, ref_bag(wr, np.array([1, 2, 3]), [0, 1, 3], "sum"))


def test_embedding_bag_module_padding_and_errors(device):
    w, wr = make((5, 2), tritorch.float64, device)
    bag = EmbeddingBag.from_pretrained(w, mode="mean", padding_idx=0)
    y = bag(tritorch.tensor([[0, 1, 2], [3, 0, 0]], device=device))
    assert_close(y, np.stack([(wr[1] + wr[2]) / 2, wr[3]]))
    psw, pr = make((2, 3), tritorch.float64, device, seed=6, requires_grad=True)
    ys = embedding_bag(tritorch.tensor([[0, 1, 2], [3, 0, 0]], device=device), w, mode="sum", per_sample_weights=psw,
                       padding_idx=0)
    assert_close(ys, np.stack([wr[1] * pr[0, 1] + wr[2] * pr[0, 2], wr[3] * pr[1, 0]]))
    ys.sum().backward()
    assert_close(psw.grad, np.array([[0, wr[1].sum(), wr[2].sum()], [wr[3].sum(), 0, 0]]))
    with pytest.raises(NotImplementedError, match="per_sample_weights is only supported for mode='sum'"):
        embedding_bag(tritorch.tensor([[1]], device=device), w, mode="mean",
                      per_sample_weights=tritorch.ones(1, 1, device=device, dtype=tritorch.float64))
    with pytest.raises(ValueError, match="offsets has to be a 1D Tensor but got None"):
        embedding_bag(tritorch.tensor([1], device=device), w)
    with pytest.raises(IndexError, match="index out of range in self"):
        embedding_bag(tritorch.tensor([[7]], device=device), w)
    with pytest.raises(NotImplementedError, match="sparse"):
        EmbeddingBag(3, 2, sparse=True)
