"""The op table: published op name -> converter emitting ONNX nodes; here the tensor ops (elementwise,
activations, reductions, views and indexing, factories), in ``_layers.py`` the nn layers.

A converter takes the ``Builder``, the traced ``Node`` and the node's arguments (Values, Python values, and ``Sym``
for sizes that follow a dynamic axis), with PyTorch's parameter names, and returns the ONNX names of the node's
outputs. In-place ops (``add_``, ``__iadd__``) use their pure op's converter (``_export._base_op``).
"""
import math

import numpy as np

from .. import _dtype as D
from ..jit.ir import Value
from ._builder import Sym, Unsupported, dtype_of, onnx_dtype

__all__ = ["OPS", "VIEW_OPS"]

OPS = {}
VIEW_OPS = frozenset(("view", "reshape", "view_as", "reshape_as", "flatten", "unflatten", "transpose", "swapaxes",
                      "swapdims", "t", "permute", "movedim", "__getitem__", "narrow", "select", "squeeze",
                      "unsqueeze", "expand", "expand_as", "split", "chunk", "unbind", "contiguous", "detach"))
"""Ops whose result may share memory with their first input (for the in-place write check)."""
INT64_MAX = 2 ** 63 - 1


def op(*names):
    """Register a converter under ``names``."""
    def deco(fn):
        for n in names:
            OPS[n] = fn
        return fn
    return deco


def _out(node, i=0):
    return node.outputs[i]


def _rank(v):
    return len(v.shape)


def _axis(d, rank):
    if not -max(rank, 1) <= d < max(rank, 1):
        raise Unsupported(f"dim {d} is out of range for {rank} dims")
    return d % max(rank, 1)


def _dims(dim, rank):
    """A list of normalised axes from an int, a tuple/list, or None (all)."""
    if dim is None:
        return list(range(rank))
    if isinstance(dim, (tuple, list)):
        return sorted({_axis(d, rank) for d in dim}) if dim else list(range(rank))
    return [_axis(dim, rank)]


def _shape_arg(size):
    """``f(x, 2, 3)`` or ``f(x, (2, 3))`` -> [2, 3]."""
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        return list(size[0])
    return list(size)


def _no_value(name, x):
    if isinstance(x, Value):
        raise Unsupported(f"argument {name} as a tensor is not supported")
    return x


# ---- elementwise ---------------------------------------------------------------------------------------------------
def _unary(onnx_op):
    def conv(b, node, input):
        out = _out(node).dtype
        x = b.name(input) if not out.is_floating_point else b.operand(input, out)    # exp(int) -> float
        return b.op(onnx_op, [x])
    return conv


for _names, _onnx in [(("relu",), "Relu"), (("sigmoid",), "Sigmoid"), (("tanh",), "Tanh"), (("exp",), "Exp"),
                      (("log",), "Log"), (("sqrt",), "Sqrt"), (("abs", "absolute"), "Abs"),
                      (("neg", "negative", "__neg__"), "Neg"), (("reciprocal",), "Reciprocal"), (("sin",), "Sin"),
                      (("cos",), "Cos"), (("tan",), "Tan"), (("erf",), "Erf"), (("floor",), "Floor"),
                      (("ceil",), "Ceil"), (("round",), "Round"), (("sign",), "Sign"), (("asin",), "Asin"),
                      (("acos",), "Acos"), (("atan",), "Atan"), (("sinh",), "Sinh"), (("cosh",), "Cosh"),
                      (("softsign",), "Softsign"), (("isnan",), "IsNaN")]:
    op(*_names)(_unary(_onnx))


@op("logical_not", "__invert__", "bitwise_not")
def _not(b, node, input):
    if input.dtype is not D.bool_:
        raise Unsupported("bitwise not of an integer tensor (only bool)")
    return b.op("Not", [b.name(input)])


@op("rsqrt")
def _rsqrt(b, node, input):
    return b.op("Reciprocal", [b.op("Sqrt", [b.operand(input, _out(node).dtype)])])


@op("log1p")
def _log1p(b, node, input):
    dt = _out(node).dtype
    return b.op("Log", [b.op("Add", [b.operand(input, dt), b.scalar(1, dt)])])


