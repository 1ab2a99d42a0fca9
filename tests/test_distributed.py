"""tritorch.distributed, DistributedDataParallel, DataParallel, DistributedSampler and `tritorch run`.

The multi-process tests start 2 ranks on the CPU through MPI (the mpich wheel's mpiexec, directly or through
`tritorch run`); every subprocess has a timeout and is killed (its whole process group) in a finally.
"""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import tritorch as torch
import tritorch.distributed as dist
from tritorch.data.distributed import DistributedSampler
from tritorch.distributed import run as launcher, _store
import tritorch.nn.parallel as par
from tritorch.nn.parallel import DistributedDataParallel, replicate, scatter, gather

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DTYPES = ["float32", "float64", "float16", "bfloat16", "int8", "uint8", "int16", "int32", "int64", "bool"]


def _run(cmd, timeout=120, env=None):
    """Run ``cmd`` in its own process group; kill the group whatever happens. Returns (rc, stdout+stderr, secs)."""
    e = dict(os.environ)
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    e.setdefault("OMP_NUM_THREADS", "1")
    e.update(env or {})
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=e,
                         start_new_session=True, cwd=ROOT)
    try:
        out, _ = p.communicate(timeout=timeout)
        return p.returncode, out, time.monotonic() - t0
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
        try:
            os.killpg(p.pid, signal.SIGKILL)        # nothing of the job may outlive the test
        except (ProcessLookupError, PermissionError):
            pass


def _script(tmp_path, name, body):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def _tritorch_run(*args):
    return [sys.executable, "-m", "tritorch.cli", "run"] + list(args)


def _mpiexec(n, *args):
    mpiexec = launcher.find_mpiexec()
    assert mpiexec, "mpi4py and an mpiexec are needed: pip install -e '.[test]' installs them (the dist extra)"
    return [mpiexec, "-n", str(n), sys.executable] + list(args)


# ---- 2 ranks ------------------------------------------------------------------------------------------------------

COLLECTIVES = """
import sys
import numpy as np
import tritorch as torch
import tritorch.distributed as dist

dist.init_process_group("mpi", timeout=60)
r, n = dist.get_rank(), dist.get_world_size()
assert n == 2 and dist.is_initialized() and dist.get_backend() == "mpi"
DTYPES = %r
REF = {"sum": lambda a: a.sum(0), "max": lambda a: a.max(0), "min": lambda a: a.min(0),
       "product": lambda a: a.prod(0), "avg": lambda a: a.sum(0) / n}

def vals(rank, dt):
    base = np.arange(12).reshape(3, 4) %% 5 + 2 * rank
    return (base %% 2 == 0) if dt == "bool" else base

def tens(a, dt):
    return torch.tensor(a.astype(np.float64) if dt != "bool" else a).to(getattr(torch, dt))

def host(t):
    return t.to(torch.float64).numpy() if t.dtype is not torch.bool else t.numpy()

for dt in DTYPES:
    stack = np.stack([vals(k, dt) for k in range(n)])
    for op in ["sum", "max", "min", "product", "avg"]:
        if dt == "bool" and op == "avg":
            continue
        x = tens(vals(r, dt), dt)
        dist.all_reduce(x, op=op)
        if dt == "bool":
            want = stack.any(0) if op in ("sum", "max") else stack.all(0)
        else:
            want = REF[op](stack.astype(np.float64))
            if op == "avg" and not dt.startswith(("float", "bfloat")):
                want = np.trunc(want)
        assert np.array_equal(host(x), want), (dt, op, host(x), want)
        # reduce_scatter_tensor: the same reduction, rank r keeps row block r
        inp = tens(np.concatenate([vals(r, dt)] * n), dt)
        out = tens(vals(0, dt), dt)
        dist.reduce_scatter_tensor(out, inp, op=op)
        assert np.array_equal(host(out), want), ("reduce_scatter", dt, op)
    x = tens(vals(r, dt), dt)
    dist.broadcast(x, src=1)
    assert np.array_equal(host(x), host(tens(vals(1, dt), dt))), ("broadcast", dt)
    outs = [tens(vals(0, dt), dt) * 0 if dt != "bool" else tens(vals(0, dt), dt) for _ in range(n)]
    dist.all_gather(outs, tens(vals(r, dt), dt))
    for k in range(n):
        assert np.array_equal(host(outs[k]), host(tens(vals(k, dt), dt))), ("all_gather", dt, k)
    big = tens(np.concatenate([vals(0, dt)] * n), dt)
    dist.all_gather_into_tensor(big, tens(vals(r, dt), dt))
    assert np.array_equal(host(big), np.concatenate([host(tens(vals(k, dt), dt)) for k in range(n)])), dt
    if r == 0:
        dist.send(tens(vals(0, dt), dt), dst=1)
    else:
        y = tens(vals(1, dt), dt)
        assert dist.recv(y, src=0) == 0
        assert np.array_equal(host(y), host(tens(vals(0, dt), dt))), ("send/recv", dt)

# non-contiguous tensors, async work, any-source recv, groups, barrier
x = torch.arange(12.0).reshape(3, 4).t() + r
w = dist.all_reduce(x, async_op=True)
assert w.wait() and w.is_completed()
assert np.array_equal(x.numpy(), (np.arange(12.0).reshape(3, 4).T * 2 + 1))
if r == 1:
    dist.isend(torch.tensor([5.0, 6.0]), dst=0).wait()
else:
    y = torch.zeros(2)
    assert dist.recv(y) == 1 and y.tolist() == [5.0, 6.0]
g = dist.new_group([0, 1])
assert dist.get_rank(g) == r and dist.get_world_size(g) == 2
solo = dist.new_group([1])
if r == 1:
    z = torch.ones(2)
    dist.all_reduce(z, group=solo)
    assert z.tolist() == [1.0, 1.0] and dist.get_rank(solo) == 0
else:
    assert solo is dist.GroupMember.NON_GROUP_MEMBER
dist.barrier()
# a mismatch is a clear error on every rank, and the job goes on
try:
    dist.all_reduce(torch.zeros(2 + r))
    raise SystemExit("no error for mismatched shapes")
except dist.DistBackendError as e:
    assert "rank 0: all_reduce" in str(e) and "shape (3,)" in str(e), e
try:
    dist.broadcast(torch.zeros(2, dtype=torch.float32 if r else torch.int32), src=0)
    raise SystemExit("no error for mismatched dtypes")
except dist.DistBackendError as e:
    assert "int32" in str(e), e
dist.all_reduce(torch.ones(1))
dist.destroy_process_group()
assert not dist.is_initialized()
sys.stdout.write(f"COLLECTIVES OK {r}\\n"); sys.stdout.flush()  # one write: the ranks share a pipe
""" % (DTYPES,)


