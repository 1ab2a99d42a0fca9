"""Every candidate configuration of every tunable kernel, forced once through the kernel (Triton's interpreter on
CI, the GPU with TRITORCH_TEST_GPU=1) and compared with the float64 NumPy reference.

A kernel is forced with ``tritorch.autotune.force(name, config)`` through the public op. Each tunable kernel needs
an entry in ``EXAMPLES`` (small inputs: partial tiles, odd sizes, a non-contiguous operand); a kernel that declares
a Tunable without one fails ``test_every_tunable_kernel_has_an_example``.
"""
import math

import numpy as np
import pytest

import tritorch
from tritorch import autotune as at
from tritorch.compiler import codegen  # noqa: F401  (registers the generated kernels' tunables, "compiled_*")
from tritorch.kernels import matmul as MM
from helpers import assert_close, make

F = tritorch.float32


def _forced(name, cfg, fn):
    """``fn()`` with kernel ``name`` forced to ``cfg``, checking the kernel really ran with it."""
    with at.force(name, cfg):
        out = fn()
    assert [c for (k, _), c in at.seen().items() if k == name][-1] == cfg
    return out


def _matmul_example(cfg):
    """(20, 37) @ (37, 24) with a transposed right operand and a bias: partial tiles in M, N and K."""
    a, ra = make((20, 37), F, "cuda", seed=1)
    b, rb = make((37, 24), F, "cuda", "transposed", seed=2)
    bias, rbias = make((24,), F, "cuda", seed=3)
    return _forced("matmul", cfg, lambda: tritorch.addmm(bias, a, b)), ra @ rb + rbias, 37


def _linear_example(cfg):
    """gelu(x @ W.T + b) for x (21, 19), W (23, 19): the fused epilogue over partial tiles."""
    from tritorch.kernels.linear import linear
    x, rx = make((21, 19), F, "cuda", seed=4)
    w, rw = make((23, 19), F, "cuda", seed=5)
    bias, rb = make((23,), F, "cuda", seed=6)
    z = rx @ rw.T + rb
    expected = 0.5 * z * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))
    return _forced("linear", cfg, lambda: linear(x, w, bias, activation="gelu")), expected, 19


def _linear_grad_example(cfg):
    """The gradients of x @ W.T + b (x (21, 19) transposed, W (23, 19), g (21, 23) strided) in one launch: partial
    tiles in both products and the bias sums; x.grad, W.grad and b.grad flattened and joined."""
    from tritorch.kernels.linear import linear
    x, rx = make((21, 19), F, "cuda", "transposed", seed=7, requires_grad=True)
    w, rw = make((23, 19), F, "cuda", seed=8, requires_grad=True)
    bias, _ = make((23,), F, "cuda", seed=9, requires_grad=True)
    g, rg = make((21, 23), F, "cuda", "strided", seed=10)

    def run():
        linear(x, w, bias).backward(g)
        return tritorch.cat([x.grad.flatten(), w.grad.flatten(), bias.grad])
    expected = np.concatenate([(rg @ rw).ravel(), (rg.T @ rx).ravel(), rg.sum(0)])
    return _forced("linear_grad", cfg, run), expected, 23


