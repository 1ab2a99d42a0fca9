"""Code generation of fused pointwise kernels: a group of elementwise nodes becomes one Triton kernel that loads
each external input once, computes every member in registers and stores only the group's result.

The kernel's body is assembled from the ops' own declarations: each member calls its row's Triton function
(``kernels/elementwise.py``'s ``_u``/``_b`` rows, ``FN(x, a, b)`` / ``FN(x, y, a, b)``) passed as a ``tl.constexpr``,
so the source depends only on the group's shape (which operand feeds which member) and one source serves every
choice of ops (the sources: ``source.py``). Sources are written once per hash to ``<cache dir>/compiled/`` (Triton
reads a jit function's source from its file) and imported from there; the compile gate finds them there too.

An input that is a contiguous tensor of the group's shape is read at the flat index; any other (a broadcast bias, a
per-row scale, a 0-dim tensor, a transposed or sliced view) through its strides over the group's dims, coalesced as
TensorIterator does (``layout``): one kernel variant per pattern of strided inputs and rank, no copies. A group read
only by a ``sum``/``mean`` over its trailing (or leading) dims becomes a reduction kernel (``fused_reduce_kernel``)
that sums the group's values per row (per column) as it computes them, its backward spreading the gradient back as
a broadcast view; one read only by a last-dim softmax becomes ``fused_softmax_kernel``, whose backward reads the
saved result as the eager op's does.
"""
import hashlib
import importlib.util
import math
import os
import sys
import tempfile

import triton
import triton.language as tl

from .. import _atomic, autotune
from .._tensor import Tensor
from .. import jit
from ..autograd.grad_mode import is_grad_enabled
from ..jit import op_table
from ..jit.ir import Value
from ..kernels._common import empty
from ..kernels._launch import ACC, ptr
from ..kernels._pointwise import EW_CANDIDATES, _ew_default, _ew_prune, _where
from ..kernels.reduce import MID_CANDIDATES, ROW_CANDIDATES, _dedupe, _mid_blocks, _row_blocks
from ..kernels.elementwise import BINARY, UNARY
from .autodiff import FusedFunction, input_grads, member_values, with_pending
from .passes import Param, eliminate_dead_code, fuse_pointwise, rematerialize
from .source import KERNEL_NAMES, layout, source_of

__all__ = ["Fused", "source_of", "layout", "generated_module", "PREFIX"]

# the generated kernels tune as the shared pointwise kernel does (its candidates, default and pruning), keyed by the
# kernel's source hash, dtype and size bucket
TUNABLE = autotune.Tunable("compiled_pointwise", EW_CANDIDATES, default=_ew_default, prune=_ew_prune)
# the generated reductions as the row reduction kernel (kernels/reduce.py) does, and those over leading dims as its
# middle-axis kernel; with at most 16 elements of a tile per thread and 8 warps, as the tree's temporaries spilled
# with more (compile-check, sm_90a: 20-52 B with 32 per thread under triton 3.6, 40 B at 16 warps under 3.9)
_ROWS = tuple(c for c in ROW_CANDIDATES if c.num_warps <= 8 and c.TILE <= 16 * 32 * c.num_warps)
_MIDS = tuple(c for c in MID_CANDIDATES if c.num_warps <= 8 and c.TILE <= 16 * 32 * c.num_warps)
REDUCE_TUNABLE = autotune.Tunable("compiled_reduce", _ROWS, default=lambda k: _ROWS[0], prune=_dedupe(_row_blocks))
REDUCE_LEADING_TUNABLE = autotune.Tunable("compiled_reduce_leading", _MIDS, default=lambda k: _MIDS[0],
                                          prune=_dedupe(_mid_blocks))
# ... and the softmaxes as the row reduction too (two passes over a row in chunks)
SOFTMAX_TUNABLE = autotune.Tunable("compiled_softmax", _ROWS, default=lambda k: _ROWS[0], prune=_dedupe(_row_blocks))
_SOFTMAXES = ("softmax", "log_softmax")


