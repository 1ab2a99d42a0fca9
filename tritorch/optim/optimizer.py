"""``Optimizer``: PyTorch's base class (param groups, per-parameter state, ``state_dict`` / ``load_state_dict``).

Subclasses write ``step``; on ``cuda`` each step is one fused kernel launch per param group, device and dtype
(``tritorch.kernels.optim``), on ``cpu`` the NumPy reference of the same rule.
"""
import warnings
from collections import defaultdict
from copy import deepcopy
from itertools import chain

import numpy as np

from .._tensor import Tensor
from ..autograd.grad_mode import enable_grad, no_grad
from ..kernels import optim as _k

__all__ = ["Optimizer", "required"]


class _RequiredParameter:
    """Marks a hyperparameter that has no default: every param group must give it."""

    def __repr__(self):
        return "<required parameter>"


required = _RequiredParameter()


class Optimizer:
    """Base class of all optimizers.

    ``params``: an iterable of tensors, or of dicts (param groups) each with a ``"params"`` entry and any
    hyperparameters that override ``defaults`` for that group.
    """

    # per-parameter state kept as 0-d float32 host tensors (``step``; NAdam's ``mu_product``)
    _HOST_SCALARS = ("step", "mu_product")
    # state tensors not of their parameter's shape (LBFGS keeps flat vectors of all parameters under the first)
    _FLAT_STATES = ()

    def __init__(self, params, defaults):
        self.defaults = defaults
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors or dicts, but "
                            f"got {_typename(params)}")
        self.state = defaultdict(dict)
        self.param_groups = []
        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for group in param_groups:
            self.add_param_group(group)

    def __getstate__(self):
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __repr__(self):
        s = self.__class__.__name__ + " ("
        for i, group in enumerate(self.param_groups):
            s += f"\nParameter Group {i}\n"
            for key in sorted(group.keys()):
                if key != "params":
                    s += f"    {key}: {group[key]}\n"
        return s + ")"

    # ---- param groups ------------------------------------------------------------------------------------------
    def add_param_group(self, param_group):
        """Add a group of parameters (a dict with ``"params"``); hyperparameters it leaves out take the defaults."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            param_group["params"] = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the ordering of "
                            "tensors in sets will change between runs. Please use a list instead.")
        else:
            param_group["params"] = list(params)
        if param_group["params"] and isinstance(param_group["params"][0], tuple):      # named_parameters()
            names, tensors = zip(*param_group["params"])
            param_group["params"], param_group["param_names"] = list(tensors), list(names)
        if self.param_groups and ("param_names" in param_group) != ("param_names" in self.param_groups[0]):
            raise ValueError("all optimizer param groups must contain or not contain param_names")
        for p in param_group["params"]:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is {_typename(p)}")
            if not (p.is_leaf or p.retains_grad):
                raise ValueError("can't optimize a non-leaf Tensor")
        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError(f"parameter group didn't specify a value of required optimization parameter {name}")
            param_group.setdefault(name, default)
        params = param_group["params"]
        if len(params) != len({id(p) for p in params}):
            warnings.warn("optimizer contains a parameter group with duplicate parameters; in future, this will "
                          "cause an error; see github.com/pytorch/pytorch/issues/40967 for more information",
                          stacklevel=3)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(param_group)

    def zero_grad(self, set_to_none=True):
        """Reset the gradients: drop them (``set_to_none``, the default) or fill them with zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                g = p._grad
                if g is None:
                    continue
                if set_to_none:
                    p._grad = None
                    continue
                if g.grad_fn is not None:
                    g.detach_()
                else:
                    g.requires_grad_(False)
                g.zero_()

    def step(self, closure=None):
        raise NotImplementedError

    @staticmethod
    def _closure(closure):
        if closure is None:
            return None
        with enable_grad():
            return closure()

    # ---- state dict ----------------------------------------------------------------------------------------------
    def state_dict(self):
        """``{"state": {index: state}, "param_groups": [group with "params" as index lists]}``: parameters are
        numbered in the order of the groups, as PyTorch does; the state tensors are the optimizer's own (no copy)."""
        index = {}
        start = 0

        def pack(group):
            nonlocal start
            packed = {k: v for k, v in group.items() if k != "params"}
            index.update({id(p): i for i, p in enumerate(group["params"], start) if id(p) not in index})
            packed["params"] = [index[id(p)] for p in group["params"]]
            start += len(packed["params"])
            return packed

        groups = [pack(g) for g in self.param_groups]
        state = {index[id(k)] if isinstance(k, Tensor) else k: v for k, v in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore groups' hyperparameters and the per-parameter state from ``state_dict`` (from ``state_dict()``).

        The groups and their sizes must match this optimizer's. State tensors are copied to the parameter's device
        and to the state type of its dtype (float32 for half parameters); ``step`` stays a host tensor.
        """
        groups = self.param_groups
        saved_groups = deepcopy(state_dict["param_groups"])
        if len(groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(g["params"]) != len(s["params"]) for g, s in zip(groups, saved_groups)):
            raise ValueError("loaded state dict contains a parameter group that doesn't match the size of optimizer's "
                             "group")
        id_map = dict(zip(chain.from_iterable(s["params"] for s in saved_groups),
                          chain.from_iterable(g["params"] for g in groups)))
        state = defaultdict(dict)
        for k, v in state_dict["state"].items():
            if k in id_map:
                p = id_map[k]
                state[p] = {name: self._load_value(p, name, value) for name, value in v.items()}
            else:
                state[k] = v
        for g, s in zip(groups, saved_groups):
            s["params"] = g["params"]
        for p, st in state.items():
            if isinstance(p, Tensor):
                for name, value in st.items():
                    if isinstance(value, Tensor) and name not in self._HOST_SCALARS + self._FLAT_STATES and \
                            value._shape != p._shape:
                        raise ValueError(f"loaded state dict has a {name} of shape {tuple(value._shape)} for a "
                                         f"parameter of shape {tuple(p._shape)}")
        self.__setstate__({"state": state, "param_groups": saved_groups})

    @staticmethod
    def _load_value(p, name, value):
        if not isinstance(value, Tensor):
            return value
        if name in Optimizer._HOST_SCALARS:
            return _step_tensor(float(value.item()))
        dt = _k.state_dtype(p.dtype) if p.dtype.is_floating_point and value.dtype.is_floating_point else value.dtype
        out = value.to(device=p.device, dtype=dt)
        return out.clone() if out is value or not out.is_contiguous() else out

    # ---- helpers for subclasses ----------------------------------------------------------------------------------
    def _launches(self, group, init, key=None):
        """The params of ``group`` that have a gradient, initialised (``init(p, state)`` on first sight) and sorted
        into launches: ``{(device, dtype, key(state)): [params]}``. ``key`` splits a launch where a scalar differs
        between tensors (a step count after a parameter missed steps); usually all share one launch."""
        out = {}
        for p in group["params"]:
            if p._grad is None:
                continue
            if init is None and key is None:
                k = (p._storage.device, p.dtype, None)
            else:
                st = self.state[p]
                if not st and init is not None:
                    init(p, st)
                k = (p._storage.device, p.dtype, None if key is None else key(st))
            out.setdefault(k, []).append(p)
        return out


def _typename(obj):
    if isinstance(obj, Tensor):
        return "tritorch.Tensor"
    return type(obj).__module__ + "." + type(obj).__qualname__ if type(obj).__module__ != "builtins" else \
        type(obj).__qualname__


def _check_hparams(owner, differentiable=False, betas=None, **nonnegative):
    """PyTorch's checks of an optimizer's arguments, in their words: each named value >= 0 (in the order given),
    each beta in [0, 1); ``differentiable=True`` is not supported."""
    for name, v in nonnegative.items():
        if not 0.0 <= v:
            label = {"lr": "learning rate", "eps": "epsilon value"}.get(name, f"{name} value")
            raise ValueError(f"Invalid {label}: {v}")
    for i, b in enumerate(betas or ()):
        if not 0.0 <= b < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {b}")
    if differentiable:
        raise NotImplementedError(f"{owner}: differentiable=True is not supported by tritorch")


def _step_tensor(value=0.0):
    """A parameter's step count: a 0-d float32 host tensor, as PyTorch keeps it."""
    return Tensor._wrap_numpy(np.array(value, dtype=np.float32))


def _bump(step):
    """Add one to a step tensor in place; returns the new count."""
    a = step._np
    a[...] += 1
    return float(a)


def _zeros_state(p, fill=0.0):
    """A state tensor for ``p``: contiguous, of ``state_dtype(p.dtype)``, on ``p``'s device, filled with ``fill``."""
    from .. import _creation
    return _creation.full(p._shape, fill, dtype=_k.state_dtype(p.dtype), device=p.device)


def _with_no_grad(step):
    """Run ``step`` with gradient recording off (a closure it calls turns it back on)."""
    import functools

    @functools.wraps(step)
    def wrapper(self, *args, **kwargs):
        with no_grad():
            return step(self, *args, **kwargs)
    return wrapper