def _conv_case(kind, cfg, x_shape, w_shape, layout, stride, padding, dilation, groups):
    """conv2d with kernel ``conv_<kind>`` forced, full-fp32 products (no TF32): the output ("fwd"), the input
    gradient ("dgrad") or the weight gradient ("wgrad") against test_conv's float64 reference."""
    from test_conv import ref_conv2d
    from tritorch.kernels import conv as KC
    x, rx = make(x_shape, F, "cuda", layout, seed=11, requires_grad=kind == "dgrad")
    w, rw = make(w_shape, F, "cuda", seed=12, requires_grad=kind == "wgrad")
    b, rb = make((w_shape[0],), F, "cuda", seed=13)
    geo = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    prev, KC.ALLOW_TF32[0] = KC.ALLOW_TF32[0], False
    try:
        def run():
            y = tritorch.conv2d(x, w, b, **geo)
            if kind == "fwd":
                return y
            g = tritorch.tensor(np.asarray(rg), dtype=F, device="cuda")
            y.backward(g)
            return x.grad if kind == "dgrad" else w.grad
        ry = ref_conv2d(rx, rw, rb, **geo)
        rg = np.random.default_rng(14).uniform(-1, 1, ry.shape)
        out = _forced(f"conv_{kind}", cfg, run)
    finally:
        KC.ALLOW_TF32[0] = prev
    _, rgx, rgw, _ = ref_conv2d(rx, rw, rb, **geo, g=rg)
    expected, k = {"fwd": (ry, w_shape[1] * w_shape[2] * w_shape[3]),
                   "dgrad": (rgx, w_shape[0] // groups * w_shape[2] * w_shape[3]),
                   "wgrad": (rgw, ry.shape[0] * ry.shape[2] * ry.shape[3])}[kind]
    return out, expected, k


def _conv_fwd_example(cfg):
    """x (2, 3, 7, 6) strided, w (5, 3, 3, 2), stride (2, 1), padding 1: M = 56, N = 5, K = 18 (flattened taps)."""
    return _conv_case("fwd", cfg, (2, 3, 7, 6), (5, 3, 3, 2), "strided", (2, 1), 1, 1, 1)


def _conv_dgrad_example(cfg):
    """The input gradient of a grouped (2), stride-2 convolution: every stride phase, partial tiles."""
    return _conv_case("dgrad", cfg, (1, 4, 5, 5), (6, 2, 3, 3), "contiguous", (2, 1), 1, 1, 2)


def _conv_wgrad_example(cfg):
    """The weight gradient of a dilated (2) convolution over 2 x 5 x 5 pixels (partial tiles in M, N and K)."""
    return _conv_case("wgrad", cfg, (2, 3, 7, 7), (5, 3, 2, 2), "contiguous", 1, 0, 2, 1)


def _conv_pool_fwd_example(cfg):
    """max_pool2d(relu(conv2d(x, w, b, padding=1)), 2) in one kernel, x (2, 3, 7, 6) transposed, w (5, 3, 3, 2),
    full-fp32 products: pooled M = 18, N = 5, K = 18, partial windows dropped; the pooled maxima against float64."""
    from test_conv import ref_conv2d
    from tritorch.kernels import conv as KC
    from tritorch.kernels.conv_pool import conv2d_max_pool2d
    x, rx = make((2, 3, 7, 6), F, "cuda", "transposed", seed=17)
    w, rw = make((5, 3, 3, 2), F, "cuda", seed=18)
    b, rb = make((5,), F, "cuda", seed=19)
    h = np.maximum(ref_conv2d(rx, rw, rb, 1, 1), 0)[:, :, :6, :6]
    prev, KC.ALLOW_TF32[0] = KC.ALLOW_TF32[0], False
    try:
        out = _forced("conv_pool_fwd", cfg, lambda: conv2d_max_pool2d(x, w, b, padding=1, activation="relu",
                                                                      kernel_size=2))
    finally:
        KC.ALLOW_TF32[0] = prev
    return out, h.reshape(2, 5, 3, 2, 3, 2).max((3, 5)), 18


def _softmax_fwd_example(cfg):
    """softmax over rows of 37 of a strided (5, 37) tensor: a partial block, several rows a program."""
    x, rx = make((5, 37), F, "cuda", "strided", seed=21)
    e = np.exp(rx - rx.max(1, keepdims=True))
    return _forced("softmax_fwd", cfg, lambda: tritorch.softmax(x, 1)), e / e.sum(1, keepdims=True), 37


def _softmax_bwd_example(cfg):
    """The log_softmax backward along dim 0 of a (23, 6) tensor: rows 6 apart in memory."""
    x, rx = make((23, 6), F, "cuda", seed=22, requires_grad=True)
    g, rg = make((23, 6), F, "cuda", seed=23)
    z = rx - rx.max(0, keepdims=True)
    y = z - np.log(np.exp(z).sum(0, keepdims=True))

    def run():
        tritorch.log_softmax(x, 0).backward(g)
        return x.grad
    return _forced("softmax_bwd", cfg, run), rg - np.exp(y) * rg.sum(0, keepdims=True), 23


def _reduce_rows_example(cfg):
    """var over rows of 37 strided elements of a (7, 37) tensor (the mean pass, then the centered squares)."""
    x, rx = make((7, 37), F, "cuda", "strided", seed=31)
    return _forced("reduce_rows", cfg, lambda: x.var(1)), rx.var(1, ddof=1), 37


def _reduce_mid_example(cfg):
    """sum over the middle dim of a (3, 13, 5) tensor: columns 5 apart, several chunks of R for small tiles."""
    x, rx = make((3, 13, 5), F, "cuda", seed=32)
    return _forced("reduce_mid", cfg, lambda: x.sum(1)), rx.sum(1), 13


def _elementwise_unary_example(cfg):
    """exp of a transposed (9, 13) tensor: the strided path, a partial last block."""
    x, rx = make((9, 13), F, "cuda", "transposed", seed=41)
    return _forced("elementwise_unary", cfg, lambda: tritorch.exp(x)), np.exp(rx), 1


def _cat_example(cfg):
    """Three pieces of unequal odd widths along the middle dim, one transposed: partial blocks, idle programs."""
    parts = [make((3, w, 5), F, "cuda", "transposed" if w == 7 else "contiguous", seed=50 + w) for w in (1, 7, 4)]
    return (_forced("cat", cfg, lambda: tritorch.cat([t for t, _ in parts], 1)),
            np.concatenate([r for _, r in parts], 1), 1)


def _elementwise_binary_example(cfg):
    """x.mul_(y) in place on a contiguous (7, 11) tensor, y broadcast from (11,): the in-place path (never timed)."""
    x, rx = make((7, 11), F, "cuda", seed=42)
    y, ry = make((11,), F, "cuda", seed=43)
    return _forced("elementwise_binary", cfg, lambda: x.mul_(y)), rx * ry, 1


def _elementwise_where_example(cfg):
    """where(x > 0, x, y) over 53 contiguous elements."""
    x, rx = make((53,), F, "cuda", seed=44)
    y, ry = make((53,), F, "cuda", seed=45)
    return _forced("elementwise_where", cfg, lambda: tritorch.where(x > 0, x, y)), np.where(rx > 0, rx, ry), 1


def _compiled_pointwise_example(cfg):
    """A kernel generated by tritorch.compile, tanh(a * 3) - b over 53 elements with a non-contiguous b."""
    a, ra = make((53,), F, "cuda", seed=46)
    b, rb = make((53,), F, "cuda", "strided", seed=47)
    f = tritorch.compile(lambda a, b: tritorch.tanh(a * 3.0) - b)
    f(a, b)                                 # the first call captures; later calls run the fused kernel
    return _forced("compiled_pointwise", cfg, lambda: f(a, b)), np.tanh(ra * 3.0) - rb, 1


def _compiled_reduce_example(cfg):
    """A generated reduction: sum over the last dim of sigmoid(a) * b, a (7, 45) strided, b (45,) broadcast."""
    a, ra = make((7, 45), F, "cuda", "strided", seed=48)
    b, rb = make((45,), F, "cuda", seed=49)
    f = tritorch.compile(lambda a, b: (tritorch.sigmoid(a) * b).sum(-1))
    f(a, b)
    return _forced("compiled_reduce", cfg, lambda: f(a, b)), (rb / (1 + np.exp(-ra))).sum(-1), 45


def _compiled_reduce_leading_example(cfg):
    """A generated reduction over the leading dim: mean over 45 rows of a * b, a (45, 7) transposed, b (7,)."""
    a, ra = make((45, 7), F, "cuda", "transposed", seed=50)
    b, rb = make((7,), F, "cuda", seed=51)
    f = tritorch.compile(lambda a, b: (a * b).mean(0))
    f(a, b)
    return _forced("compiled_reduce_leading", cfg, lambda: f(a, b)), (ra * rb).mean(0), 45


def _compiled_softmax_example(cfg):
    """A generated softmax: softmax over the last dim of a * 0.5 + b, a (6, 53), b (53,) broadcast."""
    a, ra = make((6, 53), F, "cuda", seed=52)
    b, rb = make((53,), F, "cuda", seed=53)
    f = tritorch.compile(lambda a, b: tritorch.nn.functional.softmax(a * 0.5 + b, -1))
    f(a, b)
    z = ra * 0.5 + rb
    e = np.exp(z - z.max(-1, keepdims=True))
    return _forced("compiled_softmax", cfg, lambda: f(a, b)), e / e.sum(-1, keepdims=True), 53


# kernel name -> fn(config) -> (tritorch result, float64 NumPy reference, reduction length for the tolerance)
EXAMPLES = {"matmul": _matmul_example, "linear": _linear_example, "linear_grad": _linear_grad_example,
            "conv_fwd": _conv_fwd_example, "conv_pool_fwd": _conv_pool_fwd_example,
            "conv_dgrad": _conv_dgrad_example, "conv_wgrad": _conv_wgrad_example,
            "softmax_fwd": _softmax_fwd_example, "softmax_bwd": _softmax_bwd_example,
            "reduce_rows": _reduce_rows_example, "reduce_mid": _reduce_mid_example,
            "cat": _cat_example, "elementwise_unary": _elementwise_unary_example,
            "elementwise_binary": _elementwise_binary_example,
            "elementwise_where": _elementwise_where_example, "compiled_pointwise": _compiled_pointwise_example,
            "compiled_reduce": _compiled_reduce_example, "compiled_reduce_leading": _compiled_reduce_leading_example,
            "compiled_softmax": _compiled_softmax_example}


def _kernels():
    """{name: candidates} of every tunable kernel of tritorch."""
    return {n: t.configs for n, t in at.REGISTRY.items() if not n.startswith("test.")}


CASES = [(name, i, cfg) for name, cfgs in sorted(_kernels().items()) for i, cfg in enumerate(cfgs)]


def test_every_tunable_kernel_has_an_example():
    missing = sorted(set(_kernels()) - set(EXAMPLES))
    assert not missing, f"add an example to tests/test_autotune_configs.py EXAMPLES for: {missing}"


@pytest.mark.parametrize("name, i, cfg", CASES, ids=[f"{n}-{i}" for n, i, _ in CASES])
def test_every_candidate_matches_numpy(name, i, cfg):
    if name not in EXAMPLES:
        pytest.fail(f"no example for tunable kernel {name!r}")
    out, expected, k = EXAMPLES[name](cfg)
    tol = 1e-6 * max(k, 1) + 1e-6 if not (tritorch.cuda.is_available() and not tritorch.cuda.is_interpreted()) \
        else 1e-4 * max(k, 1)
    assert_close(out, np.asarray(expected), F, rtol=tol, atol=tol)


def test_two_candidates_agree():
    """A forced config and the default give the same result (only speed may differ)."""
    first, expected, _ = _matmul_example(MM.CANDIDATES[0])
    last, _, _ = _matmul_example(MM.CANDIDATES[-1])
    assert_close(first, expected, F, rtol=1e-4, atol=1e-4)
    assert_close(last, first.cpu().numpy(), F, rtol=1e-4, atol=1e-4)
