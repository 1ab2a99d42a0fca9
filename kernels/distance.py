"""Distances and similarities: one_hot, normalize, cosine_similarity, pairwise_distance and the losses built on them
(triplet_margin_loss, cosine_embedding_loss, margin_ranking_loss), with ``torch.nn.functional``'s names and
arguments.

Each is a composite of existing kernel ops (the norm reduction, the elementwise and compare kernels, ``where``,
``sum``), written as PyTorch's ATen composites are, so the results, the NaN/inf behaviour and the gradients (which
come from the parts) match PyTorch's.
"""
import numpy as np

from tritorch import _dtype as D
from tritorch._tensor import Tensor, register
from .elementwise import where
from .loss import _check_reduction, _reduce, legacy_reduction

__all__ = ["one_hot", "normalize", "cosine_similarity", "pairwise_distance", "triplet_margin_loss",
           "cosine_embedding_loss", "margin_ranking_loss"]


def _check_tensors(name, **tensors):
    for arg, t in tensors.items():
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}(): argument '{arg}' must be Tensor, not {type(t).__name__}")


def one_hot(tensor, num_classes=-1):
    """int64 (..., num_classes) with a 1 at each index; ``num_classes=-1`` takes max + 1 (read on the host, as
    PyTorch does). Indices are checked before anything is built."""
    _check_tensors("one_hot", tensor=tensor)
    if tensor.dtype is not D.int64:
        raise RuntimeError("one_hot is only applicable to index tensor of type LongTensor.")
    if tensor.numel() == 0:
        if num_classes <= 0:
            raise RuntimeError("Can not infer total number of classes from empty tensor.")
    else:
        if tensor.min().item() < 0:
            raise RuntimeError("Class values must be non-negative.")
        top = tensor.max().item()
        if num_classes == -1:
            num_classes = top + 1
        elif top >= num_classes:
            raise RuntimeError("Class values must be smaller than num_classes.")
    classes = Tensor._wrap_numpy(np.arange(num_classes, dtype=np.int64), tensor.device)
    return (tensor.unsqueeze(-1) == classes).long()


def normalize(input, p=2.0, dim=1, eps=1e-12, out=None):
    """input / max(||input||_p over dim, eps)."""
    _check_tensors("normalize", input=input)
    denom = input.norm(p, dim, keepdim=True).clamp_min(eps).expand_as(input)
    if out is not None:
        return out.copy_(input / denom)
    return input / denom


def _common_float(x1, x2):
    dt = D.promote_types(x1.dtype, x2.dtype)
    if not dt.is_floating_point:
        raise RuntimeError(f"expected common dtype to be floating point, yet common dtype is {D.scalar_name(dt)}")
    return x1.to(dt), x2.to(dt)


@register("cosine_similarity", method=False)
def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    """sum(x1 * x2) / (max(||x1||, eps) * max(||x2||, eps)) over ``dim`` of the broadcast inputs; each input is
    divided by its clamped norm first, as PyTorch does (the product of the norms can overflow where this cannot)."""
    _check_tensors("cosine_similarity", x1=x1, x2=x2)
    x1, x2 = _common_float(x1, x2)
    shape = _broadcast(x1, x2)
    x1, x2 = x1.expand(shape), x2.expand(shape)
    n1 = x1.norm(2, dim, keepdim=True).clamp_min(eps)
    n2 = x2.norm(2, dim, keepdim=True).clamp_min(eps)
    return ((x1 / n1) * (x2 / n2)).sum(dim)


def _broadcast(x1, x2):
    """The broadcast shape of two tensors, or PyTorch's message."""
    n = max(x1.ndim, x2.ndim)
    out = []
    for i, (a, b) in enumerate(zip((1,) * (n - x1.ndim) + x1._shape, (1,) * (n - x2.ndim) + x2._shape)):
        if a != b and a != 1 and b != 1:
            raise RuntimeError(f"The size of tensor a ({a}) must match the size of tensor b ({b}) at non-singleton "
                               f"dimension {i}")
        out.append(b if a == 1 else a)
    return tuple(out)


