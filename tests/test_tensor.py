"""The Tensor class: attributes and conversions with PyTorch's names, results and error messages."""
import numpy as np
import pytest

import tritorch as torch


def test_shape_size_stride_dim(device):
    t = torch.zeros(2, 3, 4, device=device)
    assert t.shape == (2, 3, 4) and isinstance(t.shape, torch.Size) and t.size() == t.shape
    assert repr(t.shape) == "tritorch.Size([2, 3, 4])" and t.shape.numel() == 24
    assert t.size(1) == 3 and t.size(-1) == 4 and t.size(-3) == 2
    assert t.stride() == (12, 4, 1) and t.stride(0) == 12 and t.stride(-1) == 1
    assert t.dim() == 3 and t.ndim == 3 and t.numel() == 24 and t.nelement() == 24 and len(t) == 2
    assert t.storage_offset() == 0
    with pytest.raises(IndexError, match=r"Dimension out of range \(expected to be in range of \[-3, 2\], but got "
                                         r"3\)"):
        t.size(3)
    with pytest.raises(IndexError, match="Dimension out of range"):
        t.stride(-4)
    s = torch.tensor(1.5, device=device)
    assert s.shape == () and s.dim() == 0 and s.numel() == 1 and s.stride() == ()
    with pytest.raises(IndexError, match="Dimension specified as 0 but tensor has no dimensions"):
        s.size(0)
    e = torch.zeros(0, 3, device=device)
    assert e.numel() == 0 and e.shape == (0, 3) and len(e) == 0


def test_dtype_device_element_size():
    t = torch.zeros(3, dtype=torch.float16)
    assert t.dtype is torch.float16 and t.element_size() == 2 and t.itemsize == 2 and t.nbytes == 6
    assert t.device == torch.device("cpu") and t.is_cpu and not t.is_cuda
    assert t.is_floating_point() and not torch.zeros(2, dtype=torch.int32).is_floating_point()
    c = torch.zeros(2, device="cuda")
    assert c.is_cuda and not c.is_cpu and c.device.type == "cuda"
    assert t.data_ptr() == t._storage.ptr


def test_is_contiguous_and_views():
    t = torch.arange(12).reshape(3, 4)
    assert t.is_contiguous()
    tt = t.t()
    assert not tt.is_contiguous() and tt.stride() == (1, 4) and tt.shape == (4, 3)
    assert t[:, :1].is_contiguous() is False or t[:, :1].shape == (3, 1)
    assert t[1:].storage_offset() == 4 and t[1:].is_contiguous()
    assert torch.zeros(1, 3).expand(4, 3).stride() == (0, 1)
    assert torch.zeros(3, 1).is_contiguous()


def test_item_tolist_scalars(device):
    t = torch.tensor([[1, 2], [3, 4]], device=device)
    assert t.tolist() == [[1, 2], [3, 4]]
    assert torch.tensor(2.5, device=device).tolist() == 2.5
    assert torch.tensor([2.5], device=device).item() == 2.5 and isinstance(torch.tensor([7]).item(), int)
    assert torch.tensor(True).item() is True
    with pytest.raises(RuntimeError, match="a Tensor with 4 elements cannot be converted to Scalar"):
        t.item()
    assert int(torch.tensor([3.7])) == 3 and float(torch.tensor(2)) == 2.0
    with pytest.raises(RuntimeError, match="a Tensor with 4 elements cannot be converted to Scalar"):
        float(t)
    assert torch.tensor([1.0], dtype=torch.bfloat16).item() == 1.0


def test_bool_len_iter_index():
    assert bool(torch.tensor([1.0])) and not bool(torch.tensor(0))
    with pytest.raises(RuntimeError, match="Boolean value of Tensor with more than one value is ambiguous"):
        bool(torch.tensor([1, 2]))
    with pytest.raises(RuntimeError, match="Boolean value of Tensor with no values is ambiguous"):
        bool(torch.tensor([]))
    with pytest.raises(TypeError, match="len\\(\\) of a 0-d tensor"):
        len(torch.tensor(1))
    with pytest.raises(TypeError, match="iteration over a 0-d tensor"):
        iter(torch.tensor(1))
    rows = list(torch.tensor([[1, 2], [3, 4]]))
    assert [r.tolist() for r in rows] == [[1, 2], [3, 4]]
    assert [10, 20, 30][torch.tensor(2)] == 30 and range(5)[torch.tensor([1])] == 1
    with pytest.raises(TypeError, match="only integer tensors of a single element can be converted to an index"):
        [1, 2][torch.tensor(1.0)]
    with pytest.raises(TypeError, match="only integer tensors of a single element can be converted to an index"):
        [1, 2][torch.tensor([0, 1])]
    t = torch.tensor([1])
    assert hash(t) == id(t) and {t: 1}[t] == 1


def test_numpy():
    t = torch.tensor([1.0, 2.0])
    a = t.numpy()
    assert isinstance(a, np.ndarray) and a.dtype == np.float32
    a[0] = 5.0                                    # shares memory, as in PyTorch
    assert t.tolist() == [5.0, 2.0]
    r = torch.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"Can't call numpy\(\) on Tensor that requires grad. Use "
                                           r"tensor.detach\(\).numpy\(\) instead."):
        r.numpy()
    assert r.detach().numpy().tolist() == [1.0]
    with pytest.raises(TypeError, match="can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu\\(\\) to "
                                        "copy the tensor to host memory first."):
        torch.zeros(2, device="cuda").numpy()
    assert np.asarray(torch.tensor([[1, 2]])).shape == (1, 2)


def test_autograd_attributes():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    assert x.is_leaf and x.grad_fn is None and x.output_nr == 0 and not x.retains_grad
    y = x * 2
    assert not y.is_leaf and y.grad_fn is not None and y.requires_grad
    assert "grad_fn=<" in repr(y) and "requires_grad=True" in repr(x)
    d = y.detach()
    assert d.is_leaf and not d.requires_grad and d._storage is y._storage
    assert not x.is_inference()
    x.requires_grad = False
    assert not x.requires_grad
    with pytest.raises(RuntimeError, match="only Tensors of floating point and complex dtype can require "
                                           "gradients"):
        torch.tensor([1]).requires_grad = True


def test_data_property():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    d = x.data
    assert not d.requires_grad and d.data_ptr() == x.data_ptr() and d._storage.data is x._storage.data
    x.data = torch.tensor([[3.0, 4.0, 5.0]])
    assert x.shape == (1, 3) and x.tolist() == [[3.0, 4.0, 5.0]] and x.requires_grad and x.is_leaf
    (x * 2).sum().backward()
    assert x.grad.shape == (1, 3)


def test_type_conversions():
    t = torch.tensor([1.5, -2.5])
    assert t.double().dtype is torch.float64 and t.long().tolist() == [1, -2] and t.bool().tolist() == [True, True]
    assert t.type() == "tritorch.float32" and t.type(torch.float16).dtype is torch.float16
    assert t.to(torch.float64).dtype is torch.float64 and t.to("cpu") is t
    n = t.new_zeros(2, 3)
    assert n.shape == (2, 3) and n.dtype is torch.float32 and n.tolist() == [[0.0] * 3] * 2
    assert t.new_full((2,), 7.0).tolist() == [7.0, 7.0] and t.new_tensor([1, 2]).dtype is torch.float32
