"""Gradients of every differentiable op outside the elementwise family, one table of cases:

- ``test_gradcheck``: ``tritorch.autograd.gradcheck`` (float64 central differences) on cpu, the NumPy references;
- ``test_gradgradcheck``: second derivatives (create_graph=True) on cpu, for every case marked ``gg``;
- ``test_cuda_matches_cpu``: the same forward and backward on cuda (the Triton kernels, interpreted on CI) in float32
  against cpu in float64; ``test_cuda_double_backward`` likewise for the ``cuda_gg`` cases (the backward of the
  backward, with respect to the inputs and the grad_outputs).

Inputs are tiny (the interpreter pays per launch) but cover broadcasting, non-contiguous layouts (transposed,
strided), sizes that are not multiples of any block, 0-d and size-1 dims. Some reductions run on cuda with small
forced blocks so that the chunk loops and the partial edge blocks run too. Ops whose results are integers or bools
must refuse a gradient (``test_no_gradient_through_non_differentiable_outputs``).
"""
import math

import numpy as np
import pytest

import tritorch as torch
from tritorch.autograd import gradcheck, gradgradcheck
from tritorch.kernels.reduce import force_blocks
from helpers import assert_close, to_np

F64, F32 = torch.float64, torch.float32


def T(*shape, layout="contiguous", low=-1.0, high=1.0, values=None):
    """An input maker: ``make(device, dtype, seed)`` gives a leaf that requires grad, random in [low, high) (or the
    given ``values``), viewed in ``layout``: contiguous, transposed (the dims reversed) or strided (every other
    element of the last dim)."""
    def make(device, dtype, seed):
        if values is not None:
            base = np.asarray(values, dtype=np.float64)
        else:
            rng = np.random.default_rng(seed)
            base_shape = shape[::-1] if layout == "transposed" else \
                shape[:-1] + (2 * shape[-1],) if layout == "strided" else shape
            base = rng.uniform(low, high, size=base_shape)
        t = torch.tensor(base, dtype=dtype, device=device)
        if layout == "transposed":
            t = t.permute(*reversed(range(t.ndim)))
        elif layout == "strided":
            t = t[..., ::2]
        assert t._shape == tuple(shape) or values is not None
        return t.requires_grad_(True)
    return make


def idx(values, like):
    return torch.tensor(values, dtype=torch.int64, device=like.device)


def mask(values, like):
    return torch.tensor(values, dtype=torch.bool, device=like.device)


def _put(x, key, v):
    y = x.clone()
    y[key] = v
    return y


def _copy_into_view(x, s):
    y = x.clone()
    y[1:].copy_(s)
    return y


def _put_into_view(x, v):
    y = x.clone()
    y[1:][idx([1, 0], x)] = v
    return y


def _fill_row(x):
    y = x * 1
    y[0].fill_(2.0)
    return y


def _other_device(x):
    return x.to("cuda" if x.device.type == "cpu" else "cpu")


