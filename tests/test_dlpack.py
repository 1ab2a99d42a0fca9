"""DLPack both ways: NumPy round trips (zero-copy), strides, dtypes, capsule ownership and the deleter."""
import gc
import sys
import weakref

import numpy as np
import pytest

import tritorch
from tritorch import _dlpack as DL
from helpers import make, to_np

DTYPES = [tritorch.float32, tritorch.float64, tritorch.float16, tritorch.int64, tritorch.int32, tritorch.int16,
          tritorch.int8, tritorch.uint8, tritorch.bool]


def _live():
    gc.collect()
    return len(DL._LIVE)


@pytest.mark.parametrize("dtype", DTYPES)
def test_export_to_numpy_zero_copy(device, dtype):
    t, ref = make((3, 5), dtype, device)
    a = np.from_dlpack(t)
    assert a.dtype == dtype.np and a.shape == (3, 5)
    np.testing.assert_array_equal(a.astype(ref.dtype), ref)
    assert a.ctypes.data == t.data_ptr()         # interpreter cuda memory is host memory: exported as kDLCPU


@pytest.mark.parametrize("layout", ["transposed", "strided", "broadcast"])
def test_export_views(device, layout):
    t, ref = make((4, 6), tritorch.float32, device, layout=layout)
    if layout == "broadcast":
        t = tritorch.arange(6.0, device=device).expand(4, 6)
        ref = np.broadcast_to(np.arange(6.0), (4, 6))
    a = np.from_dlpack(t)
    np.testing.assert_array_equal(a, ref)
    assert a.strides == tuple(s * 4 for s in t.stride())
    assert a.ctypes.data == t.data_ptr()


def test_export_offset_view_and_writes(device):
    t = tritorch.arange(20, device=device).reshape(4, 5)
    v = t[1:, 2:]
    a = np.from_dlpack(v)
    np.testing.assert_array_equal(a, np.arange(20).reshape(4, 5)[1:, 2:])
    a[0, 0] = -1
    assert t[1, 2].item() == -1


def test_export_0d_and_empty(device):
    assert np.from_dlpack(tritorch.tensor(2.5, device=device)).shape == ()
    assert np.from_dlpack(tritorch.tensor(2.5, device=device)) == 2.5
    assert np.from_dlpack(tritorch.zeros(0, 3, device=device)).shape == (0, 3)


def test_dlpack_device(device):
    assert tritorch.zeros(1, device=device).__dlpack_device__() == (DL.kDLCPU, 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int64, np.int8, np.uint8, np.bool_])
def test_import_from_numpy_zero_copy(dtype):
    a = (np.arange(12) % 3).astype(dtype).reshape(3, 4)
    t = tritorch.from_dlpack(a)
    assert t.dtype.np == a.dtype and t.shape == (3, 4) and t.device.type == "cpu"
    assert t.data_ptr() == a.ctypes.data
    np.testing.assert_array_equal(t.numpy(), a)