@op("expm1")
def _expm1(b, node, input):
    dt = _out(node).dtype
    return b.op("Sub", [b.op("Exp", [b.operand(input, dt)]), b.scalar(1, dt)])


@op("log2", "log10")
def _logn(b, node, input):
    dt = _out(node).dtype
    base = 2.0 if node.op.startswith("log2") else 10.0
    return b.op("Div", [b.op("Log", [b.operand(input, dt)]), b.scalar(math.log(base), dt)])


@op("square")
def _square(b, node, input):
    x = b.operand(input, _out(node).dtype)
    return b.op("Mul", [x, x])


def _binary(onnx_op, swap=False):
    def conv(b, node, input, other, *, alpha=1, out=None):
        if out is not None:
            raise Unsupported("out= is not supported")
        dt = _out(node).dtype
        x, y = b.operand(input, dt), b.operand(other, dt)
        if alpha != 1:
            y = b.op("Mul", [y, b.scalar(alpha, dt)])
        return b.op(onnx_op, [y, x] if swap else [x, y])
    return conv


for _names, _onnx, _swap in [
        (("add", "__add__", "__radd__"), "Add", False),
        (("sub", "subtract", "__sub__"), "Sub", False),
        (("rsub", "__rsub__"), "Sub", True),
        (("mul", "multiply", "__mul__", "__rmul__"), "Mul", False),
        (("maximum", "fmax"), "Max", False),
        (("minimum", "fmin"), "Min", False)]:
    op(*_names)(_binary(_onnx, _swap))


@op("div", "divide", "true_divide", "__truediv__", "__rtruediv__", "__floordiv__", "floor_divide", "__rfloordiv__")
def _div(b, node, input, other, *, rounding_mode=None):
    dt = _out(node).dtype
    if node.op in ("__floordiv__", "floor_divide", "__rfloordiv__"):
        rounding_mode = "floor"
    if node.op == "__rtruediv__" or node.op == "__rfloordiv__":
        input, other = other, input
    if rounding_mode is None:
        return b.op("Div", [b.operand(input, dt), b.operand(other, dt)])
    work = dt if dt.is_floating_point else D.float64
    q = b.op("Div", [b.operand(input, work), b.operand(other, work)])
    q = b.op("Floor", [q]) if rounding_mode == "floor" else _trunc(b, q)
    return b.cast(q, work, dt)


def _trunc(b, q):
    return b.op("Mul", [b.op("Sign", [q]), b.op("Floor", [b.op("Abs", [q])])])


@op("pow", "__pow__", "float_power")
def _pow(b, node, input, exponent):
    dt = _out(node).dtype
    if not isinstance(exponent, Value) and exponent == 2:
        x = b.operand(input, dt)
        return b.op("Mul", [x, x])
    return b.op("Pow", [b.operand(input, dt), b.operand(exponent, dt)])


@op("__rpow__")
def _rpow(b, node, input, other):
    dt = _out(node).dtype
    return b.op("Pow", [b.operand(other, dt), b.operand(input, dt)])


def _compare(onnx_op, negate=False):
    def conv(b, node, input, other):
        dt = D.promote_types(dtype_of(input), dtype_of(other)) if isinstance(other, Value) else input.dtype
        if not isinstance(other, Value) and isinstance(other, float) and not input.dtype.is_floating_point:
            dt = D.float32
        r = b.op(onnx_op, [b.operand(input, dt), b.operand(other, dt)])
        return b.op("Not", [r]) if negate else r
    return conv


for _names, _onnx, _neg in [
        (("eq", "__eq__"), "Equal", False),
        (("ne", "__ne__", "not_equal"), "Equal", True),
        (("lt", "__lt__", "less"), "Less", False),
        (("le", "__le__", "less_equal"), "LessOrEqual", False),
        (("gt", "__gt__", "greater"), "Greater", False),
        (("ge", "__ge__", "greater_equal"), "GreaterOrEqual", False)]:
    op(*_names)(_compare(_onnx, _neg))


