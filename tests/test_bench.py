"""The benchmark harness itself (tritorch.benchmark, behind ``tritorch bench`` and bench/gpu.py): timing arithmetic,
table and JSON with a fake timer on the cpu device, missing and failing ops, size parsing, bench/gpu.py --dry-run end
to end, the event timer against a fake CUDA driver, and the cpu pytest-benchmark files run once."""
import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest

import tritorch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench import gpu  # noqa: E402
from tritorch import benchmark as B  # noqa: E402
from tritorch.benchmark import CASES, Missing, get_case, resolve  # noqa: E402
from tritorch.benchmark_steps import load_weights  # noqa: E402


class FakeTimer:
    """Each ``time`` call runs ``fn`` once and reports the next canned list of milliseconds."""

    def __init__(self, *times):
        self.times = list(times)
        self.calls = 0

    def sync(self):
        pass

    def time(self, fn, warmup, repeat):
        fn()
        t = self.times[self.calls % len(self.times)]
        self.calls += 1
        return list(t)

    def host_us(self, fn, n=2000):
        fn()
        return 7.5


def test_speed_and_ceilings():
    add = get_case("add fp32 2^26")
    s = B._speed(add, add.shape, 0.284)
    assert s["gbps"] == pytest.approx(3 * 2 ** 26 * 4 / 0.284e-3 / 1e9)
    assert s["pct_of_ceiling"] == pytest.approx(100 * s["gbps"] * 1e9 / 2.9e12)
    mm = get_case("matmul bf16 4096^3")
    s = B._speed(mm, mm.shape, 0.216)
    assert s["tflops"] == pytest.approx(2 * 4096 ** 3 / 0.216e-3 / 1e12)
    assert s["pct_of_ceiling"] == pytest.approx(100 * s["tflops"] / 798)
    assert "pct_of_ceiling" not in B._speed(add, add.shape, 1.0, device="cpu")


def test_run_case_against_a_baseline():
    # tritorch on both sides: the check must pass; tritorch twice as slow as the "torch" side
    timer = FakeTimer([3.0, 2.0, 1.0], [1.0, 1.0, 1.0])
    case = get_case("add fp32 2^26")
    row = B.run_case(case, [("tritorch", tritorch), ("torch", tritorch)], "cpu", timer, small=True)
    assert row["tritorch"]["status"] == "ok" and row["torch"]["status"] == "ok"
    assert row["tritorch"]["ms"] == 2.0 and row["tritorch"]["min_ms"] == 1.0 and row["tritorch"]["repeats"] == 3
    assert row["speed_vs_torch"] == pytest.approx(0.5)
    assert row["check"] == "ok" and row["max_rel_diff"] == 0.0
    assert row["shape"] == [1000] and row["dtype"] == "float32"


def _lib_without(*names):
    """tritorch seen through a namespace that lacks ``names`` (an op that does not exist yet)."""
    ns = types.SimpleNamespace(**{k: getattr(tritorch, k) for k in dir(tritorch) if not k.startswith("__")})
    for n in names:
        vars(ns).pop(n, None)
    ns.__name__ = "fakelib"
    return ns


def test_missing_and_failing_ops_are_reported():
    lib = _lib_without("softmax", "nn")
    with pytest.raises(Missing, match="softmax"):
        resolve(lib, "softmax", "nn.functional.softmax")
    broken = _lib_without("add")
    broken.add = lambda a, b: (_ for _ in ()).throw(ValueError("boom"))
    timer = FakeTimer([1.0])
    cases = [get_case("softmax fp16 8192x8192"), get_case("add fp32 2^26")]
    res = B.run_all([("tritorch", lib), ("torch", broken)], "cpu", timer, cases, small=True, torch=None)
    soft, add = res["results"]
    assert soft["tritorch"]["status"] == "missing" and soft["torch"]["status"] == "ok"
    assert add["tritorch"]["status"] == "ok"
    assert add["torch"]["status"] == "error" and "ValueError: boom" in add["torch"]["error"]
    assert "speed_vs_torch" not in soft and "check" not in add
    text = B.table(res)
    assert "missing" in text and "error" in text
    assert any("boom" in line for line in B.errors(res))
    host = {(r["lib"], r["device"]): r for r in res["host"]}
    assert host[("tritorch", "cpu")]["status"] == "ok"
    assert host[("torch", "cpu")]["status"] == "error"
    assert host[("numpy", "cpu")]["us"] > 0


