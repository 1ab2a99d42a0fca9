"""Record the kernel launches tritorch makes on a GPU, without a GPU and without running them.

Run in a process with ``TRITORCH_INTERPRET=1`` (host memory for ``cuda`` tensors): every ``kernels`` module's
``INTERPRET`` flag is turned off so that host code takes its GPU paths (GPU block sizes, bf16 handed over as bf16),
and Triton's interpreted launch is replaced by a recorder that keeps (kernel, arguments, constexprs, warps, stages)
and runs nothing. The workloads below call the public API in float32, float16 and bfloat16 (float64 where a kernel
has a float64 path), forward and backward; each tunable kernel of the workload's own family
(``CANDIDATE_FAMILIES``) picked on the way is then run again with every candidate its pruning rule keeps for that
key (``autotune.force``), tagged as a candidate.

    TRITORCH_INTERPRET=1 python -m tritorch.compilecheck.record OUT.json
"""
import contextlib
import importlib
import inspect
import json
import os
import pkgutil
import sys
import traceback

import numpy as np
import triton.language as tl
from triton.runtime import interpreter as _interp

import tritorch
import tritorch.nn.functional as F
from tritorch import autotune, kernels, nn
from tritorch.kernels import _common, amp as _amp, linear as _linear
from tritorch.kernels.attention import masked_attention
from tritorch.kernels.conv import EPILOGUE_ACTIVATIONS
from tritorch.kernels.conv_pool import conv2d_max_pool2d
from tritorch.kernels.linear_chain import linear_chain
from tritorch.kernels.norm import RowNorm
from tritorch._device import INTERPRET

__all__ = ["WORKLOADS", "record"]

DTYPES = ("float32", "float16", "bfloat16")


# ---- the workloads: representative shapes of each op family, forward and backward -------------------------------

def _t(shape, dtype, grad=False, low=-1.0, high=1.0):
    x = tritorch.tensor(np.random.default_rng(0).uniform(low, high, shape).astype(np.float32), device="cuda")
    x = x.to(dtype)
    if grad:
        x.requires_grad_(True)
    return x


def _bwd(y):
    y.float().sum().backward()


def w_matmul(dt):
    for m, n, k in ((8, 512, 256), (200, 300, 100), (512, 512, 512), (2048, 2048, 1024)):
        a, b = _t((m, k), dt, True), _t((k, n), dt, True)
        _bwd(a @ b)
    _bwd(tritorch.bmm(_t((4, 64, 32), dt, True), _t((4, 32, 48), dt, True)))
    tritorch.addmm(_t((96,), dt), _t((64, 80), dt), _t((80, 96), dt))


def w_linear(dt):
    for m, k, n in ((32, 784, 128), (512, 384, 1536), (4096, 1024, 4096)):
        x = _t((m, k), dt, True)
        lin = nn.Linear(k, n).to(device="cuda", dtype=dt)
        _bwd(F.gelu(lin(x)))
        _bwd(F.relu(lin(x)))
        _bwd(lin(x))
        if m == 512:            # x read by two layers: the second adds the first's grad_x in its kernel
            _bwd(lin(x) + lin(x))
        if m == 512:            # the residual epilogue (tritorch.compile's fused skip connection), with a y-derivative
            _bwd(_linear.linear(x, lin.weight, lin.bias, activation="relu", residual=_t((m, n), dt, True)))
        if m >= 512:            # dropout in the epilogue (tritorch.compile's), after gelu, and alone before a residual
            _bwd(_linear.linear(x, lin.weight, lin.bias, activation="gelu", dropout_p=0.1))
            _bwd(_linear.linear(x, lin.weight, lin.bias, dropout_p=0.1, residual=_t((m, n), dt, True)))
        if m == 512:            # a weight read through its transpose (tritorch.compile's x @ w + b as a linear)
            _bwd(_linear.linear(x, _t((k, n), dt, True).t(), lin.bias, activation="gelu"))
        if m == 512:            # a chain (tritorch.compile's): gelu and dropout's backward in grad_x's epilogue
            out = nn.Linear(n, k).to(device="cuda", dtype=dt)
            for last in ({}, {"dropout_p": 0.1}):     # the last layer's own dropout read by its products too
                last = dict(last, residual=_t((m, k), dt, True))
                _bwd(linear_chain(x, [lin.weight, lin.bias, out.weight, out.bias],
                                  [{"activation": "gelu", "dropout_p": 0.1}, last]))
            # without the first layer's dropout: in float32 its gelu is applied by the second layer's loads
            _bwd(linear_chain(x, [lin.weight, lin.bias, out.weight, out.bias], [{"activation": "gelu"}, {}]))
            # a layer (RMS) norm in the first layer's loads (tritorch.compile's fuse_norm_linear; float32): a
            # pre-norm block's MLP with its skip connection, a lone layer, without the norm's parameters
            nw, nb = _t((k,), dt, True), _t((k,), dt, True)
            _bwd(linear_chain(x, [lin.weight, lin.bias, out.weight, out.bias],
                              [{"activation": "gelu"}, {"residual": x}], norm=[nw, nb, 1e-5, False]))
            for norm in ([nw, nb, 1e-5, False], [nw, None, 1e-6, True], [None, None, 1e-5, False]):
                _bwd(linear_chain(x, [lin.weight, lin.bias], [{}], norm=norm))


