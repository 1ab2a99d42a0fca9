"""Epilogue fusion into the linear and conv kernels.

- ``fuse_linear_epilogue``: a ``linear`` whose only reader is an activation (relu, gelu, leaky_relu, elu, silu,
  sigmoid, tanh) becomes one ``linear(..., activation=...)``: the activation runs in the matmul kernel's epilogue,
  forward and backward (kernels/linear.py), so it applies to training graphs too. Likewise a ``conv1d``/``conv2d``
  read only by relu, sigmoid or tanh (``kernels/conv.py``'s ``EPILOGUE_ACTIVATIONS``). On ``cuda`` a GLU's gate
  (``silu(w1(x)) * w3(x)``: an activation read only by a product) joins the product's generated kernel instead, so
  that its derivative runs in the product's derived backward kernel, not in an activation-gradient launch.
- ``fuse_linear_dropout``: a ``linear`` or a batched ``conv1d``/``conv2d`` (activation fused or not) read only by a
  training-mode ``dropout`` (a convolution's also by ``dropout2d``, whole channels) becomes one ``linear(...,
  dropout_p=p)`` (``conv2d(..., dropout_p=p, dropout_channels=...)``): the kernel drops the elements the separate op
  would (the same Philox counters, drawn at the same point of the step), and the backward regenerates the mask in
  the activation's gradient kernel (a linear without one: in its backward's products as they read the gradient).
- ``fuse_linear_residual``: an ``add`` of a ``linear`` or a batched convolution (activation and dropout fused or
  not) read only by it and another value of its shape and dtype (the skip connection ``x + proj(h)``, a
  pre-activation ResNet's ``x + conv(h)``) becomes one ``linear(..., residual=x)`` (``conv2d(...)``): the add runs in
  the epilogue and its backward passes the gradient through, so no kernel is left for it.

A producer's own keyword arguments (``bias=``, a convolution's ``stride=``, ``padding=``...) stay as they are.
"""
from ...jit.ir import Node, Value
from ...kernels.conv import EPILOGUE_ACTIVATIONS
from .graph import copy_graph as _copy, reads as _reads, uses as _uses
from .pointwise import pointwise_spec, scalar_ok

__all__ = ["fuse_linear_epilogue", "fuse_linear_dropout", "fuse_linear_residual", "training_dropout_p"]


def _epilogue(node):
    """``(activation, alpha)`` where ``node`` is an activation linear's epilogue computes, else None."""
    args, kw = node.args, node.kwargs
    if node.op in ("relu", "relu_", "silu", "sigmoid", "tanh") and len(args) == 1 and not kw:
        return node.op.rstrip("_"), None
    if node.op == "gelu" and len(args) == 1 and set(kw) <= {"approximate"}:
        approximate = kw.get("approximate", "none")
        return {"none": ("gelu", None), "tanh": ("gelu_tanh", None)}.get(approximate)
    if node.op in ("leaky_relu", "elu") and 1 <= len(args) <= 2 and not kw:
        alpha = args[1] if len(args) == 2 else None
        if alpha is None or (isinstance(alpha, (int, float)) and not isinstance(alpha, bool)):
            return node.op, alpha
    return None


_EPILOGUE_OPS = {"linear": None, "conv1d": EPILOGUE_ACTIVATIONS, "conv2d": EPILOGUE_ACTIVATIONS}
"""Ops with an activation epilogue -> the activations it takes (None: every one ``_epilogue`` finds)."""

_OWN = {"linear": {"bias"}, "conv1d": {"bias", "stride", "padding", "dilation", "groups"}}
_OWN["conv2d"] = _OWN["conv1d"]
"""Ops with an epilogue -> their keyword arguments that are no part of it."""

_BATCHED = {"conv1d": 3, "conv2d": 4}
"""A convolution's result with a batch dim: the rank its dropout and residual epilogues take."""


def _producers(graph, ops, epilogue):
    """Output name -> the nodes of ``ops`` whose keywords are their own or in ``epilogue``, one floating output each
    (a convolution's batched, when ``epilogue`` is set)."""
    return {n.outputs[0].name: n for n in graph.nodes if n.op in ops and set(n.kwargs) <= _OWN[n.op] | epilogue and
            not n.aliases and len(n.outputs) == 1 and n.outputs[0].dtype.is_floating_point and
            (not epilogue or len(n.outputs[0].shape) == _BATCHED.get(n.op, len(n.outputs[0].shape)))}


_MUL = ("mul", "__mul__", "__rmul__")


def _gates(graph):
    """On ``cuda``: the names of the fusible activations read only by a fusible product, the gates of a GLU
    (``silu(w1(x)) * w3(x)``). Such an activation joins the product's generated kernel instead of the linear's
    epilogue: forward takes as many launches, and the group's derived backward computes the activation's derivative
    with the product's, so no ``_act_grad_kernel`` runs for it."""
    if graph.device is None or graph.device.type != "cuda":
        return set()
    readers = {}
    for node in graph.nodes:
        for name in set(_reads(node.args) + _reads(node.kwargs)):
            readers.setdefault(name, []).append(node)
    return {n.outputs[0].name for n in graph.nodes if len(n.outputs) == 1 and pointwise_spec(n) is not None and
            len(readers.get(n.outputs[0].name, ())) == 1 and readers[n.outputs[0].name][0].op in _MUL and
            pointwise_spec(readers[n.outputs[0].name][0]) is not None}


