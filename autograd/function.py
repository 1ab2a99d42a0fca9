"""Graph nodes and ``Function``: the one mechanism by which every op, built-in or custom, records its backward.

An op is a ``Function`` subclass with ``forward(ctx, *args)`` and ``backward(ctx, *grad_outputs)``; ``apply`` runs
the forward without recording, then (when grad mode is on and an input requires grad) makes ``ctx`` the
``grad_fn`` of the outputs. ``ctx`` is an instance of ``<Name>Backward``, a ``Node`` subclass made per Function.

Example, a custom op::

    class Cube(tritorch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x * x

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * 3 * x * x

    y = Cube.apply(x)
"""
import itertools

from .grad_mode import STATE

__all__ = ["Function", "Node", "AccumulateGrad", "once_differentiable"]

_seq = itertools.count()

_FREED = ("Trying to backward through the graph a second time (or directly access saved tensors after they have "
          "already been freed). Saved intermediate values of the graph are freed when you call .backward() or "
          "autograd.grad(). Specify retain_graph=True if you need to backward through the graph a second time or "
          "if you need to access saved tensors after calling backward.")


_GRAPH_ATTRS = ("next_functions", "needs_input_grad")


class Node:
    """A node of the backward graph, and the ``ctx`` its forward saved into."""

    _fn = None
    next_functions = ()
    needs_input_grad = ()
    _saved = None
    _freed = False
    _non_diff = ()
    _dirty = ()
    _materialize = True
    _pre_hooks = None
    _hooks = None

    def name(self):
        return self.__dict__.get("_name") or type(self).__name__

    def __repr__(self):
        return f"<{self.name()} object at {id(self):#x}>"

    # ---- what forward saves ---------------------------------------------------------------------------------------
    def save_for_backward(self, *tensors):
        self._saved = tuple(tensors)
        self._saved_versions = tuple(None if t is None else t._storage.version for t in tensors)

    @property
    def saved_tensors(self):
        if self._freed:
            raise RuntimeError(_FREED)
        saved = self._saved or ()
        for i, (t, v) in enumerate(zip(saved, self._saved_versions if saved else ())):
            if t is not None and t._storage.version != v:
                out = f"output {t._output_nr} of {t.grad_fn.name()}" if t.grad_fn is not None else "a leaf"
                raise RuntimeError(
                    "one of the variables needed for gradient computation has been modified by an inplace "
                    f"operation: [tritorch.{t.dtype.name} {list(t.shape)}], which is {out}, is at version "
                    f"{t._storage.version}; expected version {v} instead (saved by {self.name()}, tensor {i}).")
        return saved

    def mark_non_differentiable(self, *tensors):
        self._non_diff = self._non_diff + tuple(id(t) for t in tensors)

    def mark_dirty(self, *tensors):
        self._dirty = self._dirty + tuple(id(t) for t in tensors)

    def set_materialize_grads(self, value):
        self._materialize = bool(value)

    def _release(self):
        self._saved = None
        self._freed = True
        for k in [k for k in self.__dict__ if not k.startswith("_") and k not in _GRAPH_ATTRS]:
            del self.__dict__[k]          # attributes a forward stored on ctx are freed with the saved tensors

    # ---- hooks on the node ----------------------------------------------------------------------------------------
    def register_hook(self, fn):
        if self._hooks is None:
            self._hooks = []
        self._hooks.append(fn)
        return _Handle(self._hooks, fn)

    def register_prehook(self, fn):
        return _add_prehook(self, None, fn)

    # ---- backward -------------------------------------------------------------------------------------------------
    def apply(self, *grads):
        return self._fn.backward(self, *grads)


class _Handle:
    def __init__(self, lst, item):
        self._lst, self._item = lst, item

    def remove(self):
        if self._item in self._lst:
            self._lst.remove(self._item)


def _add_prehook(node, output_nr, fn):
    if node._pre_hooks is None:
        node._pre_hooks = {}
    lst = node._pre_hooks.setdefault(output_nr, [])
    lst.append(fn)
    return _Handle(lst, fn)


class AccumulateGrad(Node):
    """The sink of a leaf that requires grad: adds the incoming gradient into ``leaf.grad``."""

    def __init__(self, variable):
        self.variable = variable
        self._shapes = (variable._shape,)

    def _release(self):
        pass


def _grad_accumulator(t):
    acc = t.__dict__.get("_grad_acc")
    if acc is None:
        acc = t.__dict__["_grad_acc"] = AccumulateGrad(t)
    return acc


def _edge(a):
    if a is None or not getattr(a, "requires_grad", False):
        return None
    if a.grad_fn is not None:
        return (a.grad_fn, a._output_nr)
    return (_grad_accumulator(a), 0)


class Function:
    """Base class of ops: subclass with static ``forward(ctx, ...)`` and ``backward(ctx, *grads)``."""

    _node_cls = None

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        cls._node_cls = type(cls.__name__ + "Backward", (Node,), {"_fn": cls, "__slots__": ()})

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError(f"no backward is defined for this Function")

    @classmethod
    def apply(cls, *args, **kwargs):
        from tritorch._tensor import Tensor
        ctx = cls._node_cls()
        record = False
        if STATE.enabled:
            for a in args:
                if isinstance(a, Tensor) and a.requires_grad:
                    record = True
                    break
        if not record:
            STATE.enabled, prev = False, STATE.enabled
            try:
                return cls.forward(ctx, *args, **kwargs)
            finally:
                STATE.enabled = prev
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        STATE.enabled = False
        try:
            out = cls.forward(ctx, *args, **kwargs)
        finally:
            STATE.enabled = True
        ctx.next_functions = tuple(_edge(a) if isinstance(a, Tensor) else None for a in args)
        ctx._in_shapes = tuple(a._shape if isinstance(a, Tensor) else None for a in args)
        ctx._seq = next(_seq)
        outs = out if isinstance(out, tuple) else (out,)
        metas = []
        for i, o in enumerate(outs):
            if not isinstance(o, Tensor):
                metas.append(None)
                continue
            metas.append((o._shape, o.dtype, o._storage.device))
            if id(o) in ctx._non_diff or not o.dtype.is_floating_point:
                continue
            if id(o) in ctx._dirty and o.is_leaf and o.requires_grad:
                raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation.")
            o.requires_grad = True
            o.grad_fn = ctx
            o._output_nr = i
        ctx._out_meta = tuple(metas)
        return out


def once_differentiable(fn):
    """Mark a backward as not itself differentiable: it runs without recording even under create_graph."""
    def wrapper(ctx, *grads):
        from .grad_mode import no_grad
        with no_grad():
            return fn(ctx, *grads)
    return wrapper
