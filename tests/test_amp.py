"""Mixed precision: autocast's output dtypes against PyTorch's (torch.autocast on cpu; PyTorch's cuda policy lists
for device_type="cuda", float16 in the interpreter), gradients to float32 weights, the weight-cast cache, GradScaler
(its fused unscale kernel, its scale trajectory against torch.amp.GradScaler, skipped steps, state round trips) and
an MLP trained in float16 with the scaler."""
import pickle

import numpy as np
import pytest

import tritorch
from tritorch import _modes
from tritorch.amp import autocast_mode as AM

torch = pytest.importorskip("torch")


def _maker(T, dev):
    rng = np.random.default_rng(0)

    def m(shape, dt, low=-1.0, high=1.0):
        return T.tensor(rng.uniform(low, high, size=shape), dtype=dt, device=dev)
    return m


def _cases(T, dev, h):
    """name -> a call of the op, on ``T`` (tritorch or torch); ``h``: the half type the float32 ops get."""
    F, f, m = T.nn.functional, T.float32, _maker(T, dev)
    idx = T.tensor([0, 1, 2, 0], device=dev)
    return {
        "linear": lambda: F.linear(m((4, 3), f), m((5, 3), f), m((5,), f)),
        "matmul": lambda: T.matmul(m((4, 3), f), m((3, 2), f)),
        "__matmul__": lambda: m((4, 3), f) @ m((3, 2), f),
        "mm": lambda: T.mm(m((4, 3), f), m((3, 2), f)),
        "bmm": lambda: T.bmm(m((2, 4, 3), f), m((2, 3, 2), f)),
        "addmm": lambda: T.addmm(m((4, 2), f), m((4, 3), f), m((3, 2), f)),
        "addbmm": lambda: T.addbmm(m((4, 2), f), m((2, 4, 3), f), m((2, 3, 2), f)),
        "baddbmm": lambda: T.baddbmm(m((2, 4, 2), f), m((2, 4, 3), f), m((2, 3, 2), f)),
        "conv1d": lambda: F.conv1d(m((1, 2, 5), f), m((3, 2, 2), f)),
        "conv2d": lambda: F.conv2d(m((1, 2, 5, 5), f), m((3, 2, 2, 2), f), m((3,), f)),
        "conv_transpose1d": lambda: F.conv_transpose1d(m((1, 2, 5), f), m((2, 3, 2), f)),
        "conv_transpose2d": lambda: F.conv_transpose2d(m((1, 2, 4, 4), f), m((2, 3, 2, 2), f)),
        "scaled_dot_product_attention": lambda: F.scaled_dot_product_attention(m((1, 2, 3, 4), f),
                                                                               m((1, 2, 3, 4), f),
                                                                               m((1, 2, 3, 4), f)),
        "addmv": lambda: T.addmv(m((4,), f), m((4, 3), f), m((3,), f)),
        "mv": lambda: T.mv(m((4, 3), f), m((3,), f)),
        "einsum": lambda: T.einsum("ij,jk->ik", m((4, 3), f), m((3, 2), f)),
        "exp": lambda: T.exp(m((5,), h)),
        "expm1": lambda: T.expm1(m((5,), h)),
        "log": lambda: T.log(m((5,), h, 0.1, 2.0)),
        "log1p": lambda: T.log1p(m((5,), h, 0.1, 2.0)),
        "reciprocal": lambda: T.reciprocal(m((5,), h, 0.5, 2.0)),
        "rsqrt": lambda: T.rsqrt(m((5,), h, 0.5, 2.0)),
        "pow": lambda: T.pow(m((5,), h, 0.5, 2.0), 2.0),
        "__pow__": lambda: m((5,), h, 0.5, 2.0) ** 1.5,
        "softplus": lambda: F.softplus(m((5,), h)),
        "layer_norm": lambda: F.layer_norm(m((2, 5), h), (5,)),
        "group_norm": lambda: F.group_norm(m((2, 4, 3), h), 2),
        "norm": lambda: T.norm(m((5,), h)),
        "cosine_similarity": lambda: F.cosine_similarity(m((3, 4), h), m((3, 4), h)),
        "logsumexp": lambda: T.logsumexp(m((3, 4), h), 1),
        "prod": lambda: T.prod(m((5,), h)),
        "softmax": lambda: T.softmax(m((5,), h), 0),
        "log_softmax": lambda: T.log_softmax(m((5,), h), 0),
        "cumprod": lambda: T.cumprod(m((5,), h), 0),
        "cumsum": lambda: T.cumsum(m((5,), h), 0),
        "sum": lambda: T.sum(m((5,), h)),
        "cross_entropy": lambda: F.cross_entropy(m((4, 3), h), idx),
        "nll_loss": lambda: F.nll_loss(m((4, 3), h), idx),
        "kl_div": lambda: F.kl_div(m((3, 4), h), m((3, 4), h, 0.1, 1.0), reduction="batchmean"),
        "l1_loss": lambda: F.l1_loss(m((3, 4), h), m((3, 4), h)),
        "smooth_l1_loss": lambda: F.smooth_l1_loss(m((3, 4), h), m((3, 4), h)),
        "huber_loss": lambda: F.huber_loss(m((3, 4), h), m((3, 4), h)),
        "mse_loss": lambda: F.mse_loss(m((3, 4), h), m((3, 4), h)),
        "margin_ranking_loss": lambda: F.margin_ranking_loss(m((4,), h), m((4,), h), m((4,), h)),
        "triplet_margin_loss": lambda: F.triplet_margin_loss(m((3, 4), h), m((3, 4), h), m((3, 4), h)),
        "binary_cross_entropy_with_logits": lambda: F.binary_cross_entropy_with_logits(m((3, 4), h),
                                                                                      m((3, 4), h, 0.0, 1.0)),
        "cat": lambda: T.cat([m((2,), h), m((3,), f)]),
        "stack": lambda: T.stack([m((2,), h), m((2,), f)]),
        "relu": lambda: T.relu(m((5,), f)),
        "add": lambda: m((5,), f) + m((5,), h),
    }


