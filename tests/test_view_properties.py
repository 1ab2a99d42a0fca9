"""Property tests: random chains of view ops agree with NumPy, share storage, and survive contiguous()/clone()
through the strided-copy kernel and an in-place write through the view."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tritorch

from helpers import assert_close

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def view_chains(draw):
    """A small array shape and a list of view steps, each valid for the shape it is applied to."""
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
    steps, cur = [], shape
    for _ in range(draw(st.integers(1, 4))):
        nd = len(cur)
        kind = draw(st.sampled_from(["permute", "transpose", "slice", "unsqueeze", "squeeze", "expand", "select",
                                     "flip_reshape"]))
        if kind == "permute":
            perm = tuple(draw(st.permutations(range(nd))))
            steps.append(("permute", perm))
            cur = tuple(cur[p] for p in perm)
        elif kind == "transpose" and nd >= 2:
            a, b = draw(st.integers(0, nd - 1)), draw(st.integers(0, nd - 1))
            steps.append(("transpose", (a, b)))
            cur = list(cur)
            cur[a], cur[b] = cur[b], cur[a]
            cur = tuple(cur)
        elif kind == "slice":
            d = draw(st.integers(0, nd - 1))
            start = draw(st.integers(0, cur[d]))
            step = draw(st.integers(1, 3))
            steps.append(("slice", (d, start, step)))
            cur = cur[:d] + (len(range(start, cur[d], step)),) + cur[d + 1:]
        elif kind == "unsqueeze" and nd < 5:
            d = draw(st.integers(-nd - 1, nd))
            steps.append(("unsqueeze", d))
            cur = tuple(np.expand_dims(np.empty(cur), d).shape)
        elif kind == "squeeze" and 1 in cur:
            d = cur.index(1)
            steps.append(("squeeze", d))
            cur = cur[:d] + cur[d + 1:]
        elif kind == "expand" and 1 in cur:
            d = cur.index(1)
            n = draw(st.integers(0, 3))
            steps.append(("expand", (d, n)))
            cur = cur[:d] + (n,) + cur[d + 1:]
        elif kind == "select" and nd >= 2 and cur[0] > 0:
            i = draw(st.integers(-cur[0], cur[0] - 1))
            steps.append(("select", i))
            cur = cur[1:]
        elif kind == "flip_reshape":
            steps.append(("reshape", (-1,)))
            cur = (int(np.prod(cur)),)
    return shape, steps


def _apply(x, steps, is_np):
    for kind, arg in steps:
        if kind == "permute":
            x = np.transpose(x, arg) if is_np else x.permute(*arg)
        elif kind == "transpose":
            x = np.swapaxes(x, *arg) if is_np else x.transpose(*arg)
        elif kind == "slice":
            d, start, step = arg
            idx = (slice(None),) * d + (slice(start, None, step),)
            x = x[idx]
        elif kind == "unsqueeze":
            x = np.expand_dims(x, arg) if is_np else x.unsqueeze(arg)
        elif kind == "squeeze":
            x = np.squeeze(x, arg) if is_np else x.squeeze(arg)
        elif kind == "expand":
            d, n = arg
            shape = x.shape[:d] + (n,) + x.shape[d + 1:]
            x = np.broadcast_to(x, shape) if is_np else x.expand(*shape)
        elif kind == "select":
            x = x[arg]
        elif kind == "reshape":
            x = np.reshape(x, arg) if is_np else x.reshape(*arg)
    return x


@SETTINGS
@given(chain=view_chains(), seed=st.integers(0, 2 ** 16))
def test_view_chain_matches_numpy(chain, seed, device):
    shape, steps = chain
    ref = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    t = tritorch.tensor(ref, device=device)
    v, r = _apply(t, steps, False), _apply(ref, steps, True)
    assert tuple(v.shape) == r.shape
    assert_close(v, r)
    c = v.contiguous()
    assert c.is_contiguous() and tuple(c.shape) == r.shape
    assert_close(c, r)
    assert_close(v.clone(), r)
    if all(k != "reshape" for k, _ in steps):       # reshape of a non-viewable layout copies, as in PyTorch
        assert v.data_ptr() == t.data_ptr() + v.storage_offset() * 4


@SETTINGS
@given(chain=view_chains(), seed=st.integers(0, 2 ** 16))
def test_write_through_view_reaches_base(chain, seed, device):
    shape, steps = chain
    if any(k in ("expand", "reshape") for k, _ in steps):
        return                                     # overlapping or possibly copied views are not write targets
    ref = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    t = tritorch.tensor(ref, device=device)
    v = _apply(t, steps, False)
    r = _apply(ref, steps, True)
    v.mul_(2.0)
    r *= 2.0                                       # NumPy views write through to ref in the same places
    assert_close(t, ref)


@pytest.mark.parametrize("shape", [(0,), (2, 0, 3), (1,), ()])
def test_views_of_empty_and_scalar(shape, device):
    t = tritorch.zeros(shape, device=device)
    assert tuple(t.reshape(-1).shape) == (int(np.prod(shape)),)
    assert tuple(t.unsqueeze(0).shape) == (1,) + shape
    assert_close(t.contiguous(), np.zeros(shape))
