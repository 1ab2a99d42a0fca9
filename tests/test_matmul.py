"""matmul / mm / bmm / addmm / mv / dot: forward and backward against float64 NumPy, on cpu and cuda (interpreter).

Shapes stay small (a handful of programs per launch) but cover partial tiles, K not a multiple of BLOCK_K, batch
broadcasting, 1-D operands, transposed and sliced operands, size-0 dims and every float dtype."""
import numpy as np
import pytest

import tritorch
from tritorch.kernels import matmul as MM
from tritorch.kernels._common import empty_ordered
from tritorch.profiler import profile
from helpers import assert_close, make, to_np

F = tritorch.float32


def _tol(dtype, k):
    """(rtol, atol) of a length-k product of inputs in [-2, 2] against float64."""
    if dtype is tritorch.float64:
        return 1e-10, 1e-12 * k
    if dtype is tritorch.float32:
        return 2e-5, 4e-7 * k
    if dtype is tritorch.float16:
        return 2e-3, 4e-3
    return 1.6e-2, 3e-2


def _close(out, ref, dtype, k):
    r, a = _tol(dtype, k)
    assert_close(out, ref, dtype, rtol=r, atol=a)


# ---- forward ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [tritorch.float32, tritorch.float16, tritorch.float64, tritorch.bfloat16])
def test_mm_odd_shapes(device, dtype):
    a, ra = make((17, 23), dtype, device, seed=1)
    b, rb = make((23, 19), dtype, device, seed=2)
    out = tritorch.mm(a, b)
    assert out.shape == (17, 19) and out.dtype is dtype and out.device.type == device
    _close(out, ra @ rb, dtype, 23)
    _close(a @ b, ra @ rb, dtype, 23)


@pytest.mark.parametrize("la,lb", [("transposed", "contiguous"), ("contiguous", "transposed"),
                                   ("strided", "transposed"), ("transposed", "strided")])
def test_mm_layouts(device, la, lb):
    a, ra = make((9, 37), F, device, la, seed=3)
    b, rb = make((37, 12), F, device, lb, seed=4)
    _close(tritorch.matmul(a, b), ra @ rb, F, 37)


def test_transposed_operands_are_not_copied(device, monkeypatch):
    a, ra = make((20, 33), F, device, "transposed", seed=5)
    b, rb = make((33, 18), F, device, "strided", seed=6)
    c, rc = make((3, 33, 18), F, device, "transposed", seed=7)

    def no_copy(*args, **kwargs):
        raise AssertionError("matmul copied an operand")
    monkeypatch.setattr(tritorch.Tensor, "contiguous", no_copy)
    _close(a @ b, ra @ rb, F, 33)
    _close(a @ c, ra @ rc, F, 33)


@pytest.mark.parametrize("sa,sb", [
    ((2, 1, 5, 7), (3, 7, 4)),       # both broadcast
    ((5, 7), (2, 7, 4)),             # matrix @ batch
    ((2, 5, 7), (7, 4)),             # batch @ matrix: one (10, 7) @ (7, 4) product
    ((2, 3, 5, 7), (2, 3, 7, 4)),    # plain batch, merged to one dim
    ((1, 5, 7), (2, 7, 4)),
])
def test_matmul_batch_broadcast(device, sa, sb):
    a, ra = make(sa, F, device, seed=8)
    b, rb = make(sb, F, device, seed=9)
    out = a @ b
    assert out.shape == np.broadcast_shapes(sa[:-2], sb[:-2]) + (sa[-2], sb[-1])
    _close(out, ra @ rb, F, 7)


def test_matmul_batch_dims_that_do_not_merge(device):
    # a's batch dims are permuted: three batch dims stay after merging, so the operands are materialized
    base, _ = make((3, 2, 2, 5, 7), F, device, seed=10)
    a = base.permute(1, 0, 2, 3, 4)
    b, rb = make((2, 1, 2, 7, 4), F, device, seed=11)
    out_shape = (2, 3, 2, 5, 4)
    assert MM._batch_layout(tritorch.empty(out_shape), a, b, None) is None
    _close(a @ b, to_np(a) @ rb, F, 7)


