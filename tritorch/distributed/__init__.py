"""``tritorch.distributed``: process groups and collectives, as ``torch.distributed``.

Two communication engines, each imported only when its backend is asked for: ``nccl`` (the ``nccl4py`` binding) for
``cuda`` tensors, ``mpi`` (``mpi4py``; MPICH from the ``mpich`` wheel or a system MPI) for ``cpu`` tensors
(``gloo`` is accepted as a name for ``mpi``). Install them with ``pip install "tritorch[dist]"``.

Start the ranks with ``tritorch run --nproc-per-node N script.py`` or ``mpiexec -n N python script.py``; then
``init_process_group(backend)`` reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT (``env://``), or
the MPI world. Every collective checks shapes and dtypes across the ranks (on ``mpi``) and has a deadline: a timeout
names the collective and the ranks that did not join.
"""
import json
import os
import sys
import time
import traceback

from .. import _dtype as D
from .._tensor import Tensor
from ._work import (ReduceOp, Work, DistError, DistBackendError, DistTimeoutError, DoneWork, reduce_op,  # noqa: F401
                    _seconds)
from ._host import host_array as _host  # noqa: F401
from . import _mpi, _nccl

__all__ = ["init_process_group", "destroy_process_group", "is_initialized", "is_available", "is_mpi_available",
           "is_nccl_available", "get_rank", "get_world_size", "get_backend", "barrier", "all_reduce", "broadcast",
           "all_gather", "all_gather_into_tensor", "reduce_scatter_tensor", "send", "recv", "isend", "irecv",
           "new_group", "ReduceOp", "Work", "DistError", "DistBackendError", "DistTimeoutError", "GroupMember",
           "Backend", "ProcessGroup"]

DEFAULT_TIMEOUT = 600.0           # seconds, as PyTorch's default for CPU groups


class Backend(str):
    """Backend names: ``Backend.NCCL``, ``Backend.MPI`` (``Backend.GLOO`` is an alias of MPI here)."""
    NCCL = "nccl"
    MPI = "mpi"
    GLOO = "gloo"
    UNDEFINED = "undefined"


class _NonMember:
    def __repr__(self):
        return "GroupMember.NON_GROUP_MEMBER"


class GroupMember:
    WORLD = None
    NON_GROUP_MEMBER = _NonMember()


class _State:
    world = None                  # the default group
    groups = []
    hook = None


_S = _State()
ProcessGroup = _mpi.MPIGroup      # the group type (isinstance checks); NCCL groups share its interface


def is_available():
    return True


def is_mpi_available():
    try:
        _mpi.load_mpi()
        return True
    except RuntimeError:
        return False


def is_nccl_available():
    try:
        _nccl.load_nccl()
        return True
    except (ImportError, RuntimeError):
        return False


def is_initialized():
    return _S.world is not None


def is_torchelastic_launched():
    return "TORCHELASTIC_RUN_ID" in os.environ or "TRITORCH_RUN_ID" in os.environ


# ---- set-up ---------------------------------------------------------------------------------------------------------

def _env_int(name):
    v = os.environ.get(name)
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        raise ValueError(f"tritorch.distributed: environment variable {name}={v!r} is not an integer") from None


_MPI_RANK_VARS = ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "SLURM_PROCID")


def _under_mpiexec():
    return any(v in os.environ for v in _MPI_RANK_VARS[:4])


