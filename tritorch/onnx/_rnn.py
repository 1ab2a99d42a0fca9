"""Recurrent layers (``module:LSTM`` / ``module:GRU`` / ``module:RNN`` nodes) as ONNX's LSTM, GRU and RNN ops, one
ONNX op per layer (both directions in one op when bidirectional).

ONNX orders the gates differently: an LSTM's rows are i, o, f, c (PyTorch: i, f, g, o), a GRU's z, r, h (PyTorch:
r, z, n, with ``linear_before_reset=1`` for PyTorch's formula). The reordered weights become new initializers named
after the layer (``rnn.W_l0``, ``rnn.R_l0``, ``rnn.B_l0``).
"""
import numpy as np

from ._builder import Unsupported

__all__ = ["recurrent"]

_ORDER = {"LSTM": [0, 3, 1, 2], "GRU": [1, 0, 2], "RNN": [0]}


def _reorder(a, mode):
    blocks = np.split(a, len(_ORDER[mode]), axis=0)
    return np.concatenate([blocks[i] for i in _ORDER[mode]], axis=0)


def _weights(b, scope, mode, layer, bias, directions):
    """(W, R, B or "") initializers of one layer, directions stacked."""
    W, R, B = [], [], []
    for d in range(directions):
        suffix = f"_l{layer}" + ("_reverse" if d else "")

        def get(name):
            key = f"{scope}.{name}{suffix}" if scope else f"{name}{suffix}"
            return b.params[key].detach().cpu().numpy()
        W.append(_reorder(get("weight_ih"), mode))
        R.append(_reorder(get("weight_hh"), mode))
        if bias:
            B.append(np.concatenate([_reorder(get("bias_ih"), mode), _reorder(get("bias_hh"), mode)]))
    pre = f"{scope}." if scope else ""
    names = [b.const(np.stack(W), f"{pre}W_l{layer}"), b.const(np.stack(R), f"{pre}R_l{layer}")]
    names.append(b.const(np.stack(B), f"{pre}B_l{layer}") if bias else "")
    return names


def recurrent(b, node, input, hx, *, input_size, hidden_size, num_layers, bias, batch_first, bidirectional,
              dropout, proj_size, nonlinearity="tanh"):
    """The node's outputs (output, h_n) or (output, h_n, c_n) from a stack of ONNX recurrent ops."""
    mode = node.op.split(":", 1)[1]
    if proj_size:
        raise Unsupported("LSTM with proj_size > 0 (ONNX's LSTM has no projection)")
    dirs = 2 if bidirectional else 1
    unbatched = len(input.shape) == 2
    x = b.name(input)
    if unbatched:
        x = b.unsqueeze(x, [1])
    elif batch_first:
        x = b.op("Transpose", [x], perm=[1, 0, 2])
    states = (list(hx) if mode == "LSTM" else [hx]) if hx is not None else []

    def state(v, layer):
        s = b.name(v)
        if unbatched:
            s = b.unsqueeze(s, [1])
        return b.op("Slice", [s, b.i64([layer * dirs]), b.i64([(layer + 1) * dirs]), b.i64([0])])
    attrs = dict(hidden_size=int(hidden_size), direction="bidirectional" if bidirectional else "forward")
    if mode == "GRU":
        attrs["linear_before_reset"] = 1
    if mode == "RNN":
        attrs["activations"] = ["Relu" if nonlinearity == "relu" else "Tanh"] * dirs
    finals = [[], []]
    for layer in range(num_layers):
        ins = [x] + _weights(b, node.scope, mode, layer, bias, dirs) + [""]
        ins += [state(v, layer) for v in states]
        while ins[-1] == "":
            ins.pop()
        outs = b.op(mode, ins, n_out=3 if mode == "LSTM" else 2, **attrs)
        y = b.op("Transpose", [outs[0]], perm=[0, 2, 1, 3])         # (seq, dirs, batch, H) -> (seq, batch, dirs, H)
        x = b.op("Reshape", [y, b.i64([0, 0, -1])])
        for i, o in enumerate(outs[1:]):
            finals[i].append(o)
    out = [x] + [f[0] if len(f) == 1 else b.op("Concat", f, axis=0) for f in finals[:2 if mode == "LSTM" else 1]]
    if unbatched:
        out = [b.squeeze(o, [1]) for o in out]
    elif batch_first:
        out[0] = b.op("Transpose", [out[0]], perm=[1, 0, 2])
    return out
