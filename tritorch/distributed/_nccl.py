"""The ``nccl`` backend: collectives on ``cuda`` tensors through NCCL (the ``nccl4py`` binding, imported on first use).

Collectives go on the stream tritorch's kernels use, so later kernels see their results without a host wait (as
PyTorch's NCCL groups); ``async_op=True`` returns a work whose ``wait()`` polls a CUDA event against the group's
deadline and aborts the communicator when it passes. The unique id reaches the ranks through MPI under ``mpiexec``,
else through a one-shot TCP rendezvous at MASTER_ADDR:MASTER_PORT (``tritorch run`` sets them).
"""
import os
import sys
import threading
import time

from .. import _dtype as D
from .. import cuda as _cuda   # its _runtime() loads the CUDA library on first use, not at import
from .._device import device as _device
from .._tensor import Tensor
from ..autograd import no_grad
from ._work import Work, DistBackendError, DistTimeoutError, ReduceOp, drain_output
from . import _store, _mpi

nccl = None                         # nccl.core, imported on first use


def load_nccl():
    global nccl
    if nccl is None:
        try:
            import nccl.core as _n  # lazy: an optional dependency, needed only for backend="nccl"
        except ImportError as e:
            raise RuntimeError("tritorch.distributed: the 'nccl' backend needs the nccl4py binding and a GPU: "
                               f"pip install \"nccl4py[cu13]\" (or [cu12]) ({e})") from None
        nccl = _n
    return nccl


def _op(op):
    return {ReduceOp.SUM: nccl.SUM, ReduceOp.AVG: nccl.AVG, ReduceOp.MAX: nccl.MAX, ReduceOp.MIN: nccl.MIN,
            ReduceOp.PRODUCT: nccl.PROD}[op]


