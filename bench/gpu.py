"""GPU benchmark runner (no pytest): tritorch against PyTorch eager on the same GPU, in the same run.

    python3 bench/gpu.py [--out results.json] [--results-dir bench/results] [--cases add,softmax] [--no-torch]
    python3 bench/gpu.py --dry-run          # tiny shapes on the cpu device, host clock: checks the runner itself

For every case of ``bench/cases.py``: CUDA events on the launch stream around each run, the L2 cache flushed before
each timed run, warm-up first (compilation, autotuning), the median of the repeats. Reported: time, GB/s or TFLOP/s,
the percentage of the ceilings measured on the H100 (shared/GPU.md), the speed relative to torch (torch time /
tritorch time: above 1 is faster than torch), and a check of tritorch's result against torch's. Plus the host cost
of one small op (a 1,000-element add) on cuda and on cpu next to NumPy. A case whose op does not exist yet is
reported as missing; an error in one case does not stop the others. A JSON file keeps it all, with the device, its
compute capability, the versions and the date.
"""
import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.cases import CASES, HOST_COST, Missing, make_input, resolve  # noqa: E402

# measured on the lent H100 (shared/GPU.md); tf32 has no measurement there: half the bf16 one, as in the H100 specs
CEILINGS = {
    "copy": {"value": 2.9e12, "unit": "B/s", "note": "device-to-device copy, bytes read + written (GPU.md)"},
    "bf16_matmul": {"value": 798e12, "unit": "FLOP/s", "note": "bf16 8192^3 matmul through cuBLAS (GPU.md)"},
    "tf32_matmul": {"value": 399e12, "unit": "FLOP/s", "note": "estimate: half the bf16 ceiling"},
}
L2_FLUSH_BYTES = 256 << 20            # more than any L2 (H100: 50 MB)


# ---- timers ---------------------------------------------------------------------------------------------------------
class EventTimer:
    """CUDA events (cuda.bindings) on tritorch's launch stream, which torch's default stream is too."""

    def __init__(self):
        from tritorch import _cuda_runtime as rt
        self.rt = rt
        self.cu = rt.driver()
        self.stream = self.cu.CUstream(rt.stream_handle())
        self.flush_owner, self.flush_ptr = rt.alloc(L2_FLUSH_BYTES)
        self.elapsed = getattr(self.cu, "cuEventElapsedTime", None) or self.cu.cuEventElapsedTime_v2

    def _ok(self, ret):
        if ret[0] != self.cu.CUresult.CUDA_SUCCESS:
            raise RuntimeError(f"CUDA error {ret[0]!r}")
        return ret[1] if len(ret) > 1 else None

    def sync(self):
        self._ok(self.cu.cuCtxSynchronize())

    def time(self, fn, warmup, repeat):
        """Milliseconds of each of ``repeat`` runs of ``fn``, each after an L2 flush."""
        for _ in range(warmup):
            fn()
        self.sync()
        flag = self.cu.CUevent_flags.CU_EVENT_DEFAULT
        events = [(self._ok(self.cu.cuEventCreate(flag)), self._ok(self.cu.cuEventCreate(flag)))
                  for _ in range(repeat)]
        try:
            for start, end in events:
                self.rt.memset_d8(self.flush_ptr, 0, L2_FLUSH_BYTES)
                self._ok(self.cu.cuEventRecord(start, self.stream))
                fn()
                self._ok(self.cu.cuEventRecord(end, self.stream))
            self.sync()
            return [float(self._ok(self.elapsed(s, e))) for s, e in events]
        finally:
            for pair in events:
                for ev in pair:
                    self.cu.cuEventDestroy(ev)

    def host_us(self, fn, n=2000):
        """Microseconds per call of a stream of ``n`` calls (launch-bound: the host cost of one call)."""
        for _ in range(50):
            fn()
        self.sync()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        self.sync()
        return (time.perf_counter() - t0) / n * 1e6


