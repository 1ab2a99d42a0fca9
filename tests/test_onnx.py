"""tritorch.onnx.export: onnx.checker accepts each export and onnxruntime (CPUExecutionProvider) gives tritorch's
outputs, in fp32 within RTOL/ATOL, at a batch (and sequence length) other than the traced one; every activation,
pooling and norm layer of tritorch.nn; clear errors; file and BytesIO targets; atomic writes.

The models run on cpu (the NumPy path); onnx and onnxruntime are in the test extra, so these tests always run in CI.
"""
import io
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import tritorch as torch
from tritorch import nn
from tritorch.train import build_model

RTOL, ATOL = 1e-4, 1e-5
"""fp32 tolerance of onnxruntime against tritorch: both compute in float32 with different summation orders."""


def _session(proto):
    onnx.checker.check_model(proto, full_check=True)
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def _check(model, example, inputs, names=None, rtol=RTOL, atol=ATOL, **kw):
    """Export ``model`` on ``example`` and compare onnxruntime with tritorch on each tuple in ``inputs``."""
    if isinstance(model, nn.Module):
        model.eval()
    names = names or [f"input_{i}" for i in range(len(example))]
    proto = torch.onnx.export(model, example, input_names=names, **kw)
    sess = _session(proto)
    for args in inputs:
        with torch.no_grad():
            want = model(*args)
        want = want if isinstance(want, tuple) else (want,)
        got = sess.run(None, {n: a.numpy() for n, a in zip(names, args)})
        assert len(got) == len(want)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w.numpy(), rtol=rtol, atol=atol)
    return proto


def _batch(name="input_0"):
    return {name: {0: "batch"}}


# ---- the models of the issue ---------------------------------------------------------------------------------------
class ConvAutoencoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(),
                                 nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU())
        self.dec = nn.Sequential(nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
                                 nn.ConvTranspose2d(4, 1, 3, stride=2, padding=1, output_padding=1), nn.Sigmoid())

    def forward(self, x):
        return self.dec(self.enc(x))


class Generator(nn.Module):
    """A DCGAN generator: latent (N, 8) -> (N, 1, 8, 8)."""

    def __init__(self, nz=8):
        super().__init__()
        self.nz = nz
        self.net = nn.Sequential(
            nn.ConvTranspose2d(nz, 16, 2, 1, 0, bias=False), nn.BatchNorm2d(16), nn.ReLU(True),
            nn.ConvTranspose2d(16, 8, 4, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(True),
            nn.ConvTranspose2d(8, 1, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, z):
        return self.net(z.view(z.size(0), self.nz, 1, 1))


class RecurrentClassifier(nn.Module):
    def __init__(self, cell, bidirectional=False):
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.rnn = cell(8, 12, num_layers=2, batch_first=True, bidirectional=bidirectional)
        self.fc = nn.Linear(12 * (2 if bidirectional else 1), 3)

    def forward(self, tokens):
        out, _ = self.rnn(self.emb(tokens))
        return self.fc(out[:, -1]), out


class TransformerLM(nn.Module):
    def __init__(self, vocab=20, d=16, max_len=16):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(1, max_len, d) * 0.1)
        layer = nn.TransformerEncoderLayer(d, 2, 32, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2)
        self.head = nn.Linear(d, vocab)

    def forward(self, tokens):
        t = tokens.size(1)
        h = self.emb(tokens) + self.pos[:, :t]
        mask = nn.Transformer.generate_square_subsequent_mask(t)
        return self.head(self.encoder(h, mask=mask, is_causal=True))


def _tokens(*shape):
    return torch.randint(0, 20, shape)


def test_mlp():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 4), nn.LogSoftmax(-1))
    proto = _check(model, (torch.randn(3, 6),), [(torch.randn(3, 6),), (torch.randn(7, 6),)],
                   dynamic_axes=_batch())
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == 6
    assert proto.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert {i.name for i in proto.graph.initializer} >= {"0.weight", "0.bias", "3.weight", "3.bias"}


