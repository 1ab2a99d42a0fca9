"""``autocast``: PyTorch's automatic mixed precision as an op mode (``tritorch._modes.OpMode``).

Inside an enabled region each op named in ``POLICY`` gets its floating inputs cast before it runs: to the region's
lower precision (matmuls, convolutions, attention, the recurrent cells), to float32 (reductions, softmax, norms,
losses, exp/log/pow), or to the widest floating type among them (cat, stack, ...). Other ops run as called. As in
PyTorch's dispatcher, an op in the table runs with autocast off inside (its internal calls are not cast again), and
an op outside it runs with autocast on, so a composite (einsum, softmin, hstack ...) gets the policy of the ops it
is made of. A tensor is eligible for a cast when it is floating, not float64, and on the region's device type.

The state (enabled, dtype per device type; the weight-cast cache and its nesting count) is process-wide, as the
mode stack is: a region sets it on entry and restores it on exit, whichever ``autocast`` instance is asked.
"""
import functools
import warnings
from collections.abc import Mapping

from .. import _dtype as D
from .. import cuda as _cuda
from .._modes import OpMode
from .._tensor import Tensor

__all__ = ["autocast", "POLICY", "custom_fwd", "custom_bwd", "is_autocast_enabled", "get_autocast_dtype",
           "set_autocast_enabled", "set_autocast_dtype", "is_autocast_available", "is_autocast_cache_enabled",
           "set_autocast_cache_enabled", "clear_autocast_cache"]

LOWER, FP32, PROMOTE, BANNED = "lower", "fp32", "promote", "banned"

# ---- PyTorch's policy, one row per published op name: (on device type "cuda", on device type "cpu") ----------------
# (aten/src/ATen/autocast_mode.cpp: lower_precision_fp, fp32 / fp32_set_opt_dtype / fp32_append_dtype, promote,
# banned; in-place ops are never autocast; None: the op is not listed for that device type and runs as called, its
# parts autocast as usual)
_L, _F, _P = LOWER, FP32, PROMOTE
POLICY = {
    # lower precision
    "linear": (_L, _L), "matmul": (_L, _L), "__matmul__": (_L, _L), "__rmatmul__": (_L, _L), "mm": (_L, _L),
    "bmm": (_L, _L), "addmm": (_L, _L), "addbmm": (_L, _L), "baddbmm": (_L, _L),
    "conv1d": (_L, _L), "conv2d": (_L, _L), "conv3d": (_L, _L), "conv_transpose1d": (_L, _L),
    "conv_transpose2d": (_L, _L), "conv_transpose3d": (_L, _L), "convolution": (_L, _L), "conv_tbc": (_L, _L),
    "prelu": (_L, _L), "scaled_dot_product_attention": (_L, _L), "linalg_vecdot": (_L, _L),
    "addmv": (_L, None), "addr": (_L, None), "mv": (_L, None), "einsum": (_L, None), "chain_matmul": (_L, None),
    "linalg_multi_dot": (_L, None), "lstm_cell": (_L, None), "gru_cell": (_L, None), "rnn_tanh_cell": (_L, None),
    "rnn_relu_cell": (_L, None),
    # float32 (on cuda: pointwise transcendental ops, reductions, norms, softmax, losses, upsampling)
    "acos": (_F, None), "asin": (_F, None), "cosh": (_F, None), "sinh": (_F, None), "tan": (_F, None),
    "erfinv": (_F, None), "exp": (_F, None), "expm1": (_F, None), "log": (_F, None), "log10": (_F, None),
    "log2": (_F, None), "log1p": (_F, None), "reciprocal": (_F, None), "rsqrt": (_F, None), "pow": (_F, None),
    "__pow__": (_F, None), "__rpow__": (_F, None), "softplus": (_F, None), "layer_norm": (_F, None),
    "group_norm": (_F, None), "rms_norm": (_F, None), "norm": (_F, None), "cosine_similarity": (_F, None),
    "dist": (_F, None), "pdist": (_F, None), "cdist": (_F, _F), "renorm": (_F, None), "logsumexp": (_F, None),
    "interpolate": (_F, None), "upsample": (_F, None), "prod": (_F, _F), "softmax": (_F, None),
    "log_softmax": (_F, None), "softmin": (_F, None), "cumprod": (_F, None), "cumsum": (_F, None),
    "sum": (_F, None), "linalg_vector_norm": (_F, None), "linalg_matrix_norm": (_F, None),
    "cross_entropy": (_F, _F), "nll_loss": (_F, _F), "poisson_nll_loss": (_F, _F),
    "cosine_embedding_loss": (_F, _F), "hinge_embedding_loss": (_F, _F), "kl_div": (_F, _F), "l1_loss": (_F, _F),
    "smooth_l1_loss": (_F, _F), "huber_loss": (_F, _F), "mse_loss": (_F, _F), "margin_ranking_loss": (_F, _F),
    "multilabel_margin_loss": (_F, _F), "soft_margin_loss": (_F, _F), "triplet_margin_loss": (_F, _F),
    "multi_margin_loss": (_F, _F), "binary_cross_entropy_with_logits": (_F, _F), "ctc_loss": (None, _F),
    "binary_cross_entropy": (BANNED, _F), "trace": (None, _F), "avg_pool3d": (None, _F),
    "max_pool3d": (None, _F), "adaptive_avg_pool3d": (None, _F), "adaptive_max_pool3d": (None, _F),
    "quantile": (None, _F), "nanquantile": (None, _F), "polar": (None, _F), "grid_sample": (_P, _F),
    # promote to the widest floating type
    "cat": (_P, _P), "stack": (_P, _P), "index_copy": (None, _P), "addcdiv": (_P, None), "addcmul": (_P, None),
    "atan2": (_P, None), "bilinear": (_P, None), "cross": (_P, None), "linalg_cross": (_P, None),
    "dot": (_P, None), "vdot": (_P, None), "index_put": (_P, None), "tensordot": (_P, None),
    "scatter_add": (_P, None),
}
_DEVICE_COLUMN = {"cuda": 0, "cpu": 1}
_READS_HALF = {"cross_entropy": None, "softmax": 2, "log_softmax": 2, "layer_norm": None, "group_norm": None}
"""float32-policy ops whose ``dtype=float32`` reads a half first input in their kernels (computing in float32, as
on the cast input), -> the position of ``dtype`` among their arguments (None: keyword only): the input is not cast,
``dtype`` is passed (PyTorch's fp32_set_opt_dtype), the other tensors are cast."""

