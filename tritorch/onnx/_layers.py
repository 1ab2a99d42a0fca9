"""The op table's nn layers: matmuls, convolutions, pooling, norms, embeddings, attention, resampling, padding,
distances, recurrent cells and layers (``_rnn.py``), losses. Registered into ``_ops.OPS`` on import."""
import math

import numpy as np

from .. import _dtype as D
from ._builder import Sym, Unsupported
from ..jit.ir import Value
from ._ops import OPS, _axis, _out, _rank, _slice, op
from ._rnn import recurrent

__all__ = []


def _epilogue(b, node, y, activation=None, alpha=None, residual=None, dropout_p=0.0):
    """A fused kernel's epilogue (``linear``/``conv`` with ``activation=``, ``dropout_p=``, ``residual=``;
    ``tritorch.compile`` writes them) exported as the ops it stands for: the activation's own mapping on ONNX
    tensor ``y``, then Add. Dropout, which runs in training mode only, is refused as the ``dropout`` op is."""
    if dropout_p:
        raise Unsupported(f"{node.op}(..., dropout_p=) is dropout in training mode (export runs the model in eval "
                          "mode)")
    if activation is not None:
        out = node.outputs[0]
        pre = Value(f"{out.name}.pre_activation", out.shape, out.dtype, "node")
        b.names[pre.name] = y
        if activation == "gelu_tanh":
            y = OPS["gelu"](b, node, pre, approximate="tanh")
        else:
            y = OPS[activation](b, node, pre, *(() if alpha is None else (alpha,)))
    return y if residual is None else b.op("Add", [y, b.name(residual)])


@op("linear")
def _linear(b, node, input, weight, bias=None, activation=None, alpha=None, dropout_p=0.0, residual=None):
    x, w = b.name(input), b.name(weight)
    if _rank(input) == 2 and bias is not None:
        y = b.op("Gemm", [x, w, b.name(bias)], transB=1)
    else:
        y = b.op("MatMul", [x, b.op("Transpose", [w], perm=[1, 0])])
        y = y if bias is None else b.op("Add", [y, b.name(bias)])
    return _epilogue(b, node, y, activation, alpha, residual, dropout_p)


@op("bilinear")
def _bilinear(b, node, input1, input2, weight, bias=None):
    y = b.op("Einsum", [b.name(input1), b.name(weight), b.name(input2)], equation="...i,oij,...j->...o")
    return y if bias is None else b.op("Add", [y, b.name(bias)])


@op("matmul", "__matmul__", "mm", "bmm")
def _matmul(b, node, input, other):
    dt = _out(node).dtype
    return b.op("MatMul", [b.operand(input, dt), b.operand(other, dt)])


@op("__rmatmul__")
def _rmatmul(b, node, input, other):
    return _matmul(b, node, other, input)


@op("addmm")
def _addmm(b, node, input, mat1, mat2, *, beta=1, alpha=1):
    return b.op("Gemm", [b.name(mat1), b.name(mat2), b.name(input)], alpha=float(alpha), beta=float(beta))


def _tup(x, n):
    return list(x) * (n if len(x) == 1 else 1) if isinstance(x, (tuple, list)) else [x] * n


def _check_batched(input, n, what):
    if _rank(input) != n + 2:
        raise Unsupported(f"{what} on a {_rank(input)}-d input (export needs the batched form, {n + 2}-d)")


