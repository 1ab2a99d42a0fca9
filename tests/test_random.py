"""Random numbers: Philox reference vs Triton, reproducibility across devices, generators, statistics, errors."""
import numpy as np
import pytest

import tritorch
from tritorch.kernels import random as R
from helpers import to_np

FLOATS = [tritorch.float32, tritorch.float64, tritorch.float16, tritorch.bfloat16]


def test_philox_known_answer():
    # Random123's known-answer vectors for Philox4x32-10, counter (0, 0, 0, 0) and all-ones; Triton's counter is
    # (lo, hi, 0, 0) and its key (seed lo, seed hi)
    w = R.philox_np(0, [0])
    assert [int(x[0]) for x in w] == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    w = R.philox_np(0xFFFFFFFFFFFFFFFF, [-1])
    c0, c1, c2, c3 = w
    # counter (ffffffff, ffffffff, 0, 0) is not a Random123 vector; check that hi words and key words reach it
    assert int(c0[0]) != int(R.philox_np(0xFFFFFFFF, [-1])[0][0])


@pytest.mark.parametrize("dtype", FLOATS)
def test_same_seed_same_numbers_on_every_device(dtype):
    outs = []
    for dev in ("cpu", "cuda"):
        tritorch.manual_seed(1234)
        outs.append((tritorch.rand(37, dtype=dtype, device=dev), tritorch.randn(5, 7, dtype=dtype, device=dev),
                     tritorch.randint(-5, 17, (41,), device=dev)))
    for a, b in zip(*outs):
        np.testing.assert_array_equal(to_np(a), to_np(b))


def test_cuda_matches_reference_across_programs():
    # many programs, a partial last block, and counters beyond 2**32 (the offset's high word)
    g = tritorch.Generator("cuda").manual_seed(2 ** 40 + 7)
    g.set_state(tritorch.from_numpy(np.array([2 ** 40 + 7, 2 ** 32 - 100], dtype=np.uint64).view(np.uint8)))
    t = tritorch.Tensor._empty((5000,), tritorch.float32, tritorch.device("cuda"))
    R.fill_random(t, R.UNIFORM, 0.0, 1.0, g)
    w = R.philox_np(2 ** 40 + 7, 2 ** 32 - 100 + np.arange(5000))
    np.testing.assert_array_equal(t.numpy(force=True), R.uint_to_uniform_float_np(w[0]))


def test_block_size_does_not_change_numbers(monkeypatch):
    tritorch.manual_seed(5)
    a = tritorch.randn(300, device="cuda")
    monkeypatch.setattr(R, "_block", lambda n: 64)
    tritorch.manual_seed(5)
    b = tritorch.randn(300, device="cuda")
    np.testing.assert_array_equal(a.numpy(force=True), b.numpy(force=True))


def test_different_seeds_and_calls_differ(device):
    tritorch.manual_seed(0)
    a = tritorch.rand(64, device=device)
    b = tritorch.rand(64, device=device)
    tritorch.manual_seed(1)
    c = tritorch.rand(64, device=device)
    assert not np.array_equal(to_np(a), to_np(b))
    assert not np.array_equal(to_np(a), to_np(c))
    assert len(np.unique(to_np(a))) == 64


def test_consecutive_calls_continue_the_stream(device):
    tritorch.manual_seed(3)
    a = tritorch.rand(10, device=device)
    b = tritorch.rand(6, device=device)
    tritorch.manual_seed(3)
    ab = tritorch.rand(16, device=device)
    np.testing.assert_array_equal(np.concatenate([to_np(a), to_np(b)]), to_np(ab))


@pytest.mark.parametrize("dtype", FLOATS)
def test_rand_statistics(device, dtype):
    tritorch.manual_seed(11)
    u = to_np(tritorch.rand(4096, dtype=dtype, device=device))
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.02 and abs(u.std() - 12 ** -0.5) < 0.02
    z = to_np(tritorch.randn(4096, dtype=dtype, device=device))
    assert abs(z.mean()) < 0.06 and abs(z.std() - 1.0) < 0.05
    assert np.all(np.isfinite(z))


