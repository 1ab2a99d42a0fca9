"""The autotuner: the best launch configuration of each tunable kernel per GPU, cached on disk.

A tunable kernel declares a :class:`Tunable`: its candidate :class:`Config` list, a pruning rule (drop configs that
cannot fit or are pointless for the sizes at hand), a key function (dtypes, layout and sizes bucketed to powers of
two, so similar shapes share one tuning) and a heuristic default. At launch the op asks ``tunable.pick(key, run)``:

- without tuning (interpreter, no GPU, ``TRITORCH_AUTOTUNE=0``) the heuristic default is used, nothing is timed;
- on a GPU, the first call with a new key times each remaining candidate (``run(config)`` launches it) with CUDA
  events — warm-up, repeats, median, L2 flushed between runs, ``reset()`` before each run of a kernel that writes
  in place — keeps the fastest, and writes it to the cache file; a single remaining candidate is never timed.

The cache file is per device: GPU name, compute capability, triton and tritorch versions are in its name and its
header. Each entry records the kernel's source hash and candidate list, so a changed kernel re-tunes, and each
candidate's timing on its own, so adding a candidate times only the new one. Writes are atomic (temp file + rename)
under a lock file, merged with what other processes wrote meanwhile; a corrupt or foreign file is reported and
ignored, never fatal.
"""
import contextlib
import hashlib
import inspect
import json
import os
import tempfile
import threading
import warnings

__all__ = ["Config", "Tunable", "cache_path", "clear", "entries", "tune_model", "enabled", "REGISTRY",
           "bucket", "set_timer"]

FORMAT = "tritorch-autotune-v1"
REGISTRY = {}
_lock = threading.Lock()
_timer = None            # injected by tests: fn(run_callable) -> milliseconds
_force_tuning = [False]


class Config:
    """One launch configuration: constexpr kwargs plus ``num_warps`` / ``num_stages``."""

    __slots__ = ("kwargs", "num_warps", "num_stages", "name")

    def __init__(self, num_warps=4, num_stages=2, **kwargs):
        self.kwargs = dict(kwargs)
        self.num_warps = num_warps
        self.num_stages = num_stages
        self.name = ",".join(f"{k}={v}" for k, v in sorted(self.kwargs.items())) + f",w{num_warps},s{num_stages}"

    def launch_kwargs(self):
        return dict(self.kwargs, num_warps=self.num_warps, num_stages=self.num_stages)

    def __getitem__(self, k):
        return self.kwargs[k]

    def __repr__(self):
        return f"Config({self.name})"

    def __eq__(self, other):
        return isinstance(other, Config) and other.name == self.name

    def __hash__(self):
        return hash(self.name)


def bucket(n):
    """Sizes share a tuning within a power-of-two bucket: 1000 -> 1024, 1025 -> 2048."""
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


class Tunable:
    """A kernel's tuning space. ``default(key)`` picks without timing; ``prune(configs, key)`` drops candidates."""

    def __init__(self, name, configs, default, prune=None, kernels=()):
        self.name = name
        self.configs = list(configs)
        self._default = default
        self._prune = prune
        self.kernels = kernels
        self._memo = {}
        self._hash = None
        REGISTRY[name] = self

    @property
    def source_hash(self):
        """Hash of the kernels' source: a changed kernel invalidates its cached tunings."""
        if self._hash is None:
            h = hashlib.sha256()
            for k in self.kernels:
                fn = getattr(k, "fn", k)
                try:
                    h.update(inspect.getsource(fn).encode())
                except (OSError, TypeError):
                    h.update(repr(fn).encode())
            self._hash = h.hexdigest()[:16]
        return self._hash

    def candidates(self, key):
        cs = self._prune(self.configs, key) if self._prune else self.configs
        return cs or [self.default(key)]

    def default(self, key):
        return self._default(key)

    def pick(self, key, run=None, reset=None):
        """The configuration for ``key``; on a GPU with tuning on, time the candidates the first time."""
        skey = _key_str(key)
        cfg = self._memo.get(skey)
        if cfg is not None:
            return cfg
        if run is None or not enabled():
            cfg = self.default(key)
        else:
            cfg = self._tune(key, skey, run, reset)
        self._memo[skey] = cfg
        return cfg

    def _tune(self, key, skey, run, reset):
        cands = self.candidates(key)
        if len(cands) == 1:
            return cands[0]
        cache = _Cache.get()
        entry = cache.entry(self, skey)
        timings = entry["timings"]
        for c in cands:
            if c.name in timings:
                continue
            try:
                timings[c.name] = _time(run, c, reset)
            except Exception as e:            # a config that fails to compile or run is never chosen
                timings[c.name] = float("inf")
                _warn(f"autotune {self.name}: config {c.name} failed ({type(e).__name__}: {e})")
        by_name = {c.name: c for c in cands}
        best = min((t, n) for n, t in timings.items() if n in by_name)[1]
        entry["best"] = best
        default = self.default(key)
        entry["default"] = default.name
        cache.save()
        return by_name[best]

    def cached(self, key):
        """The cached choice for ``key`` on this device, or None: lets a new process start tuned."""
        e = _Cache.get().peek(self, _key_str(key))
        if e and e.get("best"):
            for c in self.configs:
                if c.name == e["best"]:
                    return c
        return None


def _key_str(key):
    return "|".join(str(k) for k in key) if isinstance(key, tuple) else str(key)


def enabled():
    """Tuning happens only on a real GPU, and not with TRITORCH_AUTOTUNE=0."""
    if _force_tuning[0]:
        return True
    if os.environ.get("TRITORCH_AUTOTUNE", "1") in ("0", "", "false"):
        return False
    from ._device import INTERPRET
    if INTERPRET:
        return False
    from . import cuda
    return cuda.is_available()


