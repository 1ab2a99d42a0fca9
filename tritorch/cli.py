"""The ``tritorch`` command.

    tritorch info                                          versions, devices, interpreter mode, autotune cache
    tritorch tune [--model NAME | --ops LIST] [--shapes ...] [--dtype ...]
                                                           pre-tune kernels; per kernel: chosen config, speed-up
    tritorch bench [--ops LIST] [--dtype ...] [--sizes ...] [--device ...] [--compare torch] [--out F] [--plot F]
                                                           op-level benchmarks: table + JSON results file
    tritorch train [--epochs N] [--device ...] [--data DIR] [--out F] [--resume F] [--plot F] ...
                                                           the main job: train the CNN on the digits (or MNIST)
    tritorch compile-check [--target sm_90a] [--jobs N] [--cache DIR] [--workloads LIST] [--kernels REGEX]
                           [--candidates all|none|cached] [--defaults-only] [--budget SECONDS]
                           [--spill-tolerance BYTES]
                                                           compile every kernel for a GPU (no GPU needed): errors,
                                                           registers, spills, shared memory, wgmma; the CI gate
    tritorch precompile [--target sm_90a] [--jobs N] [--workloads LIST] [--candidates]
                                                           fill Triton's on-disk cache ahead, in parallel
    tritorch run --nproc-per-node N [--nnodes M --node-rank R --master-addr A --master-port P] script.py [args]
                                                           start N ranks of a script (torchrun's conventions)

A bad argument is reported in one line (``tritorch: error: ...``) with exit status 2; a failure while running,
with exit status 1.
"""
import argparse
import importlib
import sys

from .distributed.run import main as _run_main

__all__ = ["main", "build_parser", "MODELS"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _usage_error():
    from .benchmark import UsageError
    return UsageError


# ---- info ----------------------------------------------------------------------------------------------------------
def cmd_info(args):
    import numpy
    import triton
    import tritorch
    from tritorch import autotune
    from .benchmark import _version
    torch_v = _version("torch")
    print(f"tritorch {tritorch.__version__}  triton {triton.__version__}  numpy {numpy.__version__}  "
          f"python {sys.version.split()[0]}" + (f"  torch {torch_v} (baseline only)" if torch_v else ""))
    cc, cb = _version("cuda-core"), _version("cuda-bindings")
    if cc or cb:
        print(f"cuda-core {cc or '-'}  cuda-bindings {cb or '-'}")
    if tritorch.cuda.is_interpreted():
        print("interpreter mode: on (TRITORCH_INTERPRET=1): 'cuda' tensors live in host memory and the Triton "
              "kernels run in Triton's interpreter")
        print("devices: cpu, cuda:0 = Triton interpreter")
    else:
        print("interpreter mode: off")
        devs = ["cpu"]
        if tritorch.cuda.is_available():
            for i in range(tritorch.cuda.device_count()):
                cap = ".".join(map(str, tritorch.cuda.get_device_capability(i)))
                devs.append(f"cuda:{i} = {tritorch.cuda.get_device_name(i)} (compute capability {cap})")
        else:
            devs.append("no CUDA GPU (set TRITORCH_INTERPRET=1 to run the Triton kernels interpreted)")
        print("devices: " + ", ".join(devs))
    reason = autotune.why_disabled()
    print("autotune: " + ("on" if reason is None else f"off ({reason}): heuristic default configs"))
    print(f"autotune cache: {autotune.cache_path()} ({len(autotune.entries())} entries)")
    names = sorted(autotune.REGISTRY)
    print(f"tunable kernels: {len(names)}" + (f" ({', '.join(names)})" if names else ""))
    return 0


# ---- compile-check, precompile -----------------------------------------------------------------------------------
def _split(v):
    return [w.strip() for w in v.split(",") if w.strip()] if v else None


def cmd_compile_check(args):
    from .compilecheck import gate
    cache = None if args.no_cache else gate.cache_file(args.target, args.cache)
    candidates = "none" if args.defaults_only else args.candidates
    if args.budget is not None and args.budget < 0:
        raise _usage_error()(f"--budget must be >= 0 seconds, got {args.budget}")
    if args.spill_tolerance is not None and args.spill_tolerance < 0:
        raise _usage_error()(f"--spill-tolerance must be >= 0 bytes, got {args.spill_tolerance}")
    return gate.check(args.target, args.jobs, cache, _split(args.workloads), args.kernels, verbose=args.verbose,
                      json_out=args.json, candidates=candidates, budget=args.budget,
                      spill_tolerance=gate.SPILL_TOLERANCE if args.spill_tolerance is None else args.spill_tolerance)


def cmd_precompile(args):
    from .compilecheck import gate
    _, failed, _ = gate.precompile(args.target, args.jobs, _split(args.workloads), args.candidates)
    return 1 if failed else 0


# ---- tune ----------------------------------------------------------------------------------------------------------
def _mlp(shapes):
    """The MLP of the benchmarks: 784-128-10 on a batch of 256 (``--shapes BxF`` changes the input)."""
    import tritorch
    from tritorch import nn
    shape = shapes[0] if shapes else (256, 784)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    model = nn.Sequential(nn.Linear(shape[-1], 128), nn.ReLU(), nn.Linear(128, 10))
    return model, (tritorch.randn(*shape),)


MODELS = {"mlp": _mlp}


def _load_model(spec, shapes):
    """A built-in model name, or ``package.module:factory`` where ``factory(shapes)`` returns ``(model, inputs)``
    or a model (then ``--shapes`` gives the input shapes)."""
    if spec in MODELS:
        return MODELS[spec](shapes)
    if ":" not in spec:
        raise _usage_error()(f"unknown model {spec!r}; built-in: {', '.join(MODELS)}, or package.module:factory")
    mod, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError) as e:
        raise _usage_error()(f"cannot load model {spec!r} ({type(e).__name__}: {e})") from None
    made = factory(shapes)
    if isinstance(made, tuple) and len(made) == 2:
        model, inputs = made
        return model, tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    if not shapes:
        raise _usage_error()(f"model {spec!r} returned no example inputs: give their shapes with --shapes")
    import tritorch
    return made, tuple(tritorch.randn(*((s,) if isinstance(s, int) else s)) for s in shapes)