def test_half_uniforms_never_round_to_one(device):
    g = tritorch.Generator(device)
    for dtype in (tritorch.float16, tritorch.bfloat16):
        u = to_np(tritorch.rand(4096, dtype=dtype, device=device, generator=g))
        assert u.max() < 1.0


@pytest.mark.parametrize("low,high", [(0, 2), (-7, 3), (0, 1), (100, 1000), (-2 ** 40, 2 ** 40)])
def test_randint_range(device, low, high):
    tritorch.manual_seed(7)
    t = tritorch.randint(low, high, (500,), device=device)
    assert t.dtype is tritorch.int64
    v = to_np(t)
    assert v.min() >= low and v.max() < high
    if high - low <= 10:
        assert len(np.unique(v)) == high - low


@pytest.mark.parametrize("dtype", [tritorch.int8, tritorch.uint8, tritorch.int32, tritorch.float32, tritorch.bool])
def test_randint_dtypes(device, dtype):
    lo, hi = (0, 2) if dtype is tritorch.bool else (0, 100) if dtype is tritorch.uint8 else (-100, 100)
    t = tritorch.randint(lo, hi, (3, 40), dtype=dtype, device=device)
    assert t.dtype is dtype and t.shape == (3, 40)
    v = to_np(t).astype(np.float64)
    assert v.min() >= lo and v.max() < hi


def test_randint_signatures(device):
    assert tritorch.randint(5, (4,), device=device).max().item() < 5
    assert tritorch.randint(low=2, high=4, size=(6,), device=device).min().item() >= 2
    assert tritorch.randint(3, 4, size=(2, 2), device=device).tolist() == [[3, 3], [3, 3]]


def test_randint_errors():
    with pytest.raises(RuntimeError, match="'from' to be less than 'to', but got from=5 >= to=3"):
        tritorch.randint(5, 3, (2,))
    with pytest.raises(RuntimeError, match="to - 1 is out of bounds for tritorch.int8"):
        tritorch.randint(0, 1000, (2,), dtype=tritorch.int8)
    with pytest.raises(TypeError, match="randint\\(\\) expects"):
        tritorch.randint((2,))


def test_factory_errors():
    with pytest.raises(RuntimeError, match="expected a floating point dtype"):
        tritorch.rand(3, dtype=tritorch.int64)
    with pytest.raises(RuntimeError, match="expected a floating point dtype"):
        tritorch.randn(3, dtype=tritorch.int32)
    with pytest.raises(RuntimeError, match="Expected a 'cuda' device type for generator but found 'cpu'"):
        tritorch.rand(3, device="cuda", generator=tritorch.Generator())
    with pytest.raises(TypeError, match="manual_seed expected an int"):
        tritorch.manual_seed(1.5)


def test_shapes_and_flags(device):
    assert tritorch.rand(2, 3, device=device).shape == (2, 3)
    assert tritorch.randn((4,), device=device).shape == (4,)
    assert tritorch.rand((), device=device).shape == ()
    assert tritorch.randn(0, 3, device=device).shape == (0, 3)
    assert tritorch.rand(size=(2,), device=device).shape == (2,)
    t = tritorch.randn(3, requires_grad=True, device=device)
    assert t.requires_grad and t.is_leaf
    assert tritorch.rand(3, device=device).dtype is tritorch.float32


def test_like(device):
    x = tritorch.zeros(3, 4, dtype=tritorch.float64, device=device)
    for t in (tritorch.rand_like(x), tritorch.randn_like(x)):
        assert t.shape == (3, 4) and t.dtype is tritorch.float64 and t.device == x.device
    r = tritorch.randint_like(x, 10)
    assert r.dtype is tritorch.float64 and 0 <= to_np(r).min() and to_np(r).max() < 10
    r = tritorch.randint_like(x, 3, 5, dtype=tritorch.int32)
    assert r.dtype is tritorch.int32 and set(np.unique(to_np(r))) <= {3, 4}


# ---- generators and seeds --------------------------------------------------------------------------------------------

def test_generator_state_roundtrip(device):
    g = tritorch.Generator(device).manual_seed(99)
    tritorch.rand(5, generator=g, device=device)
    state = g.get_state()
    assert state.dtype is tritorch.uint8 and state.shape == (16,)
    a = tritorch.randn(9, generator=g, device=device)
    g.set_state(state)
    b = tritorch.randn(9, generator=g, device=device)
    np.testing.assert_array_equal(to_np(a), to_np(b))
    with pytest.raises(RuntimeError, match="16 bytes"):
        g.set_state(tritorch.zeros(3))


