"""Replay of a captured ``Graph``: each node calls its op (the routed callable published under the node's name)
directly, without the module's Python; ``TracedModule`` holds the graph and the parameters it reads."""
from .. import _modes
from .._device import device as _device
from .._tensor import Tensor
from ..nn import rnn as _rnn
from ..nn.module import Module
from ..nn.parameter import Parameter
from .ir import Value, _fmt, flatten, unflatten

__all__ = ["op_table", "Program", "TracedModule"]

_RECURRENT = {"module:LSTM": _rnn.LSTM, "module:GRU": _rnn.GRU, "module:RNN": _rnn.RNN}


def op_table():
    """name -> the routed callable, for every op published through the op modes (tritorch/_modes.py)."""
    return {op.__op_name__: op for op in _modes._ROUTED.values()}


class _Slot:
    """Where a node reads a Value (or the replay device) from the environment."""
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name


def _template(x, trace_device, key=None):
    """``x`` with Values replaced by _Slot (and a factory's ``device=`` of the capture's device by the "__device__"
    slot, so that a moved module creates its tensors where its inputs are); (template, has_slots)."""
    if isinstance(x, Value):
        return _Slot(x.name), True
    if key == "device" and x is not None and trace_device is not None and _same_device(x, trace_device):
        return _Slot("__device__"), True
    if isinstance(x, (tuple, list)):
        parts = [_template(a, trace_device) for a in x]
        return type(x)(p for p, _ in parts), any(h for _, h in parts)
    if isinstance(x, dict):
        parts = {k: _template(v, trace_device, k) for k, v in x.items()}
        return {k: p for k, (p, _) in parts.items()}, any(h for _, h in parts.values())
    return x, False


def _same_device(x, dev):
    try:
        return isinstance(x, (str, _device)) and _device(x) == dev
    except (TypeError, ValueError, RuntimeError):
        return False


def _resolve(x, env):
    if type(x) is _Slot:
        return env[x.name]
    if isinstance(x, (tuple, list)):
        return type(x)(_resolve(a, env) for a in x)
    if isinstance(x, dict):
        return {k: _resolve(v, env) for k, v in x.items()}
    return x


def _paths(struct, path=()):
    """(path, index) of each output index in a node's ``out_struct``."""
    if type(struct) is int:
        return [(path, struct)]
    if isinstance(struct, (tuple, list)):
        return [p for i, a in enumerate(struct) for p in _paths(a, path + (i,))]
    return []


class Program:
    """A graph compiled for replay: per node its callable, argument templates and output bindings."""

    def __init__(self, graph, table=None):
        table = op_table() if table is None else table
        self.graph = graph
        self.steps = []
        for node in graph.nodes:
            if node.op in _RECURRENT:
                fn = _recurrent_runner(node)
            elif node.op in table:
                fn = table[node.op]
            else:
                raise RuntimeError(f"tritorch.jit: the graph calls {node.op!r}, which is no published op")
            args, ha = _template(node.args, graph.device)
            kwargs, hk = _template(node.kwargs, graph.device)
            top = [(i, a.name) for i, a in enumerate(args) if type(a) is _Slot]
            nested = ha and any(not (type(a) is _Slot) and _template_has(a) for a in args)
            outs = [(p, node.outputs[i].name) for p, i in _paths(node.out_struct)]
            extra = [(node.outputs[i].name, name) for i, name in node.aliases.items() if
                     i not in {j for _, j in _paths(node.out_struct)}]
            self.steps.append((fn, list(args), top, nested, kwargs if hk else None, dict(kwargs) if not hk else None,
                               outs, extra))
        self.frees = _last_uses(graph)

    def run(self, env):
        """Runs the steps on ``env`` (name -> tensor: the inputs and params), dropping each intermediate after the
        last step that reads it (the memory plan: the allocator reuses its memory for later results)."""
        for (fn, args, top, nested, kw_t, kw, outs, extra), free in zip(self.steps, self.frees):
            if nested:
                a = _resolve(args, env)
            else:
                a = list(args)
                for i, name in top:
                    a[i] = env[name]
            r = fn(*a, **(_resolve(kw_t, env) if kw_t is not None else kw))
            for path, name in outs:
                x = r
                for k in path:
                    x = x[k]
                env[name] = x
            for name, src in extra:
                env[name] = env[src]
            for name in free:
                del env[name]
        return env


def _last_uses(graph):
    """Per node, the intermediate values no later node reads and the graph does not return."""
    keep = {v.name for v in flatten(graph.out_struct, lambda x: isinstance(x, Value))[0] if isinstance(v, Value)}
    keep |= {v.name for v in graph.outputs}
    seen, frees = set(keep), []
    for node in reversed(graph.nodes):
        reads = [v.name for v in flatten((node.args, node.kwargs), lambda x: isinstance(x, Value))[0]
                 if isinstance(v, Value) and graph.values.get(v.name, v).kind == "node"]
        made = [v.name for v in node.outputs if v.name not in seen]
        frees.append([n for n in dict.fromkeys(reads + made) if n not in seen])
        seen.update(reads)
        seen.update(v.name for v in node.outputs)
    return frees[::-1]


def _template_has(x):
    if type(x) is _Slot:
        return True
    if isinstance(x, (tuple, list)):
        return any(_template_has(a) for a in x)
    if isinstance(x, dict):
        return any(_template_has(a) for a in x.values())
    return False