# (name, fn, input makers, options). Options: gg (also gradgradcheck), cuda_gg (also the double backward on cuda),
# blocks (reduction block sizes forced on cuda, so that the chunk loops and partial blocks run), eps/atol/rtol.
R = dict(gg=True)
RC = dict(gg=True, cuda_gg=True)
ROW = dict(row=(2, 4))
MID = dict(mid=(4, 2))
CASES = [
    # ---- reductions -------------------------------------------------------------------------------------------------
    ("sum_all", lambda x: x.sum(), [T(3, 5, layout="transposed")], R),
    ("sum_dim", lambda x: x.sum(1), [T(4, 7)], dict(R, blocks=ROW)),
    ("sum_dim0_strided", lambda x: x.sum(0), [T(5, 3, layout="strided")], dict(R, blocks=MID)),
    ("sum_dims_keepdim", lambda x: x.sum((0, 2), keepdim=True), [T(2, 3, 5, layout="strided")], RC),
    ("sum_0d", lambda x: x.sum(), [T()], R),
    ("sum_size1", lambda x: x.sum(0), [T(1, 4)], R),
    ("sum_to_size", lambda x: x.sum_to_size(1, 4), [T(3, 4, layout="transposed")], R),
    ("mean_dim", lambda x: x.mean(0), [T(5, 3, layout="transposed")], RC),
    ("mean_all", lambda x: x.mean(), [T(2, 3, 4)], R),
    ("mean_dims", lambda x: x.mean((0, 2), keepdim=True), [T(3, 2, 5)], dict(R, blocks=MID)),
    ("mean_0d", lambda x: x.mean(), [T()], R),
    ("prod_dim", lambda x: x.prod(1), [T(3, 4, low=0.5, high=1.5)], dict(RC, blocks=ROW)),
    ("prod_all", lambda x: x.prod(), [T(2, 3, layout="transposed", low=0.5, high=1.5)], R),
    ("prod_keepdim", lambda x: x.prod(0, keepdim=True), [T(3, 5, layout="strided", low=-1.5, high=-0.5)], R),
    ("prod_zeros", lambda x: x.prod(1), [T(values=[[2.0, 0.0, 3.0], [0.0, 5.0, 0.0], [1.0, 2.0, 3.0]])], RC),
    ("prod_zeros_all", lambda x: x.prod(), [T(values=[[2.0, 0.0], [3.0, 4.0]])], R),
    ("max_dim", lambda x: x.max(1).values, [T(3, 5, layout="transposed")], dict(RC, blocks=ROW)),
    ("min_dim_keepdim", lambda x: x.min(0, keepdim=True)[0], [T(4, 3)], R),
    ("max_dim_0d", lambda x: x.max(0).values, [T()], R),
    ("max_all", lambda x: x.max(), [T(3, 4)], R),
    ("min_all", lambda x: x.min(), [T(2, 5, layout="strided")], R),
    ("amax_dims", lambda x: x.amax((0, 2)), [T(2, 3, 4, layout="strided")], dict(RC, blocks=MID)),
    ("amin_keepdim", lambda x: x.amin(1, keepdim=True), [T(3, 5)], R),
    # two-way ties: the even split equals the central difference (+eps moves the max, -eps does not); the gradient
    # jumps at a tie, so no gradgradcheck there
    ("amax_ties", lambda x: x.amax(1),
     [T(values=[[1.0, 3.0, 3.0, 2.0], [4.0, 0.0, -1.0, 4.0], [0.5, 0.25, 0.0, 0.125]])], {}),
    ("max_all_ties", lambda x: x.max(), [T(values=[[1.0, 3.0], [3.0, 2.0]])], {}),
    ("amin_0d", lambda x: x.amin(), [T()], R),
    ("var_dim", lambda x: x.var(1), [T(3, 5)], dict(RC, blocks=ROW)),
    ("var_all", lambda x: x.var(), [T(2, 3, layout="transposed")], R),
    ("var_correction0", lambda x: x.var((0, 2), correction=0), [T(2, 3, 3)], R),
    ("var_correction2", lambda x: x.var(0, correction=2, keepdim=True), [T(5, 2, layout="strided")], R),
    ("std_dim", lambda x: x.std(0), [T(4, 3, layout="transposed")], R),
    ("std_all", lambda x: x.std(), [T(2, 4)], RC),
    ("std_unbiased_false", lambda x: x.std(1, unbiased=False, keepdim=True), [T(3, 4)], R),
    ("var_mean", lambda x: torch.var_mean(x, 1), [T(3, 4)], R),
    ("std_mean", lambda x: torch.std_mean(x, 0, correction=0), [T(3, 4)], R),
    ("logsumexp_dim", lambda x: x.logsumexp(1), [T(3, 5, layout="transposed", low=-3, high=3)], dict(RC, blocks=MID)),
    ("logsumexp_dims", lambda x: x.logsumexp((0, 1), keepdim=True), [T(2, 3, 2)], R),
    ("logsumexp_0d", lambda x: x.logsumexp(0), [T()], R),
    ("norm_fro", lambda x: x.norm(), [T(3, 4, layout="transposed")], R),
    ("norm2_dim", lambda x: x.norm(dim=1), [T(3, 5)], dict(RC, blocks=ROW)),
    ("norm1", lambda x: x.norm(1), [T(3, 4)], R),
    ("norm_inf_dim", lambda x: x.norm(math.inf, dim=1), [T(3, 4, layout="strided")], RC),
    ("norm_neginf", lambda x: x.norm(-math.inf), [T(2, 3)], R),
    ("norm3_keepdim", lambda x: x.norm(3, dim=0, keepdim=True), [T(3, 4)], R),
    ("norm1.5", lambda x: x.norm(1.5, dim=1), [T(2, 5)], R),
    ("norm0.5", lambda x: x.norm(0.5, dim=1), [T(3, 4, low=0.3, high=1.0)], R),
    ("norm_0d", lambda x: x.norm(), [T(low=0.5)], R),
    # ---- matrix products ------------------------------------------------------------------------------------------
    ("mm", lambda a, b: a.mm(b), [T(3, 5), T(5, 4, layout="transposed")], RC),
    ("mm_strided", lambda a, b: a @ b, [T(3, 4, layout="strided"), T(4, 17)], R),
    ("mm_size1", lambda a, b: a @ b, [T(1, 4), T(4, 1)], R),
    ("matmul_batch_broadcast", lambda a, b: a @ b, [T(2, 1, 3, 4), T(3, 4, 2, layout="transposed")], RC),
    ("matmul_batched_matrix", lambda a, b: a @ b, [T(2, 3, 4), T(4, 5)], R),
    ("matmul_matrix_batched", lambda a, b: a @ b, [T(3, 4), T(2, 4, 2)], R),
    ("matmul_1d_2d", lambda a, b: a @ b, [T(4), T(4, 3)], R),
    ("matmul_2d_1d", lambda a, b: a @ b, [T(3, 4, layout="transposed"), T(4)], R),
    ("matmul_1d_3d", lambda a, b: a @ b, [T(4), T(2, 4, 3)], R),
    ("matmul_1d_1d", lambda a, b: a @ b, [T(5), T(5)], R),
    ("bmm", lambda a, b: a.bmm(b), [T(2, 3, 4), T(2, 4, 5, layout="transposed")], R),
    ("addmm", lambda c, a, b: torch.addmm(c, a, b, beta=0.5, alpha=2.0), [T(5), T(3, 4), T(4, 5)], RC),
    ("addmm_col_bias", lambda c, a, b: torch.addmm(c, a, b), [T(3, 1), T(3, 4, layout="transposed"), T(4, 2)], R),
    ("addmm_beta0", lambda c, a, b: torch.addmm(c, a, b, beta=0), [T(3, 2), T(3, 4), T(4, 2)], R),
    ("mv", lambda a, v: a.mv(v), [T(3, 4), T(4, layout="strided")], R),
    ("dot", lambda a, b: a.dot(b), [T(6, layout="strided"), T(6)], RC),
    # ---- softmax --------------------------------------------------------------------------------------------------
    ("softmax_last", lambda x: x.softmax(-1), [T(3, 5, low=-3, high=3)], R),
    ("softmax_dim0", lambda x: x.softmax(0), [T(4, 3, layout="transposed")], R),
    ("softmax_mid", lambda x: x.softmax(1), [T(2, 3, 4, layout="strided")], RC),
    ("softmax_0d", lambda x: x.softmax(0), [T()], R),
    ("softmax_size1", lambda x: x.softmax(1), [T(3, 1)], R),
    ("softmax_long_row", lambda x: x.softmax(1), [T(1, 70)], {}),
    ("log_softmax_last", lambda x: x.log_softmax(-1), [T(3, 5, layout="strided", low=-3, high=3)], RC),
    ("log_softmax_dim0", lambda x: x.log_softmax(0), [T(5, 2, layout="transposed")], R),
    ("log_softmax_0d", lambda x: x.log_softmax(0), [T()], R),
    ("log_softmax_long_row", lambda x: x.log_softmax(-1), [T(1, 70)], {}),
    # ---- views ----------------------------------------------------------------------------------------------------
    ("view", lambda x: x.view(4, 3) * x.view(4, 3), [T(3, 4)], R),
    ("view_flat", lambda x: x.view(-1), [T(2, 3)], R),
    ("reshape_copy", lambda x: x.reshape(-1), [T(3, 4, layout="transposed")], R),
    ("reshape_as", lambda x: x.reshape_as(torch.zeros(2, 6)), [T(3, 4, layout="strided")], R),
    ("flatten", lambda x: x.flatten(1), [T(2, 3, 2)], R),
    ("unflatten", lambda x: x.unflatten(1, (2, 3)), [T(2, 6)], R),
    ("ravel_0d", lambda x: x.ravel(), [T()], R),
    ("permute", lambda x: x.permute(2, 0, 1), [T(2, 3, 4)], R),
    ("transpose", lambda x: x.transpose(0, -1), [T(2, 3, 4, layout="strided")], R),
    ("t", lambda x: x.t(), [T(3, 2)], R),
    ("mT", lambda x: x.mT, [T(2, 3, 2)], R),
    ("T", lambda x: x.T, [T(2, 3, 2, layout="transposed")], R),
    ("movedim", lambda x: x.movedim(0, -1), [T(2, 3, 4)], R),
    ("squeeze", lambda x: x.squeeze(), [T(3, 1, 2, 1)], R),
    ("squeeze_dim", lambda x: x.squeeze(1), [T(3, 1, 2)], R),
    ("unsqueeze", lambda x: x.unsqueeze(1), [T(3, 2, layout="transposed")], R),
    ("unsqueeze_0d", lambda x: x.unsqueeze(0), [T()], R),
    ("expand", lambda x: x.expand(3, 4), [T(3, 1)], R),
    ("expand_new_dims", lambda x: x.expand(2, 3, 4), [T(4, layout="strided")], R),
    ("expand_0d", lambda x: x.expand(2, 3), [T()], R),
    ("broadcast_to", lambda x: torch.broadcast_to(x, (2, 3, 4)), [T(3, 1)], R),
    ("as_strided", lambda x: x.as_strided((3, 2), (1, 3), 1), [T(12)], R),
    ("as_strided_overlap", lambda x: x.as_strided((3, 3), (1, 1)), [T(6)], R),
    ("as_strided_overlap_2d", lambda x: x.as_strided((2, 2, 2), (3, 2, 1), 1), [T(2, 4)], R),
    ("as_strided_stride0", lambda x: x.as_strided((2, 3), (0, 2)), [T(2, 3)], R),
    ("narrow", lambda x: x.narrow(1, 1, 3), [T(3, 5)], R),
    ("select", lambda x: x.select(0, -1), [T(3, 4, layout="transposed")], R),
    ("unbind", lambda x: x.unbind(1), [T(2, 3)], R),
    ("split_size", lambda x: x.split(2, 1), [T(2, 5)], R),
    ("split_sections", lambda x: x.split([1, 3, 1], 0), [T(5, 2, layout="strided")], R),
    ("chunk", lambda x: x.chunk(3, -1), [T(2, 7)], R),
    ("getitem_basic", lambda x: x[1:, ::2], [T(3, 5)], R),
    ("getitem_ellipsis_none", lambda x: x[..., None, 1], [T(2, 3, 4, layout="transposed")], R),
    ("getitem_int", lambda x: x[-1], [T(3, 4, layout="strided")], R),
    # ---- indexing -------------------------------------------------------------------------------------------------
    ("getitem_repeated", lambda x: x[idx([0, 2, 0, 0], x)], [T(3, 4)], RC),
    ("getitem_two_tensors_apart", lambda x: x[idx([1, 0, 1], x), :, idx([3, 3, 0], x)], [T(2, 3, 4)], R),
    ("getitem_2d_index", lambda x: x[:, idx([[0, 2], [2, 2]], x)], [T(2, 3, layout="transposed")], R),
    ("getitem_slice_and_list", lambda x: x[1:, [0, 0, 2]], [T(3, 4, layout="strided")], R),
    ("getitem_bool_mask", lambda x: x[mask([[True, False, True], [False, False, True]], x)], [T(2, 3)], R),
    ("setitem_tensor_index", lambda x, v: _put(x, idx([0, 2], x), v), [T(3, 4), T(2, 4)], R),
    ("setitem_broadcast_value", lambda x, v: _put(x, (slice(1, None), slice(None, None, 2)), v), [T(3, 5), T(3)], R),
    ("setitem_mask", lambda x, v: _put(x, mask([True, False, True], x), v), [T(3, 2), T(2)], R),
    ("setitem_into_view", _put_into_view, [T(3, 2), T(2)], RC),
    ("index_put_accumulate", lambda x, v: x.index_put((idx([1, 1, 0], x),), v, accumulate=True),
     [T(3, 2), T(3, 2, layout="transposed")], R),
    ("gather", lambda x: x.gather(0, idx([[1, 1, 0], [2, 0, 0]], x)), [T(3, 3, layout="transposed")], RC),
    ("scatter", lambda x, s: x.scatter(1, idx([[2, 0], [1, 2]], x), s), [T(2, 3), T(2, 3)], R),
    ("scatter_add_repeated", lambda x, s: x.scatter_add(0, idx([[1, 1, 0], [1, 0, 0]], x), s),
     [T(2, 3, layout="strided"), T(2, 3)], R),
    ("index_select", lambda x: x.index_select(1, idx([2, 0, 2], x)), [T(2, 3)], R),
    ("index_select_0d", lambda x: x.index_select(0, idx([0], x)), [T()], R),
    ("index_add", lambda x, s: x.index_add(1, idx([0, 0], x), s, alpha=3.0), [T(2, 3), T(2, 2)], R),
    ("masked_fill_value_tensor", lambda x, v: x.masked_fill(mask([[True], [False]], x), v), [T(2, 3), T()], R),
    ("masked_select", lambda x: x.masked_select(mask([True, False, True], x)), [T(2, 3, layout="transposed")], R),
    # ---- joins ----------------------------------------------------------------------------------------------------
    ("cat", lambda a, b, c: torch.cat([a, b, c], 1), [T(2, 1), T(2, 3, layout="transposed"), T(2, 2)], RC),
    ("cat_dim0_legacy_empty", lambda a, b: torch.cat([a, torch.zeros(0, dtype=a.dtype, device=a.device), b]),
     [T(2, 3, layout="strided"), T(1, 3)], R),
    ("stack", lambda a, b: torch.stack([a, b], 1), [T(2, 3), T(2, 3, layout="transposed")], R),
    ("stack_0d", lambda a, b: torch.stack([a, b]), [T(), T()], R),
    ("hstack", lambda a, b: torch.hstack([a, b]), [T(2), T(3)], R),
    ("vstack", lambda a, b: torch.vstack([a, b]), [T(3), T(2, 3)], R),
    ("dstack", lambda a, b: torch.dstack([a, b]), [T(2, 2), T(2, 2, 1)], R),
    ("column_stack", lambda a, b: torch.column_stack([a, b]), [T(3), T(3, 2)], R),
    ("atleast_3d", lambda a: torch.atleast_3d(a), [T()], R),
    # ---- copies ---------------------------------------------------------------------------------------------------
    ("contiguous", lambda x: x.contiguous(), [T(3, 4, layout="transposed")], R),
    ("clone", lambda x: x.clone(), [T(2, 3, layout="strided")], R),
    ("copy_broadcast", lambda x, s: x.clone().copy_(s), [T(3, 4), T(4)], R),
    ("copy_into_view", _copy_into_view, [T(3, 2), T(2, 2, layout="transposed")], R),
    ("fill_row", _fill_row, [T(2, 3)], R),
    ("to_dtype", lambda x: x.to(F32 if x.dtype is F64 else F64) * 1.0, [T(2, 3)],
     dict(gg=True, eps=1e-3, atol=1e-3, rtol=1e-3)),
    ("to_device", lambda x: _other_device(x).to(x.device), [T(2, 3, layout="transposed")], R),
]
GG = [c for c in CASES if c[3].get("gg")]
CUDA_GG = [c for c in CASES if c[3].get("cuda_gg")]


