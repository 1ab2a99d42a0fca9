"""Graph nodes and ``Function``: the one mechanism by which every op, built-in or custom, records its backward.

An op is a ``Function`` subclass with ``forward(ctx, *args)`` and ``backward(ctx, *grad_outputs)``; ``apply`` runs
the forward without recording, then (when grad mode is on and an input requires grad) makes ``ctx`` the
``grad_fn`` of the outputs. ``ctx`` is an instance of ``<Name>Backward``, a ``Node`` subclass made per Function.

Example, a custom op (``tests/test_autograd.py`` runs this example)::

    import tritorch
    from tritorch.autograd import Function

    class Cube(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x * x

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * 3 * x * x

    x = tritorch.tensor([1.0, 2.0], requires_grad=True)
    Cube.apply(x).sum().backward()
    assert x.grad.tolist() == [3.0, 12.0]

What ``ctx`` offers in ``forward``: ``save_for_backward(*tensors)`` (read back as ``ctx.saved_tensors``, checked
against in-place changes), ``needs_input_grad``, ``mark_dirty(*tensors)`` for inputs modified in place,
``mark_non_differentiable(*outputs)``, ``set_materialize_grads(False)`` (``backward`` then receives ``None`` for
outputs that got no gradient instead of zeros). Any other attribute set on ``ctx`` is kept for ``backward``.

An in-place op (``mark_dirty``) on a view is recorded on the view's base (``CopySlices``), as in PyTorch, so the
base's gradient sees the write; the view gets a history as a part of the new base.

Saved tensors that are outputs of the op itself (``exp`` saves its result) are stored without their ``grad_fn``
and rebuilt when unpacked, so a node never owns a tensor that owns the node: the graph is freed by reference
counting alone, with or without a backward pass.
"""
import itertools
import sys
import traceback

from .grad_mode import STATE
from tritorch import _creation, _impl
from tritorch._tensor import Tensor, contiguous_strides

__all__ = ["Function", "Node", "AccumulateGrad", "once_differentiable", "FREED_MESSAGE"]

_seq = itertools.count()

# anomaly mode (set by ``detect_anomaly``): forward stacks are recorded and every backward output is checked
ANOMALY = [False]

FREED_MESSAGE = (
    "Trying to backward through the graph a second time (or directly access saved tensors after they have already "
    "been freed). Saved intermediate values of the graph are freed when you call .backward() or autograd.grad(). "
    "Specify retain_graph=True if you need to backward through the graph a second time or if you need to access "
    "saved tensors after calling backward.")

_LEGACY = {"float32": "FloatTensor", "float64": "DoubleTensor", "float16": "HalfTensor",
           "bfloat16": "BFloat16Tensor", "int64": "LongTensor", "int32": "IntTensor", "int16": "ShortTensor",
           "int8": "CharTensor", "uint8": "ByteTensor", "bool": "BoolTensor"}


def type_name(t):
    """PyTorch's legacy type name of a tensor: ``tritorch.FloatTensor``, ``tritorch.cuda.HalfTensor``."""
    name = _LEGACY.get(t.dtype.name, t.dtype.name)
    return f"tritorch.cuda.{name}" if t._storage.device.type == "cuda" else f"tritorch.{name}"


def _camel(name):
    return "".join(p[:1].upper() + p[1:] for p in name.split("_"))


