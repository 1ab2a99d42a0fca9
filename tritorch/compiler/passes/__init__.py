"""Graph passes of ``tritorch.compile``, each a function ``Graph -> Graph`` that leaves its input unchanged, each in a
file of its own:

- ``dead_code.py``: ``eliminate_dead_code``;
- ``attention.py``: ``fuse_attention``, attention written in ops as the flash-attention kernels;
- ``matmul.py``: ``matmul_as_linear``, ``x @ w (+ b)`` of a 2-D ``w`` as a linear, for the epilogue passes;
- ``epilogues.py``: activations, training-mode dropout and residual adds into the linear (and conv) kernels'
  epilogues: ``fuse_linear_epilogue``, ``fuse_linear_dropout``, ``fuse_linear_residual``;
- ``conv_pool.py``: ``fuse_conv_pool``, a convolution's activation differentiated in the max pooling that reads it
  (``kernels/conv_pool.py``);
- ``norms.py``: ``fuse_layer_norm`` and ``fuse_rms_norm``, layer and root-mean-square norms written in ops as the
  row-norm kernels;
- ``losses.py``: ``fuse_log_softmax_nll``, ``nll_loss(log_softmax(x))`` as ``cross_entropy(x)``, and
  ``fuse_loss_cast``, a float32 cast of half logits read by ``cross_entropy`` as its prologue;
- ``chain.py``: ``fuse_linear_chain``, linears in a row as one node (``kernels/linear_chain.py``);
- ``norm_linear.py``: ``fuse_norm_linear``, a layer (RMS) norm read by a linear as that linear's prologue;
- ``layout.py``: ``plan_layouts``, a batched product written in the order its transpose-then-reshape reader wants;
- ``pointwise.py``: ``rematerialize`` and ``fuse_pointwise``, elementwise trees (and a reduction they feed) as
  generated kernels (``codegen.py``);
- ``graph.py``: what they share (a graph with new nodes, who reads what).
"""
from .attention import fuse_attention
from .chain import fuse_linear_chain
from .conv_pool import fuse_conv_pool
from .dead_code import eliminate_dead_code
from .epilogues import fuse_linear_dropout, fuse_linear_epilogue, fuse_linear_residual
from .layout import plan_layouts
from .losses import fuse_log_softmax_nll, fuse_loss_cast
from .matmul import matmul_as_linear
from .norm_linear import fuse_norm_linear
from .norms import fuse_layer_norm, fuse_rms_norm, rms_norm_rows
from .pointwise import FUSIBLE_DTYPES, Param, fuse_pointwise, pointwise_spec, reduction_spec, rematerialize

__all__ = ["eliminate_dead_code", "fuse_attention", "matmul_as_linear", "fuse_linear_epilogue", "fuse_linear_dropout",
           "fuse_linear_residual", "fuse_conv_pool", "fuse_layer_norm", "fuse_rms_norm", "rms_norm_rows",
           "fuse_linear_chain", "fuse_norm_linear", "fuse_log_softmax_nll", "fuse_loss_cast", "plan_layouts",
           "fuse_pointwise", "rematerialize", "pointwise_spec", "reduction_spec", "Param", "FUSIBLE_DTYPES"]