class WallTimer:
    """Host clock, for the cpu device (--dry-run)."""

    def sync(self):
        pass

    def time(self, fn, warmup, repeat):
        for _ in range(warmup):
            fn()
        out = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t0) * 1e3)
        return out

    def host_us(self, fn, n=2000):
        for _ in range(50):
            fn()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t0) / n * 1e6


# ---- running the cases -----------------------------------------------------------------------------------------------
def _to_numpy(t):
    return t.float().cpu().numpy()


def _speed(case, shape, ms, device="cuda"):
    """Throughput of one call and its share of the case's ceiling."""
    out = {}
    if case.bytes:
        out["gbps"] = case.bytes(shape) / (ms * 1e-3) / 1e9
    if case.flops:
        out["tflops"] = case.flops(shape) / (ms * 1e-3) / 1e12
    ceil = CEILINGS.get(case.ceiling)
    if ceil and device != "cpu":
        achieved = out.get("tflops", 0) * 1e12 if ceil["unit"] == "FLOP/s" else out.get("gbps", 0) * 1e9
        out["pct_of_ceiling"] = 100.0 * achieved / ceil["value"]
    return out


def run_case(case, libs, device, timer, small=False, warmup=5, repeat=30):
    """Time ``case`` with every ``(name, lib)``; returns one result row (never raises for a failing lib)."""
    shape = case.small if small else case.shape
    row = {"case": case.name, "family": case.family, "shape": list(shape), "dtype": case.dtype}
    outputs = {}
    for name, lib in libs:
        res = row[name] = {}
        try:
            fn = case.build(lib, device, shape, case.dtype)
            times = timer.time(fn, warmup, repeat)
            outputs[name] = _to_numpy(fn())
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
        res.update(status="ok", ms=ms, min_ms=min(times), repeats=len(times), **_speed(case, shape, ms, device))
    t, b = row.get("tritorch", {}), row.get("torch", {})
    if t.get("status") == "ok" and b.get("status") == "ok":
        row["speed_vs_torch"] = b["ms"] / t["ms"] if t["ms"] > 0 else None
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
    import numpy as np
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


def environment(device, torch=None):
    import numpy
    import triton
    import tritorch
    env = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "device": device, "device_name": "cpu (" + platform.machine() + ")" if device == "cpu" else None,
           "compute_capability": None, "python": platform.python_version(), "numpy": numpy.__version__,
           "triton": triton.__version__, "tritorch": tritorch.__version__,
           "torch": getattr(torch, "__version__", None), "cuda_core": _version("cuda-core"),
           "cuda_bindings": _version("cuda-bindings"), "host": platform.node()}
    if device != "cpu":
        from tritorch import _cuda_runtime as rt
        env["device_name"] = rt.device_name(0)
        env["compute_capability"] = ".".join(map(str, rt.compute_capability(0)))
        try:
            err, v = rt.driver().cuDriverGetVersion()
            env["cuda_driver"] = f"{int(v) // 1000}.{int(v) % 1000 // 10}"
        except Exception:
            pass
    return env


def _fmt_speed(r):
    if "tflops" in r:
        return f"{r['tflops']:.0f} TFLOP/s"
    if "gbps" in r:
        return f"{r['gbps'] / 1e3:.2f} TB/s" if r["gbps"] >= 1e3 else f"{r['gbps']:.1f} GB/s"
    return ""


def table(results):
    """A short text table of the results."""
    lines = [f"{'case':<28} {'tritorch':>10} {'speed':>13} {'% ceil':>7} {'torch':>10} {'vs torch':>9}  check"]
    for row in results["results"]:
        t, b = row.get("tritorch", {}), row.get("torch", {})
        if t.get("status") == "ok":
            tt, sp = f"{t['ms']:.3f} ms", _fmt_speed(t)
            pc = f"{t['pct_of_ceiling']:.0f}%" if "pct_of_ceiling" in t else ""
        else:
            tt, sp, pc = t.get("status", "-"), "", ""
        bt = f"{b['ms']:.3f} ms" if b.get("status") == "ok" else b.get("status", "-")
        vs = f"{row['speed_vs_torch']:.2f}x" if row.get("speed_vs_torch") else ""
        lines.append(f"{row['case'][:28]:<28} {tt:>10} {sp:>13} {pc:>7} {bt:>10} {vs:>9}  {row.get('check', '')}")
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
                out.append(f"{row['case']} [{name}]: {row[name]['error']}")
        if row.get("check") not in (None, "ok"):
            out.append(f"{row['case']}: result differs from torch ({row.get('check')}, "
                       f"max rel diff {row.get('max_rel_diff')})")
    for r in results.get("host", []):
        if r.get("status") == "error":
            out.append(f"{r['case']} [{r['lib']}]: {r['error']}")
    return out


