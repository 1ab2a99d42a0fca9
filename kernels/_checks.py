"""Range checks of index tensors on the device: one kernel writes the smallest and the largest index of each block,
and the host reads those few numbers (``host_check``), not the indices, before any kernel indexes with them. A bad
index is then a Python exception, never a fault inside a kernel; a launch replay (``tritorch.compile``'s
reduce-overhead) runs the same check again after the same launch."""
import triton
import triton.language as tl

from tritorch import _dtype as D
from ._common import empty, host_check
from ._launch import cdiv, ptr

__all__ = ["check_index_range"]

_BLOCK = 4096


@triton.jit
def _index_range_kernel(t_ptr, out_ptr, n, ignore_index, BLOCK: tl.constexpr):
    """The smallest and the largest of BLOCK indices, ``ignore_index`` left out (0 stands in for it, and for a block
    with none: 0 is in range whenever anything is). t: (n,) int64, contiguous; out: (programs, 2) int64, row p =
    (min, max) of indices [p * BLOCK, (p + 1) * BLOCK)."""
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    t = tl.load(t_ptr + offs, mask=offs < n, other=ignore_index)
    t = tl.where(t != ignore_index, t, 0)
    tl.store(out_ptr + 2 * pid, tl.min(t, axis=0))
    tl.store(out_ptr + 2 * pid + 1, tl.max(t, axis=0))


def check_index_range(t, size, error, ignore_index=0):
    """Raise ``error(bad)`` unless every element of the contiguous int64 ``cuda`` tensor ``t`` other than
    ``ignore_index`` lies in [0, size); ``bad`` is the lowest index where one is negative, else the highest."""
    n = t.numel()
    if n == 0:
        return
    parts = empty((cdiv(n, _BLOCK), 2), D.int64, t.device)
    _index_range_kernel[(parts._shape[0],)](ptr(t), ptr(parts), n, int(ignore_index), BLOCK=_BLOCK)
    host_check(parts, lambda values: check_range(values, size, error))


def check_range(parts, size, error):
    """Raise ``error(bad)`` where the (lowest, highest) pairs ``parts`` leave [0, size)."""
    lo, hi = min(p[0] for p in parts), max(p[1] for p in parts)
    if lo < 0 or hi >= size:
        raise error(lo if lo < 0 else hi)
