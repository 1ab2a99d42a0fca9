"""Gradient clipping: ``clip_grad_norm_`` (one norm per gradient, then the norm of those norms) and
``clip_grad_value_``. The scale is applied on the device, without a host sync unless ``error_if_nonfinite``."""
import math

import tritorch
from ..._tensor import Tensor
from ...autograd.grad_mode import no_grad

__all__ = ["clip_grad_norm_", "clip_grad_norm", "clip_grad_value_", "get_total_norm", "clip_grads_with_norm_"]


def _as_list(tensors):
    if isinstance(tensors, Tensor):
        return [tensors]
    return list(tensors)


def _abs_max(g):
    amax = getattr(tritorch, "amax", None)
    if amax is not None:
        return amax(g.abs()) if g.numel() else g.new_zeros(())
    a = g.detach().abs()._to_host_array()
    return tritorch.tensor(float(a.max()) if a.size else 0.0, dtype=g.dtype, device=g.device)


def _vector_norm(g, p):
    """The ``p``-norm of all of ``g``'s elements, as a 0-d tensor of ``g``'s dtype on ``g``'s device."""
    vn = getattr(getattr(tritorch, "linalg", None), "vector_norm", None)
    if vn is not None:
        return vn(g, p)
    if p == math.inf:
        return _abs_max(g)
    if p == 2:
        return (g * g).sum().sqrt()
    if p == 1:
        return g.abs().sum()
    if p == 0:
        return (g != 0).sum().to(g.dtype)
    return (g.abs() ** p).sum() ** (1.0 / p)


def _combine(norms, p):
    if p == math.inf:
        total = norms[0]
        for n in norms[1:]:
            total = tritorch.maximum(total, n)
        return total
    if p == 0:
        total = norms[0]
        for n in norms[1:]:
            total = total + n
        return total
    total = norms[0] ** p if p != 1 else norms[0]
    for n in norms[1:]:
        total = total + (n ** p if p != 1 else n)
    return total ** (1.0 / p) if p != 1 else total


def get_total_norm(tensors, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """The ``norm_type``-norm of the concatenation of ``tensors``, computed as the norm of their norms."""
    tensors = [t for t in _as_list(tensors) if t is not None]
    p = float(norm_type)
    if not tensors:
        return tritorch.tensor(0.0)
    dev = tensors[0].device
    with no_grad():
        total = _combine([_vector_norm(t.detach(), p).to(dev) for t in tensors], p)
    if error_if_nonfinite and not math.isfinite(float(total)):
        raise RuntimeError(f"The total norm of order {p} for gradients from `parameters` is non-finite, so it "
                           "cannot be clipped. To disable this error and scale the gradients by the non-finite "
                           "norm anyway, set `error_if_nonfinite=False`")
    return total


def _scale_(g, coef):
    with no_grad():
        mul_ = getattr(g, "mul_", None)
        if mul_ is not None:
            mul_(coef.to(g.device, g.dtype))
        else:
            g.copy_(g * coef.to(g.device, g.dtype))


def clip_grads_with_norm_(parameters, max_norm, total_norm, foreach=None):
    """Scale the gradients by ``min(1, max_norm / (total_norm + 1e-6))``."""
    grads = [p.grad for p in _as_list(parameters) if p.grad is not None]
    if not grads:
        return
    with no_grad():
        coef = (float(max_norm) / (total_norm + 1e-6)).clamp(max=1.0)
        for g in grads:
            _scale_(g, coef)


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """Scale the gradients of ``parameters`` in place so that their total ``norm_type``-norm is at most
    ``max_norm``; returns the total norm (before clipping) as a tensor."""
    params = _as_list(parameters)
    grads = [p.grad for p in params if p.grad is not None]
    total = get_total_norm(grads, norm_type, error_if_nonfinite, foreach)
    clip_grads_with_norm_(params, max_norm, total, foreach)
    return total


def clip_grad_norm(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    import warnings
    warnings.warn("`torch.nn.utils.clip_grad_norm` is now deprecated in favor of `torch.nn.utils.clip_grad_norm_`.",
                  FutureWarning, stacklevel=2)
    return clip_grad_norm_(parameters, max_norm, norm_type, error_if_nonfinite, foreach)


def clip_grad_value_(parameters, clip_value, foreach=None):
    """Clamp every gradient of ``parameters`` to ``[-clip_value, clip_value]`` in place."""
    clip_value = float(clip_value)
    with no_grad():
        for p in _as_list(parameters):
            g = p.grad
            if g is None:
                continue
            clamp_ = getattr(g, "clamp_", None)
            if clamp_ is not None:
                clamp_(min=-clip_value, max=clip_value)
            else:
                g.copy_(g.clamp(-clip_value, clip_value))