def test_batched_fold_not_viewable(device):
    # a (batch, M, K) whose batch and M dims cannot be viewed as one: the batched path with a stride-0 b
    base, _ = make((5, 2, 7), F, device, seed=12)
    a = base.transpose(0, 1)
    b, rb = make((7, 3), F, device, seed=13)
    _close(a @ b, to_np(a) @ rb, F, 7)


@pytest.mark.parametrize("sa,sb", [((7,), (7, 4)), ((5, 7), (7,)), ((7,), (2, 7, 4)), ((2, 5, 7), (7,)),
                                   ((7,), (7,)), ((1,), (1,))])
def test_matmul_1d(device, sa, sb):
    a, ra = make(sa, F, device, seed=14)
    b, rb = make(sb, F, device, seed=15)
    out = tritorch.matmul(a, b)
    ref = np.matmul(ra, rb)
    assert out.shape == ref.shape
    _close(out, ref, F, 7)


def test_mv_dot_bmm(device):
    m, rm = make((6, 21), F, device, seed=16)
    v, rv = make((21,), F, device, seed=17)
    w, rw = make((21,), F, device, "strided", seed=18)
    _close(tritorch.mv(m, v), rm @ rv, F, 21)
    d = tritorch.dot(v, w)
    assert d.shape == ()
    _close(d, rv @ rw, F, 21)
    x, rx = make((3, 5, 21), F, device, seed=19)
    y, ry = make((3, 21, 4), F, device, "transposed", seed=20)
    _close(tritorch.bmm(x, y), rx @ ry, F, 21)


@pytest.mark.parametrize("sa,sb", [((3, 0), (0, 4)), ((0, 5), (5, 4)), ((3, 5), (5, 0)), ((2, 0, 5), (5, 3)),
                                   ((0, 3, 5), (0, 5, 2)), ((0,), (0,))])
def test_size_zero(device, sa, sb):
    a, ra = make(sa, F, device)
    b, rb = make(sb, F, device)
    out = a @ b
    ref = np.matmul(ra, rb)
    assert out.shape == ref.shape
    assert_close(out, ref)


def test_size_zero_k_backward(device):
    a, _ = make((3, 0), F, device, requires_grad=True)
    b, _ = make((0, 4), F, device, requires_grad=True)
    (a @ b).sum().backward()
    assert a.grad.shape == (3, 0) and b.grad.shape == (0, 4)


def test_int_matmul_cpu_exact_cuda_error(device):
    a, ra = make((4, 5), tritorch.int64, device, seed=21)
    b, rb = make((5, 3), tritorch.int64, device, seed=22)
    if device == "cpu":
        out = a @ b
        assert out.dtype is tritorch.int64
        np.testing.assert_array_equal(to_np(out), ra @ rb)
    else:
        with pytest.raises(RuntimeError, match="\"addmm_cuda\" not implemented for 'Long'"):
            a @ b


def test_matmul_f32_precision_setting():
    assert tritorch.get_float32_matmul_precision() == "highest"
    with pytest.raises(RuntimeError, match="Invalid precision"):
        tritorch.set_float32_matmul_precision("low")


# ---- addmm and the epilogue ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("bias_shape", [(19,), (1, 19), (13, 1), (13, 19), ()])
def test_addmm(device, bias_shape):
    x, rx = make(bias_shape, F, device, seed=23)
    a, ra = make((13, 21), F, device, seed=24)
    b, rb = make((21, 19), F, device, "transposed", seed=25)
    _close(tritorch.addmm(x, a, b), rx + ra @ rb, F, 21)
    _close(tritorch.addmm(x, a, b, beta=0.5, alpha=-2.0), 0.5 * rx - 2.0 * (ra @ rb), F, 42)


