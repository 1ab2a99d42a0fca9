"""``RMSprop``: divide the gradient by a running root mean square (optionally centered), with momentum."""
from ..kernels import optim as _k
from .optimizer import Optimizer, _bump, _step_tensor, _with_no_grad, _zeros_state

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    """PyTorch's RMSprop: ``v = alpha*v + (1-alpha)*g*g``; centered: ``ga = alpha*ga + (1-alpha)*g`` and
    ``avg = sqrt(v - ga^2) + eps``, else ``avg = sqrt(v) + eps``; momentum: ``buf = momentum*buf + g/avg``,
    ``p -= lr*buf``, else ``p -= lr*g/avg``. State: ``step``, ``square_avg``, ``momentum_buffer`` (momentum > 0),
    ``grad_avg`` (centered).
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
                 capturable=False, foreach=None, maximize=False, differentiable=False):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= momentum:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= alpha:
            raise ValueError(f"Invalid alpha value: {alpha}")
        if differentiable:
            raise NotImplementedError("RMSprop: differentiable=True is not supported by tritorch")
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered, weight_decay=weight_decay,
                        capturable=capturable, foreach=foreach, maximize=maximize, differentiable=differentiable)
        super().__init__(params, defaults)

    @_with_no_grad
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns ``closure()``'s loss if one is given."""
        loss = self._closure(closure)
        for group in self.param_groups:
            momentum, centered = group["momentum"], bool(group["centered"])

            def init(p, st):
                st["step"] = _step_tensor()
                st["square_avg"] = _zeros_state(p)
                if momentum > 0:
                    st["momentum_buffer"] = _zeros_state(p)
                if centered:
                    st["grad_avg"] = _zeros_state(p)

            launches = self._launches(group, init)
            alpha = group["alpha"]
            scalars = (group["lr"], alpha, 1 - alpha, group["eps"], group["weight_decay"], momentum)
            flags = dict(CENTERED=centered, MOMENTUM=momentum > 0, WD=group["weight_decay"] != 0,
                         MAXIMIZE=bool(group["maximize"]))
            for ps in launches.values():
                states = []
                for p in ps:
                    st = self.state[p]
                    _bump(st["step"])
                    if momentum > 0 and "momentum_buffer" not in st:
                        st["momentum_buffer"] = _zeros_state(p)
                    if centered and "grad_avg" not in st:
                        st["grad_avg"] = _zeros_state(p)
                    states.append([st["square_avg"], st.get("momentum_buffer") if momentum > 0 else None,
                                   st.get("grad_avg") if centered else None])
                _k.update("rmsprop", ps, [p._grad for p in ps], states, scalars, flags)
        return loss