class Node:
    """A node of the backward graph, and the ``ctx`` its forward saved into.

    ``next_functions`` holds one ``(node, output_nr)`` edge per forward argument (``None`` where no gradient
    flows): the graph as PyTorch shows it.
    """

    _fn = None
    next_functions = ()
    needs_input_grad = ()
    _seq = -1
    _saved = None           # tuple of (tensor, version, output_nr or None) once the forward has run
    _to_save = None         # what forward passed to save_for_backward, until apply packs it
    _saved_attrs = None     # ctx attributes that were the op's own outputs, stored as _saved entries
    _tensor_attrs = ()      # names of tensor-valued ctx attributes, freed with the saved tensors
    _freed = False
    _non_diff = ()
    _dirty = ()
    _materialize = True
    _pre_hooks = None       # {output_nr: [tensor hooks]}: hooks registered on the outputs (non-leaf tensors)
    _retains = None         # {output_nr: weakref to the tensor}: outputs that keep their gradient (retain_grad)
    _node_pre_hooks = None
    _hooks = None
    _out_meta = ()          # (shape, dtype, device) per forward output; None for non-differentiable ones
    _in_meta = ()           # (shape, dtype, device) per forward argument that gets a gradient
    _stack = None           # forward stack, recorded in anomaly mode
    # True where backward takes one output gradient and returns one gradient per edge, each already of its input's
    # shape, dtype and device, and forward saved tensors only (no tensor attributes): the engine then calls it
    # without checks (unless anomaly mode is on); registering a hook of any kind on the node makes it not plain
    _plain = False

    def name(self):
        n = self.__dict__.get("_name")
        if n:
            return n
        op = self.__dict__.get("op")
        if op is not None and isinstance(getattr(op, "name", None), str):
            return _camel(op.name) + "Backward0"
        return type(self).__name__

    def __repr__(self):
        return f"<{self.name()} object at {id(self):#x}>"

    # ---- what forward saves ---------------------------------------------------------------------------------------
    def save_for_backward(self, *tensors):
        self._to_save = tensors

    @property
    def saved_tensors(self):
        saved = self._saved
        if saved is None:
            if self._freed and self._to_save is None:
                raise RuntimeError(FREED_MESSAGE)
            return tuple(self._to_save or ())
        return tuple([_unpack(self, e, i) if e[0] is not None else None for i, e in enumerate(saved)])

    def mark_non_differentiable(self, *tensors):
        self._non_diff = self._non_diff + tuple(id(t) for t in tensors)

    def mark_dirty(self, *tensors):
        self._dirty = self._dirty + tuple(id(t) for t in tensors)

    def set_materialize_grads(self, value):
        self._materialize = bool(value)

    def __getattr__(self, name):
        d = self.__dict__
        attrs = d.get("_saved_attrs")
        if attrs is not None and name in attrs:
            if self._freed:
                raise RuntimeError(FREED_MESSAGE)
            return _unpack(self, attrs[name], name)
        if name in d.get("_freed_attrs", ()):
            raise RuntimeError(FREED_MESSAGE)
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def _release(self):
        """Free what forward saved (after the node ran, unless retain_graph): saved tensors and tensor attributes."""
        d = self.__dict__
        if self._saved is not None or self._saved_attrs is not None:
            d["_saved"] = None
            d["_saved_attrs"] = None
            d["_freed"] = True
        if self._tensor_attrs:
            for k in self._tensor_attrs:
                d.pop(k, None)
            d["_freed_attrs"] = self._tensor_attrs
            d["_tensor_attrs"] = ()
            d["_freed"] = True

    # ---- hooks on the node ----------------------------------------------------------------------------------------
    def register_hook(self, fn):
        """``fn(grad_inputs, grad_outputs)`` after the node ran; it may return replacement ``grad_inputs``."""
        if self._hooks is None:
            self._hooks = []
            self._plain = False
        self._hooks.append(fn)
        return RemovableHandle(self._hooks, fn)

    def register_prehook(self, fn):
        """``fn(grad_outputs)`` before the node runs; it may return replacement ``grad_outputs``."""
        if self._node_pre_hooks is None:
            self._node_pre_hooks = []
            self._plain = False
        self._node_pre_hooks.append(fn)
        return RemovableHandle(self._node_pre_hooks, fn)

    # ---- backward -------------------------------------------------------------------------------------------------
    def apply(self, *grads):
        return self._fn.backward(self, *grads)