def _ids(cases):
    return [(c.values[0] if hasattr(c, "values") else c)[0] for c in cases]


def _inputs(makers, device, dtype):
    return tuple(m(device, dtype, seed) for seed, m in enumerate(makers))


def _outs(res):
    res = tuple(res) if isinstance(res, (tuple, list)) else (res,)
    return [o for o in res if isinstance(o, torch.Tensor) and o.dtype.is_floating_point]


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_gradcheck(case):
    name, fn, makers, opts = case
    kw = {k: opts[k] for k in ("eps", "atol", "rtol") if k in opts}
    assert gradcheck(fn, _inputs(makers, "cpu", F64), **kw)


@pytest.mark.parametrize("case", GG, ids=_ids(GG))
def test_gradgradcheck(case):
    name, fn, makers, opts = case
    kw = {k: opts[k] for k in ("eps", "atol", "rtol") if k in opts}
    assert gradgradcheck(fn, _inputs(makers, "cpu", F64), **kw)


def _grad_outputs(outs, seed):
    rng = np.random.default_rng(seed)
    return [torch.tensor(rng.uniform(-1, 1, size=o._shape), dtype=o.dtype, device=o.device) for o in outs]


def _run(fn, makers, device, dtype, order):
    """Forward and the gradients of every input (``order`` 1); or the gradients, and the gradients of <grads, v>
    for random v with respect to the inputs and the grad_outputs (``order`` 2: the backward of the backward)."""
    ins = _inputs(makers, device, dtype)
    outs = _outs(fn(*ins))
    gos = [g.requires_grad_(order == 2) for g in _grad_outputs(outs, 123)]
    grads = torch.autograd.grad(outs, ins, gos, allow_unused=True, materialize_grads=True,
                                create_graph=order == 2)
    if order == 1:
        return outs, grads
    pairs = [(g, v) for g, v in zip(grads, _grad_outputs(grads, 7)) if g.requires_grad]
    total = sum(((g * v).sum() for g, v in pairs), torch.zeros((), dtype=dtype, device=device))
    return grads, torch.autograd.grad(total, ins + tuple(gos), allow_unused=True, materialize_grads=True)


