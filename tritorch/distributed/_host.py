"""Host arrays of tensors for the ``mpi`` backend: a view when the tensor's memory is on the host, else a copy."""
import numpy as np

from .._tensor import Tensor
from ..autograd import no_grad


def host_array(t):
    """A contiguous host array of ``t``'s elements and a function that writes it back into ``t``."""
    if t._storage.on_host and t.is_contiguous():
        a = t._np
        if not a.flags.c_contiguous:
            a = np.ascontiguousarray(a)

        def back():
            if a is not t._np:
                t._np[...] = a
            t._storage.version += 1
        return a, back
    if t._storage.on_host:
        a = np.ascontiguousarray(t._np)

        def back():
            t._np[...] = a
            t._storage.version += 1
        return a, back
    a = np.ascontiguousarray(t.detach().cpu()._np)

    def back():
        with no_grad():
            t.copy_(Tensor._wrap_numpy(a).to(t.device))
    return a, back
