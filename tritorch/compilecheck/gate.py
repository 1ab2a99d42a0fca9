"""Compile tritorch's kernels with Triton's GPU compiler for a target GPU, on a machine without one.

``check()`` is ``tritorch compile-check``: it records the launches of the workloads (:mod:`.record`, GPU host paths,
every autotune candidate the pruning rules keep, in float32, float16 and bfloat16), compiles each distinct
specialization in a process pool exactly as Triton's JIT would at launch (same binder, same specialization, same
options, so the result also lands in Triton's on-disk cache: ``tritorch precompile``), reads registers and spills
from ``ptxas -v``, shared memory from the kernel's metadata and tensor-core instructions from the PTX, and applies the
gate: no compile error, no shared memory beyond the target's limit, no spills in a heuristic default or in a
candidate whose tunable does not list it in ``spill_ok`` (with a reason).

Results are kept in a JSON file keyed by the kernel's source hash (its jit dependencies included), the triton
version, the target and the specialization: only what changed is compiled again.
"""
import concurrent.futures
import contextlib
import hashlib
import importlib
import io
import json
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time

import triton
import triton.language as tl
from triton import knobs
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource, make_backend
from triton.runtime import jit as _jit

from tritorch import _atomic, _dtype as D, autotune
from tritorch.compiler import codegen

__all__ = ["check", "precompile", "record_specs", "compile_specs", "gate", "report", "parse_target", "SMEM_LIMIT",
           "cache_file"]

FORMAT = "tritorch-compile-check-v3"      # v2: results without their usual values; v3: ptxas run as Triton runs it
FORMAT_V1 = "tritorch-compile-check-v1"
# Shared memory a block may use (opt-in maximum), bytes, by compute capability.
SMEM_LIMIT = {80: 166912, 86: 101376, 87: 166912, 89: 101376, 90: 232448, 100: 232448, 120: 101376}
_DTYPES = {str(d).rsplit(".", 1)[-1]: d for d in vars(D).values() if isinstance(d, D.dtype)}


def parse_target(name):
    """``sm_90a`` / ``sm_80`` / ``90`` -> (GPUTarget, compute capability)."""
    m = re.fullmatch(r"(?:sm_)?(\d+)a?", str(name).strip())
    if not m:
        raise ValueError(f"unknown target {name!r}: expected sm_XY such as sm_90a or sm_80")
    cap = int(m.group(1))
    return GPUTarget("cuda", cap, 32), cap


# ---- recording -----------------------------------------------------------------------------------------------------

def record_specs(workloads=None, candidates=True):
    """The distinct specializations of the workloads: ``{key: {"spec", "origins"}}`` (recorded in a subprocess with
    ``TRITORCH_INTERPRET=1``); without ``candidates`` only the heuristic defaults."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "launches.json")
        env = dict(os.environ, TRITORCH_INTERPRET="1", TRITORCH_AUTOTUNE="0")
        cmd = [sys.executable, "-m", "tritorch.compilecheck.record", out, ",".join(workloads or ()),
               "" if candidates else "nocandidates"]
        r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"compile-check: recording the launches failed:\n{r.stderr[-4000:]}")
        with open(out) as f:
            launches = json.load(f)
    specs = {}
    for rec in launches:
        k = json.dumps(rec["spec"], sort_keys=True)
        e = specs.setdefault(k, {"spec": rec["spec"], "origins": []})
        o = rec["origin"]
        if o not in e["origins"] and len(e["origins"]) < 8:
            e["origins"].append(o)
        elif o["kind"] == "default" and all(x["kind"] != "default" for x in e["origins"]):
            e["origins"].append(o)
    return specs


# ---- compiling one specialization (in a worker process) ------------------------------------------------------------

def _resolve(module, qualname):
    if module.startswith(codegen.PREFIX):          # a kernel tritorch.compile generated while recording
        obj = codegen.generated_module(module)
    else:
        obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


class _Ptr:
    """A pointer argument: a dtype and an address whose 16-byte alignment is the recorded one."""

    def __init__(self, dtype, aligned):
        self.dtype = dtype
        self._addr = 1 << 20 if aligned else (1 << 20) + 4

    def data_ptr(self):
        return self._addr


def _value(v):
    if isinstance(v, dict):
        if "ptr" in v:
            return _Ptr(_DTYPES[v["ptr"]], v["align16"])
        if "tl" in v:
            return tl.dtype(v["tl"])
        if "jit" in v:
            return _resolve(*v["jit"])
    return v


def _source(spec, target):
    """Triton's ASTSource and options for ``spec``, made as ``JITFunction.run`` makes them at launch."""
    fn = _resolve(*spec["kernel"])
    backend = make_backend(target)
    binder = _jit.create_function_from_signature(fn.signature, fn.params, backend)
    kwargs = {k: _value(v) for k, v in spec["args"].items()}
    kwargs.update(spec.get("options", {}), num_warps=spec["num_warps"], num_stages=spec["num_stages"])
    kwargs["debug"] = kwargs.get("debug", fn.debug) or knobs.runtime.debug
    for name in ("instrumentation_mode", "fpsan_homomorphic_casts"):    # what each triton version's run() adds
        if hasattr(knobs.compilation, name):
            kwargs[name] = getattr(knobs.compilation, name)
    bound, specialization, options = binder(**kwargs)
    options, signature, constexprs, attrs = fn._pack_args(backend, kwargs, bound, specialization, options)
    return fn, ASTSource(fn, signature, constexprs, attrs), options


