"""Whole-tensor comparisons: ``isclose``, ``allclose`` and ``equal``, composed of the elementwise and reduction
kernels (on cpu their NumPy references)."""
from tritorch import _dtype as D
from tritorch._tensor import Tensor, register

__all__ = ["isclose", "allclose", "equal"]


@register("isclose")
def isclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    """``|input - other| <= atol + rtol * |other|`` elementwise (infinities equal only to themselves)."""
    if not isinstance(input, Tensor) or not isinstance(other, Tensor):
        raise TypeError(f"isclose(): expected two Tensors, got {type(input).__name__} and {type(other).__name__}")
    if input.dtype is not other.dtype:
        raise RuntimeError(f"{D.scalar_name(input.dtype)} did not match {D.scalar_name(other.dtype)}")
    if rtol < 0 or atol < 0:
        raise RuntimeError(f"isclose: rtol and atol must be non-negative, got rtol={rtol} and atol={atol}")
    a, b = (input, other) if input.dtype is not D.bool_ else (input.to(D.get_default_dtype()),
                                                              other.to(D.get_default_dtype()))    # as PyTorch
    near = (a - b).abs() <= atol + rtol * b.abs()
    if input.dtype.is_floating_point:
        near = near & input.isfinite() & other.isfinite()
    close = (input == other) | near
    if equal_nan and input.dtype.is_floating_point:
        close = close | (input.isnan() & other.isnan())
    return close


@register("allclose")
def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    """Whether every element of ``input`` is close to ``other`` (see ``isclose``): a Python bool."""
    return bool(isclose(input, other, rtol, atol, equal_nan).all().item())


@register("equal")
def equal(input, other):
    """Whether the two tensors have the same shape and the same elements: a Python bool."""
    if input._shape != other._shape:
        return False
    return bool((input == other).all().item())