@op("conv1d", "conv2d", "conv3d")
def _conv(b, node, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, activation=None,
          dropout_p=0.0, dropout_channels=False, residual=None):
    n = int(node.op[4])
    _check_batched(input, n, node.op)
    k, dil = list(weight.shape[2:]), _tup(dilation, n)
    if padding == "valid":
        pads = [0] * (2 * n)
    elif padding == "same":
        tot = [d * (kk - 1) for d, kk in zip(dil, k)]
        pads = [t // 2 for t in tot] + [t - t // 2 for t in tot]
    else:
        p = _tup(padding, n)
        pads = p + p
    ins = [b.name(input), b.name(weight)] + ([b.name(bias)] if bias is not None else [])
    y = b.op("Conv", ins, kernel_shape=k, strides=_tup(stride, n), pads=pads, dilations=dil, group=int(groups))
    return _epilogue(b, node, y, activation, None, residual, dropout_p)


@op("conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
def _conv_t(b, node, input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    n = int(node.op[-2])
    _check_batched(input, n, node.op)
    p = _tup(padding, n)
    ins = [b.name(input), b.name(weight)] + ([b.name(bias)] if bias is not None else [])
    return b.op("ConvTranspose", ins, kernel_shape=list(weight.shape[2:]), strides=_tup(stride, n), pads=p + p,
                output_padding=_tup(output_padding, n), dilations=_tup(dilation, n), group=int(groups))


@op("max_pool1d", "max_pool2d", "max_pool3d")
def _max_pool(b, node, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
              return_indices=False):
    n = int(node.op[-2])
    _check_batched(input, n, node.op)
    if return_indices:
        raise Unsupported("return_indices=True")
    k = _tup(kernel_size, n)
    s = k if stride is None or stride == [] or stride == () else _tup(stride, n)
    p = _tup(padding, n)
    return b.op("MaxPool", [b.name(input)], kernel_shape=k, strides=s, pads=p + p, dilations=_tup(dilation, n),
                ceil_mode=int(bool(ceil_mode)))


@op("avg_pool1d", "avg_pool2d", "avg_pool3d")
def _avg_pool(b, node, input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
              divisor_override=None):
    n = int(node.op[-2])
    _check_batched(input, n, node.op)
    if divisor_override is not None:
        raise Unsupported("divisor_override")
    k = _tup(kernel_size, n)
    s = k if stride is None or stride == [] or stride == () else _tup(stride, n)
    p = _tup(padding, n)
    return b.op("AveragePool", [b.name(input)], kernel_shape=k, strides=s, pads=p + p,
                ceil_mode=int(bool(ceil_mode)), count_include_pad=int(bool(count_include_pad)))


@op("adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d",
    "adaptive_max_pool2d", "adaptive_max_pool3d")
def _adaptive(b, node, input, output_size, return_indices=False):
    n = int(node.op[-2])
    _check_batched(input, n, node.op)
    if return_indices:
        raise Unsupported("return_indices=True")
    avg = "avg" in node.op
    ins = list(input.shape[2:])
    outs = [i if o is None else o for i, o in zip(ins, _tup(output_size, n))]
    if any(d in b.dyn_dims.get(input.name, ()) for d in range(2, 2 + n)):
        raise Unsupported("adaptive pooling over a dynamic spatial axis")
    if all(o == 1 for o in outs):
        return b.op("GlobalAveragePool" if avg else "GlobalMaxPool", [b.name(input)])
    if not any(i % o for i, o in zip(ins, outs)):
        k = [i // o for i, o in zip(ins, outs)]
        return b.op("AveragePool" if avg else "MaxPool", [b.name(input)], kernel_shape=k, strides=k)
    x = b.name(input)           # PyTorch's windows [floor(j i / o), ceil((j + 1) i / o)), one axis at a time
    for axis, (i, o) in enumerate(zip(ins, outs), start=2):
        cells = [b.reduce("ReduceMean" if avg else "ReduceMax",
                          _slice(b, x, [axis], [j * i // o], [-(-(j + 1) * i // o)], [1]), [axis], True)
                 for j in range(o)]
        x = b.op("Concat", cells, axis=axis)
    return x


def _channel_param(b, p, c, value, dt):
    return b.name(p) if p is not None else b.const(np.full([c], value, dtype=dt.np))


@op("batch_norm")
def _batch_norm(b, node, input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                eps=1e-05, cudnn_enabled=None):
    if training or running_mean is None:
        raise Unsupported("batch_norm in training mode (or without running statistics): export runs in eval mode")
    c, dt = input.shape[1], input.dtype
    ins = [b.name(input), _channel_param(b, weight, c, 1, dt), _channel_param(b, bias, c, 0, dt),
           b.name(running_mean), b.name(running_var)]
    return b.op("BatchNormalization", ins, epsilon=float(eps))


@op("instance_norm")
def _instance_norm(b, node, input, running_mean=None, running_var=None, weight=None, bias=None,
                   use_input_stats=True, momentum=0.1, eps=1e-05, cudnn_enabled=None):
    c, dt = input.shape[1], input.dtype
    if not use_input_stats:
        return _batch_norm(b, node, input, running_mean, running_var, weight, bias, False, momentum, eps)
    ins = [b.name(input), _channel_param(b, weight, c, 1, dt), _channel_param(b, bias, c, 0, dt)]
    return b.op("InstanceNormalization", ins, epsilon=float(eps))


def _normalize_last(b, x, dt, axes, eps):
    mean = b.reduce("ReduceMean", x, axes, True)
    d = b.op("Sub", [x, mean])
    var = b.reduce("ReduceMean", b.op("Mul", [d, d]), axes, True)
    return b.op("Div", [d, b.op("Sqrt", [b.op("Add", [var, b.scalar(eps, dt)])])])


@op("layer_norm")
def _layer_norm(b, node, input, normalized_shape, weight=None, bias=None, eps=1e-05, cudnn_enable=None):
    r, k = _rank(input), len(normalized_shape)
    dt, shape = input.dtype, list(input.shape[r - k:])
    if b.opset >= 17:
        ins = [b.name(input), b.name(weight) if weight is not None else b.const(np.ones(shape, dt.np))]
        if bias is not None:
            ins.append(b.name(bias))
        return b.op("LayerNormalization", ins, axis=-k, epsilon=float(eps))
    y = _normalize_last(b, b.name(input), dt, list(range(r - k, r)), float(eps))
    if weight is not None:
        y = b.op("Mul", [y, b.name(weight)])
    return y if bias is None else b.op("Add", [y, b.name(bias)])


@op("group_norm")
def _group_norm(b, node, input, num_groups, weight=None, bias=None, eps=1e-05):
    x, dt, r = b.name(input), input.dtype, _rank(input)
    g = b.op("Reshape", [x, b.i64([0, int(num_groups), -1])])
    y = b.op("Reshape", [_normalize_last(b, g, dt, [2], float(eps)), b.shape_of(x)])
    shape = b.i64([input.shape[1]] + [1] * (r - 2))
    if weight is not None:
        y = b.op("Mul", [y, b.op("Reshape", [b.name(weight), shape])])
    return y if bias is None else b.op("Add", [y, b.op("Reshape", [b.name(bias), shape])])


@op("embedding")
def _embedding(b, node, input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
               sparse=False):
    if max_norm is not None:
        raise Unsupported("embedding with max_norm (it renormalises the weight in place)")
    return b.op("Gather", [b.name(weight), b.name(input)], axis=0)


@op("scaled_dot_product_attention")
def _sdpa(b, node, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
          enable_gqa=False):
    if dropout_p:
        raise Unsupported("attention dropout (dropout_p > 0): export runs in eval mode; pass dropout_p=0.0 when "
                          "not training")
    if enable_gqa:
        raise Unsupported("enable_gqa=True")
    dt, r = query.dtype, _rank(query)
    s = float(scale) if scale is not None else 1 / math.sqrt(query.shape[-1])
    perm = list(range(r))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    k_t = b.op("Transpose", [b.name(key)], perm=perm)
    scores = b.op("Mul", [b.op("MatMul", [b.name(query), k_t]), b.scalar(s, dt)])
    neg = b.scalar(-np.inf, dt)
    if is_causal:
        L, S = b.dim(query, -2), b.dim(key, -2)
        if not isinstance(L, Sym) and not isinstance(S, Sym):
            masked = b.const(np.triu(np.ones((L, S), bool), 1))
        else:
            zero, one = b.const(np.array(0, np.int64)), b.const(np.array(1, np.int64))
            rows = b.unsqueeze(b.op("Range", [zero, b.scalar_int(L), one]), [1])
            cols = b.unsqueeze(b.op("Range", [zero, b.scalar_int(S), one]), [0])
            masked = b.op("Greater", [cols, rows])
        scores = b.op("Where", [masked, neg, scores])
    if attn_mask is not None:
        if attn_mask.dtype is D.bool_:
            scores = b.op("Where", [b.name(attn_mask), scores, neg])
        else:
            scores = b.op("Add", [scores, b.cast(b.name(attn_mask), attn_mask.dtype, dt)])
    return b.op("MatMul", [b.op("Softmax", [scores], axis=-1), b.name(value)])


@op("pixel_shuffle")
def _pixel_shuffle(b, node, input, upscale_factor):
    _check_batched(input, 2, "pixel_shuffle")
    return b.op("DepthToSpace", [b.name(input)], blocksize=int(upscale_factor), mode="CRD")


@op("pixel_unshuffle")
def _pixel_unshuffle(b, node, input, downscale_factor):
    _check_batched(input, 2, "pixel_unshuffle")
    n, c, h, w = b.dims(input)
    f = int(downscale_factor)
    x = b.op("Reshape", [b.name(input), b.ints([n, c, h // f, f, w // f, f])])
    x = b.op("Transpose", [x], perm=[0, 1, 3, 5, 2, 4])
    return b.op("Reshape", [x, b.ints([n, c * f * f, h // f, w // f])])


@op("constant_pad_nd", "pad")
def _pad(b, node, input, pad, mode="constant", value=None):
    r, k = _rank(input), len(pad) // 2
    begins, ends = [0] * r, [0] * r
    for i in range(k):
        begins[r - 1 - i], ends[r - 1 - i] = pad[2 * i], pad[2 * i + 1]
    if node.op == "constant_pad_nd":
        mode, value = "constant", mode if not isinstance(mode, str) else value
    onnx_mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}.get(mode)
    if onnx_mode is None:
        raise Unsupported(f"padding mode {mode!r}")
    if onnx_mode == "wrap" and b.opset < 19:
        raise Unsupported("circular padding needs opset 19 (Pad mode 'wrap')")
    ins = [b.name(input), b.ints(begins + ends)]
    if onnx_mode == "constant":
        ins.append(b.scalar(0 if value is None else value, input.dtype))
    return b.op("Pad", ins, mode=onnx_mode)


@op("interpolate", "upsample")
def _interpolate(b, node, input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                 recompute_scale_factor=None, antialias=False):
    n = _rank(input) - 2
    if antialias:
        raise Unsupported("antialias=True")
    if mode == "nearest":
        attrs = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    elif mode in ("linear", "bilinear", "trilinear"):
        attrs = dict(mode="linear", coordinate_transformation_mode="align_corners" if align_corners
                     else "pytorch_half_pixel")
    elif mode == "bicubic":
        attrs = dict(mode="cubic", cubic_coeff_a=-0.75, coordinate_transformation_mode="align_corners"
                     if align_corners else "pytorch_half_pixel")
    else:
        raise Unsupported(f"interpolate mode {mode!r}")
    x = b.name(input)
    if scale_factor is not None and not recompute_scale_factor:
        scales = b.const(np.array([1.0, 1.0] + [float(s) for s in _tup(scale_factor, n)], np.float32))
        return b.op("Resize", [x, "", scales], **attrs)
    out = list(_out(node).shape[2:])
    sizes = b.op("Concat", [b.op("Slice", [b.shape_of(x), b.i64([0]), b.i64([2])]), b.i64(out)], axis=0)
    return b.op("Resize", [x, "", "", sizes], **attrs)


@op("embedding_bag")
def _embedding_bag(b, node, input, weight, offsets=None, max_norm=None, norm_type=2, scale_grad_by_freq=False,
                   mode="mean", sparse=False, per_sample_weights=None, include_last_offset=False, padding_idx=None):
    if offsets is not None or _rank(input) != 2:
        raise Unsupported("embedding_bag with offsets (bags of data-dependent sizes); pass a 2-D input of equal bags")
    if max_norm is not None or padding_idx is not None:
        raise Unsupported("embedding_bag with max_norm or padding_idx")
    rows = b.op("Gather", [b.name(weight), b.name(input)], axis=0)
    if per_sample_weights is not None:
        rows = b.op("Mul", [rows, b.unsqueeze(b.name(per_sample_weights), [2])])
    kind = {"sum": "ReduceSum", "mean": "ReduceMean", "max": "ReduceMax"}[mode]
    return b.reduce(kind, rows, [1], False)


@op("cosine_similarity")
def _cosine_similarity(b, node, x1, x2, dim=1, eps=1e-08):
    dt = _out(node).dtype
    a, c = b.operand(x1, dt), b.operand(x2, dt)
    a, c = b.op("Expand", [a, b.shape_of(c)]), b.op("Expand", [c, b.shape_of(a)])     # the broadcast shape
    ax = [_axis(dim, max(_rank(x1), _rank(x2)))]
    na = b.op("Max", [b.reduce("ReduceL2", a, ax, True), b.scalar(eps, dt)])
    nc = b.op("Max", [b.reduce("ReduceL2", c, ax, True), b.scalar(eps, dt)])
    return b.reduce("ReduceSum", b.op("Mul", [b.op("Div", [a, na]), b.op("Div", [c, nc])]), ax, False)


@op("pairwise_distance")
def _pairwise_distance(b, node, x1, x2, p=2.0, eps=1e-06, keepdim=False):
    dt = _out(node).dtype
    d = b.op("Add", [b.op("Sub", [b.operand(x1, dt), b.operand(x2, dt)]), b.scalar(eps, dt)])
    if p in (1, 2):
        return b.reduce("ReduceL1" if p == 1 else "ReduceL2", d, [-1], keepdim)
    if p == math.inf:
        return b.reduce("ReduceMax", b.op("Abs", [d]), [-1], keepdim)
    s = b.reduce("ReduceSum", b.op("Pow", [b.op("Abs", [d]), b.scalar(p, dt)]), [-1], keepdim)
    return b.op("Pow", [s, b.scalar(1.0 / p, dt)])


def _one_hot_kernel(c, k):
    """(c * kh * kw, 1, kh, kw): channel c * kh * kw + i * kw + j picks kernel position (i, j): im2col as a grouped
    convolution."""
    kh, kw = k
    w = np.zeros((c, kh * kw, 1, kh, kw), np.float32)
    for i in range(kh):
        for j in range(kw):
            w[:, i * kw + j, 0, i, j] = 1
    return w.reshape(c * kh * kw, 1, kh, kw)


@op("unfold")
def _unfold(b, node, input, kernel_size, dilation=1, padding=0, stride=1):
    _check_batched(input, 2, "unfold")
    c, k, p = input.shape[1], _tup(kernel_size, 2), _tup(padding, 2)
    w = b.const(_one_hot_kernel(c, k).astype(input.dtype.np), "unfold_kernel")
    y = b.op("Conv", [b.name(input), w], kernel_shape=k, strides=_tup(stride, 2), pads=p + p,
             dilations=_tup(dilation, 2), group=c)
    return b.op("Reshape", [y, b.i64([0, 0, -1])])


@op("fold")
def _fold(b, node, input, output_size, kernel_size, dilation=1, padding=0, stride=1):
    if _rank(input) != 3:
        raise Unsupported(f"fold on a {_rank(input)}-d input (export needs the batched form, 3-d)")
    k, d, p, s, out = (_tup(a, 2) for a in (kernel_size, dilation, padding, stride, output_size))
    c = input.shape[1] // (k[0] * k[1])
    blocks = [(o + 2 * pp - dd * (kk - 1) - 1) // ss + 1 for o, pp, dd, kk, ss in zip(out, p, d, k, s)]
    extra = [o - (ss * (n - 1) + dd * (kk - 1) + 1 - 2 * pp) for o, ss, n, dd, kk, pp in zip(out, s, blocks, d, k, p)]
    x = b.op("Reshape", [b.name(input), b.i64([0, 0] + blocks)])
    w = b.const(_one_hot_kernel(c, k).astype(input.dtype.np), "fold_kernel")
    return b.op("ConvTranspose", [x, w], kernel_shape=k, strides=s, pads=p + p, dilations=d, group=c,
                output_padding=extra)


@op("lstm_cell")
def _lstm_cell(b, node, gi, gh, c):
    """(h', c') from the gate pre-activations (B, 4H), PyTorch's gate order i, f, g, o."""
    hid = c.shape[-1]
    i, f, g, o = b.op("Split", [b.op("Add", [b.name(gi), b.name(gh)]), b.i64([hid] * 4)], n_out=4, axis=-1)
    c2 = b.op("Add", [b.op("Mul", [b.op("Sigmoid", [f]), b.name(c)]),
                      b.op("Mul", [b.op("Sigmoid", [i]), b.op("Tanh", [g])])])
    return b.op("Mul", [b.op("Sigmoid", [o]), b.op("Tanh", [c2])]), c2


@op("gru_cell")
def _gru_cell(b, node, gi, gh, h):
    """h' from the input and hidden projections (B, 3H), PyTorch's gate order r, z, n."""
    sizes = b.i64([h.shape[-1]] * 3)
    ir, iz, in_ = b.op("Split", [b.name(gi), sizes], n_out=3, axis=-1)
    hr, hz, hn = b.op("Split", [b.name(gh), sizes], n_out=3, axis=-1)
    r = b.op("Sigmoid", [b.op("Add", [ir, hr])])
    z = b.op("Sigmoid", [b.op("Add", [iz, hz])])
    n = b.op("Tanh", [b.op("Add", [in_, b.op("Mul", [r, hn])])])
    return b.op("Add", [n, b.op("Mul", [z, b.op("Sub", [b.name(h), n])])])            # (1 - z) n + z h


def _reduce_loss(b, x, reduction):
    if reduction == "none":
        return x
    if reduction not in ("mean", "sum"):
        raise Unsupported(f"reduction {reduction!r}")
    return b.reduce("ReduceMean" if reduction == "mean" else "ReduceSum", x, None, False)


@op("mse_loss", "l1_loss")
def _pointwise_loss(b, node, input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    if size_average is not None or reduce is not None or weight is not None:
        raise Unsupported("the legacy size_average/reduce arguments or weight")
    dt = _out(node).dtype
    d = b.op("Sub", [b.operand(input, dt), b.operand(target, dt)])
    return _reduce_loss(b, b.op("Mul", [d, d]) if node.op == "mse_loss" else b.op("Abs", [d]), reduction)


@op("cross_entropy", "nll_loss")
def _class_loss(b, node, input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                reduction="mean", label_smoothing=0.0, dtype=None):
    if size_average is not None or reduce is not None:
        raise Unsupported("the legacy size_average/reduce arguments")
    if label_smoothing or target.dtype.is_floating_point:
        raise Unsupported("label smoothing or class-probability targets")
    if _rank(input) < 2:
        raise Unsupported("an unbatched input")
    kind = "SoftmaxCrossEntropyLoss" if node.op == "cross_entropy" else "NegativeLogLikelihoodLoss"
    dt = input.dtype if dtype is None else D.to_dtype(dtype)         # cross_entropy(..., dtype=): of the cast input
    ins = [b.operand(input, dt), b.name(target)] + ([b.operand(weight, dt)] if weight is not None else [])
    return b.op(kind, ins, reduction=reduction, ignore_index=int(ignore_index))


@op("module:LSTM", "module:GRU", "module:RNN")
def _recurrent(b, node, input, hx=None, **cfg):
    return recurrent(b, node, input, hx, **cfg)