def spec_key(spec, target_name):
    """The results-cache key: kernel source hash (jit dependencies and jit-function arguments included), triton
    version, target and the specialization."""
    h = hashlib.sha256()
    fn = _resolve(*spec["kernel"])
    h.update(fn.cache_key.encode())
    for v in spec["args"].values():
        if isinstance(v, dict) and "jit" in v:
            h.update(_resolve(*v["jit"]).cache_key.encode())
    h.update(f"|{triton.__version__}|{target_name}|".encode())
    h.update(json.dumps(spec, sort_keys=True).encode())
    return h.hexdigest()[:32]


_PTXAS = (re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads"),
          re.compile(r"Used (\d+) registers"))


def _ptxas_info(log):
    """Registers (the most of any function in the log), stack (the most) and spill bytes (summed) from ``ptxas -v``."""
    frames, regs = _PTXAS[0].findall(log), _PTXAS[1].findall(log)
    if not (frames and regs):
        return None
    return {"regs": max(int(r) for r in regs), "stack": max(int(f[0]) for f in frames),
            "spill_stores": sum(int(f[1]) for f in frames), "spill_loads": sum(int(f[2]) for f in frames)}


def _ptxas_log(target, options, ptx, cap):
    """``ptxas -v`` on the PTX exactly as Triton runs it at compile time (its backend's own command: the flags differ
    per version, 3.8 and later add ``--regAllocOptLevel=2``), whether or not Triton's cache answered the compile:
    registers and spills are those of the cubin a launch would load."""
    buf = io.StringIO()
    prev = knobs.nvidia.dump_ptxas_log
    knobs.nvidia.dump_ptxas_log = True
    try:
        with contextlib.redirect_stdout(buf):
            make_backend(target).make_cubin(ptx, {}, options, cap)
    finally:
        knobs.nvidia.dump_ptxas_log = prev
    return buf.getvalue()


def compile_one(spec, target_name):
    """Compile ``spec`` for the target; a result dict (``error`` set when it does not compile)."""
    target, cap = parse_target(target_name)
    t0 = time.perf_counter()
    res = {"error": None}
    try:
        fn, src, options = _source(spec, target)
        k = triton.compile(src, target=target, options=options.__dict__)
        ptx = k.asm["ptx"]
        info = _ptxas_info(_ptxas_log(target, options, ptx, cap))
        res.update(info or {"regs": None, "stack": None, "spill_stores": None, "spill_loads": None})
        res["smem"] = int(k.metadata.shared)
        res["dot"] = "tt.dot" in k.asm.get("ttir", "")
        res["wgmma"] = "wgmma.mma_async" in ptx
        res["mma"] = "mma.sync" in ptx
    except Exception as e:                 # a kernel the GPU compiler refuses: the gate's first finding
        msg = f"{type(e).__name__}: {e}"
        res["error"] = msg if len(msg) < 3000 else msg[:1500] + " ... " + msg[-1500:]
    res["seconds"] = round(time.perf_counter() - t0, 2)
    return res


def _worker(args):
    key, spec, target_name = args
    return key, compile_one(spec, target_name)


def _spec_keys(specs, target_name):
    return [spec_key(s, target_name) for s in specs]


