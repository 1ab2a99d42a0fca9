"""``tritorch.profiler``: what ran, for how long and over how many bytes, on any device mode (PyTorch's names).

    with tritorch.profiler.profile() as prof:
        with tritorch.profiler.record_function("step"):
            loss = model(x).sum(); loss.backward(); opt.step()
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=10))
    prof.kernel_launches(), prof.kernel_bytes()

Two kinds of events (``prof.events()``, each a ``FunctionEvent`` with ``name`` and ``kind``):

- ``"op"``: every call of a published op (seen through the op modes, tritorch/_modes.py) and every
  ``record_function`` range, with its host time (``cpu_time_total``, us). Ops call other ops and the backward pass
  calls ops too: all are kept, each with its ``depth`` (0: called by the program) and ``cpu_parent``, so
  ``self_cpu_time_total`` (less the nested ops) adds up without counting a nested call twice.
- ``"kernel"``: every Triton kernel launch (the op kernels, and the generated kernels of ``tritorch.compile``),
  hooked at Triton's launch method on both the GPU and the interpreter path, only while a profile runs. It holds
  the kernel's name, ``grid``, ``bytes`` and the host time of the launch call (on a GPU: the launch overhead; in
  the interpreter, where the launch runs the kernel: its whole run). ``bytes`` is the sum, over the tensors the
  kernel is handed, of their extent (distinct elements times item size, each tensor once, whether read, written or
  both): exactly the bytes read and written by a kernel that reads each input once and writes its output once (the
  elementwise kernels); more than that for one that touches part of a tensor, less for one that reads and writes
  the same tensor or re-reads its inputs (a matmul's tiles). Raw addresses a kernel gets (a few lookup tables)
  count 0. On a real GPU each launch also gets ``device_time_total`` (us, CUDA events, read when the profile
  stops) and each op the sum of its launches'; without a GPU (cpu, interpreter) it is None.

On ``cpu`` the ops run their NumPy references: there are op events and no kernel events. Kernels an op launches
while tuning itself on a GPU (``tritorch.autotune``, first call per key) are recorded as launches too.
"""
from ._events import EventList, FunctionEvent, FunctionEventAvg
from ._profile import ProfilerActivity, profile, record_function

__all__ = ["profile", "record_function", "ProfilerActivity", "EventList", "FunctionEvent", "FunctionEventAvg"]