def test_collectives_two_ranks_every_dtype(tmp_path):
    path = _script(tmp_path, "coll.py", COLLECTIVES)
    rc, out, _ = _run(_tritorch_run("--nproc-per-node", "2", path), timeout=240)
    assert rc == 0, out
    assert "COLLECTIVES OK 0" in out and "COLLECTIVES OK 1" in out, out


DDP = """
import sys
import numpy as np
import tritorch as torch
import tritorch.distributed as dist
from tritorch import nn
from tritorch.nn.parallel import DistributedDataParallel as DDP
from tritorch.utils.data.distributed import DistributedSampler

dist.init_process_group("gloo")                   # PyTorch's CPU backend name: the mpi backend here
r, n = dist.get_rank(), dist.get_world_size()

def make(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))

torch.manual_seed(123)
x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))   # the same on both ranks (same seed)
loss_fn = nn.CrossEntropyLoss()
ref = make(0)                                     # the single-process model, rank 0's initial weights
net = make(1 + r)                                 # different weights on each rank: DDP broadcasts rank 0's...
ddp = DDP(net, bucket_cap_mb=0.0005)              # ...and several small buckets
assert len(ddp._buckets) > 2
with torch.no_grad():
    net0 = make(1)                                # what rank 0 had
for a, b in zip(net.parameters(), net0.parameters()):
    assert np.array_equal(a.detach().numpy(), b.detach().numpy())
with torch.no_grad():
    for a, b in zip(ref.parameters(), net.parameters()):
        a.copy_(b)

def grads(m):
    return [p.grad.numpy().copy() for p in m.parameters()]

# one step: each rank half the batch == one process, the whole batch
loss_fn(ddp(x[4 * r:4 * r + 4]), y[4 * r:4 * r + 4]).backward()
loss_fn(ref(x), y).backward()
for a, b in zip(grads(net), grads(ref)):
    assert np.allclose(a, b, rtol=1e-5, atol=1e-6), (a, b)

# the buckets start while the backward pass still runs (overlap), in index order
started = []
mark = ddp._mark
def spy(b, j):
    mark(b, j)
    started.append(ddp._next)
ddp._mark = spy
loss_fn(ddp(x[4 * r:4 * r + 4]), y[4 * r:4 * r + 4]).backward()
del ddp._mark
nb = len(ddp._buckets)
assert started[-1] == nb and any(0 < k < nb for k in started) and started == sorted(started), started

# no_sync: two local backward passes, then one that syncs the accumulated gradients
net.zero_grad(); ref.zero_grad()
with ddp.no_sync():
    loss_fn(ddp(x[4 * r:4 * r + 2]), y[4 * r:4 * r + 2]).backward()
local = grads(net)
loss_fn(ddp(x[4 * r + 2:4 * r + 4]), y[4 * r + 2:4 * r + 4]).backward()
for k in range(n):
    for h in range(2):
        loss_fn(ref(x[4 * k + 2 * h:4 * k + 2 * h + 2]), y[4 * k + 2 * h:4 * k + 2 * h + 2]).backward()
for a, b in zip(grads(net), grads(ref)):
    assert np.allclose(a, b / n, rtol=1e-5, atol=1e-6), (a, b / n)
others = [torch.tensor(g) for g in local]
for t in others:
    dist.all_reduce(t)
assert not all(np.allclose(a, t.numpy() / n) for a, t in zip(local, others)), "no_sync must not sync"

# an optimizer step keeps the replicas identical
opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
opt.step()
w = net[0].weight.detach().clone()
dist.broadcast(w, src=0)
assert np.array_equal(w.numpy(), net[0].weight.detach().numpy())

# find_unused_parameters: a branch used only on rank 1
class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 2), nn.Linear(4, 2)
    def forward(self, x, use_b):
        return self.a(x) + (self.b(x) if use_b else 0)
torch.manual_seed(5)
m = Branchy()
dm = DDP(m, find_unused_parameters=True)
dm(torch.ones(3, 4), r == 1).sum().backward()
assert np.allclose(m.b.weight.grad.numpy(), np.full((2, 4), 1.5))     # (3 + 0) / 2
assert np.allclose(m.a.weight.grad.numpy(), np.full((2, 4), 3.0))

# a forward without backward is fine; a backward that leaves a parameter without gradient is a clear error
ddp(x[:2])
loss_fn(ddp(x[:4]), y[:4]).backward()
m2 = Branchy()
d2 = DDP(m2)
d2(torch.ones(3, 4), False).sum().backward()
try:
    d2(torch.ones(3, 4), False)
    raise SystemExit("no error for a parameter without gradient")
except RuntimeError as e:
    assert "find_unused_parameters=True" in str(e), e

# state dicts: the wrapped module's loads into a bare module; DDP's carries PyTorch's "module." prefix
bare = make(9)
bare.load_state_dict(ddp.module.state_dict())
assert list(ddp.state_dict())[0] == "module.0.weight"

# DistributedSampler: the ranks' shares are disjoint and cover the data set
s = DistributedSampler(list(range(11)), shuffle=True, seed=3)
s.set_epoch(2)
mine = torch.tensor(list(s) + [-1] * (6 - len(s)))
both = [torch.zeros(6, dtype=torch.int64) for _ in range(n)]
dist.all_gather(both, mine)
idx = sorted(i for t in both for i in t.tolist() if i >= 0)
assert len(s) == 6 and set(idx) == set(range(11)) and len(idx) == 12
sys.stdout.write(f"DDP OK {r}\\n"); sys.stdout.flush()  # one write: the ranks share a pipe
"""


