"""Proving kernels compile without a GPU: ``tritorch compile-check`` (the CI gate) and ``tritorch precompile``.

:mod:`.record` records the launches tritorch makes on a GPU (without one, running nothing); :mod:`.gate` compiles
them with Triton's GPU compiler for a target, reports registers, spills, shared memory and tensor-core use, gates on
the findings, and fills Triton's on-disk cache ahead of a first run.
"""