def _logical(onnx_op):
    def conv(b, node, input, other):
        if dtype_of(input) is not D.bool_ or dtype_of(other) is not D.bool_:
            raise Unsupported("bitwise ops on integer tensors (only bool)")
        return b.op(onnx_op, [b.operand(input, D.bool_), b.operand(other, D.bool_)])
    return conv


op("logical_and", "__and__", "bitwise_and", "__rand__")(_logical("And"))
op("logical_or", "__or__", "bitwise_or", "__ror__")(_logical("Or"))
op("logical_xor", "__xor__", "bitwise_xor")(_logical("Xor"))


@op("where")
def _where(b, node, condition, input=None, other=None):
    if input is None:
        raise Unsupported("where(condition) with one argument (nonzero) is not supported")
    dt = _out(node).dtype
    return b.op("Where", [b.operand(condition, D.bool_), b.operand(input, dt), b.operand(other, dt)])


@op("masked_fill")
def _masked_fill(b, node, input, mask, value):
    dt = _out(node).dtype
    return b.op("Where", [b.operand(mask, D.bool_), b.operand(value, dt), b.name(input)])


@op("clamp", "clip")
def _clamp(b, node, input, min=None, max=None):
    dt = _out(node).dtype
    x = b.operand(input, dt)
    if isinstance(min, Value) or isinstance(max, Value):
        if min is not None:
            x = b.op("Max", [x, b.operand(min, dt)])
        if max is not None:
            x = b.op("Min", [x, b.operand(max, dt)])
        return x
    return b.op("Clip", [x, "" if min is None else b.scalar(min, dt), "" if max is None else b.scalar(max, dt)])


@op("clamp_min")
def _clamp_min(b, node, input, min):
    return _clamp(b, node, input, min=min)


@op("clamp_max")
def _clamp_max(b, node, input, max):
    return _clamp(b, node, input, max=max)


# ---- activations ---------------------------------------------------------------------------------------------------
@op("leaky_relu")
def _leaky_relu(b, node, input, negative_slope=0.01, inplace=False):
    return b.op("LeakyRelu", [b.name(input)], alpha=float(negative_slope))


@op("elu")
def _elu(b, node, input, alpha=1.0, inplace=False):
    return b.op("Elu", [b.name(input)], alpha=float(alpha))


@op("selu")
def _selu(b, node, input, inplace=False):
    return b.op("Selu", [b.name(input)], alpha=1.6732632423543772, gamma=1.0507009873554805)


@op("celu")
def _celu(b, node, input, alpha=1.0, inplace=False):
    return b.op("Celu", [b.name(input)], alpha=float(alpha))


@op("gelu")
def _gelu(b, node, input, approximate="none"):
    x, dt = b.name(input), input.dtype
    if b.opset >= 20:
        return b.op("Gelu", [x], approximate=approximate)
    if approximate == "tanh":      # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        x3 = b.op("Mul", [b.op("Mul", [x, x]), x])
        inner = b.op("Mul", [b.op("Add", [x, b.op("Mul", [x3, b.scalar(0.044715, dt)])]),
                             b.scalar(math.sqrt(2 / math.pi), dt)])
        t = b.op("Tanh", [inner])
    else:                          # 0.5 x (1 + erf(x / sqrt(2)))
        t = b.op("Erf", [b.op("Mul", [x, b.scalar(1 / math.sqrt(2), dt)])])
    return b.op("Mul", [b.op("Mul", [x, b.scalar(0.5, dt)]), b.op("Add", [t, b.scalar(1.0, dt)])])


@op("silu")
def _silu(b, node, input, inplace=False):
    x = b.name(input)
    return b.op("Mul", [x, b.op("Sigmoid", [x])])


def _softplus_onnx(b, x, dt, beta=1.0, threshold=20.0):
    """PyTorch's softplus: log(1 + exp(beta x)) / beta, and x where beta x > threshold."""
    bx = x if beta == 1 else b.op("Mul", [x, b.scalar(beta, dt)])
    sp = b.op("Softplus", [bx])
    if beta != 1:
        sp = b.op("Div", [sp, b.scalar(beta, dt)])
    return b.op("Where", [b.op("Greater", [bx, b.scalar(threshold, dt)]), x, sp])