def test_plain_function():
    def score(x, y):
        return (x * y).sum(-1).tanh()
    proto = _check(score, (torch.randn(2, 3), torch.randn(2, 3)), [(torch.randn(4, 3), torch.randn(4, 3))],
                   dynamic_axes={"input_0": {0: "n"}, "input_1": {0: "n"}})
    assert proto.graph.name == "tritorch_score"


@pytest.mark.parametrize("act", [None, "relu", "leaky_relu", "gelu", "gelu_tanh", "silu", "elu"])
def test_fused_epilogues(act):
    """linear(..., activation=, residual=) and conv2d(..., activation=), the kernels tritorch.compile fuses into,
    export as the ops they stand for."""
    w, b = torch.randn(6, 5), torch.randn(6)
    cw = torch.randn(6, 3, 3, 3)

    def f(x, r, img):
        y = torch.nn.functional.linear(x, w, b, activation=act, residual=r)
        z = torch.nn.functional.conv2d(img, cw, padding=1, activation=None if act is None else "relu")
        return y, z
    _check(f, (torch.randn(4, 5), torch.randn(4, 6), torch.randn(1, 3, 5, 5)),
           [(torch.randn(4, 5), torch.randn(4, 6), torch.randn(1, 3, 5, 5))])


def test_fused_dropout_is_refused():
    """linear(..., dropout_p=) drops in training mode only: refused with the reason, as a training-mode dropout is."""
    w = torch.randn(6, 5)
    with pytest.raises(torch.onnx.UnsupportedOperatorError, match="dropout_p=.*training mode"):
        torch.onnx.export(lambda x: torch.nn.functional.linear(x, w, dropout_p=0.5), (torch.randn(4, 5),))


def test_main_job_cnn():
    torch.manual_seed(0)
    _check(build_model(8), (torch.randn(2, 1, 8, 8),), [(torch.randn(5, 1, 8, 8),), (torch.randn(1, 1, 8, 8),)],
           names=["image"], dynamic_axes=_batch("image"))


def test_conv_autoencoder():
    torch.manual_seed(0)
    _check(ConvAutoencoder(), (torch.randn(2, 1, 8, 8),), [(torch.rand(4, 1, 8, 8),)], dynamic_axes=_batch())


def test_dcgan_generator():
    torch.manual_seed(0)
    g = Generator()
    g.train()
    g(torch.randn(8, 8))                    # running statistics that are not the initial ones
    _check(g, (torch.randn(2, 8),), [(torch.randn(5, 8),)], dynamic_axes=_batch())
    assert g.training is False              # _check leaves it in eval; export restores the mode it found
    g.train()
    g.net[1].eval()                         # a frozen BatchNorm in a training model keeps its own mode
    torch.onnx.export(g, (torch.randn(2, 8),))
    assert g.training is True and g.net[4].training is True and g.net[1].training is False


@pytest.mark.parametrize("cell,bidirectional", [(nn.LSTM, False), (nn.GRU, True), (nn.RNN, False)])
def test_recurrent_model_dynamic_batch_and_sequence(cell, bidirectional):
    torch.manual_seed(0)
    model = RecurrentClassifier(cell, bidirectional)
    axes = {"input_0": {0: "batch", 1: "seq"}}
    proto = _check(model, (_tokens(2, 5),), [(_tokens(3, 9),), (_tokens(1, 2),)], dynamic_axes=axes)
    ops = {n.op_type for n in proto.graph.node}
    assert cell.__name__ in ops
    out_dims = proto.graph.output[1].type.tensor_type.shape.dim
    assert [d.dim_param for d in out_dims[:2]] == ["batch", "seq"]