_BANNED_MSG = ("torch.nn.functional.binary_cross_entropy and torch.nn.BCELoss are unsafe to autocast.\n"
               "Many models use a sigmoid layer right before the binary cross entropy layer.\n"
               "In this case, combine the two layers using torch.nn.functional.binary_cross_entropy_with_logits\n"
               "or torch.nn.BCEWithLogitsLoss.  binary_cross_entropy_with_logits and BCEWithLogits are\n"
               "safe to autocast.")

# ---- the process-wide state --------------------------------------------------------------------------------------
_DEFAULT_DTYPE = {"cuda": D.float16, "cpu": D.bfloat16}
_ENABLED = {"cuda": False, "cpu": False}
_DTYPE = dict(_DEFAULT_DTYPE)
_CACHE = {}                   # (id(weight), dtype) -> (weight, its cast): fp32 leaves that require grad
_STATE = {"nesting": 0, "cache_enabled": True, "inside": 0}


def is_autocast_available(device_type):
    return device_type in _DEVICE_COLUMN


def _check_device_type(device_type):
    if not isinstance(device_type, str):
        raise ValueError(f"Expected `device_type` of type `str`, got: `{type(device_type)}`")
    if not is_autocast_available(device_type):
        raise RuntimeError(f"User specified an unsupported autocast device_type '{device_type}'")


def is_autocast_enabled(device_type="cuda"):
    """Whether autocast is on for ``device_type`` (``is_autocast_enabled()``: cuda, as PyTorch)."""
    _check_device_type(device_type)
    return _ENABLED[device_type]


def set_autocast_enabled(device_type, enabled):
    _check_device_type(device_type)
    _ENABLED[device_type] = bool(enabled)


def get_autocast_dtype(device_type):
    """The lower precision of ``device_type``'s autocast (float16 on cuda, bfloat16 on cpu unless a region set
    another)."""
    _check_device_type(device_type)
    return _DTYPE[device_type]


