"""``SGD``: stochastic gradient descent with momentum, dampening, Nesterov momentum and weight decay."""
from ..kernels import optim as _k
from .._tensor import Tensor
from .optimizer import Optimizer, _with_no_grad

__all__ = ["SGD"]


class SGD(Optimizer):
    """PyTorch's SGD: ``g += wd*p``; with momentum ``buf = momentum*buf + (1-dampening)*g`` (``buf = g`` at first),
    ``g = g + momentum*buf`` (Nesterov) or ``buf``; ``p -= lr*g``. The state is ``momentum_buffer`` (momentum != 0).
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *, maximize=False,
                 foreach=None, differentiable=False, fused=None):
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        if differentiable:
            raise NotImplementedError("SGD: differentiable=True is not supported by tritorch")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
                        maximize=maximize, foreach=foreach, differentiable=differentiable, fused=fused)
        super().__init__(params, defaults)

    @_with_no_grad
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns ``closure()``'s loss if one is given."""
        loss = self._closure(closure)
        for group in self.param_groups:
            momentum = group["momentum"]
            key = (lambda st: st.get("momentum_buffer") is None) if momentum != 0 else None
            launches = self._launches(group, None, key)
            scalars = (group["lr"], momentum, 1 - group["dampening"], group["weight_decay"])
            for (_, _, first), ps in launches.items():
                states = []
                for p in ps:
                    if momentum != 0:
                        st = self.state[p]
                        if first:       # the kernel writes the gradient into it
                            st["momentum_buffer"] = Tensor._empty(p._shape, _k.state_dtype(p.dtype), p.device)
                        states.append([st["momentum_buffer"]])
                    else:
                        states.append([None])
                flags = dict(MOMENTUM=momentum != 0, FIRST=bool(first), NESTEROV=bool(group["nesterov"]),
                             WD=group["weight_decay"] != 0, MAXIMIZE=bool(group["maximize"]))
                _k.update("sgd", ps, [p._grad for p in ps], states, scalars, flags)
        return loss