@contextlib.contextmanager
def set_timer(timer):
    """Tests: time candidates with ``timer(run) -> ms`` and tune even without a GPU."""
    global _timer
    prev, prev_force = _timer, _force_tuning[0]
    _timer, _force_tuning[0] = timer, True
    for t in REGISTRY.values():
        t._memo.clear()
    try:
        yield
    finally:
        _timer, _force_tuning[0] = prev, prev_force
        for t in REGISTRY.values():
            t._memo.clear()


def _time(run, cfg, reset):
    if _timer is not None:
        if reset:
            reset()
        return float(_timer(lambda: run(cfg)))
    from ._timing import cuda_time
    return cuda_time(lambda: run(cfg), reset=reset)


def _warn(msg):
    warnings.warn(msg, RuntimeWarning, stacklevel=3)


# ---- the cache file ----------------------------------------------------------------------------------------------

def _device_id():
    from ._device import INTERPRET
    from . import cuda
    import triton
    from . import __version__
    if INTERPRET or not cuda.is_available():
        name, cc = "interpreter" if INTERPRET else "nogpu", "na"
    else:
        from . import _cuda_runtime as rt
        name = rt.device_name(0)
        cc = "".join(map(str, rt.compute_capability(0))) if hasattr(rt, "compute_capability") else "na"
    safe = "".join(ch if ch.isalnum() else "-" for ch in name).strip("-")
    return {"gpu": name, "cc": cc, "triton": triton.__version__, "tritorch": __version__,
            "file": f"autotune-{safe}-cc{cc}-triton{triton.__version__}-tritorch{__version__}.json"}


def cache_dir():
    d = os.environ.get("TRITORCH_CACHE_DIR")
    if not d:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        d = os.path.join(base, "tritorch")
    return d


def cache_path():
    """The cache file of this device (it may not exist yet)."""
    return os.path.join(cache_dir(), _device_id()["file"])


class _Cache:
    _inst = None

    def __init__(self, path, header):
        self.path = path
        self.header = header
        self.data = _read(path, header)

    @classmethod
    def get(cls):
        path = cache_path()
        if cls._inst is None or cls._inst.path != path:
            cls._inst = cls(path, {k: v for k, v in _device_id().items() if k != "file"})
        return cls._inst

    def _kernel(self, t):
        k = self.data["kernels"].setdefault(t.name, {"source_hash": t.source_hash, "entries": {}})
        if k.get("source_hash") != t.source_hash:           # the kernel changed: its tunings are stale
            k.clear()
            k.update(source_hash=t.source_hash, entries={})
        k["candidates"] = [c.name for c in t.configs]
        return k

    def entry(self, t, skey):
        return self._kernel(t)["entries"].setdefault(skey, {"timings": {}})

    def peek(self, t, skey):
        k = self.data["kernels"].get(t.name)
        if not k or k.get("source_hash") != t.source_hash:
            return None
        return k["entries"].get(skey)

    def save(self):
        """Merge with the file as it is now (another process may have written) and replace it atomically."""
        with _lock, _file_lock(self.path + ".lock"):
            disk = _read(self.path, self.header, quiet=True)
            for name, k in self.data["kernels"].items():
                dk = disk["kernels"].get(name)
                if dk and dk.get("source_hash") == k.get("source_hash"):
                    for skey, e in dk.get("entries", {}).items():
                        mine = k["entries"].setdefault(skey, {"timings": {}})
                        for cname, ms in e.get("timings", {}).items():
                            mine["timings"].setdefault(cname, ms)
                        if "best" not in mine and "best" in e:
                            mine["best"] = e["best"]
            for name, dk in disk["kernels"].items():
                self.data["kernels"].setdefault(name, dk)
            atomic_write_text(self.path, json.dumps(self.data, indent=1, sort_keys=True))


def _empty(header):
    return {"format": FORMAT, "device": dict(header), "kernels": {}}


def _read(path, header, quiet=False):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return _empty(header)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        if not quiet:
            _warn(f"tritorch.autotune: ignoring corrupt cache file {path} ({e})")
        return _empty(header)
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("device") != header or \
            not isinstance(data.get("kernels"), dict):
        if not quiet:
            _warn(f"tritorch.autotune: ignoring cache file {path}: it belongs to another device or version")
        return _empty(header)
    return data


@contextlib.contextmanager
def _file_lock(path):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "a+") as f:
        try:
            import fcntl
            fcntl.flock(f, fcntl.LOCK_EX)
        except ImportError:            # not POSIX: the atomic rename alone keeps the file valid
            pass
        yield


def atomic_write_text(path, text):
    """Write ``text`` to ``path`` atomically: a temp file in the same folder, fsync, then rename over."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def clear():
    """Delete this device's cache file and forget in-process choices."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(cache_path())
    _Cache._inst = None
    for t in REGISTRY.values():
        t._memo.clear()


def entries():
    """The cached tunings of this device: a list of (kernel, key, best config, {config: ms})."""
    data = _read(cache_path(), {k: v for k, v in _device_id().items() if k != "file"}, quiet=True)
    out = []
    for name, k in sorted(data["kernels"].items()):
        for skey, e in sorted(k.get("entries", {}).items()):
            out.append((name, skey, e.get("best"), dict(e.get("timings", {}))))
    return out


def tune_model(model, *example_inputs, loss_fn=None):
    """Tune ahead of time: one forward and backward of ``model`` on example inputs with tuning on, so that the
    kernels of that model's shapes are cached for every later process."""
    out = model(*example_inputs)
    if loss_fn is not None:
        out = loss_fn(out)
    elif not (hasattr(out, "numel") and out.numel() == 1):
        out = out.float().sum() if hasattr(out, "sum") else out
    if getattr(out, "requires_grad", False):
        out.backward()
    return entries()

