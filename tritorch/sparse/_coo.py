"""Sparse COO tensors: ``SparseTensor`` (indices, values, size), ``sparse_coo_tensor``, the layouts and the products
with dense matrices (on kernels/sparse.py's COO kernels).

A sparse tensor is an (sparse_dim, nnz) int64 index tensor, a (nnz, *dense_shape) values tensor and a size; it is
not a dense ``Tensor`` (its own class, so the dense class stays as it is). Autograd runs on the values: every
operation is a differentiable op on them (the product kernels, ``index_add`` for ``coalesce`` and ``to_dense``,
indexing for ``to_sparse``), so a gradient reaches values that require grad, and a sparse tensor made with
``requires_grad=True`` gets a sparse ``.grad`` as in PyTorch. Index bookkeeping (checks, the duplicate merge of
``coalesce``) is integer work on the host copy of the indices, as PyTorch's ``check_invariants`` reads them too:
unlike PyTorch's default, indices out of range are always refused (PyTorch leaves them unchecked and answers wrongly).
"""
import math

import numpy as np

from tritorch import _dtype as D
from tritorch._creation import tensor as _tensor, zeros
from tritorch._device import device as _device
from tritorch._format import _body, _add_suffixes
from tritorch._tensor import Tensor, Size
from tritorch.kernels.join import cat
from tritorch.kernels.matmul import mm as _dense_mm
from tritorch.kernels.sparse import coo_mm

__all__ = ["layout", "strided", "sparse_coo", "SparseTensor", "sparse_coo_tensor", "mm", "spmm", "addmm"]


