"""The backward pass: an iterative walk of the graph in dependency order (no recursion, so a chain of any length
works), summing the gradients that meet at a node, freeing saved tensors as each node finishes.

One pass: (1) count, for every node reachable from the roots, how many edges lead into it; (2) run the ready
nodes (all their consumers done), highest sequence number first, as PyTorch does; each node's gradients go into
its successors' input buffers. The engine keeps no reference to the graph once the pass returns.
"""
import heapq
import itertools
import weakref

import numpy as np

from .function import ANOMALY, AccumulateGrad, RemovableHandle, _add_prehook, _grad_accumulator
from .grad_mode import STATE
from tritorch import _creation, _impl
from tritorch._tensor import Tensor, register

__all__ = ["backward", "grad", "register_tensor_hook", "detect_anomaly", "set_detect_anomaly",
           "is_anomaly_enabled"]


def is_anomaly_enabled():
    return ANOMALY[0]


class detect_anomaly:
    """Context manager (and decorator): every gradient a backward node produces is checked; a NaN or Inf raises an
    error naming the node, followed by the stack of the forward call that created it."""

    def __init__(self, check_nan=True):
        self.check_nan = check_nan

    def __enter__(self):
        self._prev = ANOMALY[0]
        ANOMALY[0] = self.check_nan

    def __exit__(self, *exc):
        ANOMALY[0] = self._prev
        return False

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with detect_anomaly(self.check_nan):
                return fn(*args, **kwargs)
        return wrapper


class set_detect_anomaly(detect_anomaly):
    """``set_detect_anomaly(mode)``: takes effect at once; as a context manager it restores the previous mode."""

    def __init__(self, mode, check_nan=True):
        self._prev = ANOMALY[0]
        ANOMALY[0] = bool(mode) and check_nan

    def __enter__(self):
        pass


# ---- hooks ----------------------------------------------------------------------------------------------------------

def register_tensor_hook(t, hook):
    if not t._requires_grad:
        raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
    if t.grad_fn is None:
        if t._hooks is None:
            t._hooks = []
        t._hooks.append(hook)
        return RemovableHandle(t._hooks, hook)
    return _add_prehook(t.grad_fn, t._output_nr, hook)


def register_post_accumulate_hook(t, hook):
    if not t._requires_grad:
        raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
    if t.grad_fn is not None:
        raise RuntimeError("post accumulate grad hooks cannot be registered on non-leaf tensors")
    lst = t.__dict__.setdefault("_post_acc_hooks", [])
    lst.append(hook)
    return RemovableHandle(lst, hook)


def retain_grad(t):
    """Keep the gradient of a non-leaf in ``t.grad`` (a weak reference on its node: the node does not keep ``t``
    alive); it sees the gradient after the tensor's other hooks, as in PyTorch."""
    node = t.grad_fn
    if node._retains is None:
        node._retains = {}
        node._plain = False
    node._retains[t._output_nr] = weakref.ref(t)



# ---- the Tensor methods of autograd ---------------------------------------------------------------------------------
@register("retain_grad", function=False)
def _tensor_retain_grad(self):
    if self.grad_fn is None:
        if not self._requires_grad:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        return
    if not self._retains_grad:
        retain_grad(self)
    self._retains_grad = True


@register("register_hook", function=False)
def _tensor_register_hook(self, hook):
    """``hook(grad)`` runs when this tensor's gradient is computed; a non-None result replaces the gradient."""
    return register_tensor_hook(self, hook)


@register("register_post_accumulate_grad_hook", function=False)
def _tensor_register_post_accumulate_grad_hook(self, hook):
    """``hook(tensor)`` runs after a backward pass accumulated into this leaf's ``.grad``."""
    return register_post_accumulate_hook(self, hook)


def _store_retained(t, g):
    if t._grad is None:
        t._grad = g.clone() if STATE.enabled else g.detach().clone()
    else:
        t._grad = t._grad + g


# ---- entry points ---------------------------------------------------------------------------------------------------

def _tensors_arg(x, what):
    if isinstance(x, Tensor):
        return [x]
    if isinstance(x, (list, tuple)):
        return list(x)
    raise TypeError(f"{what} must be a Tensor or a sequence of Tensors, not {type(x).__name__}")


