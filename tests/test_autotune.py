"""The autotuner's cache logic with an injected timer (no GPU needed), its real CUDA-event path against a fake CUDA
driver, keys and bucketing, ``force``, ``tuning`` and ``tune_model``."""
import json
import os
import subprocess
import sys
import textwrap
import warnings

import pytest

from tritorch import autotune as at


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITORCH_CACHE_DIR", str(tmp_path))
    at._Cache._inst = None
    yield tmp_path
    at._Cache._inst = None
    for name in [n for n in at.REGISTRY if n.startswith("test.")]:
        del at.REGISTRY[name]


def _kernel_a(x):
    return x + 1


def _kernel_b(x):
    return x + 2


CONFIGS = [at.Config(BLOCK=b, num_warps=w) for b in (64, 128, 256) for w in (4, 8)]


def _tunable(name="test.t", configs=CONFIGS, kernels=(_kernel_a,), prune=None):
    at.REGISTRY.pop(name, None)
    return at.Tunable(name, configs, default=lambda key: configs[0], prune=prune, kernels=kernels)


def _fake_timer(times, calls):
    """Times from ``times`` by config name; tritorch's own tunable kernels (whose runs return tensors) get 1 ms."""
    def timer(run):
        cfg = run()
        if not isinstance(cfg, at.Config):
            return 1.0
        calls.append(cfg.name)
        return times[cfg.name]
    return timer


def test_fastest_candidate_wins_and_is_cached(cache_dir):
    t = _tunable()
    times = {c.name: 10.0 + i for i, c in enumerate(CONFIGS)}
    times[CONFIGS[3].name] = 1.0
    calls = []
    with at.set_timer(_fake_timer(times, calls)):
        assert t.pick(("float32", 1024), run=lambda c: c) == CONFIGS[3]
        assert len(calls) == len(CONFIGS)
        assert t.pick(("float32", 1024), run=lambda c: c) == CONFIGS[3]      # memoised: no new timing
        assert len(calls) == len(CONFIGS)
    data = json.loads(open(at.cache_path()).read())
    entry = data["kernels"]["test.t"]["entries"]["float32|1024"]
    assert entry["best"] == CONFIGS[3].name and len(entry["timings"]) == len(CONFIGS)
    assert at.entries()[0][:3] == ("test.t", "float32|1024", CONFIGS[3].name)
    assert entry["default"] == CONFIGS[0].name and entry["candidates"] == sorted(c.name for c in CONFIGS)
    e = at.entries()[0]
    assert e.default == CONFIGS[0].name and e.speedup == pytest.approx(10.0)


def test_a_new_process_reads_the_file_and_times_nothing(cache_dir):
    t = _tunable()
    times = {c.name: float(i + 1) for i, c in enumerate(CONFIGS)}
    with at.set_timer(_fake_timer(times, [])):
        t.pick(("k",), run=lambda c: c)
    at._Cache._inst = None                     # what a fresh process starts with
    t2 = _tunable()

    def refuse(run):
        raise AssertionError("timed a cached key")
    with at.set_timer(refuse):
        assert t2.pick(("k",), run=lambda c: c) == CONFIGS[0]
    assert t2.cached(("k",)) == CONFIGS[0]


def test_changed_kernel_source_retunes(cache_dir):
    times = {c.name: float(i + 1) for i, c in enumerate(CONFIGS)}
    with at.set_timer(_fake_timer(times, [])):
        _tunable(kernels=(_kernel_a,)).pick(("k",), run=lambda c: c)
    at._Cache._inst = None
    calls = []
    with at.set_timer(_fake_timer(times, calls)):
        _tunable(kernels=(_kernel_b,)).pick(("k",), run=lambda c: c)
    assert len(calls) == len(CONFIGS)


