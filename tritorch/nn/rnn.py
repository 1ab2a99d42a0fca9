"""Recurrent layers: ``RNN``, ``LSTM``, ``GRU`` and their one-step cells, with PyTorch's parameters and layouts.

A layer computes its input projection ``x @ W_ih^T + b_ih`` for the whole sequence in one matmul; each time step
then costs one matmul for ``h @ W_hh^T + b_hh`` and one fused gate kernel (``kernels/rnn.py``) for LSTM and GRU
(``act(gi + gh)`` for the plain RNN).
"""
import math
import warnings

import tritorch
from .. import _creation
from ..kernels import rnn as _kr
from ..kernels.dropout import dropout as _dropout
from ..kernels.linear import linear
from . import init
from .module import Module
from .parameter import Parameter
from .utils.rnn import PackedSequence, _unpack_sorted

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _rnn_step(mode, gi, gh, state):
    """The new state of one step from the projections ``gi`` and ``gh`` (state: h, or (h, c) for LSTM)."""
    if mode == "LSTM":
        return _kr.lstm_cell(gi, gh, state[1])
    if mode == "GRU":
        return _kr.gru_cell(gi, gh, state)
    a = gi + gh
    return a.tanh() if mode == "RNN_TANH" else a.relu()


def _check_input_size(input, input_size):
    if input.shape[-1] != input_size:
        raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected {input_size}, "
                           f"got {input.shape[-1]}")


def _check_hidden(h, expected, what="hidden"):
    if tuple(h.shape) != tuple(expected):
        raise RuntimeError(f"Expected {what} size {tuple(expected)}, got {list(h.shape)}")