def test_lstm_initial_state_unbatched_and_batch_major():
    torch.manual_seed(0)

    class WithState(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(4, 5, num_layers=2)

        def forward(self, x, h, c):
            out, (hn, cn) = self.rnn(x, (h, c))
            return out, hn, cn
    args = (torch.randn(6, 3, 4), torch.randn(2, 3, 5), torch.randn(2, 3, 5))
    axes = {"input_0": {1: "batch"}, "input_1": {1: "batch"}, "input_2": {1: "batch"}}
    _check(WithState(), args, [(torch.randn(6, 2, 4), torch.randn(2, 2, 5), torch.randn(2, 2, 5))],
           dynamic_axes=axes)


def test_transformer_encoder():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, 32, activation="gelu", batch_first=True, norm_first=True)
    model = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(16))
    _check(model, (torch.randn(2, 5, 16),), [(torch.randn(3, 5, 16),)], dynamic_axes=_batch())


def test_transformer_lm_dynamic_batch_and_sequence():
    torch.manual_seed(0)
    axes = {"tokens": {0: "batch", 1: "seq"}}
    proto = _check(TransformerLM(), (_tokens(2, 5),), [(_tokens(3, 8),), (_tokens(1, 3),), (_tokens(4, 16),)],
                   names=["tokens"], dynamic_axes=axes)
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims[:2]] == ["batch", "seq"] and dims[2].dim_value == 20


class EncoderDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.t = nn.Transformer(8, 2, 1, 1, 16, batch_first=True)

    def forward(self, src, tgt):
        mask = nn.Transformer.generate_square_subsequent_mask(tgt.size(1))
        return self.t(src, tgt, tgt_mask=mask, tgt_is_causal=True)


def test_encoder_decoder_transformer():
    torch.manual_seed(0)
    axes = {"input_0": {0: "batch", 1: "src"}, "input_1": {0: "batch", 1: "tgt"}}
    _check(EncoderDecoder(), (torch.randn(2, 5, 8), torch.randn(2, 4, 8)),
           [(torch.randn(3, 6, 8), torch.randn(3, 2, 8))], dynamic_axes=axes)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x, padding):
        return self.attn(x, x, x, key_padding_mask=padding)         # need_weights: the explicit softmax path


def test_multihead_attention_padding_mask_and_weights():
    torch.manual_seed(0)

    def pad(n, keep):
        return torch.tensor([[False] * keep + [True] * (5 - keep)] * n)
    axes = {"input_0": {0: "batch"}, "input_1": {0: "batch"}}
    _check(Attention(), (torch.randn(2, 5, 8), pad(2, 4)), [(torch.randn(3, 5, 8), pad(3, 2))], dynamic_axes=axes)


class SizeArithmetic(nn.Module):
    """Sizes computed in Python from two dynamic axes: products, offsets, factories."""

    def forward(self, x):
        b, t, _ = x.shape
        y = x.reshape(b * t, 4)[: b * t - 1]
        return y, x.view(b, t * 2, 2), torch.arange(t) * 2, torch.zeros(b, t) + x.sum(-1), x[:, t - 1]


def test_sizes_derived_from_dynamic_axes():
    axes = {"input_0": {0: "b", 1: "t"}}
    proto = _check(SizeArithmetic(), (torch.randn(2, 3, 4),), [(torch.randn(5, 7, 4),), (torch.randn(1, 2, 4),)],
                   dynamic_axes=axes)
    assert [d.dim_param for d in proto.graph.output[1].type.tensor_type.shape.dim[:2]] == ["b", "output_1_dim_1"]


@pytest.mark.parametrize("opset", [13, 14, 18, 21])
def test_other_opsets(opset):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, activation="gelu", batch_first=True)
    model = nn.Sequential(nn.TransformerEncoder(layer, 1), nn.Mish(), nn.GroupNorm(1, 4))
    proto = _check(model, (torch.randn(2, 4, 8),), [(torch.randn(3, 4, 8),)], dynamic_axes=_batch(),
                   opset_version=opset)
    assert proto.opset_import[0].version == opset


