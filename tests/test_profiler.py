"""``tritorch.profiler``: op events through the op modes, kernel launches hooked at Triton's launch method (grid,
bytes), the hook removed afterwards, averages and their table, and the eager vs compiled comparison."""
import json

import numpy as np
import pytest
from triton.runtime.interpreter import InterpretedFunction
from triton.runtime.jit import JITFunction

import tritorch
import tritorch.nn as nn
from tritorch import _modes
from tritorch.kernels._launch import Ptr, ptr, table_ptr
from tritorch.profiler import ProfilerActivity, profile, record_function


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITORCH_CACHE_DIR", str(tmp_path))     # the generated kernels of tritorch.compile


def _runs():
    return JITFunction.__dict__.get("run"), InterpretedFunction.__dict__.get("run")


def _xy(device, n=1000):
    rng = np.random.default_rng(0)
    return (tritorch.tensor(rng.standard_normal(n).astype(np.float32), device=device),
            tritorch.tensor(rng.standard_normal(n).astype(np.float32), device=device))


def test_eager_ops_and_kernel_launches(device):
    x, y = _xy(device)
    with profile() as prof:
        z = tritorch.relu(x * y + 1)
    ops = [e for e in prof.events() if e.kind == "op"]
    assert [e.name for e in ops if e.depth == 0] == ["__mul__", "__add__", "relu"]
    kernels = [e for e in prof.events() if e.kind == "kernel"]
    assert all(e.cpu_time_total > 0 for e in ops + kernels)
    assert all(e.device_time_total is None for e in ops + kernels)      # no GPU here
    if device == "cpu":                                                  # the NumPy references launch nothing
        assert kernels == [] and prof.kernel_launches() == 0 and prof.kernel_bytes() == 0
        return
    assert [e.name for e in kernels] == ["_pointwise_kernel"] * 3
    assert [e.cpu_parent.name for e in kernels] == ["__mul__", "__add__", "relu"]
    assert all(e.depth == 1 and isinstance(e.grid, tuple) for e in kernels)
    # mul: two float32 (1000,) inputs and a new output; add (with a Python number) and relu: one in, one out
    assert [e.bytes for e in kernels] == [12000, 8000, 8000]
    assert prof.kernel_launches() == 3 and prof.kernel_bytes() == 28000
    assert prof.kernel_launches("_pointwise_kernel") == 3 and prof.kernel_launches("other") == 0
    np.testing.assert_allclose(z.cpu().numpy(), np.maximum(x.cpu().numpy() * y.cpu().numpy() + 1, 0), rtol=1e-6)


def test_linear_forward_backward_nests_ops(device):
    tritorch.manual_seed(0)
    lin = nn.Linear(8, 4).to(device)
    x = tritorch.randn(3, 8, device=device)
    with profile() as prof:
        lin(x).sum().backward()
    events = prof.events()
    top = [e.name for e in events if e.kind == "op" and e.depth == 0]
    assert top == ["linear", "sum", "backward"]
    nested = [e for e in events if e.kind == "op" and e.depth > 0]
    assert nested and all(e.cpu_parent is not None and e.depth == e.cpu_parent.depth + 1 for e in nested)
    for e in events:                                # a nested call's time is inside its parent's, not added twice
        assert 0 <= e.self_cpu_time_total <= e.cpu_time_total
    assert lin.weight.grad is not None
    table = prof.key_averages().table(sort_by="cpu_time_total", row_limit=20)
    assert "linear" in table and "backward" in table and "Self CPU time total" in table
    if device == "cuda":
        kernels = [e for e in events if e.kind == "kernel"]
        assert len(kernels) >= 3 and all(e.bytes > 0 for e in kernels)
        assert f"Kernel launches: {len(kernels)}" in table
    else:
        assert prof.kernel_launches() == 0


def test_hook_removed_after_the_block_and_after_an_exception():
    before = _runs()
    x, y = _xy("cuda", 16)
    with profile() as prof:
        assert _runs() != before and prof in _modes.MODES
        x + y
    assert _runs() == before and prof not in _modes.MODES
    with pytest.raises(ValueError, match="in the body"), profile():
        x * y
        raise ValueError("in the body")
    assert _runs() == before and not _modes.MODES
    x * y                                       # launches still work, unrecorded
    with profile() as again:                    # and a new profile starts cleanly
        x - y
    assert again.kernel_launches() == 1 and prof.kernel_launches() == 1


def test_nested_profile_is_an_error():
    before = _runs()
    x, y = _xy("cuda", 16)
    with profile() as outer:
        with pytest.raises(RuntimeError, match="already running"), profile():
            pass
        x * y
    assert outer.kernel_launches() == 1 and _runs() == before and not _modes.MODES


def test_record_function_ranges(device):
    x, y = _xy(device, 16)

    @record_function("decorated")
    def g(a):
        return a.exp()

    with profile() as prof, record_function("step"):
        x * y
        g(x)
    names = [(e.name, e.depth) for e in prof.events() if e.kind == "op"]
    assert names == [("step", 0), ("__mul__", 1), ("decorated", 1), ("exp", 2)]
    step = prof.events()[0]
    assert step.cpu_time_total >= sum(e.cpu_time_total for e in prof.events() if e.cpu_parent is step)
    with record_function("outside"):            # no profile: records nothing, does not fail
        x * y
    with pytest.raises(TypeError, match="name must be a str"):
        record_function(3)