def test_adding_a_candidate_times_only_the_new_one(cache_dir):
    times = {c.name: float(i + 2) for i, c in enumerate(CONFIGS)}
    with at.set_timer(_fake_timer(times, [])):
        _tunable().pick(("k",), run=lambda c: c)
    at._Cache._inst = None
    extra = at.Config(BLOCK=512, num_warps=8)
    times[extra.name] = 0.5
    calls = []
    with at.set_timer(_fake_timer(times, calls)):
        assert _tunable(configs=CONFIGS + [extra]).pick(("k",), run=lambda c: c) == extra
    assert calls == [extra.name]


def test_single_candidate_is_never_timed(cache_dir):
    t = _tunable(prune=lambda cs, key: cs[:1])

    def refuse(run):
        raise AssertionError("timed a single candidate")
    with at.set_timer(refuse):
        assert t.pick(("k",), run=lambda c: c) == CONFIGS[0]


def test_failing_config_is_never_chosen(cache_dir):
    t = _tunable()
    bad = CONFIGS[0].name

    def timer(run):
        cfg = run()
        if cfg.name == bad:
            raise RuntimeError("out of shared memory")
        return 5.0 if cfg is not CONFIGS[2] else 1.0
    with pytest.warns(RuntimeWarning, match="failed"), at.set_timer(timer):
        assert t.pick(("k",), run=lambda c: c) == CONFIGS[2]


def test_no_tuning_without_gpu_uses_the_default(cache_dir):
    t = _tunable()
    assert not at.enabled()        # interpreter (tests) or no GPU
    assert t.pick(("k",), run=lambda c: pytest.fail("timed without a GPU")) == CONFIGS[0]
    assert not os.path.exists(at.cache_path())


@pytest.mark.parametrize("content", ["{not json", "", '{"format": "other"}', "\x00\x01\x02"])
def test_corrupt_or_foreign_file_is_reported_and_ignored(cache_dir, content):
    os.makedirs(os.path.dirname(at.cache_path()), exist_ok=True)
    with open(at.cache_path(), "w") as f:
        f.write(content)
    t = _tunable()
    times = {c.name: float(i + 1) for i, c in enumerate(CONFIGS)}
    with pytest.warns(RuntimeWarning, match="ignoring"), at.set_timer(_fake_timer(times, [])):
        assert t.pick(("k",), run=lambda c: c) == CONFIGS[0]
    assert json.loads(open(at.cache_path()).read())["format"] == at.FORMAT


def test_other_device_file_is_ignored(cache_dir):
    t = _tunable()
    times = {c.name: float(i + 1) for i, c in enumerate(CONFIGS)}
    with at.set_timer(_fake_timer(times, [])):
        t.pick(("k",), run=lambda c: c)
    data = json.loads(open(at.cache_path()).read())
    data["device"]["gpu"] = "Some Other GPU"
    with open(at.cache_path(), "w") as f:
        json.dump(data, f)
    at._Cache._inst = None
    calls = []
    with pytest.warns(RuntimeWarning, match="another device"), at.set_timer(_fake_timer(times, calls)):
        _tunable().pick(("k",), run=lambda c: c)
    assert len(calls) == len(CONFIGS)


def test_bucketing():
    assert [at.bucket(n) for n in (0, 1, 2, 3, 1000, 1024, 1025)] == [1, 1, 2, 4, 1024, 1024, 2048]


