"""Op-level benchmarks: the cases, the runner, the table and the JSON results (``tritorch bench`` and bench/gpu.py).

Each case is written once against the torch-shaped API, so the same builder runs on ``tritorch`` and on ``torch``
(``import tritorch as torch``): ``build(lib, device, shape, dtype)`` makes the inputs on a device and returns the
timed call. A case whose op does not exist in a library raises ``Missing`` when built; runners report it and go
on, and an error in one case does not stop the others.

Timing (:mod:`tritorch._timing`): on a GPU, CUDA events on the launch stream, the L2 flushed before each timed run,
warm-up first (compilation, autotuning), the median of the repeats; on the cpu device and in Triton's interpreter,
the host clock. Speeds are GB/s (bytes read + written) or TFLOP/s, and on a GPU a share of the device's ceilings:
the copy bandwidth measured in the same run, the matmul peaks measured on the H100 (shared/GPU.md).
"""
import datetime
import gc
import json
import math
import os
import platform
import statistics
import sys
from dataclasses import dataclass, field, replace

import numpy as np

from . import _atomic

__all__ = ["Case", "Op", "Missing", "OPS", "CASES", "HOST_COST", "CEILINGS", "get_case", "make_case", "make_input",
           "resolve", "run_case", "run_all", "host_cost", "environment", "table", "errors", "write", "default_name",
           "parse_sizes", "parse_dtypes", "plot", "main"]


class Missing(Exception):
    """The library has no such op (yet)."""


def resolve(lib, *names):
    """The first of ``lib.a.b`` paths that exists, e.g. ``resolve(lib, "softmax", "nn.functional.softmax")``."""
    for name in names:
        obj = lib
        try:
            for part in name.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        return obj
    raise Missing(f"{getattr(lib, '__name__', lib)} has none of: {', '.join(names)}")


def make_input(lib, shape, dtype, device, seed=0, scale=1.0):
    """A random standard-normal tensor of ``lib`` (float32 drawn by NumPy, then cast on the device)."""
    rng = np.random.default_rng(seed)
    arr = rng.standard_normal(shape, dtype=np.float32)
    if scale != 1.0:
        arr *= scale
    t = lib.from_numpy(arr)
    return t.to(device=device, dtype=getattr(lib, dtype))


# ---- the ops -------------------------------------------------------------------------------------------------------
def _numel(shape):
    return int(np.prod(shape)) if len(shape) else 1


_ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}
_SHORT = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "float64": "fp64"}


def _binary(op):
    def build(lib, device, shape, dtype, extra=None):
        f = resolve(lib, op)
        a, b = make_input(lib, shape, dtype, device, 1), make_input(lib, shape, dtype, device, 2)
        return lambda: f(a, b)
    return build


def _unary(op):
    def build(lib, device, shape, dtype, extra=None):
        f = resolve(lib, op)
        a = make_input(lib, shape, dtype, device, 1)
        return lambda: f(a)
    return build


def _row_sum(lib, device, shape, dtype, extra=None):
    f = resolve(lib, "sum")
    a = make_input(lib, shape, dtype, device, 1)
    return lambda: f(a, dim=-1)


def _softmax(lib, device, shape, dtype, extra=None):
    f = resolve(lib, "softmax", "nn.functional.softmax")
    a = make_input(lib, shape, dtype, device, 1)
    return lambda: f(a, dim=-1)


def _matmul(lib, device, shape, dtype, extra=None):
    f = resolve(lib, "matmul")
    m, k, n = shape
    a = make_input(lib, (m, k), dtype, device, 1, scale=0.1)
    b = make_input(lib, (k, n), dtype, device, 2, scale=0.1)
    if not (extra or {}).get("tf32"):
        return lambda: f(a, b)
    get, put = resolve(lib, "get_float32_matmul_precision"), resolve(lib, "set_float32_matmul_precision")

    def tf32():                     # TF32 tensor cores for this call only, on both libraries
        prev = get()
        put("high")
        try:
            return f(a, b)
        finally:
            put(prev)
    return tf32


def _flat(n):
    return (n,)


