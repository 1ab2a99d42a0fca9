"""``nn.Parameter``: a tensor that a Module registers as one of its parameters when assigned as an attribute."""
from .._tensor import Tensor

__all__ = ["Parameter", "Buffer"]


class Parameter(Tensor):
    """A leaf tensor that shares ``data``'s storage and requires grad by default.

    Ops on a Parameter return plain tensors; only the parameter object itself is of this class, which is what
    ``Module.__setattr__`` looks for.
    """

    def __new__(cls, data=None, requires_grad=True):
        if data is None:
            from .. import _creation
            data = _creation.empty(0)
        if not isinstance(data, Tensor):
            raise TypeError(f"Parameter(): argument 'data' must be Tensor, not {type(data).__name__}")
        p = cls._make(data._storage, data._offset, data._shape, data._stride, data.dtype)
        p._np_cache = data._np_cache
        if requires_grad:
            p.requires_grad_(True)
        return p

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    def __deepcopy__(self, memo):
        if id(self) in memo:
            return memo[id(self)]
        result = type(self)(self.detach().clone(), self.requires_grad)
        memo[id(self)] = result
        return result

    def __reduce_ex__(self, proto):
        return (_rebuild_parameter, (self.detach(), self.requires_grad))


def _rebuild_parameter(data, requires_grad):
    return Parameter(data, requires_grad)


class Buffer:
    """``nn.Buffer(tensor, persistent=True)``: marks a tensor assigned to a Module attribute as a buffer.

    Assigning a Buffer registers ``tensor`` itself (the Buffer is only a marker, as in PyTorch 2.5).
    """

    def __init__(self, data=None, *, persistent=True):
        if data is not None and not isinstance(data, Tensor):
            raise TypeError(f"Buffer(): argument 'data' must be Tensor, not {type(data).__name__}")
        self.data = data
        self.persistent = persistent