class RNNBase(Module):
    """The stack of (bi)directional recurrent layers shared by RNN, LSTM and GRU."""

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__()
        if proj_size:
            raise NotImplementedError("proj_size is not supported by tritorch")
        if not isinstance(dropout, (int, float)) or not 0 <= dropout <= 1 or isinstance(dropout, bool):
            raise ValueError("dropout should be a number in range [0, 1] representing the probability of an "
                             "element being zeroed")
        if not isinstance(hidden_size, int) or hidden_size <= 0:
            raise ValueError("hidden_size must be an integer greater than zero" if isinstance(hidden_size, int)
                             else f"hidden_size should be of type int, got: {type(hidden_size).__name__}")
        if num_layers <= 0:
            raise ValueError("num_layers must be greater than zero")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                          f"expects num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}")
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = 0
        gate = _GATES[mode] * hidden_size
        self._flat_weights_names = []
        for layer in range(num_layers):
            for direction in range(2 if bidirectional else 1):
                in_size = input_size if layer == 0 else hidden_size * (2 if bidirectional else 1)
                sfx = f"_l{layer}" + ("_reverse" if direction else "")
                shapes = [("weight_ih", (gate, in_size)), ("weight_hh", (gate, hidden_size))]
                if bias:
                    shapes += [("bias_ih", (gate,)), ("bias_hh", (gate,))]
                for name, shape in shapes:
                    setattr(self, name + sfx, Parameter(_creation.empty(shape, device=device, dtype=dtype)))
                    self._flat_weights_names.append(name + sfx)
        self.reset_parameters()

    def reset_parameters(self):
        """Every weight and bias ~ U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for name in self._flat_weights_names:
            init.uniform_(getattr(self, name), -stdv, stdv)

    def flatten_parameters(self):
        """A no-op: the weights are separate tensors here (there is no cuDNN weight buffer to compact)."""

    @property
    def all_weights(self):
        return [[getattr(self, n) for n in self._flat_weights_names[i:i + (4 if self.bias else 2)]]
                for i in range(0, len(self._flat_weights_names), 4 if self.bias else 2)]

    def _layer_params(self, layer, direction):
        sfx = f"_l{layer}" + ("_reverse" if direction else "")
        w_ih, w_hh = getattr(self, "weight_ih" + sfx), getattr(self, "weight_hh" + sfx)
        b_ih = getattr(self, "bias_ih" + sfx) if self.bias else None
        b_hh = getattr(self, "bias_hh" + sfx) if self.bias else None
        return w_ih, w_hh, b_ih, b_hh

    def _run_direction(self, x, state, params, reverse, masks=None):
        """Outputs (T, B, H) of one direction of one layer over x (T, B, in), and its final state. ``masks`` (packed
        input): per step a (B, 1) tensor, 1 where the sequence is still running; elsewhere the state is kept, so
        each sequence ends (or, reversed, starts) at its own length."""
        w_ih, w_hh, b_ih, b_hh = params
        T = x.shape[0]
        gi_all = linear(x, w_ih, b_ih)
        outs = [None] * T
        for t in (range(T - 1, -1, -1) if reverse else range(T)):
            h = state[0] if self.mode == "LSTM" else state
            new = _rnn_step(self.mode, gi_all[t], linear(h, w_hh, b_hh), state)
            if masks is not None:
                m = masks[t]
                new = tuple(o + m * (n - o) for n, o in zip(new, state)) if self.mode == "LSTM" \
                    else state + m * (new - state)
            state = new
            outs[t] = state[0] if self.mode == "LSTM" else state
        if T == 0:
            return x.new_zeros((0, x.shape[1], self.hidden_size)), state
        return tritorch.stack(outs, 0), state

    def forward(self, input, hx=None):
        if isinstance(input, PackedSequence):
            return self._forward_packed(input, hx)
        return self._forward(input, hx)

    def _forward_packed(self, input, hx):
        """A PackedSequence in, a PackedSequence out (same batch sizes and order); states in the caller's order."""
        x, lens = _unpack_sorted(input)
        if input.sorted_indices is not None and hx is not None:
            hx = tuple(h.index_select(1, input.sorted_indices) for h in hx) if self.mode == "LSTM" \
                else hx.index_select(1, input.sorted_indices)
        masks = [tritorch.tensor((lens > t).astype(float)[:, None], dtype=x.dtype, device=x.device)
                 for t in range(x.shape[0])]
        output, state = self._forward(x, hx, masks=masks, batch_first=False)
        bs = [int(b) for b in input.batch_sizes.tolist()]
        data = tritorch.cat([output[t, :b] for t, b in enumerate(bs)], 0)
        if input.unsorted_indices is not None:
            state = tuple(s.index_select(1, input.unsorted_indices) for s in state) if self.mode == "LSTM" \
                else state.index_select(1, input.unsorted_indices)
        return PackedSequence(data, input.batch_sizes, input.sorted_indices, input.unsorted_indices), state

    def _forward(self, input, hx=None, masks=None, batch_first=None):
        batch_first = self.batch_first if batch_first is None else batch_first
        lstm = self.mode == "LSTM"
        batched = input.dim() == 3
        if input.dim() not in (2, 3):
            raise ValueError(f"{type(self).__name__}: Expected input to be 2D or 3D, got {input.dim()}D instead")
        _check_input_size(input, self.input_size)
        x = input if batched else input.unsqueeze(1)
        if batch_first and batched:
            x = x.transpose(0, 1)
        B = x.shape[1]
        D = 2 if self.bidirectional else 1
        shape = (self.num_layers * D, B, self.hidden_size)
        if hx is None:
            h0 = _creation.zeros(shape, dtype=x.dtype, device=x.device)
            hx = (h0, h0) if lstm else h0
        else:
            hs = hx if lstm else (hx,)
            if not batched:
                for h in hs:
                    if h.dim() != 2:
                        raise RuntimeError(f"For unbatched 2-D input, hx should also be 2-D but got {h.dim()}-D "
                                           "tensor")
                hs = tuple(h.unsqueeze(1) for h in hs)
            elif any(h.dim() != 3 for h in hs):
                bad = next(h for h in hs if h.dim() != 3)
                raise RuntimeError(f"For batched 3-D input, hx should also be 3-D but got {bad.dim()}-D tensor")
            _check_hidden(hs[0], shape, "hidden[0]" if lstm else "hidden")
            if lstm:
                _check_hidden(hs[1], shape, "hidden[1]")
            hx = hs if lstm else hs[0]
        h_n, c_n = [], []
        layer_in = x
        for layer in range(self.num_layers):
            outs = []
            for d in range(D):
                k = layer * D + d
                state = (hx[0][k], hx[1][k]) if lstm else hx[k]
                out, state = self._run_direction(layer_in, state, self._layer_params(layer, d), d == 1, masks)
                outs.append(out)
                h_n.append(state[0] if lstm else state)
                if lstm:
                    c_n.append(state[1])
            layer_in = outs[0] if D == 1 else tritorch.cat(outs, 2)
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_in = _dropout(layer_in, self.dropout, True)
        output = layer_in
        h_n = tritorch.stack(h_n, 0)
        c_n = tritorch.stack(c_n, 0) if lstm else None
        if batch_first and batched:
            output = output.transpose(0, 1)
        if not batched:
            output, h_n = output.squeeze(1), h_n.squeeze(1)
            c_n = c_n.squeeze(1) if lstm else None
        return output, ((h_n, c_n) if lstm else h_n)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        return s


