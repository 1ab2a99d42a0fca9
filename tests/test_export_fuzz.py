"""A seeded, bounded fuzzer for deployment: the random models of tests/model_programs.py, in eval mode on cpu,
exported with ``tritorch.onnx.export`` (onnx.checker accepts each, onnxruntime's results equal tritorch's) and
traced with ``tritorch.jit.trace``, saved and loaded (the loaded module's results equal the model's).
``TRITORCH_FUZZ_SEEDS=200`` widens it (16 seeds by default)."""
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import tritorch
from tests import model_programs as mp

SEEDS = int(os.environ.get("TRITORCH_FUZZ_SEEDS", 16))


def _model(seed, image):
    rng = np.random.default_rng(11000 + seed)
    program = mp.image_program(rng) if image else mp.program(rng)
    tritorch.manual_seed(seed)
    model = (mp.ImageNet if image else mp.Net)(program)
    if image:                                   # batch norm with running statistics that are not the defaults
        model.train()
        with tritorch.no_grad():
            model(tritorch.randn(mp.B, program[1][0][0], 8, 8))
    model.eval()
    shape = (mp.B, program[1][0][0], 8, 8) if image else (mp.B, mp.T, program[1][0])
    return program, model, tritorch.tensor(rng.standard_normal(shape).astype(np.float32))


def _agree(got, want, what):
    assert len(got) == len(want), what
    for k, (a, b) in enumerate(zip(got, want)):
        scale = max(1.0, float(np.abs(b).max(initial=0.0)))
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5 * scale, err_msg=f"{what}: result {k}")


@pytest.mark.parametrize("image", [False, True])
@pytest.mark.parametrize("seed", range(SEEDS // 2))
def test_fuzz_onnx_export_matches_eager(seed, image):
    program, model, x = _model(seed, image)
    with tritorch.no_grad():
        want = [o.numpy() for o in model(x)]
    proto = tritorch.onnx.export(model, (x,), input_names=["x"])
    onnx.checker.check_model(proto, full_check=True)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    _agree(sess.run(None, {"x": x.numpy()}), want, f"program {program}")


@pytest.mark.parametrize("image", [False, True])
@pytest.mark.parametrize("seed", range(SEEDS // 2))
def test_fuzz_traced_save_load_matches_eager(seed, image, tmp_path):
    program, model, x = _model(seed + 500, image)
    with tritorch.no_grad():
        want = [o.numpy() for o in model(x)]
        traced = tritorch.jit.trace(model, x)
        traced.save(str(tmp_path / "m.pt"))
        loaded = tritorch.jit.load(str(tmp_path / "m.pt"))
        _agree([o.numpy() for o in traced(x)], want, f"program {program}, traced")
        _agree([o.numpy() for o in loaded(x)], want, f"program {program}, loaded")