# PyTorch's cuda policy (torch/testing/_internal/autocast_test_lists.py: torch_fp16, nn_fp16, methods_fp16 run in
# float16; torch_fp32, nn_fp32 in float32; builtin promotion for add/cat/stack); ops outside it keep their dtype
CUDA_FP16 = {"linear", "matmul", "__matmul__", "mm", "bmm", "addmm", "addbmm", "baddbmm", "conv1d", "conv2d",
             "conv_transpose1d", "conv_transpose2d", "scaled_dot_product_attention", "addmv", "mv", "einsum"}
CUDA_FP32 = {"exp", "expm1", "log", "log1p", "reciprocal", "rsqrt", "pow", "__pow__", "softplus", "layer_norm",
             "group_norm", "norm", "cosine_similarity", "logsumexp", "prod", "softmax", "log_softmax", "cumprod",
             "cumsum", "sum", "cross_entropy", "nll_loss", "kl_div", "l1_loss", "smooth_l1_loss", "huber_loss",
             "mse_loss", "margin_ranking_loss", "triplet_margin_loss", "binary_cross_entropy_with_logits", "cat",
             "stack", "relu", "add"}
NAMES = sorted(_cases(tritorch, "cpu", tritorch.float16))


def _dtype_of(out):
    return (out[0] if isinstance(out, tuple) else out).dtype