def w_attention(dt):
    for (z, h, L, e), causal in (((2, 4, 128, 64), True), ((2, 2, 100, 32), False), ((1, 2, 64, 128), False)):
        q, k, v = (_t((z, h, L, e), dt, True) for _ in range(3))
        _bwd(F.scaled_dot_product_attention(q, k, v, is_causal=causal))
    q, k, v = (_t((2, 2, 64, 64), dt, True) for _ in range(3))
    _bwd(F.scaled_dot_product_attention(q, k, v, attn_mask=_t((64, 64), dt), dropout_p=0.1))
    hidden = tritorch.ones(64, 64, device="cuda").triu(1).bool()     # tritorch.compile's attention written in ops
    _bwd(masked_attention(q, k, v, hidden, 0.125))


def w_conv(dt):
    for n, c, hw, oc, ks, stride, groups in ((8, 3, 28, 16, 3, 1, 1), (4, 64, 56, 64, 3, 1, 1),
                                             (4, 64, 28, 128, 3, 2, 1), (4, 32, 16, 32, 3, 1, 32),
                                             (2, 256, 14, 256, 1, 1, 1)):
        x = _t((n, c, hw, hw), dt, True)
        for bias in (True, False):      # the weight gradient's launch sums the bias's too, or not
            conv = nn.Conv2d(c, oc, ks, stride=stride, padding=ks // 2, groups=groups, bias=bias)
            _bwd(conv.to(device="cuda", dtype=dt)(x))
    x = _t((2, 8, 9, 9), dt, True)
    _bwd(nn.ConvTranspose2d(8, 4, 3, stride=2).to(device="cuda", dtype=dt)(x))
    _bwd(nn.Conv1d(4, 8, 5).to(device="cuda", dtype=dt)(_t((2, 4, 50), dt, True)))
    conv = nn.Conv2d(3, 16, 3, padding=1).to(device="cuda", dtype=dt)      # tritorch.compile's relu epilogue
    _bwd(F.conv2d(_t((8, 3, 28, 28), dt, True), conv.weight, conv.bias, padding=1, activation="relu"))
    x, w = _t((4, 64, 28, 28), dt, True), _t((64, 64, 3, 3), dt, True)
    for act, channels, r in ((None, False, None), ("relu", False, x), ("relu", True, None), (None, True, x)):
        # its dropout (elements, channels) and residual epilogues, the activation saved for the backward
        _bwd(F.conv2d(x, w, None, padding=1, activation=act, dropout_p=0.25, dropout_channels=channels, residual=r))
    _bwd(F.conv2d(x, w, None, padding=1, residual=x))
    for x, w in ((_t((8, 3, 28, 28), dt), conv.weight), (_t((4, 16, 14, 14), dt), _t((32, 16, 3, 3), dt))):
        for act in EPILOGUE_ACTIVATIONS:     # tritorch.compile's conv + max pool in one forward kernel
            conv2d_max_pool2d(x, w, None, padding=1, activation=act, kernel_size=2)


def w_norm(dt):
    x = _t((8, 16, 12, 12), dt, True)
    _bwd(nn.BatchNorm2d(16).to(device="cuda", dtype=dt)(x))
    _bwd(nn.BatchNorm2d(4).to(device="cuda", dtype=dt)(_t((8, 4, 32, 32), dt, True)))   # split channels: Welford parts
    # (64, 64): all rows in one tile of the backward; (2, 8192): rows over a block
    for shape in ((64, 64), (64, 384), (16, 4096), (4, 50, 100), (2, 8192)):
        x = _t(shape, dt, True)
        _bwd(nn.LayerNorm(shape[-1]).to(device="cuda", dtype=dt)(x))
        _bwd((x + F.layer_norm(x, shape[-1:])) * 2.0)    # the skip connection's gradient added in dx's kernel
    x = _t((64, 384), dt, True)
    _bwd((x + nn.LayerNorm(384).to(device="cuda", dtype=dt)(x)) * 2.0)   # and with the weight and bias gradients
    for shape in ((64, 64), (16, 4096)):        # x needing no gradient (a data input): no dx
        _bwd(nn.LayerNorm(shape[-1]).to(device="cuda", dtype=dt)(_t(shape, dt)))
    _bwd(RowNorm.apply(_t((64, 384), dt), _t((384,), dt, True), None, 1e-6, 384, True))
    if dt in (tritorch.float16, tritorch.bfloat16):     # autocast's: the half input read in float32
        for shape in ((64, 384), (2, 8192)):
            x, w = _t(shape, dt, True), _t(shape[-1:], tritorch.float32, True)
            _bwd(F.layer_norm(x, shape[-1:], w, w, dtype=tritorch.float32))
        _bwd(F.group_norm(_t((4, 16, 8, 8), dt, True), 4, dtype=tritorch.float32))
    _bwd(nn.GroupNorm(4, 16).to(device="cuda", dtype=dt)(_t((4, 16, 8, 8), dt, True)))
    _bwd(F.instance_norm(_t((4, 16, 8, 8), dt, True)))
    for shape in ((64, 384), (2, 8192)):     # RMS (tritorch.compile's fuse_rms_norm): one block, and wider rows
        x, w = _t(shape, dt, True), _t(shape[-1:], dt, True)
        _bwd(RowNorm.apply(x, w, None, 1e-6, shape[-1], True))
        _bwd((x + RowNorm.apply(x, w.detach(), None, 1e-6, shape[-1], True)) * 2.0)   # dx alone, the skip's added


def w_softmax(dt):
    for shape in ((64, 10), (256, 1000), (8, 32768), (4, 70000), (16, 33, 7)):
        x = _t(shape, dt, True)
        _bwd(F.softmax(x, dim=-1))
        _bwd(F.log_softmax(x, dim=-1))
        if dt in (tritorch.float16, tritorch.bfloat16):     # autocast's: the half input read in float32
            _bwd(F.softmax(x, dim=-1, dtype=tritorch.float32))
            _bwd(F.log_softmax(x, dim=-1, dtype=tritorch.float32))
    _bwd(F.softmax(_t((16, 33, 7), dt, True), dim=1))


def w_loss(dt):
    for n, c in ((256, 10), (64, 1000), (16, 50000)):
        x = _t((n, c), dt, True)
        y = tritorch.tensor(np.arange(n) % c, device="cuda")
        _bwd(F.cross_entropy(x, y))
        _bwd(F.cross_entropy(x, y, label_smoothing=0.1))
        if dt in (tritorch.float16, tritorch.bfloat16):     # autocast's: the half logits read in float32
            _bwd(F.cross_entropy(x, y, dtype=tritorch.float32))
        _bwd(F.nll_loss(F.log_softmax(x, dim=-1), y))
        _bwd(F.cross_entropy(x, F.softmax(_t((n, c), dt), dim=-1)))
    _bwd(F.cross_entropy(_t((1, 50000), dt, True), tritorch.tensor([7], device="cuda")))   # one row: its mean in-kernel
    x, y = _t((2048, 10), dt, True), tritorch.tensor(np.arange(2048) % 10, device="cuda")
    _bwd(F.nll_loss(x, y))                          # more rows than one program holds: the mean in its own kernel
    _bwd(F.nll_loss(x, y, reduction="sum"))
    a, b = _t((64, 33), dt, True), _t((64, 33), dt)
    for fn in (F.mse_loss, F.l1_loss, F.smooth_l1_loss, F.huber_loss):
        _bwd(fn(a, b))
    _bwd(F.mse_loss(a, _t((64, 33), dt, True)))     # input and target both need grad: two outputs in one launch
    _bwd(F.binary_cross_entropy_with_logits(a, _t((64, 33), dt, False, 0.0, 1.0)))
    _bwd(F.kl_div(F.log_softmax(a, dim=-1), F.softmax(b, dim=-1), reduction="batchmean"))
    # last: it checks its input's values, which unrun launches leave unset
    _bwd(F.binary_cross_entropy(_t((64, 33), dt, True, 0.1, 0.9), _t((64, 33), dt, False, 0.0, 1.0)))


def w_elementwise(dt):
    x, y = _t((1000, 37), dt, True), _t((1000, 37), dt, True)
    z = x * y + x / (y.abs() + 1) - tritorch.exp(x) + tritorch.sqrt(y.abs())
    z = z + tritorch.tanh(x) + tritorch.sigmoid(y) + F.silu(x) + F.elu(y) + F.leaky_relu(x) + F.softplus(y)
    z = z + tritorch.where(x > y, x, y) + tritorch.maximum(x, y) + x.clamp(-0.5, 0.5) + x ** 2
    z = z + x[:, :1] * y[:1, :] + x.t().contiguous().t()
    _bwd(z)
    (x.detach() + 1).mul_(2).add_(y.detach())


def w_reduce(dt):
    x = _t((64, 1000), dt, True)
    _bwd(x.sum(dim=1) + x.mean(dim=1) + x.amax(dim=1) + x.var(dim=1))
    _bwd(x.sum(dim=0) + x.amax(dim=0))
    _bwd(_t((8, 300, 20), dt, True).sum(dim=1))
    x.detach().argmax(dim=1)
    x.detach().sum()


def w_pool(dt):
    x = _t((4, 8, 28, 28), dt, True)
    _bwd(F.max_pool2d(x, 2) .sum() + F.avg_pool2d(x, 3, stride=2).sum())
    _bwd(F.adaptive_avg_pool2d(x, 1).sum() + F.adaptive_max_pool2d(x, 5).sum())
    _bwd(F.max_pool1d(_t((4, 8, 50), dt, True), 3))
    w = _t((6, 8, 3, 3), dt, True)
    for act in EPILOGUE_ACTIVATIONS:          # the pooling backward with each activation's derivative
        _bwd(conv2d_max_pool2d(x, w, None, padding=1, activation=act, kernel_size=3, pool_stride=2))
    x = _t((2, 4, 9, 10, 11), dt, True)
    _bwd(F.max_pool3d(x, 2).sum() + F.avg_pool3d(x, 3, stride=2).sum())
    _bwd(F.adaptive_avg_pool3d(x, 2).sum() + F.adaptive_max_pool3d(x, 3).sum())


def w_resize(dt):
    x = _t((2, 4, 10, 10), dt, True)
    _bwd(F.interpolate(x, scale_factor=2, mode="nearest"))
    _bwd(F.interpolate(x, size=(15, 17), mode="bilinear", align_corners=False))
    _bwd(F.pad(x, (1, 2, 3, 4)))
    _bwd(F.pixel_shuffle(_t((2, 8, 5, 5), dt, True), 2))


def w_embedding(dt):
    idx = tritorch.tensor(np.arange(64) % 50, device="cuda").reshape(8, 8)
    emb = nn.Embedding(50, 32).to(device="cuda", dtype=dt)
    _bwd(emb(idx))
    bag = nn.EmbeddingBag(50, 32, mode="mean").to(device="cuda", dtype=dt)
    _bwd(bag(idx))
    bag = nn.EmbeddingBag(50, 32, mode="sum").to(device="cuda", dtype=dt)
    _bwd(bag(idx, per_sample_weights=_t((8, 8), dt, True)))
    _bwd(F.embedding(idx, _t((50, 32), dt, True), max_norm=1.0))


def w_indexing(dt):
    x = _t((100, 30), dt, True)
    i = tritorch.tensor(np.arange(20) * 3, device="cuda")
    _bwd(x[i] + x[:, 2:5].sum() + x.index_select(0, i).sum() + x.gather(1, i[:10].reshape(10, 1) % 30).sum())
    y = x.detach().clone()
    y[i] = 0.0
    y.masked_fill_(y > 0.5, 1.0)
    y.scatter_(1, (i[:10] % 30).reshape(10, 1), _t((10, 1), dt))
    # last: their result sizes are counts that no kernel computes while recording (the workload may stop here)
    tritorch.nonzero(y > 0)
    y[y > 0.2]


def w_creation(dt):
    tritorch.zeros((100, 7), dtype=dt, device="cuda").fill_(3.0)
    tritorch.arange(0, 100, dtype=dt, device="cuda")
    tritorch.linspace(0, 1, 50, dtype=dt, device="cuda")
    tritorch.eye(20, dtype=dt, device="cuda")
    tritorch.triu(_t((20, 20), dt), 1)
    tritorch.tril(_t((20, 20), dt))
    tritorch.cat([_t((3, 4), dt), _t((5, 4), dt)])
    tritorch.cat([_t((4, 3), dt).t(), _t((3, 5), dt)], 1)          # strided pieces
    tritorch.cat([_t((5, 2, 4, 3), dt).permute(3, 1, 2, 0), _t((2, 2, 4, 5), dt)], 0)   # four dims, along the first
    tritorch.stack([_t((3, 4), dt), _t((3, 4), dt)], dim=1)


def w_random(dt):
    tritorch.manual_seed(0)
    tritorch.rand((100, 3), dtype=dt, device="cuda")
    tritorch.randn((100, 3), dtype=dt, device="cuda")
    _bwd(F.dropout(_t((64, 100), dt, True), 0.5, training=True))
    _bwd(F.dropout2d(_t((4, 8, 5, 5), dt, True), 0.5, training=True))


def w_optim(dt):
    for opt in (lambda p: tritorch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-4),
                lambda p: tritorch.optim.Adam(p, lr=1e-3), lambda p: tritorch.optim.AdamW(p, lr=1e-3),
                lambda p: tritorch.optim.RMSprop(p, lr=1e-3), lambda p: tritorch.optim.Adagrad(p, lr=1e-2),
                lambda p: tritorch.optim.Adadelta(p, weight_decay=1e-4), lambda p: tritorch.optim.Adamax(p),
                lambda p: tritorch.optim.NAdam(p), lambda p: tritorch.optim.RAdam(p)):
        p = [nn.Parameter(_t((100, 30), dt)), nn.Parameter(_t((30,), dt))]
        for q in p:
            q.grad = _t(q.shape, dt)
        o = opt(p)
        for _ in range(6):      # RAdam rectifies from its 6th step on: both of its branches compile
            o.step()


