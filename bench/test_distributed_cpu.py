"""Data-parallel benchmarks on the CPU through the ``mpi`` backend (2 ranks by default).

    python -m bench.test_distributed_cpu                    # both tables
    python -m bench.test_distributed_cpu --nproc 2 --steps 30 --sizes 1K,64K,1M,16M

1. all_reduce (float32, SUM) over message sizes: median time, algorithm bandwidth (bytes / time) and bus bandwidth
   (x 2 (n - 1) / n, what each link carries in a ring), as NCCL's tests report them.
2. A DistributedDataParallel training step (MLP 784-512-512-10, SGD, global batch 256): N processes against 1 with the
   same global batch, one BLAS thread per process (OMP_NUM_THREADS=1 unless set); scaling efficiency =
   (samples/s with N) / (N x samples/s with 1).

The worker part runs under ``tritorch run`` (``--worker``); the table is printed by the parent.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

import tritorch as torch
import tritorch.distributed as dist

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = "1K,16K,256K,1M,4M,16M,64M"


def _bytes(s):
    s = s.strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1], 1)
    return int(float(s[:-1] if s[-1] in "KMG" else s) * mult)


def _fmt(n):
    for unit, k in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= k:
            return f"{n / k:g} {unit}"
    return f"{n} B"


# ---- workers (one per rank) -----------------------------------------------------------------------------------------

def _worker_allreduce(args):
    dist.init_process_group("mpi")
    rows = []
    for s in args.sizes.split(","):
        nbytes = _bytes(s)
        x = torch.ones(max(1, nbytes // 4))
        reps = max(3, min(args.steps, int(2e8 // max(nbytes, 1))))
        for _ in range(2):
            dist.all_reduce(x)
        times = []
        for _ in range(reps):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(x)
            times.append(time.perf_counter() - t0)
        t = float(np.median(times))
        tt = torch.tensor([t], dtype=torch.float64)
        dist.all_reduce(tt, op="max")
        rows.append({"bytes": x.numel() * 4, "seconds": float(tt.item())})
    if dist.get_rank() == 0:
        print("RESULT " + json.dumps(rows), flush=True)
    dist.destroy_process_group()


def _worker_ddp(args):
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group("mpi")
    rank = dist.get_rank() if world > 1 else 0
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512),
                                torch.nn.ReLU(), torch.nn.Linear(512, 10))
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(rank)
    b = args.batch // world
    x = torch.from_numpy(rng.standard_normal((b, 784)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 10, b).astype(np.int64))

    def step():
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()
    for _ in range(3):
        step()
    times = []
    for _ in range(args.steps):
        if world > 1:
            dist.barrier()
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    t = float(np.median(times))
    if world > 1:
        tt = torch.tensor([t], dtype=torch.float64)
        dist.all_reduce(tt, op="max")
        t = float(tt.item())
    if rank == 0:
        print("RESULT " + json.dumps({"world": world, "step_seconds": t, "samples_per_s": args.batch / t}),
              flush=True)
    if world > 1:
        dist.destroy_process_group()


# ---- the parent ---------------------------------------------------------------------------------------------------

def _launch(nproc, worker, args, timeout=600):
    cmd = [sys.executable, "-m", "tritorch.cli", "run", "--nproc-per-node", str(nproc), "-m",
           "bench.test_distributed_cpu", "--worker", worker, "--steps", str(args.steps), "--sizes", args.sizes,
           "--batch", str(args.batch)]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("OMP_NUM_THREADS", "1")    # one core per process in both runs, so N vs 1 compares like with like
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"worker {worker} failed (exit {out.returncode}):\n{out.stdout[-2000:]}{out.stderr[-2000:]}")


def allreduce_table(args):
    rows = _launch(args.nproc, "allreduce", args)
    n = args.nproc
    print(f"all_reduce float32 SUM, {n} ranks, mpi backend (MPICH), CPU")
    print(f"{'size':>10} {'time':>12} {'algbw GB/s':>11} {'busbw GB/s':>11}")
    for r in rows:
        t = r["seconds"]
        alg = r["bytes"] / t / 1e9
        print(f"{_fmt(r['bytes']):>10} {t * 1e6:>10.1f}us {alg:>11.3f} {alg * 2 * (n - 1) / n:>11.3f}")
    return rows


def ddp_table(args):
    one = _launch(1, "ddp", args)
    many = _launch(args.nproc, "ddp", args)
    eff = many["samples_per_s"] / (args.nproc * one["samples_per_s"])
    print(f"DDP step, MLP 784-512-512-10, global batch {args.batch}, SGD, CPU")
    print(f"  1 process : {one['step_seconds'] * 1e3:8.2f} ms/step  {one['samples_per_s']:9.0f} samples/s")
    print(f"  {args.nproc} processes: {many['step_seconds'] * 1e3:8.2f} ms/step  {many['samples_per_s']:9.0f} "
          f"samples/s  scaling efficiency {100 * eff:.0f}% "
          f"(speed-up {many['samples_per_s'] / one['samples_per_s']:.2f}x)")
    return one, many, eff


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--sizes", default=SIZES)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--worker", choices=["allreduce", "ddp"], default=None)
    p.add_argument("--only", choices=["allreduce", "ddp"], default=None)
    args = p.parse_args(argv)
    if args.worker == "allreduce":
        return _worker_allreduce(args)
    if args.worker == "ddp":
        return _worker_ddp(args)
    if args.only in (None, "allreduce"):
        allreduce_table(args)
    if args.only in (None, "ddp"):
        ddp_table(args)
    return 0


def test_distributed_bench_smoke():
    """A tiny run of both tables (the numbers are printed, not checked)."""
    args = argparse.Namespace(nproc=2, steps=2, sizes="1K,64K", batch=32)
    assert len(allreduce_table(args)) == 2
    assert ddp_table(args)[2] > 0


if __name__ == "__main__":
    sys.exit(main())
