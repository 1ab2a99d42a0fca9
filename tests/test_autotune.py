"""The autotuner's cache logic, with an injected timer (no GPU needed)."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from tritorch import autotune as at


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITORCH_CACHE_DIR", str(tmp_path))
    at._Cache._inst = None
    yield tmp_path
    at._Cache._inst = None


def _kernel_a(x):
    return x + 1


def _kernel_b(x):
    return x + 2


CONFIGS = [at.Config(BLOCK=b, num_warps=w) for b in (64, 128, 256) for w in (4, 8)]


def _tunable(name="t", configs=CONFIGS, kernels=(_kernel_a,), prune=None):
    at.REGISTRY.pop(name, None)
    return at.Tunable(name, configs, default=lambda key: configs[0], prune=prune, kernels=kernels)


def _fake_timer(times, calls):
    def timer(run):
        cfg = run()
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
    entry = data["kernels"]["t"]["entries"]["float32|1024"]
    assert entry["best"] == CONFIGS[3].name and len(entry["timings"]) == len(CONFIGS)
    assert at.entries()[0][:3] == ("t", "float32|1024", CONFIGS[3].name)


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
        t = at.Tunable("shared", cfgs, default=lambda k: cfgs[0])
        with at.set_timer(lambda run: float(run().kwargs["BLOCK"])):
            for i in range(int(sys.argv[1]), int(sys.argv[1]) + 20):
                t.pick(("key", i), run=lambda c: c)
    """)
    env = dict(os.environ, TRITORCH_CACHE_DIR=str(cache_dir))
    procs = [subprocess.Popen([sys.executable, "-c", script, str(start)], env=env) for start in (0, 100)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    data = json.loads(open(at.cache_path()).read())
    keys = data["kernels"]["shared"]["entries"]
    assert len(keys) == 40 and all(e["best"] == "BLOCK=16,w4,s2" for e in keys.values())