# ---- every activation, pooling and norm layer ----------------------------------------------------------------------
ACTIVATIONS = [nn.ReLU(), nn.ReLU(inplace=True), nn.LeakyReLU(0.2), nn.ELU(0.5), nn.SELU(), nn.CELU(0.7), nn.GELU(),
               nn.GELU("tanh"), nn.SiLU(), nn.Mish(), nn.Sigmoid(), nn.Tanh(), nn.Hardtanh(-0.5, 0.7), nn.ReLU6(),
               nn.Hardswish(), nn.Softplus(), nn.Softplus(2.0, 1.0), nn.Softsign(), nn.Softmin(1), nn.PReLU(),
               nn.PReLU(6), nn.Threshold(0.1, 2.0), nn.GLU(1), nn.Softmax(-1), nn.LogSoftmax(1), nn.Identity()]


def test_every_activation_is_listed():
    names = set(nn.modules.activation.__all__) - {"MultiheadAttention"}        # in the Transformer tests
    assert names <= {type(m).__name__ for m in ACTIVATIONS}


@pytest.mark.parametrize("layer", ACTIVATIONS, ids=lambda m: repr(m))
def test_activation(layer):
    torch.manual_seed(0)
    x = torch.randn(2, 6, 3) * 4
    _check(layer, (x,), [(torch.randn(4, 6, 3) * 4,)], dynamic_axes=_batch())


class Every(nn.Module):
    """Each activation on the same input, one output each."""

    def __init__(self):
        super().__init__()
        self.acts = nn.ModuleList(ACTIVATIONS)

    def forward(self, x):
        return tuple(a(x.clone()) for a in self.acts)


@pytest.mark.parametrize("opset", [13, 21])
def test_every_activation_at_other_opsets(opset):
    torch.manual_seed(0)
    _check(Every(), (torch.randn(2, 6, 3) * 4,), [(torch.randn(3, 6, 3) * 4,)], dynamic_axes=_batch(),
           opset_version=opset)


def test_export_from_device(device):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.GELU(), nn.Linear(4, 2)).to(device)
    proto = torch.onnx.export(model, (torch.randn(2, 3, device=device),), dynamic_axes=_batch())
    x = torch.randn(5, 3)
    got = _session(proto).run(None, {"input_0": x.numpy()})[0]
    with torch.no_grad():
        want = model(x.to(device)).cpu().numpy()
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


LAYERS = [
    (nn.MaxPool1d(2), (2, 3, 9)), (nn.MaxPool2d(3, 2, 1), (2, 3, 7, 7)),
    (nn.MaxPool2d(2, ceil_mode=True), (2, 3, 7, 7)),
    (nn.MaxPool3d(2), (2, 2, 4, 4, 4)), (nn.AvgPool1d(3, 2, 1), (2, 3, 9)), (nn.AvgPool2d(2), (2, 3, 6, 6)),
    (nn.AvgPool2d(3, 2, 1, count_include_pad=False), (2, 3, 7, 7)), (nn.AvgPool3d(2), (2, 2, 4, 4, 4)),
    (nn.AdaptiveAvgPool1d(3), (2, 3, 9)), (nn.AdaptiveAvgPool2d(1), (2, 3, 6, 6)),
    (nn.AdaptiveAvgPool2d((3, 2)), (2, 3, 6, 6)), (nn.AdaptiveMaxPool2d(2), (2, 3, 6, 6)),
    (nn.AdaptiveAvgPool3d(1), (2, 2, 4, 4, 4)), (nn.AdaptiveAvgPool2d((2, 3)), (2, 3, 7, 5)),
    (nn.AdaptiveMaxPool1d(4), (2, 3, 7)),
    (nn.BatchNorm1d(3), (2, 3)), (nn.BatchNorm1d(3), (2, 3, 5)), (nn.BatchNorm2d(3), (2, 3, 4, 4)),
    (nn.BatchNorm3d(3), (2, 3, 2, 2, 2)), (nn.LayerNorm(5), (2, 3, 5)), (nn.LayerNorm((3, 5)), (2, 3, 5)),
    (nn.LayerNorm(5, elementwise_affine=False), (2, 3, 5)), (nn.GroupNorm(3, 6), (2, 6, 4, 4)),
    (nn.GroupNorm(2, 4, affine=False), (2, 4, 5)), (nn.InstanceNorm1d(3), (2, 3, 6)),
    (nn.InstanceNorm2d(3, affine=True), (2, 3, 4, 4)), (nn.Dropout(), (2, 5)), (nn.Dropout2d(), (2, 3, 4, 4)),
    (nn.Conv1d(3, 4, 3, stride=2, padding=1, dilation=2), (2, 3, 9)), (nn.Conv2d(4, 4, 3, padding="same", groups=2),
                                                                       (2, 4, 6, 6)),
    (nn.Conv3d(2, 2, 2), (2, 2, 3, 3, 3)), (nn.ConvTranspose1d(3, 2, 3, stride=2, output_padding=1), (2, 3, 5)),
    (nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, groups=2, dilation=1), (2, 4, 4, 4)),
    (nn.Flatten(), (2, 3, 4)), (nn.Unflatten(1, (2, 3)), (2, 6)), (nn.Upsample(scale_factor=2), (2, 3, 4, 4)),
    (nn.Upsample(scale_factor=2, mode="bilinear"), (2, 3, 4, 4)),
    (nn.Upsample(size=(5, 7), mode="bilinear", align_corners=True), (2, 3, 4, 4)),
    (nn.PixelShuffle(2), (2, 8, 3, 3)), (nn.PixelUnshuffle(2), (2, 2, 4, 4)),
    (nn.ZeroPad2d((1, 2, 0, 1)), (2, 3, 4, 4)),
    (nn.ConstantPad1d(2, 0.5), (2, 3, 4)), (nn.ReflectionPad2d(1), (2, 3, 4, 4)), (nn.ReplicationPad1d(2), (2, 3, 4)),
    (nn.Linear(5, 3, bias=False), (2, 4, 5)), (nn.Bilinear(5, 5, 3), (2, 5)),
]


