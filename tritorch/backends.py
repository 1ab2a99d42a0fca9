"""``tritorch.backends``: PyTorch's switches for float32 tensor-core math (TF32 on the GPU; the interpreter always
computes in full fp32).

    tritorch.backends.cuda.matmul.allow_tf32   matmul/linear (default False, as in PyTorch)
    tritorch.backends.cudnn.allow_tf32         convolutions (default True, as in PyTorch)
"""
from .kernels import conv as _conv, matmul as _matmul

__all__ = ["cuda", "cudnn"]


class _MatmulFlags:
    @property
    def allow_tf32(self):
        return _matmul.get_float32_matmul_precision() != "highest"

    @allow_tf32.setter
    def allow_tf32(self, value):
        _matmul.set_float32_matmul_precision("high" if value else "highest")


class _Cuda:
    matmul = _MatmulFlags()


class _Cudnn:
    @property
    def allow_tf32(self):
        return _conv.ALLOW_TF32[0]

    @allow_tf32.setter
    def allow_tf32(self, value):
        _conv.ALLOW_TF32[0] = bool(value)


cuda = _Cuda()
cudnn = _Cudnn()