def _make_root_grads(tensors, grads):
    if grads is None:
        grads = [None] * len(tensors)
    if len(grads) != len(tensors):
        raise RuntimeError(f"grad_tensors should have the same length as tensors ({len(grads)} vs {len(tensors)})")
    out = []
    for i, (t, g) in enumerate(zip(tensors, grads)):
        if not isinstance(t, Tensor):
            raise TypeError(f"element {i} of tensors is a {type(t).__name__}, not a Tensor")
        if not t._requires_grad:
            raise RuntimeError(f"element {i} of tensors does not require grad and does not have a grad_fn")
        if g is None:
            if t.numel() != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            g = _creation.ones_like(t)
        else:
            if not isinstance(g, Tensor):
                g = _creation.tensor(g, dtype=t.dtype, device=t.device)
            if g._shape != t._shape:
                raise RuntimeError(f"Mismatch in shape: grad_output[{i}] has a shape of {_size(g._shape)} and "
                                   f"output[{i}] has a shape of {_size(t._shape)}.")
            if not g.dtype.is_floating_point:
                raise TypeError(f"grad_output[{i}] has dtype {g.dtype}, but a gradient must have a floating point "
                                f"dtype (output[{i}] has dtype {t.dtype})")
            if g._storage.device != t._storage.device:
                raise RuntimeError(f"grad_output[{i}] is on {g.device} but output[{i}] is on {t.device}")
            if g.dtype is not t.dtype:
                g = g.to(t.dtype)
        out.append(g)
    return out


def _size(shape):
    return f"tritorch.Size({list(shape)})"


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """``Tensor.backward`` / ``tritorch.autograd.backward``: accumulate d(tensors)/d(leaves) into ``.grad``.

    With ``inputs``, only those tensors (leaves or not) get their ``.grad`` updated and only the part of the graph
    leading to them runs."""
    tensors = _tensors_arg(tensors, "tensors")
    if grad_tensors is not None:
        grad_tensors = _tensors_arg(grad_tensors, "grad_tensors")
    grads = _make_root_grads(tensors, grad_tensors)
    if retain_graph is None:
        retain_graph = create_graph
    if inputs is not None:
        inputs = _tensors_arg(inputs, "inputs")
        if not inputs:
            raise RuntimeError("'inputs' argument to backward() cannot be empty.")
        for t in inputs:
            if not t._requires_grad:
                raise RuntimeError("One of the differentiated Tensors does not require grad")
    captured = _run(tensors, grads, retain_graph, create_graph, inputs, True)
    if captured:
        for t, g in captured:
            _accumulate(t, g, create_graph, None)


@register("backward", function=False)
def _tensor_backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
    backward([self], None if gradient is None else [gradient], retain_graph, create_graph, inputs)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, only_inputs=True,
         allow_unused=None, is_grads_batched=False, materialize_grads=False):
    """``tritorch.autograd.grad``: the gradients of ``outputs`` w.r.t. ``inputs``, as a tuple; ``.grad`` fields are
    left untouched."""
    if is_grads_batched:
        raise NotImplementedError("is_grads_batched=True is not supported by tritorch")
    if materialize_grads and allow_unused is False:
        raise ValueError("Expected allow_unused to be True or not passed when materialize_grads=True, but got: "
                         "allow_unused=False.")
    if allow_unused is None:
        allow_unused = materialize_grads
    outputs = _tensors_arg(outputs, "outputs")
    inputs = _tensors_arg(inputs, "inputs")
    if grad_outputs is not None:
        grad_outputs = list(grad_outputs) if isinstance(grad_outputs, (list, tuple)) else [grad_outputs]
    if not inputs:
        raise RuntimeError("grad requires non-empty inputs.")
    for t in inputs:
        if not t._requires_grad:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
    grads = _make_root_grads(outputs, grad_outputs)
    if retain_graph is None:
        retain_graph = create_graph
    captured = _run(outputs, grads, retain_graph, create_graph, inputs, False)
    res = []
    for t, g in zip(inputs, captured):
        if g is None:
            if materialize_grads:
                g = _creation.zeros_like(t)
            elif not allow_unused:
                raise RuntimeError("One of the differentiated Tensors appears to not have been used in the graph. "
                                   "Set allow_unused=True if this is the desired behavior.")
        res.append(g)
    return tuple(res)