@register("pairwise_distance", method=False)
def pairwise_distance(x1, x2, p=2.0, eps=1e-6, keepdim=False):
    """||x1 - x2 + eps||_p over the last dim of the broadcast inputs (PyTorch's eps placement)."""
    _check_tensors("pairwise_distance", x1=x1, x2=x2)
    x1, x2 = _common_float(x1, x2)
    _broadcast(x1, x2)
    return (x1 - x2 + eps).norm(p, -1, keepdim)


@register("triplet_margin_loss", method=False)
def triplet_margin_loss(anchor, positive, negative, margin=1.0, p=2, eps=1e-6, swap=False, size_average=None,
                        reduce=None, reduction="mean"):
    """max(d(a, p) - d(a, n) + margin, 0) with d the pairwise distance; ``swap`` uses min(d(a, n), d(p, n))."""
    _check_tensors("triplet_margin_loss", anchor=anchor, positive=positive, negative=negative)
    reduction = legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if margin <= 0:
        raise ValueError(f"margin must be greater than 0, got {margin}")
    dims = (anchor.ndim, positive.ndim, negative.ndim)
    if len(set(dims)) != 1:
        raise RuntimeError(f"The anchor, positive, and negative tensors are expected to have the same number of "
                           f"dimensions, but got: anchor {dims[0]}D, positive {dims[1]}D, and negative {dims[2]}D "
                           "inputs")
    d_pos = pairwise_distance(anchor, positive, p, eps)
    d_neg = pairwise_distance(anchor, negative, p, eps)
    if swap:
        d_neg = d_neg.minimum(pairwise_distance(positive, negative, p, eps))
    return _reduce((d_pos - d_neg + margin).clamp_min(0), reduction)


@register("cosine_embedding_loss", method=False)
def cosine_embedding_loss(input1, input2, target, margin=0, size_average=None, reduce=None, reduction="mean"):
    """1 - cos(x1, x2) where target is 1, max(0, cos(x1, x2) - margin) where it is -1, 0 elsewhere; cos over the
    last dim with 1e-12 added to each squared norm (PyTorch's EPSILON)."""
    _check_tensors("cosine_embedding_loss", input1=input1, input2=input2, target=target)
    reduction = legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    td = target.ndim
    if td > 1:
        raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
    if (td == 1 and (input1.ndim != 2 or input2.ndim != 2)) or (td == 0 and (input1.ndim != 1 or input2.ndim != 1)):
        raise RuntimeError(f"{td}D target tensor expects {td + 1}D input tensors, but found inputs with sizes "
                           f"{list(input1.shape)} and {list(input2.shape)}.")
    prod = (input1 * input2).sum(td)
    mag1 = (input1 * input1).sum(td) + 1e-12
    mag2 = (input2 * input2).sum(td) + 1e-12
    cos = prod / (mag1 * mag2).sqrt()
    zero = cos * 0
    out = where(target == 1, 1 - cos, zero) + where(target == -1, (cos - margin).clamp_min(0), zero)
    return _reduce(out, reduction)


@register("margin_ranking_loss", method=False)
def margin_ranking_loss(input1, input2, target, margin=0, size_average=None, reduce=None, reduction="mean"):
    """max(0, -target * (input1 - input2) + margin)."""
    _check_tensors("margin_ranking_loss", input1=input1, input2=input2, target=target)
    reduction = legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if not input1.ndim == input2.ndim == target.ndim:
        raise RuntimeError(f"margin_ranking_loss : All input tensors should have same dimension but got sizes: "
                           f"input1: {_size(input1)}, input2: {_size(input2)}, target: {_size(target)} ")
    return _reduce((-target * (input1 - input2) + margin).clamp_min(0), reduction)


def _size(t):
    return f"torch.Size({list(t.shape)})"