def test_generator_independent_of_default(device):
    g = tritorch.Generator(device).manual_seed(42)
    a = tritorch.rand(8, generator=g, device=device)
    tritorch.manual_seed(42)
    b = tritorch.rand(8, device=device)
    np.testing.assert_array_equal(to_np(a), to_np(b))
    assert g.initial_seed() == 42


def test_global_seed_functions():
    assert tritorch.manual_seed(123) is tritorch.default_generator
    assert tritorch.initial_seed() == 123
    s = tritorch.seed()
    assert tritorch.initial_seed() == s and 0 <= s < 2 ** 64
    tritorch.manual_seed(-1)
    assert tritorch.initial_seed() == 2 ** 64 - 1
    state = tritorch.get_rng_state()
    a = tritorch.rand(4)
    tritorch.set_rng_state(state)
    np.testing.assert_array_equal(a.numpy(), tritorch.rand(4).numpy())
    with pytest.raises(RuntimeError, match="Overflow"):
        tritorch.manual_seed(2 ** 64)


# ---- in-place fills and samplers -------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOATS)
def test_uniform_normal_inplace(device, dtype):
    t = tritorch.empty(2048, dtype=dtype, device=device)
    assert t.uniform_(-3, 5) is t
    v = to_np(t)
    assert v.min() >= -3 and v.max() <= 5 and abs(v.mean() - 1) < 0.2
    t.normal_(2.0, 0.5)
    v = to_np(t)
    assert abs(v.mean() - 2) < 0.05 and abs(v.std() - 0.5) < 0.05


def test_inplace_matches_factory(device):
    tritorch.manual_seed(8)
    a = tritorch.randn(20, device=device)
    tritorch.manual_seed(8)
    b = tritorch.empty(20, device=device).normal_()
    np.testing.assert_array_equal(to_np(a), to_np(b))
    tritorch.manual_seed(8)
    c = tritorch.empty(20, device=device).normal_(1.0, 3.0)
    np.testing.assert_allclose(to_np(c), 1.0 + 3.0 * to_np(a), rtol=1e-6)


def test_inplace_on_strided_view(device):
    base = tritorch.zeros(6, 8, device=device)
    v = base[:, ::2]
    v.uniform_(1, 2)
    b = to_np(base)
    assert np.all(b[:, 1::2] == 0) and np.all((b[:, ::2] >= 1) & (b[:, ::2] < 2))
    version = base._version
    base.t().normal_()
    assert base._version > version


def test_inplace_errors(device):
    with pytest.raises(RuntimeError, match="from=2 > to=1"):
        tritorch.empty(3, device=device).uniform_(2, 1)
    with pytest.raises(RuntimeError, match="std >= 0.0, but found std -1"):
        tritorch.empty(3, device=device).normal_(0, -1)
    with pytest.raises(RuntimeError, match="floating point tensor"):
        tritorch.zeros(3, dtype=tritorch.int64, device=device).uniform_()
    leaf = tritorch.zeros(3, requires_grad=True, device=device)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        leaf.normal_()
    with tritorch.no_grad():
        leaf.normal_()


def test_random_(device):
    t = tritorch.zeros(300, dtype=tritorch.int8, device=device)
    t.random_()
    v = to_np(t)
    assert v.min() >= 0 and v.max() <= 127 and v.max() > 100
    t.random_(-3, 3)
    assert set(np.unique(to_np(t))) == set(range(-3, 3))
    f = tritorch.zeros(200, device=device).random_(10)
    assert set(np.unique(to_np(f))) == set(range(10))
    b = tritorch.zeros(100, dtype=tritorch.bool, device=device).random_()
    assert 20 < to_np(b).sum() < 80