def test_mismatch_is_flagged():
    wrong = _lib_without("add")
    wrong.add = lambda a, b: tritorch.sub(a, b)
    res = B.run_case(get_case("add fp32 2^26"), [("tritorch", wrong), ("torch", tritorch)], "cpu",
                       FakeTimer([1.0]), small=True)
    assert res["check"] == "MISMATCH" and res["max_rel_diff"] > 0.1
    assert "differs from torch" in B.errors({"results": [res]})[0]


def test_every_case_builds_small_on_cpu():
    timer = FakeTimer([0.5])
    for case in CASES:
        row = B.run_case(case, [("tritorch", tritorch)], "cpu", timer, small=True)
        assert row["tritorch"]["status"] in ("ok", "missing"), (case.name, row)


def test_json_and_table(tmp_path):
    timer = FakeTimer([2.0], [1.0])
    seen = []
    res = B.run_all([("tritorch", tritorch), ("torch", tritorch)], "cpu", timer,
                    [get_case("add fp32 2^26"), get_case("matmul tf32 4096^3")], small=True,
                    on_row=lambda r: seen.append(len(r["results"])))
    assert seen == [1, 2]
    env = res["environment"]
    for key in ("date", "device", "device_name", "compute_capability", "triton", "tritorch", "torch", "numpy"):
        assert key in env
    assert env["tritorch"] == tritorch.__version__
    path = tmp_path / "r" / B.default_name(res)
    B.write(res, str(path))
    back = json.loads(path.read_text())
    assert os.listdir(path.parent) == [path.name]          # written through a temp file, nothing left beside it
    assert back["results"][1]["case"] == "matmul tf32 4096^3" and back["ceilings"]["bf16_matmul"]["value"] == 798e12
    lines = B.table(res).splitlines()
    assert lines[0].split()[:3] == ["case", "device", "tritorch"]
    assert lines[1].startswith("add fp32 2^26") and "2.000 ms" in lines[1] and "0.50x" in lines[1]
    assert "FLOP/s" in lines[2]
    assert any("host cost" in line and "us" in line for line in lines)


def test_dry_run_end_to_end(tmp_path, capsys):
    out = tmp_path / "out.json"
    res = gpu.main(["--dry-run", "--no-torch", "--cases", "add,row sum", "--out", str(out),
                    "--results-dir", str(tmp_path / "results"), "--table", str(tmp_path / "t.txt")])
    assert [r["case"] for r in res["results"]] == ["add fp32 2^26", "row sum fp32 16384x4096"]
    assert json.loads(out.read_text())["environment"]["device"] == "cpu"
    assert len(os.listdir(tmp_path / "results")) == 1
    printed = capsys.readouterr().out
    assert printed.rstrip().endswith((tmp_path / "t.txt").read_text().rstrip().splitlines()[-1])


def test_parse_sizes_dtypes_ops():
    assert B.parse_sizes("1024, 2^20,64x48x80") == [1024, 1 << 20, (64, 48, 80)]
    assert B.parse_sizes(None) == []
    assert B.parse_dtypes("fp32,bf16,half,tf32") == ["float32", "bfloat16", "float16", "tf32"]
    assert B.parse_ops(None) == list(B.OPS) + B.STEP_OPS
    assert B.parse_ops("conv2d,attention,gpt_step") == ["conv2d", "attention", "gpt_step"]
    for bad, fn, msg in [("abc", B.parse_sizes, "bad size 'abc'"), ("0", B.parse_sizes, "positive"),
                         ("int7", B.parse_dtypes, "unknown dtype 'int7'"), ("add,nope", B.parse_ops, "nope")]:
        with pytest.raises(B.UsageError, match=msg):
            fn(bad)


def test_cli_cases_shapes_and_names():
    cases = B.cli_cases(["add", "sum", "matmul"], [1024, (8, 4, 2)][:1], ["float32", "tf32"], "interpreter")
    assert [(c.name, c.shape) for c in cases] == [
        ("add fp32 1024", (1024,)), ("sum fp32 1x1024", (1, 1024)), ("matmul fp32 32x32x32", (32, 32, 32)),
        ("matmul tf32 32x32x32", (32, 32, 32))]
    assert cases[-1].extra == {"tf32": True} and cases[-1].ceiling == "tf32_matmul"
    assert cases[1].bytes((1, 1024)) == (1024 + 1) * 4
    with pytest.raises(B.UsageError, match="matmul takes 3-d shapes"):
        B.cli_cases(["matmul"], [(4, 4)], [], "cpu")
    # no sizes: each op's standard case, at the size of the device kind
    std = B.cli_cases(["matmul"], [], [], "cpu")
    assert [c.name for c in std] == ["matmul bf16 128x128x128", "matmul tf32 256x256x256"]
    assert [c.name for c in B.cli_cases(["add"], [], [], "gpu")] == ["add fp32 2^26"]