def cmd_tune(args):
    import tritorch
    from tritorch import autotune
    from .benchmark import parse_ops, parse_dtypes, parse_sizes, cli_cases, _progress
    shapes = parse_sizes(args.shapes)
    dtypes = parse_dtypes(args.dtype)
    if args.model and args.ops:
        raise _usage_error()("give --model or --ops, not both")
    ops = parse_ops(args.ops) if not args.model else []
    if not tritorch.cuda.is_available():
        print("tritorch tune: no CUDA GPU here (and TRITORCH_INTERPRET is not set): nothing to tune; the kernels "
              "use their heuristic default configs")
        return 0
    interp = tritorch.cuda.is_interpreted()
    model = _load_model(args.model, shapes) if args.model else None
    cases = None if args.model else cli_cases(ops, shapes, dtypes, "interpreter" if interp else "gpu")
    with autotune.tuning(True):
        reason = autotune.why_disabled()
    if reason:
        print(f"tuning is off here ({reason}): the kernels run once and keep their heuristic defaults")
    before = autotune.seen()
    autotune._SEEN.clear()
    try:
        if args.model:
            model, inputs = model
            if dtypes and dtypes[0] not in ("float32", "tf32"):
                model = model.to(dtype=getattr(tritorch, dtypes[0]))
            model = model.to("cuda")
            pdtype = next((p.dtype for p in model.parameters()), None)
            inputs = tuple(x.to(device="cuda", dtype=pdtype or x.dtype)
                           if hasattr(x, "is_floating_point") and x.is_floating_point() else
                           (x.to("cuda") if hasattr(x, "to") else x) for x in inputs)
            progress = _progress(1, args)
            progress(f"model {args.model}")
            autotune.tune_model(model, *inputs)
            progress(None)
        else:
            progress = _progress(len(cases), args)
            with autotune.tuning(True):
                for case in cases:
                    progress(case.name)
                    case.make(tritorch, "cuda", case.shape)()
                tritorch.cuda.synchronize()
            progress(None)
        picked = autotune.seen()
    finally:
        autotune._SEEN.update(before)
    _print_choices(picked, autotune.entries())
    return 0


