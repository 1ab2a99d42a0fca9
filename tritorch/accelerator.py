"""``tritorch.accelerator``: PyTorch's device-agnostic accelerator API; tritorch's one accelerator is ``cuda`` (a GPU,
or Triton's interpreter with TRITORCH_INTERPRET=1)."""
from . import cuda as _cuda
from ._device import device as _device

__all__ = ["is_available", "current_accelerator", "device_count", "current_device_index", "current_device_idx",
           "synchronize"]


def is_available():
    """Whether the accelerator (``cuda``) can run tensors here."""
    return _cuda.is_available()


def current_accelerator(check_available=False):
    """``device('cuda')``, the accelerator tritorch is built for; None with ``check_available`` when it cannot run."""
    if check_available and not is_available():
        return None
    return _device("cuda")


def device_count():
    """The number of accelerator devices (0 when there is none)."""
    return _cuda.device_count()


def current_device_index():
    """The index of the current accelerator device."""
    if not is_available():
        raise RuntimeError("tritorch.accelerator: no accelerator is available (no GPU, and TRITORCH_INTERPRET is "
                           "not set)")
    return _cuda.current_device()


current_device_idx = current_device_index


def synchronize(device=None, /):
    """Wait for the work queued on the accelerator to finish."""
    if device is not None and _device(device).type != "cuda":
        raise ValueError(f"{_device(device).type} doesn't match the current accelerator cuda.")
    _cuda.synchronize(device)