def test_ddp_two_ranks_matches_one_process_through_mpiexec(tmp_path):
    path = _script(tmp_path, "ddp.py", DDP)
    rc, out, _ = _run(_mpiexec(2, path), timeout=240)
    assert rc == 0, out
    assert "DDP OK 0" in out and "DDP OK 1" in out, out


FAIL = """
import sys, time
import tritorch as torch
import tritorch.distributed as dist
dist.init_process_group("mpi", timeout=float(sys.argv[2]))
r = dist.get_rank()
dist.all_reduce(torch.ones(2))
if sys.argv[1] == "raise":
    if r == 1:
        raise ValueError("rank one gives up")
    time.sleep(120)
else:                       # rank 1 never comes to the second all_reduce
    if r == 0:
        dist.all_reduce(torch.ones(2))
    time.sleep(120)
"""


def test_rank_that_raises_ends_the_job_with_a_clear_error(tmp_path):
    path = _script(tmp_path, "fail.py", FAIL)
    rc, out, secs = _run(_tritorch_run("--nproc-per-node", "2", path, "raise", "60"), timeout=110)
    assert rc == 1, out
    assert "ValueError: rank one gives up" in out
    assert "tritorch run: rank 1 failed first: ValueError: rank one gives up (exit code 1)" in out, out
    assert secs < 100