def w_rnn(dt):
    for cls in (nn.LSTM, nn.GRU, nn.RNN):
        m = cls(16, 32, num_layers=2, batch_first=True).to(device="cuda", dtype=dt)
        out = m(_t((4, 7, 16), dt, True))[0]
        _bwd(out)


def w_activations(dt):
    x = _t((64, 77), dt, True)
    for fn in (F.mish, F.hardswish, F.selu, F.celu, F.softsign, F.hardtanh, F.relu6, F.tanh, F.sigmoid,
               lambda v: F.threshold(v, 0.1, 0.0), lambda v: F.gelu(v, approximate="tanh"), F.gelu,
               lambda v: F.glu(v[:, :76], dim=-1), lambda v: F.prelu(v, _t((1,), dt, True))):
        _bwd(fn(x))
    w, b = _t((96, 77), dt, True), _t((96,), dt, True)
    for act in ("relu", "gelu", "gelu_tanh", "silu", "leaky_relu", "elu", "sigmoid", "tanh"):
        _bwd(_linear.linear(x, w, b, activation=act))       # the fused epilogue and its backward kernel
    _bwd(_linear.linear(x, w, b, activation="gelu", residual=_t((64, 96), dt, True)))    # and a residual


def w_linear_chain(dt):
    """Every activation's backward in the epilogue of the next layer's grad_x (``kernels/linear_chain.py``), with and
    without dropout (the last layer's too): the heuristic defaults (the candidates: ``w_linear``'s gelu with
    dropout)."""
    x = _t((200, 48), dt, True)
    params = [_t((80, 48), dt, True), _t((80,), dt, True), _t((48, 80), dt, True), _t((48,), dt, True)]
    for act in _linear.ACTIVATIONS:
        for p, last in ((0.0, 0.0), (0.1, 0.0), (0.1, 0.1)):
            _bwd(linear_chain(x, params, [{"activation": act, "dropout_p": p}, {"dropout_p": last}]))


