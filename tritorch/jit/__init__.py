"""``tritorch.jit``: graph capture (``trace``), capture-on-first-call (``script``), and PyTorch's jit decorators.

``trace`` records the outermost ops a forward calls (through the op modes, tritorch/_modes.py) into a ``Graph``
(tritorch/jit/ir.py, docs/graph-ir.md) and returns a ``TracedModule`` that replays it without the module's Python.
"""
import warnings

import numpy as np

from .._tensor import Tensor
from ..autograd.grad_mode import is_grad_enabled, no_grad
from ..nn.module import Module
from . import ir
from ._capture import CAPTURING, Capture, TracerWarning
from ._io import load, save
from ._replay import Program, TracedModule, op_table
from .ir import Graph, Node, Value, flatten

__all__ = ["trace", "script", "TracedModule", "ScriptModule", "TracerWarning", "TracingCheckError", "Graph", "Node",
           "Value", "ignore", "unused", "export", "is_scripting", "is_tracing", "Final", "annotate", "op_table",
           "Program", "ir", "save", "load"]


class TracingCheckError(Exception):
    """``check_trace`` found that the forward records a different graph when run again on the same inputs."""


def _capture(fn, root, args, kwargs, on_value_read="warn", kind="trace"):
    cap = Capture(root, on_value_read, kind)
    cap.add_inputs((args, kwargs) if kwargs else args)
    with cap:
        result = fn(*args, **kwargs)
    cap.set_outputs(result)
    return cap.graph, result


def _strict_outputs(result):
    if isinstance(result, (list, dict)):
        kind = "list" if isinstance(result, list) else "dict"
        raise RuntimeError(f"Encountering a {kind} at the output of the tracer might cause the trace to be "
                           "incorrect, this is only valid if the container structure does not change based on the "
                           "module's inputs. Consider using a constant container instead (e.g. for `list`, use a "
                           "`tuple` instead. for `dict`, use a `NamedTuple` instead). If you absolutely need this "
                           "and know the side effects, pass strict=False to trace() to allow this behavior.")


def _signature(graph):
    return [(n.op, n.scope) for n in graph.nodes]


def trace(func, example_inputs=None, optimize=None, check_trace=True, check_inputs=None, check_tolerance=1e-5,
          strict=True, _force_outplace=False, _module_class=None, _compilation_unit=None,
          example_kwarg_inputs=None, _store_inputs=True):
    """Capture ``func`` (a Module or a function) run on ``example_inputs`` (a tensor or a tuple of arguments) into
    a replayable ``TracedModule``."""
    if example_inputs is None and example_kwarg_inputs is None:
        raise RuntimeError("example_kwarg_inputs or example_inputs must be provided")
    args = (example_inputs,) if isinstance(example_inputs, Tensor) else tuple(example_inputs or ())
    kwargs = dict(example_kwarg_inputs or {})
    root = func if isinstance(func, Module) else None
    graph, result = _capture(func, root, args, kwargs)
    if strict:
        _strict_outputs(result)
    name = type(func).__name__ if root is not None else getattr(func, "__name__", "traced_fn")
    traced = TracedModule(graph, name)
    traced.training = root.training if root is not None else False
    if check_trace:
        _check(func, root, traced, graph, args, kwargs, check_tolerance)
    return traced


def _clone(x):
    if isinstance(x, Tensor):
        return x.detach().clone().requires_grad_(x.requires_grad)
    if isinstance(x, tuple):
        return tuple(_clone(a) for a in x)
    if isinstance(x, list):
        return [_clone(a) for a in x]
    if isinstance(x, dict):
        return {k: _clone(v) for k, v in x.items()}
    return x