def _cpu_cases(T, h):
    """More calls for the cpu comparison: PyTorch's cpu-only float32 ops, and composites whose parts autocast."""
    F, f, m = T.nn.functional, T.float32, _maker(T, "cpu")
    return {
        "trace": lambda: T.trace(m((3, 3), h)),
        "cdist": lambda: T.cdist(m((3, 4), h), m((2, 4), h)),
        "avg_pool3d": lambda: F.avg_pool3d(m((1, 1, 4, 4, 4), h), 2),
        "max_pool3d": lambda: F.max_pool3d(m((1, 1, 4, 4, 4), h), 2),
        "adaptive_avg_pool3d": lambda: F.adaptive_avg_pool3d(m((1, 1, 4, 4, 4), h), 2),
        "binary_cross_entropy": lambda: F.binary_cross_entropy(m((3, 4), h, 0.1, 0.9), m((3, 4), h, 0.0, 1.0)),
        "cosine_embedding_loss": lambda: F.cosine_embedding_loss(m((2, 3), h), m((2, 3), h), T.tensor([1, -1])),
        "hstack": lambda: T.hstack([m((2,), h), m((3,), f)]),
        "tensordot": lambda: T.tensordot(m((2, 3, 4), f), m((3, 4, 2), f)),
        "dot": lambda: T.dot(m((3,), f), m((3,), f)),
        "interpolate": lambda: F.interpolate(m((1, 1, 4), h), scale_factor=2, mode="nearest"),
        "exp_fp32": lambda: T.exp(m((5,), f)),
        "softmax_fp32": lambda: T.softmax(m((5,), f), 0),
    }


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_autocast_cpu_more_dtypes_match_torch(dtype):
    tt, td = getattr(tritorch, dtype), getattr(torch, dtype)
    with tritorch.autocast("cpu", dtype=tt):
        got = {k: str(_dtype_of(fn())).split(".")[-1] for k, fn in _cpu_cases(tritorch, tt).items()}
    with torch.autocast("cpu", dtype=td):
        want = {k: str(_dtype_of(fn())).split(".")[-1] for k, fn in _cpu_cases(torch, td).items()}
    assert got == want


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_autocast_cpu_dtypes_match_torch(dtype):
    """Every case's output dtype under cpu autocast equals torch.autocast("cpu")'s, for both lower types."""
    tt, td = getattr(tritorch, dtype), getattr(torch, dtype)
    ours, theirs = _cases(tritorch, "cpu", tt), _cases(torch, "cpu", td)
    with tritorch.autocast("cpu", dtype=tt):
        got = {k: str(_dtype_of(fn())).split(".")[-1] for k, fn in ours.items()}
    with torch.autocast("cpu", dtype=td):
        want = {k: str(_dtype_of(fn())).split(".")[-1] for k, fn in theirs.items()}
    assert got == want
    assert got["linear"] == dtype and got["cross_entropy"] == "float32"


@pytest.mark.parametrize("name", NAMES)
def test_autocast_cuda_policy(name):
    """device_type="cuda" (interpreted, float16): PyTorch's cuda lists; the result equals the op run on inputs cast
    by hand outside autocast (PyTorch's own control)."""
    fn = _cases(tritorch, "cuda", tritorch.float16)[name]
    args_seen = []

    class Grab(_modes.OpMode):                  # innermost: sees the op's arguments before autocast casts them
        def __op__(self, n, op, a, k):
            if n == name and not args_seen:
                args_seen.append((a, k))
            return op(*a, **k)
    with tritorch.autocast("cuda"):
        assert tritorch.is_autocast_enabled() and tritorch.get_autocast_dtype("cuda") is tritorch.float16
        with Grab():
            out = fn()
    expect = tritorch.float16 if name in CUDA_FP16 else tritorch.float32
    assert _dtype_of(out) is expect
    assert not tritorch.is_autocast_enabled("cuda")
    if name in CUDA_FP16 or name in AM.POLICY:
        # PyTorch's control: the same call on inputs cast by hand, outside autocast
        a, k = args_seen[0]
        half = AM._map((a, k), lambda t: t.to(expect) if AM._eligible(t, "cuda") else t)
        if AM.POLICY[name][0] == AM.PROMOTE:
            half = (a, k)
        control = getattr(tritorch.nn.functional, name, None) or getattr(tritorch, name, None) or \
            getattr(tritorch.Tensor, name)
        ref = control(*half[0], **half[1])
        np.testing.assert_array_equal(_np(out), _np(ref))


def _np(t):
    t = t[0] if isinstance(t, tuple) else t
    return t.detach().cpu().float().numpy()


def test_banned_binary_cross_entropy():
    x = tritorch.rand(3, device="cuda")
    with tritorch.autocast("cuda"):
        with pytest.raises(RuntimeError, match="unsafe to autocast"):
            tritorch.nn.functional.binary_cross_entropy(x, x)
    with tritorch.autocast("cpu"):
        y = tritorch.rand(3, dtype=tritorch.bfloat16)
        assert tritorch.nn.functional.binary_cross_entropy(y, y).dtype is tritorch.float32