def _compare(actual, expected, name):
    assert len(actual) == len(expected), name
    for k, (a, e) in enumerate(zip(actual, expected)):
        assert a._shape == e._shape, f"{name}[{k}]: shape {a._shape} != {e._shape}"
        assert_close(a, to_np(e), dtype=F32, rtol=1e-4, atol=1e-5, msg=f"{name}[{k}]")


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_cuda_matches_cpu(case):
    name, fn, makers, opts = case
    with force_blocks(**opts.get("blocks", {})):
        outs, grads = _run(fn, makers, "cuda", F32, 1)
    ref_outs, ref_grads = _run(fn, makers, "cpu", F64, 1)
    _compare(outs, ref_outs, name + " forward")
    _compare(grads, ref_grads, name + " grad")


@pytest.mark.parametrize("case", CUDA_GG, ids=_ids(CUDA_GG))
def test_cuda_double_backward(case):
    name, fn, makers, opts = case
    with force_blocks(**opts.get("blocks", {})):
        grads, gg = _run(fn, makers, "cuda", F32, 2)
    ref_grads, ref_gg = _run(fn, makers, "cpu", F64, 2)
    _compare(grads, ref_grads, name + " grad")
    _compare(gg, ref_gg, name + " double grad")


NON_DIFFERENTIABLE = [
    ("argmax", lambda x: x.argmax(1)),
    ("argmin", lambda x: x.argmin()),
    ("max_indices", lambda x: x.max(1).indices),
    ("min_indices_as_float", lambda x: x.min(0)[1].to(F64)),
    ("all", lambda x: x.all()),
    ("any", lambda x: x.any(1)),
    ("nonzero", lambda x: x.nonzero()),
    ("argwhere", lambda x: torch.argwhere(x)),
]