def _unpack(node, entry, which):
    """A saved tensor, checked against in-place writes since it was saved; an output gets its ``grad_fn`` back."""
    t, version, nr = entry
    if t is None:
        return None
    if t._storage.version != version:
        src = t if nr is None else None
        if src is not None and src.grad_fn is not None:
            what = f", which is output {src._output_nr} of {src.grad_fn.name()},"
        elif nr is not None:
            what = f", which is output {nr} of {node.name()},"
        else:
            what = ""
        raise RuntimeError(
            "one of the variables needed for gradient computation has been modified by an inplace operation: "
            f"[{type_name(t)} {list(t._shape)}]{what} is at version {t._storage.version}; expected version "
            f"{version} instead (it was saved by {node.name()}). Hint: enable anomaly detection to find the "
            "operation that failed to compute its gradient, with tritorch.autograd.set_detect_anomaly(True).")
    if nr is None:
        return t
    out = t._alias()
    out._requires_grad = True
    out.grad_fn = node
    out._output_nr = nr
    return out


class RemovableHandle:
    """What ``register_hook`` returns: ``handle.remove()`` unregisters the hook."""

    def __init__(self, lst, item):
        self._lst, self._item = lst, item

    def remove(self):
        lst = self._lst
        for i, h in enumerate(lst):
            if h is self._item:
                del lst[i]
                return

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


_Handle = RemovableHandle


def _add_prehook(node, output_nr, fn):
    if node._pre_hooks is None:
        node._pre_hooks = {}
        node._plain = False
    lst = node._pre_hooks.setdefault(output_nr, [])
    lst.append(fn)
    return RemovableHandle(lst, fn)


class AccumulateGrad(Node):
    """The sink of a leaf that requires grad: adds the incoming gradient into ``leaf.grad``.

    The leaf refers to its accumulator weakly, the graph strongly: it lives as long as some graph uses the leaf.
    """

    _seq = sys.maxsize      # ready accumulators run first, as in PyTorch

    def __init__(self, variable):
        self.variable = variable
        self._out_meta = ((variable._shape, variable.dtype, variable._storage.device),)

    def name(self):
        return "AccumulateGrad"

    def _release(self):
        pass


def _grad_accumulator(t):
    ref = t.__dict__.get("_grad_acc")
    acc = ref() if ref is not None else None
    if acc is None:
        import weakref
        acc = AccumulateGrad(t)
        t.__dict__["_grad_acc"] = weakref.ref(acc)
    return acc


class Function:
    """Base class of ops: subclass with static ``forward(ctx, ...)`` and ``backward(ctx, *grads)``."""

    _node_cls = None
    # False where forward never sets a tensor-valued ctx attribute (only save_for_backward): recording then skips
    # looking for them (the elementwise ops, whose host cost per graph node matters)
    _tensor_ctx_attrs = True
    # True where every node is recorded by ``record_plain`` and backward keeps Node._plain's promise
    _plain_backward = False
    # the arguments whose gradient backward can add a pending one into, in its own kernel: the engine then passes the
    # gradient already waiting for that argument (from the other readers of the same tensor, the skip connection of
    # a residual block) as ``ctx._pending[i]``, and backward pops the ones it added (``pending_grad``), saving the
    # separate add; never under create_graph or anomaly mode (argument indices, ascending)
    _accumulates = ()

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        cls._node_cls = type(cls.__name__ + "Backward", (Node,),
                             {"_fn": cls, "__slots__": (), "_plain": cls._plain_backward})

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError("You must implement the forward function for custom autograd.Function.")

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError("You must implement either the backward or vjp method for your custom "
                                  "autograd.Function to use it with backward mode AD.")

    @classmethod
    def apply(cls, *args, **kwargs):
        Tensor = _TENSOR[0] if _TENSOR else _tensor_cls()
        ctx = cls._node_cls()
        record = False
        if STATE.enabled:
            needs = tuple([isinstance(a, Tensor) and a._requires_grad for a in args])
            record = True in needs
        if not record:
            STATE.enabled, prev = False, STATE.enabled
            try:
                return cls.forward(ctx, *args, **kwargs)
            finally:
                STATE.enabled = prev
        ctx.needs_input_grad = needs
        STATE.enabled = False
        try:
            out = cls.forward(ctx, *args, **kwargs)
        finally:
            STATE.enabled = True
        return _record(ctx, args, out, needs, Tensor, cls._tensor_ctx_attrs)