def test_addmm_beta_zero_ignores_nan(device):
    x = tritorch.full((4, 5), float("nan"), device=device)
    a, ra = make((4, 6), F, device)
    b, rb = make((6, 5), F, device)
    _close(tritorch.addmm(x, a, b, beta=0), ra @ rb, F, 6)


def test_addmm_k_zero(device):
    x, rx = make((5,), F, device)
    a, _ = make((3, 0), F, device)
    b, _ = make((0, 5), F, device)
    assert_close(tritorch.addmm(x, a, b, beta=2.0), np.broadcast_to(2 * rx, (3, 5)))


@pytest.mark.parametrize("act", ["none", "relu", "gelu"])
def test_epilogue_bias_activation(act):
    """The fused-Linear epilogue: act(alpha * a @ b + beta * bias), bias a broadcast row."""
    a, ra = make((20, 35), F, "cuda", seed=26)
    w, rw = make((18, 35), F, "cuda", seed=27)
    bias, rbias = make((18,), F, "cuda", seed=28)
    out = MM.launch_matmul(a, w.t(), tritorch.empty((20, 18), device="cuda"), bias, alpha=0.5, beta=2.0, act=act)
    ref = MM._np_matmul(ra, rw.T, rbias, 0.5, 2.0, act, tritorch.float64)
    _close(out, ref, F, 35)


@pytest.mark.parametrize("cfg", MM.CANDIDATES, ids=lambda c: "x".join(map(str, c[:4])))
def test_every_candidate_config(cfg):
    """Each configuration of the autotuner's search space, forced through the (interpreted) kernel, with a
    batch, partial tiles, K not a multiple of BLOCK_K and grouped program ordering."""
    a, ra = make((2, 40, 37), F, "cuda", seed=29)
    b, rb = make((37, 50), F, "cuda", "transposed", seed=30)
    bias, rbias = make((50,), F, "cuda", seed=31)
    out = MM.launch_matmul(a, b, tritorch.empty((2, 40, 50), device="cuda"), bias, config=cfg)
    _close(out, ra @ rb + rbias, F, 37)


def test_batch_beyond_grid_limit(monkeypatch):
    """Batches larger than the grid's y limit run in several launches (limit lowered to 2 here), and a bias with
    its own batch strides (a baddbmm-style epilogue)."""
    monkeypatch.setattr(MM, "_MAX_GRID_Y", 2)
    a, ra = make((5, 3, 17), F, "cuda", seed=51)
    b, rb = make((5, 17, 4), F, "cuda", "transposed", seed=52)
    bias, rbias = make((5, 1, 4), F, "cuda", seed=53)
    out = MM.launch_matmul(a, b, tritorch.empty((5, 3, 4), device="cuda"), bias)
    _close(out, ra @ rb + rbias, F, 17)


def test_half_backward(device):
    dt = tritorch.float16
    a, ra = make((2, 9, 20), dt, device, seed=54, requires_grad=True)
    b, rb = make((20, 11), dt, device, "transposed", seed=55, requires_grad=True)
    out = a @ b
    _close(out, ra @ rb, dt, 20)
    g, rg = make(out.shape, dt, device, seed=56)
    out.backward(g)
    ga, gb = _grads(ra, rb, rg)
    assert_close(a.grad, ga, dt, rtol=2e-3, atol=1e-2)
    assert_close(b.grad, gb, dt, rtol=2e-3, atol=1e-2)


def test_matmul_config_heuristic():
    for m, n, k in [(1, 1, 1), (16, 4096, 4096), (4096, 8, 64), (300, 300, 300), (4096, 4096, 4096)]:
        for dt in (tritorch.float16, tritorch.float32, tritorch.float64):
            cfg = MM.matmul_config(m, n, k, dt)
            assert min(cfg[:3]) >= 16 and all(x & (x - 1) == 0 for x in cfg[:3])


# ---- errors -------------------------------------------------------------------------------------------------------

