"""What a profile records: one ``FunctionEvent`` per op call or kernel launch, their averages per name
(``FunctionEventAvg``), and ``EventList``, a list of either that prints as a table. PyTorch's names; times in
microseconds (``*_time_total``), host times from ``time.perf_counter_ns``."""
__all__ = ["FunctionEvent", "FunctionEventAvg", "EventList", "SORT_KEYS"]


class FunctionEvent:
    """One op call (``kind == "op"``: a published op or a ``record_function`` range) or one kernel launch
    (``kind == "kernel"``).

    ``depth`` is the nesting level (0: called by the program itself; an op that another op calls, or a kernel an op
    launches, sits one level below it) and ``cpu_parent`` the enclosing op event (None at depth 0). ``grid`` and
    ``bytes`` are a launch's (None for ops): ``bytes`` sums the extents of the tensors the kernel is handed, each
    once (see ``tritorch.profiler``). ``device_time_total`` is the GPU time in microseconds measured with CUDA
    events (a launch) or the sum over the launches below it (an op); None without a GPU.
    """

    __slots__ = ("id", "name", "kind", "depth", "cpu_parent", "start_ns", "end_ns", "child_ns", "grid", "bytes",
                 "device_time_total", "input_shapes")
    count = 1

    def __init__(self, id, name, kind, parent, start_ns, input_shapes=None):
        self.id, self.name, self.kind, self.cpu_parent = id, name, kind, parent
        self.depth = 0 if parent is None else parent.depth + 1
        self.start_ns, self.end_ns, self.child_ns = start_ns, None, 0
        self.grid = self.bytes = self.device_time_total = None
        self.input_shapes = input_shapes if input_shapes is not None else []

    key = property(lambda self: self.name)

    @property
    def host_time_ns(self):
        """Host nanoseconds from call to return (a launch: the launch call; in the interpreter, the whole run)."""
        return 0 if self.end_ns is None else self.end_ns - self.start_ns

    @property
    def cpu_time_total(self):
        return self.host_time_ns / 1e3

    cpu_time = cpu_time_total

    @property
    def self_cpu_time_total(self):
        """Host time less that of the op events nested in it (kernel launches stay in their op's self time)."""
        return (self.host_time_ns - self.child_ns) / 1e3

    @property
    def device_time(self):
        return self.device_time_total

    cuda_time_total = device_time
    @property
    def self_device_time_total(self):
        """A launch's device time; 0 for an op (its device time is its launches'); None without a GPU."""
        if self.device_time_total is None or self.kind == "kernel":
            return self.device_time_total
        return 0.0

    def __repr__(self):
        extra = f", grid={self.grid}, bytes={self.bytes}" if self.kind == "kernel" else ""
        return (f"<FunctionEvent id={self.id} name={self.name} kind={self.kind} depth={self.depth} "
                f"cpu_time_total={self.cpu_time_total:.3f}us{extra}>")


class FunctionEventAvg:
    """The events of one name (and kind, and with ``group_by_input_shape`` input shapes) added up: ``count`` calls
    or launches, summed times and bytes."""

    def __init__(self, name, kind, input_shapes=None):
        self.key = self.name = name
        self.kind, self.input_shapes = kind, input_shapes
        self.count = 0
        self.cpu_time_total = self.self_cpu_time_total = 0.0
        self.device_time_total = self.self_device_time_total = None
        self.bytes = 0 if kind == "kernel" else None

    def add(self, ev):
        self.count += 1
        self.cpu_time_total += ev.cpu_time_total
        self.self_cpu_time_total += ev.self_cpu_time_total
        if ev.device_time_total is not None:
            self.device_time_total = (self.device_time_total or 0.0) + ev.device_time_total
            self.self_device_time_total = (self.self_device_time_total or 0.0) + ev.self_device_time_total
        if ev.bytes is not None:
            self.bytes += ev.bytes
        return self

    cpu_time = property(lambda self: self.cpu_time_total / max(self.count, 1))
    device_time = property(lambda self: None if self.device_time_total is None
                           else self.device_time_total / max(self.count, 1))
    cuda_time_total = property(lambda self: self.device_time_total)

    def __repr__(self):
        return (f"<FunctionEventAvg name={self.name} kind={self.kind} count={self.count} "
                f"cpu_time_total={self.cpu_time_total:.3f}us bytes={self.bytes}>")