def _print_choices(picked, cached):
    """Per kernel and key: the chosen config, the default, and the speed-up of the choice over the default."""
    from tritorch.autotune import config_name
    if not picked:
        from tritorch import autotune
        n = len(autotune.REGISTRY)
        print(f"no tunable kernel ran ({n} tunable kernel{'s' if n != 1 else ''} registered"
              + (": " + ", ".join(sorted(autotune.REGISTRY)) if n else "") + ")")
        return
    by_key = {(e.kernel, e.key): e for e in cached}
    rows = []
    for (kernel, key), cfg in sorted(picked.items(), key=lambda kv: kv[0]):
        e = by_key.get((kernel, key))
        chosen = config_name(cfg)
        if e is not None and e.best == chosen:
            sp = e.speedup
            rows.append((kernel, key, chosen, e.default or "", f"{sp:.2f}x" if sp else "-",
                         f"{e.timings[chosen]:.4f} ms" if e.timings.get(chosen) else "-"))
        else:
            rows.append((kernel, key, chosen, "(default)", "-", "-"))
    w = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(("kernel", "key", "chosen config"))]
    print(f"{'kernel':<{w[0]}}  {'key':<{w[1]}}  {'chosen config':<{w[2]}}  {'time':>11}  {'vs default':>10}  "
          f"default config")
    for kernel, key, chosen, default, sp, ms in rows:
        print(f"{kernel:<{w[0]}}  {key:<{w[1]}}  {chosen:<{w[2]}}  {ms:>11}  {sp:>10}  {default}")


# ---- bench ---------------------------------------------------------------------------------------------------------
def cmd_bench(args):
    from . import benchmark
    return benchmark.main(args)