def test_errors(device):
    a, _ = make((3, 4), F, device)
    b, _ = make((5, 6), F, device)
    with pytest.raises(RuntimeError, match=r"mat1 and mat2 shapes cannot be multiplied \(3x4 and 5x6\)"):
        a @ b
    with pytest.raises(RuntimeError, match=r"mat1 and mat2 shapes cannot be multiplied \(3x4 and 5x6\)"):
        tritorch.mm(a, b)
    with pytest.raises(RuntimeError, match=r"mat1 and mat2 shapes cannot be multiplied \(2x3x4 and 5x6\)"):
        make((2, 3, 4), F, device)[0] @ b
    with pytest.raises(RuntimeError, match="must match the size of tensor b"):
        make((2, 3, 4), F, device)[0] @ make((3, 4, 2), F, device)[0]
    with pytest.raises(RuntimeError, match=r"Expected size for first two dimensions of batch2 tensor to be: "
                                           r"\[2, 4\] but got: \[2, 5\]"):
        tritorch.bmm(make((2, 3, 4), F, device)[0], make((2, 5, 6), F, device)[0])
    with pytest.raises(RuntimeError, match="batch1 must be a 3D tensor"):
        tritorch.bmm(a, a)
    with pytest.raises(RuntimeError, match="self must be a matrix"):
        tritorch.mm(make((4,), F, device)[0], a)
    with pytest.raises(RuntimeError, match="both arguments to matmul need to be at least 1D, but they are 0D and 2D"):
        tritorch.matmul(make((), F, device)[0], a)
    with pytest.raises(RuntimeError, match="expected m1 and m2 to have the same dtype, but got: float != double"):
        a @ make((4, 2), tritorch.float64, device)[0]
    with pytest.raises(RuntimeError, match="dot : expected both vectors to have same dtype, but found Float and "
                                           "Double"):
        make((4,), F, device)[0] @ make((4,), tritorch.float64, device)[0]
    with pytest.raises(RuntimeError, match=r"inconsistent tensor size, expected tensor \[4\] and src \[3\]"):
        tritorch.dot(make((4,), F, device)[0], make((3,), F, device)[0])
    with pytest.raises(RuntimeError, match=r"size mismatch, got input \(3\), mat \(3x4\), vec \(5\)"):
        tritorch.mv(a, make((5,), F, device)[0])
    with pytest.raises(RuntimeError, match=r"The expanded size of the tensor \(6\) must match"):
        tritorch.addmm(make((4,), F, device)[0], a, make((4, 6), F, device)[0])
    with pytest.raises(TypeError):
        a @ 2.0


def test_mixed_devices():
    a, _ = make((3, 4), F, "cpu")
    b, _ = make((4, 2), F, "cuda")
    with pytest.raises(RuntimeError, match="expected all tensors to be on the same device, but found at least two "
                                           "devices"):
        a @ b


# ---- backward -----------------------------------------------------------------------------------------------------

def _grads(ra, rb, g):
    """float64 gradients of a @ b (NumPy matmul semantics, 1-D and broadcast handled)."""
    a2 = ra[None, :] if ra.ndim == 1 else ra
    b2 = rb[:, None] if rb.ndim == 1 else rb
    g2 = g
    if rb.ndim == 1:
        g2 = np.expand_dims(g2, -1)
    if ra.ndim == 1:
        g2 = np.expand_dims(g2, -2)
    ga = g2 @ np.swapaxes(b2, -1, -2)
    gb = np.swapaxes(a2, -1, -2) @ g2

    def reduce(x, shape):
        while x.ndim > len(shape):
            x = x.sum(0)
        return x.sum(axis=tuple(i for i, s in enumerate(shape) if s == 1 and x.shape[i] != 1), keepdims=True)
    ga = reduce(ga, a2.shape).reshape(ra.shape)
    gb = reduce(gb, b2.shape).reshape(rb.shape)
    return ga, gb


