"""tritorch.data: datasets, samplers, collation and the DataLoader (single- and multi-process)."""
import collections
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import tritorch
from tritorch.data import (DataLoader, Dataset, IterableDataset, TensorDataset, ConcatDataset, Subset, random_split,
                           SequentialSampler, RandomSampler, BatchSampler, SubsetRandomSampler,
                           WeightedRandomSampler, default_collate, get_worker_info)
from helpers import to_np


def _ds(n=10):
    x = tritorch.tensor(np.arange(n * 2, dtype=np.float32).reshape(n, 2))
    y = tritorch.tensor(np.arange(n))
    return TensorDataset(x, y)


class Squares(Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i >= self.n:
            raise IndexError(i)
        return {"i": i, "sq": np.array([i * i, -i], dtype=np.int32), "name": f"s{i}", "f": i / 2}


class Stream(IterableDataset):
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        info = get_worker_info()
        start, step = (0, 1) if info is None else (info.id, info.num_workers)
        return iter(range(start, self.n, step))


class Failing(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        if i == 2:
            raise ValueError("bad sample 2")
        return i


def test_tensor_dataset_and_batching():
    ds = _ds(10)
    assert len(ds) == 10
    x, y = ds[3]
    assert to_np(x).tolist() == [6.0, 7.0] and int(y) == 3
    with pytest.raises(AssertionError, match="Size mismatch between tensors"):
        TensorDataset(tritorch.ones(3), tritorch.ones(4))
    dl = DataLoader(ds, batch_size=4)
    assert len(dl) == 3
    batches = list(dl)
    assert [tuple(b[0].shape) for b in batches] == [(4, 2), (4, 2), (2, 2)]
    assert to_np(batches[2][1]).tolist() == [8, 9] and batches[0][1].dtype is tritorch.int64
    dl = DataLoader(ds, batch_size=4, drop_last=True)
    assert len(dl) == 2 and len(list(dl)) == 2
    one = list(DataLoader(ds, batch_size=None))
    assert len(one) == 10 and tuple(one[0][0].shape) == (2,)


def test_default_collate_types():
    b = default_collate([Squares(3)[i] for i in range(3)])
    assert to_np(b["i"]).tolist() == [0, 1, 2] and b["i"].dtype is tritorch.int64
    assert to_np(b["sq"]).tolist() == [[0, 0], [1, -1], [4, -2]] and b["sq"].dtype is tritorch.int32
    assert b["name"] == ["s0", "s1", "s2"]
    assert b["f"].dtype is tritorch.float64
    t = default_collate([(1, True), (2, False)])
    assert isinstance(t, list) and t[1].dtype is tritorch.bool
    P = collections.namedtuple("P", "a b")
    p = default_collate([P(1, 2.0), P(3, 4.0)])
    assert isinstance(p, P) and to_np(p.a).tolist() == [1, 3]
    assert to_np(default_collate([np.float32(1), np.float32(2)])).tolist() == [1, 2]
    with pytest.raises(RuntimeError, match="each element in list of batch should be of equal size"):
        default_collate([[1, 2], [3]])
    with pytest.raises(TypeError, match="default_collate: batch must contain tensors"):
        default_collate([object(), object()])


def test_shuffle_is_seeded_and_covers_everything():
    ds = _ds(20)

    def epoch(dl):
        return np.concatenate([to_np(y) for _, y in dl]).tolist()

    tritorch.manual_seed(0)
    dl = DataLoader(ds, batch_size=6, shuffle=True)
    a1, a2 = epoch(dl), epoch(dl)
    assert sorted(a1) == list(range(20)) and a1 != list(range(20)) and a1 != a2
    tritorch.manual_seed(0)
    assert epoch(dl) == a1 and epoch(dl) == a2
    g = tritorch.Generator().manual_seed(7)
    b1 = epoch(DataLoader(ds, batch_size=6, shuffle=True, generator=g))
    g.manual_seed(7)
    assert epoch(DataLoader(ds, batch_size=6, shuffle=True, generator=g)) == b1
    rng = np.random.default_rng(5)
    c = epoch(DataLoader(ds, batch_size=6, shuffle=True, generator=rng))
    assert sorted(c) == list(range(20))


def test_samplers():
    assert list(SequentialSampler(range(4))) == [0, 1, 2, 3]
    rs = RandomSampler(range(5), replacement=True, num_samples=12, generator=np.random.default_rng(0))
    draws = list(rs)
    assert len(rs) == 12 and len(draws) == 12 and all(0 <= d < 5 for d in draws)
    rs = RandomSampler(range(5), num_samples=12)
    d = list(rs)
    assert len(d) == 12 and sorted(d[:5]) == list(range(5)) and sorted(d[5:10]) == list(range(5))
    with pytest.raises(ValueError, match="num_samples should be a positive integer value, but got num_samples=0"):
        RandomSampler(range(5), num_samples=0)
    with pytest.raises(TypeError, match="replacement should be a boolean value"):
        RandomSampler(range(5), replacement=1)
    bs = BatchSampler(SequentialSampler(range(7)), 3, drop_last=False)
    assert list(bs) == [[0, 1, 2], [3, 4, 5], [6]] and len(bs) == 3
    assert len(BatchSampler(range(7), 3, drop_last=True)) == 2
    with pytest.raises(ValueError, match="batch_size should be a positive integer value"):
        BatchSampler(range(7), 0, False)
    assert sorted(SubsetRandomSampler([3, 5, 9])) == [3, 5, 9]
    w = list(WeightedRandomSampler([0.0, 1.0, 0.0], 5))
    assert w == [1] * 5


def test_loader_argument_errors():
    ds = _ds(4)
    with pytest.raises(ValueError, match="sampler option is mutually exclusive with shuffle"):
        DataLoader(ds, shuffle=True, sampler=SequentialSampler(ds))
    with pytest.raises(ValueError, match="batch_sampler option is mutually exclusive"):
        DataLoader(ds, batch_size=2, batch_sampler=[[0, 1]])
    with pytest.raises(ValueError, match="num_workers option should be non-negative"):
        DataLoader(ds, num_workers=-1)
    with pytest.raises(ValueError, match="DataLoader with IterableDataset: expected unspecified shuffle option"):
        DataLoader(Stream(3), shuffle=True)
    with pytest.raises(ValueError, match="persistent_workers option needs num_workers > 0"):
        DataLoader(ds, persistent_workers=True)
    batches = list(DataLoader(ds, batch_sampler=[[3, 0], [1]]))
    assert [to_np(b[1]).tolist() for b in batches] == [[3, 0], [1]]
    out = list(DataLoader(ds, batch_size=2, collate_fn=lambda b: len(b), pin_memory=True))
    assert out == [2, 2]


def test_datasets_concat_subset_split():
    a, b = _ds(3), _ds(4)
    c = a + b
    assert isinstance(c, ConcatDataset) and len(c) == 7
    assert int(c[3][1]) == 0 and int(c[-1][1]) == 3
    with pytest.raises(ValueError, match="absolute value of index should not exceed dataset length"):
        c[-8]
    s = Subset(b, [3, 1])
    assert len(s) == 2 and int(s[0][1]) == 3
    tritorch.manual_seed(1)
    parts = random_split(range(10), [0.5, 0.3, 0.2])
    assert [len(p) for p in parts] == [5, 3, 2]
    assert sorted(i for p in parts for i in p) == list(range(10))
    parts = random_split(range(10), [3, 7], generator=tritorch.Generator().manual_seed(3))
    again = random_split(range(10), [3, 7], generator=tritorch.Generator().manual_seed(3))
    assert list(parts[0]) == list(again[0])
    with pytest.raises(ValueError, match="Sum of input lengths does not equal the length of the input dataset!"):
        random_split(range(10), [3, 3])


def _init_fn(worker_id):
    np.random.seed(100 + worker_id)


def test_workers_match_single_process_order():
    ds = Squares(11)
    tritorch.manual_seed(3)
    single = list(DataLoader(ds, batch_size=3, shuffle=True))
    tritorch.manual_seed(3)
    multi = list(DataLoader(ds, batch_size=3, shuffle=True, num_workers=2, worker_init_fn=_init_fn))
    assert len(single) == len(multi) == 4
    for s, m in zip(single, multi):
        assert to_np(s["sq"]).tolist() == to_np(m["sq"]).tolist() and s["name"] == m["name"]
        assert m["sq"].dtype is tritorch.int32 and m["f"].dtype is tritorch.float64
    x = list(DataLoader(_ds(9), batch_size=4, num_workers=2))
    assert [to_np(b[1]).tolist() for b in x] == [[0, 1, 2, 3], [4, 5, 6, 7], [8]]


def test_iterable_dataset_single_and_workers():
    assert [to_np(b).tolist() for b in DataLoader(Stream(7), batch_size=3)] == [[0, 1, 2], [3, 4, 5], [6]]
    got = [to_np(b).tolist() for b in DataLoader(Stream(7), batch_size=2, num_workers=2)]
    assert sorted(v for b in got for v in b) == list(range(7))
    assert got[0] == [0, 2] and got[1] == [1, 3]          # round robin over the workers


def test_worker_error_is_reraised():
    with pytest.raises(ValueError, match="(?s)Caught ValueError in DataLoader worker process .*bad sample 2"):
        list(DataLoader(Failing(), batch_size=1, num_workers=2))
    with pytest.raises(ValueError, match="bad sample 2"):
        list(DataLoader(Failing(), batch_size=1))


def test_cuda_tensors_through_workers():
    x = tritorch.tensor(np.arange(6, dtype=np.float32).reshape(3, 2), device="cuda")
    batches = list(DataLoader(TensorDataset(x), batch_size=2, num_workers=1))
    assert batches[0][0].device.type == "cuda" and to_np(batches[1][0]).tolist() == [[4.0, 5.0]]


def test_utils_data_alias():
    import tritorch.utils.data as tud
    assert tud.DataLoader is DataLoader


# ---- workers never outlive a killed main process -----------------------------------------------------------------
KILLED_MAIN = """
import sys, time
from tritorch.data import DataLoader, Dataset
from tritorch.data import dataloader as dl

class Data(Dataset):
    def __len__(self):
        return 64

    def __getitem__(self, i):
        if sys.argv[1] == "busy" and i >= 4:
            time.sleep(300)                        # the workers hang inside the dataset
        return i

if sys.argv[1] == "idle-poll":
    dl._die_with_parent = lambda: False            # no PR_SET_PDEATHSIG: the portable poll of the parent alone
it = iter(DataLoader(Data(), batch_size=2, num_workers=2, persistent_workers=True))
assert next(it).tolist() == [0, 1]
print(" ".join(str(w.pid) for w in it._workers), flush=True)
time.sleep(300)
"""


def _gone(pid):
    """Whether process ``pid`` has exited (a zombie nobody reaped yet counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("mode", ["idle", "idle-poll", "busy"])
def test_workers_exit_when_the_main_process_is_killed(mode):
    main = subprocess.Popen([sys.executable, "-c", KILLED_MAIN, mode], stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    workers = []
    try:
        workers = [int(p) for p in main.stdout.readline().split()]
        assert len(workers) == 2 and not any(_gone(p) for p in workers)
        time.sleep(0.5)                            # let every worker reach its wait (idle) or the dataset (busy)
        os.kill(main.pid, signal.SIGKILL)
        main.wait(timeout=30)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and not all(_gone(p) for p in workers):
            time.sleep(0.1)
        assert all(_gone(p) for p in workers), f"workers {workers} outlived their killed main process"
    finally:
        if main.poll() is None:
            main.kill()
            main.wait()
        main.stdout.close()
        for p in workers:
            if not _gone(p):
                os.kill(p, signal.SIGKILL)