def _check(func, root, traced, graph, args, kwargs, tol):
    """Rerun the capture on the same inputs: a different graph raises TracingCheckError; different outputs of the
    replay and the eager forward warn (TracerWarning), as PyTorch's check_trace does."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TracerWarning)
        again, _ = _capture(func, root, _clone(args), _clone(kwargs))
    if _signature(again) != _signature(graph):
        diff = next((i for i, (a, b) in enumerate(zip(_signature(graph), _signature(again))) if a != b),
                    min(len(graph.nodes), len(again.nodes)))
        raise TracingCheckError(f"Graphs differed across invocations! The first difference is at node {diff}: "
                                f"{graph.nodes[diff] if diff < len(graph.nodes) else 'end of graph'} vs "
                                f"{again.nodes[diff] if diff < len(again.nodes) else 'end of graph'}")
    with no_grad():
        eager = func(*_clone(args), **_clone(kwargs))
        replay = traced(*_clone(args), **_clone(kwargs))
    e = flatten(eager, lambda x: isinstance(x, Tensor))[0]
    r = flatten(replay, lambda x: isinstance(x, Tensor))[0]
    for i, (a, b) in enumerate(zip(e, r)):
        x, y = a.detach().cpu().numpy(), b.detach().cpu().numpy()
        if x.shape != y.shape or not _close(x, y, tol):
            warnings.warn(f"Output nr {i + 1}. of the traced function does not match the corresponding output of "
                          "the Python function.", TracerWarning, stacklevel=3)


def _close(x, y, tol):
    return np.allclose(x.astype(np.float64), y.astype(np.float64), rtol=tol, atol=tol, equal_nan=True)


class ScriptModule(Module):
    """``tritorch.jit.script(module)``: captures the forward's graph on the first call with a new input signature
    (shapes, dtypes, devices, grad mode, training mode) and replays it for later calls with that signature. It
    shares the module's parameters, buffers and children, so state_dict, .to() and training act on both."""

    def __init__(self, module):
        super().__init__()
        for k in ("_parameters", "_buffers", "_modules", "_non_persistent_buffers_set"):
            object.__setattr__(self, k, getattr(module, k))
        object.__setattr__(self, "_original", module)
        object.__setattr__(self, "_cache", {})
        self.training = module.training

    def train(self, mode=True):
        self._original.train(mode)
        return super().train(mode)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.__dict__["_original"], name)

    def _get_name(self):
        return "RecursiveScriptModule"

    def forward(self, *args, **kwargs):
        leaves, struct = flatten((args, kwargs), lambda x: isinstance(x, Tensor))
        key = (repr(struct), tuple((tuple(t.shape), t.dtype, str(t.device), t.requires_grad) for t in leaves),
               is_grad_enabled(), self._original.training)
        prog = self._cache.get(key)
        if prog is not None:
            return prog(*args, **kwargs)
        graph, result = _capture(self._original, self._original, args, kwargs, "raise", "script")
        traced = TracedModule(graph, type(self._original).__name__)
        traced.training = self._original.training
        object.__setattr__(traced, "_scripted_keep", self)
        self._cache[key] = traced
        return result

    @property
    def graph(self):
        """The graph of the most recent capture."""
        if not self._cache:
            raise RuntimeError("the scripted module has not run yet: its graph is captured on the first call")
        return next(reversed(self._cache.values())).graph

    def save(self, f):
        save(self, f)

    @property
    def code(self):
        if not self._cache:
            raise RuntimeError("the scripted module has not run yet: its graph is captured on the first call")
        return next(reversed(self._cache.values())).code


def script(obj, optimize=None, _frames_up=0, _rcb=None, example_inputs=None):
    """PyTorch's ``torch.jit.script``: a Module becomes a ScriptModule (capture on first call, then replay); a
    function or a class is returned as it is (there is no TorchScript compiler)."""
    if isinstance(obj, ScriptModule):
        return obj
    if isinstance(obj, Module):
        return ScriptModule(obj)
    return obj


def ignore(drop=False, **kwargs):
    """Decorator: leave a function to Python (``@jit.ignore`` or ``@jit.ignore(drop=True)``)."""
    if callable(drop):
        return drop
    return lambda fn: fn


def unused(fn):
    return fn


def export(fn):
    return fn


def is_scripting():
    """Whether a ``script`` capture is running."""
    return any(c.kind == "script" for c in CAPTURING)


def is_tracing():
    """Whether a ``trace`` capture is running."""
    return any(c.kind == "trace" for c in CAPTURING)


def annotate(the_type, the_value):
    return the_value


class _FinalType:
    def __getitem__(self, item):
        return item


Final = _FinalType()