def w_pointwise(dt):
    x, y = _t((300, 41), dt, True, 0.1, 2.0), _t((300, 41), dt, True, 0.1, 2.0)
    for fn in (tritorch.expm1, tritorch.log1p, tritorch.sin, tritorch.cos, tritorch.erf, tritorch.reciprocal,
               tritorch.rsqrt, tritorch.log, tritorch.square, tritorch.neg, lambda v: v ** 2.5,
               lambda v: tritorch.clamp(v, min=0.5), lambda v: tritorch.logaddexp(v, y),
               lambda v: tritorch.xlogy(v, y), lambda v: tritorch.lerp(v, y, 0.3), lambda v: tritorch.pow(v, y),
               lambda v: tritorch.addcmul(v, y, y, value=0.5), lambda v: tritorch.addcdiv(v, y, y, value=0.5),
               lambda v: tritorch.minimum(v, y), lambda v: v / y):
        _bwd(fn(x))
    a, b = x.detach(), y.detach()
    for fn in (tritorch.floor, tritorch.ceil, tritorch.round, tritorch.trunc, tritorch.sign, tritorch.isnan,
               tritorch.isinf, tritorch.isfinite, tritorch.nan_to_num, tritorch.logical_not,
               lambda v: tritorch.floor_divide(v, b), lambda v: tritorch.remainder(v, b),
               lambda v: tritorch.fmod(v, b), lambda v: tritorch.logical_and(v > 1, b > 1),
               lambda v: tritorch.logical_or(v > 1, b > 1), lambda v: tritorch.logical_xor(v > 1, b > 1),
               lambda v: v == b, lambda v: v != b, lambda v: v < b, lambda v: v <= b, lambda v: v >= b):
        fn(a)
    i, j = (tritorch.tensor(np.arange(1, 301, dtype=np.int64) % 7 + 1, device="cuda") for _ in range(2))
    for fn in (tritorch.bitwise_and, tritorch.bitwise_or, tritorch.bitwise_xor, tritorch.floor_divide,
               tritorch.remainder, tritorch.fmod, tritorch.pow, tritorch.add, tritorch.mul):
        fn(i, j)


