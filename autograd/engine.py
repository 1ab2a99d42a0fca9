"""The backward pass: an iterative walk of the graph in dependency order (no recursion, so a chain of any length
works), summing the gradients that meet at a node, freeing saved tensors as each node finishes."""
import heapq
import weakref

import numpy as np

from .function import AccumulateGrad, _add_prehook, _grad_accumulator, _Handle
from .grad_mode import STATE

__all__ = ["backward", "grad", "register_tensor_hook", "detect_anomaly", "set_detect_anomaly"]

_ANOMALY = [False]


class detect_anomaly:
    """Check every gradient a backward node produces: a NaN or Inf raises an error naming the node."""

    def __init__(self, check_nan=True):
        self.check_nan = check_nan

    def __enter__(self):
        self._prev = _ANOMALY[0]
        _ANOMALY[0] = self.check_nan

    def __exit__(self, *exc):
        _ANOMALY[0] = self._prev
        return False


class set_detect_anomaly(detect_anomaly):
    def __init__(self, mode, check_nan=True):
        self._prev = _ANOMALY[0]
        _ANOMALY[0] = bool(mode) and check_nan

    def __enter__(self):
        pass


def register_tensor_hook(t, hook):
    if not t.requires_grad:
        raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
    if t.grad_fn is None:
        if t._hooks is None:
            t._hooks = []
        t._hooks.append(hook)
        return _Handle(t._hooks, hook)
    return _add_prehook(t.grad_fn, t._output_nr, hook)


def retain_grad(t):
    """Keep the gradient of a non-leaf in ``t.grad`` (a hook on its node that does not keep ``t`` alive)."""
    ref = weakref.ref(t)

    def hook(g):
        t = ref()
        if t is not None:
            t.grad = g.detach() if t.grad is None and not STATE.enabled else \
                (g if t.grad is None else t.grad + g)
    _add_prehook(t.grad_fn, t._output_nr, hook)


def _make_root_grads(tensors, grads):
    from tritorch._tensor import Tensor
    from tritorch import _creation
    if grads is None:
        grads = [None] * len(tensors)
    if len(grads) != len(tensors):
        raise RuntimeError(f"grad_tensors should have the same length as tensors ({len(grads)} vs {len(tensors)})")
    out = []
    for i, (t, g) in enumerate(zip(tensors, grads)):
        if not isinstance(t, Tensor):
            raise TypeError(f"backward: element {i} of tensors is a {type(t).__name__}, not a Tensor")
        if not t.requires_grad:
            raise RuntimeError(f"element {i} of tensors does not require grad and does not have a grad_fn")
        if g is None:
            if t.numel() != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            g = _creation.ones_like(t)
        elif not isinstance(g, Tensor):
            g = _creation.tensor(g, dtype=t.dtype, device=t.device)
        if g.shape != t.shape:
            raise RuntimeError(f"Mismatch in shape: grad_output[{i}] has a shape of {list(g.shape)} and output[{i}] "
                               f"has a shape of {list(t.shape)}.")
        out.append(g)
    return out


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """``Tensor.backward`` / ``tritorch.autograd.backward``: accumulate d(tensors)/d(leaves) into ``.grad``."""
    tensors = list(tensors) if isinstance(tensors, (list, tuple)) else [tensors]
    if grad_tensors is not None and not isinstance(grad_tensors, (list, tuple)):
        grad_tensors = [grad_tensors]
    grads = _make_root_grads(tensors, grad_tensors)
    if retain_graph is None:
        retain_graph = create_graph
    if inputs is None:
        _run(tensors, grads, retain_graph, create_graph, None)
        return
    inputs = [inputs] if not isinstance(inputs, (list, tuple)) else list(inputs)
    if not inputs:
        raise RuntimeError("'inputs' argument to backward() cannot be empty.")
    captured = _run(tensors, grads, retain_graph, create_graph, inputs)
    assigned = set()
    for t in inputs:
        g = captured.get(id(t))
        if g is not None:
            _accumulate_into(t, g, create_graph, assigned)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=None,
         is_grads_batched=False, materialize_grads=False):
    """``tritorch.autograd.grad``: the gradients of ``outputs`` w.r.t. ``inputs``, without touching ``.grad``."""
    from tritorch import _creation
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    single = not isinstance(inputs, (list, tuple))
    inputs = [inputs] if single else list(inputs)
    if grad_outputs is not None and not isinstance(grad_outputs, (list, tuple)):
        grad_outputs = [grad_outputs]
    for i, t in enumerate(inputs):
        if not t.requires_grad:
            raise RuntimeError(f"One of the differentiated Tensors (input {i}) does not require grad")
    grads = _make_root_grads(outputs, grad_outputs)
    if retain_graph is None:
        retain_graph = create_graph
    if allow_unused is None:
        allow_unused = materialize_grads
    captured = _run(outputs, grads, retain_graph, create_graph, inputs)
    res = []
    for i, t in enumerate(inputs):
        g = captured.get(id(t))
        if g is None:
            if materialize_grads:
                g = _creation.zeros_like(t)
            elif not allow_unused:
                raise RuntimeError(f"One of the differentiated Tensors (input {i}) appears to not have been used in "
                                   "the graph. Set allow_unused=True if this is the desired behavior.")
        res.append(g)
    return tuple(res)


