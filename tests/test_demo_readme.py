"""The README's promises: the main job runs and fits, and the quick-start snippet runs as printed."""
import pathlib
import re

from tritorch import demo

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_main_job_fits_on_cpu(capsys):
    assert demo.main(["--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "device cpu" in out and "final loss" in out


def test_main_job_runs_interpreted_cuda(capsys):
    rc = demo.main(["--device", "cuda", "--steps", "3"])
    assert rc in (0, 1)                             # three steps do not converge; they must run on cuda
    assert "device cuda" in capsys.readouterr().out


def test_main_job_bad_device_is_one_line_error(capsys):
    assert demo.main(["--device", "tpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1


def test_readme_quick_start_runs():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start\n\n```python\n(.*?)```", text, re.S).group(1)
    scope = {}
    exec(compile(block, "README quick start", "exec"), scope)
    assert scope["loss"].item() < 1e-6
