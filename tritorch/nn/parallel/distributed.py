"""``DistributedDataParallel``: one model replica per process, gradients averaged across the processes.

At wrap, rank 0's parameters and buffers are broadcast. The parameters are packed (in reverse registration order,
the order in which backward usually produces their gradients) into buckets of at most ``bucket_cap_mb``; a
post-accumulate-grad hook on each parameter copies its gradient into its bucket, and a full bucket starts its
asynchronous all-reduce at once (buckets start in index order on every rank), so communication overlaps the rest of
the backward. When the last bucket has started, the hook waits for them all and writes the averaged gradients back
into ``.grad``.
"""
import contextlib

from ... import distributed as dist
from ...autograd import no_grad, is_grad_enabled
from ...autograd.function import AccumulateGrad
from ..._tensor import Tensor
from ..._creation import zeros
from ..module import Module

__all__ = ["DistributedDataParallel"]


class _Bucket:
    __slots__ = ("params", "offsets", "buffer", "ready", "work", "index")

    def __init__(self, index, params, device, dtype):
        self.index = index
        self.params = params
        self.offsets = []
        n = 0
        for p in params:
            self.offsets.append(n)
            n += p.numel()
        self.buffer = zeros(n, dtype=dtype, device=device)
        self.ready = set()
        self.work = None