def init_process_group(backend=None, init_method=None, timeout=None, world_size=-1, rank=-1, store=None,
                       group_name="", pg_options=None, device_id=None):
    """Join the default process group. ``backend``: "nccl" (cuda tensors) or "mpi" (cpu tensors; "gloo" is an alias);
    ``init_method``: "env://" (default) or "tcp://ADDR:PORT"; ``timeout``: seconds or a timedelta."""
    if _S.world is not None:
        raise RuntimeError("trying to initialize the default process group twice!")
    b = (backend or "").lower()
    if b in ("", "undefined"):
        b = "nccl" if device_id is not None and str(device_id).startswith("cuda") else "mpi"
    if "cpu:" in b or "cuda:" in b:           # "cpu:gloo,cuda:nccl": one backend per device type
        parts = dict(x.split(":", 1) for x in b.split(","))
        b = parts.get("cpu", parts.get("cuda", "mpi"))
    if b == "gloo":
        b = "mpi"
    if b not in ("mpi", "nccl"):
        raise ValueError(f"tritorch.distributed: unknown backend {backend!r}; use 'nccl' (cuda tensors) or 'mpi' "
                         "(cpu tensors; 'gloo' is accepted as an alias)")
    t = DEFAULT_TIMEOUT if timeout is None else _seconds(timeout)
    if os.environ.get("TRITORCH_DIST_TIMEOUT") and timeout is None:
        t = _seconds(os.environ["TRITORCH_DIST_TIMEOUT"])
    addr, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    im = init_method or "env://"
    if im.startswith("tcp://"):
        hp = im[len("tcp://"):].split("?")[0]
        addr, _, port = hp.rpartition(":")
    elif not im.startswith("env://") and not im.startswith("mpi://"):
        raise ValueError(f"tritorch.distributed: init_method {init_method!r} is not supported; use 'env://' or "
                         "'tcp://ADDR:PORT'")
    rank = rank if rank is not None and rank >= 0 else _env_int("RANK")
    world_size = world_size if world_size is not None and world_size > 0 else _env_int("WORLD_SIZE")
    if b == "mpi":
        world = _init_mpi(rank, world_size, t)
    else:
        world = _nccl.init_world(rank, world_size, t, addr, port, device_id, _S)
    world.name = "the default group"
    _S.world = world
    _S.groups = [world]
    if world.size > 1:
        _install_excepthook()


def _init_mpi(rank, world_size, timeout):
    MPI = _mpi.load_mpi()
    cw = MPI.COMM_WORLD
    n, r = cw.Get_size(), cw.Get_rank()
    if world_size is None:
        world_size = n
    if n == 1 and world_size > 1:
        raise RuntimeError(
            f"tritorch.distributed: backend 'mpi' found an MPI world of 1 process but WORLD_SIZE={world_size}: start "
            "the ranks with `tritorch run --nproc-per-node N` on one node, or `mpiexec -n N python script.py` (use "
            "mpiexec's -hosts/-f for several nodes); the 'mpi' backend does not join processes started separately")
    if world_size != n:
        raise RuntimeError(f"tritorch.distributed: WORLD_SIZE={world_size} but the MPI world has {n} processes")
    if rank is None:
        rank = r
    if not 0 <= rank < n:
        raise RuntimeError(f"tritorch.distributed: rank {rank} is out of range for world size {n}")
    comm = cw
    if rank != r:                # RANK from the environment wins: renumber the world to match it
        comm = cw.Split(0, rank)
    return _mpi.MPIGroup(comm, range(n), timeout)


def destroy_process_group(group=None):
    """Leave ``group`` (default: all groups, and the default group goes away)."""
    if group is None or group is _S.world:
        for g in _S.groups[::-1]:
            g.destroy()
        _S.world = None
        _S.groups = []
        if _S.hook is not None and sys.excepthook is _S.hook:
            sys.excepthook = _S.hook._prev
        _S.hook = None
    elif group is not GroupMember.NON_GROUP_MEMBER:
        group.destroy()
        if group in _S.groups:
            _S.groups.remove(group)


def _world(what):
    if _S.world is None:
        raise RuntimeError(f"tritorch.distributed.{what}: the default process group has not been initialized; call "
                           "init_process_group() first")
    return _S.world


def _group(group, what):
    if group is None or group is GroupMember.WORLD:
        return _world(what)
    if group is GroupMember.NON_GROUP_MEMBER:
        return None
    return group


def get_rank(group=None):
    g = _group(group, "get_rank")
    return -1 if g is None else g.rank


def get_world_size(group=None):
    g = _group(group, "get_world_size")
    return -1 if g is None else g.size


def get_backend(group=None):
    g = _group(group, "get_backend")
    return g.backend if g is not None else Backend.UNDEFINED


def get_global_rank(group, group_rank):
    return _group(group, "get_global_rank").ranks[group_rank]


def get_group_rank(group, global_rank):
    return _group_rank(_group(group, "get_group_rank"), global_rank, "get_group_rank")


def get_process_group_ranks(group):
    return list(_group(group, "get_process_group_ranks").ranks)


