"""Benchmarks: op-level cases shared by the cpu-device pytest-benchmark files and the GPU runner (bench/gpu.py)."""
