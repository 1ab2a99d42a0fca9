"""How many signatures a compiled function keeps (PyTorch's ``torch._dynamo.config.recompile_limit``), why each
re-capture happened (``explain()``), and ``reset()``: static shapes past the limit run eagerly with one warning,
dynamic ones keep the most recently used signatures."""
import warnings

import numpy as np
import pytest

import tritorch
import tritorch._dynamo.config as dynamo_config
import tritorch.nn as nn
from tritorch.compiler import config


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
