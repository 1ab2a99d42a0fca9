"""``mode="reduce-overhead"``: a captured signature replayed as the kernel launches it made, without its ops.

PyTorch's reduce-overhead records the step as a CUDA graph and replays it in one launch. Here a signature's
optimised graph (on ``cuda``) runs once to warm up (autotuning, Triton's compiles), then once more while every
Triton launch is recorded (``profiler._launches.install``): kernel, grid, arguments. Later calls with that signature
launch the same kernels with the same arguments, each pointer moved to this call's buffers: no op dispatch, shape
and dtype checks (the guard holds them), shape arithmetic, autotune lookup or autograd recording per op, on a GPU
and in Triton's interpreter alike. A signature that records gradients records its backward too (the first backward
through the recorded call runs ``autograd.grad`` under the recorder) and replays as one autograd node whose backward
launches those kernels.

Buffers: each storage the recording made is a slot, allocated anew per call at its first launch and dropped after
its last (unless it is returned, or read by the backward: then the call's node holds it), so a later call never
overwrites an earlier call's outputs, and several calls may await their backward (gradient accumulation). Inputs,
parameters and incoming gradients are read in place; their shapes and strides are part of the guard.

Random ops draw anew per call: the recording hands each draw a marker seed and offset, the launches that take them
are patched with each replay's own draw from the generator (the same draws, in the same order, as the graph's
replay makes); the recording call's own launches, forward and backward, get its draws in place of the markers. A
value check an op makes on the host from a kernel's result (``host_check``: a class target out of range) runs again
after the same launch of each replay.

A recording is refused, and the signature replays its graph as ``mode="default"`` does (``explain()`` says why),
where the launches are not the whole of the work: device memory read on the host (other than by ``host_check``),
host data made after a random draw or written by a kernel (other host data, such as a Python number made a tensor,
is a constant of the signature, read in place), a pointer into memory the call neither made nor received, a result
that is not a buffer the call made, random numbers drawn in the backward.
"""
import weakref
from contextlib import nullcontext

from .._tensor import Tensor
from ..autograd.engine import grad as _autograd_grad
from ..autograd.function import Function, once_differentiable
from ..autograd.grad_mode import enable_grad
from ..jit.ir import flatten, unflatten
from .launches import LaunchList, Recorder, Unsafe, layout, rebuild

__all__ = ["ReducedOverhead"]


class _Replayed(Function):
    """One call of a recorded signature as one autograd node: ``forward(entry, *inputs_and_params)``. Its backward
    launches kernels and records nothing: differentiating it again (``create_graph``) raises, as PyTorch's
    ``once_differentiable`` does."""

    @staticmethod
    def forward(ctx, entry, *tensors):
        ctx.entry = entry
        if entry.bwd is None:
            return entry.record_forward(ctx, tensors)
        live, ctx.drawn = entry.fwd.run(tensors)
        ctx.live = [live[j] for j in entry.saved_slots]
        ctx.save_for_backward(*tensors)
        outs = tuple(rebuild(s, live, tensors) for s in entry.out_specs)
        ctx.mark_non_differentiable(*[o for o in outs if not o.dtype.is_floating_point])
        return outs

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads):
        entry = ctx.entry
        grads = tuple(g.contiguous() for g in grads)
        if "inner" in ctx.__dict__:
            return (None, *entry.record_backward(ctx, grads))
        tensors = ctx.saved_tensors
        anchors = (*tensors, *grads)
        live, _ = entry.bwd.run(anchors, ctx.live, ctx.drawn)
        return (None, *[rebuild(s, live, anchors) for s in entry.grad_specs])