@pytest.mark.parametrize("case", NON_DIFFERENTIABLE, ids=_ids(NON_DIFFERENTIABLE))
def test_no_gradient_through_non_differentiable_outputs(case, device):
    """Integer and bool results carry no history: asking for a gradient through them is an error, never a silent
    zero."""
    x = T(2, 3)(device, F64, 0)
    out = case[1](x)
    assert not out.requires_grad and out.grad_fn is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        torch.autograd.grad(out.sum() if out.dtype.is_floating_point else out, x)
    with pytest.raises(RuntimeError, match="does not require grad"):
        out.to(F64).sum().backward()


@pytest.mark.parametrize("op", ["setitem", "masked_fill", "masked_fill_", "to"])
def test_cpu_scalar_into_cuda_keeps_its_gradient(op):
    """A 0-d cpu tensor may be used as the value written into a cuda tensor; its gradient comes back to the cpu."""
    v = torch.tensor(2.0, dtype=F64, requires_grad=True)
    x = torch.zeros(3, 2, dtype=F64, device="cuda")
    m = torch.tensor([[True], [False], [True]], device="cuda")
    if op == "setitem":
        y = x.clone()
        y[[0, 2]] = v
    elif op == "masked_fill":
        y = x.masked_fill(m, v)
    elif op == "masked_fill_":
        y = x.clone().masked_fill_(m, v)
    else:
        y = v.to("cuda") * x.add(1.0)
    y.sum().backward()
    assert v.grad.device.type == "cpu"
    assert_close(v.grad, np.array(4.0 if op != "to" else 6.0), dtype=F64)


