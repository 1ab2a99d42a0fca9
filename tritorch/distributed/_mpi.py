"""The ``mpi`` backend: collectives on host tensors through mpi4py (MPICH from the ``mpich`` wheel, or a system MPI).

Every collective runs as MPI non-blocking calls polled against a deadline, so nothing blocks for ever:

1. a small metadata record (collective, sequence number, dtype, shape, op, root) goes to every peer of the group on a
   duplicate of the group's communicator; the records arriving are the ranks that joined, and they let every rank
   check shapes and dtypes before any data moves (all ranks see the same records, so all raise the same error);
2. the data moves through ``Iallreduce``/``Ibcast``/``Iallgather``/``Ireduce_scatter_block``/``Isend``/``Irecv`` on
   the group's communicator, launched in sequence order on every rank.

A deadline that passes names the collective and the ranks whose record never came.
"""
import numpy as np

from .. import _dtype as D
from ._host import host_array as _host_of
from ._work import Work, DistBackendError, DistTimeoutError, ReduceOp, drain_output

MPI = None                       # mpi4py.MPI, imported on first use


def load_mpi():
    """Import mpi4py's MPI module (initialising MPI) or raise a clear error."""
    global MPI
    if MPI is None:
        try:
            from mpi4py import MPI as _M  # lazy: an optional dependency
        except ImportError as e:
            raise RuntimeError("tritorch.distributed: the 'mpi' backend needs mpi4py and an MPI library: "
                               "pip install \"tritorch[dist]\" (mpi4py + the mpich wheel) or a system MPI "
                               f"({e})") from None
        MPI = _M
    return MPI


_META_TAG = 0                    # collectives' records on the control communicator; a p2p record uses 1 + tag
_META_LEN = 16                   # seq, kind, dtype, op, root, numel, ndim, shape[8], extra
_KINDS = ["barrier", "all_reduce", "broadcast", "all_gather", "all_gather_into_tensor", "reduce_scatter_tensor",
          "send", "recv"]
_DTYPES = [D.float32, D.float64, D.float16, D.bfloat16, D.int8, D.uint8, D.int16, D.int32, D.int64, D.bool_]
_OPS = [None, ReduceOp.SUM, ReduceOp.AVG, ReduceOp.MAX, ReduceOp.MIN, ReduceOp.PRODUCT]


def _mpi_type(npdt):
    """The MPI datatype that reduces elements of ``npdt`` natively (None: needs a float32 stage)."""
    return {np.dtype(np.float32): MPI.FLOAT, np.dtype(np.float64): MPI.DOUBLE, np.dtype(np.int8): MPI.INT8_T,
            np.dtype(np.uint8): MPI.UINT8_T, np.dtype(np.int16): MPI.INT16_T, np.dtype(np.int32): MPI.INT32_T,
            np.dtype(np.int64): MPI.INT64_T}.get(np.dtype(npdt))


def _mpi_op(op, is_bool):
    if is_bool:    # logical: sum/max = or, product/min = and (as NCCL on bool)
        return {ReduceOp.SUM: MPI.MAX, ReduceOp.MAX: MPI.MAX, ReduceOp.PRODUCT: MPI.MIN, ReduceOp.MIN: MPI.MIN}[op]
    return {ReduceOp.SUM: MPI.SUM, ReduceOp.AVG: MPI.SUM, ReduceOp.MAX: MPI.MAX, ReduceOp.MIN: MPI.MIN,
            ReduceOp.PRODUCT: MPI.PROD}[op]


def _avg_inplace(a, n):
    """Divide by ``n`` in place (integers: truncated toward zero, as C and NCCL do)."""
    if a.dtype.kind == "f":
        a /= n
    else:
        q = np.abs(a) // n
        a[...] = np.where(a < 0, -q, q)


def _describe(rec):
    kind, dt, ndim = int(rec[1]), int(rec[2]), int(rec[6])
    shape = tuple(int(s) for s in rec[7:7 + ndim])
    return f"{_KINDS[kind] if 0 <= kind < len(_KINDS) else kind} {_DTYPES[dt] if 0 <= dt < len(_DTYPES) else '?'} " \
           f"shape {shape}"