def test_nesting_disabled_regions_and_decorator(device):
    a, b = tritorch.randn(3, 3, device=device), tritorch.randn(3, 3, device=device)
    dt = "cuda" if device == "cuda" else "cpu"
    low = tritorch.get_autocast_dtype(dt)
    with tritorch.autocast(dt):
        e = tritorch.mm(a, b)
        with tritorch.autocast(dt, enabled=False):
            assert not tritorch.is_autocast_enabled(dt)
            f = tritorch.mm(a, e.float())
            with tritorch.amp.autocast(dt):
                g = tritorch.mm(a, b)
        h = tritorch.mm(a, f)
    assert (e.dtype, f.dtype, g.dtype, h.dtype) == (low, tritorch.float32, low, low)

    @tritorch.autocast(dt)
    def run(x, y):
        return x @ y
    assert run(a, b).dtype is low and (a @ b).dtype is tritorch.float32
    assert not tritorch.is_autocast_enabled(dt) and not _modes.MODES


def test_autocast_errors_and_aliases():
    with pytest.raises(ValueError, match="Expected `device_type` of type `str`"):
        tritorch.autocast(1)
    with pytest.raises(RuntimeError, match="unsupported autocast device_type 'xpu'"):
        tritorch.autocast("xpu")
    with pytest.warns(UserWarning, match="target dtype is not supported"):
        ac = tritorch.autocast("cpu", dtype=tritorch.float64)
    with ac:
        assert not tritorch.is_autocast_enabled("cpu")
    with pytest.raises(TypeError, match="requires a callable"):
        tritorch.autocast("cpu")(3)
    import tritorch.cuda.amp as cuda_amp
    with pytest.warns(FutureWarning):
        with cuda_amp.autocast():
            assert tritorch.is_autocast_enabled("cuda")
    with pytest.warns(FutureWarning):
        assert isinstance(tritorch.cuda.amp.GradScaler(), tritorch.amp.GradScaler)


def test_grads_reach_fp32_params_and_cache(device):
    """Two uses of one weight in a region cast it once; the gradient reaches the float32 weight and equals the
    float16 computation's."""
    dt = "cuda" if device == "cuda" else "cpu"
    x = tritorch.randn(4, 3, device=device)
    w = tritorch.randn(5, 3, device=device, requires_grad=True)
    casts = []

    class Count(_modes.OpMode):
        def __op__(self, n, op, a, k):
            if n == "to" and a[0] is w:
                casts.append(1)
            return op(*a, **k)
    with tritorch.autocast(dt, dtype=tritorch.float16):
        with Count():
            y = tritorch.nn.functional.linear(x, w) + tritorch.nn.functional.linear(x * 2, w)
        assert len(AM._CACHE) == 1
    assert len(casts) == 1 and not AM._CACHE
    y.float().sum().backward()
    assert w.grad.dtype is tritorch.float32
    ref = (_np(tritorch.ones(4, 5)).T @ (_np(x) * 3)).astype(np.float16)
    np.testing.assert_allclose(_np(w.grad), ref, rtol=2e-3, atol=2e-3)
    casts.clear()
    with tritorch.autocast(dt, dtype=tritorch.float16, cache_enabled=False):
        with Count():
            tritorch.nn.functional.linear(x, w) + tritorch.nn.functional.linear(x, w)
    assert len(casts) == 2


def test_custom_fwd_bwd():
    seen = {}

    class MyMM(tritorch.autograd.Function):
        @staticmethod
        @tritorch.amp.custom_fwd(device_type="cpu", cast_inputs=tritorch.float32)
        def forward(ctx, a, b):
            seen["fwd"] = (a.dtype, tritorch.is_autocast_enabled("cpu"))
            ctx.save_for_backward(a, b)
            return a.mm(b)

        @staticmethod
        @tritorch.amp.custom_bwd(device_type="cpu")
        def backward(ctx, g):
            seen["bwd"] = tritorch.is_autocast_enabled("cpu")
            a, b = ctx.saved_tensors
            return g.mm(b.t()), a.t().mm(g)
    a = tritorch.randn(3, 3, dtype=tritorch.bfloat16, requires_grad=True)
    b = tritorch.randn(3, 3, requires_grad=True)
    with tritorch.autocast("cpu"):
        out = MyMM.apply(a, b)
    assert out.dtype is tritorch.float32 and seen["fwd"] == (tritorch.float32, False)
    out.sum().backward()
    assert seen["bwd"] is False and a.grad.dtype is tritorch.bfloat16