def test_as_strided_outside_its_input_refuses_a_gradient(device):
    x = T(6)(device, F64, 0)
    y = x[2:].as_strided((3,), (2,), 0)                 # reads x[0], x[2], x[4]: storage before x[2:]
    assert_close(y, to_np(x)[::2], dtype=F64)
    with pytest.raises(NotImplementedError, match=r"as_strided backward: .*outside its input of shape \[4\]"):
        y.sum().backward()


# ---- regressions of the fuzzing report (issue 14): elementwise gradients at NaN ----------------------------------

@pytest.mark.parametrize("create_graph", [False, True])
def test_maximum_minimum_gradient_at_nan_and_ties(device, create_graph):
    """PyTorch's rule: a tie splits the gradient evenly, otherwise an input gets it unless it lost the comparison,
    so where either input is NaN both get it (never 0 to the NaN input)."""
    nan = math.nan
    for dtype in (F32, F64):
        x = torch.tensor([nan, 1.0, nan, 2.0, 1.0], dtype=dtype, device=device, requires_grad=True)
        y = torch.tensor([1.0, nan, nan, 2.0, 3.0], dtype=dtype, device=device, requires_grad=True)
        g = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], dtype=dtype, device=device)
        for fn, gx, gy in ((torch.maximum, [1, 2, 3, 2, 0], [1, 2, 3, 2, 5]),
                           (torch.minimum, [1, 2, 3, 2, 5], [1, 2, 3, 2, 0])):
            ax, ay = torch.autograd.grad(fn(x, y), (x, y), g, create_graph=create_graph)
            assert_close(ax, np.array(gx, dtype=np.float64), dtype=dtype, msg=fn.__name__)
            assert_close(ay, np.array(gy, dtype=np.float64), dtype=dtype, msg=fn.__name__)
        (ax,) = torch.autograd.grad(torch.maximum(x[:2], torch.tensor(2.0, dtype=dtype, device=device)).sum(), x)
        assert_close(ax, np.array([1.0, 0.0, 0.0, 0.0, 0.0]), dtype=dtype)


