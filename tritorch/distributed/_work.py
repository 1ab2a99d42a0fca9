"""Reduce ops, errors and the work handle that every collective returns with ``async_op=True``."""
import fcntl
import os
import stat
import struct
import sys
import termios
import time

__all__ = ["ReduceOp", "Work", "DistError", "DistBackendError", "DistTimeoutError"]


class DistError(RuntimeError):
    """An error of ``tritorch.distributed``."""


class DistBackendError(DistError):
    """A collective called with different arguments on different ranks, or a backend failure."""


class DistTimeoutError(DistError, TimeoutError):
    """A collective did not complete in time (the message names it and the ranks that did not join)."""


class ReduceOp:
    """The reductions of ``all_reduce`` and ``reduce_scatter_tensor``."""
    SUM = "sum"
    AVG = "avg"
    MAX = "max"
    MIN = "min"
    PRODUCT = "product"
    PROD = "product"

    class RedOpType:      # PyTorch spells ``ReduceOp.RedOpType.SUM`` too
        SUM, AVG, MAX, MIN, PRODUCT = "sum", "avg", "max", "min", "product"


def drain_output(limit=5.0):
    """Flush stdout and stderr and wait (at most ``limit`` s) until the reader of each pipe has taken every byte.

    MPI_Abort and ``os._exit`` end a job at once: a traceback still in the pipe to mpiexec's proxy would be lost
    (seen on a loaded machine: the job failed with no output at all). The short sleep after covers the proxy's own
    forwarding to mpiexec."""
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except (OSError, ValueError):
            pass
    deadline = time.monotonic() + limit
    for fd in (1, 2):
        try:
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                continue
            while struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0] and time.monotonic() < deadline:
                time.sleep(0.01)
        except OSError:
            continue
    time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))


_OP_NAMES = {"sum": ReduceOp.SUM, "avg": ReduceOp.AVG, "mean": ReduceOp.AVG, "max": ReduceOp.MAX,
             "min": ReduceOp.MIN, "product": ReduceOp.PRODUCT, "prod": ReduceOp.PRODUCT}


def reduce_op(op):
    """Normalise ``op`` (a ReduceOp value or its name) or raise a clear error."""
    r = _OP_NAMES.get(str(op).lower().rsplit(".", 1)[-1]) if op is not None else None
    if r is None:
        raise ValueError(f"tritorch.distributed: unknown reduce op {op!r}; use ReduceOp.SUM, AVG, MAX, MIN or PRODUCT")
    return r


class Work:
    """The handle of a collective started with ``async_op=True``: ``wait()``, ``is_completed()``."""

    stream_ordered = False      # True (nccl): later kernels on the stream see the result without a host wait

    def __init__(self, name, group):
        self.name = name
        self._group = group
        self._seq = group.seq
        self._error = None
        self.source = None

    def _poll(self):
        """Make progress; True once complete."""
        raise NotImplementedError

    def _timeout_error(self, timeout):
        return DistTimeoutError(f"tritorch.distributed: {self.name} timed out after {timeout:g} s")

    def is_completed(self):
        return self._poll()

    def is_success(self):
        return self._poll() and self._error is None

    def exception(self):
        return self._error

    def wait(self, timeout=None):
        """Block until done (at most ``timeout`` seconds, default the group's); raise its error if it failed."""
        t = self._group.timeout if timeout is None else _seconds(timeout)
        deadline = time.monotonic() + t
        spins = 0
        while not self._poll():
            if time.monotonic() > deadline:
                raise self._timeout_error(t)
            spins += 1
            if spins > 200:
                time.sleep(min(0.001, 1e-5 * (spins - 200)))
        if self._error is not None:
            raise self._error
        return True

    def result(self):
        self.wait()
        return [self.source] if self.source is not None else []

    def get_future(self):
        return _Future(self)


class _Future:
    def __init__(self, work):
        self._work = work

    def wait(self):
        return self._work.result()

    def done(self):
        return self._work.is_completed()


class DoneWork(Work):
    """A work that completed at once (world size 1, or a blocking backend)."""

    def __init__(self, name, group, source=None):
        super().__init__(name, group)
        self.source = source

    def _poll(self):
        return True


def _seconds(timeout):
    if hasattr(timeout, "total_seconds"):
        return float(timeout.total_seconds())
    t = float(timeout)
    if not t > 0:
        raise ValueError(f"tritorch.distributed: timeout must be positive, got {timeout!r}")
    return t


for _c in (DistError, DistBackendError, DistTimeoutError, ReduceOp, Work):
    _c.__module__ = "tritorch.distributed"
