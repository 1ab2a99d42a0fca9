"""Every script under examples/ runs at tiny size (``--tiny``) as ``__main__`` (in-process, as ``python script.py``
would run it) and prints what it should (to_gpu.py on the interpreted cuda device the tests set up)."""
import os
import runpy
import sys

import pytest

import tritorch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")

EXPECTED = {
    "linear_regression.py": "weight",
    "amp_mlp.py": "float16 logits",
    "mlp_classifier.py": "test accuracy",
    "cnn.py": "test accuracy",
    "deploy_onnx.py": "same accuracy: True",
    "conv_autoencoder.py": "reconstruction loss",
    "gan.py": "samples (4, 1, 8, 8)",
    "multitask.py": "digit  accuracy",
    "rnn.py": "before training",
    "save_load.py": "reloaded model gives the same outputs: True",
    "to_gpu.py": "after .cpu(): cpu",
}


def test_every_example_is_listed():
    assert sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".py")) == sorted(EXPECTED)


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs_tiny(script, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [script, "--tiny"])
    runpy.run_path(os.path.join(EXAMPLES, script), run_name="__main__")
    out = capsys.readouterr().out
    assert EXPECTED[script] in out, out
    if script == "to_gpu.py" and tritorch.cuda.is_available():          # the interpreter in the tests
        assert "parameters on cuda:0" in out, out
