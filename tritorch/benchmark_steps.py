"""Backward, fwd+bwd and training-step cases of the benchmarks: the speed targets of the autograd, nn, conv and
sequence issues, each written once against the torch-shaped API like the op cases of :mod:`tritorch.benchmark`.

A case's ``build(lib, device, shape, dtype, extra)`` makes inputs and modules on the device and returns the timed
call. Modules get the same weights in both libraries (:func:`load_weights`: a NumPy draw per parameter name), so
the first call's result (the gradients, or a training step's loss) is compared between tritorch and PyTorch.
Gradients are taken with ``autograd.grad`` so nothing accumulates across the timed repeats; a backward-only case
builds its graph once and keeps it (``retain_graph=True``).

FLOP counts follow the usual conventions: a matmul or convolution backward is twice its forward; attention counts
its two forward matmuls (halved when causal) and 2.5x that for the backward, as FlashAttention's benchmarks do.
"""
import zlib

import numpy as np

from .benchmark import Case, make_input, resolve

__all__ = ["STEP_CASES", "load_weights", "step_case"]

_ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}


def step_case(name, op, family, build, shape, small, cpu, dtype="float32", bytes=None, flops=None, ceiling="",
              tol=2e-2, **extra):
    """A :class:`~tritorch.benchmark.Case` whose ``shape`` is the problem's configuration tuple."""
    return Case(name, family, tuple(shape), tuple(small), tuple(cpu), dtype, build, bytes=bytes, flops=flops,
                ceiling=ceiling, tol=tol, extra={"step": True, **extra}, op=op)


def load_weights(lib, module, device, dtype, seed=0):
    """Give ``module`` the same parameters in every library: a NumPy draw keyed by each parameter's name
    (uniform in +-1/sqrt(fan_in) for matrices and kernels, ones for norm weights, small uniform biases)."""
    with lib.no_grad():
        for name, p in module.named_parameters():
            rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
            shape = tuple(p.shape)
            if len(shape) >= 2:
                bound = 1.0 / np.sqrt(float(np.prod(shape[1:])))
                arr = rng.uniform(-bound, bound, shape)
            elif "bias" not in name.rsplit(".", 1)[-1]:
                arr = np.ones(shape)
            else:
                arr = rng.uniform(-0.1, 0.1, shape)
            p.copy_(lib.from_numpy(arr.astype(np.float32)).to(device=device, dtype=p.dtype))
    return module.to(device=device, dtype=getattr(lib, dtype))


def _leaf(lib, shape, dtype, device, seed, scale=1.0):
    return make_input(lib, shape, dtype, device, seed, scale).requires_grad_()


def _grads(lib, out, inputs, grad_out, retain=False):
    return lib.autograd.grad(out, inputs, grad_outputs=grad_out, retain_graph=retain)


# ---- backward of one op (issue: the autograd engine) ----------------------------------------------------------------
def _mul_backward(lib, device, shape, dtype, extra=None):
    a, b = _leaf(lib, shape, dtype, device, 1), _leaf(lib, shape, dtype, device, 2)
    y, g = a * b, make_input(lib, shape, dtype, device, 3)
    return lambda: _grads(lib, y, (a, b), g, retain=True)


def _softmax_backward(lib, device, shape, dtype, extra=None):
    f = resolve(lib, "softmax", "nn.functional.softmax")
    x = _leaf(lib, shape, dtype, device, 1)
    y, g = f(x, dim=-1), make_input(lib, shape, dtype, device, 3)
    return lambda: _grads(lib, y, (x,), g, retain=True)


def _matmul_backward(lib, device, shape, dtype, extra=None):
    m, k, n = shape
    a, b = _leaf(lib, (m, k), dtype, device, 1, 0.1), _leaf(lib, (k, n), dtype, device, 2, 0.1)
    y, g = a @ b, make_input(lib, (m, n), dtype, device, 3, 0.1)
    return lambda: _grads(lib, y, (a, b), g, retain=True)


# ---- layers forward + backward ---------------------------------------------------------------------------------------
def _linear(lib, device, shape, dtype, extra=None):
    m, k, n = shape
    layer = load_weights(lib, lib.nn.Linear(k, n), device, dtype)
    x, g = _leaf(lib, (m, k), dtype, device, 1), make_input(lib, (m, n), dtype, device, 3, 0.1)
    params = (x, layer.weight, layer.bias)
    return lambda: _grads(lib, layer(x), params, g)


def _cross_entropy(lib, device, shape, dtype, extra=None):
    n, c = shape
    f = resolve(lib, "nn.functional.cross_entropy")
    x = _leaf(lib, (n, c), dtype, device, 1)
    target = lib.from_numpy(np.random.default_rng(4).integers(0, c, n)).to(device)
    return lambda: _grads(lib, f(x, target), (x,), None)


