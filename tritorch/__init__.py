"""tritorch: a GPU-first deep-learning framework whose every op is a Triton kernel with a NumPy reference.

``import tritorch as torch`` and code written for the covered part of PyTorch runs: on ``cpu`` through the NumPy
references, on ``cuda`` through the Triton kernels (on a GPU, or in Triton's interpreter with TRITORCH_INTERPRET=1).
"""
import os as _os

if not _os.path.isdir(_os.path.join(_os.path.dirname(__file__), "kernels")):
    # running from a source checkout: kernels/ and autograd/ sit beside tritorch/ and are its subpackages
    __path__.append(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))))  # noqa: F821

from ._version import __version__  # noqa: E402,F401

from ._device import device, INTERPRET as _INTERPRET  # noqa: E402,F401
from ._dtype import (dtype, float32, float16, bfloat16, float64, int8, uint8, int16, int32, int64,  # noqa: E402
                     bool_ as bool, get_default_dtype, set_default_dtype, promote_types, result_type)
from ._tensor import Tensor, Size, FUNCTIONS as _FUNCTIONS, name_published_methods as _name_published_methods  # noqa
from . import autograd  # noqa: E402
from .autograd import no_grad, enable_grad, set_grad_enabled, inference_mode, is_grad_enabled  # noqa: E402
from . import cuda  # noqa: E402
from ._creation import (tensor, as_tensor, from_numpy, empty, zeros, ones, full, empty_like, zeros_like,  # noqa
                        ones_like, full_like, scalar_tensor)
from . import _dlpack  # noqa: E402,F401  (tritorch.from_dlpack, Tensor.__dlpack__)
from .kernels import elementwise as _elementwise, copy as _copy, views as _views, reduce as _reduce  # noqa

half, float, double, long, int, short = float16, float32, float64, int64, int32, int16
float = float32
from ._legacy import (FloatTensor, DoubleTensor, HalfTensor, BFloat16Tensor, ByteTensor, CharTensor,  # noqa
                      ShortTensor, IntTensor, LongTensor, BoolTensor)


def _load_ops():
    import importlib
    import pkgutil
    from . import kernels
    for m in pkgutil.iter_modules(kernels.__path__):
        if not m.name.startswith("_"):
            importlib.import_module(f"{__name__}.kernels.{m.name}")
    clash = [k for k in _FUNCTIONS if isinstance(globals().get(k), (dtype, type(_os)))]
    if clash:
        raise ImportError(f"tritorch: op names {clash} would shadow a dtype or a submodule")
    globals().update(_FUNCTIONS)
    _name_published_methods()


_load_ops()
from ._modes import dispatching as _dispatching  # noqa: E402
for _n in ("tensor", "as_tensor", "empty", "zeros", "ones", "full", "empty_like", "zeros_like", "ones_like",
           "full_like", "scalar_tensor"):       # the factories, routed through the op modes as the ops are
    globals()[_n] = _dispatching(_n, globals()[_n])

from . import nn, data, utils  # noqa: E402
from . import optim  # noqa: E402
from . import jit  # noqa: E402
from . import profiler  # noqa: E402
from . import compiler  # noqa: E402
from .compiler import compile  # noqa: E402,F401  (tritorch.compile, as torch.compile)
from . import _dynamo  # noqa: E402,F401  (torch._dynamo's config and reset)
from . import onnx  # noqa: E402  (tritorch.onnx; the onnx package loads only when export runs)
from . import amp  # noqa: E402
from .amp import (autocast, is_autocast_enabled, get_autocast_dtype, set_autocast_enabled,  # noqa: E402
                  set_autocast_dtype, is_autocast_cache_enabled, set_autocast_cache_enabled, clear_autocast_cache)
from . import backends, accelerator  # noqa: E402
from . import sparse  # noqa: E402
from .sparse import sparse_coo_tensor, spmm, layout, strided, sparse_coo  # noqa: E402
from .serialization import save, load  # noqa: E402
from .autograd.grad_mode import is_inference_mode_enabled  # noqa: E402


def is_tensor(obj):
    return isinstance(obj, Tensor)


def numel(input):
    return input.numel()
