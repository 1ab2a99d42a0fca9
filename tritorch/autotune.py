"""The autotuner: the best launch configuration of each tunable kernel per GPU, cached on disk.

A tunable kernel declares a :class:`Tunable`: its candidate configurations (:class:`Config`, or any config object
with a stable ``repr`` such as ``kernels.matmul.MatmulConfig``), a pruning rule (drop candidates that cannot fit or
are pointless for the sizes at hand), a heuristic default and the Triton kernels whose source it tunes. At launch the
op builds a key and asks ``tunable.pick(key, run, reset)``:

- the key is a tuple of dtype names, layout classes (:func:`layout`: ``c`` contiguous, ``t`` transposed, ``b``
  broadcast, ``s`` other strides) and sizes bucketed by :func:`bucket` (the next power of two: 1000 -> 1024,
  1025 -> 2048), so similar shapes share one tuning;
- without tuning (interpreter, no GPU, ``TRITORCH_AUTOTUNE=0``) the heuristic default is used, nothing is timed;
- on a GPU, the first call with a new key times each remaining candidate (``run(config)`` launches it) with CUDA
  events (tritorch's own timer, :mod:`tritorch._timing`: warm-up, repeats, median, L2 flushed between runs,
  ``reset()`` before each run of a kernel that writes in place or accumulates), keeps the fastest and writes it to
  the cache file; a single remaining candidate is never timed. The default is timed too, for the speed-up report.

The cache file is per device: GPU name, compute capability, triton and tritorch versions are in its name and its
header. Each kernel's record holds its source hash and candidate list, so a changed kernel re-tunes; each
candidate's timing is stored on its own, so adding a candidate times only the new one. Writes are atomic (temp file
+ rename) under a lock file, merged with what other processes wrote meanwhile, and only when something new was timed.
Nothing about the file is ever fatal: a corrupt or foreign file is reported (a RuntimeWarning) and ignored, malformed
records in it are dropped (and replaced at the next write), and a file or folder that cannot be read or written
(read-only, ``TRITORCH_CACHE_DIR`` naming a file) is reported once while the tunings stay in memory. The file lives
in the user's cache dir (``TRITORCH_CACHE_DIR`` moves it). ``force(name, config)`` pins a kernel's configuration
(tests run every candidate this way); :func:`tune_model` tunes a model ahead of time.
"""
import collections
import contextlib
import functools
import hashlib
import inspect
import json
import math
import os
import sys
import threading
import warnings

from . import _atomic

__all__ = ["Config", "Tunable", "cache_path", "cache_dir", "clear", "entries", "tune_model", "enabled", "force",
           "tuning", "bucket", "layout", "set_timer", "REGISTRY", "Entry"]

FORMAT = "tritorch-autotune-v1"
REGISTRY = {}            # kernel name -> Tunable
_FORCED = {}             # kernel name -> forced config (``force``)
_SEEN = {}               # (kernel name, key string) -> config chosen in this process (first pick of each key)
_lock = threading.Lock()
_timer = None            # injected by tests: fn(run_callable) -> milliseconds
_override = [None]       # ``tuning(on)``: True / False overrides TRITORCH_AUTOTUNE where a GPU is present
_WARNED = set()          # (what, cache path) already reported: a failing cache write warns once per file


class Config:
    """One launch configuration: constexpr kwargs plus ``num_warps`` / ``num_stages``."""

    __slots__ = ("kwargs", "num_warps", "num_stages", "name")

    def __init__(self, num_warps=4, num_stages=2, **kwargs):
        self.kwargs = dict(kwargs)
        self.num_warps = num_warps
        self.num_stages = num_stages
        self.name = ",".join(f"{k}={v}" for k, v in sorted(self.kwargs.items())) + f",w{num_warps},s{num_stages}"

    def launch_kwargs(self):
        """The keyword arguments of ``kernel[grid](..., **cfg.launch_kwargs())``."""
        return dict(self.kwargs, num_warps=self.num_warps, num_stages=self.num_stages)

    def __getitem__(self, k):
        return self.kwargs[k]

    def __getattr__(self, k):
        try:
            return self.kwargs[k] if k != "kwargs" else object.__getattribute__(self, k)
        except KeyError:
            raise AttributeError(k) from None

    def __repr__(self):
        return f"Config({self.name})"

    def __eq__(self, other):
        return isinstance(other, Config) and other.name == self.name

    def __hash__(self):
        return hash(self.name)