@pytest.mark.parametrize("sa,sb,la", [
    ((17, 23), (23, 19), "contiguous"), ((17, 23), (23, 19), "transposed"), ((2, 1, 5, 7), (3, 7, 4), "contiguous"),
    ((2, 5, 7), (7, 4), "contiguous"), ((5, 7), (2, 7, 4), "transposed"), ((7,), (7, 4), "contiguous"),
    ((5, 7), (7,), "strided"), ((7,), (7,), "contiguous"), ((7,), (2, 7, 4), "contiguous")])
@pytest.mark.parametrize("dtype", [tritorch.float32, tritorch.float64])
def test_matmul_backward(device, sa, sb, la, dtype):
    a, ra = make(sa, dtype, device, la, seed=32, requires_grad=True)
    b, rb = make(sb, dtype, device, seed=33, requires_grad=True)
    out = a @ b
    g, rg = make(out.shape, dtype, device, seed=34)
    out.backward(g)
    ga, gb = _grads(ra, rb, rg)
    k = sa[-1]
    _close(a.grad, ga, dtype, 4 * k)
    _close(b.grad, gb, dtype, 4 * k)


def test_addmm_backward(device):
    x, rx = make((1, 19), F, device, seed=35, requires_grad=True)
    a, ra = make((13, 21), F, device, seed=36, requires_grad=True)
    b, rb = make((21, 19), F, device, "transposed", seed=37, requires_grad=True)
    out = tritorch.addmm(x, a, b, beta=0.5, alpha=3.0)
    assert out.grad_fn.name() == "AddmmBackward0"
    g, rg = make((13, 19), F, device, seed=38)
    out.backward(g)
    _close(x.grad, 0.5 * rg.sum(0, keepdims=True), F, 13)
    _close(a.grad, 3.0 * rg @ rb.T, F, 60)
    _close(b.grad, 3.0 * ra.T @ rg, F, 40)


def test_grad_fn_names(device):
    a, _ = make((3, 4), F, device, requires_grad=True)
    b, _ = make((4, 5), F, device, requires_grad=True)
    assert (a @ b).grad_fn.name() == "MmBackward0"
    assert tritorch.bmm(a[None], b[None]).grad_fn.name() == "BmmBackward0"


def test_matmul_double_backward(device):
    """create_graph: the backward is made of matmul calls, so it is differentiable again.
    L = sum(w * (a @ b)); gA = w @ b^T; d/d b of sum(v * gA) = (v^T w)^T... checked against NumPy."""
    dt = tritorch.float64
    a, ra = make((5, 6), dt, device, seed=39, requires_grad=True)
    b, rb = make((6, 4), dt, device, seed=40, requires_grad=True)
    w, rw = make((5, 4), dt, device, seed=41)
    v, rv = make((5, 6), dt, device, seed=42)
    (ga,) = tritorch.autograd.grad((w * (a @ b)).sum(), [a], create_graph=True)
    assert_close(ga, rw @ rb.T)
    (v * ga).sum().backward()
    # sum(v * (w @ b^T)) = sum over (i, k) v_ik sum_j w_ij b_kj  ->  d/db = v^T w
    assert_close(b.grad, rv.T @ rw)
    assert a.grad is None


# ---- GPU only -----------------------------------------------------------------------------------------------------

@pytest.mark.gpu
def test_gpu_tf32_and_bf16():
    a, ra = make((256, 320), F, "cuda", seed=43)
    b, rb = make((320, 192), F, "cuda", "transposed", seed=44)
    assert_close(a @ b, ra @ rb, F, rtol=1e-5, atol=1e-4)          # default "highest": full fp32
    tritorch.set_float32_matmul_precision("high")
    try:
        assert_close(a @ b, ra @ rb, F, rtol=1e-2, atol=5e-2)     # TF32: 10-bit mantissa inputs
    finally:
        tritorch.set_float32_matmul_precision("highest")
    for dt, (rt, at) in ((tritorch.bfloat16, (2e-2, 0.2)), (tritorch.float16, (2e-3, 2e-2))):
        x, rx = make((2, 200, 320), dt, "cuda", seed=45)
        y, ry = make((320, 130), dt, "cuda", "transposed", seed=46)
        assert_close(x @ y, rx @ ry, dt, rtol=rt, atol=at)


