"""The ONNX graph under construction: nodes, initializers, constants and run-time dimensions (``Sym``).

The op converters of ``_ops.py`` and ``_rnn.py`` emit ONNX nodes through a ``Builder``: ``b.op("Relu", [x])``
returns the output name(s); ``b.const(array)`` an initializer; ``b.ints([...])`` a 1-D int64 tensor from ints and
``Sym``s (dimensions known only at run time, on a dynamic axis); ``b.dim(value, i)`` a dimension of a traced value
(an int, or a ``Sym`` read from its ONNX shape when the dimension is dynamic).
"""
import numpy as np

from .. import _dtype as D
from ..jit.ir import Value

__all__ = ["Builder", "Sym", "Unsupported", "onnx_dtype", "np_dtype"]

_ONNX = {"float32": "FLOAT", "float64": "DOUBLE", "float16": "FLOAT16", "bfloat16": "BFLOAT16", "int64": "INT64",
         "int32": "INT32", "int16": "INT16", "int8": "INT8", "uint8": "UINT8", "bool": "BOOL"}


class Unsupported(Exception):
    """A converter cannot express this call in ONNX; the exporter adds the op name and the module scope."""


def np_dtype(dtype):
    """The NumPy dtype of a tritorch dtype (bfloat16 through ml_dtypes)."""
    return dtype.np


def onnx_dtype(onnx, dtype):
    """The ``onnx.TensorProto`` element type of a tritorch dtype."""
    try:
        return getattr(onnx.TensorProto, _ONNX[dtype.name])
    except KeyError:
        raise Unsupported(f"dtype {dtype.name} has no ONNX tensor type") from None


class Sym:
    """A dimension known only at run time: ``name`` is a 1-element int64 ONNX tensor. Adding or multiplying it
    with ints or other Syms emits the ONNX arithmetic."""
    __slots__ = ("b", "name")

    def __init__(self, builder, name):
        self.b, self.name = builder, name

    def _bin(self, op, other, swap=False):
        o = other.name if isinstance(other, Sym) else self.b.const(np.array([other], np.int64))
        ins = [o, self.name] if swap else [self.name, o]
        return Sym(self.b, self.b.op(op, ins))

    def __add__(self, other):
        return self if other == 0 and not isinstance(other, Sym) else self._bin("Add", other)

    __radd__ = __add__

    def __sub__(self, other):
        return self if other == 0 and not isinstance(other, Sym) else self._bin("Sub", other)

    def __rsub__(self, other):
        return self._bin("Sub", other, swap=True)

    def __mul__(self, other):
        return self if other == 1 and not isinstance(other, Sym) else self._bin("Mul", other)

    __rmul__ = __mul__

    def __neg__(self):
        return self._bin("Mul", -1)

    def __repr__(self):
        return f"Sym({self.name})"


def _has_sym(x):
    if isinstance(x, Sym):
        return True
    if isinstance(x, (tuple, list)):
        return any(_has_sym(a) for a in x)
    return False


