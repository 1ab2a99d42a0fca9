"""The compile gate (``tritorch compile-check``): Triton's GPU compiler for sm_90a, no GPU needed.

Toy kernels prove that the gate catches what the interpreter cannot: a kernel the compiler refuses, one that spills
registers, one that needs more shared memory than the GPU has; that a spilling candidate passes only when its
tunable lists it in ``spill_ok``; and that a results-file entry is dropped when the kernel's source changes.
"""
import json
import os
import subprocess
import sys

import pytest
import triton
import triton.language as tl

from tritorch import autotune, cli
from tritorch.compilecheck import gate
from tritorch.kernels import matmul as MM

MOD = __name__


@triton.jit
def _toy_copy(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(y_ptr + offs, tl.load(x_ptr + offs, mask=offs < n), mask=offs < n)


@triton.jit
def _toy_small_dot(a_ptr, c_ptr, B: tl.constexpr):
    """tl.dot on 8 x 8 tiles: the interpreter runs it, the GPU compiler refuses it (dims under 16)."""
    r = tl.arange(0, B)
    a = tl.load(a_ptr + r[:, None] * B + r[None, :])
    tl.store(c_ptr + r[:, None] * B + r[None, :], tl.dot(a, a))


@triton.jit
def _toy_spill(x_ptr, y_ptr, B: tl.constexpr):
    """A (B, B) float32 tile kept live across a reduction: with one warp, far more values than registers."""
    r = tl.arange(0, B)
    x = tl.load(x_ptr + r[:, None] * B + r[None, :])
    s = tl.sum(x * x, axis=0)
    tl.store(y_ptr + r[:, None] * B + r[None, :], x / s[None, :])


@triton.jit
def _toy_big_dot(a_ptr, b_ptr, c_ptr, K, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """A pipelined fp16 dot on large tiles: with many stages, more shared memory than any GPU has."""
    rm, rn, rk = tl.arange(0, BM), tl.arange(0, BN), tl.arange(0, BK)
    acc = tl.zeros((BM, BN), tl.float32)
    for k in range(0, K, BK):
        a = tl.load(a_ptr + rm[:, None] * K + (k + rk)[None, :])
        b = tl.load(b_ptr + (k + rk)[:, None] * BN + rn[None, :])
        acc = tl.dot(a, b, acc)
    tl.store(c_ptr + rm[:, None] * BN + rn[None, :], acc.to(tl.float16))


def _p(dtype):
    return {"ptr": dtype, "align16": True}


def _spec(kernel, args, warps=4, stages=3):
    return {"kernel": [MOD, kernel], "args": args, "num_warps": warps, "num_stages": stages}


def _entry(spec, origin=None):
    return {"spec": spec, "origins": [origin or {"kind": "default", "workload": "toy/float32"}]}


COPY = _spec("_toy_copy", {"x_ptr": _p("float32"), "y_ptr": _p("float32"), "n": 17, "BLOCK": 128})
SMALL_DOT = _spec("_toy_small_dot", {"a_ptr": _p("float16"), "c_ptr": _p("float32"), "B": 8})
SPILL = _spec("_toy_spill", {"x_ptr": _p("float32"), "y_ptr": _p("float32"), "B": 128}, warps=1)
BIG_DOT = _spec("_toy_big_dot", {"a_ptr": _p("float16"), "b_ptr": _p("float16"), "c_ptr": _p("float16"), "K": 4096,
                                 "BM": 256, "BN": 256, "BK": 128}, warps=8, stages=4)
DOT = dict(BIG_DOT, args=dict(BIG_DOT["args"], BM=128, BN=128, BK=64), num_stages=3)


@pytest.fixture(scope="module")
def compiled():
    """The toy specializations compiled once (worker processes: outside interpreter mode) for sm_90a and sm_80."""
    specs = {k: _entry(v) for k, v in (("copy", COPY), ("small_dot", SMALL_DOT), ("spill", SPILL),
                                       ("big_dot", BIG_DOT), ("dot", DOT))}
    r90, n, _ = gate.compile_specs(specs, "sm_90a", jobs=2)
    assert n == len(specs)
    r80, _, _ = gate.compile_specs({"dot": specs["dot"]}, "sm_80", jobs=1)
    return {"sm_90a": r90, "sm_80": r80}


def test_a_good_kernel_compiles_and_reports_its_resources(compiled):
    r = compiled["sm_90a"]["copy"]
    assert r["error"] is None
    assert 0 < r["regs"] < 64 and r["spill_stores"] == 0 and r["smem"] == 0 and not r["dot"]
    assert gate.gate({"k": _entry(COPY)}, {"k": r}, 90) == []


def test_a_kernel_the_compiler_refuses_fails_the_gate(compiled):
    r = compiled["sm_90a"]["small_dot"]
    assert r["error"]
    bad = gate.gate({"k": _entry(SMALL_DOT)}, {"k": r}, 90)
    assert [(k, what) for k, what, _ in bad] == [("_toy_small_dot", "compile error")]


def test_spills_fail_unless_the_candidate_is_allowed_to_spill(compiled):
    r = compiled["sm_90a"]["spill"]
    assert r["error"] is None and r["spill_stores"] > 0 and r["spill_loads"] > 0 and r["regs"] > 0
    bad = gate.gate({"k": _entry(SPILL)}, {"k": r}, 90)
    assert [(k, what) for k, what, _ in bad] == [("_toy_spill", "spills")]
    assert "heuristic default" in bad[0][2]
    cand = {"kind": "candidate", "tunable": "toy_spill", "config": "B=128,w1,s3"}
    t = autotune.Tunable("toy_spill", [autotune.Config(num_warps=1, num_stages=3, B=128)], default=lambda k: None)
    try:
        assert [w for _, w, _ in gate.gate({"k": _entry(SPILL, cand)}, {"k": r}, 90)] == ["spills"]
        t.spill_ok = {"B=128,w1,s3": "toy: measured fastest despite spilling"}
        assert gate.gate({"k": _entry(SPILL, cand)}, {"k": r}, 90) == []
        # the same specialization launched as a heuristic default still fails
        both = {"spec": SPILL, "origins": [cand, {"kind": "default", "workload": "toy/float32"}]}
        assert [w for _, w, _ in gate.gate({"k": both}, {"k": r}, 90)] == ["spills"]
    finally:
        autotune.REGISTRY.pop("toy_spill", None)


def test_any_spill_in_a_default_fails_and_candidates_only_within_an_explicit_tolerance():
    """A heuristic default may not spill a single word; an autotune candidate's few bytes pass only under an explicit
    ``--spill-tolerance`` (0 by default, as in CI)."""
    r = {"error": None, "regs": 72, "stack": 16, "spill_stores": 12, "spill_loads": 12, "smem": 0}
    cand = {"kind": "candidate", "tunable": "toy_spill", "config": "B=128,w1,s3"}
    assert gate.SPILL_TOLERANCE == 0
    assert [w for _, w, _ in gate.gate({"k": _entry(COPY)}, {"k": r}, 90)] == ["spills"]
    assert [w for _, w, _ in gate.gate({"k": _entry(COPY)}, {"k": r}, 90, spill_tolerance=32)] == ["spills"]
    assert [w for _, w, _ in gate.gate({"k": _entry(COPY, cand)}, {"k": r}, 90)] == ["spills"]
    assert gate.gate({"k": _entry(COPY, cand)}, {"k": r}, 90, spill_tolerance=12) == []
    big = dict(r, spill_stores=16)
    assert [w for _, w, _ in gate.gate({"k": _entry(COPY, cand)}, {"k": big}, 90, spill_tolerance=12)] == ["spills"]
    s = gate.summary({"k": _entry(COPY)}, {"k": r}, 90)
    assert s["spilling"] == 1 and s["spilling_failing"] == 1
    assert gate.summary({"k": _entry(COPY, cand)}, {"k": r}, 90, spill_tolerance=12)["spilling_failing"] == 0


def test_shared_memory_beyond_the_limit_fails_the_gate(compiled):
    r = compiled["sm_90a"]["big_dot"]
    assert r["error"] is None and r["dot"] and r["smem"] > gate.SMEM_LIMIT[90]
    bad = gate.gate({"k": _entry(BIG_DOT)}, {"k": r}, 90)
    assert ("_toy_big_dot", "shared memory") in [(k, w) for k, w, _ in bad]
    assert gate.summary({"k": _entry(BIG_DOT)}, {"k": r}, 90)["over_smem"] == 1


def test_hopper_fp16_dots_use_wgmma_and_ampere_does_not(compiled):
    r90, r80 = compiled["sm_90a"]["dot"], compiled["sm_80"]["dot"]
    assert r90["wgmma"] and not r80["wgmma"] and r80["mma"]
    assert gate.tensor_core_eligible(DOT, r90)


TOY_V1 = """
import triton
import triton.language as tl


@triton.jit
def toy(x_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(x_ptr + offs, tl.load(x_ptr + offs, mask=offs < n) + 1.0, mask=offs < n)
"""


def test_results_file_recompiles_only_a_changed_kernel(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "toy_gate_mod.py").write_text(TOY_V1)
    cache = str(tmp_path / "results.json")
    spec = {"kernel": ["toy_gate_mod", "toy"], "args": {"x_ptr": _p("float32"), "n": 17, "BLOCK": 64},
            "num_warps": 4, "num_stages": 3}
    specs = {"toy": _entry(spec)}
    res, n, _ = gate.compile_specs(specs, "sm_90a", jobs=1, cache=cache)
    assert n == 1 and res["toy"]["error"] is None
    with open(cache) as f:
        data = json.load(f)
    assert data["triton"] == triton.__version__ and data["target"] == "sm_90a" and len(data["results"]) == 1
    assert gate.compile_specs(specs, "sm_90a", jobs=1, cache=cache)[1] == 0          # warm: nothing compiles
    (tmp_path / "toy_gate_mod.py").write_text(TOY_V1.replace("+ 1.0", "* 2.0"))      # the kernel's source changed
    res, n, _ = gate.compile_specs(specs, "sm_90a", jobs=1, cache=cache)
    assert n == 1 and res["toy"]["error"] is None
    assert gate.compile_specs(specs, "sm_80", jobs=1, cache=cache)[1] == 1           # another target: its own key


def test_the_recorder_takes_gpu_paths_and_every_candidate():
    specs = gate.record_specs(["matmul"])
    mm = [e for e in specs.values() if e["spec"]["kernel"][1] == "_matmul_kernel"]
    kinds = {o["kind"] for e in mm for o in e["origins"]}
    assert kinds == {"default", "candidate"}
    dtypes = {gate._dtype_of(e["spec"]) for e in mm}
    assert dtypes == {"float32", "float16", "bfloat16"}                   # bf16 handed over as bf16, not float32
    assert max(e["spec"]["args"]["BLOCK_M"] for e in mm) >= 128               # GPU tiles, not interpreter ones
    names = {o["config"] for e in mm for o in e["origins"] if o["kind"] == "candidate"}
    assert names <= {autotune.config_name(c) for c in MM.ALL_CANDIDATES} and len(names) >= 3
    ieee = {o["config"] for e in mm for o in e["origins"]
            if o["kind"] == "candidate" and e["spec"]["args"]["PRECISION"] == "ieee"}
    assert ieee and ieee <= {autotune.config_name(c) for c in MM.FMA_CANDIDATES}     # pruned to the FMA tiles


def test_cli_compile_check_runs_the_gate(tmp_path):
    env = dict(os.environ)
    env.pop("TRITORCH_INTERPRET", None)
    env.pop("TRITON_INTERPRET", None)
    out = tmp_path / "summary.json"
    r = subprocess.run([sys.executable, "-m", "tritorch.cli", "compile-check", "--workloads", "creation",
                        "--kernels", "_eye_kernel|_arange_kernel", "--cache", str(tmp_path), "--json", str(out)],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    s = json.loads(out.read_text())["summary"]
    assert s["specializations"] >= 4 and s["failed"] == 0 and s["kernels"] == 2
    assert "compile-check passed" in r.stdout


def test_cli_ci_gate_compiles_defaults_then_reuses_the_results_file(tmp_path):
    """The CI gate (``--candidates cached``): without a results file of this triton version, the heuristic defaults
    only; with one, nothing that it holds compiles again."""
    env = {k: v for k, v in os.environ.items() if k not in ("TRITORCH_INTERPRET", "TRITON_INTERPRET")}
    cmd = [sys.executable, "-m", "tritorch.cli", "compile-check", "--workloads", "creation", "--kernels",
           "_eye_kernel", "--cache", str(tmp_path), "--candidates", "cached", "--budget", "0"]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "heuristic defaults only" in first.stdout and "compile-check passed" in first.stdout
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "compiled 0 (" in again.stdout, again.stdout + again.stderr
    assert cli.main(cmd[3:-2] + ["--budget", "-1"]) == 2
    assert cli.main(cmd[3:-2] + ["--spill-tolerance", "-1"]) == 2


def test_optional_specs_compile_only_within_the_budget(tmp_path):
    """Candidates the results file lacks compile only within the budget; the results file stores results without
    their usual values and reads them back whole."""
    specs = {"copy": _entry(COPY), "dot": _entry(DOT)}
    cache = str(tmp_path / "results.json")
    res, n, _ = gate.compile_specs(specs, "sm_90a", jobs=1, cache=cache, optional={"dot"}, budget=0)
    assert n == 1 and set(res) == {"copy"}
    res, n, _ = gate.compile_specs(specs, "sm_90a", jobs=1, cache=cache, optional={"dot"}, budget=600)
    assert n == 1 and set(res) == {"copy", "dot"} and res["dot"]["wgmma"]
    stored = json.loads((tmp_path / "results.json").read_text())["results"]
    assert len(stored) == 2 and all("spill_stores" not in r and "error" not in r for r in stored.values())
    assert sorted(map(str, gate._load(cache, "sm_90a").values())) == sorted(map(str, res.values()))


SAME_AS_JIT = """
import sys
import triton
from triton.backends.compiler import GPUTarget
from triton.runtime import driver
from tritorch.compilecheck import gate


class Hopper:
    def get_current_target(self):
        return GPUTarget("cuda", 90, 32)

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0


spec = {"kernel": ["tritorch.kernels.matmul", "_matmul_kernel"], "num_warps": 4, "num_stages": 3, "args": dict(
    a_ptr={"ptr": "bfloat16", "align16": True}, b_ptr={"ptr": "bfloat16", "align16": True},
    c_ptr={"ptr": "bfloat16", "align16": False}, bias_ptr={"ptr": "bfloat16", "align16": True}, M=17, N=1, K=32,
    NB1=1, B_START=0, sa0=0, sa1=0, sam=32, sak=1, sb0=0, sb1=0, sbk=1, sbn=32, sc0=0, sc1=0, scm=1, scn=1, sd0=0,
    sd1=0, sdm=0, sdn=0, alpha=1.0, beta=1.0, HAS_BIAS=False, ACT="none", CT={"tl": "fp32"}, PRECISION=None,
    I64=False, BLOCK_M=64, BLOCK_N=16, BLOCK_K=64, GROUP_M=8)}
target = GPUTarget("cuda", 90, 32)
fn, src, options = gate._source(spec, target)
ours = triton.compile(src, target=target, options=options.__dict__)
driver.set_active(Hopper())
jit = fn.warmup(grid=(1,), num_warps=4, num_stages=3, **{k: gate._value(v) for k, v in spec["args"].items()})
print(ours.hash == jit.hash)
"""


def test_precompile_fills_the_entry_the_jit_looks_up(tmp_path):
    """The gate's compile is the JIT's: same specialization and options, so the same Triton cache entry (a launch
    after ``tritorch precompile`` finds its kernel compiled)."""
    env = {k: v for k, v in os.environ.items() if k not in ("TRITORCH_INTERPRET", "TRITON_INTERPRET")}
    env["TRITON_CACHE_DIR"] = str(tmp_path)
    r = subprocess.run([sys.executable, "-c", SAME_AS_JIT], env=env, capture_output=True, text=True, timeout=600)
    assert r.stdout.strip().splitlines()[-1:] == ["True"], r.stdout + r.stderr


@pytest.mark.parametrize("target", ["sm_90a", "sm_80", "90"])
def test_parse_target(target):
    assert gate.parse_target(target)[1] in (80, 90)


def test_generated_kernels_are_recorded_found_and_compiled(tmp_path, monkeypatch):
    """tritorch.compile's generated kernels go through the gate as the hand-written ones do: the recorder runs the
    ``compiled`` workload, tags each tuned launch with its compiled_* tunable (which names no kernel of its own), and
    a worker process imports the generated module from the cache folder."""
    from tritorch.compiler import codegen
    monkeypatch.setenv("TRITORCH_CACHE_DIR", str(tmp_path))
    specs = gate.record_specs(["compiled"])
    made = {k: e for k, e in specs.items() if e["spec"]["kernel"][0].startswith(codegen.PREFIX)}
    assert {e["spec"]["kernel"][1] for e in made.values()} == {"fused_kernel", "fused_reduce_kernel",
                                                               "fused_softmax_kernel"}
    tuned = {o.get("tunable") for e in made.values() for o in e["origins"] if o["kind"] == "candidate"}
    assert tuned == {"compiled_pointwise", "compiled_reduce", "compiled_reduce_leading", "compiled_softmax"}
    some = {}
    for k, e in made.items():
        some.setdefault(e["spec"]["kernel"][1], (k, e))
    results, n, _ = gate.compile_specs(dict(some.values()), "sm_90a", jobs=1)
    assert n == 3 and all(r["error"] is None and r["spill_stores"] == 0 for r in results.values()), results
    with pytest.raises(ModuleNotFoundError, match="no generated kernel module"):
        codegen.generated_module(codegen.PREFIX + "0" * 16)
