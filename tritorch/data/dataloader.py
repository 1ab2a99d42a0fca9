"""``DataLoader``: batches of samples from a dataset, in the main process or in worker processes.

Collation follows PyTorch's ``default_collate``: tensors and NumPy arrays are stacked, numbers become tensors,
strings stay lists, and dicts, tuples and lists are collated field by field. With ``num_workers > 0`` each worker
(a ``multiprocessing`` process, forked by default) fetches and collates whole batches; tensors travel back as NumPy
arrays and are rebuilt on their device, and batches are handed out in sampler order whichever worker finishes first.
Workers never outlive the main process, even one killed with SIGKILL: on Linux the kernel kills them when it dies
(``prctl(PR_SET_PDEATHSIG)``), and everywhere a waiting worker checks its parent every second and exits when it is gone.
"""
import collections.abc
import ctypes
import itertools
import multiprocessing
import os
import queue
import random
import signal
import sys
import threading
import time
import traceback

import numpy as np

import tritorch
from .. import _dtype as D
from .._device import device as _device
from .._tensor import Tensor
from .dataset import IterableDataset, TensorDataset
from .sampler import SequentialSampler, RandomSampler, BatchSampler, _draw_seed

__all__ = ["DataLoader", "default_collate", "default_convert", "get_worker_info", "WorkerInfo"]

# ---- collation -------------------------------------------------------------------------------------------------
_ERR = ("default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found {}")


def _stack(tensors):
    stack = tritorch._FUNCTIONS.get("stack")
    if stack is not None:
        return stack(tensors, 0)
    first = tensors[0]
    arr = np.stack([t.detach()._to_host_array() for t in tensors])
    return Tensor._wrap_numpy(arr, first.device, first.dtype)


def _is_namedtuple(obj):
    return isinstance(obj, tuple) and hasattr(obj, "_fields")


def _rebuild_mapping(elem, items):
    try:
        if isinstance(elem, collections.abc.MutableMapping):
            clone = type(elem)() if not isinstance(elem, collections.defaultdict) else \
                type(elem)(elem.default_factory)
            clone.update(items)
            return clone
        return type(elem)(items)
    except TypeError:
        return dict(items)