# ---- the parser ----------------------------------------------------------------------------------------------------
def build_parser():
    from .benchmark import OPS, STEP_OPS
    ops = ",".join(OPS) + "; the fixed cases (no --sizes): " + ",".join(STEP_OPS)
    p = _Parser(prog="tritorch", description="tritorch: info, kernel tuning and benchmarks")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser, metavar="{info,tune,bench,train}")
    sub.add_parser("info", help="versions, devices, interpreter mode, autotune cache").set_defaults(fn=cmd_info)

    t = sub.add_parser("tune", help="pre-tune the kernels of a model or of some ops",
                       description="Pre-tune kernels (on a GPU): run a model's forward and backward, or ops, with "
                                   "tuning on; print per kernel the chosen config and its speed-up over the "
                                   "default config.")
    what = t.add_mutually_exclusive_group()
    what.add_argument("--model", help="built-in model (" + ", ".join(MODELS) + ") or package.module:factory")
    what.add_argument("--ops", help=f"comma-separated ops (default: all): {ops}")
    t.add_argument("--shapes", help="comma-separated sizes: element counts (1024, 2^20) or shapes (256x784); "
                                    "for --model, the input shape(s)")
    t.add_argument("--dtype", default=None, help="comma-separated dtypes: float32, float16, bfloat16, tf32")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(fn=cmd_tune)

    b = sub.add_parser("bench", help="op-level, fwd+bwd and training-step benchmarks on the devices present",
                       description="Benchmarks of ops, backwards, layers' fwd+bwd and training steps: a table of "
                                   "time, GB/s or TFLOP/s, % of the device's ceiling, the ratio to PyTorch and the "
                                   "peak memory against PyTorch's (--compare torch), and a JSON results file.")
    b.add_argument("--ops", help=f"comma-separated ops (default: all): {ops}")
    b.add_argument("--sizes", help="comma-separated sizes: element counts (1024, 2^20) or shapes (64x48x80); "
                                   "default: each op's standard size for the device")
    b.add_argument("--dtype", default=None, help="comma-separated dtypes: float32, float16, bfloat16, tf32")
    b.add_argument("--device", default=None, help="cpu, cuda or all (default: every device present)")
    b.add_argument("--compare", default=None, choices=["torch"], help="also time PyTorch eager (if installed)")
    b.add_argument("--warmup", type=int, default=None, help="untimed runs first")
    b.add_argument("--repeat", type=int, default=None, help="timed runs (the median is reported)")
    b.add_argument("--out", default=None, help="JSON results file (default ./tritorch-bench-<device>-<date>.json)")
    b.add_argument("--plot", default=None, metavar="PNG", help="also draw a chart (needs matplotlib)")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(fn=cmd_bench)

    c = sub.add_parser("compile-check", help="compile every kernel for a GPU target and gate on the result",
                       description="Compile every kernel specialization the workloads launch on a GPU (GPU host "
                                   "paths, every autotune candidate, float32/float16/bfloat16) with Triton's GPU "
                                   "compiler, no GPU needed; report per kernel compile errors, registers, spills "
                                   "(ptxas -v), shared memory and wgmma use. Exit status 1 on a compile error, "
                                   "shared memory over the limit, or spills not allowed.")
    c.add_argument("--target", default="sm_90a", help="GPU target: sm_90a (default), sm_80, ...")
    c.add_argument("--jobs", type=int, default=None, help="compile processes (default: all cores)")
    c.add_argument("--cache", default=None, metavar="DIR",
                   help="folder of the results files (default: tritorch's cache dir); only what changed compiles")
    c.add_argument("--no-cache", action="store_true", help="compile everything, keep no results file")
    c.add_argument("--workloads", default=None, help="comma-separated workload families (default: all)")
    c.add_argument("--kernels", default=None, metavar="REGEX", help="only kernels whose name matches")
    c.add_argument("--candidates", default="all", choices=["all", "none", "cached"],
                   help="autotune candidates: all compile (default); none (heuristic defaults only); cached (the CI "
                        "gate: every default, the candidates the results file holds, the rest within --budget)")
    c.add_argument("--defaults-only", action="store_true", help="the heuristic defaults only (--candidates none)")
    c.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                   help="with --candidates cached: seconds to spend compiling candidates the file lacks (default 0)")
    c.add_argument("--spill-tolerance", type=int, default=None, metavar="BYTES",
                   help="autotune candidates' spill stores per thread that pass, for exploring (default 0: any "
                        "spill fails; a heuristic default never may spill)")
    c.add_argument("--json", default=None, metavar="FILE", help="also write the summary and findings as JSON")
    c.add_argument("--verbose", action="store_true", help="every spilling specialization and finding")
    c.set_defaults(fn=cmd_compile_check)

    pc = sub.add_parser("precompile", help="compile the library's kernels ahead into Triton's cache, in parallel",
                        description="Compile ahead, in parallel, the kernel specializations the workloads launch "
                                    "into Triton's on-disk cache, so a first run on a new machine does not wait on "
                                    "hundreds of compiles one by one.")
    pc.add_argument("--target", default=None, help="GPU target (default: this machine's GPU, else sm_90a)")
    pc.add_argument("--jobs", type=int, default=None, help="compile processes (default: all cores)")
    pc.add_argument("--workloads", default=None, help="comma-separated workload families (default: all)")
    pc.add_argument("--candidates", action="store_true", help="also every autotune candidate (for tuning runs)")
    pc.set_defaults(fn=cmd_precompile)

    sub.add_parser("train", add_help=False, help="train the CNN on the digits (or MNIST); see tritorch train --help")
    sub.add_parser("run", add_help=False, help="start N ranks of a script (torchrun's conventions); see tritorch run "
                   "--help")
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["run"]:
        return _run_main(argv[1:], prog="tritorch run")
    if argv[:1] == ["train"]:
        from .train import main as train_main
        return train_main(argv[1:], prog="tritorch train")
    args = build_parser().parse_args(argv)
    for name in ("warmup", "repeat"):
        v = getattr(args, name, None)
        if v is not None and v < (0 if name == "warmup" else 1):
            print(f"tritorch: error: --{name} must be {'>= 0' if name == 'warmup' else '>= 1'}, got {v}",
                  file=sys.stderr)
            return 2
    try:
        return args.fn(args)
    except _usage_error() as e:
        print(f"tritorch: error: {e}", file=sys.stderr)
        return 2
    except (RuntimeError, ValueError, OSError, ImportError) as e:
        print(f"tritorch: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
