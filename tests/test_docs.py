"""docs/adding-an-op.md's worked example is real: its module and its tests are extracted, imported and run."""
import importlib.util
import pathlib
import re
import sys

import pytest

import tritorch

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "adding-an-op.md"


def _blocks():
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


@pytest.fixture(scope="module")
def doc_module(tmp_path_factory):
    code = _blocks()[0] + "\n\n" + _blocks()[1]
    path = tmp_path_factory.mktemp("doc") / "doc_hardswish_op.py"
    path.write_text(code)                      # Triton's jit reads a kernel's source from its file
    spec = importlib.util.spec_from_file_location("doc_hardswish_op", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["doc_hardswish_op"] = mod
    spec.loader.exec_module(mod)
    tritorch.doc_hardswish = tritorch._FUNCTIONS["doc_hardswish"]
    return mod


def test_worked_example(doc_module, device):
    for shape, layout in doc_module.test_hardswish.pytestmark[0].args[1]:    # the page's own parametrization
        doc_module.test_hardswish(shape, layout, device)


def test_worked_example_gradcheck(doc_module):
    doc_module.test_hardswish_gradcheck()