def init_world(rank, world_size, timeout, addr, port, device_id, state):
    """Create the default NCCL group."""
    load_nccl()
    from_mpi = False
    if rank is None or world_size is None:
        if any(v in os.environ for v in ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK")):
            MPI = _mpi.load_mpi()
            rank, world_size, from_mpi = MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size(), True
        else:
            rank, world_size = 0, 1
    if not 0 <= rank < world_size:
        raise RuntimeError(f"tritorch.distributed: rank {rank} is out of range for world size {world_size}")
    _cuda._runtime()._device()         # the GPU (tritorch uses device 0: `tritorch run` gives each rank its own GPU)
    if world_size == 1:
        uid = nccl.get_unique_id()
    elif from_mpi:
        MPI = _mpi.MPI
        raw = bytes(nccl.get_unique_id()) if rank == 0 else None
        uid = nccl.UniqueId.from_bytes(MPI.COMM_WORLD.bcast(raw, root=0))
    else:
        raw = bytes(nccl.get_unique_id()) if rank == 0 else b""
        uid = nccl.UniqueId.from_bytes(_store.share(raw, rank, world_size, addr, port, timeout))
    comm = nccl.Communicator.init(world_size, rank, uid)
    return NCCLGroup(comm, range(world_size), timeout)


class _NCCLWork(Work):
    """Done when the CUDA event recorded after the NCCL call has fired. The call is ordered on tritorch's stream, so
    later kernels see its result without a host wait (``stream_ordered``); the group's watchdog ends the process when
    one is not done by the deadline."""

    stream_ordered = True

    def __init__(self, name, group, finish=None):
        super().__init__(name, group)
        self._finish = finish
        self._event = _cuda._runtime()._stream.record() if _cuda._runtime()._stream is not None else None
        self._deadline = time.monotonic() + group.timeout
        group._watch(self)

    def _poll(self):
        ev = self._event
        if ev is not None and not ev.is_done:
            return False
        if self._finish is not None:
            f, self._finish = self._finish, None
            f()
        return True

    def _timeout_error(self, timeout):
        g = self._group
        g.comm.abort()
        return DistTimeoutError(f"tritorch.distributed: {self.name} (call #{self._seq} on {g.name}, nccl) timed out "
                                f"after {timeout:g} s: not every rank joined (NCCL does not say which: see the other "
                                "ranks' output); the communicator was aborted")


class NCCLGroup:
    """A process group over an NCCL communicator (``ranks``: the global ranks, in group order)."""

    backend = "nccl"

    def __init__(self, comm, ranks, timeout):
        self.comm = comm
        self.ranks = list(ranks)
        self.rank = comm.rank
        self.size = comm.nranks
        self.timeout = timeout
        self.seq = 0
        self.name = "the default group"
        self._inflight = []
        self._lock = threading.Lock()
        self._dog = None

    def _watch(self, work):
        """Track ``work`` for the watchdog (a daemon thread, started on first use)."""
        with self._lock:
            self._inflight.append(work)
            if len(self._inflight) > 64:
                self._inflight = [w for w in self._inflight if not (w._event is None or w._event.is_done)]
        if self._dog is None:
            self._dog = threading.Thread(target=self._watchdog, name="tritorch-nccl-watchdog", daemon=True)
            self._dog.start()

    def _watchdog(self):
        """A collective not done by its deadline means a rank did not join: say which and end this process, as
        PyTorch's NCCL watchdog does (the host may be blocked in a device synchronize that would never return)."""
        while self.comm is not None:
            time.sleep(0.1)
            now = time.monotonic()
            with self._lock:
                pend = [w for w in self._inflight if not (w._event is None or w._event.is_done)]
                self._inflight = pend
            late = [w for w in pend if now > w._deadline]
            if late:
                w = late[0]
                print(f"tritorch.distributed: {w.name} (call #{w._seq} on {self.name}, nccl) timed out after "
                      f"{self.timeout:g} s: not every rank joined (NCCL does not say which: see the other ranks' "
                      "output); aborting the communicator and this process", file=sys.stderr, flush=True)
                drain_output()
                try:
                    self.comm.abort()
                finally:
                    os._exit(1)

    def _buf(self, t, what):
        if t.device.type != "cuda":
            raise DistBackendError(f"tritorch.distributed.{what}: the 'nccl' backend needs cuda tensors, got "
                                   f"{t.device}; use backend 'mpi' for cpu tensors")
        if t.dtype is D.bool_:
            raise DistBackendError(f"tritorch.distributed.{what}: NCCL has no bool type; convert to uint8")
        return t.detach()

    def _work(self, name, finish=None):
        return _NCCLWork(name, self, finish)

    def _stream(self):
        return _cuda._runtime().stream_handle()

    def barrier(self):
        self.seq += 1
        buf = _barrier_buf()
        self.comm.allreduce(buf, buf, nccl.SUM, stream=self._stream())
        return self._work("barrier")

    def all_reduce(self, t, op):
        self.seq += 1
        c = t if t.is_contiguous() else t.contiguous()
        b = self._buf(c, "all_reduce")
        self.comm.allreduce(b, b, _op(op), stream=self._stream())
        return self._work("all_reduce", None if c is t else lambda: _copy_back(t, c))

    def broadcast(self, t, root):
        self.seq += 1
        c = t if t.is_contiguous() else t.contiguous()
        b = self._buf(c, "broadcast")
        self.comm.broadcast(b, b, root, stream=self._stream())
        return self._work("broadcast", None if c is t else lambda: _copy_back(t, c))

    def all_gather(self, outs, t):
        self.seq += 1
        src = self._buf(t.contiguous(), "all_gather")
        flat = _empty(self.size * t.numel(), t.dtype, t.device)
        self.comm.allgather(src, flat, stream=self._stream())
        for i, o in enumerate(outs):
            _copy_back(o, flat[i * t.numel():(i + 1) * t.numel()].view(t.shape))
        return self._work("all_gather")

    def all_gather_into_tensor(self, out, t):
        self.seq += 1
        oc = out if out.is_contiguous() else out.contiguous()
        self.comm.allgather(self._buf(t.contiguous(), "all_gather_into_tensor"), self._buf(oc, "all_gather"),
                            stream=self._stream())
        if oc is not out:
            _copy_back(out, oc)
        return self._work("all_gather_into_tensor")

    def reduce_scatter_tensor(self, out, t, op):
        self.seq += 1
        oc = out if out.is_contiguous() else out.contiguous()
        self.comm.reduce_scatter(self._buf(t.contiguous(), "reduce_scatter_tensor"),
                                 self._buf(oc, "reduce_scatter_tensor"), _op(op), stream=self._stream())
        if oc is not out:
            _copy_back(out, oc)
        return self._work("reduce_scatter_tensor")

    def send(self, t, peer, tag):
        self.seq += 1
        self.comm.send(self._buf(t.contiguous(), "send"), peer, stream=self._stream())
        return self._work("send")

    def recv(self, t, peer, tag):
        if peer is None:
            raise DistBackendError("tritorch.distributed.recv: the 'nccl' backend needs src (no receive from any rank)")
        self.seq += 1
        c = t if t.is_contiguous() else t.contiguous()
        self.comm.recv(self._buf(c, "recv"), peer, stream=self._stream())
        w = self._work("recv", None if c is t else lambda: _copy_back(t, c))
        w.source = self.ranks[peer]
        return w

    def new_subgroup(self, ranks, timeout):
        member = self.rank in ranks
        sub = self.comm.split(0 if member else None, self.rank)
        if not member:
            return None
        return NCCLGroup(sub, [self.ranks[r] for r in ranks], timeout)

    def abort(self, why, code=1):
        drain_output()
        try:
            self.comm.abort()
        finally:
            os._exit(code)

    def destroy(self):
        comm, self.comm = self.comm, None
        try:
            comm.destroy()
        except Exception:      # noqa: BLE001  (teardown is best effort)
            pass


_BARRIER = []


def _barrier_buf():
    if not _BARRIER:
        _BARRIER.append(_empty(1, D.float32, "cuda"))
    return _BARRIER[0].detach()


def _empty(n, dtype, device):
    return Tensor._empty((n,), dtype, _device(device) if isinstance(device, str) else device)


def _copy_back(dst, src):
    with no_grad():
        dst.copy_(src)