SORT_KEYS = {
    "cpu_time_total": "cpu_time_total", "self_cpu_time_total": "self_cpu_time_total", "cpu_time": "cpu_time",
    "device_time_total": "device_time_total", "cuda_time_total": "device_time_total",
    "self_device_time_total": "self_device_time_total", "self_cuda_time_total": "self_device_time_total",
    "device_time": "device_time", "cuda_time": "device_time", "count": "count", "bytes": "bytes",
}
"""``table(sort_by=...)``'s keys (PyTorch's, the ``cuda_`` ones as aliases of ``device_``), sorted descending."""


def _us(t):
    if t is None:
        return "--"
    if t >= 1e6:
        return f"{t / 1e6:.3f}s"
    if t >= 1e3:
        return f"{t / 1e3:.3f}ms"
    return f"{t:.3f}us"


def _bytes(n):
    if n is None:
        return "--"
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


class EventList(list):
    """A list of ``FunctionEvent`` (``prof.events()``) or ``FunctionEventAvg`` (``key_averages()``)."""

    def key_averages(self, group_by_input_shape=False):
        """One ``FunctionEventAvg`` per (name, kind), or per (name, kind, input shapes), in first-seen order."""
        rows = {}
        for ev in self:
            shapes = str(ev.input_shapes) if group_by_input_shape else None
            k = (ev.name, ev.kind, shapes)
            row = rows.get(k)
            if row is None:
                row = rows[k] = FunctionEventAvg(ev.name, ev.kind, ev.input_shapes if group_by_input_shape else None)
            row.add(ev)
        return EventList(rows.values())

    def table(self, sort_by=None, row_limit=100, max_name_column_width=55, header=None, top_level_events_only=False):
        """The rows as a text table, sorted by ``sort_by`` (a key of ``SORT_KEYS``, descending; None keeps the
        order), at most ``row_limit`` rows (negative: all)."""
        rows = list(self)
        if top_level_events_only:
            rows = [r for r in rows if getattr(r, "depth", 0) == 0]
        if sort_by is not None:
            if sort_by not in SORT_KEYS:
                raise ValueError(f"table(): unknown sort_by {sort_by!r}; expected one of {', '.join(SORT_KEYS)}")
            attr = SORT_KEYS[sort_by]
            rows.sort(key=lambda r: getattr(r, attr) or 0, reverse=True)
        if row_limit is not None and row_limit >= 0:
            rows = rows[:row_limit]
        width = min(max([len("Name")] + [len(r.name) for r in rows]), max_name_column_width)
        heads = ["Kind", "Self CPU total", "CPU total", "CPU time avg", "Device total", "# of Calls", "Bytes"]
        cols = [6, 15, 12, 13, 13, 11, 11]
        shapes = any(getattr(r, "input_shapes", None) for r in rows)
        line = "-" * (width + sum(c + 2 for c in cols))
        out = [header] if header else []
        out += [line, "Name".ljust(width) + "".join("  " + h.rjust(c) for h, c in zip(heads, cols))
                + ("  Input Shapes" if shapes else ""), line]
        for r in rows:
            name = r.name if len(r.name) <= width else r.name[:width - 3] + "..."
            vals = [r.kind, _us(r.self_cpu_time_total), _us(r.cpu_time_total), _us(r.cpu_time),
                    _us(r.device_time_total), str(r.count), _bytes(r.bytes)]
            out.append(name.ljust(width) + "".join("  " + v.rjust(c) for v, c in zip(vals, cols))
                       + (f"  {r.input_shapes}" if shapes else ""))
        out.append(line)
        ops = [r for r in self if r.kind == "op"]
        kernels = [r for r in self if r.kind == "kernel"]
        out.append(f"Self CPU time total: {_us(sum(r.self_cpu_time_total for r in ops))}")
        out.append(f"Kernel launches: {sum(r.count for r in kernels)}, kernel bytes: "
                   f"{_bytes(sum(r.bytes or 0 for r in kernels))}")
        return "\n".join(out) + "\n"
