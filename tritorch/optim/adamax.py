"""``Adamax``: Adam with the infinity norm in place of the second moment."""
from ..kernels import optim as _k
from .optimizer import Optimizer, _bump, _check_hparams, _step_tensor, _with_no_grad, _zeros_state

__all__ = ["Adamax"]


class Adamax(Optimizer):
    """PyTorch's Adamax: ``m = lerp(m, g, 1-b1)``, ``u = max(b2*u, |g| + eps)``, ``p -= lr/(1-b1^t) * m/u``.
    State: ``step``, ``exp_avg``, ``exp_inf``."""

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, foreach=None, *,
                 maximize=False, differentiable=False, capturable=False):
        _check_hparams("Adamax", differentiable, betas, lr=lr, eps=eps, weight_decay=weight_decay)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=foreach, maximize=maximize,
                        differentiable=differentiable, capturable=capturable)
        super().__init__(params, defaults)

    @staticmethod
    def _init(p, st):
        st["step"] = _step_tensor()
        st["exp_avg"] = _zeros_state(p)
        st["exp_inf"] = _zeros_state(p)

    @_with_no_grad
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns ``closure()``'s loss if one is given."""
        loss = self._closure(closure)
        for group in self.param_groups:
            (beta1, beta2), wd = group["betas"], group["weight_decay"]
            flags = dict(WD=wd != 0, MAXIMIZE=bool(group["maximize"]))
            launches = self._launches(group, self._init, key=lambda st: _bump(st["step"]))
            for (_, _, step), ps in launches.items():
                scalars = (1 - beta1, beta2, group["eps"], wd, group["lr"] / (1 - beta1 ** step))
                states = [[self.state[p]["exp_avg"], self.state[p]["exp_inf"]] for p in ps]
                _k.update("adamax", ps, [p._grad for p in ps], states, scalars, flags)
        return loss