def set_autocast_dtype(device_type, dtype):
    _check_device_type(device_type)
    _DTYPE[device_type] = dtype


def is_autocast_cache_enabled():
    return _STATE["cache_enabled"]


def set_autocast_cache_enabled(enabled):
    _STATE["cache_enabled"] = bool(enabled)


def clear_autocast_cache():
    _CACHE.clear()


# ---- the casts ---------------------------------------------------------------------------------------------------
def _eligible(t, device_type):
    return isinstance(t, Tensor) and t.dtype.is_floating_point and t.dtype is not D.float64 and \
        t.device.type == device_type


def _cast_one(t, dtype, device_type):
    """``t`` in ``dtype`` through ``Tensor.to`` (differentiable, so gradients reach ``t``). A float32 leaf that
    requires grad (a weight) cast to the lower precision is cached until the outermost region exits."""
    if not _eligible(t, device_type) or t.dtype is dtype:
        return t
    cacheable = (_STATE["cache_enabled"] and dtype is _DTYPE[device_type] and t.dtype is D.float32 and
                 t.requires_grad and t.is_leaf and t._base is None)
    if cacheable:
        hit = _CACHE.get((id(t), dtype))
        if hit is not None and hit[0] is t:
            return hit[1]
    out = t.to(dtype)
    if cacheable:
        _CACHE[(id(t), dtype)] = (t, out)
    return out


def _map(value, fn):
    """``fn`` applied to every tensor in ``value`` (tensors inside lists, tuples and dicts too)."""
    if isinstance(value, Tensor):
        return fn(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_map(v, fn) for v in value)
    if isinstance(value, Mapping):
        return {k: _map(v, fn) for k, v in value.items()}
    return value


def _tensors(value):
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _tensors(v)


def _widest(args, kwargs, device_type):
    """The widest floating dtype among the eligible tensors (None if there is none)."""
    best = None
    for t in _tensors((args, kwargs)):
        if _eligible(t, device_type):
            best = t.dtype if best is None else D.promote_types(best, t.dtype)
    return best


def _device_type(args, kwargs):
    """The device type an op dispatches on: cuda when any tensor argument is on cuda, else cpu."""
    found = None
    for t in _tensors((args, kwargs)):
        if t.device.type == "cuda":
            return "cuda"
        found = t.device.type
    return found


