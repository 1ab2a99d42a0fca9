"""``repr`` of a tensor in PyTorch's style: ``tensor([[1., 2.], [3., 4.]], device='cuda:0', grad_fn=<AddBackward>)``."""
import numpy as np

from . import _dtype as D


def _fmt_array(a, dtype):
    if dtype is D.bfloat16 or dtype is D.float16:
        a = a.astype(np.float32)
    if a.size == 0:
        return "[]"
    if dtype is D.bool_:
        return np.array2string(a, separator=", ", prefix="tensor(", formatter={"bool": lambda v: str(bool(v))})
    if dtype.is_floating_point:
        finite = a[np.isfinite(a)]
        integral = finite.size and np.all(finite == np.round(finite)) and np.abs(finite).max() < 1e8
        big = finite.size and (np.abs(finite).max() >= 1e8 or (np.abs(finite[finite != 0]).min() < 1e-4
                                                                if np.any(finite != 0) else False))
        if integral and not big:
            fmt = lambda v: (f"{v:.0f}." if np.isfinite(v) else str(v).replace("inf", "inf"))  # noqa: E731
        elif big:
            fmt = lambda v: f"{v:.4e}"  # noqa: E731
        else:
            fmt = lambda v: f"{v:.4f}"  # noqa: E731
        return np.array2string(a, separator=", ", prefix="tensor(", formatter={"float_kind": fmt},
                               threshold=1000, edgeitems=3)
    return np.array2string(a, separator=", ", prefix="tensor(", threshold=1000, edgeitems=3)


def format_tensor(t):
    a = t.detach()._to_host_array()
    body = _fmt_array(np.asarray(a), t.dtype) if t.ndim else _fmt_array(np.asarray(a), t.dtype)
    extras = []
    if t.numel() == 0 and t.ndim != 1:
        extras.append(f"size={tuple(t.shape)}")
    if t.device.type != "cpu":
        extras.append(f"device='{t.device}'")
    default_ok = t.dtype in (D.get_default_dtype(), D.int64, D.bool_)
    if not default_ok or t.numel() == 0 and t.dtype is not D.get_default_dtype():
        extras.append(f"dtype={t.dtype}")
    if t.grad_fn is not None:
        extras.append(f"grad_fn=<{t.grad_fn.name()}>")
    elif t.requires_grad:
        extras.append("requires_grad=True")
    return "tensor(" + body + "".join(", " + e for e in extras) + ")"
