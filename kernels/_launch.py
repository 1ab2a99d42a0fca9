"""What every op module needs to launch a kernel: the pointer adapter Triton takes, dtype maps, and the
shape/stride helpers (broadcasting, dim coalescing) that let one kernel serve any strided layout."""
import numpy as np
import triton
import triton.language as tl

from tritorch import _dtype as D
from tritorch._device import INTERPRET
from tritorch._tensor import Tensor

__all__ = ["Ptr", "ptr", "table_ptr", "TL", "ACC", "broadcast_shapes", "coalesce", "MAXD", "cdiv", "next_pow2",
           "on_cpu"]


class Ptr:
    """A kernel argument for a tensor: a device address and a dtype, which is all Triton reads.

    In interpreter mode Triton also copies arguments to and from "the host"; our memory already is host memory, so
    the storage methods it calls hand back this object itself and the copy-back is a no-op."""

    __slots__ = ("addr", "dtype", "keep", "src", "reach")

    def __init__(self, addr, dtype, keep=None, src=None, reach=0):
        self.addr, self.dtype = addr, dtype
        self.keep = keep        # a temporary's storage, alive while the argument is (``in_ptr``)
        self.src = src          # (shape, strides) of the view this points into, for ``nbytes``; None: a raw address
        self.reach = reach      # bytes of the tensors a table of addresses points at (``table_ptr``)

    @property
    def nbytes(self):
        """Bytes of the distinct elements of the view this points at (broadcast dims counted once; plus, for a table
        of addresses, those of the tensors it lists), the extent a profiler counts; None for a raw address."""
        if self.src is None:
            return None
        n = 1
        for size, stride in zip(*self.src):
            if stride != 0 or size == 0:
                n *= size
        return n * self.dtype.itemsize + self.reach

    def data_ptr(self):
        return self.addr

    # -- the few torch-like methods Triton's interpreter calls ------------------------------------------------------
    def untyped_storage(self):
        return self

    def cpu(self):
        return self

    def copy_(self, other):
        return self

    def storage_offset(self):
        return 0

    def size(self):
        return (0,)

    def stride(self):
        return (1,)

    def new_empty(self, *args, **kwargs):
        return Ptr(0, self.dtype)

    def set_(self, storage, offset, size, stride):
        self.addr = storage.addr
        return self


def ptr(t):
    """The kernel argument of tensor ``t``: the address of its first element."""
    return Ptr(t._storage.ptr + t._offset * t.dtype.itemsize, t.dtype, None, (t._shape, t._stride))


TL = {D.float32: tl.float32, D.float16: tl.float16, D.bfloat16: tl.bfloat16, D.float64: tl.float64,
      D.int8: tl.int8, D.uint8: tl.uint8, D.int16: tl.int16, D.int32: tl.int32, D.int64: tl.int64,
      D.bool_: tl.int1}

# The type arithmetic runs in: float32 for half types (and float32), float64 for float64, the type itself for
# integers, int8 for bool so that sums of booleans count.
ACC = {D.float32: tl.float32, D.float16: tl.float32, D.bfloat16: tl.float32, D.float64: tl.float64,
       D.int8: tl.int8, D.uint8: tl.uint8, D.int16: tl.int16, D.int32: tl.int32, D.int64: tl.int64,
       D.bool_: tl.int8}

MAXD = 6


def on_cpu(t):
    return t._storage.device.type == "cpu"