def config_name(cfg):
    """The name a configuration is stored under: ``Config.name``, else its ``repr`` (stable for tuples)."""
    name = getattr(cfg, "name", None)
    return name if isinstance(name, str) else repr(cfg)


def bucket(n):
    """Sizes share a tuning within a power-of-two bucket: 0, 1 -> 1; 1000 -> 1024; 1025 -> 2048."""
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def layout(t):
    """The layout class of a tensor (or ``(shape, stride)``) in a key: ``c`` contiguous, ``t`` the last two dims
    transposed (column-major matrix), ``b`` broadcast (a stride 0 on a dim of size > 1), ``s`` any other strides."""
    shape, stride = (t._shape, t._stride) if hasattr(t, "_shape") else t
    dims = [(n, s) for n, s in zip(shape, stride) if n != 1]
    if any(s == 0 for _, s in dims):
        return "b"

    def dense(ds):
        expect = 1
        for n, s in reversed(ds):
            if s != expect:
                return False
            expect *= n
        return True
    if dense(dims):
        return "c"
    if len(shape) >= 2 and shape[-1] != 1 and shape[-2] != 1:
        sw = list(zip(shape, stride))
        sw[-1], sw[-2] = sw[-2], sw[-1]
        if dense([d for d in sw if d[0] != 1]):
            return "t"
    return "s"


def _key_str(key):
    """The key as stored in the cache file: its parts joined by ``|`` (dtypes by their short name)."""
    parts = key if isinstance(key, tuple) else (key,)
    return "|".join(str(k).removeprefix("tritorch.") for k in parts)


class Entry(collections.namedtuple("Entry", "kernel key best timings default")):
    """One cached tuning: kernel name, key string, chosen config name, {config name: ms}, default config name."""

    __slots__ = ()

    @property
    def speedup(self):
        """Time of the default config over time of the chosen one (None if either was not timed)."""
        tb, td = self.timings.get(self.best), self.timings.get(self.default)
        return td / tb if tb and td else None


class Tunable:
    """A kernel's tuning space.

    ``configs``: the candidates; ``default(key)``: the heuristic choice (no timing); ``prune(configs, key)``: the
    candidates worth timing for ``key``; ``kernels``: the Triton kernels (their source hash invalidates old tunings);
    ``spill_ok``: {config name: reason} for candidates allowed to spill registers (``tritorch compile-check``).
    """

    def __init__(self, name, configs, default, prune=None, kernels=(), spill_ok=None):
        self.name = name
        self.spill_ok = dict(spill_ok or {})
        self.configs = list(configs)
        self._default = default
        self._prune = prune
        self.kernels = tuple(kernels)
        self._memo = {}
        self._hash = None
        REGISTRY[name] = self

    @property
    def source_hash(self):
        """Hash of the kernels' source: a changed kernel invalidates its cached tunings."""
        if self._hash is None:
            h = hashlib.sha256()
            for k in self.kernels:
                src = getattr(k, "src", None)
                if not isinstance(src, str):
                    fn = getattr(k, "fn", k)
                    try:
                        src = inspect.getsource(fn)
                    except (OSError, TypeError):
                        src = getattr(fn, "__qualname__", repr(fn))
                h.update(src.encode())
            self._hash = h.hexdigest()[:16]
        return self._hash

    def candidates(self, key):
        """The configurations worth timing for ``key`` (the default alone if pruning leaves none)."""
        cs = self._prune(self.configs, key) if self._prune else self.configs
        return list(cs) or [self.default(key)]

    def default(self, key):
        return self._default(key)

    def pick(self, key, run=None, reset=None):
        """The configuration for ``key``: forced, memoised, the default without tuning, else the fastest
        candidate (timed once per key and device, then read from the cache file)."""
        if _FORCED:
            cfg = _FORCED.get(self.name)
            if cfg is not None:
                k = (self.name, _key_str(key))
                _SEEN.pop(k, None)                # the latest forced pick is the last entry
                _SEEN[k] = cfg
                return cfg
        cfg = self._memo.get(key)
        if cfg is not None:
            return cfg
        skey = _key_str(key)
        if run is None or not enabled():
            cfg = self.default(key)
        else:
            cfg = self._tune(key, skey, run, reset)
        self._memo[key] = cfg
        _SEEN[(self.name, skey)] = cfg
        return cfg

    def _tune(self, key, skey, run, reset):
        cands = self.candidates(key)
        if len(cands) == 1:
            return cands[0]
        default = self.default(key)
        if config_name(default) not in {config_name(c) for c in cands}:
            cands.append(default)
        by_name = {config_name(c): c for c in cands}
        cache = _Cache.get()
        if not all(n in cache.entry(self, skey)["timings"] for n in by_name):
            cache.refresh()                   # another process may have timed them meanwhile
        entry = cache.entry(self, skey)
        timings = entry["timings"]
        timed = False
        for name, c in by_name.items():
            if name in timings:
                continue
            timed = True
            try:
                timings[name] = _time(run, c, reset)
            except Exception as e:            # a config that fails to compile or run is never chosen
                timings[name] = None
                _warn(f"autotune {self.name}: config {name} failed ({type(e).__name__}: {e})")
        ok = [(t, n) for n, t in timings.items() if n in by_name and t is not None]
        best = min(ok)[1] if ok else config_name(default)
        entry.update(best=best, default=config_name(default), candidates=sorted(by_name))
        if timed:                             # nothing new: the file already holds these timings
            cache.save()
        return by_name[best]

    def cached(self, key):
        """The cached choice for ``key`` on this device, or None."""
        e = _Cache.get().peek(self, _key_str(key))
        if e and e.get("best"):
            for c in self.configs:
                if config_name(c) == e["best"]:
                    return c
        return None