_TENSOR = []


def pending_grad(ctx, i, like, shape=None):
    """The gradient already waiting for argument ``i`` of ``ctx``'s forward (see ``Function._accumulates``) when
    there is one of ``like``'s dtype and device and shape (``shape`` where given), contiguous (what a kernel adds
    without a copy): now the caller's to add into the gradient it returns. None otherwise (the engine then adds it
    as usual)."""
    pending = ctx.__dict__.get("_pending")
    g = pending.get(i) if pending else None
    if g is None or g._shape != (like._shape if shape is None else shape) or g.dtype is not like.dtype or \
            not g.is_contiguous() or g._storage.device != like._storage.device:
        return None
    return pending.pop(i)


def _tensor_cls():
    if not _TENSOR:
        _TENSOR.append(Tensor)
    return _TENSOR[0]


def _link(d, args, needs):
    """Set a node's edges (one per forward argument, ``None`` where no gradient flows), input metadata and
    sequence number."""
    edges = []
    in_meta = []
    for a, n in zip(args, needs):
        if n:
            fn = a.grad_fn
            if fn is None:
                ref = a.__dict__.get("_grad_acc")
                fn = ref() if ref is not None else None
                edges.append((fn if fn is not None else _grad_accumulator(a), 0))
            else:
                edges.append((fn, a._output_nr))
            in_meta.append((a._shape, a.dtype, a._storage.device))
        else:
            edges.append(None)
            in_meta.append(None)
    d["next_functions"] = tuple(edges)
    d["_in_meta"] = tuple(in_meta)
    d["_seq"] = next(_seq)
    if ANOMALY[0]:
        d["_stack"] = "".join(traceback.format_stack()[:-4])


_NOTHING = (None, 0, None)


def _pack(ctx, d, Tensor):
    """Pack what forward saved: outputs of this very node lose their grad_fn (rebuilt on unpack), so no cycle."""
    packed = []
    for t in ctx._to_save:
        if t is None:
            packed.append(_NOTHING)
        elif not isinstance(t, Tensor):
            raise TypeError("save_for_backward can only save variables, but argument "
                            f"{len(packed)} is of type {type(t).__name__}")
        elif t.grad_fn is ctx:
            packed.append((t._alias(), t._storage.version, t._output_nr))
        else:
            packed.append((t, t._storage.version, None))
    d["_saved"] = tuple(packed)
    d["_to_save"] = None


def record_plain(ctx, args, out):
    """``_record`` without its generality, for the plain case: ``out`` is one new floating tensor (no input handed
    back, none written in place or marked non-differentiable) and ``ctx`` holds no tensor attributes; the caller set
    ``ctx.needs_input_grad`` before the forward. The elementwise ops on ``cpu`` record through it, where the host
    cost per graph node is the engine's own."""
    d = ctx.__dict__
    _link(d, args, d["needs_input_grad"])
    d["_out_meta"] = ((out._shape, out.dtype, out._storage.device),)
    out._requires_grad = True
    out.grad_fn = ctx
    out._output_nr = 0
    to_save = d.pop("_to_save", None)
    if to_save is not None:                     # the output is stored without its grad_fn (rebuilt on unpack)
        packed = []
        for t in to_save:
            packed.append(_NOTHING if t is None else (t, t._storage.version, None) if t is not out else
                          (t._alias(), t._storage.version, 0))
        d["_saved"] = tuple(packed)
    return out


