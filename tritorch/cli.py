"""The ``tritorch`` command: ``info``, ``tune`` (pre-tune kernels for ops or a model) and ``bench``."""
import argparse
import sys

__all__ = ["main"]

# op -> a function(size, dtype, device) that runs the op once at a representative shape of that size
_OP_SHAPES = {
    "add": lambda n: [(n,)],
    "mul": lambda n: [(n,)],
    "exp": lambda n: [(n,)],
    "sum": lambda n: [(max(1, n // 1024), 1024)],
    "softmax": lambda n: [(max(1, n // 1024), 1024)],
    "matmul": lambda n: [(int(round(n ** (1 / 3))),) * 3],
}


def _run_op(op, shape, dtype, device):
    import tritorch as torch
    if op == "matmul":
        m, n, k = shape
        a = torch.randn(m, k, dtype=dtype, device=device)
        b = torch.randn(k, n, dtype=dtype, device=device)
        return a @ b
    x = torch.randn(*shape, dtype=dtype, device=device)
    if op in ("add", "mul"):
        return getattr(torch, op)(x, x)
    if op == "softmax":
        return torch.softmax(x, dim=-1)
    return getattr(torch, op)(x)


def cmd_info(args):
    import triton
    import numpy
    import tritorch
    from tritorch import autotune
    print(f"tritorch {tritorch.__version__}  triton {triton.__version__}  numpy {numpy.__version__}  "
          f"python {sys.version.split()[0]}")
    if tritorch.cuda.is_interpreted():
        print("device: cuda runs in Triton's interpreter (TRITORCH_INTERPRET=1), memory on the host")
    elif tritorch.cuda.is_available():
        for i in range(tritorch.cuda.device_count()):
            print(f"device cuda:{i}: {tritorch.cuda.get_device_name(i)}")
    else:
        print("device: no CUDA GPU (cpu only; set TRITORCH_INTERPRET=1 to run the Triton kernels interpreted)")
    print(f"autotune: {'on' if autotune.enabled() else 'off (heuristic defaults)'}; "
          f"cache {autotune.cache_path()} ({len(autotune.entries())} entries)")
    return 0


def cmd_tune(args):
    import tritorch as torch
    from tritorch import autotune
    device = "cuda"
    if not torch.cuda.is_available():
        print("error: tuning needs a GPU (or TRITORCH_INTERPRET=1 to dry-run the defaults)", file=sys.stderr)
        return 2
    dtype = torch._dtype.to_dtype(args.dtype)
    ops = args.ops.split(",") if args.ops else list(_OP_SHAPES)
    unknown = [o for o in ops if o not in _OP_SHAPES]
    if unknown:
        print(f"error: unknown op(s) {unknown}; known: {sorted(_OP_SHAPES)}", file=sys.stderr)
        return 2
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else [1 << 20, 1 << 24]
    work = [(op, shape) for op in ops for n in sizes for shape in _OP_SHAPES[op](n)]
    try:
        from tqdm import tqdm
        work = tqdm(work, desc="tuning", unit="case")
    except ImportError:
        pass
    for op, shape in work:
        _run_op(op, shape, dtype, device)
    torch.cuda.synchronize()
    _print_choices(autotune.entries())
    return 0


def _print_choices(rows):
    if not rows:
        print("no tuned entries (tuning is off here: heuristic defaults are used)")
        return
    print(f"{'kernel':<22} {'key':<40} {'best config':<44} {'speed-up vs default':>10}")
    from tritorch import autotune
    for name, key, best, timings in rows:
        t = autotune.REGISTRY.get(name)
        default = None
        if t is not None:
            try:
                default = t.default(tuple(key.split("|"))).name
            except Exception:
                default = None
        sp = ""
        if best in timings and default in timings and timings[best] > 0:
            sp = f"{timings[default] / timings[best]:.2f}x"
        print(f"{name:<22} {key:<40} {str(best):<44} {sp:>10}")


def cmd_bench(args):
    from . import benchmark
    return benchmark.main(args)


def build_parser():
    p = argparse.ArgumentParser(prog="tritorch", description="tritorch: info, kernel tuning and benchmarks")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("info", help="versions, devices, interpreter mode, autotune cache").set_defaults(fn=cmd_info)
    t = sub.add_parser("tune", help="pre-tune kernels for a set of ops and sizes")
    t.add_argument("--ops", help="comma-separated: " + ",".join(_OP_SHAPES))
    t.add_argument("--sizes", help="comma-separated element counts (default 2^20,2^24)")
    t.add_argument("--dtype", default="float32")
    t.set_defaults(fn=cmd_tune)
    b = sub.add_parser("bench", help="op-level benchmarks on the devices present")
    b.add_argument("--ops", help="comma-separated op names (default: all)")
    b.add_argument("--sizes", help="comma-separated element counts")
    b.add_argument("--dtype", default="float32")
    b.add_argument("--device", default=None)
    b.add_argument("--compare", default=None, help="'torch' to compare with PyTorch eager (if installed)")
    b.add_argument("--out", default=None, help="JSON results file (default bench/results/<device>-<date>.json)")
    b.add_argument("--plot", default=None, help="write a PNG chart to this path")
    b.set_defaults(fn=cmd_bench)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (RuntimeError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