def test_cli_cases_of_the_fixed_cases():
    cases = B.cli_cases(["conv2d", "attention"], [], ["bfloat16"], "interpreter")
    assert [c.name for c in cases] == ["conv2d f+b bf16 @2x3x7x6", "conv2d f+b bf16 @2x5x5x4",
                                       "sdpa f+b bf16 @1x2x37x16", "sdpa causal f+b bf16 @1x2x37x16"]
    assert [c.extra["causal"] for c in cases[2:]] == [False, True]
    assert [c.name for c in B.cli_cases(["lstm"], [], [], "gpu")] == ["lstm f+b fp32 2x512 seq128 b64"]
    assert len(B.cli_cases(["conv2d"], [], [], "cpu")) == 4
    with pytest.raises(B.UsageError, match="conv2d: fixed benchmark case"):
        B.cli_cases(["add", "conv2d"], [1024], [], "cpu")


@pytest.mark.parametrize("name", [c.name for c in B.STEP_CASES])
def test_step_case_gives_the_numpy_result_on_the_kernels(name):
    """Each backward, fwd+bwd and training-step case at its small size: the Triton kernels (interpreted ``cuda``)
    give what the NumPy references give on ``cpu``, from the same weights; the first call's result is compared."""
    case = get_case(name)
    ref = B._to_numpy(case.make(tritorch, "cpu", case.small)())
    got = B._to_numpy(case.make(tritorch, "cuda", case.small)())
    assert got.shape == ref.shape and ref.size > 0 and np.isfinite(got).all()
    assert abs(got - ref).max() <= case.tol * abs(ref).max(), (abs(got - ref).max(), abs(ref).max())


def test_weights_are_the_same_in_every_library():
    a = load_weights(tritorch, tritorch.nn.LSTM(3, 4, num_layers=2), "cpu", "float32")
    b = load_weights(tritorch, tritorch.nn.LSTM(3, 4, num_layers=2), "cuda", "float32", seed=0)
    assert all(q.device.type == "cuda" for q in b.parameters())
    c = load_weights(tritorch, tritorch.nn.LSTM(3, 4, num_layers=2), "cpu", "float32", seed=1)
    for (name, p), q, r in zip(a.named_parameters(), b.parameters(), c.parameters()):
        p, q, r = p.detach().numpy(), q.detach().cpu().numpy(), r.detach().numpy()
        assert np.array_equal(p, q) and not np.array_equal(p, r), name
        assert abs(p).max() <= (1 / np.sqrt(p.shape[1]) if p.ndim == 2 else 0.1)
    norm = load_weights(tritorch, tritorch.nn.LayerNorm(5), "cpu", "float32")
    assert norm.weight.tolist() == [1.0] * 5 and abs(norm.bias.detach().numpy()).max() <= 0.1


def test_peak_memory_of_one_call():
    """The device memory a call holds at its peak beyond what was held before it (interpreter mode counts the host
    buffers of cuda tensors as the pool counts device blocks)."""
    keep = tritorch.ones(1000, device="cuda")

    def two_temporaries():
        t = tritorch.zeros(500, device="cuda") + 1       # 2000 B, then 2000 B more for the sum
        return t.sum()                                   # the zeros are freed; 4 B for the result

    assert B._peak_bytes(tritorch, two_temporaries) == 4000
    assert B._peak_bytes(tritorch, lambda: keep) == 0
    row = B.run_case(get_case("cross_entropy f+b fp32 8192x32000"), [("tritorch", tritorch), ("torch", tritorch)],
                     "cuda", FakeTimer([1.0]), small=True)
    n, c = get_case("cross_entropy f+b fp32 8192x32000").small
    assert row["tritorch"]["peak_bytes"] >= n * c * 4        # at least the gradient of the logits
    assert row["memory_vs_torch"] == 1.0
    assert "1.00x" in B.table({"results": [row]}).splitlines()[1]