def _record(ctx, args, out, needs, Tensor, attrs=True):
    """Make ``ctx`` the grad_fn of the forward's outputs and pack what it saved (``attrs``: look for tensor-valued
    ctx attributes too)."""
    d = ctx.__dict__
    tensor_attrs = [k for k, v in d.items() if isinstance(v, Tensor)] if attrs else None    # before the edges
    _link(d, args, needs)
    single = not isinstance(out, tuple)
    outs = (out,) if single else out
    dirty, non_diff = ctx._dirty, ctx._non_diff
    metas = []
    new_outs = []
    for i, o in enumerate(outs):
        if not isinstance(o, Tensor):
            metas.append(None)
            new_outs.append(o)
            continue
        oid = id(o)
        if oid in dirty:
            if o.grad_fn is None and o._requires_grad:
                raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation.")
            b = o._base
            if b is not None and b.grad_fn is None and b._requires_grad:
                raise RuntimeError("a view of a leaf Variable that requires grad is being used in an in-place "
                                   "operation.")
        else:
            for a in args:
                if a is o:
                    o = o._alias(view=True)          # an input returned as is: a new tensor gets the history
                    break
        if oid in non_diff or not o.dtype.is_floating_point:
            metas.append(None)
        else:
            metas.append((o._shape, o.dtype, o._storage.device))
            o._requires_grad = True
            o.grad_fn = ctx
            o._output_nr = i
        new_outs.append(o)
    d["_out_meta"] = tuple(metas)

    if ctx._to_save is not None:
        _pack(ctx, d, Tensor)
    if tensor_attrs:
        for k in tensor_attrs:
            v = d[k]
            if v.grad_fn is ctx:
                del d[k]
                if ctx._saved_attrs is None:
                    d["_saved_attrs"] = {}
                ctx._saved_attrs[k] = (v._alias(), v._storage.version, v._output_nr)
        d["_tensor_attrs"] = tuple(k for k in tensor_attrs if k in d)
    if dirty:
        for i, o in enumerate(new_outs):
            if isinstance(o, Tensor) and id(o) in dirty and o._base is not None and o.grad_fn is ctx:
                _rebase_view(ctx, o, args, Tensor)
    if single:
        return new_outs[0]
    return tuple(new_outs)


class _CopySlices(Node):
    """An in-place op on a view, recorded on the view's base (PyTorch's CopySlices): backward runs the op's backward
    on the view's part of the base's gradient and passes the rest of it through unchanged."""

    def __init__(self, inner, geom, arg):
        self.inner, self.geom, self.arg = inner, geom, arg

    def name(self):
        return "CopySlices"

    def apply(self, g):
        shape, stride, rel = self.geom
        if STATE.enabled:                          # create_graph: the same gradient, built from recording ops

            def reapply(t):
                t = t.contiguous()
                return _impl.as_strided(t, shape, stride, t._offset + rel)
            g = g.contiguous()
            gview = reapply(g)
            out = self.inner.apply(gview)
            out = list(out) if isinstance(out, (tuple, list)) else [out]
            out += [None] * (len(self.next_functions) - len(out))
            gi = out[self.arg]
            out[self.arg] = g + _impl.view_scatter((gi if gi is not None else gview * 0) - gview, g._shape, reapply)
            return tuple(out)
        res = g.detach().clone()
        view = res._view(shape, stride, res._offset + rel)
        out = self.inner.apply(view.clone())
        out = list(out) if isinstance(out, (tuple, list)) else [out]
        out += [None] * (len(self.next_functions) - len(out))
        gi = out[self.arg]
        prev = STATE.enabled
        STATE.enabled = False
        try:
            if gi is None:
                view.copy_(view * 0)
            else:
                view.copy_(gi)
        finally:
            STATE.enabled = prev
        out[self.arg] = res
        return tuple(out)

    def _release(self):
        self.inner._release()