def _conv2d(lib, device, shape, dtype, extra=None):
    n, c, h, w = shape
    conv = load_weights(lib, lib.nn.Conv2d(c, c, 3, padding=1, bias=False), device, dtype)
    x, g = _leaf(lib, (n, c, h, w), dtype, device, 1), make_input(lib, (n, c, h, w), dtype, device, 3, 0.1)
    return lambda: _grads(lib, conv(x), (x, conv.weight), g)


def _batch_norm2d(lib, device, shape, dtype, extra=None):
    n, c, h, w = shape
    bn = load_weights(lib, lib.nn.BatchNorm2d(c), device, dtype)
    x, g = _leaf(lib, shape, dtype, device, 1), make_input(lib, shape, dtype, device, 3)
    params = (x, bn.weight, bn.bias)
    return lambda: _grads(lib, bn(x), params, g)


def _max_pool2d(lib, device, shape, dtype, extra=None):
    n, c, h, w = shape
    pool = lib.nn.MaxPool2d(3, stride=2, padding=1)
    x = _leaf(lib, shape, dtype, device, 1)
    g = make_input(lib, (n, c, (h - 1) // 2 + 1, (w - 1) // 2 + 1), dtype, device, 3)
    return lambda: _grads(lib, pool(x), (x,), g)


def _attention(lib, device, shape, dtype, extra=None):
    b, h, s, d = shape
    f = resolve(lib, "nn.functional.scaled_dot_product_attention")
    q, k, v = (_leaf(lib, (b, h, s, d), dtype, device, i) for i in (1, 2, 3))
    g = make_input(lib, (b, h, s, d), dtype, device, 4)
    causal = extra["causal"]
    return lambda: _grads(lib, f(q, k, v, is_causal=causal), (q, k, v), g)


def _lstm(lib, device, shape, dtype, extra=None):
    layers, hidden, seq, batch = shape
    lstm = load_weights(lib, lib.nn.LSTM(hidden, hidden, num_layers=layers), device, dtype)
    x = _leaf(lib, (seq, batch, hidden), dtype, device, 1)
    g = make_input(lib, (seq, batch, hidden), dtype, device, 3)
    params = (x,) + tuple(lstm.parameters())
    return lambda: _grads(lib, lstm(x)[0], params, g)


# ---- optimizer and training steps ------------------------------------------------------------------------------------
def _adam(lib, device, shape, dtype, extra=None):
    count, size = shape
    params = [lib.nn.Parameter(make_input(lib, (size,), dtype, device, i)) for i in range(count)]
    for i, p in enumerate(params):
        p.grad = make_input(lib, (size,), dtype, device, 1000 + i)
    fused = {} if device == "cpu" else {"fused": True}
    opt = lib.optim.Adam(params, lr=1e-3, **fused)

    def step():
        opt.step()
        return params[0]
    return step


def _train_step(lib, model, opt, x, y, loss_fn, amp=None, compile=False):
    """One training step; ``amp`` (a dtype name): the forward and the loss under ``lib.autocast`` in that type (the
    weights stay in the case's dtype); ``compile``: the forward through ``lib.compile`` (tritorch.compile against
    torch.compile)."""
    autocast = lib.autocast(x.device.type, dtype=getattr(lib, amp or "bfloat16"), enabled=amp is not None)
    forward = lib.compile(model) if compile else model

    def step():
        opt.zero_grad()
        with autocast:
            loss = loss_fn(forward(x), y)
        loss.backward()
        opt.step()
        return loss.detach()
    return step


def _mlp_step(lib, device, shape, dtype, extra=None):
    batch, d_in, width, classes = shape
    nn = lib.nn
    model = load_weights(lib, nn.Sequential(nn.Linear(d_in, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                                            nn.Linear(width, classes)), device, dtype)
    x = make_input(lib, (batch, d_in), dtype, device, 1)
    y = lib.from_numpy(np.random.default_rng(4).integers(0, classes, batch)).to(device)
    opt = lib.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return _train_step(lib, model, opt, x, y, nn.CrossEntropyLoss(), compile=(extra or {}).get("compile", False))


def _cnn_step(lib, device, shape, dtype, extra=None):
    """The seeds' CNN (conv 1->32, relu, pool, conv 32->64, relu, pool, two Linears) on 28x28 images, SGD."""
    batch, side = shape
    nn = lib.nn
    flat = 64 * (side // 4) ** 2
    model = load_weights(lib, nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(flat, 128), nn.Linear(128, 10)), device, dtype)
    x = make_input(lib, (batch, 1, side, side), dtype, device, 1)
    y = lib.from_numpy(np.random.default_rng(4).integers(0, 10, batch)).to(device)
    opt = lib.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return _train_step(lib, model, opt, x, y, nn.CrossEntropyLoss())


def _gpt(lib, layers, heads, width, vocab, context):
    """nanoGPT's model (pre-norm blocks, causal attention, GELU MLP, learned positions) in ``lib``."""
    nn, F = lib.nn, lib.nn.functional

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
            self.c_attn, self.c_proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
            self.fc, self.proj = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

        def forward(self, x):
            b, t, c = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(width, dim=2)
            q, k, v = (z.view(b, t, heads, c // heads).transpose(1, 2) for z in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c))
            return x + self.proj(F.gelu(self.fc(self.ln_2(x))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(vocab, width), nn.Embedding(context, width)
            self.blocks = nn.ModuleList([Block() for _ in range(layers)])
            self.ln_f, self.head = nn.LayerNorm(width), nn.Linear(width, vocab, bias=False)

        def forward(self, idx):
            pos = lib.arange(idx.shape[1], device=idx.device)
            x = self.wte(idx) + self.wpe(pos)
            for block in self.blocks:
                x = block(x)
            return self.head(self.ln_f(x))
    return GPT()


def _gpt_step(lib, device, shape, dtype, extra=None):
    layers, heads, width, context, batch = shape
    vocab = 65
    model = load_weights(lib, _gpt(lib, layers, heads, width, vocab, context), device, dtype)
    rng = np.random.default_rng(4)
    idx = lib.from_numpy(rng.integers(0, vocab, (batch, context))).to(device)
    target = lib.from_numpy(rng.integers(0, vocab, (batch * context,))).to(device)
    opt = lib.optim.AdamW(model.parameters(), lr=1e-3)
    return _train_step(lib, model, opt, idx, target, lambda logits, y: lib.nn.functional.cross_entropy(
        logits.view(-1, vocab), y), amp=(extra or {}).get("amp"), compile=(extra or {}).get("compile", False))


# ---- bytes and flops -------------------------------------------------------------------------------------------------
def _n(shape):
    return int(np.prod(shape))


def _attention_flops(shape, causal):
    b, h, s, d = shape
    fwd = 4 * b * h * s * s * d * (0.5 if causal else 1.0)
    return 3.5 * fwd


def _conv_flops(shape):
    n, c, h, w = shape
    return 3 * 2 * n * c * h * w * c * 9


def _lstm_flops(shape):
    layers, hidden, seq, batch = shape
    return 3 * layers * 2 * seq * batch * (2 * hidden) * (4 * hidden)


def _gpt_flops(shape):
    layers, heads, width, context, batch = shape
    tokens = batch * context
    dense = 2 * tokens * (layers * 12 * width * width + width * 65)
    attention = layers * 4 * batch * context * context * width * 0.5
    return 3 * (dense + attention)


def _bytes(factor, dtype):
    return lambda shape: factor * _n(shape) * _ITEMSIZE[dtype]


STEP_CASES = [
    # the backward of one op (the graph built once, only the backward timed)
    step_case("mul bwd fp32 2^26", "mul_backward", "backward", _mul_backward, (1 << 26,), (1000,), (1 << 20,),
              bytes=_bytes(5, "float32"), ceiling="copy", tol=1e-5),
    step_case("softmax bwd fp16 8192x8192", "softmax_backward", "backward", _softmax_backward, (8192, 8192),
              (33, 200), (512, 1024), "float16", bytes=_bytes(3, "float16"), ceiling="copy"),
    step_case("matmul bwd bf16 4096^3", "matmul_backward", "backward", _matmul_backward, (4096, 4096, 4096),
              (64, 48, 80), (128, 128, 128), "bfloat16", flops=lambda s: 4 * s[0] * s[1] * s[2],
              ceiling="bf16_matmul"),
    # layers, forward + backward
    step_case("linear f+b bf16 8192x4096x4096", "linear", "fwd+bwd", _linear, (8192, 4096, 4096), (40, 24, 33),
              (256, 256, 256), "bfloat16", flops=lambda s: 6 * s[0] * s[1] * s[2], ceiling="bf16_matmul"),
    step_case("cross_entropy f+b fp32 8192x32000", "cross_entropy", "fwd+bwd", _cross_entropy, (8192, 32000),
              (37, 101), (1024, 1000), bytes=_bytes(3, "float32"), ceiling="copy", tol=1e-4),
    step_case("conv2d f+b fp32 32x64x56x56", "conv2d", "fwd+bwd", _conv2d, (32, 64, 56, 56), (2, 3, 7, 6),
              (4, 16, 14, 14), flops=_conv_flops),
    step_case("conv2d f+b bf16 32x64x56x56", "conv2d", "fwd+bwd", _conv2d, (32, 64, 56, 56), (2, 3, 7, 6),
              (4, 16, 14, 14), "bfloat16", flops=_conv_flops, ceiling="bf16_matmul", tol=5e-2),
    step_case("conv2d f+b fp32 32x256x14x14", "conv2d", "fwd+bwd", _conv2d, (32, 256, 14, 14), (2, 5, 5, 4),
              (4, 32, 7, 7), flops=_conv_flops),
    step_case("conv2d f+b bf16 32x256x14x14", "conv2d", "fwd+bwd", _conv2d, (32, 256, 14, 14), (2, 5, 5, 4),
              (4, 32, 7, 7), "bfloat16", flops=_conv_flops, ceiling="bf16_matmul", tol=5e-2),
    step_case("batch_norm2d f+b fp32 32x64x56x56", "batch_norm2d", "fwd+bwd", _batch_norm2d, (32, 64, 56, 56),
              (3, 5, 4, 3), (8, 16, 28, 28), bytes=_bytes(5, "float32"), ceiling="copy", tol=1e-3),
    step_case("max_pool2d f+b fp32 32x64x112x112", "max_pool2d", "fwd+bwd", _max_pool2d, (32, 64, 112, 112),
              (2, 3, 9, 8), (8, 16, 56, 56), bytes=lambda s: int(1.5 * _n(s)) * 4, ceiling="copy", tol=1e-6),
    step_case("sdpa f+b bf16 8x16x2048x64", "attention", "fwd+bwd", _attention, (8, 16, 2048, 64), (1, 2, 37, 16),
              (2, 4, 256, 64), "bfloat16", flops=lambda s: _attention_flops(s, False), ceiling="bf16_matmul",
              causal=False),
    step_case("sdpa causal f+b bf16 8x16x2048x64", "attention", "fwd+bwd", _attention, (8, 16, 2048, 64),
              (1, 2, 37, 16), (2, 4, 256, 64), "bfloat16", flops=lambda s: _attention_flops(s, True),
              ceiling="bf16_matmul", causal=True),
    step_case("lstm f+b fp32 2x512 seq128 b64", "lstm", "fwd+bwd", _lstm, (2, 512, 128, 64), (2, 6, 5, 3),
              (2, 64, 32, 16), flops=_lstm_flops, tol=1e-3),
    # optimizer and training steps
    step_case("adam step fp32 100M params", "adam", "step", _adam, (25, 1 << 22), (3, 1000), (4, 1 << 18),
              bytes=lambda s: 7 * _n(s) * 4, ceiling="copy", tol=1e-5),
    step_case("mlp step fp32 b256 784-512-512-10", "mlp_step", "step", _mlp_step, (256, 784, 512, 10),
              (5, 12, 16, 10), (256, 784, 512, 10), tol=1e-4),
    step_case("cnn step fp32 b256 28x28", "cnn_step", "step", _cnn_step, (256, 28), (3, 8), (64, 28), tol=1e-4),
    step_case("gpt step bf16 6L 384w ctx256 b64", "gpt_step", "step", _gpt_step, (6, 6, 384, 256, 64),
              (2, 2, 16, 9, 2), (2, 4, 128, 64, 4), "bfloat16", flops=_gpt_flops, ceiling="bf16_matmul"),
    # mixed precision: float32 weights and AdamW, the forward under bf16 autocast (issue 19)
    step_case("gpt step amp-bf16 6L 384w ctx256 b64", "gpt_step", "step", _gpt_step, (6, 6, 384, 256, 64),
              (2, 2, 16, 9, 2), (2, 4, 128, 64, 4), flops=_gpt_flops, ceiling="bf16_matmul", tol=5e-2,
              amp="bfloat16"),
    # compiled steps (issue 21): tritorch.compile against torch.compile, last so that a time limit cuts them first
    step_case("mlp step compiled fp32 b256 784-512-512-10", "mlp_step", "step", _mlp_step, (256, 784, 512, 10),
              (5, 12, 16, 10), (256, 784, 512, 10), tol=1e-4, compile=True),
    step_case("gpt step compiled bf16 6L 384w ctx256 b64", "gpt_step", "step", _gpt_step, (6, 6, 384, 256, 64),
              (2, 2, 16, 9, 2), (2, 4, 128, 64, 4), "bfloat16", flops=_gpt_flops, ceiling="bf16_matmul",
              compile=True),
]
