"""``tritorch.compile``: capture a forward once per input signature, optimise its graph and replay it. A call whose
signature (input structure, non-tensor arguments, shapes, dtypes, devices, requires_grad, grad mode, autocast, and the
training mode of every module the capture called) is new captures the forward through the op modes (``tritorch.jit``'s
capture, which this call's result comes from), then runs the passes of ``passes/``: dead-code elimination;
``nll_loss(log_softmax(x))`` as ``cross_entropy(x)`` and a float32 cast of half logits read only by ``cross_entropy``
folded into it (``passes/losses.py``: the loss kernels read the half logits, and no float32 copy of them or of their
gradient is made); attention written in ops as the flash-attention
kernels (``passes/attention.py``, not under autocast); a layer written as a product, ``x @ w [+ b]`` with a 2-D ``w``,
as a linear (``passes/matmul.py``, not under autocast); activations, training-mode dropout (a convolution's dropout2d
too) and residual adds fused into the linear and conv kernels' epilogues (with autograd too); linears in a row as one
node whose backward runs each activation's derivative in the next layer's grad_x epilogue, an inner float32 layer's
gelu (silu, elu, leaky_relu) applied as the next layer's products load its pre-activation (``kernels/linear_chain.py``);
root-mean-square and layer norms written in ops as the row-norm kernels (``passes/norms.py``; the layer norm not under
autocast); on ``cuda`` a float32 (float64) layer or RMS norm read only by a linear as that linear's prologue, its rows
normalized as the linear's kernel loads them (``passes/norm_linear.py``, not under autocast); a convolution's
activation read only by a max pooling as one node, one kernel forward when the windows do not overlap and
differentiated inside the pooling's backward (``kernels/conv_pool.py``); a batched product whose transpose a reshape
would copy written in that transpose's order (``passes/layout.py``); and on ``cuda`` pointwise fusion into
generated Triton kernels (``codegen.py``: broadcast operands and strided views are read in place; a value several
elementwise ops read is recomputed in each; a tree read only by a ``sum``/``mean`` over its trailing or leading dims, or
by a last-dim ``softmax``/``log_softmax``, runs as that reduction's prologue, in one generated kernel), each fused group
one autograd node whose backward is derived from its rows' gradient rules and fused in turn, its independent trees side
by side in one kernel (``autodiff.py``); a GLU's gate activation joins its product's kernel, not the linear's epilogue.
Later calls with that signature replay the optimised graph. A forward that reads a tensor as a Python value
(``.item()``, ``if t:``) cannot be captured: it runs eagerly for that signature (``fullgraph=True`` raises instead), and
``explain()`` says why, as it says why each signature after the first was captured (PyTorch's recompile reasons: "tensor
argument 0 size mismatch at index 0. expected 8, actual 9"). A function keeps ``config.recompile_limit`` signatures
(``config.py``): past it, with ``dynamic=False``, new ones run eagerly after one warning, as PyTorch's do; otherwise the
least recently used one is dropped. ``reset()`` forgets every function's signatures; ``is_compiling()`` and ``disable``
are PyTorch's (a forward that calls a function under ``disable`` runs eagerly for its signature).

A fused node goes where its last member was and reads its inputs there, so a signature whose forward writes in place a
tensor an earlier op read (``Capture.clobbers``) gets dead-code elimination alone. The replay drops each intermediate
after its last reader (``tritorch.jit``'s memory plan). ``mode="reduce-overhead"`` on ``cuda`` replays a signature's
recorded kernel launches instead of its ops, forward and backward (``replay.py``); on ``cpu``, where the ops call NumPy
and launch nothing, it runs as ``"default"``. Not yet built (see the compile issue): one backward graph for the whole
step (the other ops keep the op layer's own backward nodes), the residual and dropout epilogues of batched products (a
2-D weight's product is a linear and has them, as convolutions do), pointwise prologues of the hand-written layer norm
and loss kernels (the loss takes a float32 cast only), CUDA-graph capture of the recorded launches, and dynamic shapes
(``dynamic=True`` captures each shape, as ``False`` does, but keeps the most recently used ones past the limit).
"""
import collections
import functools
import warnings
import weakref

