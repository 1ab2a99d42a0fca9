"""Kernels: one module per op family. Each holds the Triton kernels (forward and backward), the NumPy reference of
each, and the op's autograd ``Function`` that dispatches between them by device mode."""