class autocast(OpMode):
    """``tritorch.autocast(device_type, dtype=None, enabled=True, cache_enabled=None)``: a context manager and a
    decorator; regions nest, and an ``enabled=False`` region inside an enabled one runs in full precision."""

    def __init__(self, device_type, dtype=None, enabled=True, cache_enabled=None):
        _check_device_type(device_type)
        self.device = device_type
        self.fast_dtype = get_autocast_dtype(device_type) if dtype is None else dtype
        self._cache_enabled = is_autocast_cache_enabled() if cache_enabled is None else cache_enabled
        if enabled:
            if device_type == "cuda" and not _cuda.is_available():
                warnings.warn("CUDA is not available or torch_xla is imported. Disabling autocast.", stacklevel=2)
                enabled = False
            elif self.fast_dtype not in (D.bfloat16, D.float16):
                name = device_type.upper()
                warnings.warn(f"In {name} autocast, but the target dtype is not supported. Disabling autocast.\n"
                              f"{name} Autocast only supports dtypes of torch.bfloat16, torch.float16 currently.",
                              stacklevel=2)
                enabled = False
        self._enabled = enabled
        self._saved = []

    def __enter__(self):
        self._saved.append((_ENABLED[self.device], _DTYPE[self.device], _STATE["cache_enabled"]))
        _ENABLED[self.device] = self._enabled
        _DTYPE[self.device] = self.fast_dtype
        _STATE["cache_enabled"] = self._cache_enabled
        _STATE["nesting"] += 1
        return super().__enter__()

    def __exit__(self, *exc):
        super().__exit__(*exc)
        _STATE["nesting"] -= 1
        if _STATE["nesting"] == 0:
            clear_autocast_cache()
        _ENABLED[self.device], _DTYPE[self.device], _STATE["cache_enabled"] = self._saved.pop()
        return False

    def __call__(self, func):
        if not callable(func):
            raise TypeError(f"autocast()(func) requires a callable, but got {type(func).__name__}. Did you mean to "
                            f"use autocast as a context manager? For example:\n"
                            f"    with torch.autocast(device_type=...):\n        output = model(input)")

        @functools.wraps(func)
        def decorate_autocast(*args, **kwargs):
            with self:
                return func(*args, **kwargs)
        return decorate_autocast

    def __op__(self, name, op, args, kwargs):
        # every active region's mode sees the op; the state decides, and the first one to act (the innermost)
        # marks the op's inside so that the outer ones and the op's own calls pass it through
        policy = POLICY.get(name)
        if policy is None or _STATE["inside"]:
            return op(*args, **kwargs)
        dt = _device_type(args, kwargs)
        if dt not in _DEVICE_COLUMN or not _ENABLED[dt]:
            return op(*args, **kwargs)
        rule = policy[_DEVICE_COLUMN[dt]]
        if rule is None:
            return op(*args, **kwargs)
        if rule == BANNED:
            raise RuntimeError(_BANNED_MSG)
        if rule == LOWER:
            to = _DTYPE[dt]
        elif rule == FP32:
            if kwargs.get("dtype") is not None:           # an explicit dtype wins (fp32_set_opt_dtype)
                to = None
            else:
                to = D.float32
                if name in _READS_HALF and args and _eligible(args[0], dt) and args[0].dtype is not D.float32 and \
                        (_READS_HALF[name] is None or len(args) <= _READS_HALF[name]):
                    cast = functools.partial(_cast_one, dtype=to, device_type=dt)
                    args, kwargs, to = (args[0],) + _map(args[1:], cast), {**_map(kwargs, cast), "dtype": to}, None
        else:
            to = _widest(args, kwargs, dt)
        if to is not None:
            cast = functools.partial(_cast_one, dtype=to, device_type=dt)
            args, kwargs = _map(args, cast), _map(kwargs, cast)
        _STATE["inside"] += 1
        try:
            return op(*args, **kwargs)
        finally:
            _STATE["inside"] -= 1


def _cast_inputs(value, device_type, dtype):
    return _map(value, lambda t: t.to(dtype) if _eligible(t, device_type) else t)


def custom_fwd(fwd=None, *, device_type, cast_inputs=None):
    """Decorate an ``autograd.Function``'s ``forward``: under an enabled region, with ``cast_inputs`` its floating
    inputs are cast to that dtype and it runs with autocast off; without, it runs in the region's state (which
    ``custom_bwd`` then gives the backward)."""
    if not isinstance(device_type, str):
        raise ValueError(f"Expected `device_type` of type `str`, got: `{type(device_type)}`")
    if fwd is None:
        return functools.partial(custom_fwd, device_type=device_type, cast_inputs=cast_inputs)

    @functools.wraps(fwd)
    def decorate_fwd(*args, **kwargs):
        args[0]._dtype = get_autocast_dtype(device_type)
        if cast_inputs is None:
            args[0]._fwd_used_autocast = is_autocast_enabled(device_type)
            return fwd(*args, **kwargs)
        args[0]._fwd_used_autocast = False
        if is_autocast_enabled(device_type):
            with autocast(device_type=device_type, enabled=False):
                return fwd(*_cast_inputs(args, device_type, cast_inputs),
                           **_cast_inputs(kwargs, device_type, cast_inputs))
        return fwd(*args, **kwargs)
    return decorate_fwd


def custom_bwd(bwd=None, *, device_type):
    """Decorate an ``autograd.Function``'s ``backward``: it runs in the autocast state its forward ran in."""
    if not isinstance(device_type, str):
        raise ValueError(f"Expected `device_type` of type `str`, got: `{type(device_type)}`")
    if bwd is None:
        return functools.partial(custom_bwd, device_type=device_type)

    @functools.wraps(bwd)
    def decorate_bwd(*args, **kwargs):
        with autocast(device_type=device_type, enabled=args[0]._fwd_used_autocast, dtype=args[0]._dtype):
            return bwd(*args, **kwargs)
    return decorate_bwd