class Builder:
    """Collects ONNX nodes and initializers for one export at ``opset``. ``names`` maps a traced Value's name to
    its ONNX tensor name; ``params`` holds the traced params (added as initializers when first read);
    ``dyn_dims`` maps a Value's name to the set of its dimensions that vary with a dynamic axis."""

    def __init__(self, onnx, opset, params, dyn_dims):
        self.onnx, self.h, self.opset = onnx, onnx.helper, opset
        self.nodes, self.initializers = [], []
        self.names, self.params, self.dyn_dims = {}, params, dyn_dims
        self._consts, self._shapes, self._count = {}, {}, 0
        self.scope = ""

    # ---- names and constants -------------------------------------------------------------------------------------
    def fresh(self, hint="t"):
        self._count += 1
        return f"/{self.scope}/{hint}_{self._count}" if self.scope else f"/{hint}_{self._count}"

    def const(self, array, hint="const"):
        """An initializer holding ``array`` (equal small constants share one)."""
        a = np.asarray(array)
        key = (a.dtype.str, a.shape, a.tobytes()) if a.size <= 64 else None
        if key is not None and key in self._consts:
            return self._consts[key]
        name = self.fresh(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(a, name))
        if key is not None:
            self._consts[key] = name
        return name

    def scalar(self, value, dtype):
        """A 0-d constant of tritorch ``dtype``."""
        return self.const(np.array(value, dtype=np_dtype(dtype)))

    def i64(self, values):
        return self.const(np.array(values, dtype=np.int64))

    def name(self, v):
        """The ONNX tensor name of traced Value ``v``."""
        if v.name in self.names:
            return self.names[v.name]
        if v.kind == "param" and v.name in self.params:
            t = self.params[v.name].detach().cpu()
            arr = t.numpy()
            self.initializers.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(arr), v.name))
            self.names[v.name] = v.name
            return v.name
        raise Unsupported(f"value %{v.name} is read before it is defined")

    # ---- nodes ---------------------------------------------------------------------------------------------------
    def op(self, op_type, inputs, n_out=1, hint=None, **attrs):
        """Append one ONNX node; returns its output name (a list when ``n_out`` > 1)."""
        for k, a in attrs.items():
            if _has_sym(a):
                raise Unsupported(f"argument {k!r} of ONNX {op_type} would depend on a dynamic axis; only shapes, "
                                  "slice bounds and sizes may")
        outs = [self.fresh(hint or op_type) for _ in range(n_out)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(self.h.make_node(op_type, list(inputs), outs, name=self.fresh(op_type + "_node"), **attrs))
        return outs[0] if n_out == 1 else outs

    def cast(self, x, from_dtype, to_dtype):
        """``x`` as ``to_dtype`` (a Cast only when the dtypes differ)."""
        if from_dtype is to_dtype:
            return x
        return self.op("Cast", [x], to=onnx_dtype(self.onnx, to_dtype))

    def operand(self, x, dtype):
        """An ONNX name for ``x`` (a Value or a Python number) as ``dtype``."""
        if isinstance(x, Value):
            return self.cast(self.name(x), x.dtype, dtype)
        if isinstance(x, (bool, int, float)):
            return self.scalar(x, dtype)
        raise Unsupported(f"operand of type {type(x).__name__} is not a tensor or a number")

    def reduce(self, op_type, x, axes, keepdims):
        """A Reduce* node over ``axes`` (None: all): axes as an input from opset 18 (ReduceSum: 13), else an
        attribute."""
        keep = int(bool(keepdims))
        if axes is None:
            return self.op(op_type, [x], keepdims=keep)
        axes = [int(a) for a in axes]
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, [x, self.i64(axes)], keepdims=keep)
        return self.op(op_type, [x], axes=axes, keepdims=keep)

    def unsqueeze(self, x, axes):
        return self.op("Unsqueeze", [x, self.i64(list(axes))])

    def squeeze(self, x, axes):
        return self.op("Squeeze", [x, self.i64(list(axes))])

    # ---- shapes --------------------------------------------------------------------------------------------------
    def shape_of(self, x):
        if x not in self._shapes:
            self._shapes[x] = self.op("Shape", [x])
        return self._shapes[x]

    def dim(self, v, i):
        """Dimension ``i`` of traced Value ``v``: an int, or a Sym when it varies with a dynamic axis."""
        i %= max(len(v.shape), 1)
        if i not in self.dyn_dims.get(v.name, ()):
            return v.shape[i]
        return Sym(self, self.op("Gather", [self.shape_of(self.name(v)), self.i64([i])], axis=0))

    def dims(self, v):
        return [self.dim(v, i) for i in range(len(v.shape))]

    def ints(self, seq):
        """A 1-D int64 tensor of ``seq``: ints and Syms (a constant when there is no Sym)."""
        seq = list(seq)
        if not _has_sym(seq):
            return self.i64([int(s) for s in seq])
        parts, run = [], []
        for s in seq:
            if isinstance(s, Sym):
                if run:
                    parts.append(self.i64(run))
                    run = []
                parts.append(s.name)
            else:
                run.append(int(s))
        if run:
            parts.append(self.i64(run))
        return parts[0] if len(parts) == 1 else self.op("Concat", parts, axis=0)

    def scalar_int(self, s):
        """A 0-d int64 tensor of an int or a Sym."""
        if isinstance(s, Sym):
            return self.op("Reshape", [s.name, self.i64([])])
        return self.const(np.array(int(s), np.int64))


def dtype_of(x):
    """The tritorch dtype of a Value, or of a Python number as PyTorch types it."""
    if isinstance(x, Value):
        return x.dtype
    if isinstance(x, bool):
        return D.bool_
    if isinstance(x, int):
        return D.int64
    return D.float32