def enabled():
    """Whether a first call with a new key times candidates: on a real GPU, unless TRITORCH_AUTOTUNE=0 (which
    ``tuning(True)`` overrides); never in interpreter mode or without a GPU (an injected test timer always tunes)."""
    if _timer is not None:
        return True
    from ._device import INTERPRET
    if INTERPRET:
        return False
    from . import cuda
    if not cuda.is_available():
        return False
    if _override[0] is not None:
        return _override[0]
    return os.environ.get("TRITORCH_AUTOTUNE", "1").strip().lower() not in ("0", "", "false", "off", "no")


def why_disabled():
    """A short reason why tuning is off here, or None when it is on."""
    if enabled():
        return None
    from ._device import INTERPRET
    if INTERPRET:
        return "interpreter mode (TRITORCH_INTERPRET=1)"
    from . import cuda
    if not cuda.is_available():
        return "no CUDA GPU"
    return "TRITORCH_AUTOTUNE=0" if _override[0] is None else "tuning(False)"


def _forget():
    for t in REGISTRY.values():
        t._memo.clear()


@contextlib.contextmanager
def tuning(on=True):
    """Turn tuning on (or off) inside the block, whatever TRITORCH_AUTOTUNE says (a GPU is still needed)."""
    prev = _override[0]
    _override[0] = bool(on)
    _forget()
    try:
        yield
    finally:
        _override[0] = prev
        _forget()


@contextlib.contextmanager
def force(name, config):
    """Inside the block, kernel ``name`` launches with ``config`` (no default, no timing): how tests run every
    candidate. ``config`` may be a candidate, its index in the candidate list or its stored name."""
    t = REGISTRY.get(name)
    if t is None:
        raise KeyError(f"tritorch.autotune.force: no tunable kernel named {name!r}; known: {sorted(REGISTRY)}")
    if isinstance(config, int):
        config = t.configs[config]
    elif isinstance(config, str):
        match = [c for c in t.configs if config_name(c) == config]
        if not match:
            raise KeyError(f"tritorch.autotune.force: {name} has no candidate {config!r}")
        config = match[0]
    prev = _FORCED.get(name)
    _FORCED[name] = config
    try:
        yield config
    finally:
        if prev is None:
            _FORCED.pop(name, None)
        else:
            _FORCED[name] = prev


@contextlib.contextmanager
def set_timer(timer):
    """Tests: time candidates with ``timer(run) -> ms`` and tune even without a GPU."""
    global _timer
    prev = _timer
    _timer = timer
    _forget()
    try:
        yield
    finally:
        _timer = prev
        _forget()


def _time(run, cfg, reset):
    if _timer is not None:
        if reset:
            reset()
        return float(_timer(lambda: run(cfg)))
    from ._timing import cuda_time
    return cuda_time(lambda: run(cfg), reset=reset)


def _warn(msg):
    warnings.warn(msg, RuntimeWarning, stacklevel=3)


def _warn_once(what, path, msg):
    if (what, path) not in _WARNED:
        _WARNED.add((what, path))
        _warn(msg)


