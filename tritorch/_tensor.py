"""The Tensor: a storage, an element offset, a shape, strides (in elements) and a dtype.

Ops and most methods are attached by the op modules in ``tritorch.kernels`` through :func:`register`, so that an
op's kernels, reference, backward rule and public names live in one place.
"""
import copy as _copy
import math
from types import FunctionType as _FunctionType

import numpy as np

from . import _dtype as D
from ._device import device as _device, CPU, INTERPRET
from ._storage import Storage
from . import _impl
from ._modes import dispatching

__all__ = ["Tensor", "register", "contiguous_strides"]


_STRIDES = {}


def contiguous_strides(shape):
    st = _STRIDES.get(shape) if type(shape) is tuple else None
    if st is None:
        strides, acc = [], 1
        for s in reversed(shape):
            strides.append(acc)
            acc *= max(int(s), 1)
        st = tuple(reversed(strides))
        if type(shape) is tuple and len(_STRIDES) < 4096:      # the few shapes a program uses, computed once
            _STRIDES[shape] = st
    return st


class Tensor:
    __slots__ = ("_storage", "_offset", "_shape", "_stride", "dtype", "_requires_grad", "_grad", "grad_fn",
                 "_output_nr", "_retains_grad", "_hooks", "_base", "_np_cache", "__weakref__", "__dict__")

    # ---- construction -------------------------------------------------------------------------------------------
    @classmethod
    def _make(cls, storage, offset, shape, stride, dtype):
        t = object.__new__(cls)
        t._storage = storage
        t._offset = offset
        t._shape = shape
        t._stride = stride
        t.dtype = dtype
        t._requires_grad = False
        t._grad = None
        t.grad_fn = None
        t._output_nr = 0
        t._retains_grad = False
        t._hooks = None
        t._base = None
        t._np_cache = None
        return t

    @classmethod
    def _empty(cls, shape, dtype, device):
        shape = tuple(shape)
        n = math.prod(shape)
        return cls._make(Storage.empty(n, device, dtype, shape), 0, shape, contiguous_strides(shape), dtype)

    @classmethod
    def _wrap_numpy(cls, arr, device=CPU, dtype=None):
        """Adopt a host array as a tensor (no copy if it is C-contiguous and already of the right type)."""
        dt = dtype or D.from_numpy_dtype(arr.dtype)
        arr = np.asarray(arr, dtype=dt.np, order="C")
        t = cls._make(Storage.from_numpy(arr.reshape(-1), device, dt), 0, arr.shape,
                      contiguous_strides(arr.shape), dt)
        if device.type == "cpu" or INTERPRET:
            t._np_cache = arr
        return t

    @classmethod
    def _host_result(cls, arr, dtype, device):
        """Adopt an op's fresh result: a C-contiguous host array of ``dtype`` that nothing else refers to (no
        checks, no copy: the cheap constructor of the ``cpu`` fast paths)."""
        shape = arr.shape
        t = cls._make(Storage(arr.reshape(-1), device, dtype, arr.size), 0, shape,
                      _STRIDES.get(shape) or contiguous_strides(shape), dtype)
        t._np_cache = arr
        return t

    def _alias(self, view=False):
        """A new tensor over the same elements with no autograd history (``view``: it records ``self`` as base)."""
        t = Tensor._make(self._storage, self._offset, self._shape, self._stride, self.dtype)
        t._np_cache = self._np_cache
        if view:
            t._base = self if self._base is None else self._base
        return t

    def _view(self, shape, stride, offset=None):
        """A view sharing storage; its autograd history is set by the view op that calls this."""
        t = Tensor._make(self._storage, self._offset if offset is None else offset, tuple(shape), tuple(stride),
                         self.dtype)
        t._base = self if self._base is None else self._base
        return t

    # ---- host access ------------------------------------------------------------------------------------------------
    @property
    def _np(self):
        """A NumPy view of this tensor's elements (host storages only): what the ``cpu`` kernels operate on."""
        a = self._np_cache
        if a is None:
            st = self._storage
            isz = self.dtype.itemsize
            strides = tuple(s * isz for s in self._stride)
            try:
                a = np.ndarray(self._shape, dtype=self.dtype.np, buffer=st.data, offset=self._offset * isz,
                               strides=strides)
            except ValueError:
                if 0 not in self._shape:
                    raise
                # a zero-size view may sit at an offset past its storage's end (zeros(0, 3)[:, 1:], as in PyTorch):
                # NumPy rejects that offset, and no element is read, so the view starts at the buffer instead
                a = np.ndarray(self._shape, dtype=self.dtype.np, buffer=st.data, offset=0, strides=strides)
            self._np_cache = a
        return a

    def numpy(self, *, force=False):
        if self.requires_grad and not force:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() "
                               "instead.")
        if self.device.type != "cpu" and not force:
            raise TypeError(f"can't convert {self.device} device type tensor to numpy. Use Tensor.cpu() to copy "
                            "the tensor to host memory first.")
        return self._to_host_array()

    def _to_host_array(self):
        """The elements as a host array (a view on host storages, a download from a GPU)."""
        if self._storage.on_host:
            return self._np
        c = self.contiguous()
        flat = c._storage.host_array()
        return flat[c._offset:c._offset + c.numel()].reshape(c._shape)

    # ---- attributes ------------------------------------------------------------------------------------------------
    @property
    def device(self):
        return self._storage.device

    @property
    def shape(self):
        return Size(self._shape)

    def size(self, dim=None):
        if dim is None:
            return Size(self._shape)
        return self._shape[self._dim_of_0d(dim)]

    def stride(self, dim=None):
        if dim is None:
            return self._stride
        return self._stride[self._dim_of_0d(dim)]

    def _dim_of_0d(self, dim):
        if not self._shape and isinstance(dim, (int, np.integer)) and dim in (0, -1):
            raise IndexError(f"Dimension specified as {dim} but tensor has no dimensions")
        return self._wrap_dim(dim)

    def storage_offset(self):
        return self._offset

    def dim(self):
        return len(self._shape)

    ndim = property(dim)

    def numel(self):
        return math.prod(self._shape)

    nelement = numel

    def element_size(self):
        return self.dtype.itemsize

    def data_ptr(self):
        return self._storage.ptr + self._offset * self.dtype.itemsize

    @property
    def itemsize(self):
        return self.dtype.itemsize

    @property
    def nbytes(self):
        return self.numel() * self.dtype.itemsize

    @property
    def is_cpu(self):
        return self._storage.device.type == "cpu"

    @property
    def is_cuda(self):
        return self._storage.device.type == "cuda"

    @property
    def is_xpu(self):
        return False

    @property
    def is_mps(self):
        return False

    @property
    def is_leaf(self):
        return self.grad_fn is None

    @property
    def _version(self):
        return self._storage.version

    def is_floating_point(self):
        return self.dtype.is_floating_point

    def is_contiguous(self, memory_format=None):
        if 0 in self._shape:
            return True
        expected = 1
        for n, s in zip(reversed(self._shape), reversed(self._stride)):
            if n != 1 and s != expected:
                return False
            expected *= n
        return True

    def _wrap_dim(self, dim, ndim=None):
        n = self.ndim if ndim is None else ndim
        lo, hi = (-1, 0) if n == 0 else (-n, n - 1)
        if not isinstance(dim, (int, np.integer)) or not lo <= dim <= hi:
            raise IndexError(f"Dimension out of range (expected to be in range of [{lo}, {hi}], but got {dim})")
        return dim % max(n, 1)

    def __len__(self):
        if not self._shape:
            raise TypeError("len() of a 0-d tensor")
        return self._shape[0]

    def __iter__(self):
        if not self._shape:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self._shape[0]))

    def __hash__(self):
        return id(self)

    def __bool__(self):
        n = self.numel()
        if n != 1:
            raise RuntimeError("Boolean value of Tensor with " + ("no values" if n == 0 else "more than one value")
                               + " is ambiguous")
        return bool(self.item())

    def __int__(self):
        return int(self.item())

    def __float__(self):
        return float(self.item())

    def __complex__(self):
        return complex(self.item())

    def __index__(self):
        if self.dtype.is_floating_point or self.numel() != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def item(self):
        if self.numel() != 1:
            raise RuntimeError(f"a Tensor with {self.numel()} elements cannot be converted to Scalar")
        return self._to_host_array().reshape(-1)[0].item() if self.dtype is not D.bfloat16 else \
            float(self._to_host_array().reshape(-1)[0])

    def tolist(self):
        a = self._to_host_array()
        if self.dtype is D.bfloat16:
            a = a.astype(np.float32)
        return a.tolist()

    def __repr__(self):
        from ._format import format_tensor
        return format_tensor(self)

    def __format__(self, format_spec):
        """A 0-d tensor formats as its Python number (``f"{loss:.4f}"``); others as ``object`` does (``str``)."""
        if not self._shape and type(self) is Tensor:
            return self.item().__format__(format_spec)
        return object.__format__(self, format_spec)

    # ---- copying and pickling --------------------------------------------------------------------------------------
    def __deepcopy__(self, memo):
        """An independent leaf with copied elements, ``requires_grad`` and ``.grad``; tensors sharing a storage
        (a base and its views) copied in one ``deepcopy`` share the copied storage, as in PyTorch."""
        if not self.is_leaf:
            raise RuntimeError("Only Tensors created explicitly by the user (graph leaves) support the deepcopy "
                               "protocol at the moment.  If you were attempting to deepcopy a module, this may be "
                               "because of a torch.nn.utils.weight_norm usage, see "
                               "https://github.com/pytorch/pytorch/pull/103001")
        if id(self) in memo:
            return memo[id(self)]
        st = self._storage
        new_st = memo.get(id(st))
        if new_st is None:
            flat = Tensor._make(st, 0, (st.size,), (1,), self.dtype)
            new_st = flat.clone()._storage
            memo[id(st)] = new_st
            memo.setdefault(id(memo), []).append(st)      # keeps ``st`` (the key's owner) alive, as copy does
        t = Tensor._make(new_st, self._offset, self._shape, self._stride, self.dtype)
        t._requires_grad = self._requires_grad
        memo[id(self)] = t
        if self._grad is not None:
            t._grad = _copy.deepcopy(self._grad, memo)
        for k, v in self.__dict__.items():
            if not k.startswith("_"):       # user attributes; the engine's bookkeeping starts afresh
                t.__dict__[k] = _copy.deepcopy(v, memo)
        return t

    def __reduce_ex__(self, proto):
        """Pickle (DataLoader workers, ``multiprocessing``): the whole storage's elements (each tensor its own copy,
        as in PyTorch), the layout and ``requires_grad``; it loads on the same device. ``.grad`` is not pickled."""
        if self._requires_grad and not self.is_leaf:
            raise RuntimeError("Cowardly refusing to serialize non-leaf tensor which requires_grad, since autograd "
                               "does not support crossing process boundaries.  If you just want to transfer the "
                               "data, call detach() on the tensor before serializing (e.g., putting it on the queue).")
        st = self._storage
        return (_rebuild_tensor, (np.array(st.host_array()[:st.size]), str(st.device), self._offset, self._shape,
                                  self._stride, self.dtype, self._requires_grad))

    def __array__(self, dtype=None, copy=None):
        a = self.detach()._to_host_array()
        return a if dtype is None else a.astype(dtype)

    # ---- autograd attributes (the engine lives in tritorch.autograd) ------------------------------------------------
    @property
    def requires_grad(self):
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value):
        self.requires_grad_(bool(value))

    def requires_grad_(self, requires_grad=True):
        if self.grad_fn is not None:
            if not requires_grad:
                raise RuntimeError("you can only change requires_grad flags of leaf variables. If you want to use a "
                                   "computed variable in a subgraph that doesn't require differentiation use "
                                   "var_no_grad = var.detach().")
            self._requires_grad = True
            return self
        if requires_grad and not self.dtype.is_floating_point:
            raise RuntimeError("only Tensors of floating point and complex dtype can require gradients")
        self._requires_grad = bool(requires_grad)
        return self

    @property
    def grad(self):
        g = self._grad
        if g is None and self.grad_fn is not None and not self._retains_grad:
            import warnings
            warnings.warn("The .grad attribute of a Tensor that is not a leaf Tensor is being accessed. Its .grad "
                          "attribute won't be populated during autograd.backward(). If you indeed want the .grad "
                          "field to be populated for a non-leaf Tensor, use .retain_grad() on the non-leaf Tensor. "
                          "If you access the non-leaf Tensor by mistake, make sure you access the leaf Tensor "
                          "instead.", UserWarning, stacklevel=2)
        return g

    @grad.setter
    def grad(self, g):
        if g is not None:
            if not isinstance(g, Tensor):
                raise TypeError(f"assigned grad expected to be a Tensor or None but got grad of type "
                                f"{type(g).__name__}")
            if g is self:
                raise RuntimeError("can't assign Variable as its own grad")
            if g.dtype is not self.dtype:
                raise RuntimeError("assigned grad has data of a different type")
            if g._storage.device != self._storage.device:
                raise RuntimeError("assigned grad has data located on a different device")
            if g._shape != self._shape:
                raise RuntimeError("assigned grad has data of a different size")
        self._grad = g

    @grad.deleter
    def grad(self):
        self._grad = None

    @property
    def output_nr(self):
        return self._output_nr

    def detach(self):
        """A tensor sharing these elements (and their version counter), cut from the graph."""
        return self._alias()

    def detach_(self):
        if self._base is not None and self.grad_fn is not None:
            raise RuntimeError("Can't detach views in-place. Use detach() instead.")
        self.grad_fn = None
        self._requires_grad = False
        return self

    @property
    def data(self):
        """These elements, cut from the graph, under a version counter of their own (as in PyTorch): in-place writes
        through ``.data`` are not seen by autograd's saved-tensor checks, unlike writes through ``detach()``."""
        t = self._alias()
        t._storage = self._storage.same_buffer()
        return t

    @data.setter
    def data(self, other):
        """``t.data = other``: ``t`` now shows ``other``'s elements, keeping its identity and autograd flags."""
        if not isinstance(other, Tensor):
            raise TypeError(f"data must be a Tensor, not {type(other).__name__}")
        if self._requires_grad and not other.dtype.is_floating_point:
            raise RuntimeError("data set to a tensor that requires gradients must be floating point or complex dtype")
        self._storage, self._offset, self._shape, self._stride, self.dtype = (
            other._storage, other._offset, other._shape, other._stride, other.dtype)
        self._np_cache = other._np_cache
        self._base = other._base
        self.__dict__.pop("_grad_acc", None)       # a later graph gets an accumulator of the new shape

    # retain_grad, register_hook, register_post_accumulate_grad_hook and backward are autograd's (registered by
    # autograd/engine.py); the new_* factories are _creation.py's; to() runs the copy kernel through _impl
    @property
    def retains_grad(self):
        return self._retains_grad

    def is_inference(self):
        return False

    # ---- device and dtype conversion -------------------------------------------------------------------------------
    def to(self, *args, **kwargs):
        dev, dt, copy = None, None, kwargs.pop("copy", False)
        kwargs.pop("non_blocking", None)
        for a in list(args) + list(kwargs.values()):
            if isinstance(a, D.dtype):
                dt = a
            elif isinstance(a, Tensor):
                dev, dt = a.device, a.dtype
            elif isinstance(a, (str, int, _device)):
                dev = _device(a)
            elif a is not None:
                dt = D.to_dtype(a)
        return _impl.to(self, dev, dt, copy)

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        return self.to(_device("cuda", device if isinstance(device, int) else None) if not
                       isinstance(device, (str, _device)) else device)

    def type_as(self, other):
        """This tensor in ``other``'s dtype (itself when it already is)."""
        return self.to(other.dtype)

    def type(self, dtype=None):
        if dtype is None:
            return f"tritorch.{self.dtype.name}"
        return self.to(D.to_dtype(dtype))

    def float(self):
        return self.to(D.float32)

    def double(self):
        return self.to(D.float64)

    def half(self):
        return self.to(D.float16)

    def bfloat16(self):
        return self.to(D.bfloat16)

    def long(self):
        return self.to(D.int64)

    def int(self):
        return self.to(D.int32)

    def short(self):
        return self.to(D.int16)

    def char(self):
        return self.to(D.int8)

    def byte(self):
        return self.to(D.uint8)

    def bool(self):
        return self.to(D.bool_)