def _accumulate_into(t, g, create_graph, assigned):
    """Add ``g`` into ``t.grad`` (PyTorch's AccumulateGrad): a fresh, contiguous, unshared tensor the first time."""
    if not create_graph:
        g = g.detach()
    if t.grad is None:
        if not create_graph and (id(g) in assigned or g._base is not None or not g.is_contiguous()
                                 or g._storage is t._storage):
            g = g.clone()
        assigned.add(id(g))
        t.grad = g
    else:
        t.grad = t.grad + g


def _run(roots, root_grads, retain_graph, create_graph, inputs):
    from tritorch._tensor import Tensor
    capture = None
    if inputs is not None:
        # where each input's gradient arrives: a leaf's accumulator, or (grad_fn, output_nr) of a non-leaf
        capture = {}
        for t in inputs:
            key = (_grad_accumulator(t), 0) if t.grad_fn is None else (t.grad_fn, t._output_nr)
            capture.setdefault(key, []).append(t)

    # roots: their nodes receive the seed gradients
    buffers = {}
    root_nodes = []
    for t, g in zip(roots, root_grads):
        node, nr = (t.grad_fn, t._output_nr) if t.grad_fn is not None else (_grad_accumulator(t), 0)
        _add_to_buffer(buffers, node, nr, g)
        root_nodes.append(node)

    # dependencies: how many edges reach each node from the part of the graph below the roots
    deps = {}
    seen = set()
    stack = list(dict.fromkeys(root_nodes))
    seen.update(map(id, stack))
    order = []
    while stack:
        node = stack.pop()
        order.append(node)
        for e in node.next_functions:
            if e is None:
                continue
            nxt = e[0]
            deps[nxt] = deps.get(nxt, 0) + 1
            if id(nxt) not in seen:
                seen.add(id(nxt))
                stack.append(nxt)

    needed = None
    if capture is not None:
        needed = _needed_nodes(order, deps, capture)

    captured = {}
    assigned = set()
    prev = STATE.enabled
    STATE.enabled = create_graph
    try:
        ready = [(-getattr(n, "_seq", -1), id(n), n) for n in dict.fromkeys(root_nodes) if deps.get(n, 0) == 0]
        heapq.heapify(ready)
        while ready:
            node = heapq.heappop(ready)[2]
            grads = buffers.pop(node, None) or {}
            if node._pre_hooks:
                for nr, hooks in node._pre_hooks.items():
                    if nr is None:
                        continue
                    for h in hooks:
                        if nr in grads:
                            r = h(grads[nr])
                            if r is not None:
                                grads[nr] = r
            run_node = needed is None or node in needed
            if capture is not None:
                for nr, g in grads.items():
                    for t in capture.get((node, nr), ()):
                        captured[id(t)] = g
            if isinstance(node, AccumulateGrad):
                g = grads.get(0)
                if g is not None and capture is None:
                    t = node.variable
                    if t._hooks:
                        for h in t._hooks:
                            r = h(g)
                            if r is not None:
                                g = r
                    _accumulate_into(t, g, create_graph, assigned)
                continue
            out_grads = None
            if run_node:
                out_grads = _call_node(node, grads, retain_graph, Tensor)
            for i, e in enumerate(node.next_functions):
                if e is None:
                    continue
                nxt, nr = e
                g = out_grads[i] if out_grads is not None and i < len(out_grads) else None
                if g is not None:
                    _add_to_buffer(buffers, nxt, nr, g)
                deps[nxt] -= 1
                if deps[nxt] == 0:
                    heapq.heappush(ready, (-getattr(nxt, "_seq", -1), id(nxt), nxt))
    finally:
        STATE.enabled = prev
    return captured