# ---- GradScaler -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_unscale_kernel(device, dtype):
    dt = getattr(tritorch, dtype)
    gs = [tritorch.randn(*s, device=device).to(dt) for s in [(37,), (5, 7), (0,), ()]]
    gs.append(tritorch.randn(6, 9, device=device).to(dt).t())        # non-contiguous
    before = [_np(g).copy() for g in gs]
    found = tritorch.zeros((), device=device)
    inv = tritorch.full((), 0.125, device=device)
    tritorch._amp_foreach_non_finite_check_and_unscale_(gs, found, inv)
    assert found.item() == 0.0
    for g, b in zip(gs, before):
        np.testing.assert_array_equal(_np(g), b * 0.125)
    for bad in (float("inf"), float("nan")):
        gs[1][2, 3] = bad
        found.zero_()
        tritorch._amp_foreach_non_finite_check_and_unscale_(gs, found, inv)
        assert found.item() == 1.0
    with pytest.raises(RuntimeError, match="one device and one dtype"):
        tritorch._amp_foreach_non_finite_check_and_unscale_([gs[0], gs[1].double() if dtype != "float64"
                                                             else gs[1].float()], found, inv)
    with pytest.raises(RuntimeError, match="found_inf must be a 1-element"):
        tritorch._amp_foreach_non_finite_check_and_unscale_(gs, found.double(), inv)


def _run_scaler(T, dev, scaler, bad_steps, n, opt_cls=None):
    p = T.nn.Parameter(T.tensor([1.0, -2.0, 3.0], device=dev))
    opt = (opt_cls or T.optim.SGD)([p], lr=0.1)
    traj = []
    for i in range(n):
        opt.zero_grad()
        loss = (p * p).sum()
        scaler.scale(loss).backward()
        if i in bad_steps:
            with T.no_grad():
                p.grad[1] = float("inf") if i % 2 else float("nan")
        scaler.step(opt)
        scaler.update()
        traj.append((scaler.get_scale(), scaler._get_growth_tracker(), p.detach().cpu().tolist()))
    return traj


def test_scaler_trajectory_matches_torch(device):
    bad = {2, 3, 7, 11}
    kw = dict(init_scale=2.0 ** 10, growth_factor=4.0, backoff_factor=0.25, growth_interval=3)
    ours = _run_scaler(tritorch, device, tritorch.amp.GradScaler(device, **kw), bad, 14)
    theirs = _run_scaler(torch, "cpu", torch.amp.GradScaler("cpu", **kw), bad, 14)
    assert [t[:2] for t in ours] == [t[:2] for t in theirs]
    np.testing.assert_allclose([t[2] for t in ours], [t[2] for t in theirs], rtol=1e-6)


def test_skipped_step_leaves_params_and_state(device):
    p = tritorch.nn.Parameter(tritorch.randn(4, device=device))
    opt = tritorch.optim.Adam([p], lr=0.1)
    scaler = tritorch.amp.GradScaler(device, init_scale=8.0)
    scaler.scale((p * p).sum()).backward()
    scaler.step(opt)
    scaler.update()
    snap = (_np(p).copy(), {k: (_np(v).copy() if isinstance(v, tritorch.Tensor) else v)
                            for k, v in opt.state[p].items()})
    opt.zero_grad()
    scaler.scale((p * float("inf")).sum()).backward()
    assert scaler.step(opt) is None
    scaler.update()
    np.testing.assert_array_equal(_np(p), snap[0])
    for k, v in opt.state[p].items():
        np.testing.assert_array_equal(_np(v) if isinstance(v, tritorch.Tensor) else v, snap[1][k])
    assert scaler.get_scale() == 4.0