def test_timeout_names_the_collective_and_the_missing_rank(tmp_path):
    path = _script(tmp_path, "timeout.py", FAIL)
    rc, out, secs = _run(_mpiexec(2, path, "timeout", "3"), timeout=110)
    assert rc != 0, out
    assert "all_reduce (call #2 on the default group) timed out after 3 s: rank(s) [1] did not join" in out, out
    assert secs < 100


EXIT = """
import os, sys, time
r = int(os.environ["RANK"])
assert os.environ["WORLD_SIZE"] == "2" and os.environ["LOCAL_RANK"] == str(r) and os.environ["MASTER_PORT"]
if r == 1 and sys.argv[1] == "exit":
    sys.exit(3)
time.sleep(0 if sys.argv[1] == "ok" else 120)
"""


def test_launcher_exit_codes_direct_children(tmp_path):
    path = _script(tmp_path, "exit.py", EXIT)
    rc, out, secs = _run(_tritorch_run("--launcher", "direct", "--nproc-per-node", "2", path, "exit"), timeout=110)
    assert rc == 3, out
    assert "rank 1 failed first: SystemExit: sys.exit(3) (exit code 3); the other ranks were stopped" in out, out
    assert secs < 100


def test_train_nproc_2_matches_one_process(tmp_path):
    args = ["--epochs", "1", "--limit-batches", "6", "--batch-size", "32", "--quiet"]
    rc1, out1, _ = _run([sys.executable, "-m", "tritorch.train", "--out", str(tmp_path / "one.st")] + args, 200)
    rc2, out2, _ = _run([sys.executable, "-m", "tritorch.cli", "train", "--nproc", "2",
                         "--out", str(tmp_path / "two.st")] + args, 200)
    assert rc1 == 0 and rc2 == 0, out1 + out2
    last = [next(line for line in o.splitlines() if line.startswith("epoch 1/1:")) for o in (out1, out2)]
    assert last[0] == last[1], last                   # same loss and test accuracy, printed once
    assert out2.count("epoch 1/1:") == 1 and out2.count("training the CNN") == 1
    assert "2 processes (DistributedDataParallel" in out2
    assert (tmp_path / "two.st").is_file()