class Others(nn.Module):
    """The remaining layers: distances, bags, im2col and back, recurrent cells."""

    def __init__(self):
        super().__init__()
        self.bag = nn.EmbeddingBag(10, 4, mode="mean")
        self.bag_sum = nn.EmbeddingBag(10, 4, mode="sum")
        self.unfold, self.fold = nn.Unfold(2, padding=1, stride=2), nn.Fold((5, 5), 2, padding=1, stride=2)
        self.lstm, self.gru, self.rnn = nn.LSTMCell(4, 3), nn.GRUCell(4, 3), nn.RNNCell(4, 3)

    def forward(self, x, tokens, image):
        h, c = self.lstm(x, (self.gru(x), x[:, :3]))
        return (nn.functional.cosine_similarity(x, x.flip((0,)) + 1), nn.functional.pairwise_distance(x, x * 3, 3.0),
                self.bag(tokens), self.bag_sum(tokens), self.fold(self.unfold(image)), h, c, self.rnn(x, h))


def test_other_layers():
    torch.manual_seed(0)
    args = (torch.randn(2, 4), torch.randint(0, 10, (2, 3)), torch.randn(2, 2, 5, 5))
    more = (torch.randn(5, 4), torch.randint(0, 10, (5, 3)), torch.randn(5, 2, 5, 5))
    axes = {f"input_{i}": {0: "batch"} for i in range(3)}
    _check(Others(), args, [more], dynamic_axes=axes)


class Losses(nn.Module):
    def forward(self, x, y, t):
        f = nn.functional
        return (f.mse_loss(x, y), f.l1_loss(x, y, reduction="sum"), f.cross_entropy(x, t),
                f.cross_entropy(x, t, reduction="none", weight=torch.ones(4)), f.nll_loss(x.log_softmax(1), t))


def test_losses():
    torch.manual_seed(0)
    t = torch.tensor([0, 3, 1])
    _check(Losses(), (torch.randn(3, 4), torch.randn(3, 4), t), [(torch.randn(3, 4), torch.randn(3, 4), t)])