class MPIGroup:
    """A process group over an MPI communicator (``ranks``: the global ranks, in group order)."""

    backend = "mpi"

    def __init__(self, comm, ranks, timeout):
        self.comm = comm
        self.ctl = comm.Dup()
        self.ranks = list(ranks)
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.timeout = timeout
        self.seq = 0
        self.pending = []          # works in launch order
        self.name = "the default group"

    # ---- progress ---------------------------------------------------------------------------------------------------
    def progress(self):
        """Advance pending works: finish metadata exchanges and launch data moves in sequence order."""
        i = 0
        pend = self.pending
        while i < len(pend):
            w = pend[i]
            if w._state == "meta":
                if not MPI.Request.Testall(w._meta_reqs):
                    break            # later works must not launch their data before this one
                w._check_meta()
                if w._error is None:
                    w._launch()
                else:
                    w._state = "done"
            if w._state == "data" and MPI.Request.Testall(w._data_reqs):
                w._finish()
            if w._state == "done":
                pend.pop(i)
            else:
                i += 1

    def missing(self, w):
        """Global ranks whose metadata record for ``w`` has not arrived."""
        out = []
        for peer, req in w._meta_peers:
            if not req.Test():
                out.append(self.ranks[peer] if peer >= 0 else "any")
        return out

    # ---- collectives ------------------------------------------------------------------------------------------------
    def collective(self, kind, arr, out=None, op=None, root=0, extra=0, finish=None, check=None):
        """Start collective ``kind`` on host array ``arr`` (result in ``out``); returns its Work."""
        self.seq += 1
        w = _MPIWork(self, kind, arr, out, op, root, extra, finish, check)
        rec = w._record
        w._recs = np.zeros((self.size, _META_LEN), np.int64)
        w._recs[self.rank] = rec
        reqs, peers = [], []
        for p in range(self.size):
            if p != self.rank:
                reqs.append(self.ctl.Isend(rec, dest=p, tag=_META_TAG))
                r = self.ctl.Irecv(w._recs[p], source=p, tag=_META_TAG)
                reqs.append(r)
                peers.append((p, r))
        w._meta_reqs, w._meta_peers = reqs, peers
        self.pending.append(w)
        self.progress()
        return w

    def p2p(self, kind, arr, peer, tag, finish=None):
        """``send`` to / ``recv`` from group rank ``peer`` (None: any source)."""
        w = _MPIWork(self, kind, arr, arr, None, -1 if peer is None else peer, tag, finish, None)
        w._p2p = True
        src = MPI.ANY_SOURCE if peer is None else peer
        if kind == "send":
            w._record[4] = self.rank            # the receiver learns the sender from the record (any-source recv)
            w._meta_reqs, w._meta_peers = [], []
            w._data_reqs = [self.ctl.Isend(w._record, dest=peer, tag=1 + tag),
                            self.comm.Isend(_bytes(arr), dest=peer, tag=tag)]
            w._state = "data"
        else:
            w._recs = np.zeros((1, _META_LEN), np.int64)
            r = self.ctl.Irecv(w._recs[0], source=src, tag=1 + tag)
            w._meta_reqs, w._meta_peers = [r], [(-1 if peer is None else peer, r)]
            w._state = "p2p-meta"
        return w

    # ---- tensor-level operations (tensors -> host arrays; see tritorch.distributed) ---------------------------------
    def barrier(self):
        return self.collective("barrier", None)

    def all_reduce(self, t, op):
        a, back = _host_of(t)
        return self.collective("all_reduce", a, op=op, finish=back)

    def broadcast(self, t, root):
        a, back = _host_of(t)
        return self.collective("broadcast", a, root=root, finish=back if self.rank != root else None)

    def all_gather(self, outs, t):
        a, _ = _host_of(t)
        buf = np.empty((self.size,) + a.shape, a.dtype)

        def fin():
            for i, o in enumerate(outs):
                oa, back = _host_of(o)
                oa[...] = buf[i]
                back()
        return self.collective("all_gather", a, out=buf, finish=fin)

    def all_gather_into_tensor(self, out, t):
        a, _ = _host_of(t)
        oa, back = _host_of(out)
        return self.collective("all_gather_into_tensor", a, out=oa, finish=back)

    def reduce_scatter_tensor(self, out, t, op):
        a, _ = _host_of(t)               # only read: the reduction goes into ``out`` (or a float32 stage)
        oa, back = _host_of(out)
        return self.collective("reduce_scatter_tensor", a, out=oa, op=op, finish=back)

    def send(self, t, peer, tag):
        a, _ = _host_of(t)
        return self.p2p("send", a, peer, tag)

    def recv(self, t, peer, tag):
        a, back = _host_of(t)
        return self.p2p("recv", a, peer, tag, finish=back)

    def new_subgroup(self, ranks, timeout):
        """Split this group (every rank calls it); None on ranks outside ``ranks``."""
        self.barrier().wait()               # a rank that never comes is a timeout here, not a hang in Split
        member = self.rank in ranks
        comm = self.comm.Split(0 if member else MPI.UNDEFINED, self.rank)
        if not member:
            return None
        return MPIGroup(comm, [self.ranks[r] for r in ranks], timeout)

    def abort(self, why, code=1):
        """End every process of the job (MPI_Abort), once this rank's output has reached mpiexec."""
        drain_output()
        MPI.COMM_WORLD.Abort(code)

    def destroy(self):
        for c in (self.ctl, self.comm):
            if c != MPI.COMM_WORLD and c != MPI.COMM_NULL:
                try:
                    c.Free()
                except Exception:      # noqa: BLE001  (freeing is best effort at teardown)
                    pass


