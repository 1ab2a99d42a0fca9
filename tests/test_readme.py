"""The README's promises: its first command names the main job, and the quick-start snippet runs as printed."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_first_command_installs_and_runs_the_main_job():
    first = re.search(r"```bash\n(.*?)\n", README).group(1)
    assert first.startswith('python3 -m pip install -e ".[test]" && python3 -m tritorch.train')


def test_readme_quick_start_runs():
    block = re.search(r"## Quick start\n\n```python\n(.*?)```", README, re.S).group(1)
    scope = {}
    exec(compile(block, "README quick start", "exec"), scope)
    assert scope["loss"].item() < 1e-6