@pytest.mark.parametrize("layer,shape", LAYERS, ids=lambda x: repr(x) if isinstance(x, nn.Module) else str(x))
def test_layer(layer, shape):
    torch.manual_seed(0)
    for name, buf in layer.named_buffers():
        if name == "running_mean":
            buf.copy_(torch.randn(buf.shape))
        elif name == "running_var":
            buf.copy_(torch.rand(buf.shape) + 0.5)
    model = layer if not isinstance(layer, nn.Bilinear) else _Pair(layer)
    bigger = (shape[0] + 2,) + shape[1:]
    _check(model, (torch.randn(*shape),), [(torch.randn(*bigger),)], dynamic_axes=_batch())


class _Pair(nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x, x * 2)


class TensorOps(nn.Module):
    """Reshapes, views, indexing, reductions and elementwise ops as a forward writes them."""

    def forward(self, x, idx):
        n = x.size(0)
        y = x.view(n, -1).reshape(n, 3, 4).permute(0, 2, 1).contiguous()
        y = torch.cat([y, y[:, :2] * 2], dim=1).transpose(1, 2)           # (n, 3, 6)
        z = y[:, 1:, ::2].unsqueeze(1).squeeze(1) + y[..., -1:, None].sum(-1)[:, :2]
        s = torch.stack([z.mean(dim=(1, 2)), z.amax(-1).amin(-1), z.std(dim=-1).sum(-1)], dim=1)
        m, i = y.max(dim=-1)
        picked = y.index_select(2, idx) + torch.gather(y, 2, i.unsqueeze(-1))
        w = torch.where(y > 0, y.exp().clamp(max=4.0), -y.abs().sqrt()).masked_fill(y < -1.5, 0.25)
        q = torch.zeros(n, 2) + torch.ones_like(s[:, :2]) + torch.arange(2).float()
        a, b = y.chunk(2, dim=-1)
        return (s, m * 1.5 - 1, picked, w ** 2 / 3 + 1, q, (a - b).flatten(1), y.argmax(-1),
                (y @ y.transpose(1, 2)).softmax(-1), y.narrow(2, 1, 3).cumsum(2), y.tril(),
                x.flip((1,)).expand(2, n, 12))


class Arithmetic(nn.Module):
    """Python numbers on either side, mixed dtypes, comparisons and rounding divisions."""

    def forward(self, x, k):
        pos = x.abs() + 0.5
        return (1 - x, 2 / pos, pos ** 0.5, 3 ** x.clamp(-1, 1), torch.maximum(x, -x / 2), x // 0.7,
                torch.div(x, 0.3, rounding_mode="trunc"), (k > 1) & (k < 4), (x > 0) | (k == 2).unsqueeze(-1),
                k.float().exp(), k * 3 - 1, k.sum(), x.mean(), x.var(1, keepdim=True), x.rsqrt().isnan(),
                torch.logsumexp(x, -1), x.norm(dim=1), torch.nn.functional.normalize(x, dim=1), ~(k > 1),
                torch.where(k > 2, 1.0, x.t()[0]), torch.einsum("bi,bj->bij", x, x).sigmoid().log1p())


def test_arithmetic():
    torch.manual_seed(0)
    k = torch.tensor([0, 1, 2, 3, 4])
    _check(Arithmetic(), (torch.randn(5, 3), k), [(torch.randn(5, 3), k)])


def test_tensor_ops():
    torch.manual_seed(0)
    idx = torch.tensor([0, 2, 5])
    _check(TensorOps(), (torch.randn(2, 12), idx), [(torch.randn(5, 12), idx)], dynamic_axes=_batch())


# ---- errors, targets, packaging ------------------------------------------------------------------------------------
class Sorts(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return torch.sort(self.fc(x), dim=-1)[0]


def test_unmapped_op_names_the_op_and_the_module():
    model = nn.Sequential(nn.Linear(4, 4), Sorts())
    with pytest.raises(torch.onnx.UnsupportedOperatorError, match=r"'sort'.*module '1' \(Sorts\)"):
        torch.onnx.export(model, (torch.randn(2, 4),))


def test_bad_arguments():
    model = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="opset_version 12"):
        torch.onnx.export(model, (torch.randn(2, 3),), opset_version=12)
    with pytest.raises(ValueError, match="out of range"):
        torch.onnx.export(model, (torch.randn(2, 3),), dynamic_axes={"input_0": {2: "x"}})
    with pytest.raises(ValueError, match="neither input_names"):
        torch.onnx.export(model, (torch.randn(2, 3),), dynamic_axes={"x": {0: "batch"}})
    with pytest.raises(torch.onnx.DynamicAxisError, match="can grow by 2"):     # positions beyond max_len
        torch.onnx.export(TransformerLM(max_len=5), (_tokens(2, 5),), dynamic_axes={"input_0": {1: "seq"}})


