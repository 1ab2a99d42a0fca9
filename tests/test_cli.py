"""The ``tritorch`` command: ``info``, ``tune`` and ``bench`` run as subprocesses at tiny sizes, in interpreter mode
and on the cpu device; bad arguments give a one-line error and exit status 2."""
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

from tritorch import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tritorch_cmd(*args, interpret=True, cwd=None, env=None, tmp=None):
    """Run ``python -m tritorch.cli ARGS`` in a fresh process (the device mode is fixed at import)."""
    e = {k: v for k, v in os.environ.items() if k not in ("TRITORCH_INTERPRET", "TRITON_INTERPRET",
                                                           "TRITORCH_TEST_GPU")}
    if interpret:
        e["TRITORCH_INTERPRET"] = "1"
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    if tmp is not None:
        e["TRITORCH_CACHE_DIR"] = str(tmp / "cache")
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "tritorch.cli", *args], capture_output=True, text=True, env=e,
                          cwd=cwd or ROOT, timeout=300)


def _ok(r):
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


class _Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def cli_run(capsys, monkeypatch, tmp_path):
    """Run the CLI in this (interpreter-mode) process: faster than a subprocess where the mode does not matter."""
    monkeypatch.setenv("TRITORCH_CACHE_DIR", str(tmp_path / "cache"))

    def run(*argv):
        capsys.readouterr()
        try:
            rc = cli.main(list(argv))
        except SystemExit as e:
            rc = e.code
        out, err = capsys.readouterr()
        return _Result(rc, out, err)
    return run


def test_bench_add_interpreted_prints_its_table(tmp_path):
    out = tmp_path / "r.json"
    text = _ok(tritorch_cmd("bench", "--ops", "add", "--sizes", "1024", "--out", str(out), tmp=tmp_path))
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("case"))
    assert lines[header].split()[:3] == ["case", "device", "tritorch"]
    assert "torch" in lines[header] and "% ceil" in lines[header]
    rows = lines[header + 1: header + 3]
    assert [r.split()[:4] for r in rows] == [["add", "fp32", "1024", "cpu"], ["add", "fp32", "1024", "cuda"]]
    assert all(("ms" in r or "us" in r) and "B/s" in r for r in rows)
    assert "Triton interpreter" in lines[0] and f"results: {out}" in text
    res = json.loads(out.read_text())
    env = res["environment"]
    assert env["interpreter"] is True and env["date"] and env["triton"] and env["tritorch"]
    assert [d["device"] for d in env["devices"]] == ["cpu", "cuda"]
    assert [(r["device"], r["tritorch"]["status"], r["shape"]) for r in res["results"]] == \
        [("cpu", "ok", [1024]), ("cuda", "ok", [1024])]
    assert res["results"][0]["tritorch"]["gbps"] > 0


def test_bench_cpu_only_with_shapes_dtypes_and_plot_message(tmp_path, cli_run):
    r = cli_run("bench", "--device", "cpu", "--ops", "sum,add", "--sizes", "4x8,2^10", "--dtype", "fp32,bf16",
                     "--out", str(tmp_path / "r.json"), "--plot", str(tmp_path / "p.png"), "--repeat", "2")
    text = _ok(r)
    res = json.loads((tmp_path / "r.json").read_text())
    assert [row["case"] for row in res["results"]] == [
        "sum fp32 4x8", "sum bf16 4x8", "sum fp32 1x1024", "sum bf16 1x1024",
        "add fp32 4x8", "add bf16 4x8", "add fp32 1024", "add bf16 1024"]
    assert all(row["device"] == "cpu" and row["tritorch"]["status"] == "ok" for row in res["results"])
    assert [d["device"] for d in res["environment"]["devices"]] == ["cpu"]
    assert "sum fp32 4x8" in text and "add bf16 1024" in text
    try:
        import matplotlib  # noqa: F401
        assert (tmp_path / "p.png").stat().st_size > 1000
    except ImportError:
        assert "--plot needs matplotlib" in r.stderr and not (tmp_path / "p.png").exists()


def test_bench_matmul_flops_on_cpu(tmp_path, cli_run):
    text = _ok(cli_run("bench", "--device", "cpu", "--ops", "matmul", "--sizes", "2^10,8x16x4", "--dtype",
                       "tf32", "--out", str(tmp_path / "r.json")))
    assert "matmul tf32 32x32x32" in text and "matmul tf32 8x16x4" in text and "FLOP/s" in text