from .. import jit
from . import config
from .._tensor import Tensor
from ..amp.autocast_mode import get_autocast_dtype, is_autocast_enabled
from ..autograd.grad_mode import is_grad_enabled
from ..jit._capture import CAPTURING, Capture, VALUE_READS
from ..jit.ir import flatten, unflatten
from ..nn.module import Module
from .codegen import Fused
from .replay import ReducedOverhead
from ..kernels.attention import masked_attention
from ..kernels.conv_pool import conv2d_max_pool2d
from ..kernels.linear_chain import linear_chain
from .passes import eliminate_dead_code, fuse_attention, fuse_conv_pool, fuse_linear_dropout, fuse_linear_epilogue, \
    fuse_layer_norm, fuse_linear_chain, fuse_linear_residual, fuse_log_softmax_nll, fuse_loss_cast, fuse_norm_linear, \
    fuse_pointwise, fuse_rms_norm, matmul_as_linear, plan_layouts, rematerialize, rms_norm_rows

__all__ = ["compile", "CompiledFunction", "CompileError", "MODES", "config", "reset", "is_compiling", "disable"]

MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class CompileError(RuntimeError):
    """``fullgraph=True`` and the forward cannot be captured as one graph."""


class _Eager:
    """The entry of a signature whose forward runs eagerly, and why."""

    def __init__(self, reason):
        self.reason = reason


def _meta(x):
    if isinstance(x, Tensor):
        return ("T", tuple(x.shape), x.dtype, str(x.device), x.requires_grad)
    return (type(x).__name__, repr(x))


_LIVE = weakref.WeakSet()
"""Every live ``CompiledFunction``: what ``reset()`` empties."""


def reset():
    """Forget every compiled function's signatures (PyTorch's ``torch.compiler.reset()``): each captures again."""
    for fn in list(_LIVE):
        fn._forget()


def is_compiling():
    """Whether a ``tritorch.compile`` capture is running (PyTorch's ``torch.compiler.is_compiling()``; ``jit``'s
    ``is_scripting()`` is False there, as in PyTorch)."""
    return any(c.kind == "compile" for c in CAPTURING)


def disable(fn=None, recursive=True, *, reason=None):
    """PyTorch's ``torch.compiler.disable``: ``fn`` (a function or a module, or this used as a decorator) always runs
    eagerly. A compiled forward that calls it cannot be captured as one graph: its signature runs eagerly, as one
    that reads a tensor as a Python value does, and ``explain()`` says why; with ``fullgraph=True`` the capture raises
    ``CompileError``."""
    if fn is None:
        return lambda f: disable(f, recursive, reason=reason)
    if isinstance(fn, Module):
        fn.forward = disable(fn.forward, recursive, reason=reason)
        return fn
    name = getattr(fn, "__qualname__", type(fn).__name__)

    @functools.wraps(fn)
    def eager(*args, **kwargs):
        for cap in CAPTURING:
            if cap.kind != "compile":
                continue
            if cap.on_value_read == "raise":
                raise CompileError(f"tritorch.compile(fullgraph=True): the forward calls {name}, which "
                                   f"tritorch.compiler.disable keeps out of graphs{f' ({reason})' if reason else ''}")
            cap.breaks.append(name)
        return fn(*args, **kwargs)
    return eager


def _difference(old, new):
    """The first difference of signature ``new`` from ``old`` (``CompiledFunction._full_key``s), worded as PyTorch's
    recompile reasons."""
    (o, _), (n, _) = old, new
    if o[0] != n[0]:
        return "the call's structure changed (arguments, keywords, containers)"
    for i, (a, b) in enumerate(zip(o[1], n[1])):
        if a == b:
            continue
        if a[0] != "T" or b[0] != "T":
            kind = (a[0] if a[0] != "T" else "Tensor", b[0] if b[0] != "T" else "Tensor")
            return f"argument {i} changed: {a[1]} -> {b[1]}" if kind[0] == kind[1] else \
                f"argument {i} changed type: {kind[0]} -> {kind[1]}"
        (_, s0, d0, v0, r0), (_, s1, d1, v1, r1) = a, b
        if len(s0) != len(s1):
            return f"tensor argument {i} rank mismatch. expected {len(s0)}, actual {len(s1)}"
        for j, (p, q) in enumerate(zip(s0, s1)):
            if p != q:
                return f"tensor argument {i} size mismatch at index {j}. expected {p}, actual {q}"
        for what, p, q in (("dtype", d0, d1), ("device", v0, v1), ("requires_grad", r0, r1)):
            if p != q:
                return f"tensor argument {i} {what} mismatch. expected {p}, actual {q}"
    for what, p, q in (("grad mode", o[2], n[2]), ("training mode", o[3], n[3]), ("autocast", o[4], n[4])):
        if p != q:
            return f"{what} changed: expected {p}, actual {q}"
    return "a called module's training mode changed"