# ---- AccumulateGrad -------------------------------------------------------------------------------------------------

def _accumulate(t, g, create_graph, fresh):
    """Add ``g`` into ``t.grad`` with PyTorch's AccumulateGrad rules: the first gradient is stored as is only when
    nothing else can see it (``fresh``: made by this pass, contiguous, not a view, not stored elsewhere), otherwise
    as a clone; later ones are added in place (out of place under create_graph, so the sum stays differentiable)."""
    if g.dtype is not t.dtype:
        g = g.to(t.dtype)
    old = t._grad
    if old is None:
        if create_graph:
            t._grad = g.clone() if g._requires_grad else g.detach().clone()
        elif fresh is not None and id(g) in fresh and g._base is None and g.is_contiguous() \
                and g._storage.data is not t._storage.data and not g._requires_grad:
            fresh.discard(id(g))
            t._grad = g
        else:
            t._grad = g.detach().clone()
    elif create_graph or old._requires_grad:
        t._grad = old + g
    else:
        _add_inplace(old, g.detach() if g._requires_grad else g)


def _add_inplace(dst, g):
    add_ = getattr(dst, "add_", None)
    prev = STATE.enabled
    STATE.enabled = False
    try:
        if add_ is not None:
            add_(g)
        else:
            dst.copy_(dst + g)
    finally:
        STATE.enabled = prev


# ---- the pass -------------------------------------------------------------------------------------------------------

def _run(roots, root_grads, keep_graph, create_graph, inputs, accumulate):
    """Run the graph below ``roots``. ``accumulate``: leaves' AccumulateGrad nodes update ``.grad`` (all of them,
    or those of ``inputs``); otherwise the gradients reaching ``inputs`` are returned, one per input."""

    # the seeds: a root's node receives its gradient at the root's output slot
    buffers = {}
    root_nodes = []
    user_grads = set()
    for t, g in zip(roots, root_grads):
        node, nr = (t.grad_fn, t._output_nr) if t.grad_fn is not None else (_grad_accumulator(t), 0)
        _add_to_buffer(buffers, node, nr, g)
        user_grads.add(id(g))
        root_nodes.append(node)

    # (1) dependencies: how many edges reach each node from the part of the graph below the roots
    deps = {}
    stack = []
    for n in root_nodes:
        if n not in deps:
            deps[n] = 0
            stack.append(n)
    pop, push = stack.pop, stack.append
    while stack:
        for e in pop().next_functions:
            if e is not None:
                n = e[0]
                d = deps.get(n)
                if d is None:
                    deps[n] = 1
                    push(n)
                else:
                    deps[n] = d + 1

    capture = None        # (node, output_nr) -> indices of the inputs whose gradient arrives there
    run_only = None       # with inputs: the nodes that lead to one of them (the others are skipped)
    captured = None
    if inputs is not None:
        capture = {}
        leaf_accs = set()
        for i, t in enumerate(inputs):
            if t.grad_fn is None:
                key = (_grad_accumulator(t), 0)
                leaf_accs.add(key[0])
            else:
                key = (t.grad_fn, t._output_nr)
            capture.setdefault(key, []).append(i)
        if accumulate:
            # leaves are updated by their accumulators; non-leaf inputs are captured and updated at the end
            capture = {k: v for k, v in capture.items() if not isinstance(k[0], AccumulateGrad)}
        run_only = _leading_to(deps, {k[0] for k in capture} | leaf_accs)
        captured = [None] * len(inputs)

    fresh = set() if accumulate and not create_graph else None
    anomaly = ANOMALY[0]
    prev = STATE.enabled
    STATE.enabled = create_graph
    heappush, heappop = heapq.heappush, heapq.heappop
    simple = not anomaly and capture is None and run_only is None
    try:
        ready = []
        for n in dict.fromkeys(root_nodes):
            if deps[n] == 0:
                heappush(ready, (-n._seq, id(n), n))
        while ready:
            node = heappop(ready)[2]
            grads = buffers.pop(node, None)
            added = None
            if node._plain and simple and grads is not None:
                out = node._fn.backward(node, grads[0])
                if not keep_graph:                  # a plain node saved tensors only
                    nd = node.__dict__
                    nd["_saved"] = None
                    nd["_freed"] = True
            elif type(node) is AccumulateGrad:
                if grads is not None and grads[0] is not None:
                    g = grads[0]
                    t = node.variable
                    if t._hooks:
                        for h in tuple(t._hooks):
                            r = h(g)
                            if r is not None:
                                g = r
                                if fresh is not None:
                                    fresh.discard(id(r))
                    if capture is not None:
                        for i in capture.get((node, 0), ()):
                            captured[i] = g
                    if accumulate and (run_only is None or node in run_only):
                        _run_accumulate(node, g, create_graph, fresh, user_grads)
                continue
            else:
                if grads is not None:
                    if node._pre_hooks is not None or node._retains is not None:
                        _tensor_hooks(node, grads)
                    if capture is not None:
                        for nr, g in enumerate(grads):
                            idx = capture.get((node, nr))
                            if idx is not None:
                                for i in idx:
                                    captured[i] = g
                if grads is None or run_only is not None and node not in run_only:
                    out = None
                else:
                    if node._fn is not None and node._fn._accumulates and not create_graph and not anomaly and \
                            not node._hooks:         # a hook on the node sees its own gradients only
                        added = _offer_pending(node, buffers)
                    out = _call(node, grads, anomaly, Tensor)
                    if added:
                        added = _taken(node, added)
                    if not keep_graph:
                        node._release()
            for i, (e, g) in enumerate(zip(node.next_functions, out or _NO_GRADS)):
                if e is None:
                    continue
                nxt = e[0]
                if g is not None:
                    slot = buffers.get(nxt)
                    if slot is None:
                        slot = buffers[nxt] = [None] * len(nxt._out_meta)
                    nr = e[1]
                    old = slot[nr]
                    if old is not None and not (added and i in added):
                        g = old + g
                    slot[nr] = g
                    if fresh is not None:
                        fresh.add(id(g))
                d = deps[nxt] - 1
                deps[nxt] = d
                if d == 0:
                    heappush(ready, (-nxt._seq, id(nxt), nxt))
    finally:
        STATE.enabled = prev
    if inputs is None:
        return None
    if accumulate:
        return [(inputs[i], g) for i, g in enumerate(captured) if g is not None and inputs[i].grad_fn is not None]
    return captured