def _recurrent_runner(node):
    """A callable (input, hx) running the recurrent layer of ``node`` on the weights of the current replay's
    environment (``run.env``, set by TracedModule.forward)."""
    cfg = {k: v for k, v in node.kwargs.items() if k != "proj_size"}
    layer = _RECURRENT[node.op](**cfg)
    names = list(layer._flat_weights_names)
    prefix = node.scope + "." if node.scope else ""

    def run(input, hx=None, **_config):
        for n in names:
            layer._parameters[n] = run.env[prefix + n]
        layer.training = run.env.get("__training__", False)
        return layer.forward(input, hx)
    run.env = {}
    run.bind = run
    return run


class _Scope(Module):
    """A level of the traced module's tree that holds parameters (named as in the original state_dict)."""

    def __init__(self, type_name):
        super().__init__()
        self._type_name = type_name

    def _get_name(self):
        return self._type_name


class TracedModule(Module):
    """The result of ``tritorch.jit.trace``: a Module that replays its ``graph`` on the parameters it holds.
    ``table``: op name -> callable, where the graph calls more than the published ops (``tritorch.compile``'s
    fused kernels)."""

    def __init__(self, graph, name="TracedModule", persistent=None, check_shapes=True, table=None):
        super().__init__()
        self._name = name
        self._check_shapes = check_shapes
        self._lookup = []
        for pname, t in graph.params.items():
            *path, attr = pname.split(".")
            mod = self
            for p in path:
                if p not in mod._modules:
                    mod.add_module(p, _Scope(p))
                mod = mod._modules[p]
            if isinstance(t, Parameter):
                mod.register_parameter(attr, t)
            else:
                mod.register_buffer(attr, t, persistent=not pname.split(".")[-1].startswith("_constant_")
                                    if persistent is None else pname in persistent)
            self._lookup.append((pname, mod, attr, isinstance(t, Parameter)))
        object.__setattr__(self, "_graph", graph)
        object.__setattr__(self, "_program", Program(graph, table))
        for fn, *_ in self._program.steps:
            if hasattr(fn, "bind"):
                fn.bind.env = None

    def _get_name(self):
        return self._name

    @property
    def graph(self):
        """The captured graph, its params the tensors this module holds now."""
        for name, mod, attr, is_p in self._lookup:
            self._graph.params[name] = mod._parameters[attr] if is_p else mod._buffers[attr]
        return self._graph

    @property
    def code(self):
        """The graph as readable Python-like text."""
        return _code(self._graph)

    def forward(self, *args, **kwargs):
        g = self._graph
        example = (args, kwargs) if kwargs else args
        leaves, struct = flatten(example, lambda x: not isinstance(x, (tuple, list, dict)))
        want = g.in_struct if not kwargs else g.in_struct
        if struct != want or len(leaves) != len(g.inputs):
            raise RuntimeError(f"{self._name}: expected inputs structured as {_show(g.in_struct)} (as traced), "
                               f"got {_show(struct)}")
        env = {}
        for v, t in zip(g.inputs, leaves):
            if not isinstance(t, Tensor):
                raise TypeError(f"{self._name}: input {v.name} must be a Tensor, got {type(t).__name__}")
            if self._check_shapes and (tuple(t.shape) != v.shape or t.dtype != v.dtype):
                raise RuntimeError(f"{self._name}: input {v.name} was traced with shape {list(v.shape)} and "
                                   f"dtype {v.dtype.name}, got {list(t.shape)} and {t.dtype.name}: a trace bakes "
                                   "in shapes; trace again for this shape, or use tritorch.jit.script")
            env[v.name] = t
        for name, mod, attr, is_p in self._lookup:
            env[name] = mod._parameters[attr] if is_p else mod._buffers[attr]
        dev = leaves[0].device if leaves else (env[self._lookup[0][0]].device if self._lookup else g.device)
        env["__device__"] = dev
        env["__training__"] = self.training
        for fn, *_ in self._program.steps:
            if hasattr(fn, "bind"):
                fn.bind.env = env
        self._program.run(env)
        return unflatten_values(g.out_struct, env)


def unflatten_values(struct, env):
    if isinstance(struct, Value):
        return env[struct.name]
    if isinstance(struct, tuple):
        return tuple(unflatten_values(a, env) for a in struct)
    if isinstance(struct, list):
        return [unflatten_values(a, env) for a in struct]
    if isinstance(struct, dict):
        return {k: unflatten_values(v, env) for k, v in struct.items()}
    return struct


def _show(struct):
    return repr(unflatten(struct, lambda i: "Tensor"))


def _code(graph):
    ins = ", ".join(v.name for v in graph.inputs)
    lines = [f"def forward(self, {ins}):" if ins else "def forward(self):"]
    for n in graph.nodes:
        outs = ", ".join(v.name for v in n.outputs) or "_"
        call = ", ".join([_fmt(a).replace("%", "") for a in n.args] +
                         [f"{k}={_fmt(v).replace('%', '')}" for k, v in n.kwargs.items()])
        lines.append(f"    {outs} = {n.op}({call})")
    lines.append(f"    return {_fmt(graph.out_struct).replace('%', '')}")
    return "\n".join(lines)