def cdiv(a, b):
    return -(-a // b)


def next_pow2(n):
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def broadcast_shapes(*shapes):
    """NumPy/PyTorch broadcasting of shapes, or an error naming them."""
    ndim = max(len(s) for s in shapes)
    out = [1] * ndim
    for s in shapes:
        for i, n in enumerate(s, ndim - len(s)):
            if n != out[i]:
                if out[i] == 1:
                    out[i] = n
                elif n != 1:
                    raise RuntimeError("shapes " + ", ".join(str(tuple(x)) for x in shapes)
                                       + " cannot be broadcast together")
    return tuple(out)


def broadcast_strides(t, shape):
    """Strides of ``t`` viewed at the broadcast ``shape`` (0 where it is broadcast)."""
    pad = len(shape) - t.ndim
    st = [0] * pad
    for n, s in zip(t._shape, t._stride):
        st.append(0 if n == 1 else s)
    return st


def coalesce(shape, *strides):
    """Drop size-1 dims and merge dims that are contiguous in every operand; pad to ``MAXD`` dims.

    Returns ``(sizes, [strides of each operand])``, each of length MAXD, outermost first.
    """
    dims = [(n, [s[i] for s in strides]) for i, n in enumerate(shape) if n != 1]
    merged = []
    for n, st in dims:
        if merged:
            pn, pst = merged[-1]
            if all(ps == s * n for ps, s in zip(pst, st)):
                merged[-1] = (pn * n, st)
                continue
        merged.append((n, st))
    if len(merged) > MAXD:
        raise NotImplementedError(f"tensors with more than {MAXD} dims that cannot be merged (shape {tuple(shape)}) "
                                  "are not supported by the strided kernels; call .contiguous() first")
    pad = MAXD - len(merged)
    sizes = [1] * pad + [n for n, _ in merged]
    out = [[0] * pad + [st[k] for _, st in merged] for k in range(len(strides))]
    return sizes, out


def is_int64_index(numel, *tensors):
    """Whether offsets can pass 2**31 and must be computed in int64."""
    if numel >= 2 ** 31:
        return True
    for t in tensors:
        if t._storage.size >= 2 ** 31:
            return True
    return False


def acc_type(d):
    return ACC[d]


def block_for(n, default=1024):
    """Block of a 1-D elementwise launch. In the interpreter each program costs about 1 ms, so there a few large
    programs run faster; the tests still cover several programs and partial last blocks."""
    if INTERPRET:
        return max(16, min(next_pow2(n), 256))
    return default



@triton.jit
def nd_coords(i, S1, S2, S3, S4, S5):
    """Coordinates of linear index ``i`` in a 6-d shape (S0 is implied); size-1 dims fold away at compile time."""
    c5 = i % S5
    i = i // S5
    c4 = i % S4
    i = i // S4
    c3 = i % S3
    i = i // S3
    c2 = i % S2
    i = i // S2
    c1 = i % S1
    c0 = i // S1
    return c0, c1, c2, c3, c4, c5


@triton.jit
def nd_offset(c0, c1, c2, c3, c4, c5, t0, t1, t2, t3, t4, t5):
    return c0 * t0 + c1 * t1 + c2 * t2 + c3 * t3 + c4 * t4 + c5 * t5


def interp_bf16_in(t):
    """Triton's interpreter has no bfloat16 arithmetic: there, a bf16 kernel input is handed over as a float32 copy
    (made on the host, where interpreter memory lives). On a GPU this returns ``t`` itself."""
    if INTERPRET and t is not None and getattr(t, "dtype", None) is D.bfloat16:
        return Tensor._wrap_numpy(t._np.astype(np.float32), t.device)
    return t


def in_ptr(t):
    """``ptr(interp_bf16_in(t))`` whose float32 copy (interpreter only) lives as long as the argument: written inline
    in a launch, the copy would otherwise be freed before the kernel reads it."""
    c = interp_bf16_in(t)
    return Ptr(c._storage.ptr + c._offset * c.dtype.itemsize, c.dtype, c._storage if c is not t else None,
               (c._shape, c._stride))


def interp_bf16_out(t, dtype):
    """The interpreter's float32 result of a bf16 op, rounded to bf16 on the host (a no-op elsewhere)."""
    if INTERPRET and dtype is D.bfloat16 and t.dtype is not D.bfloat16:
        return Tensor._wrap_numpy(t._np.astype(D.bfloat16.np), t.device)
    return t


def table_ptr(table, tensors):
    """The kernel argument of ``table``, a tensor of addresses (a multi-tensor kernel's), which also counts the
    bytes of the contiguous ``tensors`` it lists: a kernel reaching memory through a table moves those bytes, and
    a profiler counting only the table would see a few hundred."""
    p = ptr(table)
    p.reach = sum(t.numel() * t.dtype.itemsize for t in tensors)
    return p
