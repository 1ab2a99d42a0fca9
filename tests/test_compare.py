import numpy as np
import pytest

import tritorch


def test_isclose_allclose_equal_match_numpy(device):
    a = np.array([1.0, 2.0, np.nan, np.inf, -np.inf, 1e-9, 5.0], dtype=np.float32)
    b = np.array([1.0, 2.00001, np.nan, np.inf, np.inf, 0.0, 5.1], dtype=np.float32)
    ta, tb = tritorch.tensor(a, device=device), tritorch.tensor(b, device=device)
    for kw in ({}, {"equal_nan": True}, {"rtol": 0.05}, {"atol": 0.2, "rtol": 0.0}):
        np.testing.assert_array_equal(tritorch.isclose(ta, tb, **kw).cpu().numpy(), np.isclose(a, b, **kw))
        assert tritorch.allclose(ta[:2], tb[:2], **kw) == np.allclose(a[:2], b[:2], **kw)
    assert tritorch.equal(ta[:2], ta[:2].clone()) and not tritorch.equal(ta[:2], tb[:2])
    assert not tritorch.equal(ta[:2], ta[:3])                   # shapes differ
    assert not tritorch.equal(ta, ta)                           # nan != nan, as in PyTorch
    ti = tritorch.tensor([1, 2, 3], device=device)
    assert tritorch.equal(ti, ti.clone()) and ti.allclose(ti)


def test_isclose_errors():
    with pytest.raises(RuntimeError, match="did not match"):
        tritorch.isclose(tritorch.ones(2), tritorch.ones(2, dtype=tritorch.float64))
    with pytest.raises(TypeError, match="expected two Tensors"):
        tritorch.isclose(tritorch.ones(2), 1.0)


def test_isclose_bool(device):
    """Bool tensors compare through the default float type, as PyTorch."""
    a = tritorch.tensor([True, False], device=device)
    b = tritorch.tensor([True, True], device=device)
    assert tritorch.isclose(a, b).tolist() == [True, False]
    assert tritorch.isclose(a, b, rtol=0.5, atol=2).tolist() == [True, True]
    with pytest.raises(RuntimeError, match="Bool did not match Long"):
        tritorch.isclose(a, tritorch.tensor([1, 1], device=device))