def fuse_linear_epilogue(graph):
    """The graph with each ``linear`` (``conv1d``, ``conv2d``) + activation pair (the producer's result read only by
    the activation) as one node with ``activation=``, but for the gates of ``_gates``."""
    uses, outputs, gates = _uses(graph), {v.name for v in graph.outputs}, _gates(graph)
    producer = _producers(graph, _EPILOGUE_OPS, set())
    replaced, nodes = {}, []
    for node in graph.nodes:
        src = node.args[0] if node.args and isinstance(node.args[0], Value) else None
        act = _epilogue(node) if src is not None else None
        lin = producer.get(src.name) if act else None
        if lin is not None and _EPILOGUE_OPS[lin.op] is not None and (act[0] not in _EPILOGUE_OPS[lin.op] or
                                                                      act[1] is not None):
            lin = None
        if lin is None or uses.get(src.name) != 1 or src.name in outputs or id(lin) in replaced or \
                node.outputs[0].name in gates:
            nodes.append(node)
            continue
        kwargs = {"activation": act[0]} if act[1] is None else {"activation": act[0], "alpha": act[1]}
        replaced[id(lin)] = True
        nodes.append(Node(lin.op, lin.args, {**lin.kwargs, **kwargs}, [node.outputs[0]], 0, node.scope,
                          node.module_type))
    return _copy(graph, [n for n in nodes if id(n) not in replaced])


def training_dropout_p(node, ops=("dropout",)):
    """p of a training-mode, out-of-place ``dropout(x, p, train, inplace)`` node (positional or keywords; with
    ``ops``, also ``dropout2d``'s), else None."""
    names = ("p", "train", "inplace")
    if node.op not in ops or len(node.args) > 4 or not set(node.kwargs) <= {*names, "training"}:
        return None
    given = dict(zip(names, node.args[1:]), **node.kwargs)
    p, train, inplace = given.get("p", 0.5), given.get("train", given.get("training", True)), given.get("inplace")
    ok = scalar_ok(p) and 0 < p <= 1 and train is True and not inplace
    return float(p) if ok else None


def fuse_linear_dropout(graph):
    """The graph with each training-mode ``dropout`` of a ``linear`` or batched convolution result (``dropout2d`` of
    a convolution's; read by nothing else, not a graph output) as one node with ``dropout_p=`` (at the dropout's
    place, where the counters are drawn)."""
    uses, outputs = _uses(graph), {v.name for v in graph.outputs}
    producer = _producers(graph, _EPILOGUE_OPS, {"activation", "alpha"})
    replaced, nodes = set(), []
    for node in graph.nodes:
        src = node.args[0] if node.args and isinstance(node.args[0], Value) else None
        p = training_dropout_p(node, ("dropout", "dropout2d")) if src is not None and not node.aliases else None
        lin = producer.get(src.name) if p is not None else None
        channels = node.op == "dropout2d"
        if lin is None or uses.get(src.name) != 1 or src.name in outputs or id(lin) in replaced or \
                (channels and lin.op == "linear"):
            nodes.append(node)
            continue
        replaced.add(id(lin))
        drop = {"dropout_p": p, "dropout_channels": True} if channels else {"dropout_p": p}
        nodes.append(Node(lin.op, lin.args, {**lin.kwargs, **drop}, [node.outputs[0]], 0, node.scope,
                          node.module_type))
    return _copy(graph, [n for n in nodes if id(n) not in replaced])


_ADD = ("add", "__add__", "__radd__")


def fuse_linear_residual(graph):
    """The graph with each ``add`` of a ``linear`` or batched convolution result (read by nothing else, not a graph
    output) and a residual Value of the same shape and dtype as one node with ``residual=`` (at the add's place)."""
    uses, outputs = _uses(graph), {v.name for v in graph.outputs}
    producer = _producers(graph, _EPILOGUE_OPS, {"activation", "alpha", "dropout_p", "dropout_channels"})
    replaced, nodes = set(), []
    for node in graph.nodes:
        fused = None
        if node.op in _ADD and len(node.args) == 2 and not node.kwargs and not node.aliases:
            out = node.outputs[0]
            for lin_out, res in (node.args, node.args[::-1]):
                lin = producer.get(lin_out.name) if isinstance(lin_out, Value) else None
                if (lin is not None and isinstance(res, Value) and res.name != lin_out.name and
                        uses.get(lin_out.name) == 1 and lin_out.name not in outputs and id(lin) not in replaced and
                        res.shape == lin_out.shape and res.dtype == lin_out.dtype == out.dtype):
                    fused = Node(lin.op, lin.args, {**lin.kwargs, "residual": res}, [out], 0, node.scope,
                                 node.module_type)
                    replaced.add(id(lin))
                    break
        nodes.append(fused or node)
    return _copy(graph, [n for n in nodes if id(n) not in replaced])