def row_fn(row):
    """The Triton function of a member: its row's in kernels/elementwise.py, or the shared kernel's ``where``."""
    return _where if row == "where" else (UNARY[row] if row in UNARY else BINARY[row]).tfn


_LOADED = {}
PREFIX = "tritorch_fused_"
"""The module name of a generated source: PREFIX + its key (``<cache dir>/compiled/fused_<key>.py``)."""


def _import(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _load(key, source):
    """The kernel of ``source``, written to the cache (atomically, once) and imported."""
    if key in _LOADED:
        return _LOADED[key]
    folder = os.path.join(autotune.cache_dir(), "compiled")
    path = os.path.join(folder, f"fused_{key}.py")
    try:
        if not os.path.exists(path) or open(path).read() != source:
            os.makedirs(folder, exist_ok=True)
            _atomic.write(path, source)
    except OSError:                      # an unwritable cache: a private temporary folder serves this process
        path = os.path.join(tempfile.mkdtemp(prefix="tritorch-compiled-"), f"fused_{key}.py")
        _atomic.write(path, source)
    module = _import(PREFIX + key, path)
    _LOADED[key] = next(getattr(module, k) for k in KERNEL_NAMES if hasattr(module, k))
    return _LOADED[key]


def generated_module(name):
    """The generated module ``name`` (PREFIX + key): this process's, or imported from the cache folder (how the
    compile gate's workers find the kernels tritorch.compile generated while its workloads were recorded)."""
    if name in sys.modules:
        return sys.modules[name]
    path = os.path.join(autotune.cache_dir(), "compiled", f"fused_{name[len(PREFIX):]}.py")
    if not name.startswith(PREFIX) or not os.path.exists(path):
        raise ModuleNotFoundError(f"no generated kernel module {name!r} in {os.path.dirname(path)}")
    return _import(name, path)


class Fused:
    """One fused group: ``specs`` = [(row, operands)] in execution order, ``outputs`` their result Values. Called
    with the group's ``operands`` (external tensors and scalars, in order), it returns the last member's result;
    with ``reduce=(kind, k, keepdim, leading)``, that result summed (kind ``"sum"``; ``"mean"``: averaged) over its
    last ``k`` dims (``leading``: its first ``k``), as ``sum``/``mean(dim=..., keepdim=keepdim)``, or its
    ``"softmax"``/``"log_softmax"`` over the last dim: the group is the reduction's prologue. With ``roots`` (the
    indices of several members whose results are all of the group's shape; no ``reduce``) the kernel stores each of
    them and a call returns them as a tuple: independent trees computed side by side, in one launch that loads their
    shared inputs once (``fuse_pointwise``'s ``horizontal``)."""

    def __init__(self, specs, outputs, reduce=None, roots=None):
        own = {v.name: j for j, v in enumerate(outputs)}
        self.operands, self.rows, program = [], [], []
        slots, n_in, n_sc = {}, 0, 0
        for row, ops in specs:
            self.rows.append(row)
            member = []
            for a in ops:
                if isinstance(a, Value) and a.name in own:
                    member.append(("t", own[a.name]))
                    continue
                key = ("v", a.name) if isinstance(a, Value) else ("c", type(a), a)
                if key not in slots:
                    kind = "x" if isinstance(a, Value) else "a" if isinstance(a, Param) else "s"
                    slots[key] = (kind, n_in if kind == "x" else n_sc)
                    n_in, n_sc = (n_in + 1, n_sc) if kind == "x" else (n_in, n_sc + 1)
                    self.operands.append(a if isinstance(a, Value) else float(a) if kind == "a" else a)
                member.append(slots[key])
            program.append(member)
        self.n_inputs, self.n_scalars, self.program = n_in, n_sc, program
        self.reduce = reduce
        self.kind = None if reduce is None else reduce[0] if reduce[0] in _SOFTMAXES else \
            "leading" if reduce[3] else "trailing"
        self.saves_output = self.kind in _SOFTMAXES     # their backward reads the result, as the eager ops'
        self.roots = tuple(roots) if roots else None
        self.source = source_of(n_in, n_sc, program, reduce=self.kind, roots=self.roots)
        self.key = hashlib.sha256(self.source.encode()).hexdigest()[:16]
        self.fns = [row_fn(r) for r in self.rows]
        self.shape, self.dtype = tuple(outputs[-1].shape), outputs[-1].dtype
        self.out_shape = self.shape
        if reduce is not None:
            _, k, keepdim, leading = reduce
            kept = self.shape[k:] if leading else self.shape[:len(self.shape) - k]
            self.rows_n = math.prod(kept)
            self.red_n = math.prod(self.shape[:k] if leading else self.shape[len(kept):])
            ones = (1,) * k
            self.keep_shape = ones + kept if leading else kept + ones
            self.out_shape = self.shape if self.saves_output else self.keep_shape if keepdim else kept
        self._backward, self.backward_kernels = {}, []
        self._variants = {((), 1): (self.key, self.source)}

    def variant(self, strided, rank):
        """(key, source) of the kernel that reads the inputs ``strided`` through strides over ``rank`` dims."""
        pattern = (tuple(strided), rank if strided else 1)
        if pattern not in self._variants:
            source = source_of(self.n_inputs, self.n_scalars, self.program, *pattern, reduce=self.kind,
                               roots=self.roots)
            self._variants[pattern] = hashlib.sha256(source.encode()).hexdigest()[:16], source
        return self._variants[pattern]

    def __call__(self, *operands):
        """The group's result; an autograd node (FusedFunction) where an input requires grad (several roots: their
        results by the published ops, recorded)."""
        if is_grad_enabled() and any(isinstance(o, Tensor) and o.requires_grad for o in operands):
            if self.roots:
                return self.run_ops([o for o in operands if isinstance(o, Tensor)],
                                    [float(o) for o in operands if not isinstance(o, Tensor)])
            return FusedFunction.apply(self, *operands)
        return self.launch(*operands)

    def launch(self, *operands):
        """The generated kernel on the operands (tensors that broadcast to the group's shape, of its dtype, any
        strides; and Python numbers): each input is read in place, through its strides where it is not a
        contiguous tensor of the result's shape."""
        tensors = [o for o in operands if isinstance(o, Tensor)]
        scalars = [float(o) for o in operands if not isinstance(o, Tensor)]
        n = math.prod(self.shape)
        strided, sizes, strides = layout(self.shape, tensors)
        reach = max([sum((s - 1) * abs(st) for s, st in zip(sizes, sts)) for sts in strides], default=0)
        if max(n, reach) >= 2 ** 31 or self.reduce is not None and n == 0:
            return self.run_ops(tensors, scalars)   # int32 indexing, or an empty sum/mean: the ops one by one
        outs = [empty(self.out_shape, self.dtype, tensors[0].device) for _ in self.roots or (None,)]
        result = tuple(outs) if self.roots else outs[0]
        if n == 0:
            return result
        key, source = self.variant(strided, len(sizes))
        kernel = _load(key, source)
        head = [self.rows_n, self.red_n] if self.reduce else [n]
        if self.kind in ("trailing", "leading"):
            head.append(float(self.red_n if self.reduce[0] == "mean" else 1))
        args = [ptr(t) for t in tensors] + [ptr(o) for o in outs] + head
        if strided:
            args += sizes[1:] + [st for sts in strides for st in sts]
        args += scalars + self.fns
        if self.reduce is not None:
            m, r, leading = self.rows_n, self.red_n, self.reduce[3]

            def run(cfg):                    # BLOCK_M: kept outputs per program, BLOCK_N: reduced chunk
                bm, bn = _mid_blocks(cfg, r, m)[::-1] if leading else _row_blocks(cfg, m, r)
                kernel[(triton.cdiv(m, bm),)](*args, CT=ACC[self.dtype], BLOCK_M=bm, BLOCK_N=bn,
                                              num_warps=cfg.num_warps, num_stages=cfg.num_stages)
            tunable = REDUCE_LEADING_TUNABLE if leading else SOFTMAX_TUNABLE if self.saves_output else REDUCE_TUNABLE
            sizes_key = (r, m) if leading else (m, r)            # as its prune rule reads them: key[-3:-1]
            cfg = tunable.pick((key, self.dtype, *map(autotune.bucket, sizes_key), "c"), run)
        else:
            def run(cfg):
                kernel[(triton.cdiv(n, cfg.BLOCK),)](*args, CT=ACC[self.dtype], BLOCK=cfg.BLOCK,
                                                     num_warps=cfg.num_warps, num_stages=cfg.num_stages)
            cfg = TUNABLE.pick((key, self.dtype, autotune.bucket(n)), run)
        run(cfg)
        return result

    def run_ops(self, tensors, scalars, table=None):
        """The result by the published ops, one by one (recorded: differentiable)."""
        table = op_table() if table is None else table
        values = member_values(self, tensors, scalars, table)
        if self.roots:
            return tuple(values[j] for j in self.roots)
        value = values[-1]
        if self.reduce is None:
            return value
        kind, k, keepdim, leading = self.reduce
        if kind in _SOFTMAXES:
            return table[kind](value, -1)
        return table[kind](value, dim=tuple(range(k)) if leading else tuple(range(-k, 0)), keepdim=keepdim)

    def _spread(self, g, y=None):
        """The gradient of the group's result from ``g``, the gradient of the reduction's: a broadcast view (a sum or
        mean), or the softmax's backward from its saved result ``y``, in ops that fuse with the group's own."""
        if self.reduce is None:
            return g
        if self.kind == "softmax":
            return y * (g - (g * y).sum(-1, keepdim=True))
        if self.kind == "log_softmax":
            return g - y.exp() * g.sum(-1, keepdim=True)
        g = g.reshape(self.keep_shape).expand(*self.shape)
        return g / self.red_n if self.reduce[0] == "mean" else g    # the division joins the backward's tree

    def backward_eager(self, tensors, scalars, g, y=None):
        """The input gradients as recorded published ops (differentiable: double backward)."""
        return input_grads(self, tensors, scalars, self._spread(g, y), op_table())

    def backward(self, tensors, scalars, g, y=None, pending=None):
        """The input gradients by the backward program: ``input_grads`` captured once per shape, its dead code
        dropped, its recomputed values rematerialized per reader and its pointwise trees fused in turn. ``y``: the
        saved result, for a softmax; ``pending``: {input index: a gradient to add into that input's}."""
        pending = pending or {}
        slots = tuple(sorted(pending))
        key = (tuple(scalars), g.dtype, str(g.device), slots)
        extra = (() if y is None else (y,)) + tuple(pending[k] for k in slots)
        prog = self._backward.get(key)
        if prog is None:
            n, ny = len(tensors), int(y is not None)

            def fn(*ts):
                grads = input_grads(self, ts[:n], scalars, self._spread(ts[-1], *ts[n:n + ny]), op_table())
                return with_pending(grads, slots, ts[n + ny:-1])
            graph = jit.trace(fn, (*tensors, *extra, g), check_trace=False, strict=False).graph
            graph, kernels = fuse_pointwise(rematerialize(eliminate_dead_code(graph)), Fused, horizontal=True)
            prog = self._backward[key] = jit.TracedModule(graph, "FusedBackward", table={**op_table(), **kernels})
            self.backward_kernels = list(kernels.values())
        return prog(*tensors, *extra, g)

    def __repr__(self):
        tail = (self.reduce[0] + ("(leading)" if self.reduce[3] else ""),) if self.reduce else ()
        return f"Fused({' -> '.join(self.rows + list(tail))})"