def _rows(n):
    cols = min(n, 1024)
    return (max(1, n // cols), cols)


def _square(n):
    s = max(1, math.isqrt(n))
    return (s, s, s)


@dataclass(frozen=True)
class Op:
    """An op of ``tritorch bench``: how to build it, the shape of a problem of ``n`` elements, bytes and flops."""
    name: str
    family: str
    build: object
    shape_of: object                       # n elements -> the shape (matmul: (M, K, N) with M*K = n)
    ndim: int                              # 0: any number of dims
    bytes: object                          # (shape, itemsize) -> bytes read + written by one call
    flops: object = None                   # shape -> floating-point operations of one call
    tol: float = 1e-3


OPS = {op.name: op for op in [
    Op("add", "elementwise", _binary("add"), _flat, 0, lambda s, i: 3 * _numel(s) * i),
    Op("mul", "elementwise", _binary("mul"), _flat, 0, lambda s, i: 3 * _numel(s) * i),
    Op("exp", "elementwise", _unary("exp"), _flat, 0, lambda s, i: 2 * _numel(s) * i),
    Op("sum", "reduce", _row_sum, _rows, 2, lambda s, i: (_numel(s) + s[0]) * i, tol=1e-4),
    Op("softmax", "softmax", _softmax, _rows, 2, lambda s, i: 2 * _numel(s) * i, tol=1e-2),
    Op("matmul", "matmul", _matmul, _square, 3, lambda s, i: i * (s[0] * s[1] + s[1] * s[2] + s[0] * s[2]),
       flops=lambda s: 2 * s[0] * s[1] * s[2], tol=2e-2),
]}


@dataclass
class Case:
    """One timed call: ``build(lib, device, shape, dtype[, extra]) -> fn``; ``bytes``/``flops`` of one call."""
    name: str
    family: str
    shape: tuple
    small: tuple                  # the same case, tiny: for smoke runs, tests and the interpreter
    cpu: tuple                    # the size the cpu-device benchmarks use
    dtype: str
    build: object
    bytes: object = None          # shape -> bytes moved by one call (reads + writes), or None
    flops: object = None          # shape -> floating-point operations of one call, or None
    ceiling: str = "copy"         # which ceiling the speed is compared with
    tol: float = 1e-3             # relative tolerance of the check against the baseline
    extra: dict = field(default_factory=dict)
    op: str = ""

    def make(self, lib, device, shape):
        return self.build(lib, device, shape, self.dtype, self.extra) if self.extra else \
            self.build(lib, device, shape, self.dtype)


def _fmt_shape(shape):
    return "x".join(map(str, shape))


def make_case(op, shape, dtype="float32", name=None, small=None, cpu=None, tf32=False):
    """The case of ``op`` (a name of ``OPS``) at ``shape`` in ``dtype``; ``tf32``: float32 matmul on TF32."""
    o = OPS[op]
    shape = tuple(int(s) for s in shape)
    isz = _ITEMSIZE[dtype]
    if o.family == "matmul":
        ceiling = "tf32_matmul" if tf32 else ("bf16_matmul" if isz == 2 else "")
    else:
        ceiling = "copy"
    tol = o.tol if dtype == "float32" and not tf32 else max(o.tol, 1e-2)
    label = "tf32" if tf32 else _SHORT[dtype]
    return Case(name or f"{op} {label} {_fmt_shape(shape)}", o.family, shape, tuple(small or shape),
                tuple(cpu or shape), dtype, o.build, bytes=lambda s, _i=isz: o.bytes(s, _i), flops=o.flops,
                ceiling=ceiling, tol=tol, extra={"tf32": True} if tf32 else {}, op=op)


CASES = [
    make_case("add", (1 << 26,), "float32", "add fp32 2^26", (1000,), (1 << 20,)),
    make_case("mul", (1 << 26,), "float32", "mul fp32 2^26", (1000,), (1 << 20,)),
    make_case("exp", (1 << 26,), "float32", "exp fp32 2^26", (1000,), (1 << 20,)),
    make_case("sum", (16384, 4096), "float32", "row sum fp32 16384x4096", (37, 300), (1024, 1024)),
    make_case("softmax", (8192, 8192), "float16", "softmax fp16 8192x8192", (33, 200), (512, 1024)),
    make_case("matmul", (4096, 4096, 4096), "bfloat16", "matmul bf16 4096^3", (64, 48, 80), (128, 128, 128)),
    make_case("matmul", (4096, 4096, 4096), "float32", "matmul tf32 4096^3", (64, 48, 80), (256, 256, 256),
              tf32=True),
]

# the backward, fwd+bwd and training-step cases (they build on Case and make_input above)
from .benchmark_steps import STEP_CASES  # noqa: E402
CASES += STEP_CASES
STEP_OPS = list(dict.fromkeys(c.op for c in STEP_CASES))

# the host cost of one small op: launch-bound, timed on the host clock
HOST_COST = replace(make_case("add", (1000,), "float32", "add fp32 1000 (host cost)"), ceiling="", family="host")


def get_case(name):
    for c in CASES + [HOST_COST]:
        if c.name == name:
            return c
    raise KeyError(name)


# ---- ceilings --------------------------------------------------------------------------------------------------------
# measured on the lent H100 (shared/GPU.md); tf32 has no measurement there: half the bf16 one, as in the H100 specs
CEILINGS = {
    "copy": {"value": 2.9e12, "unit": "B/s", "note": "device-to-device copy, bytes read + written (GPU.md)"},
    "bf16_matmul": {"value": 798e12, "unit": "FLOP/s", "note": "bf16 8192^3 matmul through cuBLAS (GPU.md)"},
    "tf32_matmul": {"value": 399e12, "unit": "FLOP/s", "note": "estimate: half the bf16 ceiling"},
}


def measure_copy_ceiling(timer, nbytes=1 << 30):
    """Device-to-device copy bandwidth (bytes read + written per second) measured now, or None if it cannot be."""
    try:
        rt, cu = timer.rt, timer.cu
        (o1, src), (o2, dst) = rt.alloc(nbytes), rt.alloc(nbytes)
        copy = getattr(cu, "cuMemcpyDtoDAsync")
        ms = statistics.median(timer.time(
            lambda: timer._ok(copy(cu.CUdeviceptr(dst), cu.CUdeviceptr(src), nbytes, timer.stream)), 2, 10))
        del o1, o2
        return 2 * nbytes / (ms * 1e-3) if ms > 0 else None
    except Exception:
        return None


def ceilings_for(device_name, timer=None):
    """The ceilings of a GPU: the copy bandwidth measured now (else GPU.md's, on an H100), the matmul peaks
    measured on the H100 (none for other GPUs)."""
    out = {}
    h100 = "H100" in (device_name or "")
    measured = measure_copy_ceiling(timer) if timer is not None else None
    if measured:
        out["copy"] = {"value": measured, "unit": "B/s", "note": "device-to-device copy measured in this run"}
    elif h100:
        out["copy"] = dict(CEILINGS["copy"])
    if h100:
        out["bf16_matmul"] = dict(CEILINGS["bf16_matmul"])
        out["tf32_matmul"] = dict(CEILINGS["tf32_matmul"])
    return out


# ---- running the cases -----------------------------------------------------------------------------------------------
def _to_numpy(out):
    """A call's result as one float array (the gradients of a fwd+bwd call flattened and joined)."""
    if isinstance(out, (tuple, list)):
        return np.concatenate([_to_numpy(t).ravel() for t in out]) if out else np.zeros(0)
    return out.detach().float().cpu().numpy()


def _peak_bytes(lib, fn):
    """Device memory one call of ``fn`` allocates at its peak beyond what was allocated before it."""
    cuda = lib.cuda
    gc.collect()                         # what earlier calls left in reference cycles is not freed during this one
    cuda.synchronize()
    cuda.reset_peak_memory_stats()
    base = cuda.memory_allocated()
    out = fn()
    cuda.synchronize()
    peak = cuda.max_memory_allocated() - base
    del out
    return peak


def _speed(case, shape, ms, device="cuda", ceilings=CEILINGS):
    """Throughput of one call and, on a GPU, its share of the case's ceiling."""
    out = {}
    if ms <= 0:
        return out
    if case.bytes:
        out["gbps"] = case.bytes(shape) / (ms * 1e-3) / 1e9
    if case.flops:
        out["tflops"] = case.flops(shape) / (ms * 1e-3) / 1e12
    ceil = (ceilings or {}).get(case.ceiling)
    if ceil and device != "cpu":
        achieved = out.get("tflops", 0) * 1e12 if ceil["unit"] == "FLOP/s" else out.get("gbps", 0) * 1e9
        out["pct_of_ceiling"] = 100.0 * achieved / ceil["value"]
    return out


def run_case(case, libs, device, timer, small=False, warmup=5, repeat=30, ceilings=CEILINGS, shape=None):
    """Time ``case`` with every ``(name, lib)`` (lib None: not available on this device); one result row (never
    raises for a failing lib)."""
    shape = tuple(shape or (case.small if small else case.shape))
    row = {"case": case.name, "op": case.op, "family": case.family, "device": device, "shape": list(shape),
           "dtype": case.dtype}
    outputs = {}
    for name, lib in libs:
        res = row[name] = {}
        if lib is None:
            res.update(status="n/a")
            continue
        fn = None
        try:
            fn = case.make(lib, device, shape)
            outputs[name] = _to_numpy(fn())         # the first call's result: a training step changes the next
            times = timer.time(fn, warmup, repeat)
            if device != "cpu":
                res["peak_bytes"] = _peak_bytes(lib, fn)
        except Missing as e:
            res.update(status="missing", error=str(e))
            continue
        except Exception as e:
            res.update(status="error", error=f"{type(e).__name__}: {e}"[:500])
            continue
        finally:
            fn = None
            gc.collect()
        ms = statistics.median(times)
        res.update(status="ok", ms=ms, min_ms=min(times), repeats=len(times),
                   **_speed(case, shape, ms, device, ceilings))
    t, b = row.get("tritorch", {}), row.get("torch", {})
    if t.get("status") == "ok" and b.get("status") == "ok":
        row["speed_vs_torch"] = b["ms"] / t["ms"] if t["ms"] > 0 else None
        if t.get("peak_bytes") is not None and b.get("peak_bytes"):
            row["memory_vs_torch"] = t["peak_bytes"] / b["peak_bytes"]
        a, ref = outputs["tritorch"], outputs["torch"]
        if a.shape != ref.shape:
            row["check"] = f"shape {a.shape} != torch's {ref.shape}"
        else:
            scale = float(abs(ref).max()) if ref.size else 0.0
            diff = float(abs(a - ref).max()) if ref.size else 0.0
            row["max_rel_diff"] = diff / scale if scale > 0 else diff
            row["check"] = "ok" if row["max_rel_diff"] <= case.tol else "MISMATCH"
    return row


def host_cost(libs, device, timer, numpy_too=True):
    """Microseconds of host time per 1,000-element add: on ``device`` for each lib, and on cpu against NumPy."""
    from ._timing import WallTimer
    rows = []
    for name, lib in libs:
        for dev in ([device] if device == "cpu" else [device, "cpu"]):
            r = {"case": f"{HOST_COST.name} on {dev}", "lib": name, "device": dev}
            try:
                f = resolve(lib, "add")
                a = make_input(lib, HOST_COST.shape, "float32", dev, 1)
                b = make_input(lib, HOST_COST.shape, "float32", dev, 2)
                r.update(status="ok", us=(timer if dev != "cpu" else WallTimer()).host_us(lambda: f(a, b)))
            except Missing as e:
                r.update(status="missing", error=str(e))
            except Exception as e:
                r.update(status="error", error=f"{type(e).__name__}: {e}"[:500])
            rows.append(r)
    if numpy_too:
        a = np.random.default_rng(1).standard_normal(HOST_COST.shape, dtype=np.float32)
        b = np.random.default_rng(2).standard_normal(HOST_COST.shape, dtype=np.float32)
        rows.append({"case": f"{HOST_COST.name} on cpu", "lib": "numpy", "device": "cpu", "status": "ok",
                     "us": WallTimer().host_us(lambda: np.add(a, b))})
    return rows


# ---- environment, table, JSON ----------------------------------------------------------------------------------------
def _version(dist):
    try:
        from importlib.metadata import version
        return version(dist)
    except Exception:
        return None


def device_info(device):
    """``{"device", "name", "compute_capability"}`` of ``cpu``, an interpreted ``cuda`` or a GPU."""
    import tritorch
    if device == "cpu":
        return {"device": "cpu", "name": f"cpu ({platform.machine()})", "compute_capability": None}
    if tritorch.cuda.is_interpreted():
        return {"device": device, "name": "Triton interpreter (host memory)", "compute_capability": None}
    from . import _cuda_runtime as rt
    return {"device": device, "name": rt.device_name(0),
            "compute_capability": ".".join(map(str, rt.compute_capability(0)))}


def environment(device, torch=None, devices=None):
    """Date, versions and devices of a run; ``device`` is the main one (named in the results file)."""
    import triton
    import tritorch
    devs = [device_info(d) for d in (devices or [device])]
    main = next(d for d in devs if d["device"] == device) if device in (devices or [device]) else device_info(device)
    env = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "device": device, "device_name": main["name"], "compute_capability": main["compute_capability"],
           "devices": devs, "interpreter": tritorch.cuda.is_interpreted(), "python": platform.python_version(),
           "numpy": np.__version__, "triton": triton.__version__, "tritorch": tritorch.__version__,
           "torch": getattr(torch, "__version__", None), "cuda_core": _version("cuda-core"),
           "cuda_bindings": _version("cuda-bindings"), "host": platform.node()}
    if main["compute_capability"]:
        try:
            from . import _cuda_runtime as rt
            err, v = rt.driver().cuDriverGetVersion()
            env["cuda_driver"] = f"{int(v) // 1000}.{int(v) % 1000 // 10}"
        except Exception:
            pass
    return env


def _fmt_speed(r):
    if "tflops" in r:
        t = r["tflops"]
        return f"{t:.0f} TFLOP/s" if t >= 10 else (f"{t:.1f} TFLOP/s" if t >= 1 else f"{t * 1e3:.1f} GFLOP/s")
    if "gbps" in r:
        g = r["gbps"]
        return f"{g / 1e3:.2f} TB/s" if g >= 1e3 else (f"{g:.1f} GB/s" if g >= 1 else f"{g * 1e3:.1f} MB/s")
    return ""


def _fmt_ms(ms):
    return f"{ms:.3f} ms" if ms >= 0.01 else f"{ms * 1e3:.2f} us"


def table(results):
    """A short text table of the results: time, speed, % of the ceiling, PyTorch's time and the ratio (mem: the
    peak memory of one call as a share of PyTorch's)."""
    lines = [f"{'case':<34} {'device':<6} {'tritorch':>10} {'speed':>13} {'% ceil':>7} {'torch':>10} "
             f"{'vs torch':>9} {'mem':>6}  check"]
    for row in results["results"]:
        t, b = row.get("tritorch", {}), row.get("torch", {})
        if t.get("status") == "ok":
            tt, sp = _fmt_ms(t["ms"]), _fmt_speed(t)
            pc = f"{t['pct_of_ceiling']:.0f}%" if "pct_of_ceiling" in t else ""
        else:
            tt, sp, pc = t.get("status", "-"), "", ""
        bt = _fmt_ms(b["ms"]) if b.get("status") == "ok" else b.get("status", "-")
        vs = f"{row['speed_vs_torch']:.2f}x" if row.get("speed_vs_torch") else ""
        mem = f"{row['memory_vs_torch']:.2f}x" if row.get("memory_vs_torch") is not None else ""
        lines.append(f"{row['case'][:34]:<34} {row.get('device', '')[:6]:<6} {tt:>10} {sp:>13} {pc:>7} {bt:>10} "
                     f"{vs:>9} {mem:>6}  {row.get('check', '')}".rstrip())
    for r in results.get("host", []):
        v = f"{r['us']:.1f} us" if r.get("status") == "ok" else r.get("status")
        lines.append(f"{(r['case'] + ' [' + r['lib'] + ']')[:50]:<50} {v:>12}")
    return "\n".join(lines)


def errors(results):
    """One line per failing (not missing) case, to print after the table."""
    out = []
    for row in results["results"]:
        for name in ("tritorch", "torch"):
            if row.get(name, {}).get("status") == "error":
                out.append(f"{row['case']} [{row.get('device', '')} {name}]: {row[name]['error']}")
        if row.get("check") not in (None, "ok"):
            out.append(f"{row['case']} [{row.get('device', '')}]: result differs from torch ({row.get('check')}, "
                       f"max rel diff {row.get('max_rel_diff')})")
    for r in results.get("host", []):
        if r.get("status") == "error":
            out.append(f"{r['case']} [{r['lib']}]: {r['error']}")
    return out


def run_all(libs, device, timer, cases=None, small=False, warmup=5, repeat=30, torch=None, host=True,
            ceilings=None, on_row=None):
    """Every case on one device, then the host costs: the results dict that is written as JSON. ``on_row(results)``
    runs after each case (a runner saves what it has, so a run cut short by a time limit keeps its rows)."""
    ceilings = CEILINGS if ceilings is None else ceilings
    results = {"environment": environment(device, torch), "ceilings": ceilings, "results": [], "host": []}
    for case in (CASES if cases is None else cases):
        results["results"].append(run_case(case, libs, device, timer, small, warmup, repeat, ceilings))
        if on_row is not None:
            on_row(results)
    if host:
        results["host"] = host_cost(libs, device, timer)
    return results


def write(results, path):
    """Write the results as JSON atomically (a temp file in the same folder, then a rename)."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _atomic.write(path, json.dumps(results, indent=1, default=str) + "\n")


def default_name(results, prefix="gpu"):
    env = results["environment"]
    dev = "".join(c if c.isalnum() else "-" for c in (env.get("device_name") or env["device"])).strip("-")
    dev = "-".join(p for p in dev.split("-") if p)
    return f"{prefix}-{dev}-{env['date'][:19].replace(':', '')}.json"


def plot(results, path):
    """A PNG bar chart of the times (tritorch, and PyTorch where measured); raises ImportError without
    matplotlib."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in results["results"] if r.get("tritorch", {}).get("status") == "ok"]
    labels = [f"{r['case']} [{r['device']}]" for r in rows]
    ours = [r["tritorch"]["ms"] for r in rows]
    theirs = [r.get("torch", {}).get("ms", 0.0) for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.5))
    y = np.arange(len(rows))
    h = 0.4 if any(theirs) else 0.8
    ax.barh(y, ours, height=h, label="tritorch")
    if any(theirs):
        ax.barh(y + h, theirs, height=h, label="PyTorch")
    ax.set_yticks(y + (h / 2 if any(theirs) else 0))
    ax.set_yticklabels(labels)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("median time (ms, log scale)")
    env = results["environment"]
    ax.set_title(f"tritorch {env['tritorch']} on {env['device_name']} ({env['date'][:10]})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ---- ``tritorch bench`` ----------------------------------------------------------------------------------------------
_DTYPES = {"float32": "float32", "fp32": "float32", "f32": "float32", "float": "float32",
           "float16": "float16", "fp16": "float16", "half": "float16",
           "bfloat16": "bfloat16", "bf16": "bfloat16", "tf32": "tf32"}


class UsageError(ValueError):
    """A bad command-line value: reported in one line, exit status 2."""


def _split(text):
    return [s.strip() for s in (text or "").split(",") if s.strip()]


def parse_ops(text):
    known = list(OPS) + STEP_OPS
    ops = _split(text) or known
    unknown = [o for o in ops if o not in known]
    if unknown:
        raise UsageError(f"unknown op(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return ops


def parse_dtypes(text):
    """``float32,bf16,...`` -> canonical names (``tf32``: float32 with TF32 matmuls)."""
    out = []
    for d in _split(text):
        if d.lower() not in _DTYPES:
            raise UsageError(f"unknown dtype {d!r}; known: float32 (fp32), float16 (fp16), bfloat16 (bf16), tf32")
        out.append(_DTYPES[d.lower()])
    return out


def parse_sizes(text):
    """``1024,2^20,4096x4096`` -> ``[1024, 1048576, (4096, 4096)]``: element counts, or shapes (dims joined by x)."""
    def dim(d):
        if "^" in d:
            base, exp = d.split("^")
            return int(base) ** int(exp)
        return int(d)
    out = []
    for tok in _split(text):
        try:
            dims = tuple(dim(d) for d in tok.lower().split("x"))
        except ValueError:
            raise UsageError(f"bad size {tok!r}: expected an element count (1024 or 2^20) "
                             f"or a shape such as 64x128") from None
        if any(d < 1 for d in dims):
            raise UsageError(f"bad size {tok!r}: sizes must be positive")
        out.append(dims[0] if len(dims) == 1 and "x" not in tok.lower() else dims)
    return out


def cli_cases(ops, sizes, dtypes, device_kind):
    """The cases of a ``tritorch bench`` run on one kind of device (``gpu``, ``interpreter`` or ``cpu``)."""
    cases = []
    if not sizes:
        which = {"gpu": "shape", "interpreter": "small", "cpu": "cpu"}[device_kind]
        for c in CASES:
            if c.op not in ops:
                continue
            if c.op in STEP_OPS:
                if not dtypes or c.dtype in dtypes:
                    cases.append(_resized(c, getattr(c, which)))
                continue
            if dtypes:
                for d in dtypes:
                    tf32 = d == "tf32"
                    cases.append(make_case(c.op, getattr(c, which), "float32" if tf32 else d, tf32=tf32))
            elif which == "shape":
                cases.append(c)
            else:
                cases.append(make_case(c.op, getattr(c, which), c.dtype, tf32=bool(c.extra.get("tf32"))))
        return _dedup(cases)
    fixed = [op for op in ops if op not in OPS]
    if fixed:
        raise UsageError(f"{', '.join(fixed)}: fixed benchmark case(s) that take no --sizes (run them without it)")
    for op in ops:
        o = OPS[op]
        for s in sizes:
            shape = o.shape_of(s) if isinstance(s, int) else s
            if o.ndim and len(shape) != o.ndim:
                raise UsageError(f"{op} takes {o.ndim}-d shapes ({'MxKxN' if op == 'matmul' else 'rows x cols'}), "
                                 f"got {_fmt_shape(shape)}")
            for d in dtypes or ["float32"]:
                tf32 = d == "tf32"
                if tf32 and op != "matmul":
                    d, tf32 = "float32", False
                cases.append(make_case(op, shape, "float32" if tf32 else d, tf32=tf32))
    return _dedup(cases)


def _resized(case, shape):
    """A fixed (backward, fwd+bwd or step) case at another of its configurations, named after it."""
    if tuple(shape) == case.shape:
        return case
    label = case.name.rsplit(" ", 1)[0] if _fmt_shape(case.shape) in case.name else case.name
    return replace(case, shape=tuple(shape), name=f"{label} @{_fmt_shape(shape)}")


def _dedup(cases):
    seen, out = set(), []
    for c in cases:
        if c.name not in seen:
            seen.add(c.name)
            out.append(c)
    return out


def devices_present(wanted=None):
    """``cpu`` and, where tritorch has one (a GPU or the interpreter), ``cuda``; ``wanted`` picks among them."""
    import tritorch
    present = ["cpu"] + (["cuda"] if tritorch.cuda.is_available() else [])
    if not wanted or wanted == "all":
        return present
    asked = _split(wanted)
    for d in asked:
        if d not in ("cpu", "cuda"):
            raise UsageError(f"unknown device {d!r}; expected cpu, cuda or all")
        if d not in present:
            raise UsageError("device cuda is not available here (no CUDA GPU; TRITORCH_INTERPRET=1 runs the "
                             "Triton kernels in Triton's interpreter)")
    return asked


def _torch_for(torch, device):
    """torch where it can run on ``device`` (not in interpreter mode, which torch has no counterpart of)."""
    import tritorch
    if torch is None:
        return None
    if device == "cpu":
        return torch
    if tritorch.cuda.is_interpreted() or not torch.cuda.is_available():
        return None
    return torch


def main(args):
    """``tritorch bench``: op-level benchmarks on the devices present; prints a table, writes a JSON file."""
    import tritorch
    from ._timing import EventTimer, WallTimer
    ops = parse_ops(args.ops)
    dtypes = parse_dtypes(args.dtype)
    sizes = parse_sizes(args.sizes)
    devices = devices_present(args.device)
    if args.compare not in (None, "torch"):
        raise UsageError(f"--compare: only 'torch' is supported, got {args.compare!r}")
    plot_ok = True
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            plot_ok = False
            print("tritorch bench: --plot needs matplotlib, which is not installed (pip install matplotlib); "
                  "the table and the JSON file are still written", file=sys.stderr)
    torch = None
    if args.compare == "torch":
        try:
            import torch
        except ImportError:
            print("tritorch bench: PyTorch is not installed: no comparison", file=sys.stderr)
    interp = tritorch.cuda.is_interpreted()
    plans = []
    for dev in devices:
        kind = "cpu" if dev == "cpu" else ("interpreter" if interp else "gpu")
        plans.append((dev, kind, cli_cases(ops, sizes, dtypes, kind)))
    main_dev = devices[-1]
    results = {"environment": environment(main_dev, torch, devices), "ceilings": {}, "results": []}
    work = [(dev, kind, c) for dev, kind, cases in plans for c in cases]
    progress = _progress(len(work), args)
    for dev, kind, case in work:
        if kind == "gpu":
            timer = EventTimer.shared()
            if not results["ceilings"]:
                results["ceilings"] = ceilings_for(results["environment"]["device_name"], timer)
            warmup, repeat = 5, 30
        else:
            timer = WallTimer()
            warmup, repeat = (1, 3) if kind == "interpreter" else (2, 10)
        warmup = args.warmup if args.warmup is not None else warmup
        repeat = args.repeat if args.repeat is not None else repeat
        libs = [("tritorch", tritorch)] + ([("torch", _torch_for(torch, dev))] if torch is not None else [])
        progress(f"{case.name} [{dev}]")
        results["results"].append(run_case(case, libs, dev, timer, False, warmup, repeat,
                                           results["ceilings"] if kind == "gpu" else None))
    progress(None)
    out = args.out or default_name(results, "tritorch-bench")
    write(results, out)
    env = results["environment"]
    print(f"tritorch {env['tritorch']}, triton {env['triton']}, torch {env['torch'] or '-'}, {env['date']}; "
          f"devices: " + ", ".join(f"{d['device']} = {d['name']}" for d in env["devices"]))
    print(table(results))
    for line in errors(results):
        print(line)
    for name, c in results["ceilings"].items():
        v = c["value"] / 1e12
        print(f"ceiling {name}: {v:.2f} T{c['unit']} ({c['note']})")
    print(f"results: {out}")
    if args.plot and plot_ok:
        print(f"plot: {plot(results, args.plot)}")
    return 1 if any(r.get("tritorch", {}).get("status") == "error" for r in results["results"]) else 0


def _progress(total, args):
    """A one-line progress display on stderr (tqdm when installed); call with None to finish."""
    if getattr(args, "quiet", False) or total == 0:
        return lambda msg: None
    bar = None
    if sys.stderr.isatty():
        try:
            from tqdm import tqdm
            bar = tqdm(total=total, unit="case", file=sys.stderr, leave=False)
        except ImportError:
            pass
    state = {"n": 0}

    def step(msg):
        if msg is None:
            if bar is not None:
                bar.close()
            return
        if bar is not None:
            if state["n"]:
                bar.update(1)
            bar.set_description(msg[:40])
        else:
            print(f"[{state['n'] + 1}/{total}] {msg}", file=sys.stderr, flush=True)
        state["n"] += 1
    return step