@op("softplus")
def _softplus(b, node, input, beta=1.0, threshold=20.0):
    return _softplus_onnx(b, b.name(input), input.dtype, float(beta), float(threshold))


@op("mish")
def _mish(b, node, input, inplace=False):
    x = b.name(input)
    if b.opset >= 18:
        return b.op("Mish", [x])
    return b.op("Mul", [x, b.op("Tanh", [_softplus_onnx(b, x, input.dtype)])])


@op("hardswish")
def _hardswish(b, node, input, inplace=False):
    x = b.name(input)
    if b.opset >= 14:
        return b.op("HardSwish", [x])
    return b.op("Mul", [x, b.op("HardSigmoid", [x], alpha=1 / 6, beta=0.5)])


@op("hardsigmoid")
def _hardsigmoid(b, node, input, inplace=False):
    return b.op("HardSigmoid", [b.name(input)], alpha=1 / 6, beta=0.5)


@op("hardtanh")
def _hardtanh(b, node, input, min_val=-1.0, max_val=1.0, inplace=False):
    dt = input.dtype
    return b.op("Clip", [b.name(input), b.scalar(min_val, dt), b.scalar(max_val, dt)])


@op("relu6")
def _relu6(b, node, input, inplace=False):
    return _hardtanh(b, node, input, 0.0, 6.0)


@op("threshold")
def _threshold(b, node, input, threshold, value, inplace=False):
    x, dt = b.name(input), input.dtype
    return b.op("Where", [b.op("LessOrEqual", [x, b.scalar(threshold, dt)]), b.scalar(value, dt), x])


@op("prelu")
def _prelu(b, node, input, weight):
    w = b.name(weight)
    n = int(np.prod(weight.shape))
    if n == 1 or _rank(input) < 2:
        w = b.op("Reshape", [w, b.i64([1] if n == 1 else [n])])
    else:
        w = b.op("Reshape", [w, b.i64([n] + [1] * (_rank(input) - 2))])
    return b.op("PRelu", [b.name(input), w])


@op("logsigmoid", "log_sigmoid")
def _logsigmoid(b, node, input):
    return b.op("Log", [b.op("Sigmoid", [b.name(input)])])


@op("softmax", "log_softmax", "_softmax")
def _softmax(b, node, input, dim=None, dtype=None, _stacklevel=3):
    if dim is None:
        raise Unsupported("softmax without dim")
    x = b.operand(input, _out(node).dtype)
    return b.op("LogSoftmax" if node.op.startswith("log") else "Softmax", [x], axis=_axis(dim, _rank(input)))


# ---- reductions ----------------------------------------------------------------------------------------------------
def _reduction(onnx_op):
    def conv(b, node, input, dim=None, keepdim=False, *, dtype=None, out=None):
        dt = _out(node).dtype
        x = b.operand(input, dt)
        if _rank(input) == 0:
            return b.op("Identity", [x])
        return b.reduce(onnx_op, x, _dims(dim, _rank(input)), keepdim)
    return conv


op("sum")(_reduction("ReduceSum"))
op("mean")(_reduction("ReduceMean"))
op("amax")(_reduction("ReduceMax"))
op("amin")(_reduction("ReduceMin"))
op("prod")(_reduction("ReduceProd"))
op("logsumexp")(_reduction("ReduceLogSumExp"))


@op("max", "min")
def _max(b, node, input, dim=None, keepdim=False):
    red, arg, elt = ("ReduceMax", "ArgMax", "Max") if node.op == "max" else ("ReduceMin", "ArgMin", "Min")
    if isinstance(dim, Value):
        dt = _out(node).dtype
        return b.op(elt, [b.operand(input, dt), b.operand(dim, dt)])
    x = b.name(input)
    if dim is None:
        return b.reduce(red, x, None, False)
    ax = _axis(dim, _rank(input))
    return b.reduce(red, x, [ax], keepdim), b.op(arg, [x], axis=ax, keepdims=int(bool(keepdim)))