class layout:
    """A memory layout: ``tritorch.strided`` (dense tensors) or ``tritorch.sparse_coo``."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"tritorch.{self.name}"

    def __reduce__(self):
        return self.name                # pickled as the module attribute of that name


strided = layout("strided")
sparse_coo = layout("sparse_coo")


def _host(t):
    return np.asarray(t._to_host_array()).astype(np.int64, copy=False)


def _strides(shape):
    """Row-major strides of ``shape`` (the linear index of a sparse position)."""
    out, acc = [], 1
    for n in reversed(shape):
        out.append(acc)
        acc *= n
    return np.array(out[::-1], dtype=np.int64)


class SparseTensor:
    """A sparse COO tensor: ``indices()`` (sparse_dim, nnz) int64, ``values()`` (nnz, *dense_shape) and a size;
    entries at the same position add up (``coalesce`` merges them). Made by ``sparse_coo_tensor`` or
    ``Tensor.to_sparse``."""

    is_sparse = True
    is_sparse_csr = False
    layout = sparse_coo

    def __init__(self, indices, values, size, coalesced, leaf=False):
        self._i, self._v, self._size, self._coalesced, self._leaf = indices, values, Size(size), coalesced, leaf

    # ---- properties ---------------------------------------------------------------------------------------------
    shape = property(lambda self: self._size)
    dtype = property(lambda self: self._v.dtype)
    device = property(lambda self: self._v.device)
    is_cuda = property(lambda self: self._v.device.type == "cuda")
    ndim = property(lambda self: len(self._size))
    requires_grad = property(lambda self: self._v.requires_grad)
    grad_fn = property(lambda self: None if self._leaf else self._v.grad_fn)
    is_leaf = property(lambda self: self._leaf or self._v.grad_fn is None)

    def size(self, dim=None):
        return self._size if dim is None else self._size[dim]

    def dim(self):
        return len(self._size)

    def numel(self):
        return math.prod(self._size)

    def __len__(self):
        if not self._size:
            raise TypeError("len() of a 0-d tensor")
        return self._size[0]

    def sparse_dim(self):
        return self._i._shape[0]

    def dense_dim(self):
        return self._v.ndim - 1

    def _nnz(self):
        return self._i._shape[1]

    def _indices(self):
        return self._i

    def _values(self):
        return self._v

    def indices(self):
        if not self._coalesced:
            raise RuntimeError("Cannot get indices on an uncoalesced tensor, please call .coalesce() first")
        return self._i

    def values(self):
        if not self._coalesced:
            raise RuntimeError("Cannot get values on an uncoalesced tensor, please call .coalesce() first")
        return self._v

    def is_coalesced(self):
        return self._coalesced

    # ---- autograd -----------------------------------------------------------------------------------------------
    def requires_grad_(self, requires_grad=True):
        if self._v.grad_fn is not None:
            if not requires_grad:
                raise RuntimeError("you can only change requires_grad flags of leaf variables.")
            return self
        self._v.requires_grad_(requires_grad)
        self._leaf = requires_grad
        return self

    def detach(self):
        return SparseTensor(self._i, self._v.detach(), self._size, self._coalesced)

    @property
    def grad(self):
        """The gradient of a sparse leaf (made with ``requires_grad=True``): sparse, coalesced, one value per
        position (duplicate entries of a position share its gradient)."""
        g = self._v.grad if self._leaf else None
        if g is None:
            return None
        idx, _, first = self._unique()
        return SparseTensor(idx, g.index_select(0, first), self._size, False)   # (flagged as PyTorch flags it)

    @grad.setter
    def grad(self, value):
        if value is not None:
            raise RuntimeError("assigning a gradient to a sparse tensor is not supported (only None)")
        self._v.grad = None

    # ---- layout conversions -------------------------------------------------------------------------------------
    def _unique(self):
        """(coalesced indices, the coalesced slot of each entry, the first entry of each slot) as tensors on this
        device; the merge runs on the host copy of the indices."""
        sd, dev = self.sparse_dim(), self.device
        host = _host(self._i)
        lin = (host * _strides(self._size[:sd])[:, None]).sum(0) if sd else np.zeros(host.shape[1], np.int64)
        uniq, first, inv = np.unique(lin, return_index=True, return_inverse=True)
        idx = np.stack([(uniq // s) % n for s, n in zip(_strides(self._size[:sd]), self._size[:sd])]) if sd else \
            np.zeros((0, len(uniq)), np.int64)
        to = lambda a: _tensor(np.ascontiguousarray(a, np.int64), device=dev)   # noqa: E731
        return to(idx), to(inv.reshape(-1)), to(first)

    def coalesce(self):
        """Entries sorted by position, those at one position summed (differentiable in the values)."""
        if self._coalesced:
            return self
        idx, inv, _ = self._unique()
        vals = zeros((idx._shape[1],) + tuple(self._v._shape[1:]), dtype=self.dtype, device=self.device)
        return SparseTensor(idx, vals.index_add(0, inv, self._v), self._size, True)

    def to_dense(self, dtype=None, *, masked_grad=None):
        """The dense tensor (duplicates summed; differentiable in the values)."""
        sd = self.sparse_dim()
        n = math.prod(self._size[:sd])
        strides = _tensor(_strides(self._size[:sd]), device=self.device).reshape(sd, 1)
        lin = (self._i * strides).sum(0) if sd else zeros(self._nnz(), dtype=D.int64, device=self.device)
        out = zeros((n,) + tuple(self._size[sd:]), dtype=self.dtype, device=self.device).index_add(0, lin, self._v)
        out = out.reshape(tuple(self._size))
        return out if dtype is None else out.to(dtype)

    def to_sparse(self, *args, **kwargs):
        return self

    def _with(self, values):
        return SparseTensor(self._i.to(values.device), values, self._size, self._coalesced)

    def to(self, *args, **kwargs):
        v = self._v.to(*args, **kwargs)
        return self if v is self._v else self._with(v)

    def cuda(self, device=None):
        return self._with(self._v.cuda(device))

    def cpu(self):
        return self._with(self._v.cpu())

    def float(self):
        return self.to(D.float32)

    def double(self):
        return self.to(D.float64)

    def half(self):
        return self.to(D.float16)

    def clone(self):
        return SparseTensor(self._i.clone(), self._v.clone(), self._size, self._coalesced)

    def t(self):
        if self.sparse_dim() != 2 or self.dense_dim():
            raise RuntimeError(f"t() expects a tensor with <= 2 sparse and 0 dense dimensions, but self is "
                               f"{self.sparse_dim()} sparse and {self.dense_dim()} dense")
        return self.transpose(0, 1)

    def transpose(self, dim0, dim1):
        """Swaps two sparse dims (the index rows); the result is not coalesced (its order changed)."""
        sd, nd = self.sparse_dim(), self.ndim
        d0, d1 = (d + nd if d < 0 else d for d in (dim0, dim1))
        if not (0 <= d0 < nd and 0 <= d1 < nd):
            raise IndexError(f"Dimension out of range (expected to be in range of [{-nd}, {nd - 1}], but got "
                             f"{dim0 if not 0 <= d0 < nd else dim1})")
        if d0 == d1:
            return self
        if d0 >= sd or d1 >= sd:
            raise RuntimeError("transpose of dense dimensions of a sparse tensor is not supported")
        order = list(range(sd))
        order[d0], order[d1] = d1, d0
        size = list(self._size)
        size[d0], size[d1] = size[d1], size[d0]
        idx = self._i.index_select(0, _tensor(order, device=self.device))
        return SparseTensor(idx, self._v, size, self._nnz() <= 1)

    # ---- arithmetic ---------------------------------------------------------------------------------------------
    def __mul__(self, other):
        if isinstance(other, (int, float, bool)) or (isinstance(other, Tensor) and other.ndim == 0):
            return SparseTensor(self._i, self._v * other, self._size, self._coalesced)
        return NotImplemented

    __rmul__ = __mul__

    def __truediv__(self, other):
        if isinstance(other, (int, float)) or (isinstance(other, Tensor) and other.ndim == 0):
            return SparseTensor(self._i, self._v / other, self._size, self._coalesced)
        return NotImplemented

    def __neg__(self):
        return SparseTensor(self._i, -self._v, self._size, self._coalesced)

    def __add__(self, other):
        """sparse + sparse (same size): the entries of both, concatenated (coalesce merges them)."""
        if isinstance(other, SparseTensor):
            if other._size != self._size:
                raise RuntimeError(f"add: expected 'self' and 'other' to have same size, but self has size "
                                   f"{list(self._size)} while other has size {list(other._size)}")
            dt = D.promote_types(self.dtype, other.dtype)
            return SparseTensor(cat([self._i, other._i], 1), cat([self._v.to(dt), other._v.to(dt)]), self._size,
                                False)
        if isinstance(other, Tensor):
            raise RuntimeError("add(sparse, dense) is not supported. Use add(dense, sparse) instead.")
        return NotImplemented

    # ---- products -----------------------------------------------------------------------------------------------
    def __matmul__(self, other):
        return _matmul(self, other, "MmBackward0")

    def __rmatmul__(self, other):
        return _matmul(other, self, "MmBackward0")

    def mm(self, mat2):
        return _matmul(self, mat2, "MmBackward0")

    matmul = mm

    @staticmethod
    def _sparse_matmul(a, b):
        """The hook of kernels/matmul.py's ``mm`` and ``matmul`` for a sparse operand."""
        return _matmul(a, b, "MmBackward0")

    # ---- printing -----------------------------------------------------------------------------------------------
    def __repr__(self):
        indent = len("tensor(")
        parts = []
        for prefix, t in (("indices=tensor(", self._i), ("values=tensor(", self._v)):
            body = "[]" if t.numel() == 0 else _body(np.asarray(t.detach()._to_host_array()), t.dtype,
                                                        indent + len(prefix))
            parts.append(prefix + body + (f", size={tuple(t.shape)}" if t.numel() == 0 else "") + ")")
        suffixes = [f"device='{self.device}'"] if self.device.type != "cpu" else []
        suffixes += [f"size={tuple(self._size)}", f"nnz={self._nnz()}"]
        if self.dtype not in (D.get_default_dtype(), D.int64, D.bool_):
            suffixes.append(f"dtype={self.dtype}")
        suffixes.append(f"layout={sparse_coo}")
        if self.grad_fn is not None:
            suffixes.append(f"grad_fn=<{self.grad_fn.name()}>")
        elif self.requires_grad:
            suffixes.append("requires_grad=True")
        head = "tensor(" + parts[0] + ",\n" + " " * indent + parts[1] + ",\n" + " " * indent + suffixes[0]
        return _add_suffixes(head, suffixes[1:], indent)

    __str__ = __repr__


