"""``tritorch.backends``: PyTorch's backend switches. ``cuda.matmul.allow_tf32`` (default False) and
``cudnn.allow_tf32`` (default True) choose TF32 tensor-core math for float32 matmuls and convolutions on the GPU (the
interpreter always computes in full fp32); ``cudnn.benchmark``/``deterministic``/``enabled`` are kept for programs
that set them (tritorch's autotuner runs either way, and its kernels are deterministic); ``mps`` is never there."""
from . import cuda, cudnn, mps  # noqa: F401

__all__ = ["cuda", "cudnn", "mps"]