@op("argmax", "argmin")
def _argmax(b, node, input, dim=None, keepdim=False):
    x = b.name(input)
    kind = "ArgMax" if node.op == "argmax" else "ArgMin"
    if dim is None:
        r = b.op(kind, [b.op("Reshape", [x, b.i64([-1])])], axis=0, keepdims=0)
        return b.op("Reshape", [r, b.i64([1] * _rank(input))]) if keepdim else r
    return b.op(kind, [x], axis=_axis(dim, _rank(input)), keepdims=int(bool(keepdim)))


@op("var", "std")
def _var(b, node, input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    if isinstance(unbiased, (tuple, list)) or (type(unbiased) is int and not isinstance(unbiased, bool)):
        dim, unbiased = unbiased, None          # var(x, dim) positional
    corr = correction if correction is not None else (0 if unbiased is False else 1)
    axes, dt = _dims(dim, _rank(input)), input.dtype
    x = b.name(input)
    mean = b.reduce("ReduceMean", x, axes, True)
    d = b.op("Sub", [x, mean])
    ss = b.reduce("ReduceSum", b.op("Mul", [d, d]), axes, keepdim)
    n = 1
    for a in axes:
        n = n * b.dim(input, a)
    count = b.op("Cast", [(n - corr).name], to=onnx_dtype(b.onnx, dt)) if isinstance(n, Sym) else \
        b.scalar(max(n - corr, 0), dt)
    v = b.op("Div", [ss, count])
    return b.op("Sqrt", [v]) if node.op == "std" else v


@op("norm")
def _norm(b, node, input, p="fro", dim=None, keepdim=False, dtype=None):
    kind = {2: "ReduceL2", "fro": "ReduceL2", 1: "ReduceL1"}.get(p)
    if kind is None:
        raise Unsupported(f"norm with p={p!r} (only 1, 2 and 'fro')")
    return b.reduce(kind, b.operand(input, _out(node).dtype), _dims(dim, _rank(input)), keepdim)


@op("normalize")
def _normalize(b, node, input, p=2.0, dim=1, eps=1e-12, out=None):
    kind = {2: "ReduceL2", 1: "ReduceL1"}.get(p)
    if kind is None:
        raise Unsupported(f"normalize with p={p!r} (only 1 and 2)")
    x, dt = b.name(input), input.dtype
    n = b.reduce(kind, x, [_axis(dim, _rank(input))], True)
    return b.op("Div", [x, b.op("Max", [n, b.scalar(eps, dt)])])


@op("cumsum")
def _cumsum(b, node, input, dim, dtype=None):
    x = b.operand(input, _out(node).dtype)
    return b.op("CumSum", [x, b.const(np.array(_axis(dim, _rank(input)), np.int64))])


# ---- shapes, views and indexing ------------------------------------------------------------------------------------
@op("reshape", "view")
def _reshape(b, node, input, *shape):
    shape = _shape_arg(shape)
    if any(isinstance(s, D.dtype) for s in shape):
        raise Unsupported("view(dtype) (a bit reinterpretation) has no ONNX form")
    return b.op("Reshape", [b.name(input), b.ints(shape)])


@op("view_as", "reshape_as")
def _view_as(b, node, input, other):
    return b.op("Reshape", [b.name(input), b.shape_of(b.name(other))])


@op("flatten")
def _flatten(b, node, input, start_dim=0, end_dim=-1):
    r = _rank(input)
    if r == 0:
        return b.op("Reshape", [b.name(input), b.i64([1])])
    s, e = _axis(start_dim, r), _axis(end_dim, r)
    dims = b.dims(input)
    return b.op("Reshape", [b.name(input), b.ints([0] * s + [-1] + dims[e + 1:])])


@op("unflatten")
def _unflatten(b, node, input, dim, sizes):
    r = _rank(input)
    d = _axis(dim, r)
    dims = b.dims(input)
    return b.op("Reshape", [b.name(input), b.ints([0] * d + list(sizes) + dims[d + 1:])])


@op("unsqueeze")
def _unsqueeze(b, node, input, dim):
    return b.unsqueeze(b.name(input), [_axis(dim, _rank(input) + 1)])


@op("squeeze")
def _squeeze(b, node, input, dim=None):
    r = _rank(input)
    dyn = b.dyn_dims.get(input.name, set())
    axes = [a for a in _dims(dim, r) if input.shape[a] == 1 and a not in dyn]
    if dim is None and not dyn:
        axes = [a for a in range(r) if input.shape[a] == 1]
    return b.squeeze(b.name(input), axes) if axes else b.op("Identity", [b.name(input)])


@op("transpose", "swapaxes", "swapdims")
def _transpose(b, node, input, dim0, dim1):
    r = _rank(input)
    perm = list(range(r))
    a, c = _axis(dim0, r), _axis(dim1, r)
    perm[a], perm[c] = perm[c], perm[a]
    return b.op("Transpose", [b.name(input)], perm=perm)


@op("t")
def _t(b, node, input):
    if _rank(input) < 2:
        return b.op("Identity", [b.name(input)])
    return b.op("Transpose", [b.name(input)], perm=[1, 0])


@op("permute")
def _permute(b, node, input, *dims):
    r = _rank(input)
    return b.op("Transpose", [b.name(input)], perm=[_axis(d, r) for d in _shape_arg(dims)])


@op("movedim", "moveaxis")
def _movedim(b, node, input, source, destination):
    r = _rank(input)
    src = [_axis(s, r) for s in (source if isinstance(source, (tuple, list)) else [source])]
    dst = [_axis(s, r) for s in (destination if isinstance(destination, (tuple, list)) else [destination])]
    rest = iter([a for a in range(r) if a not in src])
    where = dict(zip(dst, src))
    return b.op("Transpose", [b.name(input)], perm=[where[i] if i in where else next(rest) for i in range(r)])


@op("contiguous", "clone", "detach", "requires_grad_", "cpu", "cuda")
def _identity(b, node, input, *args, **kwargs):
    return b.op("Identity", [b.name(input)])


@op("dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout")
def _dropout(b, node, input, p=0.5, training=True, inplace=False):
    if training and p > 0:
        raise Unsupported("dropout in training mode (export runs the model in eval mode; a functional dropout call "
                          "must pass training=self.training)")
    return b.op("Identity", [b.name(input)])


@op("to", "type", "float", "double", "half", "bfloat16", "long", "int", "short", "bool", "byte", "char", "type_as")
def _to(b, node, input, *args, **kwargs):
    x = b.cast(b.name(input), input.dtype, _out(node).dtype)
    return b.op("Identity", [x]) if x == b.name(input) else x


@op("expand")
def _expand(b, node, input, *sizes):
    sizes = _shape_arg(sizes)
    sizes = [1 if not isinstance(s, Sym) and s == -1 else s for s in sizes]
    return b.op("Expand", [b.name(input), b.ints(sizes)])


@op("expand_as")
def _expand_as(b, node, input, other):
    return b.op("Expand", [b.name(input), b.shape_of(b.name(other))])


@op("repeat")
def _repeat(b, node, input, *sizes):
    sizes = _shape_arg(sizes)
    x = b.name(input)
    extra = len(sizes) - _rank(input)
    if extra > 0:
        x = b.op("Reshape", [x, b.ints([1] * extra + b.dims(input))])
    return b.op("Tile", [x, b.ints(sizes)])


@op("cat", "concat", "concatenate")
def _cat(b, node, tensors, dim=0):
    dt = _out(node).dtype
    keep = [t for t in tensors if not (_rank(t) == 1 and t.shape[0] == 0)]
    r = _rank(keep[0]) if keep else 1
    return b.op("Concat", [b.operand(t, dt) for t in keep], axis=_axis(dim, r))


@op("stack")
def _stack(b, node, tensors, dim=0):
    dt = _out(node).dtype
    ax = _axis(dim, _rank(tensors[0]) + 1)
    return b.op("Concat", [b.unsqueeze(b.operand(t, dt), [ax]) for t in tensors], axis=ax)


def _split_sizes(b, input, d, sizes):
    if isinstance(b.dim(input, d), Sym):
        raise Unsupported("splitting along a dynamic axis")
    return b.op("Split", [b.name(input), b.i64(sizes)], n_out=len(sizes), axis=d)


@op("split")
def _split(b, node, tensor, split_size_or_sections, dim=0):
    d = _axis(dim, _rank(tensor))
    n = tensor.shape[d]
    s = split_size_or_sections
    sizes = list(s) if isinstance(s, (tuple, list)) else [min(s, n - i) for i in range(0, n, s)]
    outs = _split_sizes(b, tensor, d, sizes)
    return [outs] if len(sizes) == 1 else outs


@op("chunk")
def _chunk(b, node, input, chunks, dim=0):
    d = _axis(dim, _rank(input))
    n = input.shape[d]
    step = -(-n // chunks)
    sizes = [min(step, n - i) for i in range(0, n, step)]
    outs = _split_sizes(b, input, d, sizes)
    return [outs] if len(sizes) == 1 else outs


@op("unbind")
def _unbind(b, node, input, dim=0):
    d = _axis(dim, _rank(input))
    outs = _split_sizes(b, input, d, [1] * input.shape[d])
    outs = [outs] if input.shape[d] == 1 else outs
    return [b.squeeze(o, [d]) for o in outs]


def _slice(b, x, axes, starts, ends, steps):
    return b.op("Slice", [x, b.ints(starts), b.ints(ends), b.i64(axes), b.ints(steps)])


@op("narrow")
def _narrow(b, node, input, dim, start, length):
    d = _axis(dim, _rank(input))
    start = _no_value("start", start)
    return _slice(b, b.name(input), [d], [start], [start + length], [1])


@op("select")
def _select(b, node, input, dim, index):
    return b.op("Gather", [b.name(input), b.scalar_int(index)], axis=_axis(dim, _rank(input)))


@op("index_select")
def _index_select(b, node, input, dim, index):
    return b.op("Gather", [b.name(input), b.name(index)], axis=_axis(dim, _rank(input)))


@op("gather")
def _gather(b, node, input, dim, index, *, sparse_grad=False):
    return b.op("GatherElements", [b.name(input), b.name(index)], axis=_axis(dim, _rank(input)))


@op("__getitem__")
def _getitem(b, node, input, index):
    """Basic indexing (ints, slices, None, Ellipsis) and one integer-tensor index."""
    items = list(index) if isinstance(index, tuple) else [index]
    r = _rank(input)
    used = sum(1 for i in items if i is not None and i is not Ellipsis and not
               (isinstance(i, Value) and i.dtype is D.bool_))
    if sum(1 for i in items if i is Ellipsis) > 1:
        raise Unsupported("an index with more than one Ellipsis")
    if Ellipsis in items:
        k = items.index(Ellipsis)
        items = items[:k] + [slice(None)] * (r - used) + items[k + 1:]
    else:
        items = items + [slice(None)] * (r - used)
    x = b.name(input)
    sl, ints, tens, nones = [], [], [], []
    axis = out_axis = 0
    for it in items:
        if it is None:
            nones.append(out_axis)
            out_axis += 1
        elif isinstance(it, slice):
            if it != slice(None):
                step = 1 if it.step is None else it.step
                if not isinstance(step, Sym) and step <= 0:
                    raise Unsupported("a slice step must be positive")
                sl.append((axis, 0 if it.start is None else it.start,
                           INT64_MAX if it.stop is None else it.stop, step))
            axis += 1
            out_axis += 1
        elif isinstance(it, Value):
            if it.dtype is D.bool_:
                raise Unsupported("boolean-mask indexing (its result's size depends on the data)")
            tens.append((axis, it))
            axis += 1
            out_axis += len(it.shape)
        elif isinstance(it, (int, Sym)) and not isinstance(it, bool):
            ints.append((axis, it))
            axis += 1
        else:
            raise Unsupported(f"index of type {type(it).__name__}")
    if len(tens) > 1 or (tens and ints):
        raise Unsupported("advanced indexing with several tensor indices (or a tensor and an int)")
    if sl:
        x = _slice(b, x, [a for a, *_ in sl], [s for _, s, _, _ in sl], [e for _, _, e, _ in sl],
                   [st for *_, st in sl])
    for a, i in reversed(ints):
        x = b.op("Gather", [x, b.scalar_int(i)], axis=a)
    for a, t in tens:
        x = b.op("Gather", [x, b.name(t)], axis=a)
    if nones:
        x = b.unsqueeze(x, nones)
    return x if x != b.name(input) else b.op("Identity", [x])


@op("flip")
def _flip(b, node, input, *dims):
    axes = _dims(_shape_arg(dims), _rank(input))
    n = len(axes)
    return _slice(b, b.name(input), axes, [-1] * n, [-INT64_MAX - 1] * n, [-1] * n)


@op("tril", "triu")
def _trilu(b, node, input, diagonal=0):
    if b.opset < 14:
        raise Unsupported("tril/triu need opset 14 (Trilu)")
    return b.op("Trilu", [b.name(input), b.const(np.array(int(diagonal), np.int64))], upper=int(node.op == "triu"))


@op("one_hot")
def _one_hot(b, node, tensor, num_classes=-1):
    if num_classes < 0:
        raise Unsupported("one_hot without num_classes (its size depends on the data)")
    values = b.const(np.array([0, 1], np.int64))
    return b.op("OneHot", [b.name(tensor), b.const(np.array(num_classes, np.int64)), values], axis=-1)


@op("einsum")
def _einsum(b, node, equation, *operands):
    ops = list(operands[0]) if len(operands) == 1 and isinstance(operands[0], (tuple, list)) else list(operands)
    dt = _out(node).dtype
    return b.op("Einsum", [b.operand(o, dt) for o in ops], equation=equation.replace(" ", ""))


# ---- factories -----------------------------------------------------------------------------------------------------
def _fill(b, shape, value, dtype):
    return b.op("ConstantOfShape", [b.ints(shape)],
                value=b.onnx.numpy_helper.from_array(np.array([value], dtype=dtype.np)))


@op("zeros", "ones", "empty", "full")
def _factory(b, node, *size, fill_value=None, **kw):
    dt = _out(node).dtype
    if node.op == "full":
        size, fill_value = (size[0], size[1]) if len(size) == 2 else (size[0], fill_value)
        shape = list(size)
    else:
        shape = _shape_arg(size)
    value = {"zeros": 0, "empty": 0, "ones": 1}.get(node.op, fill_value)
    if not any(isinstance(s, Sym) for s in shape):
        return b.const(np.full(shape, value, dtype=dt.np))
    return _fill(b, shape, value, dt)


@op("zeros_like", "ones_like", "empty_like", "full_like")
def _like(b, node, input, fill_value=None, **kw):
    dt = _out(node).dtype
    value = {"zeros_like": 0, "empty_like": 0, "ones_like": 1}.get(node.op, fill_value)
    return b.op("ConstantOfShape", [b.shape_of(b.name(input))],
                value=b.onnx.numpy_helper.from_array(np.array([value], dtype=dt.np)))


@op("new_zeros", "new_ones", "new_empty", "new_full")
def _new(b, node, input, *size, **kw):
    plain = {"new_zeros": "zeros", "new_ones": "ones", "new_empty": "empty", "new_full": "full"}[node.op]
    if plain == "full":
        return _factory(b, _Renamed(node, plain), *size, **kw)
    return _factory(b, _Renamed(node, plain), *_shape_arg(size[:1] if len(size) == 1 else size))


class _Renamed:
    """A node seen under another op name (a ``new_*`` factory as its plain factory)."""

    def __init__(self, node, op_name):
        self.op, self.outputs = op_name, node.outputs


@op("arange")
def _arange(b, node, start, end=None, step=1, **kw):
    if end is None:
        start, end = 0, start
    dt = _out(node).dtype
    if not any(isinstance(x, (Sym, Value)) for x in (start, end, step)):
        return b.const(np.arange(start, end, step).astype(dt.np))
    if dt.is_floating_point:
        raise Unsupported("a floating-point arange over a dynamic size")
    return b.op("Range", [b.scalar_int(start), b.scalar_int(end), b.scalar_int(step)])


@op("tensor", "as_tensor", "eye", "linspace")
def _const_factory(b, node, *args, **kwargs):
    raise Unsupported("creating a tensor from Python data inside forward is not traced as a constant; make it a "
                      "buffer of the module")
