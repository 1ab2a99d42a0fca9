"""End-to-end training on the cpu device: models built from ``nn.Linear`` (the fused linear kernel), optimized with
``tritorch.optim``, reach stated losses and accuracies; a checkpoint resumes to bit-identical parameters; one tiny
training step runs the same on interpreted cuda.

The classifier data is Fisher's Iris (150 flowers, 4 measurements, 3 species; public domain), embedded as
``tests/data/iris.csv`` with the values of Fisher's 1936 paper (as scikit-learn ships them)."""
import os

import numpy as np

import tritorch
from tritorch import nn
from tritorch import optim
from helpers import assert_close, to_np

IRIS = os.path.join(os.path.dirname(__file__), "data", "iris.csv")
SPECIES = ("setosa", "versicolor", "virginica")


def mse(pred, y):
    return ((pred - y) ** 2).mean()


def cross_entropy(logits, labels):
    """Mean negative log-likelihood of integer ``labels`` under ``log_softmax(logits)``."""
    onehot = tritorch.tensor(np.eye(logits.shape[1])[to_np(labels).astype(int)], dtype=logits.dtype,
                             device=logits.device)
    return -(tritorch.log_softmax(logits, 1) * onehot).sum(1).mean()


def load_iris():
    """(features float64 (150, 4), labels int (150,)) from the embedded CSV."""
    rows = np.genfromtxt(IRIS, delimiter=",", skip_header=1, dtype=None, encoding="ascii")
    x = np.array([list(r)[:4] for r in rows], dtype=np.float64)
    y = np.array([SPECIES.index(r[4]) for r in rows])
    return x, y


# ---- the data set ----------------------------------------------------------------------------------------------------

def test_iris_csv_is_fishers_iris():
    x, y = load_iris()
    assert x.shape == (150, 4)
    assert np.bincount(y).tolist() == [50, 50, 50]
    np.testing.assert_array_equal(x[0], [5.1, 3.5, 1.4, 0.2])       # the first of each species, and the last flower
    np.testing.assert_array_equal(x[50], [7.0, 3.2, 4.7, 1.4])
    np.testing.assert_array_equal(x[100], [6.3, 3.3, 6.0, 2.5])
    np.testing.assert_array_equal(x[149], [5.9, 3.0, 5.1, 1.8])
    np.testing.assert_array_equal(x[34], [4.9, 3.1, 1.5, 0.2])      # the two rows the UCI copy has wrong
    np.testing.assert_array_equal(x[37], [4.9, 3.6, 1.4, 0.1])
    np.testing.assert_allclose(x.sum(0), [876.5, 458.6, 563.7, 179.9])


# ---- linear regression (the seeds' example) --------------------------------------------------------------------------

def _regression_data(device="cpu"):
    tritorch.manual_seed(0)
    n, d = 256, 8
    x = tritorch.randn(n, d, device=device)
    true_w = tritorch.arange(1, d + 1, dtype=tritorch.float32, device=device).reshape(1, d) / d
    y = x @ true_w.t() + 0.5
    return x, y, true_w


def test_linear_regression_fits():
    x, y, true_w = _regression_data()
    tritorch.manual_seed(1)
    model = nn.Linear(8, 1)
    opt = optim.SGD(model.parameters(), lr=0.1)
    for _ in range(100):
        opt.zero_grad()
        loss = mse(model(x), y)
        loss.backward()
        opt.step()
    assert loss.item() < 1e-3
    assert_close(model.weight, true_w, rtol=0, atol=1e-2)
    assert abs(model.bias.item() - 0.5) < 1e-2


def test_mse_matches_nn_mseloss():
    x, y, _ = _regression_data()
    pred = x[:, :1] * 0.3
    assert_close(nn.MSELoss()(pred, y), to_np(mse(pred, y)), tritorch.float32)


# ---- an MLP classifier on Iris ---------------------------------------------------------------------------------------

def _iris_split():
    """Standardized features, a fixed shuffled 120 / 30 split (stratification by the shuffle's luck is fine here)."""
    x, y = load_iris()
    x = (x - x.mean(0)) / x.std(0)
    perm = np.random.default_rng(0).permutation(150)
    tr, te = perm[:120], perm[120:]
    as_t = lambda a, dt: tritorch.tensor(a, dtype=dt)      # noqa: E731
    return (as_t(x[tr], tritorch.float32), as_t(y[tr], tritorch.int64),
            as_t(x[te], tritorch.float32), as_t(y[te], tritorch.int64))