def w_scan(dt):
    for shape, dim in (((64, 300), 1), ((8, 5000), 1), ((300, 16), 0), ((4, 33, 7), 1)):
        x = _t(shape, dt, True, 0.5, 1.5)
        _bwd(tritorch.cumsum(x, dim) + tritorch.cumprod(x, dim) + tritorch.logcumsumexp(x, dim))
        _bwd(tritorch.cummax(x, dim)[0] + tritorch.cummin(x, dim)[0])


def w_sort(dt):
    for shape in ((64, 100), (4, 5000), (1000,)):
        x = _t(shape, dt, True)
        _bwd(tritorch.sort(x, dim=-1, descending=True)[0])
        _bwd(tritorch.topk(x, 5, dim=-1)[0])
        tritorch.argsort(x.detach(), dim=-1)
    s = tritorch.sort(_t((1000,), dt))[0]
    tritorch.searchsorted(s, _t((77,), dt))
    tritorch.bucketize(_t((77,), dt), s, right=True)
    tritorch.histc(_t((1000,), dt), bins=30, min=-1, max=1)
    idx = tritorch.tensor(np.arange(500) % 37, device="cuda")
    tritorch.bincount(idx, weights=_t((500,), dt))
    tritorch.bincount(idx)


def w_fold(dt):
    x = _t((2, 3, 12, 12), dt, True)
    cols = F.unfold(x, 3, padding=1, stride=2)
    _bwd(cols)
    _bwd(F.fold(_t(tuple(cols.shape), dt, True), (12, 12), 3, padding=1, stride=2))


