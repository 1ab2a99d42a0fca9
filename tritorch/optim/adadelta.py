"""``Adadelta``: per-element steps scaled by running RMS of past steps over running RMS of gradients."""
from ..kernels import optim as _k
from .optimizer import Optimizer, _bump, _check_hparams, _step_tensor, _with_no_grad, _zeros_state

__all__ = ["Adadelta"]


class Adadelta(Optimizer):
    """PyTorch's Adadelta: ``v = rho*v + (1-rho)*g*g``, ``delta = sqrt(u + eps)/sqrt(v + eps) * g``,
    ``u = rho*u + (1-rho)*delta^2``, ``p -= lr*delta``. State: ``step``, ``square_avg``, ``acc_delta``."""

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, foreach=None, *, capturable=False,
                 maximize=False, differentiable=False):
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho}")
        _check_hparams("Adadelta", differentiable, lr=lr, eps=eps, weight_decay=weight_decay)
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize, capturable=capturable,
                        foreach=foreach, differentiable=differentiable)
        super().__init__(params, defaults)

    @staticmethod
    def _init(p, st):
        st["step"] = _step_tensor()
        st["square_avg"] = _zeros_state(p)
        st["acc_delta"] = _zeros_state(p)

    @_with_no_grad
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns ``closure()``'s loss if one is given."""
        loss = self._closure(closure)
        for group in self.param_groups:
            rho, wd = group["rho"], group["weight_decay"]
            scalars = (group["lr"], rho, 1 - rho, group["eps"], wd)
            flags = dict(WD=wd != 0, MAXIMIZE=bool(group["maximize"]))
            for ps in self._launches(group, self._init).values():
                for p in ps:
                    _bump(self.state[p]["step"])
                states = [[self.state[p]["square_avg"], self.state[p]["acc_delta"]] for p in ps]
                _k.update("adadelta", ps, [p._grad for p in ps], states, scalars, flags)
        return loss
