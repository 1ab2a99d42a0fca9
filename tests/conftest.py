"""Every test that takes ``device`` runs on ``cpu`` (NumPy references) and ``cuda`` (the Triton kernels: in Triton's
interpreter by default, on the real GPU with TRITORCH_TEST_GPU=1)."""
import os

if os.environ.get("TRITORCH_TEST_GPU", "0") == "1":
    os.environ.pop("TRITORCH_INTERPRET", None)
else:
    os.environ.setdefault("TRITORCH_INTERPRET", "1")
os.environ.setdefault("TRITORCH_POISON", "1")
# the cpu tests multiply small matrices: BLAS threads spinning on 2 shared cores cost more than they gain
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# property tests draw the same examples on every run (a CI failure reproduces locally) and keep no example database
settings.register_profile("tritorch", derandomize=True, database=None)
settings.load_profile("tritorch")

import tritorch  # noqa: E402,F401

GPU = os.environ.get("TRITORCH_TEST_GPU", "0") == "1"


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    return request.param


def pytest_collection_modifyitems(config, items):
    if GPU:
        return
    skip = pytest.mark.skip(reason="needs a real GPU (run with TRITORCH_TEST_GPU=1 on a GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)




FAIL_LOG = os.environ.get("TRITORCH_FAIL_LOG")


def pytest_runtest_logreport(report):
    """With TRITORCH_FAIL_LOG=path, each failure is appended there as it happens (test id, then the error's last
    lines): a GPU run cut short by its time limit still says what failed, where pytest's summary never printed."""
    if FAIL_LOG and report.failed:
        tail = "\n".join(str(report.longrepr).splitlines()[-15:])
        with open(FAIL_LOG, "a") as f:
            f.write(f"FAILED {report.nodeid} ({report.when})\n{tail}\n\n")