def test_scaler_errors_and_state_round_trip(tmp_path, device):
    p = tritorch.nn.Parameter(tritorch.randn(3, device=device))
    opt = tritorch.optim.SGD([p], lr=0.1)
    scaler = tritorch.amp.GradScaler(device, growth_interval=5)
    with pytest.raises(AssertionError, match="Attempted step but _scale is None"):
        scaler.step(opt)
    scaler.scale(p.sum()).backward()
    scaler.unscale_(opt)
    np.testing.assert_array_equal(_np(p.grad), np.ones(3))
    with pytest.raises(RuntimeError, match="unscale_\\(\\) has already been called"):
        scaler.unscale_(opt)
    with pytest.raises(RuntimeError, match="Closure use is not currently supported"):
        scaler.step(opt, closure=lambda: 0)
    scaler.step(opt)
    with pytest.raises(RuntimeError, match="step\\(\\) has already been called"):
        scaler.step(opt)
    with pytest.raises(RuntimeError, match="unscale_\\(\\) is being called after step\\(\\)"):
        scaler.unscale_(opt)
    scaler.update()
    q = tritorch.nn.Parameter(tritorch.randn(3, device=device, dtype=tritorch.float16))
    q.grad = tritorch.ones(3, device=device, dtype=tritorch.float16)
    with pytest.raises(ValueError, match="Attempting to unscale FP16 gradients."):
        scaler.unscale_(tritorch.optim.SGD([q], lr=0.1))
    sd = scaler.state_dict()
    assert sd == {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 5,
                  "_growth_tracker": 1}
    tritorch.save(sd, tmp_path / "s.pt")
    other = tritorch.amp.GradScaler(device)
    other.load_state_dict(tritorch.load(tmp_path / "s.pt"))
    assert other.state_dict() == sd
    clone = pickle.loads(pickle.dumps(other))
    assert clone.state_dict() == sd
    off = tritorch.amp.GradScaler(device, enabled=False)
    assert off.state_dict() == {} and off.get_scale() == 1.0 and off.scale(p) is p
    with pytest.raises(RuntimeError, match="The source state dict is empty"):
        other.load_state_dict({})
    with pytest.raises(AssertionError, match="The growth factor must be > 1.0."):
        tritorch.amp.GradScaler(device, growth_factor=1.0)


def _blobs(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = np.array([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    x = centers[y] + rng.normal(0, 0.6, (n, 2))
    return tritorch.tensor(x, dtype=tritorch.float32), tritorch.tensor(y)


def _train(amp):
    tritorch.manual_seed(0)
    nn = tritorch.nn
    model = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 3))
    opt = tritorch.optim.SGD(model.parameters(), lr=0.2)
    scaler = tritorch.amp.GradScaler("cpu", enabled=amp)
    x, y = _blobs(256, 0)
    for _ in range(60):
        opt.zero_grad()
        with tritorch.autocast("cpu", dtype=tritorch.float16, enabled=amp):
            loss = nn.functional.cross_entropy(model(x), y)
        assert loss.dtype is tritorch.float32
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    assert all(p.dtype is tritorch.float32 for p in model.parameters())
    xt, yt = _blobs(256, 1)
    return (model(xt).argmax(1) == yt).float().mean().item()


def test_mlp_float16_with_scaler_matches_float32():
    acc32, acc16 = _train(False), _train(True)
    assert acc32 > 0.9 and acc16 >= acc32 - 0.02


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_train_main_job_amp(tmp_path, capsys, amp):
    """``python -m tritorch.train --amp``: the CNN job under autocast (and the scaler for fp16) learns; its weights
    stay float32."""
    from tritorch import train
    ckpt = str(tmp_path / "cnn.safetensors")
    assert train.main(["--epochs", "1", "--batch-size", "16", "--limit-batches", "40", "--seed", "0", "--quiet",
                       "--amp", amp, "--out", ckpt]) == 0
    state = tritorch.load(ckpt)
    assert state["history"][-1]["accuracy"] > 0.5
    assert all(v.dtype is tritorch.float32 for v in state["model"].values() if v.dtype.is_floating_point)


def test_gpt_amp_bench_case_matches_torch_autocast():
    """The benchmark's bf16-autocast GPT training step (small size, cpu): tritorch's loss equals PyTorch's under
    torch.autocast("cpu", bfloat16), and is float32."""
    from tritorch import benchmark as B
    case = next(c for c in B.STEP_CASES if c.extra.get("amp"))
    ours, theirs = case.make(tritorch, "cpu", case.small), case.make(torch, "cpu", case.small)
    a, b = ours().float().item(), theirs().float().item()
    assert abs(a - b) <= 2e-2 * abs(b), (a, b)
    assert np.isfinite(a) and ours().dtype is tritorch.float32
