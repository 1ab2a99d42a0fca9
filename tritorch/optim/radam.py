"""``RAdam``: Adam with the variance of its adaptive rate rectified (Liu et al., 2019)."""
import math

from ..kernels import optim as _k
from .optimizer import Optimizer, _bump, _check_hparams, _step_tensor, _with_no_grad, _zeros_state

__all__ = ["RAdam"]


class RAdam(Optimizer):
    """PyTorch's RAdam: Adam's moments; ``rho_t = rho_inf - 2t*b2^t/(1-b2^t)`` with ``rho_inf = 2/(1-b2) - 1``;
    if ``rho_t > 5``: ``p -= lr * m/(1-b1^t) * sqrt(1-b2^t)/(sqrt(v) + eps) * rect``, else ``p -= lr * m/(1-b1^t)``.
    Weight decay: L2, or decoupled (``p *= 1 - lr*wd``). State: ``step``, ``exp_avg``, ``exp_avg_sq``."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, decoupled_weight_decay=False,
                 *, foreach=None, maximize=False, capturable=False, differentiable=False):
        _check_hparams("RAdam", differentiable, betas, lr=lr, eps=eps, weight_decay=weight_decay)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize, foreach=foreach,
                        capturable=capturable, decoupled_weight_decay=decoupled_weight_decay,
                        differentiable=differentiable)
        super().__init__(params, defaults)

    @staticmethod
    def _init(p, st):
        st["step"] = _step_tensor()
        st["exp_avg"] = _zeros_state(p)
        st["exp_avg_sq"] = _zeros_state(p)

    @_with_no_grad
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns ``closure()``'s loss if one is given."""
        loss = self._closure(closure)
        for group in self.param_groups:
            lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
            launches = self._launches(group, self._init, key=lambda st: _bump(st["step"]))
            for (_, _, step), ps in launches.items():
                bc1 = 1 - beta1 ** step
                bc2 = 1 - beta2 ** step
                rho_inf = 2 / (1 - beta2) - 1
                rho_t = rho_inf - 2 * step * (beta2 ** step) / bc2
                rectify = rho_t > 5.0
                rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) \
                    if rectify else 1.0
                scalars = (1 - beta1, beta2, 1 - beta2, group["eps"], wd, 1 - lr * wd, lr, bc1, math.sqrt(bc2), rect)
                flags = dict(RECTIFY=rectify, WD=wd != 0, DECOUPLED=bool(group["decoupled_weight_decay"]),
                             MAXIMIZE=bool(group["maximize"]))
                states = [[self.state[p]["exp_avg"], self.state[p]["exp_avg_sq"]] for p in ps]
                _k.update("radam", ps, [p._grad for p in ps], states, scalars, flags)
        return loss