def test_bernoulli(device):
    tritorch.manual_seed(0)
    p = tritorch.tensor([0.0, 1.0, 0.5, 0.2], device=device).expand(512, 4)
    s = to_np(tritorch.bernoulli(p))
    assert set(np.unique(s)) <= {0.0, 1.0}
    assert s[:, 0].sum() == 0 and s[:, 1].sum() == 512
    assert abs(s[:, 2].mean() - 0.5) < 0.08 and abs(s[:, 3].mean() - 0.2) < 0.08
    m = tritorch.zeros(1000, dtype=tritorch.bool, device=device).bernoulli_(0.3)
    assert m.dtype is tritorch.bool and abs(to_np(m).mean() - 0.3) < 0.05
    h = tritorch.empty(256, dtype=tritorch.float16, device=device).bernoulli_(
        tritorch.full((256,), 0.75, dtype=tritorch.float16, device=device))
    assert abs(to_np(h).mean() - 0.75) < 0.1
    with pytest.raises(RuntimeError, match=r"p to be in \[0, 1\]"):
        tritorch.zeros(2, device=device).bernoulli_(1.5)


def test_bernoulli_same_on_devices():
    outs = []
    for dev in ("cpu", "cuda"):
        g = tritorch.Generator(dev).manual_seed(21)
        p = tritorch.linspace(0, 1, 64, dtype=tritorch.float64, device=dev)
        outs.append(to_np(tritorch.bernoulli(p, generator=g)))
    np.testing.assert_array_equal(*outs)


def test_normal_function(device):
    t = tritorch.normal(3.0, 0.1, (1000,), device=device)
    assert abs(to_np(t).mean() - 3) < 0.02
    mean = tritorch.tensor([0.0, 100.0], device=device)
    t = tritorch.normal(mean, 0.01)
    assert np.allclose(to_np(t), [0, 100], atol=0.1)


def test_randperm(device):
    tritorch.manual_seed(4)
    p = tritorch.randperm(50, device=device)
    assert p.dtype is tritorch.int64 and p.device.type == device
    assert sorted(p.tolist()) == list(range(50)) and p.tolist() != list(range(50))
    assert tritorch.randperm(0, device=device).shape == (0,)
    tritorch.manual_seed(4)
    other = "cuda" if device == "cpu" else "cpu"
    assert tritorch.randperm(50, device=other).tolist() == p.tolist()


def test_multinomial(device):
    tritorch.manual_seed(2)
    w = tritorch.tensor([[0.0, 1.0, 3.0], [5.0, 0.0, 0.0]], device=device)
    s = to_np(tritorch.multinomial(w, 2000, replacement=True))
    assert s.shape == (2, 2000) and np.all(s[1] == 0) and not np.any(s[0] == 0)
    assert abs((s[0] == 2).mean() - 0.75) < 0.05
    s = to_np(tritorch.multinomial(tritorch.tensor([1.0, 1.0, 0.0, 2.0], device=device), 3))
    assert sorted(s.tolist()) == [0, 1, 3]
    with pytest.raises(RuntimeError, match="without replacement"):
        tritorch.multinomial(tritorch.ones(2, device=device), 3)
    with pytest.raises(RuntimeError, match="element < 0"):
        tritorch.multinomial(tritorch.tensor([-1.0, 2.0], device=device), 1)


@pytest.mark.gpu
def test_gpu_matches_reference():
    # on a real GPU the integer and uniform paths are bitwise equal to the NumPy reference; randn within a few ulp
    for dtype in FLOATS:
        tritorch.manual_seed(77)
        a = tritorch.rand(10000, dtype=dtype, device="cuda")
        tritorch.manual_seed(77)
        np.testing.assert_array_equal(to_np(a), to_np(tritorch.rand(10000, dtype=dtype)))
    tritorch.manual_seed(77)
    a = tritorch.randint(-2 ** 40, 2 ** 40, (10000,), device="cuda")
    tritorch.manual_seed(77)
    np.testing.assert_array_equal(to_np(a), to_np(tritorch.randint(-2 ** 40, 2 ** 40, (10000,))))
    for dtype, rtol in ((tritorch.float32, 4e-6), (tritorch.float64, 1e-13)):
        tritorch.manual_seed(78)
        a = tritorch.randn(10000, dtype=dtype, device="cuda")
        tritorch.manual_seed(78)
        np.testing.assert_allclose(to_np(a), to_np(tritorch.randn(10000, dtype=dtype)), rtol=rtol, atol=rtol)