@contextlib.contextmanager
def _compiler_env():
    """Worker processes compile for the GPU, not in interpreter mode, whatever mode this process runs in."""
    saved = {k: os.environ.pop(k) for k in ("TRITON_INTERPRET", "TRITORCH_INTERPRET") if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


# ---- the results cache -----------------------------------------------------------------------------------------

def cache_file(target_name, where=None):
    """The results file for this triton version and target: in ``where`` (a folder) or tritorch's cache dir."""
    folder = where or os.path.join(autotune.cache_dir(), "compile-check")
    _, cap = parse_target(target_name)
    return os.path.join(folder, f"triton-{triton.__version__}-sm{cap}.json")


# A result as stored: the fields that are not at their usual value (most are 0, False or None), one line per result.
_USUAL = {"error": None, "regs": None, "stack": 0, "spill_stores": 0, "spill_loads": 0, "smem": 0, "dot": False,
          "wgmma": False, "mma": False, "seconds": 0.0}


def _load(path, target_name):
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    ok = isinstance(data, dict) and data.get("format") in (FORMAT, FORMAT_V1) and \
        data.get("triton") == triton.__version__ and data.get("target") == target_name and \
        isinstance(data.get("results"), dict)
    return {k: dict(_USUAL, **r) for k, r in data["results"].items()} if ok else {}


def _compact(result):
    return {f: v for f, v in result.items() if f not in _USUAL or _USUAL[f] != v}


def _save(path, target_name, results):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    rows = ",\n".join(f"{json.dumps(k)}: {json.dumps(_compact(r), sort_keys=True)}" for k, r in sorted(results.items()))
    head = json.dumps({"format": FORMAT, "triton": triton.__version__, "target": target_name})[:-1]
    _atomic.write(path, f'{head}, "results": {{\n{rows}\n}}}}\n')


def compile_specs(specs, target_name="sm_90a", jobs=None, cache=None, progress=None, replace=True, optional=(),
                  budget=None):
    """Compile each spec (``{key: {"spec", "origins"}}``) not already in the results file ``cache`` (a path, or
    None for no file) in ``jobs`` worker processes; the file then holds these results (``replace``: only these,
    else added to what it held). Keys in ``optional`` compile after the others, only while ``budget`` seconds (None:
    no limit) have not run out since the first of them started: those left over have no result. Returns
    ``(results by spec key, number compiled now, seconds)``."""
    t0 = time.perf_counter()
    names = list(specs)
    jobs = max(1, jobs or os.cpu_count() or 1)
    optional = set(optional)
    ctx = multiprocessing.get_context("spawn")
    with _compiler_env(), concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as ex:
        keys = dict(zip(names, ex.submit(_spec_keys, [specs[k]["spec"] for k in names], target_name).result()))
        cached = _load(cache, target_name) if cache else {}
        results = {k: cached[h] for k, h in keys.items() if h in cached}
        todo = [(k, specs[k]["spec"], target_name) for k in names if k not in results]
        todo.sort(key=lambda t: (t[0] in optional, -_cost(t[1])))      # required first, long compiles first
        state = {"saved": time.perf_counter(), "done": 0}

        def keep(k, res):
            results[k] = res
            state["done"] += 1
            if progress:
                progress(state["done"], len(todo))
            if cache and time.perf_counter() - state["saved"] > 60:    # a run cut short keeps what it compiled
                _save(cache, target_name, dict(cached, **{keys[k]: r for k, r in results.items()}))
                state["saved"] = time.perf_counter()
        _run_pool(ex, todo, jobs, keep, optional, budget)
    if cache:
        base = {} if replace else cached
        _save(cache, target_name, dict(base, **{keys[k]: r for k, r in results.items()}))
    return results, state["done"], time.perf_counter() - t0


def _run_pool(ex, todo, jobs, keep, optional, budget):
    """Compile ``todo`` (the optional ones last) in the pool, ``2 * jobs`` in flight; an optional one starts only
    within ``budget`` seconds (None: no limit) of the first optional one."""
    pending, it, deadline = set(), iter(todo), None
    while True:
        while len(pending) < 2 * jobs:
            item = next(it, None)
            if item is not None and item[0] in optional and budget is not None:
                deadline = deadline or time.perf_counter() + budget
                if time.perf_counter() >= deadline:
                    item = None
            if item is None:
                it = iter(())
                break
            pending.add(ex.submit(_worker, item))
        if not pending:
            return
        done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
        for f in done:
            keep(*f.result())


def _cost(spec):
    a = spec["args"]
    blocks = 1
    for name in ("BLOCK_M", "BLOCK_N", "BLOCK_K"):
        blocks *= a.get(name) or 1
    return blocks * (4 if any(isinstance(v, dict) and v.get("ptr") == "float32" for v in a.values()) else 1)


# ---- the gate and the report -----------------------------------------------------------------------------------

def _dtype_of(spec):
    for v in spec["args"].values():
        if isinstance(v, dict) and "ptr" in v and v["ptr"] in ("float32", "float16", "bfloat16", "float64"):
            return v["ptr"]
    return "-"


def _precision(spec):
    a = spec["args"]
    return a.get("PRECISION", a.get("PREC"))


def tensor_core_eligible(spec, res):
    """A dot in fp16/bf16 or tf32 (not ``ieee``, not float64): Hopper should run it on wgmma."""
    return bool(res.get("dot")) and _precision(spec) != "ieee" and _dtype_of(spec) != "float64"


def _spill_ok(origin):
    t = autotune.REGISTRY.get(origin.get("tunable", ""))
    return origin["kind"] == "candidate" and t is not None and origin["config"] in getattr(t, "spill_ok", {})


# No spill passes: not in a heuristic default (what every launch without tuning runs), not in an autotune candidate
# unless its tunable lists it in ``spill_ok`` with the reason. ptxas spills a few bytes in some tiles far below the
# register limit (4-16 B at 56-128 registers) and which tiles it does that to changes with its version, so the tiles
# were chosen to compile clean under every checked triton (3.6, 3.8, 3.9). ``--spill-tolerance B`` lets candidates'
# spills of at most B bytes pass, for exploring; defaults never.
SPILL_TOLERANCE = 0


def _spills(r, tolerance=0):
    """Whether result ``r`` spills more than ``tolerance`` bytes of stores (any loads without stores count too)."""
    return r["spill_stores"] > tolerance or (r["spill_loads"] and not r["spill_stores"])


def _spill_fails(entry, r, tolerance):
    """A spill fails in a heuristic default (any), or in a candidate beyond ``tolerance`` not marked ``spill_ok``."""
    if _is_default(entry):
        return _spills(r)
    return _spills(r, tolerance) and not all(_spill_ok(o) for o in entry["origins"])


def gate(specs, results, cap, spill_tolerance=SPILL_TOLERANCE):
    """The findings that fail the gate: a list of ``(kernel, what, detail)``."""
    limit = SMEM_LIMIT.get(cap, 101376)
    bad = []
    for k, e in specs.items():
        r, spec = results[k], e["spec"]
        name = spec["kernel"][1]
        if r["error"]:
            bad.append((name, "compile error", f"{_label(spec)}: {r['error'].splitlines()[0][:300]}"))
            continue
        if r["smem"] > limit:
            bad.append((name, "shared memory", f"{_label(spec)}: {r['smem']} B > {limit} B"))
        if _spill_fails(e, r, spill_tolerance):
            o = _origin_text(e["origins"])
            bad.append((name, "spills", f"{_label(spec)}: {r['spill_stores']} B stores / {r['spill_loads']} B "
                                        f"loads, {r['regs']} regs ({o})"))
    return bad


def _label(spec):
    a = spec["args"]
    consts = ",".join(f"{k}={a[k]}" for k in sorted(a) if k.startswith("BLOCK") or k in ("PRECISION", "PREC", "ACT")
                      and not isinstance(a[k], dict))
    return f"{_dtype_of(spec)} {consts} w{spec['num_warps']} s{spec['num_stages']}"


def _origin_text(origins):
    d = [o for o in origins if o["kind"] == "default"]
    if d:
        return "heuristic default" + (f" of {d[0]['tunable']}" if "tunable" in d[0] else "") + f", {d[0]['workload']}"
    c = origins[0]
    return f"candidate {c['config']} of {c['tunable']}"


def summary(specs, results, cap, spill_tolerance=SPILL_TOLERANCE):
    """Counts: specializations, kernels, compiled, failed, spilling (and of those, the ones that fail the gate), over
    shared memory, wgmma use."""
    limit = SMEM_LIMIT.get(cap, 101376)
    rs = [(specs[k]["spec"], results[k]) for k in specs]
    ok = [(s, r) for s, r in rs if not r["error"]]
    failing = sum(1 for k, e in specs.items() if not results[k]["error"] and _spill_fails(e, results[k],
                                                                                          spill_tolerance))
    elig = [(s, r) for s, r in ok if tensor_core_eligible(s, r)]
    return {"specializations": len(rs), "kernels": len({tuple(s["kernel"]) for s, _ in rs}), "compiled": len(ok),
            "failed": len(rs) - len(ok),
            "spilling": sum(1 for _, r in ok if r["spill_stores"] or r["spill_loads"]),
            "spilling_failing": failing,
            "over_smem": sum(1 for _, r in ok if r["smem"] > limit),
            "tensor_core_eligible": len(elig), "wgmma": sum(1 for _, r in elig if r["wgmma"]),
            "dot_ieee_or_f64": sum(1 for _, r in ok if r.get("dot")) - len(elig)}


def spill_table(specs, results, tolerance=SPILL_TOLERANCE):
    """The spilling specializations, worst first: (kernel, label, regs, stores, loads, origin, fails the gate)."""
    rows = []
    for k, e in specs.items():
        r = results[k]
        if not r["error"] and (r["spill_stores"] or r["spill_loads"]):
            rows.append((e["spec"]["kernel"][1], _label(e["spec"]), r["regs"], r["spill_stores"], r["spill_loads"],
                         _origin_text(e["origins"]), _spill_fails(e, r, tolerance)))
    return sorted(rows, key=lambda x: -x[3])


def report(specs, results, cap, out=sys.stdout, verbose=False, spill_tolerance=SPILL_TOLERANCE):
    """Per kernel: specializations, failures, max registers, spilling, max shared memory, wgmma use."""
    limit = SMEM_LIMIT.get(cap, 101376)
    per = {}
    for k, e in specs.items():
        per.setdefault(e["spec"]["kernel"][1], []).append((e["spec"], results[k]))
    print(f"{'kernel':<26}{'specs':>6}{'failed':>7}{'max regs':>9}{'spilling':>9}{'max spill B':>12}"
          f"{'max smem':>9}{'>smem':>6}{'wgmma':>9}", file=out)
    for name in sorted(per):
        rs = per[name]
        ok = [(s, r) for s, r in rs if not r["error"]]
        sp = [r for _, r in ok if r["spill_stores"] or r["spill_loads"]]
        el = [r for s, r in ok if tensor_core_eligible(s, r)]
        wg = f"{sum(1 for r in el if r['wgmma'])}/{len(el)}" if el else "-"
        print(f"{name:<26}{len(rs):>6}{len(rs) - len(ok):>7}{max((r['regs'] or 0 for _, r in ok), default=0):>9}"
              f"{len(sp):>9}{max((r['spill_stores'] for r in sp), default=0):>12}"
              f"{max((r['smem'] for _, r in ok), default=0):>9}{sum(1 for _, r in ok if r['smem'] > limit):>6}"
              f"{wg:>9}", file=out)
    rows = spill_table(specs, results, spill_tolerance)
    if rows:
        print(f"\nspilling specializations ({len(rows)}):", file=out)
        for row in rows[: None if verbose else 40]:
            passes = "" if row[6] else " (passes: spill_ok or within --spill-tolerance)"
            print(f"  {row[0]:<24} {row[1]:<58} {row[2]:>4} regs {row[3]:>6} B st {row[4]:>6} B ld  {row[5]}{passes}",
                  file=out)
        if len(rows) > 40 and not verbose:
            print(f"  ... {len(rows) - 40} more (--verbose)", file=out)


def _progress(stream):
    last = [0.0]

    def tick(i, n):
        now = time.perf_counter()
        if i == n or now - last[0] > 5:
            last[0] = now
            print(f"  compiled {i}/{n}", file=stream, flush=True)
    return tick


CANDIDATES = ("all", "none", "cached")


def _is_default(entry):
    return any(o["kind"] == "default" for o in entry["origins"])


def check(target="sm_90a", jobs=None, cache=None, workloads=None, kernels=None, out=sys.stdout, verbose=False,
          json_out=None, candidates="all", budget=None, spill_tolerance=SPILL_TOLERANCE):
    """``tritorch compile-check``: record, compile (what the results file lacks), report, gate. Returns 0 when
    the gate passes, 1 when it fails.

    ``candidates``: "all" (every autotune candidate compiles), "none" (the heuristic defaults only), or "cached"
    (the CI gate: every default; the candidates the results file holds, plus those that compile within ``budget``
    seconds; the rest are counted as not checked). A heuristic default must not spill at all; a candidate's spills
    of at most ``spill_tolerance`` bytes of stores per thread pass (0 in CI)."""
    if candidates not in CANDIDATES:
        raise ValueError(f"candidates must be one of {', '.join(CANDIDATES)}, got {candidates!r}")
    _, cap = parse_target(target)
    t0 = time.perf_counter()
    if candidates == "cached" and not (cache and _load(cache, target)):
        candidates = "none"                 # no results of this triton version: recording candidates is wasted
        print(f"compile-check: no results file {cache} for this triton version: heuristic defaults only", file=out)
    specs = record_specs(workloads, candidates=candidates != "none")
    if kernels:
        rx = re.compile(kernels)
        specs = {k: e for k, e in specs.items() if rx.search(e["spec"]["kernel"][1])}
    t_rec = time.perf_counter() - t0
    n_def = sum(1 for e in specs.values() if _is_default(e))
    print(f"compile-check: triton {triton.__version__}, target sm_{cap}{'a' if cap == 90 else ''}: "
          f"{len(specs)} specializations ({n_def} heuristic defaults) recorded in {t_rec:.0f} s", file=out, flush=True)
    optional = [k for k, e in specs.items() if not _is_default(e)] if candidates == "cached" else ()
    results, n, secs = compile_specs(specs, target, jobs, cache, _progress(out),
                                     replace=not (workloads or kernels) and candidates == "all", optional=optional,
                                     budget=budget or 0.0)
    unchecked = [k for k in specs if k not in results]
    print(f"compile-check: compiled {n} ({len(specs) - n - len(unchecked)} from {cache or 'no results file'}) in "
          f"{secs:.0f} s with {jobs or os.cpu_count()} processes", file=out)
    if unchecked:
        print(f"compile-check: {len(unchecked)} autotune-candidate specializations not checked (not in the results "
              f"file, over the {budget or 0:.0f} s budget): run the full gate to check them", file=out)
    specs = {k: e for k, e in specs.items() if k in results}
    report(specs, results, cap, out, verbose, spill_tolerance)
    s = summary(specs, results, cap, spill_tolerance)
    s["not_checked"] = len(unchecked)
    print("\nsummary: " + ", ".join(f"{k} {v}" for k, v in s.items()), file=out)
    bad = gate(specs, results, cap, spill_tolerance)
    if json_out:
        _atomic.write(json_out, json.dumps({"triton": triton.__version__, "target": target, "summary": s,
                                            "spill_table": spill_table(specs, results, spill_tolerance),
                                            "failures": bad}, indent=1))
    if bad:
        print(f"\ncompile-check FAILED: {len(bad)} finding(s)", file=out)
        for name, what, detail in bad[: None if verbose else 60]:
            print(f"  {what:<14} {name}: {detail}", file=out)
        return 1
    print(f"compile-check passed ({time.perf_counter() - t0:.0f} s)", file=out)
    return 0


def precompile(target=None, jobs=None, workloads=None, candidates=False, out=sys.stdout):
    """``tritorch precompile``: compile ahead, in parallel, the kernels the workloads launch into Triton's on-disk
    cache (the specializations a first run would compile one by one). Returns (compiled, failed, seconds)."""
    target = target or _local_target()
    _, cap = parse_target(target)
    specs = record_specs(workloads, candidates=candidates)
    print(f"precompile: {len(specs)} specializations for sm_{cap} (triton {triton.__version__}, cache "
          f"{knobs.cache.dir})", file=out, flush=True)
    results, n, secs = compile_specs(specs, target, jobs, None, _progress(out))
    failed = sum(1 for r in results.values() if r["error"])
    print(f"precompile: {n - failed} compiled, {failed} failed in {secs:.0f} s with {jobs or os.cpu_count()} "
          "processes", file=out)
    return n - failed, failed, secs


def _local_target():
    """The GPU's own target when one is here, else sm_90a."""
    try:
        t = triton.runtime.driver.active.get_current_target()
        return f"sm_{t.arch}"
    except Exception:                       # no GPU driver: the default target
        return "sm_90a"
