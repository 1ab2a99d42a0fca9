"""``tritorch.sparse``: sparse COO tensors (``tritorch.sparse_coo_tensor``, ``Tensor.to_sparse``) and their products
with dense matrices (``tritorch.sparse.mm``, ``tritorch.spmm``, ``tritorch.mm`` and ``@`` with a sparse operand), on
the COO kernels of kernels/sparse.py; and the legacy ``tritorch.sparse.FloatTensor(indices, values, size)`` family.

Dense tensors get ``layout`` (``tritorch.strided``), ``is_sparse`` (False) and ``to_sparse`` here: the dense class
itself knows nothing of sparse tensors.
"""
from tritorch import _dtype as D
from tritorch._creation import zeros
from tritorch._tensor import Tensor, Size
from ._coo import (layout, strided, sparse_coo, SparseTensor, sparse_coo_tensor, to_sparse, mm, spmm,  # noqa: F401
                   addmm)

__all__ = ["mm", "addmm", "SparseTensor", "FloatTensor", "DoubleTensor", "HalfTensor", "BFloat16Tensor",
           "ByteTensor", "CharTensor", "ShortTensor", "IntTensor", "LongTensor", "BoolTensor"]


def _dense_layout(self):
    return strided


def _dense_to_dense(self, dtype=None, *, masked_grad=None):
    return self if dtype is None else self.to(dtype)


Tensor.layout = property(_dense_layout, doc="The memory layout: ``tritorch.strided`` for a dense tensor.")
Tensor.is_sparse = False
Tensor.is_sparse_csr = False
Tensor.to_sparse = to_sparse
Tensor.to_dense = _dense_to_dense
to_sparse.__qualname__, _dense_to_dense.__qualname__ = "Tensor.to_sparse", "Tensor.to_dense"


class _SparseLegacyType(type):
    """``tritorch.sparse.FloatTensor`` and its kind: ``(indices, values[, size])`` builds a sparse tensor (the values
    keep their dtype, as in PyTorch), ``(*sizes)`` or ``(size)`` an empty one of that dtype; ``isinstance`` asks
    whether a sparse tensor is a ``cpu`` one of that dtype."""

    def __call__(cls, *args, device=None):
        if args and isinstance(args[0], Tensor):
            return sparse_coo_tensor(*args, device=device)
        size = tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list, Size)) else args
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in size):
            raise TypeError(f"{cls.__name__}(): expected (indices, values[, size]) or sizes, got "
                            f"{tuple(type(a).__name__ for a in args)}")
        return sparse_coo_tensor(zeros((len(size), 0), dtype=D.int64), zeros((0,), dtype=cls.dtype), size,
                                 device=device)

    def __instancecheck__(cls, obj):
        return isinstance(obj, SparseTensor) and obj.dtype is cls.dtype and obj.device.type == "cpu"

    def __repr__(cls):
        return f"<class 'tritorch.sparse.{cls.__name__}'>"


def _legacy(name, dtype):
    return _SparseLegacyType(name, (), {"dtype": dtype, "is_sparse": True, "__module__": __name__,
                                        "__doc__": f"Legacy constructor of sparse {dtype} cpu tensors."})


FloatTensor = _legacy("FloatTensor", D.float32)
DoubleTensor = _legacy("DoubleTensor", D.float64)
HalfTensor = _legacy("HalfTensor", D.float16)
BFloat16Tensor = _legacy("BFloat16Tensor", D.bfloat16)
ByteTensor = _legacy("ByteTensor", D.uint8)
CharTensor = _legacy("CharTensor", D.int8)
ShortTensor = _legacy("ShortTensor", D.int16)
IntTensor = _legacy("IntTensor", D.int32)
LongTensor = _legacy("LongTensor", D.int64)
BoolTensor = _legacy("BoolTensor", D.bool_)