@pytest.mark.parametrize("create_graph", [False, True])
def test_clamp_hardtanh_gradient_at_nan(device, create_graph):
    """clamp passes the gradient where min < x < max (none to a NaN input, none at all with a NaN bound); hardtanh
    zeroes it only on and beyond its bounds, so a NaN input gets it (PyTorch's rules)."""
    nan = math.nan
    nnF = torch.nn.functional
    for dtype in (F32, F64):
        def grad(fn):
            x = torch.tensor([-1.0, 0.5, 2.0, nan, 0.0, 1.0], dtype=dtype, device=device, requires_grad=True)
            (gx,) = torch.autograd.grad(fn(x).sum(), x, create_graph=create_graph)
            return gx
        assert_close(grad(lambda t: t.clamp(0.0, 1.0)), np.array([0, 1, 0, 0, 0, 0.0]), dtype=dtype)
        assert_close(grad(lambda t: t.clamp_min(0.0)), np.array([0, 1, 1, 0, 0, 1.0]), dtype=dtype)
        assert_close(grad(lambda t: nnF.hardtanh(t, 0.0, 1.0)), np.array([0, 1, 0, 1, 0, 0.0]), dtype=dtype)
        assert_close(grad(nnF.relu6), np.array([0, 1, 1, 1, 0, 1.0]), dtype=dtype)
        assert_close(grad(lambda t: t.clamp(min=nan)), np.zeros(6), dtype=dtype)
        assert_close(grad(lambda t: t.clamp(max=nan)), np.zeros(6), dtype=dtype)