# ====================================================================================================================
# Construction
# ====================================================================================================================

def _as_tensor(x, dtype=None):
    return x if isinstance(x, Tensor) else _tensor(x, dtype=dtype)


def _check_indices(host, size, sd):
    """PyTorch's ``check_invariants``: no negative index, none at or past its dim's size."""
    if not host.shape[1]:
        return
    lo, hi = host.min(1), host.max(1)
    for d in range(sd):
        if lo[d] < 0:
            raise RuntimeError(f"found negative index {lo[d]} for dim {d}")
        if hi[d] >= size[d]:
            raise RuntimeError(f"size is inconsistent with indices: for dim {d}, size is {size[d]} but found index "
                               f"{hi[d]}")


def sparse_coo_tensor(indices, values, size=None, *, dtype=None, device=None, pin_memory=False, requires_grad=False,
                      check_invariants=None, is_coalesced=None):
    """A sparse COO tensor with ``values[k]`` at position ``indices[:, k]`` (duplicates add up), as
    ``torch.sparse_coo_tensor``. ``size`` defaults to the smallest that holds the indices; the indices are always
    checked against it."""
    values = _as_tensor(values, dtype)
    indices = indices if isinstance(indices, Tensor) else _tensor(indices, device=values.device)
    if indices.dtype is not D.int64:
        indices = indices.to(D.int64)
    if dtype is not None and values.dtype is not dtype:
        values = values.to(dtype)
    if device is not None:
        dev = _device(device)
        indices, values = indices.to(dev), values.to(dev)
    elif indices.device != values.device:
        raise RuntimeError(f"device of indices ({indices.device}) must match device of values ({values.device})")
    if indices.ndim != 2:
        raise RuntimeError(f"indices must be sparse_dim x nnz, but got: {list(indices.shape)}")
    sd, nnz = indices._shape
    v_nnz = values._shape[0] if values.ndim else 1
    if v_nnz != nnz:
        raise RuntimeError(f"indices and values must have same nnz, but got nnz from indices: {nnz}, nnz from "
                           f"values: {v_nnz}")
    host = _host(indices)
    dense_shape = tuple(values._shape[1:])
    if size is None:
        size = tuple(int(m) + 1 for m in host.max(1)) if nnz else (0,) * sd
        size += dense_shape
    size = tuple(int(n) for n in (size if not isinstance(size, int) else (size,)))
    if any(n < 0 for n in size):
        raise RuntimeError(f"Trying to create tensor with negative dimension {min(size)}: {list(size)}")
    if len(size) != sd + len(dense_shape):
        raise RuntimeError(f"'len(size) == sparse_dim + dense_dim' is not satisfied: len(size) = {len(size)}, "
                           f"sparse_dim = {sd}, dense_dim = {len(dense_shape)}")
    if size[sd:] != dense_shape:
        raise RuntimeError(f"values has incorrect size, expected {[nnz] + list(size[sd:])}, got "
                           f"{[nnz] + list(dense_shape)}")
    _check_indices(host, size, sd)
    coalesced = nnz <= 1
    if is_coalesced:
        lin = (host * _strides(size[:sd])[:, None]).sum(0)
        if np.any(np.diff(lin) <= 0):
            raise RuntimeError("sparse_coo_tensor(): is_coalesced=True but the indices are not sorted and unique")
        coalesced = True
    indices = indices.contiguous()
    if requires_grad:
        values = values.detach().requires_grad_()
    elif values.requires_grad and values.grad_fn is None:
        values = values.view_as(values)     # a sparse tensor made of a leaf is not a leaf itself, as in PyTorch
    return SparseTensor(indices, values, size, coalesced, leaf=requires_grad)


