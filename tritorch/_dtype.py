"""Data types with PyTorch's names and PyTorch's type-promotion rules."""
import numpy as np
import ml_dtypes

__all__ = ["dtype", "float32", "float16", "bfloat16", "float64", "int8", "uint8", "int16", "int32", "int64",
           "bool_", "result_type", "promote_types", "get_default_dtype", "set_default_dtype"]


class dtype:
    """A tensor element type. ``str()`` ends in the canonical name, as Triton's launcher requires."""

    __slots__ = ("name", "np", "itemsize", "is_floating_point", "is_signed", "_rank")

    def __init__(self, name, np_dtype, rank, is_float, is_signed):
        self.name = name
        self.np = np.dtype(np_dtype)
        self.itemsize = self.np.itemsize
        self.is_floating_point = is_float
        self.is_signed = is_signed
        self._rank = rank

    def __repr__(self):
        return f"tritorch.{self.name}"

    __str__ = __repr__

    def __reduce__(self):
        return (_by_name, (self.name,))

    @property
    def is_complex(self):
        return False

    def to_real(self):
        return self


bool_ = dtype("bool", np.bool_, 0, False, False)
uint8 = dtype("uint8", np.uint8, 1, False, False)
int8 = dtype("int8", np.int8, 2, False, True)
int16 = dtype("int16", np.int16, 3, False, True)
int32 = dtype("int32", np.int32, 4, False, True)
int64 = dtype("int64", np.int64, 5, False, True)
float16 = dtype("float16", np.float16, 6, True, True)
bfloat16 = dtype("bfloat16", ml_dtypes.bfloat16, 6, True, True)
float32 = dtype("float32", np.float32, 7, True, True)
float64 = dtype("float64", np.float64, 8, True, True)

ALL = (bool_, uint8, int8, int16, int32, int64, float16, bfloat16, float32, float64)
FLOATING = (float16, bfloat16, float32, float64)
_NAMES = {d.name: d for d in ALL}
_NAMES.update(half=float16, float=float32, double=float64, long=int64, int=int32, short=int16)
_FROM_NP = {d.np: d for d in ALL}


def _by_name(name):
    return _NAMES[name]


_default_float = float32


def get_default_dtype():
    return _default_float


def set_default_dtype(d):
    global _default_float
    if d not in FLOATING:
        raise TypeError(f"set_default_dtype: only floating-point types can be the default, got {d}")
    _default_float = d


def from_numpy_dtype(npd):
    """The tritorch dtype of a NumPy dtype, or a TypeError naming it."""
    try:
        return _FROM_NP[np.dtype(npd)]
    except (KeyError, TypeError):
        raise TypeError(f"unsupported dtype {npd!r}: tritorch supports "
                        + ", ".join(d.name for d in ALL)) from None


def to_dtype(d):
    """Accept a tritorch dtype, a NumPy dtype or a name such as 'float32'."""
    if isinstance(d, dtype):
        return d
    if isinstance(d, str) and d.split(".")[-1] in _NAMES:
        return _NAMES[d.split(".")[-1]]
    if d is float:
        return _default_float
    if d is int:
        return int64
    if d is bool:
        return bool_
    return from_numpy_dtype(d)


def promote_types(a, b):
    """PyTorch's promotion of two dtypes."""
    if a is b:
        return a
    if a.is_floating_point or b.is_floating_point:
        if a.is_floating_point and b.is_floating_point:
            if a._rank == b._rank:            # float16 with bfloat16
                return float32
            return a if a._rank > b._rank else b
        return a if a.is_floating_point else b
    if a is bool_:
        return b
    if b is bool_:
        return a
    if a is uint8 or b is uint8:          # uint8 with a signed integer
        other = b if a is uint8 else a
        return int16 if other is int8 else other
    return a if a._rank > b._rank else b


def _category(d):
    return 2 if d.is_floating_point else (1 if d is not bool_ else 0)


def _scalar_category(v):
    if isinstance(v, (bool, np.bool_)):
        return 0
    if isinstance(v, (int, np.integer)):
        return 1
    if isinstance(v, (float, np.floating)):
        return 2
    raise TypeError(f"unsupported scalar of type {type(v).__name__}")


def result_type(*operands):
    """PyTorch's result type: tensors with dims first, then 0-d tensors, then Python scalars, each
    raising the result only when it belongs to a higher category (bool < integer < floating)."""
    dim_t = zero_t = None
    scalar_cat = -1
    for x in operands:
        d = getattr(x, "dtype", None)
        if isinstance(d, dtype):
            if x.ndim:
                dim_t = d if dim_t is None else promote_types(dim_t, d)
            else:
                zero_t = d if zero_t is None else promote_types(zero_t, d)
        else:
            scalar_cat = max(scalar_cat, _scalar_category(x))
    res = dim_t
    if zero_t is not None:
        if res is None:
            res = zero_t
        elif _category(zero_t) > _category(res):
            res = zero_t
    if scalar_cat >= 0:
        if res is None:
            res = (bool_, int64, _default_float)[scalar_cat]
        elif scalar_cat > _category(res):
            res = (bool_, int64, _default_float)[scalar_cat]
    return res


_SCALAR_NAMES = {"bool": "Bool", "uint8": "Byte", "int8": "Char", "int16": "Short", "int32": "Int", "int64": "Long",
                 "float16": "Half", "bfloat16": "BFloat16", "float32": "Float", "float64": "Double"}


def scalar_name(d):
    """PyTorch's ScalarType name of a dtype ('Float', 'Long', ...), as its error messages spell it."""
    return _SCALAR_NAMES[d.name]


def can_cast(from_, to):
    """PyTorch's ``can_cast``: no floating -> integral and no non-bool -> bool (the rule in-place ops obey)."""
    if from_.is_floating_point and not to.is_floating_point:
        return False
    if from_ is not bool_ and to is bool_:
        return False
    return True