def _records_grad(graph, key):
    """Whether signature ``key``'s calls record gradients: grad mode on and an input or a parameter requiring them."""
    return key[2] and (any(r for *_, r in key[1]) or any(getattr(t, "requires_grad", False)
                                                          for t in graph.params.values()))


class CompiledFunction:
    """What ``tritorch.compile`` returns for a function or a module: call it as the original."""

    def __init__(self, fn, mode="default", fullgraph=False, dynamic=None):
        if mode not in MODES and mode is not None:
            raise RuntimeError(f"Unrecognized mode={mode}, should be one of: {', '.join(MODES)}")
        self._orig_mod = fn
        self.mode = mode
        self.fullgraph = fullgraph
        self.dynamic = dynamic
        self._entries = {}                  # (signature, training flags of its modules) -> replay or _Eager, in the
        self._modules = {}                  # order of last use; signature -> the modules its captures called
        self._notes = collections.deque(maxlen=256)
        self._captures, self._limit_warned = 0, False
        _LIVE.add(self)

    def _forget(self):
        """Every signature dropped: the next call captures again (``reset()``)."""
        self._entries.clear()
        self._modules.clear()
        self._notes.clear()
        self._captures, self._limit_warned = 0, False

    def _key(self, leaves, struct):
        """The guard: the call's structure, its non-tensor arguments, each tensor's shape, dtype, device and
        requires_grad, grad mode, training mode and autocast state (the replay runs under the caller's autocast,
        which casts the replayed ops as it cast the captured ones)."""
        training = self._orig_mod.training if isinstance(self._orig_mod, Module) else None
        amp = tuple(get_autocast_dtype(d) if is_autocast_enabled(d) else None for d in ("cuda", "cpu"))
        return (repr(struct), tuple(_meta(x) for x in leaves), is_grad_enabled(), training, amp)

    def _full_key(self, key):
        """The signature with the training flag of every module its captures called: a submodule switched to
        eval (or a compiled function's model) re-captures, since dropout and batch norm bake their mode in."""
        return key, tuple(m.training for m in self._modules.get(key, ()))

    def __call__(self, *args, **kwargs):
        leaves, struct = flatten((args, kwargs), lambda x: not isinstance(x, (tuple, list, dict)))
        key = self._key(leaves, struct)
        full = self._full_key(key)
        entry = self._entries.get(full)
        if entry is None:
            why = _difference(next(reversed(self._entries)), full) if self._entries else None
            if len(self._entries) >= config.recompile_limit:
                if self.dynamic is False or not self._entries:
                    self._limit_reached(why)
                    return self._orig_mod(*args, **kwargs)
                self._drop_least_recent()
            return self._capture(key, leaves, struct, why)
        if self.dynamic is not False:       # the most recently used last
            self._entries[full] = self._entries.pop(full)
        if isinstance(entry, _Eager):
            return self._orig_mod(*args, **kwargs)
        return entry(*[x for x in leaves if isinstance(x, Tensor)])

    def _limit_reached(self, why):
        """A new static signature past ``config.recompile_limit``: it runs eagerly, the first time with a warning."""
        if self._limit_warned:
            return
        self._limit_warned = True
        name = getattr(self._orig_mod, "__name__", type(self._orig_mod).__name__)
        warnings.warn(f"tritorch.compile hit config.recompile_limit ({config.recompile_limit})\n   function: "
                      f"'{name}'\n   last reason: {why}\nNew signatures run eagerly: compile with dynamic=None "
                      "(the default) or True to keep the most recently used ones instead, or raise "
                      "tritorch._dynamo.config.recompile_limit.", stacklevel=3)
        self._notes.append(f"recompile_limit ({config.recompile_limit}) reached: new signatures run eagerly (last "
                           f"reason: {why})")

    def _drop_least_recent(self):
        """Past ``config.recompile_limit`` (dynamic shapes): the least recently used signature makes room."""
        old = next(iter(self._entries))
        del self._entries[old]
        if not any(k[0] == old[0] for k in self._entries):
            self._modules.pop(old[0], None)
        self._notes.append(f"recompile_limit ({config.recompile_limit}) reached: dropped the least recently used "
                           "signature")

    def _capture(self, key, leaves, struct, reason=None):
        """Runs the forward under a capture of its tensor arguments (the others are part of the guard); ``reason``:
        its difference from the latest signature."""
        fn = self._orig_mod
        root = fn if isinstance(fn, Module) else None
        where = [i for i, x in enumerate(leaves) if isinstance(x, Tensor)]

        def call(*tensors):
            values = list(leaves)
            for i, t in zip(where, tensors):
                values[i] = t
            args, kwargs = unflatten(struct, values.__getitem__)
            return fn(*args, **kwargs)
        tensors = tuple(leaves[i] for i in where)
        cap = Capture(root, "raise" if self.fullgraph else "break", "compile")
        cap.add_inputs(tensors)
        try:
            with cap:
                result = call(*tensors)
        except RuntimeError as e:
            if self.fullgraph and "reads a tensor as a Python value" in str(e):
                raise CompileError(f"tritorch.compile(fullgraph=True): {e}") from e
            raise
        self._modules[key] = list({id(m): m for m in self._modules.get(key, []) + list(cap.modules.values())}
                                  .values())
        full = self._full_key(key)
        if cap.breaks:
            reads = [b for b in dict.fromkeys(cap.breaks) if b in VALUE_READS]
            calls = [b for b in dict.fromkeys(cap.breaks) if b not in VALUE_READS]
            why = "; ".join(([f"the forward reads a tensor as a Python value ({', '.join(reads)}): its path may "
                              "depend on tensor values"] if reads else []) +
                            ([f"the forward calls {', '.join(calls)}, which tritorch.compiler.disable keeps out of "
                              "graphs"] if calls else [])) + ", so this signature runs eagerly"
            self._entries[full] = _Eager(why)
            self._notes.append(why)
            return result
        cap.set_outputs(result)
        head = f"signature {self._captures}" + ("" if reason is None else f" (re-captured: {reason})")
        self._captures += 1
        self._entries[full] = self._optimise(cap.graph, key, head, cap.clobbers)
        return result

    def _optimise(self, graph, key, head, clobbers=False):
        """The replay of a captured graph after the passes; with ``clobbers`` (an in-place op wrote a tensor an
        earlier op had read) after dead-code elimination alone: every other pass puts a fused node where its last
        member was, so it would read such a tensor after the write."""
        n0 = len(graph.nodes)
        graph = eliminate_dead_code(graph)
        n1 = len(graph.nodes)
        if clobbers:
            self._notes.append(f"{head}: {n0} ops, {n0 - n1} dead, no fusion: an in-place op writes a tensor an "
                               "earlier op read, which a fused node would read after the write")
            return self._replay(graph, key, {})
        if not any(key[4]):                 # (autocast runs log_softmax and nll_loss each in float32)
            graph = fuse_log_softmax_nll(graph)
        nll = n1 - len(graph.nodes)
        graph = fuse_loss_cast(graph)
        loss_casts = n1 - nll - len(graph.nodes)
        products = 0
        if not any(key[4]):                 # under autocast the ops they replace run in other dtypes
            graph = fuse_attention(graph)
            before = sum(n.op == "linear" for n in graph.nodes)
            graph = matmul_as_linear(graph)
            products = sum(n.op == "linear" for n in graph.nodes) - before
        attention = sum(n.op == "masked_attention" for n in graph.nodes)
        n1b = len(graph.nodes)
        graph = fuse_linear_epilogue(graph)
        n2 = len(graph.nodes)
        graph = fuse_linear_dropout(graph)
        n3 = len(graph.nodes)
        graph = fuse_linear_residual(graph)
        n4 = len(graph.nodes)
        layer_norms = 0
        if not any(key[4]):                 # first: a centred value's RMS norm is a layer norm
            before = sum(n.op == "layer_norm" for n in graph.nodes)
            graph = fuse_layer_norm(graph)
            layer_norms = sum(n.op == "layer_norm" for n in graph.nodes) - before
        graph = fuse_rms_norm(graph)
        norms = sum(n.op == "rms_norm_rows" for n in graph.nodes)
        graph = fuse_conv_pool(graph)
        pools = sum(n.op == "conv2d_max_pool2d" for n in graph.nodes)
        graph = fuse_linear_chain(graph)
        chains = [len(n.kwargs["layers"]) for n in graph.nodes if n.op == "linear_chain"]
        if not any(key[4]):                 # (autocast runs the norms in float32)
            graph = fuse_norm_linear(graph)
        into_linear = sum("norm" in n.kwargs for n in graph.nodes if n.op == "linear_chain")
        graph, laid_out = plan_layouts(graph)
        note = f"{head}: {n0} ops, {n0 - n1} dead, {attention} attentions written in ops as " \
            f"flash attention, {products} products x @ w as linears, {norms} RMS norms as row-norm kernels, " \
            f"{layer_norms} layer norms written in ops as the layer norm's, " \
            f"{n1b - n2} activations, {n2 - n3} " \
            f"dropouts and {n3 - n4} residual adds fused into linear/conv epilogues, {len(chains)} linear chains " \
            f"({', '.join(map(str, chains)) or 0} layers; each activation's backward in the next layer's), " \
            f"{into_linear} norms in the loads of the linear reading them, " \
            f"{pools} conv + max pool pairs (the activation's backward in the pooling's), " \
            f"{laid_out} products laid out for their reader, {nll} nll_loss of log_softmax as cross_entropy, " \
            f"{loss_casts} float32 casts of half logits read by cross_entropy's kernels"
        kernels = {}
        if graph.device is not None and graph.device.type == "cuda":
            before = len(graph.nodes)
            graph, kernels = fuse_pointwise(rematerialize(graph), Fused)
            note += f", {len(kernels)} fused kernels ({before - len(graph.nodes) + len(kernels)} ops): " + \
                ", ".join(repr(k) for k in kernels.values())
            if _records_grad(graph, key) and kernels:
                note += " (their backward derived from the rows' gradient rules, fused in turn)"
        self._notes.append(note)
        return self._replay(graph, key, kernels)

    def _replay(self, graph, key, kernels):
        """What later calls of signature ``key`` run: the graph's replay (its generated ``kernels`` in the op
        table), or under reduce-overhead on cuda its recorded launches."""
        table = {**jit.op_table(), "linear_chain": linear_chain, "conv2d_max_pool2d": conv2d_max_pool2d,
                 "masked_attention": masked_attention,
                 "rms_norm_rows": rms_norm_rows, **kernels}
        # the guard already holds the shapes: the replay need not check them again
        traced = jit.TracedModule(graph, type(self._orig_mod).__name__, check_shapes=False, table=table)
        mods = self._modules.get(key)          # a function's replay runs in its (first) module's mode
        traced.training = key[3] if key[3] is not None else bool(mods and mods[0].training)
        if self.mode == "reduce-overhead" and graph.device is not None and graph.device.type == "cuda":
            return ReducedOverhead(traced, _records_grad(graph, key), self._notes.append)
        return traced

    def explain(self):
        """One line per captured signature: ops, dead ones, fused kernels; or why it runs eagerly."""
        return "\n".join(self._notes)

    def __getattr__(self, name):
        return getattr(self.__dict__["_orig_mod"], name)


def compile(model=None, *, fullgraph=False, dynamic=None, backend="inductor", mode=None, options=None,
            disable=False):
    """PyTorch's ``torch.compile``: ``model`` (a Module or a function) captured and optimised per input signature;
    usable as a decorator (``@tritorch.compile`` or ``@tritorch.compile(mode=...)``)."""
    if model is None:
        return lambda m: compile(m, fullgraph=fullgraph, dynamic=dynamic, backend=backend, mode=mode,
                                 options=options, disable=disable)
    if disable:
        return model
    return CompiledFunction(model, mode or "default", fullgraph, dynamic)
