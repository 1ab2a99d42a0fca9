import tritorch
from tritorch.kernels import conv, matmul


def test_tf32_switches_follow_pytorch_defaults_and_reach_the_kernels():
    b = tritorch.backends
    assert b.cuda.matmul.allow_tf32 is False and b.cudnn.allow_tf32 is True
    try:
        b.cuda.matmul.allow_tf32 = True
        assert tritorch.get_float32_matmul_precision() == "high"
        assert matmul._dot_precision(tritorch.float32) == "tf32"
        b.cudnn.allow_tf32 = False
        assert conv.dot_precision(tritorch.float32) == "ieee"
    finally:
        b.cuda.matmul.allow_tf32 = False
        b.cudnn.allow_tf32 = True
    assert matmul._dot_precision(tritorch.float32) == "ieee"
    assert conv.dot_precision(tritorch.float32) == "tf32"