def _mlp(seed=0):
    tritorch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))


def _accuracy(model, x, y):
    with tritorch.no_grad():
        return float((to_np(model(x).argmax(1)) == to_np(y)).mean())


def test_iris_mlp_reaches_accuracy():
    xtr, ytr, xte, yte = _iris_split()
    model = _mlp()
    opt = optim.Adam(model.parameters(), lr=0.02)
    first = None
    for _ in range(150):
        opt.zero_grad()
        loss = cross_entropy(model(xtr), ytr)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < 0.1 < first
    assert _accuracy(model, xtr, ytr) >= 0.96
    assert _accuracy(model, xte, yte) >= 0.93


def test_iris_mlp_with_sgd_momentum_minibatches():
    xtr, ytr, xte, yte = _iris_split()
    model = _mlp(1)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rng = np.random.default_rng(1)
    for _ in range(30):
        for idx in np.array_split(rng.permutation(120), 4):
            i = tritorch.tensor(idx)
            opt.zero_grad()
            cross_entropy(model(xtr[i]), ytr[i]).backward()
            opt.step()
    assert _accuracy(model, xte, yte) >= 0.9


# ---- checkpoint / resume ---------------------------------------------------------------------------------------------

def _train(model, opt, sched, xtr, ytr, steps, start):
    """``steps`` mini-batch steps; the batch of step k depends only on k, so a resumed run sees the same data."""
    for k in range(start, start + steps):
        idx = tritorch.tensor(np.random.default_rng(100 + k).permutation(120)[:32])
        opt.zero_grad()
        cross_entropy(model(xtr[idx]), ytr[idx]).backward()
        opt.step()
        sched.step()


def _make(seed):
    model = _mlp(seed)
    opt = optim.Adam(model.parameters(), lr=0.02, weight_decay=1e-4)
    sched = optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.5)
    return model, opt, sched


def test_checkpoint_resumes_bit_identical(tmp_path):
    xtr, ytr, _, _ = _iris_split()
    model, opt, sched = _make(0)
    _train(model, opt, sched, xtr, ytr, 10, 0)
    path = str(tmp_path / "ckpt.safetensors")
    tritorch.save({"model": model.state_dict(), "optim": opt.state_dict(), "sched": sched.state_dict(),
                   "step": 10}, path)
    _train(model, opt, sched, xtr, ytr, 10, 10)
    expected = {k: to_np(v) for k, v in model.state_dict().items()}

    fresh, fopt, fsched = _make(123)                    # other initial weights: everything must come from the file
    ckpt = tritorch.load(path)
    fresh.load_state_dict(ckpt["model"])
    fopt.load_state_dict(ckpt["optim"])
    fsched.load_state_dict(ckpt["sched"])
    _train(fresh, fopt, fsched, xtr, ytr, 10, ckpt["step"])
    got = {k: to_np(v) for k, v in fresh.state_dict().items()}
    assert got.keys() == expected.keys()
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k], err_msg=k)
    assert fopt.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    for i, st in opt.state_dict()["state"].items():
        fst = fopt.state_dict()["state"][i]
        for k in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_array_equal(to_np(fst[k]), to_np(st[k]), err_msg=f"state {i} {k}")
        assert float(fst["step"]) == float(st["step"]) == 20


# ---- one tiny step on interpreted cuda ---------------------------------------------------------------------------

def test_one_training_step_on_cuda_matches_cpu():
    x, y, _ = _regression_data()
    x, y = x[:20], y[:20]
    params = {}
    for dev in ("cpu", "cuda"):
        tritorch.manual_seed(3)
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1)).to(dev)
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        for _ in range(2):
            opt.zero_grad()
            mse(model(x.to(dev)), y.to(dev)).backward()
            opt.step()
        params[dev] = {k: to_np(v) for k, v in model.state_dict().items()}
    for k, v in params["cpu"].items():
        np.testing.assert_allclose(params["cuda"][k], v, rtol=1e-5, atol=1e-6, err_msg=k)