_NO_GRADS = itertools.repeat(None)       # the gradients of a node that did not run


def _offer_pending(node, buffers):
    """Hands ``node`` (whose Function ``_accumulates``) the gradients already waiting for those of its arguments:
    ``node._pending`` = {argument index: gradient}; returns it (None when there is none)."""
    pending = None
    nf = node.next_functions
    for i in node._fn._accumulates:
        if i >= len(nf):                     # ascending: the node has no more arguments
            break
        e = nf[i]
        slot = buffers.get(e[0]) if e is not None else None
        if slot is not None and slot[e[1]] is not None:
            pending = pending or {}
            pending[i] = slot[e[1]]
    if pending:
        node.__dict__["_pending"] = dict(pending)
    return pending


def _taken(node, offered):
    """The argument indices whose pending gradient ``node``'s backward added into its result."""
    left = node.__dict__.pop("_pending", None) or {}
    return {i for i in offered if i not in left}


def _add_to_buffer(buffers, node, nr, g):
    slot = buffers.get(node)
    if slot is None:
        slot = buffers[node] = [None] * max(len(node._out_meta), nr + 1)
    slot[nr] = g if slot[nr] is None else slot[nr] + g


def _leading_to(deps, targets):
    """The nodes from which one of ``targets`` can be reached by a non-empty path (Kahn's order, reversed)."""
    indeg = dict.fromkeys(deps, 0)
    for n in deps:
        for e in n.next_functions:
            if e is not None:
                indeg[e[0]] += 1
    queue = [n for n, d in indeg.items() if d == 0]
    topo = []
    while queue:
        n = queue.pop()
        topo.append(n)
        for e in n.next_functions:
            if e is not None:
                indeg[e[0]] -= 1
                if indeg[e[0]] == 0:
                    queue.append(e[0])
    lead = set()
    for n in reversed(topo):
        for e in n.next_functions:
            if e is not None and (e[0] in targets or e[0] in lead):
                lead.add(n)
                break
    return lead | {n for n in targets if isinstance(n, AccumulateGrad)}


