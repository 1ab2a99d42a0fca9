"""``tritorch.nn.modules.rnn``: PyTorch's module path for these layers (the classes of ``tritorch.nn``)."""
from ..rnn import RNNBase, RNN, LSTM, GRU, RNNCellBase, RNNCell, LSTMCell, GRUCell  # noqa: F401

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]