def test_activities_select_what_is_recorded():
    x, y = _xy("cuda", 16)
    with profile(activities=[ProfilerActivity.CPU]) as cpu_only:
        x * y
    with profile(activities=[ProfilerActivity.CUDA]) as cuda_only:
        x * y
    assert {e.kind for e in cpu_only.events()} == {"op"}
    assert {e.kind for e in cuda_only.events()} == {"kernel"} and cuda_only.events()[0].cpu_parent is None
    with pytest.raises(TypeError, match="ProfilerActivity"):
        profile(activities=["cuda"])
    with pytest.raises(NotImplementedError, match="schedule"):
        profile(schedule=lambda step: None)


def test_pytorch_keywords_shapes_and_averages(tmp_path):
    x, y = _xy("cuda", 16)
    seen = []
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True, profile_memory=True,
                 with_stack=True, on_trace_ready=seen.append) as prof:
        x * y
        x[:8] * y[:8]
        prof.step()
    assert seen == [prof]
    mul = [e for e in prof.events() if e.name == "__mul__"]
    assert [e.input_shapes for e in mul] == [[[16], [16]], [[8], [8]]]
    rows = {r.name: r for r in prof.key_averages()}
    assert rows["__mul__"].count == 2 and rows["__mul__"].kind == "op" and rows["__mul__"].bytes is None
    assert rows["_pointwise_kernel"].count == 2 and rows["_pointwise_kernel"].bytes == 3 * 64 + 3 * 32
    assert len(prof.key_averages(group_by_input_shape=True)) > len(rows)
    table = prof.key_averages().table(sort_by="bytes", row_limit=1)
    assert "_pointwise_kernel" in table and "__mul__" not in table.split("Kernel launches")[0]
    assert "__getitem__" in prof.key_averages().table(sort_by="count")
    top = prof.events().table(top_level_events_only=True)          # the raw events print the same way
    assert "__mul__" in top and "_pointwise_kernel" not in top.split("Kernel launches")[0]
    with pytest.raises(ValueError, match="unknown sort_by"):
        prof.key_averages().table(sort_by="flops")
    path = tmp_path / "trace.json"
    prof.export_chrome_trace(str(path))
    trace = json.loads(path.read_text())["traceEvents"]
    assert len(trace) == len(prof.events()) and {t["cat"] for t in trace} == {"op", "kernel"}


def test_ptr_extent_counts_distinct_elements():
    x = tritorch.zeros(4, 1, 3, device="cuda")
    assert ptr(x).nbytes == 48
    assert ptr(x.expand(4, 5, 3)).nbytes == 48               # a broadcast dim reads the same elements again
    assert ptr(x[1:3]).nbytes == 24 and ptr(x.transpose(0, 2)).nbytes == 48
    assert Ptr(0, tritorch.float32).nbytes is None            # a raw address has no known extent
    table = tritorch.zeros(2, dtype=tritorch.int64, device="cuda")
    assert table_ptr(table, [x, tritorch.zeros(5, dtype=tritorch.float16)]).nbytes == 16 + 48 + 10


@pytest.mark.parametrize("opt", [tritorch.optim.Adam, tritorch.optim.SGD])
def test_multi_tensor_kernels_count_the_tensors_they_reach(opt):
    """An optimizer's one launch reaches every parameter, gradient and state through a table of addresses: the
    profiler counts those tensors, not the table's few bytes (Adam: p, g, m, v; SGD without momentum: p, g)."""
    params = [nn.Parameter(tritorch.ones(n, device="cuda")) for n in (3, 1000, 70)]
    for p in params:
        p.grad = tritorch.ones_like(p)
    o = opt(params, lr=0.1)
    o.step()                                    # Adam's states exist from here on
    with profile() as prof:
        o.step()
    assert prof.kernel_launches() == 1
    numel = sum(p.numel() for p in params)
    tensors = 4 if opt is tritorch.optim.Adam else 2
    assert tensors * numel * 4 < prof.kernel_bytes() < tensors * numel * 4 + 400


def test_compiled_function_launches_fewer_kernels():
    def chain(x, y):
        z = x * y + 1.0
        w = tritorch.sigmoid(z) * x
        return tritorch.relu(w - y) / 2, z

    x, y = _xy("cuda", 33)
    c = tritorch.compile(chain)
    c(x, y)                                     # the capture (runs eagerly)
    with profile() as compiled:
        c(x, y)
    with profile() as eager:
        chain(x, y)
    assert eager.kernel_launches("_pointwise_kernel") == eager.kernel_launches() == 7
    assert compiled.kernel_launches("fused_kernel") == compiled.kernel_launches() == 2
    assert compiled.kernel_bytes() < eager.kernel_bytes()
    # fused: (x, y) -> z and (z, x, y) -> result, float32 (33,)
    assert compiled.kernel_bytes() == (3 + 4) * 33 * 4


@pytest.mark.gpu
def test_device_time_on_a_gpu():
    x, y = _xy("cuda", 1 << 20)
    with profile() as prof:
        x * y
    kernel = next(e for e in prof.events() if e.kind == "kernel")
    assert kernel.device_time_total > 0 and kernel.cpu_parent.device_time_total == kernel.device_time_total


def test_grad_scaler_unscale_counts_the_gradients():
    grads = [tritorch.ones(n, device="cuda") for n in (5, 300)]
    found_inf = tritorch.zeros(1, device="cuda")
    inv_scale = tritorch.full((1,), 0.5, device="cuda")
    with profile() as prof:
        tritorch._amp_foreach_non_finite_check_and_unscale_(grads, found_inf, inv_scale)
    assert prof.kernel_launches() == 1 and 305 * 4 < prof.kernel_bytes() < 305 * 4 + 200
