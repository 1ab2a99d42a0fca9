"""``NAdam``: Adam with Nesterov momentum and a momentum schedule (Dozat, 2016)."""
import numpy as np

from .._tensor import Tensor
from ..kernels import optim as _k
from .optimizer import Optimizer, _bump, _check_hparams, _step_tensor, _with_no_grad, _zeros_state

__all__ = ["NAdam"]


class NAdam(Optimizer):
    """PyTorch's NAdam: ``mu_t = b1*(1 - 0.5*0.96^(t*momentum_decay))``, ``mu_product *= mu_t``; Adam's moments;
    ``p += -lr*(1-mu_t)/(1-mu_product) * g/denom - lr*mu_{t+1}/(1-mu_product*mu_{t+1}) * m/denom`` with
    ``denom = sqrt(v/(1-b2^t)) + eps``. Weight decay: L2, or decoupled (``p *= 1 - lr*wd``). State: ``step``,
    ``mu_product`` (float32 host scalars, as PyTorch keeps them), ``exp_avg``, ``exp_avg_sq``."""

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, momentum_decay=4e-3,
                 decoupled_weight_decay=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False):
        _check_hparams("NAdam", differentiable, betas, lr=lr, eps=eps, weight_decay=weight_decay,
                       momentum_decay=momentum_decay)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, momentum_decay=momentum_decay,
                        decoupled_weight_decay=decoupled_weight_decay, maximize=maximize, foreach=foreach,
                        capturable=capturable, differentiable=differentiable)
        super().__init__(params, defaults)

    @staticmethod
    def _init(p, st):
        st["step"] = _step_tensor()
        st["mu_product"] = Tensor._wrap_numpy(np.array(1.0, dtype=np.float32))
        st["exp_avg"] = _zeros_state(p)
        st["exp_avg_sq"] = _zeros_state(p)

    @staticmethod
    def _advance(st, beta1, momentum_decay):
        """Count the step and multiply ``mu_t`` into ``mu_product`` (in float32); the launch key ``(t, product)``."""
        step = _bump(st["step"])
        mu = beta1 * (1.0 - 0.5 * 0.96 ** (step * momentum_decay))
        a = st["mu_product"]._np
        a[...] = a * np.float32(mu)
        return step, float(a)

    @_with_no_grad
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns ``closure()``'s loss if one is given."""
        loss = self._closure(closure)
        for group in self.param_groups:
            lr, (beta1, beta2), wd, md = group["lr"], group["betas"], group["weight_decay"], group["momentum_decay"]
            flags = dict(WD=wd != 0, DECOUPLED=bool(group["decoupled_weight_decay"]),
                         MAXIMIZE=bool(group["maximize"]))
            launches = self._launches(group, self._init, key=lambda st: self._advance(st, beta1, md))
            for (_, _, (step, mu_product)), ps in launches.items():
                mu = beta1 * (1.0 - 0.5 * 0.96 ** (step * md))
                mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((step + 1) * md))
                scalars = (1 - beta1, beta2, 1 - beta2, 1 - beta2 ** step, group["eps"], wd, 1 - lr * wd,
                           -lr * (1.0 - mu) / (1.0 - mu_product), -lr * mu_next / (1.0 - mu_product * mu_next))
                states = [[self.state[p]["exp_avg"], self.state[p]["exp_avg_sq"]] for p in ps]
                _k.update("nadam", ps, [p._grad for p in ps], states, scalars, flags)
        return loss