class Size(tuple):
    """``tensor.shape``: a tuple that prints like PyTorch's ``torch.Size([2, 3])``."""

    def __repr__(self):
        return f"tritorch.Size({list(self)})"

    def numel(self):
        return math.prod(self)


def _rebuild_tensor(flat, device, offset, shape, stride, dtype, requires_grad):
    t = Tensor._make(Storage.from_numpy(flat, _device(device), dtype), offset, tuple(shape), tuple(stride), dtype)
    t._requires_grad = requires_grad
    return t


OPERATORS = ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__",
             "__floordiv__", "__rfloordiv__", "__mod__", "__rmod__", "__pow__", "__rpow__", "__neg__", "__abs__",
             "__invert__", "__and__", "__or__", "__xor__", "__rand__", "__ror__", "__rxor__", "__eq__", "__ne__",
             "__lt__", "__le__", "__gt__", "__ge__", "__iadd__", "__isub__", "__imul__", "__itruediv__",
             "__ifloordiv__", "__imod__", "__ipow__", "__iand__", "__ior__", "__ixor__", "__getitem__", "__setitem__",
             "__matmul__", "__rmatmul__", "T", "mT")
"""The Tensor operators and properties that op modules set directly (not through ``register``): routed through
the op modes (tritorch/_modes.py) by ``name_published_methods``, as the registered ops are."""
ROUTED_METHODS = ("to", "float", "double", "half", "bfloat16", "int", "long", "bool", "short", "char", "byte",
                  "detach", "type_as", "cpu", "cuda", "item", "tolist", "numpy", "__bool__", "__int__", "__float__",
                  "__index__")