def w_grid(dt):
    x = _t((2, 3, 10, 12), dt, True)
    theta = _t((2, 2, 3), dt, True, -0.5, 0.5)
    for mode, pad in (("bilinear", "zeros"), ("nearest", "border"), ("bilinear", "reflection")):
        grid = F.affine_grid(theta, (2, 3, 7, 9), align_corners=False)
        _bwd(F.grid_sample(x, grid, mode=mode, padding_mode=pad, align_corners=False))


def w_sparse(dt):
    idx = tritorch.tensor(np.array([[0, 1, 1, 3, 4, 4], [2, 0, 3, 1, 1, 4]]), device="cuda")
    s = tritorch.sparse_coo_tensor(idx, _t((6,), dt, True), (5, 5))
    _bwd(tritorch.sparse.mm(s, _t((5, 40), dt, True)))


def w_amp(dt):
    grads = [_t((100, 30), dt), _t((30,), dt)]
    found, inv = tritorch.zeros((1,), device="cuda"), tritorch.ones((1,), device="cuda")
    _amp.non_finite_check_and_unscale_(grads, found, inv)
    _amp.update_scale_(tritorch.ones((1,), device="cuda"), tritorch.zeros((1,), dtype=tritorch.int32, device="cuda"),
                       found, 2.0, 0.5, 2000)


def w_views(dt):
    x = _t((6, 7, 9), dt, True)
    _bwd(tritorch.flip(x, (0, 2)) + tritorch.roll(x, 3, 1))