# ---- the cache file ----------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _device_id():
    import triton
    from ._device import INTERPRET
    from . import cuda
    from ._version import __version__
    if INTERPRET or not cuda.is_available():
        name, cc = ("interpreter" if INTERPRET else "nogpu"), "na"
    else:
        from . import _cuda_runtime as rt
        name = rt.device_name(0)
        cc = "".join(map(str, rt.compute_capability(0)))
    safe = "".join(ch if ch.isalnum() else "-" for ch in name).strip("-")
    return {"gpu": name, "cc": cc, "triton": triton.__version__, "tritorch": __version__,
            "file": f"autotune-{safe}-cc{cc}-triton{triton.__version__}-tritorch{__version__}.json"}


def _header():
    return {k: v for k, v in _device_id().items() if k != "file"}


def cache_dir():
    """``TRITORCH_CACHE_DIR``, else ``tritorch`` in the user's cache dir (XDG_CACHE_HOME or ~/.cache on Linux,
    ~/Library/Caches on macOS, %LOCALAPPDATA% on Windows)."""
    d = os.environ.get("TRITORCH_CACHE_DIR")
    if d:
        return d
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.join(os.path.expanduser("~"), "AppData", "Local")
    elif sys.platform == "darwin":
        base = os.path.join(os.path.expanduser("~"), "Library", "Caches")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tritorch")


def cache_path():
    """The cache file of this device (it may not exist yet)."""
    return os.path.join(cache_dir(), _device_id()["file"])


class _Cache:
    _inst = None

    def __init__(self, path, header):
        self.path = path
        self.header = header
        _atomic.remove_stale(path)               # temporaries of a writer that was killed before its rename
        self.data = _read(path, header)

    @classmethod
    def get(cls):
        path = cache_path()
        if cls._inst is None or cls._inst.path != path:
            cls._inst = cls(path, _header())
        return cls._inst

    def _kernel(self, t):
        k = self.data["kernels"].setdefault(t.name, {"source_hash": t.source_hash, "entries": {}})
        if k.get("source_hash") != t.source_hash:           # the kernel changed: its tunings are stale
            k.clear()
            k.update(source_hash=t.source_hash, entries={})
        k["candidates"] = [config_name(c) for c in t.configs]
        return k

    def entry(self, t, skey):
        return self._kernel(t)["entries"].setdefault(skey, {"timings": {}})

    def peek(self, t, skey):
        k = self.data["kernels"].get(t.name)
        if not k or k.get("source_hash") != t.source_hash:
            return None
        return k["entries"].get(skey)

    def refresh(self):
        """Take in what other processes wrote since this one read the file."""
        with _lock:
            self._merge(_read(self.path, self.header, quiet=True))

    def save(self):
        """Merge with the file as it is now (another process may have written) and replace it atomically; a file
        that cannot be written is reported once and the tunings stay in memory."""
        with _lock:
            try:
                with _file_lock(self.path + ".lock"):
                    self._merge(_read(self.path, self.header, quiet=True))
                    _atomic.write(self.path, json.dumps(self.data, indent=1, sort_keys=True))
            except OSError as e:
                _warn_once("write", self.path, f"tritorch.autotune: cannot write the cache file {self.path} "
                           f"({type(e).__name__}: {e}); tunings are kept in memory for this process only")

    def _merge(self, disk):
        """Fold the entries of ``disk`` (same kernel source only) into this cache; ours win on conflicts."""
        for name, k in self.data["kernels"].items():
            dk = disk["kernels"].get(name)
            if not isinstance(dk, dict) or dk.get("source_hash") != k.get("source_hash"):
                continue
            for skey, e in dk.get("entries", {}).items():
                mine = k["entries"].setdefault(skey, {"timings": {}})
                for cname, ms in e.get("timings", {}).items():
                    mine["timings"].setdefault(cname, ms)
                for field in ("best", "default", "candidates"):
                    if field not in mine and field in e:
                        mine[field] = e[field]
        for name, dk in disk["kernels"].items():
            self.data["kernels"].setdefault(name, dk)


def _empty(header):
    return {"format": FORMAT, "device": dict(header), "kernels": {}}