class ReducedOverhead:
    """A signature's entry under ``mode="reduce-overhead"``: warm-up, recording, then launch replay (or, where a
    recording is refused, the graph's replay as ``"default"``). ``traced``: the signature's TracedModule;
    ``grad``: whether its calls record gradients; ``note``: where a refusal is reported."""

    def __init__(self, traced, grad, note):
        self.traced, self.grad, self.note = traced, grad, note
        self.calls = 0
        self.reason = None              # why this signature is not replayed from launches
        self.fwd = self.bwd = None
        self.rec = None                 # the forward's recording, until the backward's is made too
        self.pending = None             # weakref to the recording call's node, until its backward runs
        self.layout = None

    def _params(self):
        return [mod._parameters[attr] if is_p else mod._buffers[attr] for _, mod, attr, is_p in self.traced._lookup]

    def refuse(self, why):
        self.reason = why
        self.fwd = self.bwd = self.rec = None
        self.note(f"reduce-overhead: {why}: this signature replays its graph (mode='default')")

    def __call__(self, *inputs):
        self.calls += 1
        if self.reason is not None or self.calls == 1:
            return self.traced(*inputs)
        tensors = (*inputs, *self._params())
        if self.fwd is not None or self.rec is not None:
            if layout(tensors) != self.layout:
                return self.traced(*inputs)         # strides or parameters changed since the recording
            if self.grad and self.bwd is None:
                if self.pending is not None and self.pending() is not None:
                    return self.traced(*inputs)     # the recording call's backward is still to come
                self.rec = None                     # it was dropped without one: record again
        if self.rec is None and self.fwd is None:
            self.layout = layout(tensors)
        if self.grad:
            outs = _Replayed.apply(self, *tensors)
        elif self.fwd is None:
            outs = self.record_forward(None, tensors)
        else:
            live, _ = self.fwd.run(tensors)
            outs = tuple(rebuild(s, live, tensors) for s in self.out_specs)
        return unflatten(self.struct, lambda i: outs[self.where[i]] if i in self.where else self.consts[i])

    def record_forward(self, ctx, tensors):
        """The recording call: the graph's replay under the recorder (with its own autograd graph where gradients
        are recorded: ``ctx`` keeps it for ``record_backward``). Returns the tensor outputs."""
        n = len(tensors) - len(self.traced._lookup)
        inner = [t.detach().requires_grad_(t.requires_grad) if t.dtype.is_floating_point else t.detach()
                 for t in tensors[:n]]
        with enable_grad() if ctx is not None else nullcontext(), Recorder() as rec:
            result = self.traced(*inner)
        leaves, self.struct = flatten(result, lambda x: not isinstance(x, (tuple, list, dict)))
        outs = [x for x in leaves if isinstance(x, Tensor)]
        self.where = {i: k for k, i in enumerate(i for i, x in enumerate(leaves) if isinstance(x, Tensor))}
        self.consts = {i: x for i, x in enumerate(leaves) if not isinstance(x, Tensor)}
        try:
            if rec.unsafe:
                raise Unsafe(rec.unsafe)
            fwd = LaunchList(rec, tensors)
            self.out_specs = [fwd.describe(o) for o in outs]
            if ctx is None:
                rec.intact()
        except Unsafe as e:
            self.refuse(str(e))
        else:
            if ctx is None:
                fwd.plan({s[1] for s in self.out_specs})
                self.fwd = fwd
            else:                               # its storages stay alive until the backward is recorded
                self.rec = (fwd, rec)
                self.pending = weakref.ref(ctx)
        if ctx is None:
            return tuple(outs)
        ctx.inner = (inner + list(tensors[n:]), outs)
        ctx.real = rec.real                 # its graph's random ops hold markers: their backward needs these
        detached = tuple(o.detach() for o in outs)
        ctx.mark_non_differentiable(*[o for o in detached if not o.dtype.is_floating_point])
        return detached

    def record_backward(self, ctx, grads):
        """The recording call's backward: ``autograd.grad`` through the graph it kept, under the recorder while the
        forward's recording waits for it. Returns one gradient per forward tensor argument."""
        wrt_all, outs = ctx.inner            # kept: a retained outer graph may run backward again
        pairs = [(o, g) for o, g in zip(outs, grads) if o.requires_grad]
        wrt = [t for t in wrt_all if t.requires_grad]
        recording = self.rec is not None and self.bwd is None
        with Recorder(draws=False, real=ctx.real) as rec:
            got = _autograd_grad([o for o, _ in pairs], wrt, [g for _, g in pairs], retain_graph=True,
                                 allow_unused=True) if pairs and wrt else [None] * len(wrt)
        it = iter(got)
        result = [next(it) if t.requires_grad else None for t in wrt_all]
        if recording:
            try:
                if rec.unsafe:
                    raise Unsafe(rec.unsafe)
                self._finish(rec, (*wrt_all, *grads), result)
            except Unsafe as e:
                self.refuse(str(e))
        return result

    def _finish(self, rec, anchors, result):
        """Both recordings made: the backward's list reads the forward's storages it needs as ``saved``; the
        forward keeps those and its outputs past its last launch."""
        fwd, frec = self.rec
        frec.intact()
        rec.intact()
        made = [st for st in frec.created if id(st) in fwd.made]     # in the order of the forward's slots
        bwd = LaunchList(rec, anchors, made, draws=fwd.draws, constants=fwd.constants)
        first = len(anchors)
        used = sorted({j - first for i in range(len(bwd.launches)) for j in bwd.slots(i) if first <= j < bwd.n_fixed})
        bwd = LaunchList(rec, anchors, [made[i] for i in used], draws=fwd.draws, constants=fwd.constants)
        self.grad_specs = [None if g is None else bwd.describe(g, anchors) for g in result]
        bwd.plan({s[1] for s in self.grad_specs if s is not None and s[0] == "made"})
        self.saved_slots = [fwd.made[id(made[i])] for i in used]
        fwd.plan({s[1] for s in self.out_specs if s[0] == "made"} | set(self.saved_slots))
        self.fwd, self.bwd, self.rec = fwd, bwd, None