def run_all(libs, device, timer, cases=None, small=False, warmup=5, repeat=30, torch=None):
    """Every case, then the host costs: the results dict that is written as JSON."""
    results = {"environment": environment(device, torch), "ceilings": CEILINGS, "results": [], "host": []}
    for case in (CASES if cases is None else cases):
        results["results"].append(run_case(case, libs, device, timer, small, warmup, repeat))
    results["host"] = host_cost(libs, device, timer)
    return results


def write(results, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f, indent=1, default=str)
        f.write("\n")


def default_name(results):
    env = results["environment"]
    dev = "".join(c if c.isalnum() else "-" for c in (env.get("device_name") or env["device"])).strip("-")
    return f"gpu-{dev}-{env['date'][:19].replace(':', '')}.json"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="write the JSON results here (as well as into --results-dir)")
    p.add_argument("--results-dir", default=os.path.join(ROOT, "bench", "results"),
                   help="folder that keeps one JSON file per run ('' for none)")
    p.add_argument("--cases", default="", help="comma-separated substrings of case names (default: all)")
    p.add_argument("--no-torch", action="store_true", help="do not time PyTorch")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--dry-run", action="store_true", help="tiny shapes on the cpu device with the host clock")
    p.add_argument("--table", help="also write the printed table to this file")
    args = p.parse_args(argv)

    if os.environ.get("TRITORCH_INTERPRET", "0") not in ("", "0") and not args.dry_run:
        sys.exit("bench/gpu.py: unset TRITORCH_INTERPRET (it would time Triton's interpreter)")
    import tritorch
    torch = None
    if not args.no_torch:
        try:
            import torch
            torch.backends.cuda.matmul.allow_tf32 = True      # the tf32 case is tf32 on both sides
            torch.backends.cudnn.allow_tf32 = True
        except ImportError:
            torch = None
    if args.dry_run:
        device, timer, small = "cpu", WallTimer(), True
        args.warmup, args.repeat = min(args.warmup, 1), min(args.repeat, 3)
    else:
        if not tritorch.cuda.is_available() or tritorch.cuda.is_interpreted():
            sys.exit("bench/gpu.py: no CUDA GPU is available (use --dry-run to check the runner on the cpu)")
        device, timer, small = "cuda", EventTimer(), False
    libs = [("tritorch", tritorch)] + ([("torch", torch)] if torch is not None else [])
    wanted = [s.strip() for s in args.cases.split(",") if s.strip()]
    cases = [c for c in CASES if not wanted or any(w in c.name for w in wanted)]

    results = run_all(libs, device, timer, cases, small, args.warmup, args.repeat, torch)
    text = table(results)
    problems = errors(results)
    paths = [args.out] if args.out else []
    if args.results_dir:
        paths.append(os.path.join(args.results_dir, default_name(results)))
    for path in paths:
        write(results, path)
    env = results["environment"]
    print(f"{env['device_name']} (cc {env['compute_capability']}), triton {env['triton']}, "
          f"tritorch {env['tritorch']}, torch {env['torch']}, {env['date']}")
    if problems:
        print("\n".join(problems))
    print("results: " + ", ".join(paths))
    print(text)
    if args.table:
        with open(args.table, "w") as f:
            f.write(text + "\n")
    return results


if __name__ == "__main__":
    main()