def _tensor_hooks(node, grads):
    """Hooks registered on the node's outputs (``tensor.register_hook``), then ``retain_grad``."""
    hooks = node._pre_hooks
    if hooks:
        for nr, lst in hooks.items():
            if nr < len(grads) and grads[nr] is not None:
                for h in tuple(lst):
                    r = h(grads[nr])
                    if r is not None:
                        grads[nr] = r
    if node._retains:
        for nr, ref in node._retains.items():
            t = ref()
            if t is not None and nr < len(grads) and grads[nr] is not None:
                _store_retained(t, grads[nr])


def _run_accumulate(node, g, create_graph, fresh, user_grads):
    t = node.variable
    if fresh is not None and id(g) in user_grads:
        fresh.discard(id(g))
    if node._node_pre_hooks:
        for h in tuple(node._node_pre_hooks):
            r = h((g,))
            if r is not None:
                g = r[0]
    _accumulate(t, g, create_graph, fresh)
    post = t.__dict__.get("_post_acc_hooks")
    if post:
        for h in tuple(post):
            h(t)


def _call(node, grads, anomaly, Tensor):
    """Run one node's backward on its output gradients; check and return one gradient per forward argument."""
    metas = node._out_meta
    if node._node_pre_hooks:
        for h in tuple(node._node_pre_hooks):
            r = h(tuple(grads))
            if r is not None:
                grads = list(r)
    if node._materialize:
        for i, g in enumerate(grads):
            if g is None and metas[i] is not None:
                shape, dtype, dev = metas[i]
                grads[i] = _creation.zeros(shape, dtype=dtype, device=dev)
    out = node.apply(*grads)
    if type(out) is not tuple:
        out = (out,) if not isinstance(out, list) else tuple(out)
    nf = node.next_functions
    n_in = len(nf)
    k = len(out)
    if k != n_in:
        # fewer are accepted when the missing ones are for arguments that take no gradient (non-tensors)
        if k < n_in and nf[k:].count(None) != n_in - k or k > n_in and out[n_in:].count(None) != k - n_in:
            raise RuntimeError(f"function {node.name()} returned an incorrect number of gradients (expected "
                               f"{n_in}, got {k})")
        out = out[:n_in] + (None,) * (n_in - k)
    metas_in = node._in_meta
    res = None
    for i, g in enumerate(out):
        if g is None or nf[i] is None:
            continue
        if type(g) is not Tensor and not isinstance(g, Tensor):
            raise TypeError(f"function {node.name()} returned a gradient of type {type(g).__name__} at index {i}, "
                            "expected a Tensor or None")
        shape, dtype, dev = metas_in[i]
        fixed = g
        if g._shape != shape:
            if not _expandable(shape, g._shape):
                raise RuntimeError(f"Function {node.name()} returned an invalid gradient at index {i} - got "
                                   f"{list(g._shape)} but expected shape compatible with {list(shape)}")
            fixed = _impl.sum_to(g, shape)
        if g._storage.device is not dev and g._storage.device != dev:
            raise RuntimeError(f"Function {node.name()} returned an invalid gradient at index {i} - expected "
                               f"device {dev} but got {g.device}")
        if g.dtype is not dtype:
            fixed = fixed.to(dtype)
        if fixed is not g:
            if res is None:
                res = list(out)
            res[i] = fixed
        if anomaly and g.dtype.is_floating_point and not np.isfinite(
                np.asarray(g.detach()._to_host_array(), dtype=np.float64)).all():
            msg = f"Function '{node.name()}' returned nan values in its {i}th output."
            if node._stack:
                msg += "\nThe forward call that created it:\n" + node._stack
            raise RuntimeError(msg)
    if res is not None:
        out = tuple(res)
    if node._hooks:
        for h in tuple(node._hooks):
            r = h(out, tuple(grads))
            if r is not None:
                out = tuple(r)
    return out


def _expandable(shape, grad_shape):
    """Can ``shape`` be broadcast to ``grad_shape`` (so the gradient can be summed back down)?"""
    if len(shape) > len(grad_shape):
        return False
    for s, g in zip(reversed(shape), reversed(grad_shape)):
        if s != g and s != 1:
            return False
    return True

