"""``Adagrad``: per-element rates that shrink with the sum of the squared gradients seen so far."""
from ..kernels import optim as _k
from .optimizer import Optimizer, _bump, _step_tensor, _with_no_grad, _zeros_state

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    """PyTorch's Adagrad: ``clr = lr / (1 + (t-1)*lr_decay)``, ``sum += g*g``, ``p -= clr * g / (sqrt(sum) + eps)``.
    State (made when the optimizer is built, as PyTorch does): ``step`` and ``sum`` (starting at
    ``initial_accumulator_value``).
    """

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10,
                 foreach=None, *, maximize=False, differentiable=False, fused=None):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= lr_decay:
            raise ValueError(f"Invalid lr_decay value: {lr_decay}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= initial_accumulator_value:
            raise ValueError(f"Invalid initial_accumulator_value value: {initial_accumulator_value}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if differentiable:
            raise NotImplementedError("Adagrad: differentiable=True is not supported by tritorch")
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, foreach=foreach, maximize=maximize,
                        differentiable=differentiable, fused=fused)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                self._init(group)(p, self.state[p])

    @staticmethod
    def _init(group):
        def init(p, st):
            st["step"] = _step_tensor()
            st["sum"] = _zeros_state(p, group["initial_accumulator_value"])
        return init

    @_with_no_grad
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns ``closure()``'s loss if one is given."""
        loss = self._closure(closure)
        for group in self.param_groups:
            launches = self._launches(group, self._init(group), key=lambda st: _bump(st["step"]))
            flags = dict(WD=group["weight_decay"] != 0, MAXIMIZE=bool(group["maximize"]))
            for (_, _, step), ps in launches.items():
                clr = group["lr"] / (1 + (step - 1) * group["lr_decay"])
                scalars = (clr, group["eps"], group["weight_decay"])
                _k.update("adagrad", ps, [p._grad for p in ps], [[self.state[p]["sum"]] for p in ps], scalars,
                          flags)
        return loss
