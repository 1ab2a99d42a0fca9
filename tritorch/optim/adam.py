"""``Adam`` and ``AdamW``: adaptive moment estimation, with L2 or decoupled weight decay and the AMSGrad variant."""
import math

from ..kernels import optim as _k
from .optimizer import Optimizer, _bump, _check_hparams, _step_tensor, _with_no_grad, _zeros_state

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """PyTorch's Adam: ``m = b1*m + (1-b1)*g``, ``v = b2*v + (1-b2)*g*g`` (``vmax = max(vmax, v)`` with amsgrad),
    ``p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)``. Weight decay adds ``wd*p`` to the gradient, or with
    ``decoupled_weight_decay`` (AdamW) scales ``p`` by ``1 - lr*wd`` first. State: ``step``, ``exp_avg``,
    ``exp_avg_sq`` and ``max_exp_avg_sq`` (amsgrad), in float32 for half parameters.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 foreach=None, maximize=False, capturable=False, differentiable=False, fused=None,
                 decoupled_weight_decay=False):
        _check_hparams(type(self).__name__, differentiable, betas, lr=lr, eps=eps, weight_decay=weight_decay)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
                        foreach=foreach, capturable=capturable, differentiable=differentiable, fused=fused,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _init_state(self, group):
        def init(p, st):
            st["step"] = _step_tensor()
            st["exp_avg"] = _zeros_state(p)
            st["exp_avg_sq"] = _zeros_state(p)
            if group["amsgrad"]:
                st["max_exp_avg_sq"] = _zeros_state(p)
        return init

    @_with_no_grad
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns ``closure()``'s loss if one is given."""
        loss = self._closure(closure)
        for group in self.param_groups:
            amsgrad = bool(group["amsgrad"])
            launches = self._launches(group, self._init_state(group), key=lambda st: _bump(st["step"]))
            lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for (_, _, step), ps in launches.items():
                bc1 = 1 - beta1 ** step
                bc2 = 1 - beta2 ** step
                scalars = (beta1, beta2, 1 - beta1, 1 - beta2, eps, wd, 1 - lr * wd, lr / bc1, math.sqrt(bc2))
                states = []
                for p in ps:
                    st = self.state[p]
                    if amsgrad and "max_exp_avg_sq" not in st:
                        st["max_exp_avg_sq"] = _zeros_state(p)
                    states.append([st["exp_avg"], st["exp_avg_sq"], st["max_exp_avg_sq"] if amsgrad else None])
                flags = dict(AMSGRAD=amsgrad, WD=wd != 0, DECOUPLED=bool(group["decoupled_weight_decay"]),
                             MAXIMIZE=bool(group["maximize"]))
                _k.update("adam", ps, [p._grad for p in ps], states, scalars, flags)
        return loss


class AdamW(Adam):
    """Adam with decoupled weight decay (default 1e-2): ``p *= 1 - lr*wd`` before the Adam update."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False, foreach=None, capturable=False, differentiable=False, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)