def test_concurrent_writers_leave_a_valid_merged_file(cache_dir):
    script = textwrap.dedent("""
        import sys
        from tritorch import autotune as at
        cfgs = [at.Config(BLOCK=b) for b in (16, 32, 64)]
        t = at.Tunable("test.shared", cfgs, default=lambda k: cfgs[0])
        with at.set_timer(lambda run: float(run().kwargs["BLOCK"])):
            for i in range(int(sys.argv[1]), int(sys.argv[1]) + 20):
                t.pick(("key", i), run=lambda c: c)
    """)
    env = dict(os.environ, TRITORCH_CACHE_DIR=str(cache_dir))
    procs = [subprocess.Popen([sys.executable, "-c", script, str(start)], env=env) for start in (0, 100)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    data = json.loads(open(at.cache_path()).read())
    keys = data["kernels"]["test.shared"]["entries"]
    assert len(keys) == 40 and all(e["best"] == "BLOCK=16,w4,s2" for e in keys.values())


# ---- a second process, truncated files, failures -------------------------------------------------------------
SECOND_PROCESS = textwrap.dedent("""
    import json
    from tritorch import autotune as at



    def _kernel_a(x):
        return x + 1


    cfgs = [at.Config(BLOCK=b, num_warps=w) for b in (64, 128, 256) for w in (4, 8)]
    t = at.Tunable("test.t", cfgs, default=lambda key: cfgs[0], kernels=(_kernel_a,))
    timed = []
    def timer(run):
        timed.append(run().name)
        return 1.0
    with at.set_timer(timer):
        cfg = t.pick(("float32", 1024), run=lambda c: c)
    print(json.dumps({"cfg": cfg.name, "timed": timed}))
""")


def test_a_second_process_reads_the_file_and_times_nothing(cache_dir, tmp_path):
    src = tmp_path / "second.py"
    src.write_text(SECOND_PROCESS)
    times = {c.name: 5.0 for c in CONFIGS}
    times[CONFIGS[4].name] = 2.0
    with at.set_timer(_fake_timer(times, [])):
        _tunable(kernels=(_kernel_a,)).pick(("float32", 1024), run=lambda c: c)
    env = dict(os.environ, TRITORCH_CACHE_DIR=str(cache_dir))
    r = subprocess.run([sys.executable, str(src)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out == {"cfg": CONFIGS[4].name, "timed": []}


def test_truncated_file_is_reported_and_rewritten(cache_dir):
    times = {c.name: float(i + 1) for i, c in enumerate(CONFIGS)}
    with at.set_timer(_fake_timer(times, [])):
        _tunable().pick(("k",), run=lambda c: c)
    text = open(at.cache_path()).read()
    with open(at.cache_path(), "w") as f:
        f.write(text[: len(text) // 2])
    at._Cache._inst = None
    calls = []
    with pytest.warns(RuntimeWarning, match="corrupt"), at.set_timer(_fake_timer(times, calls)):
        assert _tunable().pick(("k",), run=lambda c: c) == CONFIGS[0]
    assert len(calls) == len(CONFIGS)
    assert json.loads(open(at.cache_path()).read())["kernels"]["test.t"]["entries"]["k"]["best"] == CONFIGS[0].name
    assert at.entries()[0].best == CONFIGS[0].name


def test_structurally_wrong_file_is_foreign(cache_dir):
    os.makedirs(os.path.dirname(at.cache_path()), exist_ok=True)
    with open(at.cache_path(), "w") as f:
        json.dump({"format": at.FORMAT, "device": at._header(), "kernels": {"x": "not a dict"}}, f)
    with pytest.warns(RuntimeWarning, match="ignoring cache file"), \
            at.set_timer(_fake_timer({c.name: 1.0 for c in CONFIGS}, [])):
        _tunable().pick(("k",), run=lambda c: c)
    assert at.entries()[0].kernel == "test.t"


def test_every_config_failing_falls_back_to_the_default(cache_dir):
    def timer(run):
        raise RuntimeError("no")
    with pytest.warns(RuntimeWarning, match="failed"), at.set_timer(timer):
        assert _tunable().pick(("k",), run=lambda c: c) == CONFIGS[0]
    e = at.entries()[0]
    assert e.best == CONFIGS[0].name and all(v is None for v in e.timings.values()) and e.speedup is None


def test_the_default_is_timed_even_when_pruned_away(cache_dir):
    outside = at.Config(BLOCK=32, num_warps=2)
    at.REGISTRY.pop("test.d", None)
    t = at.Tunable("test.d", CONFIGS, default=lambda key: outside, prune=lambda cs, key: cs[:2])
    times = {CONFIGS[0].name: 2.0, CONFIGS[1].name: 1.0, outside.name: 4.0}
    calls = []
    with at.set_timer(_fake_timer(times, calls)):
        assert t.pick(("k",), run=lambda c: c) == CONFIGS[1]
    assert sorted(calls) == sorted(times)
    assert at.entries()[0].speedup == pytest.approx(4.0)


def test_reset_runs_before_each_timed_run(cache_dir):
    log = []

    def timer(run):
        log.append("run:" + run().name)
        return 1.0
    with at.set_timer(timer):
        _tunable(configs=CONFIGS[:2]).pick(("k",), run=lambda c: c, reset=lambda: log.append("reset"))
    assert log == ["reset", "run:" + CONFIGS[0].name, "reset", "run:" + CONFIGS[1].name]


def test_clear_removes_the_file_and_the_memo(cache_dir):
    t = _tunable()
    with at.set_timer(_fake_timer({c.name: 1.0 for c in CONFIGS}, [])):
        t.pick(("k",), run=lambda c: c)
        assert os.path.exists(at.cache_path()) and t._memo
        at.clear()
    assert not os.path.exists(at.cache_path()) and not t._memo and at.entries() == []


# ---- keys ------------------------------------------------------------------------------------------------------------
def test_bucketed_keys_share_one_tuning(cache_dir):
    t = _tunable()
    calls = []
    with at.set_timer(_fake_timer({c.name: 1.0 for c in CONFIGS}, calls)):
        for n in (513, 700, 1000, 1024):
            t.pick(("float32", at.bucket(n)), run=lambda c: c)
        assert len(calls) == len(CONFIGS)
        t.pick(("float32", at.bucket(1025)), run=lambda c: c)
        assert len(calls) == 2 * len(CONFIGS)
    assert [e.key for e in at.entries()] == ["float32|1024", "float32|2048"]


def test_layout_classes():
    import tritorch
    x = tritorch.zeros(3, 4)
    assert at.layout(x) == "c"
    assert at.layout(x.t()) == "t"
    assert at.layout(x[:, ::2]) == "s"
    assert at.layout(tritorch.zeros(4).expand(3, 4)) == "b"
    assert at.layout(tritorch.zeros(2, 3, 4).transpose(1, 2)) == "t"
    assert at.layout(((1, 5), (7, 1))) == "c"              # size-1 dims do not count
    assert at.layout(((5, 1), (1, 9))) == "c"
    assert at.layout(((), ())) == "c"


def test_matmul_style_tuple_configs(cache_dir):
    """Configs that are tuples with a stable repr (kernels.matmul.MatmulConfig) work as they are."""
    from tritorch.kernels.matmul import CANDIDATES, MatmulConfig
    at.REGISTRY.pop("test.mm", None)
    t = at.Tunable("test.mm", CANDIDATES, default=lambda key: MatmulConfig(16, 16, 16, 1, 1, 2))
    times = {at.config_name(c): 10.0 - i for i, c in enumerate(CANDIDATES)}
    times[at.config_name(CANDIDATES[1])] = 0.1
    with at.set_timer(_fake_timer_by_name(times)):
        assert t.pick(("bfloat16", "c", "t", 4096, 4096, 4096), run=lambda c: c) == CANDIDATES[1]
    assert at.entries()[0].best == "MatmulConfig(BLOCK_M=128, BLOCK_N=128, BLOCK_K=32, GROUP_M=8, num_warps=8, " \
                                   "num_stages=4)"
    at._Cache._inst = None
    t._memo.clear()
    assert t.cached(("bfloat16", "c", "t", 4096, 4096, 4096)) == CANDIDATES[1]


def _fake_timer_by_name(times):
    return lambda run: times[at.config_name(run())]


# ---- force, tuning, tune_model ---------------------------------------------------------------------------------------
def test_force_pins_a_config(cache_dir):
    t = _tunable()
    with at.force("test.t", CONFIGS[5]) as cfg:
        assert cfg is CONFIGS[5]
        assert t.pick(("k",), run=lambda c: pytest.fail("timed a forced kernel")) is CONFIGS[5]
        with at.force("test.t", 2):
            assert t.pick(("k",)) is CONFIGS[2]
        assert t.pick(("k",)) is CONFIGS[5]
    assert t.pick(("k",)) == CONFIGS[0]                           # back to the default
    with at.force("test.t", CONFIGS[3].name):
        assert t.pick(("other",)) is CONFIGS[3]
    assert at.seen()[("test.t", "other")] is CONFIGS[3]
    with pytest.raises(KeyError, match="no tunable kernel named 'nope'"):
        with at.force("nope", CONFIGS[0]):
            pass
    with pytest.raises(KeyError, match="no candidate"):
        with at.force("test.t", "BLOCK=7,w1,s1"):
            pass


def test_tuning_switch_needs_a_gpu():
    assert not at.enabled() and at.why_disabled()
    with at.tuning(True):
        assert not at.enabled()                                   # interpreter / no GPU: still off
    with at.set_timer(lambda run: 1.0):
        assert at.enabled() and at.why_disabled() is None


def _model_with(tunable):
    import tritorch
    from tritorch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, x):
            for n in x.shape:
                tunable.pick(("float32", at.bucket(n)), run=lambda c: c)
            return tritorch.relu(self.lin(x))
    return Net()


def test_tune_model_runs_forward_and_backward_with_tuning_on(cache_dir):
    import tritorch
    t = _tunable()
    net = _model_with(t)
    x = tritorch.randn(5, 4)
    times = {c.name: float(i + 1) for i, c in enumerate(CONFIGS)}
    times[CONFIGS[1].name] = 0.5
    calls = []
    with at.set_timer(_fake_timer(times, calls)):
        got = [e for e in at.tune_model(net, x) if e.kernel == "test.t"]
    assert [(e.kernel, e.key, e.best) for e in got] == [("test.t", "float32|4", CONFIGS[1].name),
                                                       ("test.t", "float32|8", CONFIGS[1].name)]
    assert got[0].speedup == pytest.approx(2.0)
    assert all(p.grad is None for p in net.parameters())         # backward ran, gradients left as they were
    assert len(calls) == 2 * len(CONFIGS)


def test_tune_model_without_a_gpu_uses_defaults(cache_dir, device):
    import tritorch
    t = _tunable()
    net = _model_with(t).to(device)
    got = at.tune_model(net, tritorch.randn(2, 4, device=device), loss_fn=lambda out: out.sum())
    got = [e for e in got if e.kernel == "test.t"]
    assert [(e.key, e.best, e.timings) for e in got] == [("float32|2", CONFIGS[0].name, {}),
                                                        ("float32|4", CONFIGS[0].name, {})]
    assert not os.path.exists(at.cache_path())


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.delenv("TRITORCH_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert at.cache_dir() == str(tmp_path / "xdg" / "tritorch")
    monkeypatch.setenv("TRITORCH_CACHE_DIR", str(tmp_path / "mine"))
    assert at.cache_path().startswith(str(tmp_path / "mine"))
    name = os.path.basename(at.cache_path())
    import triton
    import tritorch
    assert name.startswith("autotune-interpreter-ccna-") or name.startswith("autotune-nogpu-") or "GPU" in name \
        or "cc" in name
    assert f"triton{triton.__version__}" in name and f"tritorch{tritorch.__version__}" in name


# ---- the real CUDA-event path, against a fake CUDA driver ------------------------------------------------------------
def test_cuda_event_tuning_against_a_fake_driver(tmp_path):
    """On a (fake) GPU: tuning is on unless TRITORCH_AUTOTUNE=0, candidates are timed with CUDA events around each
    run after an L2 flush and a reset, the fastest wins, the file is keyed by the GPU's name and capability."""
    from test_cuda_runtime import ok, run
    code = """
        import json, os, time
        from tritorch import autotune as at, _timing
        _timing.L2_FLUSH_BYTES = 1 << 20                   # the fake's memsets run on the host: keep them small
        cfgs = [at.Config(SLEEP=s) for s in (24, 2, 12)]
        t = at.Tunable("test.fake", cfgs, default=lambda key: cfgs[0])
        resets = []
        runs = lambda c: time.sleep(c.kwargs["SLEEP"] / 1000)
        print(json.dumps({"enabled": at.enabled(), "why": at.why_disabled(),
                          "cfg": t.pick(("k",), run=runs, reset=lambda: resets.append(1)).name,
                          "resets": len(resets), "path": os.path.basename(at.cache_path()),
                          "flushes": len([a for n, a in LOG if n == "memset" and a[1] == _timing.L2_FLUSH_BYTES]),
                          "events_live": CUevent.live, "entries": len(at.entries())}))
        with at.tuning(True):
            print(json.dumps({"override": at.enabled()}))
    """
    env = {"TRITORCH_CACHE_DIR": str(tmp_path)}
    out = json.loads(ok(run(code, fake=True, env=env)).splitlines()[0])
    assert out["enabled"] and out["why"] is None and out["cfg"] == "SLEEP=2,w4,s2", out
    assert out["resets"] == 3 * (3 + 20) and out["flushes"] == 3 * 20 and out["events_live"] == 0
    assert out["path"].startswith("autotune-Fake-GPU-cc90-triton") and out["entries"] == 1
    off = ok(run(code, fake=True, env=dict(env, TRITORCH_AUTOTUNE="0", TRITORCH_CACHE_DIR=str(tmp_path / "o"))))
    first, second = (json.loads(line) for line in off.splitlines()[:2])
    assert not first["enabled"] and first["why"] == "TRITORCH_AUTOTUNE=0" and first["cfg"] == "SLEEP=24,w4,s2"
    assert first["resets"] == 0 and first["entries"] == 0 and second == {"override": True}


def test_a_running_process_picks_up_what_another_wrote(cache_dir):
    """This process read the (empty) file first; another process tunes the key; no timing here."""
    at._Cache.get()                                             # read now: nothing there yet
    other = at._Cache(at.cache_path(), at._header())            # the other process's view
    t = _tunable()
    e = other.entry(t, "k")
    e["timings"].update({c.name: float(i + 1) for i, c in enumerate(CONFIGS)})
    e["timings"][CONFIGS[2].name] = 0.1
    other.save()

    def refuse(run):
        raise AssertionError("timed what another process had timed")
    with at.set_timer(refuse):
        assert t.pick(("k",), run=lambda c: c) == CONFIGS[2]


# ---- never fatal: malformed records, unwritable files, a cache dir that is a file --------------------------------
def _write_cache(kernels):
    os.makedirs(os.path.dirname(at.cache_path()), exist_ok=True)
    with open(at.cache_path(), "w") as f:
        json.dump({"format": at.FORMAT, "device": at._header(), "kernels": kernels}, f)


def _unwritable(monkeypatch):
    """Every write of the cache fails as in a read-only folder (tests run as root, where chmod does not stop it)."""
    def refuse(path, *a, **k):
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr(at, "_file_lock", refuse)
    monkeypatch.setattr(at._atomic, "write", refuse)


@pytest.mark.parametrize("record", [
    {"entries": {"k": "not a dict"}},
    {"entries": {"k": {"timings": [1.0]}}},
    {"entries": {"k": {"timings": {"BLOCK=64,w4,s2": "fast"}}}},
    {"entries": {"k": {"timings": {"BLOCK=64,w4,s2": True}}}},
    {"entries": {"k": {"timings": {"BLOCK=64,w4,s2": float("nan")}}}},
    {"entries": {"k": {"timings": {"BLOCK=64,w4,s2": -1.0}}}},
    {"entries": {"k": {"timings": {}, "best": 3}}},
    {"entries": {"k": {"timings": {}, "best": ["BLOCK=64,w4,s2"]}}},
    {"entries": {"k": {"timings": {}, "candidates": "BLOCK=64,w4,s2"}}},
    {"entries": ["k"]},
    {"entries": {"k": {}}, "candidates": 5},
    {"entries": {"k": {}}, "source_hash": None},
])
def test_malformed_records_are_dropped_and_replaced(cache_dir, record):
    t = _tunable()
    _write_cache({"test.t": dict({"source_hash": t.source_hash}, **record),
                  "test.other": {"source_hash": "h", "entries": {"k": {"timings": {"a": 1.5}, "best": "a"}}}})
    times = {c.name: float(i + 1) for i, c in enumerate(CONFIGS)}
    calls = []
    with pytest.warns(RuntimeWarning, match="ignoring cache file records of .* that are malformed: test.t"), \
            at.set_timer(_fake_timer(times, calls)):
        assert t.pick(("k",), run=lambda c: c) == CONFIGS[0]
    assert len(calls) == len(CONFIGS)
    data = json.loads(open(at.cache_path()).read())
    assert data["kernels"]["test.t"]["entries"]["k"]["timings"] == times         # replaced by the new timings
    assert data["kernels"]["test.other"]["entries"]["k"]["best"] == "a"          # a good record is kept
    at._Cache._inst = None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _tunable().cached(("k",)) == CONFIGS[0]


def test_a_cached_key_never_rewrites_the_file(cache_dir, monkeypatch):
    times = {c.name: float(i + 1) for i, c in enumerate(CONFIGS)}
    with at.set_timer(_fake_timer(times, [])):
        _tunable().pick(("k",), run=lambda c: c)
    before = os.stat(at.cache_path())
    at._Cache._inst = None
    _unwritable(monkeypatch)
    with warnings.catch_warnings(), at.set_timer(_fake_timer(times, [])):
        warnings.simplefilter("error")
        assert _tunable().pick(("k",), run=lambda c: c) == CONFIGS[0]
    after = os.stat(at.cache_path())
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_an_unwritable_cache_warns_once_and_keeps_tunings_in_memory(cache_dir, monkeypatch):
    _unwritable(monkeypatch)
    t = _tunable()
    times = {c.name: float(len(CONFIGS) - i) for i, c in enumerate(CONFIGS)}
    with warnings.catch_warnings(record=True) as w, at.set_timer(_fake_timer(times, [])):
        warnings.simplefilter("always")
        assert t.pick(("a",), run=lambda c: c) == CONFIGS[-1]
        assert t.pick(("b",), run=lambda c: c) == CONFIGS[-1]
    msgs = [str(x.message) for x in w]
    assert len(msgs) == 1 and "cannot write the cache file" in msgs[0] and "PermissionError" in msgs[0], msgs
    t._memo.clear()
    assert t.cached(("a",)) == CONFIGS[-1] and t.cached(("b",)) == CONFIGS[-1]     # still known in memory
    assert not os.path.exists(at.cache_path())


def test_cache_dir_that_is_a_file_is_not_fatal(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setenv("TRITORCH_CACHE_DIR", str(blocker))
    t = _tunable()
    times = {c.name: float(len(CONFIGS) - i) for i, c in enumerate(CONFIGS)}
    with warnings.catch_warnings(record=True) as w, at.set_timer(_fake_timer(times, [])):
        warnings.simplefilter("always")
        assert t.pick(("a",), run=lambda c: c) == CONFIGS[-1]
        assert t.pick(("b",), run=lambda c: c) == CONFIGS[-1]
    msgs = [str(x.message) for x in w]
    assert len(msgs) == 1 and "cannot write the cache file" in msgs[0] and "FileExistsError" in msgs[0], msgs
    assert blocker.read_text() == "x" and at.entries() == [] and t.cached(("b",)) == CONFIGS[-1]


def test_stale_temp_files_of_a_killed_writer_are_removed(cache_dir):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=60)
    folder, name = os.path.split(at.cache_path())
    os.makedirs(folder, exist_ok=True)
    stale = os.path.join(folder, f".{name}.tmp-{dead.pid}-0123abcd")
    live = os.path.join(folder, f".{name}.tmp-{os.getpid()}-0123abcd")
    for p in (stale, live):
        with open(p, "w") as f:
            f.write("{partial")
    at._Cache.get()
    assert not os.path.exists(stale) and os.path.exists(live)