def _read(path, header, quiet=False):
    """The cache file's data (its malformed records dropped), or an empty cache if it is missing, unreadable,
    corrupt or foreign (reported unless ``quiet``)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (FileNotFoundError, NotADirectoryError):       # no file (a folder that is a file: the write reports it)
        return _empty(header)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        if not quiet:
            _warn(f"tritorch.autotune: ignoring corrupt cache file {path} ({type(e).__name__}: {e})")
        return _empty(header)
    except OSError as e:
        if not quiet:
            _warn_once("read", path, f"tritorch.autotune: ignoring cache file {path}: it cannot be read "
                       f"({type(e).__name__}: {e})")
        return _empty(header)
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("device") != header or \
            not isinstance(data.get("kernels"), dict):
        if not quiet:
            _warn(f"tritorch.autotune: ignoring cache file {path}: it belongs to another device or version, "
                  f"or is not a tritorch autotune file")
        return _empty(header)
    dropped = _drop_malformed(data["kernels"])
    if dropped and not quiet:
        _warn(f"tritorch.autotune: ignoring cache file records of {path} that are malformed: "
              f"{', '.join(dropped[:5])}{' ...' if len(dropped) > 5 else ''} (they are replaced at the next write)")
    return data


def _strs(x):
    return isinstance(x, list) and all(isinstance(v, str) for v in x)


def _good_entry(e):
    """Whether ``e`` is a well-formed entry: {"timings": {name: ms >= 0 or None}, "best"/"default": name,
    "candidates": [name]}, the last three optional."""
    if not isinstance(e, dict) or not isinstance(e.setdefault("timings", {}), dict):
        return False
    if not all(ms is None or (type(ms) in (int, float) and math.isfinite(ms) and ms >= 0)
               for ms in e["timings"].values()):
        return False
    return all(isinstance(e[f], str) for f in ("best", "default") if f in e) and \
        ("candidates" not in e or _strs(e["candidates"]))


def _drop_malformed(kernels):
    """Delete the malformed kernel records and entries of a cache file's ``kernels`` in place; their names."""
    dropped = []
    for name in list(kernels):
        k = kernels[name]
        if not isinstance(k, dict) or not isinstance(k.get("source_hash"), str) or \
                not isinstance(k.setdefault("entries", {}), dict) or ("candidates" in k and not _strs(k["candidates"])):
            del kernels[name]
            dropped.append(name)
            continue
        for skey in list(k["entries"]):
            if not _good_entry(k["entries"][skey]):
                del k["entries"][skey]
                dropped.append(f"{name}[{skey}]")
    return dropped


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


def clear():
    """Delete this device's cache file and forget in-process choices."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(cache_path())
    _Cache._inst = None
    _SEEN.clear()
    _forget()


def entries():
    """The cached tunings of this device, sorted: a list of ``Entry(kernel, key, best, timings, default)``
    (``timings``: config name -> median ms, None for a config that failed; ``.speedup`` over the default)."""
    data = _read(cache_path(), _header(), quiet=True)
    out = []
    for name, k in sorted(data["kernels"].items()):
        for skey, e in sorted(k.get("entries", {}).items()):
            out.append(Entry(name, skey, e.get("best"), dict(e.get("timings", {})), e.get("default")))
    return out


def seen():
    """The configurations chosen in this process: ``{(kernel, key): config}`` (first pick of each key)."""
    return dict(_SEEN)


def tune_model(model, *example_inputs, loss_fn=None, backward=True):
    """Tune ahead of time: one forward and (if anything requires grad) backward of ``model`` on example inputs
    with tuning on, so that the kernels of that model's shapes are cached for every later process. Parameter
    gradients are left as they were. Returns the entries chosen during the run (tuned ones carry timings)."""
    params = list(model.parameters()) if hasattr(model, "parameters") else []
    grads = [p.grad for p in params]
    prev = dict(_SEEN)
    _SEEN.clear()
    try:
        with tuning(True):
            out = model(*example_inputs)
            if backward:
                loss = loss_fn(out) if loss_fn is not None else _scalar(out)
                if loss is not None and getattr(loss, "requires_grad", False):
                    loss.backward()
    finally:
        picked = dict(_SEEN)
        _SEEN.update(prev)
        _SEEN.update(picked)
        for p, g in zip(params, grads):
            p.grad = g
    from . import cuda
    if cuda.is_available():
        cuda.synchronize()
    cached = {(e.kernel, e.key): e for e in entries()}
    return [cached.get(k) or Entry(k[0], k[1], config_name(c), {}, config_name(c))
            for k, c in sorted(picked.items(), key=lambda kv: kv[0])]


def _scalar(out):
    """A scalar to differentiate: the sum of every floating-point tensor in ``out`` (tensor, tuple, list, dict)."""
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        parts = [_scalar(o) for o in out]
        parts = [p for p in parts if p is not None]
        if not parts:
            return None
        total = parts[0]
        for p in parts[1:]:
            total = total + p
        return total
    if hasattr(out, "dtype") and getattr(out.dtype, "is_floating_point", False) and \
            getattr(out, "requires_grad", False):
        return out.sum()
    return None