def _needed_nodes(order, deps, capture):
    """Nodes from which some captured input can be reached: only these run during ``autograd.grad``."""
    targets = {k[0] for k in capture}
    indeg = dict(deps)
    topo = []
    queue = [n for n in order if indeg.get(n, 0) == 0]
    while queue:
        n = queue.pop()
        topo.append(n)
        for e in n.next_functions:
            if e is not None:
                indeg[e[0]] -= 1
                if indeg[e[0]] == 0:
                    queue.append(e[0])
    needed = set()
    for n in reversed(topo):
        if n in targets or any(e is not None and e[0] in needed for e in n.next_functions):
            needed.add(n)
    return needed


def _add_to_buffer(buffers, node, nr, g):
    slot = buffers.get(node)
    if slot is None:
        buffers[node] = {nr: g}
    elif nr in slot:
        slot[nr] = slot[nr] + g
    else:
        slot[nr] = g


def _call_node(node, grads, retain_graph, Tensor):
    from tritorch import _creation
    metas = getattr(node, "_out_meta", None) or ()
    args = []
    for i, meta in enumerate(metas):
        g = grads.get(i)
        if g is None and meta is not None and node._materialize:
            g = _creation.zeros(meta[0], dtype=meta[1], device=meta[2])
        args.append(g)
    if node._freed:
        raise RuntimeError("Trying to backward through the graph a second time (or directly access saved tensors "
                           "after they have already been freed). Specify retain_graph=True if you need to backward "
                           "through the graph a second time.")
    out = node.apply(*args)
    if not isinstance(out, tuple):
        out = (out,)
    n_in = len(node.next_functions)
    if len(out) < n_in:
        out = out + (None,) * (n_in - len(out))
    elif len(out) > n_in:
        if any(o is not None for o in out[n_in:]):
            raise RuntimeError(f"function {node.name()} returned an incorrect number of gradients "
                               f"(expected {n_in}, got {len(out)})")
        out = out[:n_in]
    shapes = getattr(node, "_in_shapes", ())
    for i, g in enumerate(out):
        if g is None or node.next_functions[i] is None:
            continue
        if not isinstance(g, Tensor):
            raise TypeError(f"function {node.name()} returned a gradient of type {type(g).__name__} at index {i}, "
                            "expected a Tensor or None")
        if i < len(shapes) and shapes[i] is not None and g._shape != shapes[i]:
            raise RuntimeError(f"Function {node.name()} returned an invalid gradient at index {i} - got "
                               f"{list(g._shape)} but expected shape compatible with {list(shapes[i])}")
        if _ANOMALY[0] and g.dtype.is_floating_point and not np.isfinite(
                np.asarray(g.detach()._to_host_array(), dtype=np.float64)).all():
            raise RuntimeError(f"Function '{node.name()}' returned nan values in its {i}th output.")
    if node._hooks:
        for h in node._hooks:
            h(tuple(out), tuple(args))
    if not retain_graph:
        node._release()
    return out
