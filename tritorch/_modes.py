"""Op modes: the one place every public op passes through, for the machinery that acts on whole ops.

Every op published with ``register`` (``tritorch.NAME``, ``Tensor.NAME``) and every Tensor operator (``__add__``,
``__getitem__``, ``.T`` ...) is wrapped once, at import, by ``dispatching``: while no mode is active the wrapper
costs one Python call and calls the op; while modes are active it hands the call to the innermost one. A mode (the
graph capture of ``tritorch.jit``, ``tritorch.autocast``) subclasses ``OpMode`` and overrides ``__op__``; entering
it (``with mode:``) pushes it, leaving pops it. As PyTorch's ``TorchFunctionMode``.

``__op__(name, op, args, kwargs)`` receives the op's published name and ``op``, a callable that runs the op through
the modes below this one (and, under none, the op itself). Ops call other public ops: those calls reach the modes
too, nested inside the outer call; a mode that wants only the outermost ops tracks its own depth. The stack is
process-wide (not per thread), which is what a training loop's autocast region and a capture need.
"""
MODES = []
"""The active modes, outermost first."""
_ROUTED = {}


def dispatching(name, fn):
    """``fn`` published under ``name``, routed through the active modes (named and documented as ``fn``). An op
    published under several names (``neg``, ``negative``) gets one wrapper, the first name's."""
    if hasattr(fn, "__op_name__"):
        return fn
    if fn in _ROUTED:
        return _ROUTED[fn]

    def op(*args, **kwargs):
        if MODES:
            return _call(name, fn, args, kwargs, len(MODES))
        return fn(*args, **kwargs)

    op.__name__ = getattr(fn, "__name__", name)
    op.__qualname__ = getattr(fn, "__qualname__", name)
    op.__module__ = getattr(fn, "__module__", __name__)
    op.__doc__ = getattr(fn, "__doc__", None)
    op.__wrapped__ = fn
    op.__op_name__ = name
    _ROUTED[fn] = op
    return op


def _call(name, fn, args, kwargs, depth):
    if depth == 0 or depth > len(MODES):
        return fn(*args, **kwargs)
    mode = MODES[depth - 1]
    return mode.__op__(name, lambda *a, **k: _call(name, fn, a, k, depth - 1), args, kwargs)


class OpMode:
    """A context manager that sees every public op called while it is active (override ``__op__``)."""

    def __op__(self, name, op, args, kwargs):
        return op(*args, **kwargs)

    def __enter__(self):
        MODES.append(self)
        return self

    def __exit__(self, *exc):
        for i in range(len(MODES) - 1, -1, -1):
            if MODES[i] is self:
                del MODES[i]
                break
        return False