def to_sparse(self, sparse_dim=None, *, layout=None, blocksize=None, dense_dim=None):
    """``Tensor.to_sparse``: the nonzero entries (a position of the first ``sparse_dim`` dims is kept where any of
    its elements is nonzero) as a coalesced COO tensor; differentiable."""
    if layout not in (None, sparse_coo) or blocksize is not None:
        raise NotImplementedError(f"to_sparse: only the sparse_coo layout is supported (got {layout})")
    nd = self.ndim
    sd = nd if sparse_dim is None else int(sparse_dim)
    if not 0 <= sd <= nd:
        raise RuntimeError(f"sparse_dim must be in [0, {nd}] (got {sparse_dim})")
    mask = self != 0
    if sd < nd:
        mask = mask.reshape(tuple(self._shape[:sd]) + (-1,)).any(-1)
    if sd == 0:
        idx = zeros((0, 1), dtype=D.int64, device=self.device)
        return SparseTensor(idx, self.unsqueeze(0), self._shape, True)
    idx = mask.nonzero().t().contiguous()
    return SparseTensor(idx, self[tuple(idx)], self._shape, True)


# ====================================================================================================================
# Products
# ====================================================================================================================

def _matrix(t, what):
    """PyTorch's checks that a product operand is a matrix."""
    if t.ndim < 2:
        raise IndexError(f"Dimension out of range (expected to be in range of [-1, 0], but got "
                         f"{-2 if what == 'sparse' else 1})")
    if t.ndim > 2:
        raise RuntimeError(f"addmm: matrices expected, got {t.ndim}D tensor")