def w_compiled(dt):
    """tritorch.compile's generated kernels (float32 and float16; bfloat16 is not fused): pointwise over flat,
    broadcast and strided inputs with a parameterized activation, sums over trailing and leading dims, softmax and
    log_softmax with a masked prologue, each forward and backward."""
    x, b, r = _t((64, 300), dt, True), _t((300,), dt, True), _t((64, 1), dt, True)
    xt = _t((300, 64), dt, True).t()
    fns = ((lambda a, c, s: F.silu(a * c) + s, x),
           (lambda a, c, s: F.leaky_relu(tritorch.sigmoid(a) * 2.0 - c, 0.2), xt),
           (lambda a, c, s: (tritorch.tanh(a) * c).sum(-1), x),
           (lambda a, c, s: (a * s + c).mean(0), x),
           (lambda a, c, s: F.softmax(a * 0.5 + c, -1), x),
           (lambda a, c, s: F.log_softmax(a.masked_fill(a > 0.9, float("-inf")) * 2.0, -1), xt))
    for fn, a in fns:
        c = tritorch.compile(fn)
        for _ in range(3):                  # the capture, the replay, then the derived backward's own kernels
            _bwd(c(a, b, r))
    y = _t((64, 300), dt, True)
    c = tritorch.compile(lambda a, y: tritorch.tanh(a * y) + y.exp())
    for a in (x, x, xt):                    # a backward with two results side by side, flat and strided
        _bwd(c(a, y))

WORKLOADS = {name[2:]: fn for name, fn in sorted(globals().items()) if name.startswith("w_")}
# The tunables (name prefixes) whose every candidate a workload records: its own family's. Other workloads call
# them too (a linear in an RNN, a pointwise op in a loss) with the defaults only: the candidates there would add
# thousands of specializations of the same tiles (about 5,000 instead of 2,000) and no kernel not already checked.
CANDIDATE_FAMILIES = {"matmul": ("matmul",), "linear": ("linear", "matmul"), "activations": ("linear",),
                      "conv": ("conv_",), "elementwise": ("elementwise_",), "reduce": ("reduce_",),
                      "softmax": ("softmax_",), "loss": ("softmax_",), "compiled": ("compiled_",)}


# ---- the recorder ------------------------------------------------------------------------------------------------

def _arg(v, constexpr=False):
    """A launch argument as JSON: pointers by dtype and 16-byte alignment, kernels by module and name; an int that
    is not a constexpr by what Triton specializes it on (== 1, % 16 == 0, 32 or 64 bits)."""
    if hasattr(v, "data_ptr") and hasattr(v, "dtype"):
        return {"ptr": str(v.dtype).rsplit(".", 1)[-1], "align16": v.data_ptr() % 16 == 0}
    if isinstance(v, tl.constexpr):
        v = v.value
    if isinstance(v, tl.dtype):
        return {"tl": v.name}
    fn = getattr(v, "fn", None)
    if callable(fn) and hasattr(fn, "__qualname__"):
        return {"jit": [fn.__module__, fn.__qualname__]}
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int) and not constexpr:
        base = 2 ** 31 if not -2 ** 31 <= v < 2 ** 31 else 0
        return v if v == 1 else base + (16 if v % 16 == 0 else 17)
    if isinstance(v, float) and not constexpr:
        return 0.5
    if isinstance(v, (int, float)):
        return v
    raise TypeError(f"cannot record launch argument {v!r}")


def _constexprs(fn):
    """The names of ``fn``'s constexpr parameters."""
    return {p.name for p in inspect.signature(fn).parameters.values()
            if p.annotation is tl.constexpr or "constexpr" in str(p.annotation)}


class _Recorder:
    def __init__(self):
        self.launches = []          # (spec dict, origin dict)
        self.picks = []             # (tunable name, key) picked during the current workload
        self.pending = None         # the last pick: (tunable, key, candidate name or None)
        self.origin = None

    def run(self, kern, args, kwargs):
        names = kern.arg_names
        const = _constexprs(kern.fn)
        params = dict(zip(names, args))
        params.update({k: v for k, v in kwargs.items() if k in names})
        options = {k: v for k, v in kwargs.items() if k not in names}
        spec = {"kernel": [kern.fn.__module__, kern.fn.__qualname__],
                "args": {k: _arg(params[k], k in const) for k in names if k in params},
                "num_warps": options.pop("num_warps", 4), "num_stages": options.pop("num_stages", 3)}
        if options:
            spec["options"] = options
        origin = {"kind": "default"}
        p = self.pending
        if p is not None and (not p[0].kernels or any(getattr(k, "fn", k) is kern.fn or
                                                     getattr(k, "fn", None) is kern.fn for k in p[0].kernels)):
            # a tunable that names no kernel (tritorch.compile's, whose kernels are generated) owns the next launch
            self.pending = None
            if p[2] is not None:
                origin = {"kind": "candidate", "tunable": p[0].name, "config": p[2]}
            else:
                origin = {"kind": "default", "tunable": p[0].name}
        self.launches.append((spec, origin))


