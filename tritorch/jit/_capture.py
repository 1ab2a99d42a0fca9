"""Graph capture: an op mode that records the outermost op calls of a forward into a ``Graph`` (tritorch/jit/ir.py),
with module scopes from the module-call hook of tritorch/nn/module.py (recurrent layers recorded as one node)."""
import warnings

from .. import _modes
from .._tensor import Tensor
from ..nn import module as _module
from ..nn.module import Module
from ..nn.rnn import RNNBase
from ..nn.utils.rnn import PackedSequence
from ..kernels.random import Generator, draw_clock
from .ir import Const, Graph, Node, flatten

__all__ = ["TracerWarning", "Capture", "CAPTURING"]

VALUE_READS = frozenset(("item", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__"))
"""Ops that turn a tensor into a Python value: the value is baked into the graph."""
CAPTURING = []
"""The active captures (``jit.is_tracing()`` / ``is_scripting()`` read it)."""


class TracerWarning(Warning):
    """A capture baked in something that may not generalize to other inputs (PyTorch's ``torch.jit.TracerWarning``)."""


class Capture(_modes.OpMode):
    """Records one forward. ``root``: the module whose parameters and buffers are the graph's params (None for a
    function); ``on_value_read``: "warn" (trace), "raise" (script) or "break" (compile: listed in ``breaks``);
    ``kind``: "trace", "script" or "compile" (what ``jit.is_tracing``/``is_scripting`` and
    ``compiler.is_compiling`` report)."""

    def __init__(self, root, on_value_read="warn", kind="trace"):
        self.graph = Graph()
        self.ids = {}                       # id(tensor) -> current Value
        self.keep = []                      # the tensors seen, kept alive so that their ids stay unique
        self.depth = 0
        self.scopes = [("", "")]
        self.on_value_read, self.kind = on_value_read, kind
        self.breaks = []                    # value reads (and compiler.disable's calls) with on_value_read="break"
        self.pure_reads = set()             # ids of the storages nodes read without writing them
        self.clobbers = False               # an in-place op wrote one of those (tritorch.compile then fuses nothing)
        self.counter = 0
        self.names = {}                     # id(module) -> qualified name
        self.modules = {}                   # id(module) -> every module called, in call order
        self.param_names = {}               # id(tensor) -> state_dict name
        self.reserved, self.order = set(), []
        if isinstance(root, Module):
            self.order = list(root.state_dict(keep_vars=True))
            self.names = {id(m): n for n, m in root.named_modules()}
            for n, t in list(root.named_parameters()) + list(root.named_buffers()):
                self.param_names.setdefault(id(t), n)
                self.reserved.add(n)

    # ---- values ------------------------------------------------------------------------------------------------
    def fresh(self, prefix):
        while True:
            name = f"{prefix}{self.counter}"
            self.counter += 1
            if name not in self.graph.values and name not in self.reserved:
                return name

    def bind(self, t, kind, name=None):
        v = self.graph.add_value(name or self.fresh("t"), t, t.dtype, kind)
        self.ids[id(t)] = v
        self.keep.append(t)
        return v

    def value_of(self, t):
        v = self.ids.get(id(t))
        if v is not None:
            return v
        name = self.param_names.get(id(t))
        if name is None:                    # a tensor from outside the forward's data flow: a constant
            name = self.fresh("_constant_")
        v = self.bind(t, "param", name)
        self.graph.params[name] = t
        return v

    def to_ir(self, x):
        if isinstance(x, Tensor):
            return self.value_of(x)
        if isinstance(x, tuple) and not hasattr(x, "_fields"):
            return tuple(self.to_ir(a) for a in x)
        if isinstance(x, list):
            return [self.to_ir(a) for a in x]
        if isinstance(x, dict):
            return {k: self.to_ir(v) for k, v in x.items()}
        return x

    def add_inputs(self, example):
        leaves, struct = flatten(example, lambda x: not isinstance(x, (tuple, list, dict)))
        for i, t in enumerate(leaves):
            if not isinstance(t, Tensor):
                raise TypeError(f"Type '{type(t).__name__}' cannot be traced. Only Tensors and (possibly nested) "
                                "Lists, Dicts, and Tuples of Tensors can be traced")
            self.graph.inputs.append(self.bind(t, "input", self.fresh("input_")))
        self.graph.in_struct = struct
        if leaves:
            self.graph.device = leaves[0].device

    def set_outputs(self, result):
        def leaf(x):
            return isinstance(x, Tensor)
        leaves, struct = flatten(result, leaf)
        outs = [self.value_of(t) for t in leaves]
        self.graph.outputs = outs

        def rebuild(s):
            if type(s) is int:
                return outs[s]
            if isinstance(s, tuple):
                return tuple(rebuild(a) for a in s)
            if isinstance(s, list):
                return [rebuild(a) for a in s]
            if isinstance(s, dict):
                return {k: rebuild(v) for k, v in s.items()}
            return s
        self.graph.out_struct = rebuild(struct) if leaves or type(struct) is not int else struct
        rank = {n: i for i, n in enumerate(self.order)}      # the params in the module's state_dict order
        self.graph.params = dict(sorted(self.graph.params.items(), key=lambda kv: rank.get(kv[0], len(rank))))
        if self.graph.device is None and self.graph.params:
            self.graph.device = next(iter(self.graph.params.values())).device

    # ---- the op mode ---------------------------------------------------------------------------------------------
    def __op__(self, name, op, args, kwargs):
        if self.depth:
            return op(*args, **kwargs)
        if name in VALUE_READS:
            self.value_read(name)
            self.depth += 1
            try:
                return op(*args, **kwargs)
            finally:
                self.depth -= 1
        ins = self.to_ir(args), self.to_ir(kwargs)
        arg_tensors = [t for t in flatten((args, kwargs), lambda x: isinstance(x, Tensor))[0]]
        versions = [(t, t._version) for t in arg_tensors]
        generators = flatten((args, kwargs), lambda x: isinstance(x, Generator))[0]
        clock = draw_clock(generators)
        self.depth += 1
        try:
            result = op(*args, **kwargs)
        finally:
            self.depth -= 1
        self.record(name, ins[0], ins[1], result, versions, draw_clock(generators) != clock)
        return result

    def record(self, name, args, kwargs, result, versions=(), draws=False):
        leaves, struct = flatten(result, lambda x: isinstance(x, Tensor))
        if not leaves and result is not None:
            return                          # a Python value (a shape, a flag): baked into its users
        struct = _consts(struct)
        written = {id(t._storage) for t, ver in versions if t._version != ver}
        self.clobbers = self.clobbers or bool(written & self.pure_reads)
        self.pure_reads.update(id(t._storage) for t, _ in versions if id(t._storage) not in written)
        outs, aliases = [], {}
        before = {id(t): self.ids[id(t)].name for t, _ in versions if id(t) in self.ids}
        for i, t in enumerate(leaves):
            if id(t) in before:             # an in-place op returning its input: the same tensor, a new version
                aliases[i] = before[id(t)]
            outs.append(self.bind(t, "node"))
        returned = {id(t) for t in leaves}
        for t, ver in versions:             # an input written in place and not returned: a new version of it
            if t._version != ver and id(t) not in returned and id(t) in before:
                aliases[len(outs)] = before[id(t)]
                outs.append(self.bind(t, "node"))
                returned.add(id(t))
        scope, mtype = self.scopes[-1]
        self.graph.nodes.append(Node(name, args, kwargs, outs, struct, scope, mtype, aliases, draws))

    def value_read(self, name):
        if self.on_value_read == "break":          # tritorch.compile: note it, the caller runs such a forward eagerly
            self.breaks.append(name)
            return
        if self.on_value_read == "raise":
            raise RuntimeError(f"tritorch.jit.script: the forward reads a tensor as a Python value ({name}): its "
                               "path may depend on tensor values, which a captured graph cannot follow. Use "
                               "tritorch.jit.trace (which bakes the value in, with a TracerWarning) or run the "
                               "module eagerly.")
        kind = {"__bool__": "boolean", "__index__": "index"}.get(name, "Python value")
        warnings.warn(f"Converting a tensor to a {kind} ({name}) might cause the trace to be incorrect. We can't "
                      "record the data flow of Python values, so this value will be treated as a constant in the "
                      "future. This means that the trace might not generalize to other inputs!", TracerWarning,
                      stacklevel=4)

    # ---- module scopes -------------------------------------------------------------------------------------------
    def module_call(self, module, call, args, kwargs):
        self.modules.setdefault(id(module), module)
        if self.depth:
            return call(*args, **kwargs)
        name = self.names.get(id(module))
        if name is None:
            name = self.fresh("_module_")
            self.names[id(module)] = name
        if isinstance(module, RNNBase):
            return self.recurrent(module, name, call, args, kwargs)
        self.scopes.append((name, type(module).__name__))
        try:
            return call(*args, **kwargs)
        finally:
            self.scopes.pop()

    def recurrent(self, module, name, call, args, kwargs):
        """A recurrent layer as one node "module:LSTM" / "module:GRU" / "module:RNN" (docs/graph-ir.md)."""
        input = args[0] if args else kwargs.get("input")
        hx = args[1] if len(args) > 1 else kwargs.get("hx")
        if isinstance(input, PackedSequence):
            raise NotImplementedError("tritorch.jit: capturing a recurrent layer on a PackedSequence is not "
                                      "supported; pass a padded tensor")
        ins = (self.to_ir(input), self.to_ir(hx))
        for w in module._flat_weights_names:
            t = getattr(module, w)
            full = f"{name}.{w}" if name else w
            if id(t) not in self.ids:
                self.graph.params[full] = t
                self.bind(t, "param", full)
        clock = draw_clock()
        self.depth += 1
        try:
            result = call(*args, **kwargs)
        finally:
            self.depth -= 1
        draws = draw_clock() != clock                   # dropout between layers, in training
        op = {"LSTM": "LSTM", "GRU": "GRU"}.get(module.mode, "RNN")
        cfg = {"input_size": module.input_size, "hidden_size": module.hidden_size, "num_layers": module.num_layers,
               "bias": module.bias, "batch_first": module.batch_first, "bidirectional": module.bidirectional,
               "dropout": module.dropout, "proj_size": module.proj_size}
        if op == "RNN":
            cfg["nonlinearity"] = "tanh" if module.mode == "RNN_TANH" else "relu"
        self.scopes.append((name, type(module).__name__))
        try:
            self.record("module:" + op, ins, cfg, result, draws=draws)
        finally:
            self.scopes.pop()
        return result

    def __enter__(self):
        CAPTURING.append(self)
        _module.CALL_HOOKS.append(self.module_call)
        return super().__enter__()

    def __exit__(self, *exc):
        super().__exit__(*exc)
        _module.CALL_HOOKS.remove(self.module_call)
        CAPTURING.remove(self)
        return False


def _consts(struct):
    """``struct`` with each non-int, non-None leaf wrapped in Const (ints are output indices)."""
    if type(struct) is int or struct is None:
        return struct
    if isinstance(struct, tuple):
        return tuple(_consts(a) for a in struct)
    if isinstance(struct, list):
        return [_consts(a) for a in struct]
    return Const(struct)