def default_collate(batch):
    """Merge a list of samples into a batch, with PyTorch's rules (a new leading dimension of size len(batch))."""
    elem = batch[0]
    if isinstance(elem, Tensor):
        shapes = {tuple(t.shape) for t in batch}
        if len(shapes) > 1:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got {[list(s) for s in shapes]} "
                               "in the batch")
        return _stack(batch)
    if isinstance(elem, np.ndarray) or isinstance(elem, np.generic) and not isinstance(elem, (np.str_, np.bytes_)):
        if elem.dtype.kind in "OSUV":
            raise TypeError(_ERR.format(elem.dtype))
        if isinstance(elem, np.generic) or elem.ndim == 0:
            return tritorch.tensor(np.array(batch))
        return default_collate([Tensor._wrap_numpy(np.ascontiguousarray(b)) for b in batch])
    if isinstance(elem, bool):
        return tritorch.tensor(batch)
    if isinstance(elem, int):
        return tritorch.tensor(batch)
    if isinstance(elem, float):
        return tritorch.tensor(batch, dtype=D.float64)
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, collections.abc.Mapping):
        return _rebuild_mapping(elem, [(key, default_collate([d[key] for d in batch])) for key in elem])
    if _is_namedtuple(elem):
        return type(elem)(*(default_collate(list(samples)) for samples in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        it = iter(batch)
        elem_size = len(next(it))
        if not all(len(e) == elem_size for e in it):
            raise RuntimeError("each element in list of batch should be of equal size")
        transposed = list(zip(*batch))
        if isinstance(elem, tuple):
            return [default_collate(list(samples)) for samples in transposed]
        try:
            return type(elem)([default_collate(list(samples)) for samples in transposed])
        except TypeError:
            return [default_collate(list(samples)) for samples in transposed]
    raise TypeError(_ERR.format(type(elem)))


def default_convert(data):
    """What a DataLoader without automatic batching (``batch_size=None``) does to each sample: NumPy arrays become
    tensors, containers are converted element by element, everything else is left alone."""
    if isinstance(data, Tensor):
        return data
    if isinstance(data, np.ndarray) and data.dtype.kind not in "OSUV":
        return Tensor._wrap_numpy(np.ascontiguousarray(data))
    if isinstance(data, np.generic) and data.dtype.kind not in "OSUV":
        return tritorch.tensor(data)
    if isinstance(data, collections.abc.Mapping):
        return _rebuild_mapping(data, [(k, default_convert(v)) for k, v in data.items()])
    if _is_namedtuple(data):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, collections.abc.Sequence) and not isinstance(data, (str, bytes)):
        try:
            return type(data)([default_convert(d) for d in data])
        except TypeError:
            return [default_convert(d) for d in data]
    return data


# ---- tensors across processes --------------------------------------------------------------------------------------
class _TensorPayload:
    """A tensor in transit from a worker: its elements as a host array, its dtype and device by name."""
    __slots__ = ("array", "dtype", "device")

    def __init__(self, t):
        self.array = np.ascontiguousarray(t.detach()._to_host_array())
        self.dtype = t.dtype.name
        self.device = str(t.device)

    def rebuild(self):
        return Tensor._wrap_numpy(self.array, _device(self.device), D.to_dtype(self.dtype))


def _map_tensors(obj, fn, cls):
    if isinstance(obj, cls):
        return fn(obj)
    if isinstance(obj, collections.abc.Mapping) and not isinstance(obj, cls):
        return _rebuild_mapping(obj, [(k, _map_tensors(v, fn, cls)) for k, v in obj.items()])
    if _is_namedtuple(obj):
        return type(obj)(*(_map_tensors(v, fn, cls) for v in obj))
    if isinstance(obj, (list, tuple)):
        out = [_map_tensors(v, fn, cls) for v in obj]
        return type(obj)(out) if isinstance(obj, tuple) else out
    return obj


def _pack(obj):
    return _map_tensors(obj, _TensorPayload, Tensor)


def _unpack(obj):
    return _map_tensors(obj, _TensorPayload.rebuild, _TensorPayload)


class _ExceptionWrapper:
    """An exception raised in a worker, carried to the main process with its traceback."""

    def __init__(self, exc_info, where):
        self.exc_type = exc_info[0]
        self.exc_msg = "".join(traceback.format_exception(*exc_info))
        self.where = where

    def reraise(self):
        msg = f"Caught {self.exc_type.__name__} {self.where}.\nOriginal {self.exc_msg}"
        try:
            exc = self.exc_type(msg)
        except Exception:
            raise RuntimeError(msg) from None
        raise exc


class _IterableEnd:
    def __init__(self, worker_id):
        self.worker_id = worker_id


# ---- worker processes --------------------------------------------------------------------------------------------
class WorkerInfo:
    """What ``get_worker_info()`` returns inside a worker: ``id``, ``num_workers``, ``seed``, ``dataset``."""

    def __init__(self, id, num_workers, seed, dataset):
        self.id = id
        self.num_workers = num_workers
        self.seed = seed
        self.dataset = dataset

    def __repr__(self):
        return (f"WorkerInfo(id={self.id}, num_workers={self.num_workers}, seed={self.seed}, "
                f"dataset={self.dataset!r})")


_worker_info = None


def get_worker_info():
    """The WorkerInfo of this worker process; None in the main process."""
    return _worker_info


def _fetch_map(dataset, indices, auto_collation, collate_fn):
    if auto_collation and collate_fn is default_collate and type(dataset) is TensorDataset and indices:
        # what default_collate would build from the rows, as one gather per tensor instead of a select per row
        return [t[list(indices)] for t in dataset.tensors]
    if auto_collation:
        getitems = getattr(dataset, "__getitems__", None)
        data = getitems(indices) if callable(getitems) else [dataset[i] for i in indices]
    else:
        data = dataset[indices]
    return collate_fn(data)


def _fetch_iter(it, batch_size, auto_collation, collate_fn, drop_last):
    """The next (collated) batch from iterator ``it``; StopIteration when it has nothing left."""
    if not auto_collation:
        return collate_fn(next(it))
    data = list(itertools.islice(it, batch_size))
    if not data or (drop_last and len(data) < batch_size):
        raise StopIteration
    return collate_fn(data)


_PR_SET_PDEATHSIG = 1
_PARENT_POLL_S = 1.0         # how often a waiting worker checks that its parent still runs


def _die_with_parent():
    """Linux: the kernel SIGKILLs this process when the thread that started it ends. Whether it could be set."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _worker_loop(is_iterable, dataset, index_queue, result_queue, done_event, auto_collation, collate_fn,
                 drop_last, batch_size, seed, init_fn, worker_id, num_workers, parent_pid=None, pdeathsig=False):
    """One worker: fetch the batches its index queue asks for until told to stop or its parent is gone.

    ``parent_pid``: the process that started this one (None: whatever ``os.getppid()`` is at start);
    ``pdeathsig``: also ask the kernel to kill this worker when its parent dies (Linux)."""
    global _worker_info
    if pdeathsig:
        _die_with_parent()
    if parent_pid is None:
        parent_pid = os.getppid()
    orphaned = False
    try:
        random.seed(seed)
        np.random.seed(seed % (1 << 32))
        manual_seed = getattr(tritorch, "manual_seed", None)
        if manual_seed is not None:
            manual_seed(seed)
        _worker_info = WorkerInfo(worker_id, num_workers, seed, dataset)
        init_error = None
        try:
            if init_fn is not None:
                init_fn(worker_id)
            it = iter(dataset) if is_iterable else None
        except Exception:
            init_error = _ExceptionWrapper(sys.exc_info(), f"in DataLoader worker process {worker_id}")
        exhausted = False
        while True:
            try:
                r = index_queue.get(timeout=_PARENT_POLL_S)
            except queue.Empty:
                if os.getppid() != parent_pid:      # reparented: the main process died (before done_event: it
                    orphaned = True                 # may have died holding that event's lock)
                    break
                if done_event.is_set():
                    break
                continue
            if r is None:
                break
            if done_event.is_set() or exhausted:
                continue
            idx, indices = r
            if init_error is not None:
                data, init_error = init_error, None
                exhausted = is_iterable
            else:
                try:
                    if is_iterable:
                        data = _pack(_fetch_iter(it, batch_size, auto_collation, collate_fn, drop_last))
                    else:
                        data = _pack(_fetch_map(dataset, indices, auto_collation, collate_fn))
                except StopIteration:
                    data = _IterableEnd(worker_id)
                    exhausted = True
                except Exception:
                    data = _ExceptionWrapper(sys.exc_info(), f"in DataLoader worker process {worker_id}")
            result_queue.put((idx, data))
    except KeyboardInterrupt:
        pass
    if orphaned or done_event.is_set():     # nobody reads what is still buffered: do not wait to flush it
        result_queue.cancel_join_thread()
        result_queue.close()


# ---- the loader --------------------------------------------------------------------------------------------------
class DataLoader:
    """Iterate over ``dataset`` in batches: ``for x, y in DataLoader(ds, batch_size=32, shuffle=True): ...``.

    ``shuffle`` uses a RandomSampler driven by ``generator`` (tritorch's default generator when None);
    ``sampler``/``batch_sampler`` replace the default index order; ``collate_fn`` merges a list of samples
    (``default_collate``); ``num_workers`` > 0 loads in that many processes (``worker_init_fn(worker_id)`` runs
    first in each); ``pin_memory`` is accepted and ignored (host memory is not pinned)."""

    def __init__(self, dataset, batch_size=1, shuffle=None, sampler=None, batch_sampler=None, num_workers=0,
                 collate_fn=None, pin_memory=False, drop_last=False, timeout=0, worker_init_fn=None,
                 multiprocessing_context=None, generator=None, *, prefetch_factor=None, persistent_workers=False,
                 pin_memory_device="", in_order=True):
        if num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 to disable "
                             "multiprocessing.")
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("prefetch_factor option could only be specified in multiprocessing.let num_workers > 0 "
                             "to enable multiprocessing, otherwise set prefetch_factor to None.")
        if num_workers > 0 and prefetch_factor is None:
            prefetch_factor = 2
        elif prefetch_factor is not None and prefetch_factor < 0:
            raise ValueError("prefetch_factor option should be non-negative")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")
        self.dataset = dataset
        self.num_workers = num_workers
        self.prefetch_factor = prefetch_factor
        self.pin_memory = pin_memory
        self.pin_memory_device = pin_memory_device
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.persistent_workers = persistent_workers
        self.in_order = in_order

        self._is_iterable = isinstance(dataset, IterableDataset)
        if self._is_iterable:
            if shuffle not in (False, None):
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified shuffle option, but got "
                                 f"shuffle={shuffle}")
            if sampler is not None:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified sampler option, but got "
                                 f"sampler={sampler}")
            if batch_sampler is not None:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified batch_sampler option, but "
                                 f"got batch_sampler={batch_sampler}")
        else:
            shuffle = bool(shuffle)
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, and "
                                 "drop_last")
            batch_size = None
            drop_last = False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually exclusive with "
                             "drop_last")
        if sampler is None and not self._is_iterable:
            sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None and not self._is_iterable:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.generator = generator
        if collate_fn is None:
            collate_fn = default_collate if self._auto_collation else default_convert
        self.collate_fn = collate_fn

    @property
    def _auto_collation(self):
        return self.batch_sampler is not None or (self._is_iterable and self.batch_size is not None)

    @property
    def _index_sampler(self):
        return self.batch_sampler if self.batch_sampler is not None else self.sampler

    def __len__(self):
        if self._is_iterable:
            n = len(self.dataset)
            if self.batch_size is not None:
                n = n // self.batch_size if self.drop_last else -(-n // self.batch_size)
            return n
        return len(self._index_sampler)

    def __iter__(self):
        if self.num_workers == 0:
            return _SingleProcessIter(self)
        return _MultiProcessIter(self)


class _BaseIter:
    def __init__(self, loader):
        self._loader = loader
        self._base_seed = _draw_seed(loader.generator)     # drawn first in every mode, as PyTorch does
        self._sampler_iter = iter(loader._index_sampler) if not loader._is_iterable else None
        self._num_yielded = 0

    def __iter__(self):
        return self

    def __len__(self):
        return len(self._loader)


class _SingleProcessIter(_BaseIter):
    def __init__(self, loader):
        super().__init__(loader)
        self._dataset_iter = iter(loader.dataset) if loader._is_iterable else None

    def __next__(self):
        ld = self._loader
        if ld._is_iterable:
            data = _fetch_iter(self._dataset_iter, ld.batch_size, ld._auto_collation, ld.collate_fn, ld.drop_last)
        else:
            data = _fetch_map(ld.dataset, next(self._sampler_iter), ld._auto_collation, ld.collate_fn)
        self._num_yielded += 1
        return data


class _MultiProcessIter(_BaseIter):
    """Round-robin requests to the workers, at most ``prefetch_factor * num_workers`` in flight; results are
    reordered by request number."""

    def __init__(self, loader):
        super().__init__(loader)
        ctx = loader.multiprocessing_context
        if ctx is None:
            ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods()
                                              else None)
        elif isinstance(ctx, str):
            ctx = multiprocessing.get_context(ctx)
        n = loader.num_workers
        self._num_workers = n
        self._timeout = loader.timeout
        self._result_queue = ctx.Queue()
        self._done_event = ctx.Event()
        self._index_queues, self._workers = [], []
        # fork and spawn start workers from this process (a forkserver from its own); PR_SET_PDEATHSIG fires when
        # the starting *thread* ends, so it is set only for workers started by the main thread
        direct = ctx.get_start_method() in ("fork", "spawn")
        parent_pid = os.getpid() if direct else None
        pdeathsig = not direct or threading.current_thread() is threading.main_thread()
        for i in range(n):
            iq = ctx.Queue()
            iq.cancel_join_thread()
            w = ctx.Process(target=_worker_loop, daemon=True,
                            args=(loader._is_iterable, loader.dataset, iq, self._result_queue, self._done_event,
                                  loader._auto_collation, loader.collate_fn, loader.drop_last, loader.batch_size,
                                  self._base_seed + i, loader.worker_init_fn, i, n, parent_pid, pdeathsig))
            w.start()
            self._index_queues.append(iq)
            self._workers.append(w)
        self._worker_status = [True] * n
        self._worker_cycle = itertools.cycle(range(n))
        self._send_idx = 0
        self._rcvd_idx = 0
        self._task_info = {}
        self._shutdown = False
        for _ in range(loader.prefetch_factor * n):
            self._try_put_index()

    def _try_put_index(self):
        if self._sampler_iter is not None:
            try:
                indices = next(self._sampler_iter)
            except StopIteration:
                return
        else:
            indices = None
        for _ in range(self._num_workers):
            w = next(self._worker_cycle)
            if self._worker_status[w]:
                break
        else:
            return
        self._index_queues[w].put((self._send_idx, indices))
        self._task_info[self._send_idx] = (w,)
        self._send_idx += 1

    def _get_result(self):
        start = time.monotonic()
        while True:
            try:
                return self._result_queue.get(timeout=1.0)
            except queue.Empty:
                dead = [w.pid for w in self._workers if not w.is_alive()]
                if dead:
                    self._shutdown_workers()
                    raise RuntimeError(f"DataLoader worker (pid(s) {', '.join(map(str, dead))}) exited "
                                       "unexpectedly") from None
                if self._timeout > 0 and time.monotonic() - start > self._timeout:
                    self._shutdown_workers()
                    raise RuntimeError(f"DataLoader timed out after {self._timeout} seconds") from None

    def _process(self, data):
        self._try_put_index()
        if isinstance(data, _ExceptionWrapper):
            self._shutdown_workers()
            data.reraise()
        self._num_yielded += 1
        return _unpack(data)

    def __next__(self):
        while True:
            while self._rcvd_idx < self._send_idx:
                info = self._task_info[self._rcvd_idx]
                if len(info) == 2 or self._worker_status[info[0]]:
                    break
                del self._task_info[self._rcvd_idx]
                self._rcvd_idx += 1
            else:
                self._shutdown_workers()
                raise StopIteration
            if len(self._task_info[self._rcvd_idx]) == 2:
                data = self._task_info.pop(self._rcvd_idx)[1]
                self._rcvd_idx += 1
                return self._process(data)
            idx, data = self._get_result()
            if isinstance(data, _IterableEnd):
                self._worker_status[data.worker_id] = False
                self._index_queues[data.worker_id].put(None)
                self._try_put_index()
                continue
            if idx != self._rcvd_idx:
                self._task_info[idx] += (data,)
                continue
            del self._task_info[idx]
            self._rcvd_idx += 1
            return self._process(data)

    def _shutdown_workers(self):
        if self._shutdown:
            return
        self._shutdown = True
        self._done_event.set()
        for q in self._index_queues:
            try:
                q.put(None)
            except (ValueError, OSError):
                pass
        for w in self._workers:
            w.join(timeout=5.0)
            if w.is_alive():
                w.terminate()
                w.join()
        for q in self._index_queues:
            q.close()
        self._result_queue.cancel_join_thread()
        self._result_queue.close()

    def __del__(self):
        try:
            self._shutdown_workers()
        except Exception:
            pass