_REC = _Recorder()


def _patched_run(self, *args, grid, warmup, **kwargs):
    _REC.run(self, args, kwargs)


def _patched_pick(self, key, run=None, reset=None):
    cfg = _ORIG_PICK(self, key, run, reset)
    forced = autotune._FORCED.get(self.name)
    if forced is None:
        _REC.picks.append((self, key))
        _REC.pending = (self, key, None)
    else:
        keep = {autotune.config_name(c) for c in self.candidates(key)}
        name = autotune.config_name(forced)
        _REC.pending = (self, key, name) if name in keep else (self, key, "")   # "" = pruned for this key
    return cfg


_ORIG_PICK = autotune.Tunable.pick


def _skip_check(t, check):
    """``host_check`` while recording: no kernel ran, so the values a check would read were never computed."""
    return None


def _gpu_paths():
    """Host code of every kernels module takes its GPU paths."""
    for m in pkgutil.iter_modules(kernels.__path__):
        mod = importlib.import_module(f"{kernels.__name__}.{m.name}")
        if getattr(mod, "INTERPRET", None) is True:
            mod.INTERPRET = False
        for f in vars(mod).values():            # lru-cached heuristics were filled with interpreter choices
            if hasattr(f, "cache_clear") and getattr(f, "__module__", None) == mod.__name__:
                f.cache_clear()


def record(workloads=None, dtypes=DTYPES, candidates=True, log=sys.stderr):
    """Run the workloads (names; all by default) in each dtype, then (``candidates``) again with every candidate of
    each tunable kernel they picked; the recorded launches as a list of ``{"spec": ..., "origin": ...}``."""
    if not INTERPRET:
        raise RuntimeError("tritorch.compilecheck.record needs TRITORCH_INTERPRET=1 (host memory, no launches)")
    _gpu_paths()
    _interp.InterpretedFunction.run = _patched_run
    autotune.Tunable.pick = _patched_pick
    if _skip_check not in _common.CHECK_OBSERVERS:
        _common.CHECK_OBSERVERS.append(_skip_check)
    names = list(workloads or WORKLOADS)
    out = []
    for name in names:
        fn = WORKLOADS[name]
        for dt in dtypes:
            dtype = getattr(tritorch, dt)
            _REC.launches, _REC.picks, _REC.pending = [], [], None
            _run_one(fn, dtype, name, dt, log)
            family = CANDIDATE_FAMILIES.get(name, ()) if candidates else ()
            tunables = [t for t in {t.name: t for t, _ in _REC.picks}.values() if t.name.startswith(family)]
            for i in range(max((len(t.configs) for t in tunables), default=0)):
                with contextlib.ExitStack() as stack:   # the i-th candidate of every tunable this workload picked
                    for t in tunables:
                        if i < len(t.configs):
                            stack.enter_context(autotune.force(t.name, t.configs[i]))
                    _run_one(fn, dtype, name, dt, log)
            for spec, origin in _REC.launches:
                if origin.get("config") == "":
                    continue                    # a forced candidate that the pruning rule drops for its key
                origin["workload"] = f"{name}/{dt}"
                out.append({"spec": spec, "origin": origin})
    return out


def _run_one(fn, dtype, name, dt, log):
    try:
        fn(dtype)
    except Exception as e:                     # a failing workload records what it launched before; say why
        print(f"compile-check record: workload {name}/{dt} stopped: {type(e).__name__}: {e}", file=log)
        if os.environ.get("TRITORCH_RECORD_TRACE"):
            traceback.print_exc(file=log)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    out = argv[0] if argv else "-"
    work = argv[1].split(",") if len(argv) > 1 and argv[1] else None
    recs = record(work, candidates=not (len(argv) > 2 and argv[2] == "nocandidates"))
    text = json.dumps(recs)
    if out == "-":
        sys.stdout.write(text)
    else:
        with open(out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