def test_bench_matmul_shape_must_be_3d(cli_run):
    r = cli_run("bench", "--device", "cpu", "--ops", "matmul", "--sizes", "4x8")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == ["tritorch: error: matmul takes 3-d shapes (MxKxN), got 4x8"]


def test_bench_compare_torch(tmp_path, cli_run):
    r = cli_run("bench", "--device", "cpu", "--ops", "add", "--sizes", "1000", "--compare", "torch",
                "--out", str(tmp_path / "r.json"))
    text = _ok(r)
    row = json.loads((tmp_path / "r.json").read_text())["results"][0]
    try:
        import torch  # noqa: F401
    except ImportError:
        assert "PyTorch is not installed" in r.stderr and "torch" not in row
        return
    assert row["torch"]["status"] == "ok" and row["check"] == "ok" and row["speed_vs_torch"] > 0
    assert re.search(r"\d\.\d+x +ok\n", text), text  # the speed column, then the check column


def test_info_interpreted(tmp_path):
    """Through the installed entry point where there is one (pip install -e .), else python -m tritorch.cli."""
    exe = shutil.which("tritorch")
    if exe is not None:
        r = subprocess.run([exe, "info"], capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, TRITORCH_INTERPRET="1", TRITORCH_CACHE_DIR=str(tmp_path / "cache")))
    else:
        r = tritorch_cmd("info", tmp=tmp_path)
    text = _ok(r)
    import triton
    import tritorch
    assert f"tritorch {tritorch.__version__}" in text and f"triton {triton.__version__}" in text
    assert "interpreter mode: on" in text and "Triton interpreter" in text
    assert "autotune: off (interpreter mode" in text
    assert f"autotune cache: {tmp_path / 'cache'}" in text and "(0 entries)" in text
    assert "tunable kernels:" in text


MODEL = """
import tritorch
from tritorch import autotune as at, nn

CFGS = [at.Config(BLOCK=16), at.Config(BLOCK=32)]
TUNABLE = at.Tunable("test.cli", CFGS, default=lambda key: CFGS[1])


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        TUNABLE.pick(("float32", at.bucket(x.shape[0])), run=lambda c: c)
        return self.lin(x)


def make(shapes):
    return Net()
"""


def test_tune_model_interpreted_shows_the_defaults(tmp_path, cli_run, monkeypatch):
    (tmp_path / "cli_model.py").write_text(textwrap.dedent(MODEL))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        text = _ok(cli_run("tune", "--model", "cli_model:make", "--shapes", "5x3"))
    finally:
        from tritorch import autotune
        autotune.REGISTRY.pop("test.cli", None)
        sys.modules.pop("cli_model", None)
    assert "tuning is off here (interpreter mode" in text
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("kernel"))
    assert lines[header].split()[:3] == ["kernel", "key", "chosen"]
    rows = [line.split() for line in lines[header + 1:] if line.startswith("test.cli ")]
    assert rows == [["test.cli", "float32|8", "BLOCK=32,w4,s2", "-", "-", "(default)"]]


def test_tune_prints_the_choice_and_its_speedup(tmp_path, cli_run, monkeypatch):
    """With tuning on (an injected timer stands in for the GPU): the chosen config, its time and the speed-up."""
    from tritorch import autotune
    (tmp_path / "cli_model2.py").write_text(textwrap.dedent(MODEL).replace("test.cli", "test.cli2"))
    monkeypatch.syspath_prepend(str(tmp_path))
    times = {"BLOCK=16,w4,s2": 0.25, "BLOCK=32,w4,s2": 1.0}
    try:
        with autotune.set_timer(lambda run: times.get(getattr(run(), "name", None), 1.0)):
            text = _ok(cli_run("tune", "--model", "cli_model2:make", "--shapes", "3x3", "--quiet"))
        assert [e.kernel for e in autotune.entries()].count("test.cli2") == 1
    finally:
        autotune.REGISTRY.pop("test.cli2", None)
        sys.modules.pop("cli_model2", None)
    assert "tuning is off" not in text
    row = [line.split() for line in text.splitlines() if line.startswith("test.cli2 ")][0]
    assert row == ["test.cli2", "float32|4", "BLOCK=16,w4,s2", "0.2500", "ms", "4.00x", "BLOCK=32,w4,s2"], text


