"""``tritorch.utils.data``: the same objects as ``tritorch.data`` (PyTorch's spelling, ``torch.utils.data``).

Its submodules resolve to ``tritorch.data``'s own module objects, loaded on first import:
``tritorch.utils.data.distributed`` is ``tritorch.data.distributed`` (``DistributedSampler``),
``tritorch.utils.data.sampler`` is ``tritorch.data.sampler``, and so on, never a second copy of their classes.
"""
import importlib
import importlib.abc
import importlib.util
import sys

from .. import data as _data

_PREFIX = __name__ + "."
_TARGET = _data.__name__ + "."


class _SubmoduleAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``tritorch.utils.data.X`` as the module ``tritorch.data.X``."""

    def find_spec(self, fullname, path, target=None):
        if not fullname.startswith(_PREFIX):
            return None
        if importlib.util.find_spec(_TARGET + fullname[len(_PREFIX):]) is None:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        return importlib.import_module(_TARGET + spec.name[len(_PREFIX):])

    def exec_module(self, module):
        pass            # already executed as tritorch.data.X


if not any(isinstance(f, _SubmoduleAlias) for f in sys.meta_path):
    sys.meta_path.insert(0, _SubmoduleAlias())
sys.modules[__name__] = _data
