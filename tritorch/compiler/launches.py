"""The launch recorder and the recorded launch lists of ``mode="reduce-overhead"`` (``replay.py`` says how they are
used): ``Recorder`` sees every Triton launch, storage, random draw and host check of a call and says what would make
the launches not the whole of its work; ``LaunchList`` names each recorded pointer by its slot (a tensor given per
call, a storage an earlier list made, or one this list makes, with its memory plan) and runs the launches again on
another call's buffers."""
import numpy as np

from .. import cuda
from .._storage import Storage
from .._tensor import Tensor
from ..kernels._common import CHECK_OBSERVERS
from ..kernels._launch import Ptr
from ..kernels.random import Generator
from ..profiler._launches import install

__all__ = ["Recorder", "LaunchList", "Unsafe", "layout", "rebuild"]


class Unsafe(Exception):
    """What makes a call's recorded launches not the whole of its work."""


class Recorder:
    """While active: every kernel launch (kernel, grid, args, kwargs) and every storage made, in order;
    ``unsafe`` names the first thing seen that the launches would not replay."""

    def __init__(self, draws=True, real=()):
        self.launches, self.created, self.checks, self.unsafe = [], [], [], None
        self.draws = [] if draws else None      # (generator, n) per random draw, in order
        self.real = list(real)                  # (seed, offset) the generator gave per draw, in order
        self.constants = []             # (storage, its host data) per upload
        self.reading = False            # in a ``host_check``: its read is replayed, not refused
        self.uploading = False          # in ``Storage.from_numpy``: its copy makes a constant, not refused

    def refuse(self, why):
        if self.unsafe is None and not self.reading and not self.uploading:
            self.unsafe = why

    def _upload(self, from_numpy, cls, flat, device, dtype):
        """Host data on ``cuda`` (a Python number made a tensor): with no device memory read on the host and no
        random draw before it, a constant of the signature, kept and read in place by every replay (``intact``
        checks that no kernel wrote into it)."""
        if device.type != "cuda":
            return from_numpy(cls, flat, device, dtype)
        if self.draws:
            self.refuse("host data made after a random draw")
        self.uploading = True
        try:
            st = from_numpy(cls, flat, device, dtype)
        finally:
            self.uploading = False
        self.constants.append((st, np.array(flat, copy=True)))
        return st

    def intact(self):
        """Raise unless every constant still holds its host data (run after the recording's last launch)."""
        for st, data in self.constants:
            if st.host_array().view(np.uint8).tobytes() != data.view(np.uint8).tobytes():
                raise Unsafe("a kernel wrote into host data")

    def _draw(self, gen, n, take):
        """A random op's draw of ``n`` counters: the generator moves on as usual, but the op gets the k-th draw's
        marker seed and offset (``_SEED + k``, ``_OFFSET + k * 2**40``, numbers of a stream no draw reaches), so that
        the launches that take them can be found and handed each replay's own draw; this call's launches get the
        generator's numbers (``_launch``)."""
        drawn = take(gen, n)
        if self.draws is None:
            self.refuse("random numbers drawn in the backward")
            return drawn
        self.draws.append((gen, n))
        self.real.append(drawn)
        k = len(self.draws) - 1
        return _SEED + k, _OFFSET + (k << 40)

    def _check(self, t, check):
        """``host_check``'s check, run now and kept to run again after the same launch of each replay."""
        self.checks.append((len(self.launches) - 1, t, check))
        self.reading = True
        try:
            return check(t.tolist())
        finally:
            self.reading = False

    def _launch(self, kernel, grid, args, kwargs, go):
        """Record the launch as the op made it (markers in place of its draws) and launch it with the numbers the
        markers stand for, so that the recording call's results are those of any other call."""
        self.launches.append((kernel, grid, args, kwargs))
        if not self.real:
            return go()
        real = lambda a: _real(a, self.real) if type(a) is int else a       # noqa: E731
        return go([real(a) for a in args], {k: real(v) for k, v in kwargs.items()})

    def __enter__(self):
        self._undo = [install(self._launch)]
        CHECK_OBSERVERS.append(self._check)
        self._undo.append(lambda: CHECK_OBSERVERS.remove(self._check))
        rec = self
        storage_init = Storage.__init__

        def init(st, *a, **k):
            storage_init(st, *a, **k)
            rec.created.append(st)

        def on_cuda(why, fn, device_of):
            def wrapped(*a, **k):
                if device_of(*a, **k).type == "cuda":
                    rec.refuse(why)
                return fn(*a, **k)
            return wrapped

        from_numpy = Storage.__dict__["from_numpy"].__func__
        np_get = Tensor.__dict__["_np"].fget
        take = Generator._take
        self._patch(Storage, "__init__", init)
        self._patch(Storage, "from_numpy", classmethod(lambda cls, flat, device, dtype:
                                                       rec._upload(from_numpy, cls, flat, device, dtype)))
        self._patch(Storage, "host_array", on_cuda("device memory read on the host", Storage.host_array,
                                                   lambda st: st.device))
        self._patch(Tensor, "_np", property(on_cuda("device memory used on the host", np_get,
                                                    lambda t: t._storage.device)))
        self._patch(Generator, "_take", lambda gen, n: rec._draw(gen, n, take))
        for name in ("_memcpy_htod", "_memcpy_dtoh"):
            fn = getattr(cuda, name)
            self._patch(cuda, name, lambda *a, fn=fn: (rec.refuse("a copy between host and device"), fn(*a))[1])
        return self

    def _patch(self, owner, name, value):
        orig = owner.__dict__[name]
        setattr(owner, name, value)
        self._undo.append(lambda: setattr(owner, name, orig))

    def __exit__(self, *exc):
        for undo in reversed(self._undo):
            undo()
        return False