def _bytes(a):
    return [a.reshape(-1).view(np.uint8), MPI.BYTE]


class _MPIWork(Work):
    def __init__(self, group, kind, arr, out, op, root, extra, finish, check):
        super().__init__(kind, group)
        self._arr, self._out, self._op, self._root, self._extra = arr, out, op, root, extra
        self._fin, self._check = finish, check
        self._state = "meta"
        self._data_reqs = []
        self._p2p = False
        rec = np.zeros(_META_LEN, np.int64)
        rec[0] = group.seq
        rec[1] = _KINDS.index(kind)
        rec[2] = _DTYPES.index(D.from_numpy_dtype(arr.dtype)) if arr is not None else -1
        rec[3] = _OPS.index(op)
        rec[4] = root
        shape = arr.shape if arr is not None else ()
        if len(shape) > 8:
            shape = (int(np.prod(shape)),)
        rec[5] = arr.size if arr is not None else 0
        rec[6] = len(shape)
        rec[7:7 + len(shape)] = shape
        rec[15] = extra
        self._record = rec

    # ---- the state machine ----------------------------------------------------------------------------------------
    def _check_meta(self):
        g = self._group
        recs = self._recs
        mine = recs[g.rank]
        bad = [p for p in range(g.size) if not np.array_equal(recs[p][:7 + 8], mine[:7 + 8])
               or recs[p][15] != mine[15]]
        if bad:
            lines = [f"  rank {g.ranks[p]}: {_describe(recs[p])}"
                     + (f", op {_OPS[int(recs[p][3])]}" if recs[p][3] > 0 else "")
                     + (f", root {g.ranks[int(recs[p][4])]}" if _KINDS[int(recs[p][1])] == 'broadcast' else "")
                     + f" (call #{int(recs[p][0])})" for p in range(g.size)]
            self._error = DistBackendError(
                f"tritorch.distributed: {self.name} on {g.name}: the ranks called it with different arguments "
                "(each collective needs the same shape, dtype, op and root on every rank, in the same order):\n"
                + "\n".join(lines))

    def _launch(self):
        g = self._group
        a, out, op = self._arr, self._out, self._op
        k = self.name
        reqs = []
        if k == "barrier":
            pass
        elif k == "all_reduce" or k == "reduce_scatter_tensor":
            is_bool = a.dtype == np.bool_
            stage = a
            if is_bool:
                stage = a.view(np.uint8)
            elif _mpi_type(a.dtype) is None:        # float16 / bfloat16: reduce in float32
                stage = a.astype(np.float32)
            self._stage = stage
            mop = _mpi_op(op, is_bool)
            if k == "all_reduce":
                reqs.append(g.comm.Iallreduce(MPI.IN_PLACE, [stage, _mpi_type(stage.dtype)], op=mop))
            else:
                n = stage.size // g.size
                if stage is a:
                    rb = out if out.dtype == a.dtype and not is_bool else np.empty(n, a.dtype)
                else:
                    rb = np.empty(n, stage.dtype)
                self._rbuf = rb
                reqs.append(g.comm.Ireduce_scatter_block([stage, _mpi_type(stage.dtype)],
                                                         [rb.reshape(-1).view(stage.dtype), _mpi_type(stage.dtype)],
                                                         op=mop))
        elif k == "broadcast":
            reqs.append(g.comm.Ibcast(_bytes(a), root=self._root))
        elif k in ("all_gather", "all_gather_into_tensor"):
            reqs.append(g.comm.Iallgather(_bytes(a), _bytes(out)))
        else:
            raise AssertionError(k)
        self._data_reqs = reqs
        self._state = "data"

    def _finish(self):
        k = self.name
        g = self._group
        if k in ("all_reduce", "reduce_scatter_tensor"):
            res = self._stage if k == "all_reduce" else self._rbuf
            if self._op == ReduceOp.AVG:
                _avg_inplace(res, g.size)
            tgt = self._arr if k == "all_reduce" else self._out
            if res is not tgt:
                np.copyto(tgt.reshape(-1), res.reshape(-1), casting="unsafe")
        if self._fin is not None:
            self._fin()
        self._state = "done"

    def _poll_p2p(self):
        if self._state == "p2p-meta" and MPI.Request.Testall(self._meta_reqs):
            rec = self._recs[0]
            mine = self._record
            g = self._group
            g_src = int(rec[4])               # the sender wrote its own group rank there
            self.source = g.ranks[g_src]
            if int(rec[5]) != int(mine[5]) or int(rec[2]) != int(mine[2]):
                self._error = DistBackendError(
                    f"tritorch.distributed: recv on {g.name}: rank {g.ranks[g_src]} sent {_describe(rec)} but this "
                    f"rank (rank {g.ranks[g.rank]}) receives into {_describe(mine)}")
                self._state = "done"
                return
            self._data_reqs = [g.comm.Irecv(_bytes(self._arr), source=g_src, tag=self._extra)]
            self._state = "data"
        if self._state == "data" and MPI.Request.Testall(self._data_reqs):
            if self._fin is not None:
                self._fin()
            self._state = "done"

    # ---- Work -----------------------------------------------------------------------------------------------------
    def _poll(self):
        if self._p2p:
            self._poll_p2p()
        else:
            self._group.progress()
        return self._state == "done"

    def _timeout_error(self, timeout):
        g = self._group
        if self._state in ("meta", "p2p-meta"):
            miss = g.missing(self)
            if self._p2p:
                who = "the sending rank did not send" if miss == ["any"] else f"rank(s) {miss} did not send"
            else:
                earlier = [w for w in g.pending if w is not self and w._state == "meta"]
                who = f"rank(s) {miss} did not join" if miss else \
                    f"an earlier collective ({earlier[0].name}) has not finished" if earlier else "ranks did not join"
        else:
            who = "all ranks joined but the data transfer did not finish"
            if self._p2p and self.name == "send":
                who = f"rank {g.ranks[self._root]} did not receive it"
        return DistTimeoutError(f"tritorch.distributed: {self.name} (call #{self._seq} on {g.name}) timed out after "
                                f"{timeout:g} s: {who}")