def test_tune_builtin_mlp_and_ops_interpreted(cli_run):
    text = _ok(cli_run("tune", "--model", "mlp", "--shapes", "2x20", "--quiet"))
    assert "tuning is off here" in text
    assert "no tunable kernel ran" in text or "(default)" in text
    text = _ok(cli_run("tune", "--ops", "matmul", "--shapes", "16x16x16", "--quiet"))
    assert "no tunable kernel ran" in text or "matmul" in text


# ---- bad arguments: one line, exit status 2 -------------------------------------------------------------------------
@pytest.mark.parametrize("argv, msg", [
    (["bench", "--ops", "add,nope"], "unknown op(s) nope"),
    (["bench", "--sizes", "abc"], "bad size 'abc'"),
    (["bench", "--sizes", "-4"], "bad size '-4'"),
    (["bench", "--dtype", "int7"], "unknown dtype 'int7'"),
    (["bench", "--device", "tpu"], "unknown device 'tpu'"),
    (["bench", "--repeat", "0"], "--repeat must be >= 1"),
    (["bench", "--compare", "numpy"], "argument --compare: invalid choice: 'numpy'"),
    (["bench", "--warmup", "x"], "argument --warmup: invalid int value: 'x'"),
    (["tune", "--model", "nope"], "unknown model 'nope'"),
    (["tune", "--model", "no_such_module_xyz:f"], "cannot load model 'no_such_module_xyz:f'"),
    (["tune", "--model", "mlp", "--ops", "add"], "not allowed with argument"),
    (["tune", "--shapes", "1x"], "bad size '1x'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    ([], "the following arguments are required"),
    (["info", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_arguments_one_line_error(argv, msg, cli_run):
    r = cli_run(*argv)
    rc, out, err = r.returncode, r.stdout, r.stderr
    assert rc == 2, (out, err)
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tritorch") and "error: " in lines[0], err
    assert msg in lines[0], err


def test_bad_argument_in_a_subprocess(tmp_path):
    r = tritorch_cmd("bench", "--ops", "nope", tmp=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == ["tritorch: error: unknown op(s) nope; known: add, mul, exp, sum, "
                                             "softmax, matmul, mul_backward, softmax_backward, matmul_backward, "
                                             "linear, cross_entropy, conv2d, batch_norm2d, max_pool2d, attention, "
                                             "lstm, adam, mlp_step, cnn_step, gpt_step"]


CPU_ONLY = """
import contextlib, io, json, sys
from tritorch import cli
res = {}
for name, argv in [("info", ["info"]), ("tune", ["tune", "--ops", "add", "--shapes", "8"]),
                   ("cuda", ["bench", "--device", "cuda", "--ops", "add", "--sizes", "8", "--out", sys.argv[1]])]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main(argv)
        except SystemExit as e:
            rc = e.code
    res[name] = [rc, out.getvalue(), err.getvalue()]
print(json.dumps(res))
"""


def test_without_interpreter_mode(tmp_path):
    """info, tune and bench --device cuda with TRITORCH_INTERPRET unset (on a machine without a GPU: cpu only)."""
    e = {k: v for k, v in os.environ.items() if k not in ("TRITORCH_INTERPRET", "TRITON_INTERPRET")}
    e.update(PYTHONPATH=ROOT + os.pathsep + e.get("PYTHONPATH", ""), TRITORCH_CACHE_DIR=str(tmp_path / "cache"))
    r = subprocess.run([sys.executable, "-c", CPU_ONLY, str(tmp_path / "r.json")], capture_output=True, text=True,
                       env=e, cwd=ROOT, timeout=300)
    res = json.loads(_ok(r).strip().splitlines()[-1])
    rc, out, err = res["info"]
    assert rc == 0 and "interpreter mode: off" in out and "devices: cpu" in out, (out, err)
    if "no CUDA GPU" not in out:
        pytest.skip("this machine has a GPU")
    assert "autotune: off (no CUDA GPU)" in out
    rc, out, err = res["tune"]
    assert rc == 0 and "no CUDA GPU here" in out and "nothing to tune" in out, (out, err)
    rc, out, err = res["cuda"]
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1, (out, err)
    assert err.startswith("tritorch: error: device cuda is not available here")