class _ViewOfBase(Node):
    """The history of a view after an in-place op on it: the view's gradient lands in its part of the base's."""

    def __init__(self, geom):
        self.geom = geom

    def name(self):
        return "AsStridedBackward0"

    def apply(self, g):
        shape, dtype, dev = self._in_meta[0]
        vshape, vstride, rel = self.geom
        if STATE.enabled:                          # create_graph: differentiable in g

            def reapply(t):
                t = t.contiguous()
                return _impl.as_strided(t, vshape, vstride, t._offset + rel)
            return (_impl.view_scatter(g, shape, reapply),)
        res = _creation.zeros(shape, dtype=dtype, device=dev)
        prev = STATE.enabled
        STATE.enabled = False
        try:
            res._view(vshape, vstride, res._offset + rel).copy_(g)
        finally:
            STATE.enabled = prev
        return (res,)

    def _release(self):
        pass


def _rebase_view(ctx, o, args, Tensor):
    """``o``, a view, was modified in place by ``ctx``'s op: move the op onto the base's history (so the base's
    gradient sees it) and give ``o`` a history as a view of the new base."""
    b = o._base
    if b._stride != contiguous_strides(b._shape) and b.numel() > 1:
        raise RuntimeError("an in-place operation on a view of a non-contiguous tensor cannot be recorded by "
                           "autograd; clone() the base first")
    arg = next((i for i, a in enumerate(args) if a is o), None)
    if arg is None:
        return
    geom = (o._shape, o._stride, o._offset - b._offset)
    meta_b = (b._shape, b.dtype, b._storage.device)
    cs = _CopySlices(ctx, geom, arg)
    edges = list(ctx.next_functions)
    in_meta = list(ctx._in_meta)
    if b._requires_grad:
        edges[arg] = (b.grad_fn, b._output_nr) if b.grad_fn is not None else (_grad_accumulator(b), 0)
        in_meta[arg] = meta_b
    else:
        edges[arg] = None
        in_meta[arg] = None
    cs.next_functions = tuple(edges)
    cs._in_meta = tuple(in_meta)
    cs._out_meta = (meta_b,)
    cs._seq = next(_seq)
    b._requires_grad = True
    b.grad_fn = cs
    b._output_nr = 0
    v = _ViewOfBase(geom)
    v.next_functions = ((cs, 0),)
    v._in_meta = (meta_b,)
    v._out_meta = ((o._shape, o.dtype, o._storage.device),)
    v._seq = next(_seq)
    o.grad_fn = v
    o._output_nr = 0


class _DelayedError(Function):
    """Inserted by ``once_differentiable`` under create_graph: differentiating its result again is an error."""

    @staticmethod
    def forward(ctx, *grads):
        return tuple(g if g is None else g._alias() for g in grads)

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError("trying to differentiate twice a function that was marked with @once_differentiable")


def once_differentiable(fn):
    """Mark a backward as not itself differentiable: it runs without recording even under create_graph, and a
    later attempt to differentiate its result raises an error."""
    import functools

    @functools.wraps(fn)
    def wrapper(ctx, *grads):
        record = STATE.enabled and any(isinstance(g, Tensor) and g.requires_grad for g in grads)
        prev = STATE.enabled
        STATE.enabled = False
        try:
            out = fn(ctx, *grads)
        finally:
            STATE.enabled = prev
        if not record:
            return out
        single = not isinstance(out, tuple)
        outs = (out,) if single else out
        idx = [i for i, o in enumerate(outs) if isinstance(o, Tensor) and o.dtype.is_floating_point]
        if not idx:
            return out
        wrapped = _DelayedError.apply(*[outs[i] for i in idx], *[g for g in grads if isinstance(g, Tensor)
                                                                   and g.requires_grad][:1])
        outs = list(outs)
        for j, i in enumerate(idx):
            outs[i] = wrapped[j]
        return outs[0] if single else tuple(outs)
    return wrapper
