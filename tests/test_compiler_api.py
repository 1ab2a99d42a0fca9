"""The ``torch.compiler`` / ``torch._dynamo`` names of ``tritorch.compile``: how many signatures a compiled function
keeps (``recompile_limit``: static shapes past it run eagerly with one warning, dynamic ones keep the most recently
used), why each re-capture happened (``explain()``), ``reset()``, ``is_compiling()`` and ``disable``."""
import warnings

import numpy as np
import pytest

import tritorch
import tritorch._dynamo.config as dynamo_config
import tritorch.nn as nn
from tritorch.compiler import CompileError, config


def f(x, scale=2.0):
    return (x * scale).relu() + 1.0


def _sizes(c):
    """The first input's shape of every signature ``c`` keeps, oldest first."""
    return [key[0][1][0][1] for key in c._entries]


def test_static_signatures_past_the_limit_run_eagerly(monkeypatch):
    monkeypatch.setattr(config, "recompile_limit", 3)
    c = tritorch.compile(f, dynamic=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for n in (1, 2, 3):
            c(tritorch.randn(n))
    with pytest.warns(UserWarning, match=r"hit config.recompile_limit \(3\)[\s\S]*function: 'f'[\s\S]*last "
                                         r"reason: tensor argument 0 size mismatch at index 0\. expected 3, actual 4"):
        x = tritorch.randn(4)
        np.testing.assert_array_equal(c(x).numpy(), f(x).numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # one warning per compiled function
        x = tritorch.randn(5)
        np.testing.assert_array_equal(c(x).numpy(), f(x).numpy())
        c(tritorch.randn(1))                    # a kept signature still replays
    assert _sizes(c) == [(1,), (2,), (3,)]
    assert "recompile_limit (3) reached: new signatures run eagerly" in c.explain()


@pytest.mark.parametrize("dynamic", [None, True])
def test_dynamic_signatures_keep_the_most_recently_used(monkeypatch, dynamic):
    monkeypatch.setattr(config, "recompile_limit", 3)
    c = tritorch.compile(f, dynamic=dynamic)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for n in (1, 2, 3, 1, 4):               # 1 replays (the most recent now); 4 drops 2, the least recent
            x = tritorch.randn(n)
            np.testing.assert_array_equal(c(x).numpy(), f(x).numpy())
    assert _sizes(c) == [(3,), (1,), (4,)]
    assert "dropped the least recently used signature" in c.explain()


def test_explain_says_why_each_signature_was_captured_again():
    m = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5))
    c = tritorch.compile(lambda x, s: f(m(x), s))
    x = tritorch.randn(4, 3)
    c(tritorch.randn(2, 3), 2.0)
    c(x, 2.0)
    c(x, 3.0)
    with tritorch.no_grad():
        c(x, 3.0)
        m.eval()
        c(x, 3.0)
        c(x.requires_grad_(), 3.0)
    c(x, 3.0)
    lines = c.explain().splitlines()
    assert lines[0].startswith("signature 0: ")
    assert lines[1].startswith("signature 1 (re-captured: tensor argument 0 size mismatch at index 0. expected 2, "
                               "actual 4): ")
    assert lines[2].startswith("signature 2 (re-captured: argument 1 changed: 2.0 -> 3.0): ")
    assert lines[3].startswith("signature 3 (re-captured: grad mode changed: expected True, actual False): ")
    assert lines[4].startswith("signature 4 (re-captured: a called module's training mode changed): ")
    assert lines[5].startswith("signature 5 (re-captured: tensor argument 0 requires_grad mismatch. expected False, "
                               "actual True): ")
    assert lines[6].startswith("signature 6 (re-captured: grad mode changed: expected False, actual True): ")


def test_dynamo_config_names_and_reset(monkeypatch):
    assert dynamo_config is config is tritorch._dynamo.config
    monkeypatch.setattr(config, "recompile_limit", 8)
    tritorch._dynamo.config.cache_size_limit = 5             # PyTorch's older name for the same setting
    assert config.recompile_limit == 5 and config.cache_size_limit == 5
    c = tritorch.compile(f)
    c(tritorch.randn(2))
    tritorch._dynamo.reset()                                 # every compiled function forgets its signatures
    assert not c._entries and c.explain() == ""
    c(tritorch.randn(2))
    tritorch.compiler.reset()
    assert not c._entries


class M(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def test_is_compiling_only_while_a_compile_captures():
    seen = []

    def g(x):
        seen.append((tritorch.compiler.is_compiling(), tritorch._dynamo.is_compiling(), tritorch.jit.is_scripting()))
        return x + 1
    c = tritorch.compile(g)
    x = tritorch.randn(3)
    g(x)
    c(x)
    c(x)                                        # the replay runs no Python of g
    tritorch.jit.script(M(g))(x)
    assert seen == [(False, False, False), (True, True, False), (False, False, True)]


def test_disable_runs_the_function_eagerly():
    calls = []

    @tritorch.compiler.disable
    def helper(x):
        calls.append(1)
        return x * 3

    def g(x):
        return helper(x.relu()) + 1

    c = tritorch.compile(g)
    x = tritorch.randn(5)
    for _ in range(3):
        np.testing.assert_array_equal(c(x).numpy(), g(x).numpy())
    assert len(calls) == 6                      # every call ran it: the signature runs eagerly
    assert "the forward calls test_disable_runs_the_function_eagerly.<locals>.helper, which tritorch.compiler." \
        "disable keeps out of graphs, so this signature runs eagerly" in c.explain()
    with pytest.raises(CompileError, match="fullgraph=True.*helper.*tritorch.compiler.disable keeps out of graphs"):
        tritorch.compile(g, fullgraph=True)(x)
    m = tritorch._dynamo.disable(nn.Linear(5, 5), reason="logging")
    c = tritorch.compile(lambda x: m(x).sum())
    c(x)
    assert "signature 0" not in c.explain() and "Linear.forward" in c.explain()
    np.testing.assert_array_equal(helper(x).numpy(), (x * 3).numpy())      # outside a compile: as it is