_SEED = 0x5EED_7A3F_0000_0000
_OFFSET = 1 << 61


def _draw_of(a, n):
    """(k, 0) where int ``a`` is the marker seed of draw ``k`` < ``n``, (k, 1) where it is its marker offset; None
    where it is no marker; raises where it lies in a marker's range without being one (a draw changed before its
    launch)."""
    for part, (base, step) in enumerate(((_SEED, 1), (_OFFSET, 1 << 40))):
        if base <= a < base + (1 << 32 if part == 0 else n << 40):
            k, rest = divmod(a - base, step)
            if rest or k >= n:
                raise Unsafe("a random op's draw was changed before its launch")
            return k, part
    return None


def _real(a, real):
    """The number launch argument ``a`` stands for, given the draws' ``real`` (seed, offset): a marker seed is the
    draw's seed, a marker offset plus what an op added to it is the draw's offset plus that; else ``a`` itself."""
    if _SEED <= a < _SEED + len(real):
        return real[a - _SEED][0]
    if _OFFSET <= a < _OFFSET + (len(real) << 40):
        k, rest = divmod(a - _OFFSET, 1 << 40)
        return real[k][1] + rest
    return a


def _addr(t):
    return t._storage.ptr + t._offset * t.dtype.itemsize


def layout(tensors):
    """What a recording assumes of the tensors it reads in place."""
    return tuple((t._shape, t._stride, t.dtype, t._requires_grad) for t in tensors)