def new_group(ranks=None, timeout=None, backend=None, pg_options=None, use_local_synchronization=False):
    """A group of the global ``ranks`` (every rank of the default group must call this, as in PyTorch); a rank
    outside it gets ``GroupMember.NON_GROUP_MEMBER``."""
    w = _world("new_group")
    ranks = sorted(set(range(w.size) if ranks is None else (int(r) for r in ranks)))
    for r in ranks:
        if not 0 <= r < w.size:
            raise ValueError(f"tritorch.distributed.new_group: rank {r} is out of range for world size {w.size}")
    t = w.timeout if timeout is None else _seconds(timeout)
    g = w.new_subgroup(ranks, t)
    if g is None:
        return GroupMember.NON_GROUP_MEMBER
    g.name = f"group {ranks}"
    _S.groups.append(g)
    return g


# ---- tensors and host arrays ----------------------------------------------------------------------------------------

def _check(t, what, arg="tensor"):
    if not isinstance(t, Tensor):
        raise TypeError(f"tritorch.distributed.{what}: {arg} must be a tritorch Tensor, got {type(t).__name__}")


def _group_rank(g, global_rank, what):
    try:
        return g.ranks.index(int(global_rank))
    except ValueError:
        raise ValueError(f"tritorch.distributed.{what}: rank {global_rank} is not in {g.name} "
                         f"(ranks {g.ranks})") from None


def _done(work, async_op):
    if async_op:
        return work
    if not work.stream_ordered:       # nccl: ordered on the stream, as PyTorch (its watchdog keeps the deadline)
        work.wait()
    return None


def _same(tensors, what):
    dts = {x.dtype for x in tensors}
    if len(dts) > 1:
        raise ValueError(f"tritorch.distributed.{what}: tensors have different dtypes {sorted(map(str, dts))}")


# ---- collectives ----------------------------------------------------------------------------------------------------

def barrier(group=None, async_op=False, device_ids=None):
    """Wait until every rank of the group gets here."""
    g = _group(group, "barrier")
    if g is None:
        return None
    w = g.barrier()
    if async_op:
        return w
    w.wait()                          # a barrier holds the host, on every backend
    return None


def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op=False):
    """Reduce ``tensor`` across the group in place (SUM, AVG, MAX, MIN, PRODUCT)."""
    _check(tensor, "all_reduce")
    op = reduce_op(op)
    g = _group(group, "all_reduce")
    if g is None:
        return None
    if op == ReduceOp.AVG and tensor.dtype is D.bool_:
        raise ValueError("tritorch.distributed.all_reduce: ReduceOp.AVG needs a numeric tensor, got torch.bool")
    return _done(g.all_reduce(tensor, op), async_op)


def broadcast(tensor, src=0, group=None, async_op=False, group_src=None):
    """Copy ``tensor`` of global rank ``src`` into ``tensor`` on every rank."""
    _check(tensor, "broadcast")
    g = _group(group, "broadcast")
    if g is None:
        return None
    root = group_src if group_src is not None else _group_rank(g, src, "broadcast")
    return _done(g.broadcast(tensor, root), async_op)


def all_gather(tensor_list, tensor, group=None, async_op=False):
    """``tensor_list[i]`` gets rank i's ``tensor``."""
    _check(tensor, "all_gather")
    g = _group(group, "all_gather")
    if g is None:
        return None
    if len(tensor_list) != g.size:
        raise ValueError(f"tritorch.distributed.all_gather: tensor_list has {len(tensor_list)} tensors but the group "
                         f"has {g.size} ranks")
    for i, o in enumerate(tensor_list):
        _check(o, "all_gather", f"tensor_list[{i}]")
        if tuple(o.shape) != tuple(tensor.shape) or o.dtype is not tensor.dtype:
            raise ValueError(f"tritorch.distributed.all_gather: tensor_list[{i}] is {o.dtype} {tuple(o.shape)} but "
                             f"the input is {tensor.dtype} {tuple(tensor.shape)}")
    return _done(g.all_gather(list(tensor_list), tensor), async_op)


def all_gather_into_tensor(output_tensor, input_tensor, group=None, async_op=False):
    """``output_tensor`` (world_size x input's numel elements) gets every rank's ``input_tensor``, in rank order."""
    _check(output_tensor, "all_gather_into_tensor", "output_tensor")
    _check(input_tensor, "all_gather_into_tensor", "input_tensor")
    g = _group(group, "all_gather_into_tensor")
    if g is None:
        return None
    _same([output_tensor, input_tensor], "all_gather_into_tensor")
    if output_tensor.numel() != g.size * input_tensor.numel():
        raise ValueError(f"tritorch.distributed.all_gather_into_tensor: output_tensor has {output_tensor.numel()} "
                         f"elements; it needs world_size * input numel = {g.size} * {input_tensor.numel()}")
    return _done(g.all_gather_into_tensor(output_tensor, input_tensor), async_op)