def _sparse_dense(s, b, name):
    """sparse (M, K) @ dense (K, N) on the COO kernel."""
    if not isinstance(b, Tensor):
        raise TypeError(f"mm(): argument 'mat2' must be Tensor, not {type(b).__name__}")
    _matrix(s, "sparse")
    if s.dense_dim():                                       # a hybrid (1 sparse, 1 dense dim) matrix
        raise RuntimeError(f"addmm: matrices expected, got {s.sparse_dim()}D tensor")
    _matrix(b, "dense")
    if s.device != b.device:
        raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, "
                           f"{s.device} and {b.device}!")
    if s.dtype is D.bool_:
        raise NotImplementedError("\"addmm_sparse_dense\" not implemented for 'Bool'")
    if s.dtype is not b.dtype:
        raise RuntimeError(f"expected scalar type {D.scalar_name(s.dtype)} but found {D.scalar_name(b.dtype)}")
    if b._shape[0] != s._size[1]:
        raise RuntimeError(f"addmm: Argument #3 (dense): Expected dim 0 size {s._size[1]}, got {b._shape[0]}")
    return coo_mm(s._i[0], s._i[1], s._v, b, s._size[0], name)


def _matmul(a, b, name):
    """A product with a sparse operand: sparse @ dense and dense @ sparse give dense results, sparse @ sparse a
    sparse one."""
    if isinstance(a, SparseTensor) and isinstance(b, SparseTensor):
        return _sparse_dense(a, b.to_dense(), name).to_sparse()
    if isinstance(a, SparseTensor):
        return _sparse_dense(a, b, name)
    if not isinstance(a, Tensor):
        raise TypeError(f"mm(): argument 'input' must be Tensor, not {type(a).__name__}")
    _matrix(a, "dense")
    return _sparse_dense(b.t(), a.t(), name).t()              # dense @ sparse = (sparse^T @ dense^T)^T


def mm(mat1, mat2, reduce="sum"):
    """``tritorch.sparse.mm``: a product with a sparse COO operand (sparse @ dense -> dense, sparse @ sparse ->
    sparse); differentiable in the dense operand and in the sparse operand's values."""
    if reduce != "sum":
        raise NotImplementedError(f"sparse.mm: reduce={reduce!r} is only supported by PyTorch for sparse CSR "
                                  "inputs; COO supports reduce='sum'")
    if not isinstance(mat1, SparseTensor) and not isinstance(mat2, SparseTensor):
        return _dense_mm(mat1, mat2)
    return _matmul(mat1, mat2, "SparseAddmmBackward0")


def spmm(input, mat2):
    """``tritorch.spmm``: ``mm`` that accepts a sparse first operand."""
    if isinstance(input, SparseTensor) or isinstance(mat2, SparseTensor):
        return _matmul(input, mat2, "MmBackward0")
    return _dense_mm(input, mat2)


def addmm(mat, mat1, mat2, *, beta=1.0, alpha=1.0):
    """``tritorch.sparse.addmm``: ``beta * mat + alpha * (mat1 @ mat2)`` for a sparse ``mat1``."""
    prod = mm(mat1, mat2)
    return (mat * beta if beta != 1 else mat) + (prod * alpha if alpha != 1 else prod)