class DistributedDataParallel(Module):
    """Data-parallel training across processes: wrap the model after ``init_process_group``, train as usual."""

    def __init__(self, module, device_ids=None, output_device=None, dim=0, broadcast_buffers=True,
                 process_group=None, bucket_cap_mb=25, find_unused_parameters=False, check_reduction=False,
                 gradient_as_bucket_view=False, static_graph=False):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: module must be a tritorch.nn.Module, got "
                            f"{type(module).__name__}")
        if not dist.is_initialized():
            raise RuntimeError("DistributedDataParallel: the default process group has not been initialized; call "
                               "tritorch.distributed.init_process_group() first")
        self.module = module
        self.process_group = process_group if process_group is not None else dist.GroupMember.WORLD
        self.device_ids = device_ids
        self.output_device = output_device
        self.dim = dim
        self.broadcast_buffers = broadcast_buffers
        self.find_unused_parameters = find_unused_parameters
        self.bucket_cap_mb = bucket_cap_mb
        self.require_backward_grad_sync = True
        self.require_forward_param_sync = True
        self.world_size = dist.get_world_size(self.process_group)
        params, seen = [], set()
        for p in module.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                params.append(p)
        self._params = params
        self._sync_module_states()
        self._build_buckets(params, bucket_cap_mb)
        self._pending = False            # a reduction prepared by forward and not finished by a backward
        self._hooked = False             # ... whose backward has begun
        self._next = 0                   # the next bucket to start
        self._handles = [p.register_post_accumulate_grad_hook(self._hook) for p in params]

    # ---- set-up -----------------------------------------------------------------------------------------------------
    def _sync_module_states(self):
        """Broadcast rank 0's parameters and buffers."""
        if self.world_size == 1:
            return
        with no_grad():
            for t in list(self.module.parameters()) + list(self.module.buffers()):
                dist.broadcast(t.data if t.requires_grad else t, 0, group=self.process_group)

    def _build_buckets(self, params, cap_mb):
        cap = max(1, int(cap_mb * 1024 * 1024))
        buckets, cur, size, key = [], [], 0, None
        for p in reversed(params):
            k = (p.dtype, str(p.device))
            nb = p.numel() * p.element_size()
            if cur and (k != key or size + nb > cap):
                buckets.append((cur, key))
                cur, size = [], 0
            cur.append(p)
            size += nb
            key = k
        if cur:
            buckets.append((cur, key))
        self._buckets = []
        self._where = {}
        for i, (ps, (dt, dev)) in enumerate(buckets):
            b = _Bucket(i, ps, ps[0].device, dt)
            self._buckets.append(b)
            for j, p in enumerate(ps):
                self._where[id(p)] = (b, j)

    # ---- forward ----------------------------------------------------------------------------------------------------
    def forward(self, *inputs, **kwargs):
        if self._pending and self._hooked:       # a backward started and left some parameters without gradient
            raise RuntimeError(
                "DistributedDataParallel: the previous iteration's gradient reduction did not finish: some "
                "parameters got no gradient in its backward. Pass find_unused_parameters=True to "
                "DistributedDataParallel when parts of the model are not used in every forward, and make sure every "
                "forward output takes part in the loss.")
        if self.broadcast_buffers and self.world_size > 1 and self.require_forward_param_sync:
            with no_grad():
                for buf in self.module.buffers():
                    dist.broadcast(buf, 0, group=self.process_group)
        out = self.module(*inputs, **kwargs)
        if is_grad_enabled() and self.require_backward_grad_sync:      # world size 1 reduces too, as PyTorch
            self._prepare(out)
        return out

    def _prepare(self, out):
        for b in self._buckets:
            b.ready = set()
            b.work = None
        self._next = 0
        self._pending = True
        self._hooked = False
        if self.find_unused_parameters:
            used = _reachable_leaves(out)
            for p in self._params:
                if id(p) not in used:
                    b, j = self._where[id(p)]
                    _slot(b, j).zero_()
                    self._mark(b, j)

    # ---- the hook -------------------------------------------------------------------------------------------------
    def _hook(self, p):
        if not self._pending:
            return
        self._hooked = True
        b, j = self._where[id(p)]
        if j in b.ready:
            raise RuntimeError(f"DistributedDataParallel: parameter {j} of bucket {b.index} got its gradient twice in "
                               "one backward (a parameter used by two DDP forwards or a second backward through "
                               "one forward); that is not supported")
        with no_grad():
            _slot(b, j).copy_(p.grad.reshape(-1))
        self._mark(b, j)

    def _mark(self, b, j):
        b.ready.add(j)
        bs = self._buckets
        while self._next < len(bs) and len(bs[self._next].ready) == len(bs[self._next].params):
            nb = bs[self._next]
            nb.work = dist.all_reduce(nb.buffer, dist.ReduceOp.AVG, group=self.process_group, async_op=True)
            self._next += 1
        if self._next == len(bs):
            self._finish()
        else:
            for x in bs[:self._next]:
                x.work.is_completed()          # let MPI progress the reductions in flight

    def _finish(self):
        self._pending = False
        with no_grad():
            for b in self._buckets:
                if not b.work.stream_ordered:      # nccl: the copies below follow it on the same stream
                    b.work.wait()
                for j, p in enumerate(b.params):
                    g = _slot(b, j).view(p.shape)
                    if p.grad is None:
                        p.grad = g.clone()
                    else:
                        p.grad.copy_(g)

    # ---- gradient accumulation ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def no_sync(self):
        """Inside, backward passes only accumulate local gradients; the first backward after it averages them."""
        old = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = old


def _slot(b, j):
    p = b.params[j]
    o = b.offsets[j]
    return b.buffer[o:o + p.numel()]


def _reachable_leaves(out):
    """ids of the leaf tensors the autograd graph of ``out`` reaches (PyTorch's find_unused_parameters search)."""
    roots = []
    stack = [out]
    while stack:
        x = stack.pop()
        if isinstance(x, Tensor):
            if x.grad_fn is not None:
                roots.append(x.grad_fn)
        elif isinstance(x, (list, tuple)):
            stack.extend(x)
        elif isinstance(x, dict):
            stack.extend(x.values())
    seen, found = set(), set()
    while roots:
        n = roots.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if type(n) is AccumulateGrad:
            found.add(id(n.variable))
            continue
        for e in n.next_functions or ():
            if e is not None and e[0] is not None:
                roots.append(e[0])
    return found
