"""``profile``: an op mode that times every op call, plus the launch hook of ``_launches`` for the kernels;
``record_function``: a user-named range; ``ProfilerActivity``: which of the two a profile records."""
import contextlib
import enum
import json
import time

from .. import cuda
from .._device import INTERPRET
from .._modes import OpMode
from .._tensor import Tensor
from . import _launches
from ._events import EventList, FunctionEvent

__all__ = ["profile", "record_function", "ProfilerActivity"]

_RUNNING = []
"""The profile that is recording (at most one)."""


class ProfilerActivity(enum.Enum):
    """``CPU``: op calls and ``record_function`` ranges, host time. ``CUDA``: kernel launches (grid, bytes; device
    time on a real GPU)."""
    CPU = "CPU"
    CUDA = "CUDA"


def _shapes(args):
    # Tensor._shape, not .shape: reading an attribute through a published accessor would reach this mode again
    return [list(a._shape) if isinstance(a, Tensor) else [] for a in args]


class profile(OpMode):
    """``with tritorch.profiler.profile() as prof:`` records the op calls and kernel launches of its body.

    ``activities`` (default both ``ProfilerActivity`` members) picks what is recorded; ``record_shapes`` keeps each
    op's input shapes; ``on_trace_ready(prof)`` is called when the profile stops. ``profile_memory``,
    ``with_stack``, ``with_flops``, ``with_modules`` and ``use_cuda`` are accepted for PyTorch programs and record
    nothing more. One profile runs at a time: starting a second one while one runs is an error. Op calls from
    other threads are recorded too, into the same nesting, so profile one thread.
    """

    def __init__(self, activities=None, *, schedule=None, on_trace_ready=None, record_shapes=False,
                 profile_memory=False, with_stack=False, with_flops=False, with_modules=False, use_cuda=None,
                 experimental_config=None, acc_events=False):
        if schedule is not None:
            raise NotImplementedError("tritorch.profiler.profile: schedule= is not supported; profile the steps "
                                      "to measure in a `with profile()` block of their own")
        acts = set(ProfilerActivity) if activities is None else set(activities)
        bad = [a for a in acts if not isinstance(a, ProfilerActivity)]
        if bad:
            raise TypeError(f"tritorch.profiler.profile: activities must be ProfilerActivity members, got {bad}")
        if use_cuda is False:
            acts.discard(ProfilerActivity.CUDA)
        self.activities = acts
        self.record_shapes = record_shapes
        self.on_trace_ready = on_trace_ready
        self.profile_memory, self.with_stack, self.with_flops, self.with_modules = (
            profile_memory, with_stack, with_flops, with_modules)
        self._events = EventList()
        self._stack = []            # the open op events, outermost first
        self._restore = None
        self._timer, self._gpu = None, False
        self._t0 = None

    # ---- start / stop -------------------------------------------------------------------------------------------
    def start(self):
        if _RUNNING:
            raise RuntimeError("tritorch.profiler.profile: a profile is already running; nested or concurrent "
                               "profiles are not supported (stop the other one first)")
        self._events, self._stack = EventList(), []
        self._timer = None              # made at the first launch: a cpu program leaves the GPU untouched
        self._gpu = ProfilerActivity.CUDA in self.activities and not INTERPRET and cuda.is_available()
        _RUNNING.append(self)
        try:
            if ProfilerActivity.CUDA in self.activities:
                self._restore = _launches.install(self._launch)
            if ProfilerActivity.CPU in self.activities:
                OpMode.__enter__(self)
        except BaseException:
            self._uninstall()
            raise
        self._t0 = time.perf_counter_ns()
        return self

    def stop(self):
        if not _RUNNING or _RUNNING[0] is not self:
            return
        now = time.perf_counter_ns()
        self._uninstall()
        for ev in self._stack:          # ranges still open (stop() inside a record_function) end here
            ev.end_ns = now
        self._stack = []
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.finish()
            for ev in self._events:
                if ev.kind == "kernel" and ev.device_time_total is not None:
                    p = ev.cpu_parent
                    while p is not None:
                        p.device_time_total = (p.device_time_total or 0.0) + ev.device_time_total
                        p = p.cpu_parent
        if self.on_trace_ready is not None:
            self.on_trace_ready(self)

    def _uninstall(self):
        """Remove the mode and the launch hook, whatever fails on the way."""
        try:
            OpMode.__exit__(self, None, None, None)
        finally:
            try:
                if self._restore is not None:
                    self._restore()
            finally:
                self._restore = None
                if self in _RUNNING:
                    _RUNNING.remove(self)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def step(self):
        """Marks a step boundary in PyTorch's scheduled profiling; with no schedule it does nothing."""

    # ---- recording ----------------------------------------------------------------------------------------------
    def _open(self, name, kind, shapes=None):
        ev = FunctionEvent(len(self._events), name, kind, self._stack[-1] if self._stack else None,
                           time.perf_counter_ns(), shapes)
        self._events.append(ev)
        return ev

    def _close(self, ev):
        ev.end_ns = time.perf_counter_ns()
        if ev.cpu_parent is not None:
            ev.cpu_parent.child_ns += ev.end_ns - ev.start_ns

    def __op__(self, name, op, args, kwargs):
        ev = self._open(name, "op", _shapes(args) if self.record_shapes else None)
        self._stack.append(ev)
        try:
            return op(*args, **kwargs)
        finally:
            if self._stack and self._stack[-1] is ev:
                self._stack.pop()
            self._close(ev)

    def _launch(self, kernel, grid, args, kwargs, go):
        ev = self._open(_launches.kernel_name(kernel), "kernel")
        ev.grid = tuple(grid) if isinstance(grid, (tuple, list)) else grid
        ev.bytes = _launches.launch_bytes(args, kwargs)
        if self._gpu and self._timer is None:
            self._timer = _launches.CudaTimer()
        timer = self._timer
        start = timer.mark() if timer is not None else None
        try:
            return go()
        finally:
            ev.end_ns = time.perf_counter_ns()
            if timer is not None:
                timer.add(ev, start, timer.mark())

    # ---- results ------------------------------------------------------------------------------------------------
    def events(self):
        """Every recorded event (``FunctionEvent``) in the order they started: parents before what they contain."""
        return self._events

    def key_averages(self, group_by_input_shape=False, group_by_stack_n=0):
        """One averaged row per event name (and kind); ``.table()`` prints them."""
        return self._events.key_averages(group_by_input_shape)

    def kernel_launches(self, name=None):
        """How many kernels were launched (only those called ``name`` if given)."""
        return sum(1 for e in self._events if e.kind == "kernel" and (name is None or e.name == name))

    def kernel_bytes(self, name=None):
        """The launches' summed ``bytes`` (only kernels called ``name`` if given)."""
        return sum(e.bytes for e in self._events if e.kind == "kernel" and (name is None or e.name == name))

    def export_chrome_trace(self, path):
        """Write the events as a Chrome trace (chrome://tracing, Perfetto): one complete event per op or launch."""
        t0 = self._t0 or 0
        trace = []
        for e in self._events:
            args = {"depth": e.depth}
            if e.kind == "kernel":
                args.update(grid=str(e.grid), bytes=e.bytes, device_time_us=e.device_time_total)
            if e.input_shapes:
                args["input_shapes"] = str(e.input_shapes)
            trace.append({"name": e.name, "cat": e.kind, "ph": "X", "pid": 0, "tid": 0 if e.kind == "op" else 1,
                          "ts": (e.start_ns - t0) / 1e3, "dur": e.host_time_ns / 1e3, "args": args})
        with open(path, "w") as f:
            json.dump({"traceEvents": trace}, f)


class record_function(contextlib.ContextDecorator):
    """``with record_function("name"):`` (or as a decorator) records its body as one "op" event named ``name``,
    with the ops it calls nested in it; outside a profile (or one without CPU activity) it records nothing."""

    def __init__(self, name, args=None):
        if not isinstance(name, str):
            raise TypeError(f"record_function: name must be a str, got {type(name).__name__}")
        self.name, self.args = name, args
        self._ev = self._prof = None

    def __enter__(self):
        prof = _RUNNING[0] if _RUNNING else None
        if prof is not None and ProfilerActivity.CPU in prof.activities:
            self._prof, self._ev = prof, prof._open(self.name, "op")
            prof._stack.append(self._ev)
        return self

    def __exit__(self, *exc):
        prof, ev = self._prof, self._ev
        self._prof = self._ev = None
        if ev is not None and ev.end_ns is None:
            if ev in prof._stack:
                del prof._stack[prof._stack.index(ev):]
            prof._close(ev)
        return False