def test_tf32_case_sets_and_restores_the_precision():
    case = B.make_case("matmul", (16, 16, 16), "float32", tf32=True)
    seen = []
    real = tritorch.matmul
    lib = _lib_without("matmul")
    lib.matmul = lambda a, b: (seen.append(tritorch.get_float32_matmul_precision()), real(a, b))[1]
    fn = case.make(lib, "cpu", case.shape)
    fn()
    assert seen == ["high"] and tritorch.get_float32_matmul_precision() == "highest"


def test_cpu_benchmarks_run_once():
    pytest.importorskip("pytest_benchmark")
    env = {k: v for k, v in os.environ.items() if k != "TRITORCH_BENCH_STRICT"}
    r = subprocess.run([sys.executable, "-m", "pytest", "bench/", "--benchmark-disable", "-q", "-p", "no:xdist",
                        "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]      # 5 if nothing ran


def test_host_cost_helper_measures_both():
    from bench.test_ops_cpu import host_cost_us
    t, ref = host_cost_us(n=50, repeat=1)
    assert t > 0 and ref > 0
    assert np.isfinite([t, ref]).all()


@pytest.mark.parametrize("op", ["mul", "relu", "tanh"])
def test_node_cost_chain_does_the_numpy_work(op):
    from bench.test_ops_cpu import _chain
    run, run_numpy = _chain(op)
    (y, gx), (yn, gn) = run(), run_numpy()
    np.testing.assert_allclose(y.detach().numpy(), yn, rtol=1e-5, atol=1e-30)
    np.testing.assert_allclose(gx.numpy(), gn, rtol=1e-5, atol=1e-30)


@pytest.mark.gpu
def test_gpu_event_timer_and_one_case(tmp_path):
    from tritorch._timing import EventTimer
    timer = EventTimer()
    owner, ptr = timer.rt.alloc(64 << 20)
    times = timer.time(lambda: timer.rt.memset_d8(ptr, 1, 64 << 20), warmup=2, repeat=5)
    assert len(times) == 5 and all(0 < t < 50 for t in times), times      # 64 MB at > 1.3 GB/s
    res = gpu.main(["--cases", "add fp32", "--no-torch", "--warmup", "2", "--repeat", "5", "--results-dir", "",
                    "--out", str(tmp_path / "r.json")])
    row = res["results"][0]
    assert row["tritorch"]["status"] == "ok", row
    assert row["tritorch"]["gbps"] > 100 and 0 < row["tritorch"]["pct_of_ceiling"] < 120
    assert res["environment"]["compute_capability"]
    assert res["host"][0]["status"] == "ok" and res["host"][0]["us"] > 0


def test_event_timer_against_a_fake_driver():
    from test_cuda_runtime import ok, run
    ok(run("""
        import sys, time
        sys.path.insert(0, ".")
        from tritorch import _timing, benchmark as B
        _timing.L2_FLUSH_BYTES = 1 << 20                                      # host memsets: keep them small
        timer = _timing.EventTimer()
        assert len(LIVE) == 1 and timer.flush_ptr in LIVE                     # the L2 flush buffer
        calls = []
        times = timer.time(lambda: (calls.append(1), time.sleep(0.002)), warmup=2, repeat=4)
        assert len(calls) == 6 and len(times) == 4 and all(1.5 < t < 200 for t in times), times
        flushes = [a for n, a in LOG if n == "memset" and a[1] == _timing.L2_FLUSH_BYTES]
        assert len(flushes) == 4                                              # one flush before each timed run
        assert CUevent.live == 0                                              # events destroyed
        assert {a[-1] for n, a in LOG if n == "record"} == {1}                # on the runtime's stream
        assert timer.host_us(lambda: None, n=100) > 0
        import ctypes
        d = sys.modules["cuda.bindings.driver"]
        d.cuMemcpyDtoDAsync = lambda dst, src, n, s: (ctypes.memmove(int(dst), int(src), min(n, 1 << 20)),
                                                      OK)[1]
        bw = B.measure_copy_ceiling(timer, nbytes=1 << 20)
        assert bw and bw > 0
        B.measure_copy_ceiling.__defaults__ = (1 << 20,)
        ceil = B.ceilings_for("NVIDIA H100 80GB HBM3", timer)
        assert ceil["copy"]["note"].endswith("measured in this run") and ceil["bf16_matmul"]["value"] == 798e12
        assert "bf16_matmul" not in B.ceilings_for("Fake GPU", timer)
        env = B.environment("cuda")
        assert env["device_name"] == "Fake GPU" and env["compute_capability"] == "9.0"
        assert env["cuda_driver"] == "13.0"
        print("DONE")
    """, fake=True))