@pytest.mark.gpu
def test_gpu_float64_and_large():
    a, ra = make((130, 257), tritorch.float64, "cuda", seed=47)
    b, rb = make((257, 70), tritorch.float64, "cuda", seed=48)
    assert_close(a @ b, ra @ rb, tritorch.float64, atol=1e-11)
    x, rx = make((1024, 1024), tritorch.float16, "cuda", seed=49)
    y, ry = make((1024, 1024), tritorch.float16, "cuda", "transposed", seed=50)
    assert_close(x @ y, rx @ ry, tritorch.float16, rtol=2e-3, atol=5e-2)


def test_gradients_laid_out_as_their_operands():
    """Attention written in ops: q, k, v split from one projection and head-split by views. Each product's gradient
    follows its operand's memory order (``empty_ordered``), so the views' backwards (transpose, reshape) need no copy
    and split's backward is the one batched cat: no pointwise copy in the backward. Gradients equal float64 NumPy's;
    a contiguous operand's gradient stays contiguous."""
    b, t, h, dh = 2, 5, 3, 4
    d = h * dh
    x, rx = make((b, t, 3 * d), tritorch.float64, "cuda", seed=7, requires_grad=True)
    q, k, v = (z.reshape(b, t, h, dh).transpose(1, 2) for z in x.split(d, dim=-1))
    y = ((q @ k.transpose(-2, -1)) @ v).transpose(1, 2).reshape(b, t, d)
    g = np.random.default_rng(8).uniform(-1, 1, (b, t, d))
    with profile() as prof:
        y.backward(tritorch.tensor(g, device="cuda"))
    assert prof.kernel_launches("_pointwise_kernel") == 0
    assert prof.kernel_launches("_cat_kernel") == 1
    rq, rk, rv = (z.reshape(b, t, h, dh).transpose(0, 2, 1, 3) for z in np.split(rx, 3, axis=-1))
    s = rq @ rk.transpose(0, 1, 3, 2)
    gy = g.reshape(b, t, h, dh).transpose(0, 2, 1, 3)
    gs = gy @ rv.transpose(0, 1, 3, 2)
    gq, gk, gv = gs @ rk, (rq.transpose(0, 1, 3, 2) @ gs).transpose(0, 1, 3, 2), s.transpose(0, 1, 3, 2) @ gy
    want = np.concatenate([z.transpose(0, 2, 1, 3).reshape(b, t, d) for z in (gq, gk, gv)], -1)
    assert_close(x.grad, want)
    a, ra = make((6, 7), tritorch.float32, "cuda", seed=9, requires_grad=True)
    w, rw = make((5, 7), tritorch.float32, "cuda", seed=10, requires_grad=True)
    (a @ w.t()).sum().backward()
    assert a.grad.is_contiguous() and w.grad.is_contiguous()
    assert_close(a.grad, np.ones((6, 5)) @ rw, F)
    assert_close(w.grad, (ra.T @ np.ones((6, 5))).T, F)


def test_empty_ordered_follows_the_stride_order():
    dev = tritorch.device("cuda")
    t = empty_ordered((2, 3, 4, 5), F, dev, (60, 5, 15, 1))          # dims 0, 2, 1, 3, outermost first
    assert t.stride() == (60, 5, 15, 1)
    assert empty_ordered((2, 3), F, dev, (1, 2)).stride() == (1, 2)
    assert empty_ordered((2, 1, 3), F, dev, (3, 3, 1)).stride() == (3, 3, 1)
    assert empty_ordered((4, 0), F, dev, (1, 4)).stride() == (1, 4)
