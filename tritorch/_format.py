"""``repr`` of a tensor as PyTorch prints it: ``tensor([[1., 2.], [3., 4.]], device='cuda:0', grad_fn=<AddBackward0>)``.

The rules are PyTorch's (``torch/_tensor_str.py``, default print options): one width for every element, floats as
``1.`` when all are integral, ``1.5000`` (4 decimals) otherwise and ``1.0000e-05`` when the magnitudes span more than
1000x or leave [1e-4, 1e8]; lines of at most 80 characters; more than 1000 elements summarized with 3 at each edge.
"""
import math

import numpy as np

from . import _dtype as D

PRECISION = 4
LINEWIDTH = 80
THRESHOLD = 1000
EDGEITEMS = 3

__all__ = ["format_tensor"]


class _Formatter:
    """One format and width for all the (shown) elements of a tensor."""

    def __init__(self, values, dtype):
        self.floating = dtype.is_floating_point
        self.int_mode, self.sci_mode, self.width = True, False, 1
        if not self.floating:
            for v in values:
                self.width = max(self.width, len(self._plain(v)))
            return
        vals = values.astype(np.float64)
        finite = vals[np.isfinite(vals) & (vals != 0)]
        if finite.size == 0:
            return
        ab = np.abs(finite)
        lo, hi = ab.min(), ab.max()
        self.int_mode = bool(np.all(finite == np.ceil(finite)))
        if self.int_mode:
            self.sci_mode = hi / lo > 1000.0 or hi > 1.0e8
            extra = 0 if self.sci_mode else 1
        else:
            self.sci_mode = hi / lo > 1000.0 or hi > 1.0e8 or lo < 1.0e-4
            extra = 0
        for v in finite:
            self.width = max(self.width, len(self._float(v)) + extra)

    @staticmethod
    def _plain(v):
        return str(bool(v)) if isinstance(v, (bool, np.bool_)) else str(int(v))

    def _float(self, v):
        if self.sci_mode:
            return f"{v:.{PRECISION}e}"
        if self.int_mode:
            return f"{v:.0f}"
        return f"{v:.{PRECISION}f}"

    def format(self, v):
        if not self.floating:
            s = self._plain(v)
        else:
            v = float(v)
            s = self._float(v)
            if self.int_mode and not self.sci_mode and math.isfinite(v):
                s += "."
        return " " * (self.width - len(s)) + s


def _summarized(a):
    """The elements a summarized print shows (EDGEITEMS at each end of every dim)."""
    if a.ndim == 0:
        return a.reshape(-1)
    if a.shape[0] > 2 * EDGEITEMS:
        parts = [a[:EDGEITEMS], a[-EDGEITEMS:]]
    else:
        parts = [a]
    return np.concatenate([_summarized(x).reshape(-1) for p in parts for x in p] or [np.empty(0, a.dtype)])


def _vector(a, indent, summarize, fmt):
    width = fmt.width + 2
    per_line = max(1, int(math.floor((LINEWIDTH - indent) / width)))
    if summarize and a.shape[0] > 2 * EDGEITEMS:
        data = [fmt.format(v) for v in a[:EDGEITEMS]] + [" ..."] + [fmt.format(v) for v in a[-EDGEITEMS:]]
    else:
        data = [fmt.format(v) for v in a]
    lines = [", ".join(data[i:i + per_line]) for i in range(0, len(data), per_line)]
    return "[" + ("," + "\n" + " " * (indent + 1)).join(lines) + "]"


def _nested(a, indent, summarize, fmt):
    if a.ndim == 0:
        return fmt.format(a[()])
    if a.ndim == 1:
        return _vector(a, indent, summarize, fmt)
    if summarize and a.shape[0] > 2 * EDGEITEMS:
        rows = [_nested(a[i], indent + 1, summarize, fmt) for i in range(EDGEITEMS)] + ["..."] + \
               [_nested(a[i], indent + 1, summarize, fmt) for i in range(a.shape[0] - EDGEITEMS, a.shape[0])]
    else:
        rows = [_nested(a[i], indent + 1, summarize, fmt) for i in range(a.shape[0])]
    return "[" + ("," + "\n" * (a.ndim - 1) + " " * (indent + 1)).join(rows) + "]"


def _body(a, dtype, indent):
    if dtype is D.bfloat16 or dtype is D.float16:
        a = a.astype(np.float32)
    summarize = a.size > THRESHOLD
    shown = _summarized(a) if summarize else a.reshape(-1)
    return _nested(a, indent, summarize, _Formatter(shown, dtype))


def _add_suffixes(body, suffixes, indent):
    out = [body]
    last_line_len = len(body) - body.rfind("\n") + 1
    for s in suffixes:
        if last_line_len + len(s) + 2 > LINEWIDTH:
            out.append(",\n" + " " * indent + s)
            last_line_len = indent + len(s)
        else:
            out.append(", " + s)
            last_line_len += len(s) + 2
    out.append(")")
    return "".join(out)


def format_tensor(t):
    prefix = "tensor("
    indent = len(prefix)
    suffixes = []
    if t.device.type != "cpu":
        suffixes.append(f"device='{t.device}'")
    if t.numel() == 0:
        if t.ndim != 1:
            suffixes.append(f"size={tuple(t.shape)}")
        if t.dtype is not D.get_default_dtype():
            suffixes.append(f"dtype={t.dtype}")
        body = "[]"
    else:
        if t.dtype not in (D.get_default_dtype(), D.int64, D.bool_):
            suffixes.append(f"dtype={t.dtype}")
        body = _body(np.asarray(t.detach()._to_host_array()), t.dtype, indent)
    if t.grad_fn is not None:
        suffixes.append(f"grad_fn=<{t.grad_fn.name()}>")
    elif t.requires_grad:
        suffixes.append("requires_grad=True")
    return prefix + _add_suffixes(body, suffixes, indent)