def test_import_views_share_memory():
    a = np.arange(40.0).reshape(5, 8)
    for view in (a[:, ::3], a.T, a[1:4, 2:], a[2], a[None, :, 1]):
        t = tritorch.from_dlpack(view)
        assert t.shape == view.shape
        assert t.stride() == tuple(s // 8 for s in view.strides)
        assert t.data_ptr() == view.ctypes.data
        np.testing.assert_array_equal(t.numpy(), view)
    t = tritorch.from_dlpack(a[:, ::3])
    t[0, 1] = -5.0
    assert a[0, 3] == -5.0


def test_import_negative_strides_copies():
    a = np.arange(6.0)
    t = tritorch.from_dlpack(a[::-2])
    np.testing.assert_array_equal(t.numpy(), a[::-2])
    assert t.stride() == (1,)


def test_import_read_only_copies():
    a = np.arange(4)
    a.flags.writeable = False
    t = tritorch.from_dlpack(a)
    np.testing.assert_array_equal(t.numpy(), a)
    assert t.data_ptr() != a.ctypes.data


@pytest.mark.parametrize("versioned", [False, True])
def test_round_trip_through_capsule(device, versioned):
    t, ref = make((2, 7), tritorch.float32, device, layout="transposed")
    u = tritorch.from_dlpack(t.__dlpack__(max_version=(1, 0) if versioned else None))
    assert u.device.type == "cpu"                      # a kDLCPU capsule imports as a cpu tensor
    assert u.data_ptr() == t.data_ptr() and u.stride() == t.stride()
    np.testing.assert_array_equal(to_np(u), ref)


def test_bfloat16_capsule_round_trip(device):
    t, ref = make((3, 4), tritorch.bfloat16, device, layout="strided")
    cap = t.__dlpack__()
    u = tritorch.from_dlpack(cap)
    assert u.dtype is tritorch.bfloat16 and u.data_ptr() == t.data_ptr()
    np.testing.assert_array_equal(to_np(u), ref)
    b = np.arange(4, dtype=tritorch.bfloat16.np)          # NumPy cannot export bf16: from_numpy takes over
    assert tritorch.from_dlpack(b).data_ptr() == b.ctypes.data


def test_capsule_fields():
    t = tritorch.zeros(2, 3, dtype=tritorch.bfloat16)[:, 1:]
    cap = t.__dlpack__(max_version=(1, 0))
    m = DL.DLManagedTensorVersioned.from_address(DL._api.PyCapsule_GetPointer(id(cap), b"dltensor_versioned"))
    dl = m.dl_tensor
    assert (m.version.major, m.version.minor) == (1, 0)
    assert (dl.dtype.code, dl.dtype.bits, dl.dtype.lanes) == (4, 16, 1)
    assert (dl.device.device_type, dl.ndim) == (DL.kDLCPU, 2)
    assert [dl.shape[i] for i in range(2)] == [2, 2] and [dl.strides[i] for i in range(2)] == [3, 1]
    assert dl.data == t.data_ptr()


def test_capsule_consumed_once():
    cap = tritorch.ones(2).__dlpack__()
    tritorch.from_dlpack(cap)
    with pytest.raises(ValueError, match="already consumed"):
        tritorch.from_dlpack(cap)


def test_export_deleter_releases_tensor(device):
    before = _live()
    t = tritorch.ones(5, device=device)
    storage = weakref.ref(t._storage)
    a = np.from_dlpack(t)
    assert _live() == before + 1
    del t
    gc.collect()
    assert storage() is not None                      # the NumPy array still holds it
    del a
    assert _live() == before and storage() is None


def test_unconsumed_capsule_releases_tensor(device):
    before = _live()
    t = tritorch.ones(5, device=device)
    storage = weakref.ref(t._storage)
    cap = t.__dlpack__()
    del t
    assert storage() is not None
    del cap
    assert _live() == before and storage() is None


def test_import_deleter_releases_producer():
    a = np.arange(10.0)
    rc = sys.getrefcount(a)
    t = tritorch.from_dlpack(a[::2])
    v = t[1:]                                          # a view keeps the memory alive too
    del t
    gc.collect()
    assert sys.getrefcount(a) > rc
    assert v[0].item() == 2.0
    del v
    gc.collect()
    assert sys.getrefcount(a) == rc


def test_errors():
    with pytest.raises(RuntimeError, match="require gradient"):
        np.from_dlpack(tritorch.ones(2, requires_grad=True))
    with pytest.raises(TypeError, match="expected an object with __dlpack__"):
        tritorch.from_dlpack([1, 2])
    with pytest.raises(BufferError, match="stream must be None"):
        tritorch.ones(2).__dlpack__(stream=5)
    t = tritorch.ones(2)
    assert tritorch.from_dlpack(t) is t


@pytest.mark.gpu
def test_gpu_capsule_round_trip():
    t = tritorch.arange(12.0, device="cuda").reshape(3, 4).t()
    assert t.__dlpack_device__()[0] == DL.kDLCUDA
    u = tritorch.from_dlpack(t.__dlpack__(stream=1))
    assert u.device.type == "cuda" and u.data_ptr() == t.data_ptr() and u.stride() == t.stride()
    np.testing.assert_array_equal(u.cpu().numpy(), np.arange(12.0).reshape(3, 4).T)
    before = _live()
    del u
    assert _live() == before - 1
    try:
        from cuda.core.experimental.utils import StridedMemoryView
    except ImportError:
        try:
            from cuda.core.utils import StridedMemoryView
        except ImportError:
            return
    view = StridedMemoryView(t, stream_ptr=-1)
    assert view.ptr == t.data_ptr() and tuple(view.shape) == (4, 3)