def reduce_scatter_tensor(output, input, op=ReduceOp.SUM, group=None, async_op=False):
    """Reduce ``input`` across the group; rank i gets the i-th of world_size equal parts in ``output``."""
    _check(output, "reduce_scatter_tensor", "output")
    _check(input, "reduce_scatter_tensor", "input")
    op = reduce_op(op)
    g = _group(group, "reduce_scatter_tensor")
    if g is None:
        return None
    _same([output, input], "reduce_scatter_tensor")
    if input.numel() != g.size * output.numel():
        raise ValueError(f"tritorch.distributed.reduce_scatter_tensor: input has {input.numel()} elements; it needs "
                         f"world_size * output numel = {g.size} * {output.numel()}")
    return _done(g.reduce_scatter_tensor(output, input, op), async_op)


def isend(tensor, dst=None, group=None, tag=0, group_dst=None):
    """Start sending ``tensor`` to global rank ``dst``; returns a Work."""
    _check(tensor, "isend")
    g = _group(group, "isend")
    if g is None:
        return None
    peer = group_dst if group_dst is not None else _group_rank(g, dst, "send")
    if peer == g.rank:
        raise ValueError("tritorch.distributed.send: a rank cannot send to itself")
    return g.send(tensor, peer, int(tag))


def irecv(tensor, src=None, group=None, tag=0, group_src=None):
    """Start receiving into ``tensor`` from global rank ``src`` (None: any rank); returns a Work."""
    _check(tensor, "irecv")
    g = _group(group, "irecv")
    if g is None:
        return None
    peer = group_src if group_src is not None else None if src is None else _group_rank(g, src, "recv")
    if peer is not None and peer == g.rank:
        raise ValueError("tritorch.distributed.recv: a rank cannot receive from itself")
    return g.recv(tensor, peer, int(tag))


def send(tensor, dst=None, group=None, tag=0, group_dst=None):
    """Send ``tensor`` to global rank ``dst`` (returns when the data left)."""
    w = isend(tensor, dst, group, tag, group_dst)
    if w is not None:
        w.wait()


def recv(tensor, src=None, group=None, tag=0, group_src=None):
    """Receive into ``tensor`` from global rank ``src`` (None: any); returns the sender's rank."""
    w = irecv(tensor, src, group, tag, group_src)
    if w is None:
        return -1
    w.wait()
    return w.source


def all_reduce_coalesced(tensors, op=ReduceOp.SUM, group=None, async_op=False):
    works = [all_reduce(t, op, group, async_op=True) for t in tensors]
    if async_op:
        return works[-1] if works else None
    for w in works:
        if w is not None:
            w.wait()
    return None


# ---- failures end the job -------------------------------------------------------------------------------------------

def write_error_file(exc_type, exc, tb, exitcode=1):
    """Record an uncaught exception for the launcher (TRITORCH_ERROR_FILE, set by ``tritorch run``)."""
    path = os.environ.get("TRITORCH_ERROR_FILE")
    if not path or os.path.exists(path):
        return
    msg = str(exc)
    try:
        tb_text = "".join(traceback.format_exception(exc_type, exc, tb)) if isinstance(exc, BaseException) else msg
    except Exception:       # noqa: BLE001  (a record without its traceback beats none)
        tb_text = msg
    rec = {"rank": _env_int("RANK"), "type": getattr(exc_type, "__name__", str(exc_type)),
           "message": msg.splitlines()[0] if msg else "", "pid": os.getpid(), "time": time.time(),
           "exitcode": int(exitcode), "traceback": tb_text[-4000:]}
    try:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(rec, f)
        os.replace(tmp, path)
    except OSError:
        pass


def _install_excepthook():
    """An uncaught exception on one rank ends every rank (MPI_Abort / the launcher), never a hang."""
    prev = sys.excepthook

    def hook(exc_type, exc, tb):
        try:
            prev(exc_type, exc, tb)
            write_error_file(exc_type, exc, tb, 130 if exc_type is KeyboardInterrupt else 1)
            sys.stderr.flush()
            sys.stdout.flush()
        finally:
            w = _S.world
            if w is not None:
                w.abort(f"rank {get_rank()}: {exc_type.__name__}: {exc}", 130 if exc_type is KeyboardInterrupt
                        else 1)
    hook._prev = prev
    _S.hook = hook
    sys.excepthook = hook
