"""``DataParallel``: one process, the batch split across several devices, gradients summed into the original module.

With fewer than two devices to use (one GPU, or the CPU) it runs the module as is, as PyTorch does, so a program
written for several GPUs runs unchanged on any machine.
"""
import copy

from ... import cuda
from ..._device import device as _device
from ..._tensor import Tensor
from ...kernels.join import cat as _cat
from ..module import Module

__all__ = ["DataParallel", "replicate", "scatter", "gather", "parallel_apply", "data_parallel"]


def _devices(device_ids):
    if device_ids is None:
        if not cuda.is_available():
            return []
        device_ids = list(range(cuda.device_count()))
    return [_device(d) if isinstance(d, str) or not isinstance(d, int) else _device("cuda", d) for d in device_ids]


def replicate(module, devices):
    """Copies of ``module`` on ``devices`` whose parameters are differentiable copies of the original ones, so that
    backward through any replica accumulates into the original parameters."""
    out = []
    for dev in devices:
        rep = copy.copy(module)
        _rebuild(rep, module, dev)
        out.append(rep)
    return out


def _rebuild(rep, orig, dev):
    rep.__dict__ = dict(orig.__dict__)
    rep._parameters = {k: (None if p is None else p.to(dev)) for k, p in orig._parameters.items()}
    rep._buffers = {k: (None if b is None else b.to(dev)) for k, b in orig._buffers.items()}
    mods = {}
    for k, m in orig._modules.items():
        if m is None:
            mods[k] = None
        else:
            r = copy.copy(m)
            _rebuild(r, m, dev)
            mods[k] = r
    rep._modules = mods


def scatter(inputs, devices, dim=0):
    """Split every tensor in ``inputs`` (nested tuples/lists/dicts) into len(devices) chunks along ``dim``."""
    n = len(devices)

    def split(x):
        if isinstance(x, Tensor):
            return [c.to(d) for c, d in zip(x.chunk(n, dim), devices)]
        if isinstance(x, (tuple, list)) and x:
            parts = [split(v) for v in x]
            return [type(x)(p[i] for p in parts) for i in range(len(parts[0]))]
        if isinstance(x, dict) and x:
            parts = {k: split(v) for k, v in x.items()}
            return [{k: v[i] for k, v in parts.items()} for i in range(n)]
        return [x] * n
    return split(inputs)


def parallel_apply(modules, inputs, kwargs_tup=None):
    """Run ``modules[i](*inputs[i], **kwargs_tup[i])`` (the launches are asynchronous on a GPU)."""
    kwargs_tup = kwargs_tup or [{}] * len(modules)
    return [m(*(i if isinstance(i, (tuple, list)) else (i,)), **k) for m, i, k in zip(modules, inputs, kwargs_tup)]


def gather(outputs, target_device, dim=0):
    """Concatenate the replicas' outputs on ``target_device`` along ``dim`` (differentiable)."""
    first = outputs[0]
    if isinstance(first, Tensor):
        return _cat([o.to(target_device) for o in outputs], dim)
    if isinstance(first, (tuple, list)):
        return type(first)(gather([o[i] for o in outputs], target_device, dim) for i in range(len(first)))
    if isinstance(first, dict):
        return {k: gather([o[k] for o in outputs], target_device, dim) for k in first}
    return first


def data_parallel(module, inputs, device_ids=None, output_device=None, dim=0, module_kwargs=None):
    """The functional form of DataParallel: one forward over ``device_ids``."""
    devs = _devices(device_ids)
    if not isinstance(inputs, tuple):
        inputs = (inputs,)
    if len(devs) < 2:
        return module(*inputs, **(module_kwargs or {}))
    out_dev = devs[0] if output_device is None else _devices([output_device])[0]
    parts = scatter(inputs, devs, dim)
    kw = scatter(module_kwargs or {}, devs, dim)
    n = min(len(devs), len(parts))
    return gather(parallel_apply(replicate(module, devs[:n]), parts[:n], kw[:n]), out_dev, dim)


class DataParallel(Module):
    """Split the batch along ``dim`` across ``device_ids`` (all GPUs by default); with fewer than two devices it runs
    ``module`` as is. ``module`` is the wrapped model; the state dict's keys start with ``module.``, as in PyTorch."""

    def __init__(self, module, device_ids=None, output_device=None, dim=0):
        super().__init__()
        self.module = module
        self.device_ids = _devices(device_ids)
        self.output_device = (self.device_ids[0] if self.device_ids else None) if output_device is None \
            else _devices([output_device])[0]
        self.dim = dim

    def forward(self, *inputs, **kwargs):
        if len(self.device_ids) < 2:
            return self.module(*inputs, **kwargs)
        return data_parallel(self.module, inputs, self.device_ids, self.output_device, self.dim, kwargs)