def test_size_dependent_control_flow_is_refused():
    class Branchy(nn.Module):
        def forward(self, x):
            return x.relu() if x.size(0) < 3 else x.tanh().sigmoid()
    with pytest.raises(torch.onnx.DynamicAxisError, match="changes with the dynamic axes"):
        torch.onnx.export(Branchy(), (torch.randn(2, 3),), dynamic_axes=_batch())


def test_in_place_ops():
    class InPlace(nn.Module):
        def forward(self, x):
            y = x * 2
            y += 1
            return y.relu_()
    _check(InPlace(), (torch.randn(2, 3),), [(torch.randn(4, 3),)], dynamic_axes=_batch())

    class WritesThroughView(nn.Module):
        def forward(self, x):
            y = x * 2
            y[:, :1].mul_(0)
            return y
    with pytest.raises(torch.onnx.UnsupportedOperatorError, match="in-place"):
        torch.onnx.export(WritesThroughView(), (torch.randn(2, 3),))


def test_main_job_exports_onnx(tmp_path, capsys):
    from tritorch import train
    path, ckpt = tmp_path / "cnn.onnx", tmp_path / "cnn.safetensors"
    assert train.main(["--epochs", "1", "--limit-batches", "2", "--quiet", "--device", "cpu", "--out", str(ckpt),
                       "--export-onnx", str(path)]) == 0
    assert f"ONNX model {path}" in capsys.readouterr().out
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["tritorch.dataset"] == "digits" and float(meta["tritorch.std"]) > 0
    net = build_model(8)
    net.load_state_dict(torch.load(str(ckpt))["model"])
    x = torch.randn(7, 1, 8, 8)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["logits"], {"image": x.numpy()})
    np.testing.assert_allclose(got[0], net.eval()(x).detach().numpy(), rtol=RTOL, atol=ATOL)


def test_size_arithmetic_without_an_onnx_form_is_refused():
    class Halves(nn.Module):
        def forward(self, x):
            return x[: x.size(0) // 2]
    with pytest.raises(torch.onnx.DynamicAxisError, match="cannot express"):
        torch.onnx.export(Halves(), (torch.randn(4, 3),), dynamic_axes=_batch())


def test_export_to_path_and_bytesio(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh())
    x = (torch.randn(2, 3),)
    path = tmp_path / "m.onnx"
    proto = torch.onnx.export(model, x, str(path))
    buf = io.BytesIO()
    torch.onnx.export(model, x, buf)
    assert path.read_bytes() == buf.getvalue() == proto.SerializeToString()
    onnx.checker.check_model(onnx.load(str(path)))
    torch.onnx.export(model, x, path)                   # a PathLike, over the old file
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]


def test_path_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")
    replaced = []
    real = os.replace

    def failing_replace(src, dst):
        replaced.append((os.path.dirname(os.path.abspath(src)), os.fspath(dst)))
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        torch.onnx.export(nn.Linear(3, 2), (torch.randn(1, 3),), str(path))
    assert path.read_bytes() == b"old"                  # the target is untouched until the rename
    assert replaced and replaced[0][0] == str(tmp_path)  # the temporary was beside the target
    monkeypatch.setattr(os, "replace", real)


def test_import_tritorch_does_not_import_onnx():
    code = "import sys, tritorch, tritorch.onnx; assert 'onnx' not in sys.modules and 'onnxruntime' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_onnx_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r'pip install "tritorch\[onnx\]"'):
        torch.onnx.export(nn.Linear(2, 2), (torch.randn(1, 2),))