class RNN(RNNBase):
    """Elman RNN: ``h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)`` with act tanh or relu."""

    def __init__(self, *args, **kwargs):
        nonlinearity = kwargs.pop("nonlinearity", "tanh")
        if len(args) > 3:
            nonlinearity = args[3]
            args = args[:3] + args[4:]
        if nonlinearity == "tanh":
            mode = "RNN_TANH"
        elif nonlinearity == "relu":
            mode = "RNN_RELU"
        else:
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        self.nonlinearity = nonlinearity
        super().__init__(mode, *args, **kwargs)

    def extra_repr(self):
        s = super().extra_repr()
        return s + (", nonlinearity='relu'" if self.nonlinearity != "tanh" else "")


class LSTM(RNNBase):
    """Long short-term memory; returns ``(output, (h_n, c_n))``."""

    def __init__(self, *args, **kwargs):
        super().__init__("LSTM", *args, **kwargs)


class GRU(RNNBase):
    """Gated recurrent unit; returns ``(output, h_n)``."""

    def __init__(self, *args, **kwargs):
        super().__init__("GRU", *args, **kwargs)


class RNNCellBase(Module):
    """One time step: parameters weight_ih (G*H, in), weight_hh (G*H, H), bias_ih, bias_hh ~ U(-1/sqrt(H),
    1/sqrt(H))."""

    def __init__(self, input_size, hidden_size, bias, num_chunks, device=None, dtype=None):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.weight_ih = Parameter(_creation.empty((num_chunks * hidden_size, input_size), device=device,
                                                   dtype=dtype))
        self.weight_hh = Parameter(_creation.empty((num_chunks * hidden_size, hidden_size), device=device,
                                                   dtype=dtype))
        if bias:
            self.bias_ih = Parameter(_creation.empty(num_chunks * hidden_size, device=device, dtype=dtype))
            self.bias_hh = Parameter(_creation.empty(num_chunks * hidden_size, device=device, dtype=dtype))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self):
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for p in self.parameters():
            init.uniform_(p, -stdv, stdv)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s

    def _prepare(self, input, hx, n_states):
        """input as (B, in), the states as (B, H) each (zeros when None), and whether the input was batched."""
        if input.dim() not in (1, 2):
            raise ValueError(f"{type(self).__name__}: Expected input to be 1D or 2D, got {input.dim()}D instead")
        _check_input_size(input, self.input_size)
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)
        shape = (x.shape[0], self.hidden_size)
        if hx is None:
            z = _creation.zeros(shape, dtype=x.dtype, device=x.device)
            return x, [z] * n_states, batched
        hs = list(hx) if n_states == 2 else [hx]
        out = []
        for k, h in enumerate(hs):
            if h.dim() != input.dim():
                raise ValueError(f"{type(self).__name__}: Expected hidden to be {input.dim()}D, got {h.dim()}D "
                                 "instead")
            h = h if batched else h.unsqueeze(0)
            if h.shape[0] != shape[0]:
                raise RuntimeError(f"Input batch size {shape[0]} doesn't match hidden{k} batch size {h.shape[0]}")
            if h.shape[1] != self.hidden_size:
                raise RuntimeError(f"hidden{k} has inconsistent hidden_size: got {h.shape[1]}, expected "
                                   f"{self.hidden_size}")
            out.append(h)
        return x, out, batched

    def _project(self, x, h):
        return linear(x, self.weight_ih, self.bias_ih), linear(h, self.weight_hh, self.bias_hh)


class RNNCell(RNNCellBase):
    """``h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)``, act tanh or relu."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity: {nonlinearity}")
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input, hx=None):
        x, (h,), batched = self._prepare(input, hx, 1)
        gi, gh = self._project(x, h)
        h = _rnn_step("RNN_TANH" if self.nonlinearity == "tanh" else "RNN_RELU", gi, gh, h)
        return h if batched else h.squeeze(0)


class LSTMCell(RNNCellBase):
    """One LSTM step: returns ``(h', c')``."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)

    def forward(self, input, hx=None):
        x, (h, c), batched = self._prepare(input, hx, 2)
        gi, gh = self._project(x, h)
        h, c = _kr.lstm_cell(gi, gh, c)
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))


class GRUCell(RNNCellBase):
    """One GRU step: returns ``h'``."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)

    def forward(self, input, hx=None):
        x, (h,), batched = self._prepare(input, hx, 1)
        gi, gh = self._project(x, h)
        h = _kr.gru_cell(gi, gh, h)
        return h if batched else h.squeeze(0)
