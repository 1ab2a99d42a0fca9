"""Benchmarks: pytest-benchmark files for the cpu device and the GPU runner (bench/gpu.py); the cases live in
tritorch.benchmark."""
