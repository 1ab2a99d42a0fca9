"""The ``nccl`` backend and DistributedDataParallel on a GPU, world size 1 (one GPU is enough).

    python3 -m bench.dist_gpu [--out DIR]

Checks every collective on ``cuda`` tensors against NumPy (float32, float16, bfloat16, int32, int64; SUM, AVG, MAX,
MIN, PRODUCT), async work, then times all_reduce over sizes and a DDP training step (MLP 784-512-512-10, batch 256)
against the bare model's step. Prints a table and writes ``dist_gpu.json`` under ``--out``.
"""
import argparse
import json
import os
import sys
import time
import traceback

import numpy as np

import tritorch as torch
import tritorch.distributed as dist


def _sync(torch):
    torch.cuda.synchronize()


def check_collectives(torch, dist, log):
    ok = 0
    for dt in ["float32", "float16", "bfloat16", "int32", "int64"]:
        for op in ["sum", "avg", "max", "min", "product"]:
            if op == "avg" and dt.startswith("int"):
                continue
            a = (np.arange(12).reshape(3, 4) % 5 + 1).astype(np.float64)
            x = torch.tensor(a).to(getattr(torch, dt)).to("cuda")
            dist.all_reduce(x, op=op)
            got = x.to(torch.float64).cpu().numpy()
            assert np.array_equal(got, a), (dt, op, got)
            ok += 1
        x = torch.arange(6, device="cuda").to(getattr(torch, dt))
        dist.broadcast(x, src=0)
        out = torch.zeros(6, device="cuda").to(getattr(torch, dt))
        dist.all_gather_into_tensor(out, x)
        rs = torch.zeros(6, device="cuda").to(getattr(torch, dt))
        dist.reduce_scatter_tensor(rs, x)
        lst = [torch.zeros(6, device="cuda").to(getattr(torch, dt))]
        dist.all_gather(lst, x)
        for y in (out, rs, lst[0]):
            assert np.array_equal(y.to(torch.float64).cpu().numpy(), np.arange(6.0)), (dt, y)
        ok += 4
    w = dist.all_reduce(torch.ones(1000, device="cuda"), async_op=True)
    assert w.wait() and w.is_completed()
    dist.barrier()
    nc = torch.ones(4, 6, device="cuda").t()               # non-contiguous
    dist.all_reduce(nc)
    assert np.array_equal(nc.cpu().numpy(), np.ones((6, 4)))
    log(f"collectives: {ok + 2} checks passed (float32/float16/bfloat16/int32/int64, all ops, async, non-contiguous)")
    return ok + 2


def bench_allreduce(torch, dist, log):
    rows = []
    for nbytes in [1 << 10, 1 << 16, 1 << 20, 1 << 24, 1 << 28]:
        x = torch.ones(nbytes // 4, device="cuda")
        for _ in range(3):
            dist.all_reduce(x)
        _sync(torch)
        reps = 20
        t0 = time.perf_counter()
        for _ in range(reps):
            dist.all_reduce(x)
        _sync(torch)
        t = (time.perf_counter() - t0) / reps
        rows.append({"bytes": nbytes, "us": t * 1e6, "algbw_GBps": nbytes / t / 1e9})
        log(f"all_reduce float32 {nbytes:>10} B: {t * 1e6:9.1f} us  {nbytes / t / 1e9:8.1f} GB/s (world 1)")
    return rows


def bench_ddp(torch, dist, log):
    def make():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512),
                                   torch.nn.ReLU(), torch.nn.Linear(512, 10)).to("cuda")
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.standard_normal((256, 784)).astype(np.float32), device="cuda")
    y = torch.tensor(rng.integers(0, 10, 256), device="cuda")
    loss_fn = torch.nn.CrossEntropyLoss()
    res = {}
    grads = {}
    for name in ("bare", "ddp"):
        model = make()
        net = torch.nn.parallel.DistributedDataParallel(model) if name == "ddp" else model
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step():
            opt.zero_grad()
            loss_fn(net(x), y).backward()
            opt.step()
        for _ in range(5):
            step()
        _sync(torch)
        n = 50
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        _sync(torch)
        res[name] = (time.perf_counter() - t0) / n * 1e3
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        grads[name] = [p.grad.cpu().numpy() for p in model.parameters()]
    same = all(np.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(grads["bare"], grads["ddp"]))
    log(f"training step MLP 784-512-512-10 b256: bare {res['bare']:.3f} ms, DDP (nccl, world 1) {res['ddp']:.3f} ms "
        f"(overhead {res['ddp'] - res['bare']:+.3f} ms); DDP gradients equal the bare model's: {same}")
    return {"bare_ms": res["bare"], "ddp_ms": res["ddp"], "grads_equal": bool(same)}


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=".")
    args = p.parse_args(argv)
    lines = []

    def log(s):
        print(s, flush=True)
        lines.append(s)
    result = {}
    t0 = time.perf_counter()
    try:
        dist.init_process_group("nccl", world_size=1, rank=0, timeout=120)
        log(f"init_process_group('nccl'): {time.perf_counter() - t0:.2f} s, backend {dist.get_backend()}")
        for name, fn in (("collectives", check_collectives), ("allreduce", bench_allreduce), ("ddp", bench_ddp)):
            try:
                result[name] = fn(torch, dist, log)
            except Exception as e:     # noqa: BLE001  (report every part even when one fails)
                log(f"{name}: FAILED {type(e).__name__}: {e}")
                traceback.print_exc()
                result[name] = f"FAILED {type(e).__name__}: {e}"
        dist.destroy_process_group()
    except Exception as e:             # noqa: BLE001
        log(f"init: FAILED {type(e).__name__}: {e}")
        traceback.print_exc()
        result["init"] = f"FAILED {type(e).__name__}: {e}"
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "dist_gpu.json"), "w") as f:
        json.dump({"result": result, "log": lines}, f, indent=1)
    print("\n".join(["==== summary ===="] + lines))
    return 0 if not any(isinstance(v, str) and v.startswith("FAILED") for v in result.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