"""Core Tensor methods routed the same way: conversions (a graph capture records them, tritorch.jit) and reads of a
tensor as a Python value (a capture bakes the value in and warns)."""


def name_published_methods():
    """Once all op modules are imported: route the operators through the op modes, and give the Tensor methods that
    were made by a lambda or a factory (operators, ``_iop`` ...) the name they are published under
    (``Tensor.__add__``), so that pickle finds them."""
    for n in OPERATORS + ROUTED_METHODS:
        attr = vars(Tensor).get(n)
        if isinstance(attr, property) and not hasattr(attr.fget, "__op_name__"):
            setattr(Tensor, n, property(dispatching(n, attr.fget), attr.fset, attr.fdel, attr.__doc__))
        elif callable(attr) and not hasattr(attr, "__op_name__"):
            op = dispatching(n, attr)
            op.__module__, op.__qualname__ = __name__, "Tensor." + n
            setattr(Tensor, n, op)
    for n, fn in list(vars(Tensor).items()):
        if callable(fn) and hasattr(fn, "__code__") and ("<lambda>" in fn.__qualname__ or
                                                         "<locals>" in fn.__qualname__):
            fn.__module__, fn.__qualname__ = __name__, "Tensor." + n


def register(*names, method=True, function=True, inplace=None):
    """Publish an op under PyTorch's names: as a Tensor method and/or a ``tritorch.NAME`` function.

    Op modules decorate their public entry points with this; ``tritorch`` collects ``FUNCTIONS`` at import.
    """
    def deco(fn):
        if names and "<locals>" in getattr(fn, "__qualname__", ""):
            # a function made in a loop or a factory: name it after where it is published, so that pickle (and
            # DataLoader workers, multiprocessing) find it there
            fn.__module__, fn.__qualname__ = ("tritorch", names[0]) if function else (__name__, "Tensor." + names[0])
        op = dispatching(names[0], fn) if names and isinstance(fn, _FunctionType) else fn   # not a class
        if names and op is not fn and (function or method):
            # named where it is published, so that pickle finds it there (the module that defined ``fn`` may
            # keep the unrouted function under that name)
            op.__module__, op.__qualname__ = ("tritorch", names[0]) if function else (__name__, "Tensor." + names[0])
        for n in names:
            if method:
                setattr(Tensor, n, op)
            if function:
                FUNCTIONS[n] = op
        return op
    return deco


FUNCTIONS = {}