class LaunchList:
    """Recorded launches whose pointers name slots: ``anchors`` tensors given per call (read in place, by the
    offset of each pointer from the tensor's first element), ``saved`` storages given per call (made by an earlier
    list), and the storages the recording made, allocated per run at their first launch and dropped after their
    last unless kept (``keep``); ``constants`` (and the recording's uploads) are read where they are."""

    def __init__(self, rec, anchors, saved=(), keep=(), draws=None, constants=()):
        self.draws = rec.draws if draws is None else draws      # the draws the launches take, made per forward
        self.n_draws = len(self.draws)
        self.n_fixed = len(anchors) + len(saved)
        spans = [(t._storage.ptr, t._storage.ptr + t._storage.size * t.dtype.itemsize, _addr(t), j)
                 for j, t in enumerate(anchors)]
        spans += [(st.ptr, st.ptr + st.size * st.dtype.itemsize, st.ptr, j) for j, st in enumerate(saved, len(anchors))]
        self.constants = [*constants, *(st for st, _ in rec.constants)]     # read in place, kept alive here
        spans += [(st.ptr, st.ptr + st.size * st.dtype.itemsize, st.ptr, None) for st in self.constants]
        fixed = {id(st) for st in self.constants}
        self.made = {}                  # id(storage) -> slot, for the storages the recording made
        self.sizes = []                 # per made slot: (elements, device, dtype)
        for st in rec.created:
            if id(st) in fixed:
                continue
            j = self.n_fixed + len(self.sizes)
            self.made[id(st)] = j
            self.sizes.append((st.size, st.device, st.dtype))
            spans.append((st.ptr, st.ptr + st.size * st.dtype.itemsize, st.ptr, j))
        self.spans = spans
        self.launches = [(kernel, grid, args, kwargs, *self._patches(args, kwargs))
                         for kernel, grid, args, kwargs in rec.launches]
        self.checks = [[] for _ in self.launches]       # per launch: the host checks that follow it
        for i, t, check in rec.checks:
            if i < 0:
                raise Unsafe("a host check reads no kernel's result")
            self.checks[i].append((self.describe(t, anchors), check))
        self.plan(keep)

    def _slot(self, addr):
        """(slot, byte offset from its anchor) of a recorded address: the known buffer that holds it whose anchor
        is nearest below."""
        best = None
        for start, end, anchor, j in self.spans:
            if start <= addr < end and anchor <= addr and (best is None or anchor > best[0]):
                best = (anchor, j)
        if best is None:
            raise Unsafe("a launch points into memory the call neither made nor received")
        return best[1], addr - best[0]

    def _patches(self, args, kwargs):
        """Where a launch's arguments change per call: pointers, as (argument, slot, byte offset, dtype, view, bytes
        reached through it), and random draws, as (argument, draw, 0 for its seed or 1 for its offset)."""
        ptrs, draws = [], []
        for where, a in [*enumerate(args), *kwargs.items()]:
            if type(a) is int:
                hit = _draw_of(a, self.n_draws)
                if hit is not None:
                    draws.append((where, *hit))
            elif type(a) is Ptr:
                if a.addr == 0 or a.nbytes == 0:
                    continue                    # no element is read through it
                j, off = self._slot(a.addr)
                if j is not None:               # None: a constant, read where it is
                    ptrs.append((where, j, off, a.dtype, a.src, a.reach))
            elif hasattr(a, "data_ptr"):
                raise Unsafe(f"a launch takes a {type(a).__name__} as a pointer")
        return ptrs, draws

    def slots(self, i):
        """The slots launch ``i`` and its host checks read or write."""
        return {j for _, j, *_ in self.launches[i][4]} | {spec[1] for spec, _ in self.checks[i] if spec[0] == "made"}

    def plan(self, keep):
        """The memory plan: each made slot allocated at its first launch and dropped after its last, unless in
        ``keep`` (returned or read later)."""
        first, last = {}, {}
        for i in range(len(self.launches)):
            for j in self.slots(i):
                if j >= self.n_fixed:
                    first.setdefault(j, i)
                    last[j] = i
        self.keep = set(keep)
        n = len(self.launches)
        self.alloc_at = [[] for _ in range(n)]
        self.free_at = [[] for _ in range(n)]
        for j, i in first.items():
            self.alloc_at[i].append(j)
        for j, i in last.items():
            if j not in self.keep:
                self.free_at[i].append(j)
        self.unused_kept = [j for j in self.keep if j not in first]

    def run(self, anchors, saved=(), drawn=None):
        """Launch every recorded kernel on this call's buffers and random draws (``drawn``: (seed, offset) per draw;
        by default drawn now); returns {slot: storage} of the kept slots and the draws."""
        if drawn is None:
            drawn = [gen._take(n) for gen, n in self.draws]
        base = [None] * (self.n_fixed + len(self.sizes))
        for j, t in enumerate(anchors):
            base[j] = _addr(t)
        for j, st in enumerate(saved, len(anchors)):
            base[j] = st.ptr
        live = {}
        for j in self.unused_kept:
            live[j] = Storage.empty(*self.sizes[j - self.n_fixed])
        for (kernel, grid, args, kwargs, ptrs, draws), checks, new, done in zip(self.launches, self.checks,
                                                                                self.alloc_at, self.free_at):
            for j in new:
                st = live[j] = Storage.empty(*self.sizes[j - self.n_fixed])
                base[j] = st.ptr
            if ptrs or draws:
                args, kwargs = list(args), dict(kwargs)
                for where, value in [*((w, Ptr(base[j] + off, dt, None, src, reach))
                                       for w, j, off, dt, src, reach in ptrs),
                                     *((w, drawn[k][part]) for w, k, part in draws)]:
                    if type(where) is int:
                        args[where] = value
                    else:
                        kwargs[where] = value
            kernel.run(*args, grid=grid, warmup=False, **kwargs)
            for spec, check in checks:
                check(rebuild(spec, live, anchors).tolist())
            for j in done:
                del live[j]
        return live, drawn

    def describe(self, t, anchors=()):
        """How to rebuild tensor ``t`` from a run: ("made", slot, offset, shape, stride, dtype), or ("anchor", k)
        where ``t`` is anchor ``k`` itself."""
        for k, a in enumerate(anchors):
            if a is t or (a._storage.data is t._storage.data and a._offset == t._offset and
                          (a._shape, a._stride, a.dtype) == (t._shape, t._stride, t.dtype)):
                return ("anchor", k)
        j = self.made.get(id(t._storage))
        if j is None:
            raise Unsafe("a result is not a buffer the call made")
        return ("made", j, t._offset, t._shape, t._stride, t.dtype)


def rebuild(spec, live, anchors):
    if spec is None:
        return None
    if spec[0] == "anchor":
        return anchors[spec[1]]
    _, j, offset, shape, stride, dtype = spec
    return Tensor._make(live[j], offset, shape, stride, dtype)
