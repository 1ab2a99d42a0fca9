"""``tritorch.onnx``: export a model to ONNX from its traced graph (``tritorch.jit.trace``, docs/graph-ir.md).

``export(model, args, f)`` traces ``model`` in eval mode on ``args`` and writes one ONNX node group per traced op
(the table in ``_ops.py``; recurrent layers as ONNX's LSTM/GRU/RNN in ``_rnn.py``); the parameters become
initializers under their state_dict names. ``dynamic_axes`` makes input (and output) dimensions symbolic: the model
is traced again with those dimensions changed, and every baked size that follows them is computed from the input's
shape at run time (``_dynamic.py``). The ``onnx`` package is needed only when ``export`` runs (``pip install
"tritorch[onnx]"``); ``import tritorch.onnx`` works without it.
"""
import importlib
import importlib.util

from ._dynamic import DynamicAxisError
from ._export import DEFAULT_OPSET, OPSETS, UnsupportedOperatorError, export_model
from ._ops import OPS

__all__ = ["export", "UnsupportedOperatorError", "DynamicAxisError", "DEFAULT_OPSET", "SUPPORTED_OPSETS",
           "supported_ops", "is_onnx_available"]

SUPPORTED_OPSETS = tuple(OPSETS)


def _onnx():
    """The ``onnx`` module, or an ImportError that says how to install it."""
    try:
        return importlib.import_module("onnx")
    except ImportError as e:
        raise ImportError('tritorch.onnx.export needs the onnx package: pip install "tritorch[onnx]" (onnx and '
                          f"onnxruntime) ({e})") from None


def is_onnx_available():
    """Whether the ``onnx`` package can be imported."""
    return importlib.util.find_spec("onnx") is not None


def supported_ops():
    """The op names (as ``tritorch.jit`` records them) that ``export`` can map, sorted."""
    return sorted(OPS)


def export(model, args, f=None, *, input_names=None, output_names=None, dynamic_axes=None, opset_version=None,
           export_params=True, do_constant_folding=True, verbose=False, training=None, dynamo=False):
    """Export ``model`` (a Module or a function) run on ``args`` (a tensor, or a tuple of inputs ending optionally
    in a dict of keyword inputs) to ONNX; ``f`` is a path (written atomically), a binary file object, or None.
    Returns the ``onnx.ModelProto``.

    ``input_names`` / ``output_names`` name the graph's flattened inputs and outputs (default ``input_0``...,
    ``output_0``...); ``dynamic_axes`` maps such a name to ``{axis: symbol}`` (or a list of axes) to make those
    dimensions symbolic; ``opset_version`` is 13 to 21 (default 17). The model runs in eval mode (its mode is
    restored afterwards). An op with no ONNX mapping raises ``UnsupportedOperatorError`` naming the op and the
    module that called it. ``export_params``, ``do_constant_folding``, ``verbose``, ``training`` and ``dynamo`` are
    PyTorch's; only their defaults (or eval mode) are supported."""
    if not export_params:
        raise ValueError("export_params=False is not supported: the parameters are always exported as initializers")
    if training not in (None, False, "eval", "EVAL") and str(training).split(".")[-1].upper() != "EVAL":
        raise ValueError(f"training={training!r} is not supported: tritorch.onnx exports the model in eval mode")
    if dynamo:
        raise ValueError("dynamo=True is not supported: tritorch.onnx exports from tritorch.jit.trace's graph")
    return export_model(_onnx(), model, args, f, input_names, output_names, dynamic_axes, opset_version)