def test_tcp_rendezvous_shares_bytes_and_names_the_missing_rank():
    port = launcher._free_port()
    got = {}
    ts = [threading.Thread(target=lambda r=r: got.__setitem__(r, _store.share(b"id-123" if r == 0 else b"", r, 3,
                                                                               "127.0.0.1", port, 20)))
          for r in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert got == {0: b"id-123", 1: b"id-123", 2: b"id-123"}
    with pytest.raises(dist.DistTimeoutError, match=r"rank\(s\) \[1\] did not join"):
        _store.share(b"x", 0, 2, "127.0.0.1", launcher._free_port(), 0.5)


# ---- in one process -----------------------------------------------------------------------------------------------

def test_launcher_helpers():
    assert launcher._split_argv(["--nproc-per-node", "2", "-m", "tritorch.train", "--nproc", "2"]) == (
        ["--nproc-per-node", "2", "-m"], ["tritorch.train", "--nproc", "2"])
    assert launcher._split_argv(["--nnodes=1", "s.py", "--x"]) == (["--nnodes=1"], ["s.py", "--x"])
    assert launcher._describe_rc(-9) == "killed by SIGKILL"
    assert launcher._report(1, -9, "/nonexistent", "tritorch run", True) == 137
    assert launcher.main(["--nproc-per-node", "0", "x.py"]) == 2
    assert launcher.main(["no-such-script.py"]) == 2
    args = launcher.build_parser().parse_args(["--nproc-per-node", "2", "--nnodes", "2", "--node-rank", "1",
                                               "--master-port", "1234", "s.py"])
    env = launcher._rank_env({"WORLD_SIZE": "9"}, 3, 1, 4, 2, args, "/tmp/e", "id")
    assert (env["RANK"], env["LOCAL_RANK"], env["WORLD_SIZE"], env["LOCAL_WORLD_SIZE"], env["GROUP_RANK"],
            env["MASTER_PORT"]) == ("3", "1", "4", "2", "1", "1234")
    assert env["TRITORCH_ERROR_FILE"] == os.path.join("/tmp/e", "rank_3.json")


def test_errors_before_init_and_unknown_backend():
    with pytest.raises(RuntimeError, match="init_process_group"):
        dist.get_rank()
    with pytest.raises(RuntimeError, match="init_process_group"):
        DistributedDataParallel(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="unknown backend"):
        dist.init_process_group("carrier-pigeon")
    with pytest.raises(ValueError, match="unknown reduce op"):
        dist.reduce_op("median")
    if not dist.is_nccl_available():
        with pytest.raises(RuntimeError, match="nccl4py"):
            dist.init_process_group("nccl", world_size=1, rank=0)
    assert not dist.is_initialized()


def test_world_of_one_in_process():
    dist.init_process_group("mpi", world_size=1, rank=0, timeout=30)
    try:
        assert dist.get_rank() == 0 and dist.get_world_size() == 1
        for dt in DTYPES:
            a = (np.arange(6).reshape(2, 3) % 2 == 0) if dt == "bool" else np.arange(6.0).reshape(2, 3)
            x = torch.tensor(a).to(getattr(torch, dt))
            want = x.clone()
            for op in ["sum", "max", "min", "product"] + ([] if dt == "bool" else ["avg"]):
                dist.all_reduce(x, op=op)
                assert torch.equal(x, want), (dt, op)
            out = [torch.zeros_like(x)]
            dist.all_gather(out, x)
            assert torch.equal(out[0], x)
        with pytest.raises(ValueError, match="has 2 tensors but the group has 1"):
            dist.all_gather([torch.zeros(2), torch.zeros(2)], torch.zeros(2))
        with pytest.raises(ValueError, match="world_size \\* input numel"):
            dist.all_gather_into_tensor(torch.zeros(3), torch.zeros(2))
        with pytest.raises(ValueError, match="not in"):
            dist.broadcast(torch.zeros(2), src=3)
        m = torch.nn.Linear(3, 2)
        d = DistributedDataParallel(m)
        d(torch.ones(4, 3)).sum().backward()
        assert np.allclose(m.weight.grad.numpy(), 4.0)
    finally:
        dist.destroy_process_group()
    assert not dist.is_initialized()


def test_distributed_sampler():
    data = list(range(10))
    shares = [list(DistributedSampler(data, num_replicas=3, rank=k, shuffle=False)) for k in range(3)]
    assert shares == [[0, 3, 6, 9], [1, 4, 7, 0], [2, 5, 8, 1]]
    dl = [list(DistributedSampler(data, 3, k, shuffle=False, drop_last=True)) for k in range(3)]
    assert dl == [[0, 3, 6], [1, 4, 7], [2, 5, 8]] and len(DistributedSampler(data, 3, 0, drop_last=True)) == 3
    s = DistributedSampler(data, 2, 0, seed=7)
    e0 = list(s)
    assert list(s) == e0
    s.set_epoch(1)
    assert sorted(list(s) + list(DistributedSampler(data, 2, 1, seed=7))) != [] and list(s) != e0
    with pytest.raises(ValueError, match="Invalid rank"):
        DistributedSampler(data, 2, 2)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.arange(10.0)), batch_size=2,
                                         sampler=DistributedSampler(data, 2, 1, shuffle=False))
    assert [b[0].tolist() for b in loader] == [[1.0, 3.0], [5.0, 7.0], [9.0]]
    assert torch.utils.data.DistributedSampler is DistributedSampler


def test_data_parallel_on_one_device_runs_the_module_as_is():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    dp = torch.nn.DataParallel(m)
    x = torch.randn(6, 4)
    assert torch.equal(dp(x), m(x)) and dp.module is m
    assert list(dp.state_dict())[0] == "module.0.weight"
    assert par.DistributedDataParallel is torch.nn.parallel.DistributedDataParallel


def test_replicate_scatter_gather_sum_gradients_into_the_original():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    x = torch.randn(5, 4)
    devs = [torch.device("cpu"), torch.device("cpu")]
    reps = replicate(m, devs)
    parts = scatter((x,), devs)
    assert [p[0].shape[0] for p in parts] == [3, 2]
    out = gather([r(*p) for r, p in zip(reps, parts)], devs[0])
    assert np.allclose(out.detach().numpy(), m(x).detach().numpy(), atol=1e-6)
    out.pow(2).sum().backward()
    g = [p.grad.numpy().copy() for p in m.parameters()]
    m.zero_grad()
    m(x).pow(2).sum().backward()
    for a, p in zip(g, m.parameters()):
        assert np.allclose(a, p.grad.numpy(), atol=1e-5)
