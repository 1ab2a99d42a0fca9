"""The main job (``python -m tritorch.train`` / ``tritorch train``) end to end at tiny size, in-process; the MNIST
IDX reader on small files written here; bad arguments give one line on stderr and a non-zero exit status."""
import gzip
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

import tritorch
from tritorch import cli, train
from tritorch.data.mnist import read_idx, load_mnist

TINY = ["--epochs", "1", "--batch-size", "16", "--limit-batches", "40", "--seed", "0"]


def _one_line_error(capsys, rc, expected_rc=2, match=None):
    out, err = capsys.readouterr()
    assert rc == expected_rc, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and "Traceback" not in err, err
    if match:
        assert match in lines[0], lines[0]
    return lines[0]


def test_train_tiny_beats_chance_and_resumes(tmp_path, capsys):
    ckpt = str(tmp_path / "cnn.safetensors")
    assert train.main(TINY + ["--out", ckpt]) == 0
    out = capsys.readouterr().out
    assert "epoch 1/1" in out and "samples/s" in out          # the progress bar: throughput and loss
    assert "loss=" in out
    assert "done: device cpu" in out and ckpt in out
    state = tritorch.load(ckpt)
    assert set(state) >= {"model", "optimizer", "scheduler", "epoch"} and state["epoch"] == 1
    acc = state["history"][-1]["accuracy"]
    assert acc > 0.5, f"one short epoch reached only {acc:.3f} test accuracy (chance: 0.1)"

    model = train.build_model(8)
    model.load_state_dict(state["model"])                    # the checkpoint fits the model

    ckpt2 = str(tmp_path / "cnn2.safetensors")
    assert train.main(["--epochs", "2", "--batch-size", "16", "--limit-batches", "5", "--quiet", "--resume", ckpt,
                       "--out", ckpt2]) == 0
    out = capsys.readouterr().out
    assert f"resumed from {ckpt} at epoch 1" in out
    assert "epoch 2/2: train loss" in out and "epoch 1/2" not in out
    state2 = tritorch.load(ckpt2)
    assert state2["epoch"] == 2 and [h["epoch"] for h in state2["history"]] == [1, 2]


def test_cli_train_subcommand(tmp_path, capsys):
    ckpt = str(tmp_path / "c.safetensors")
    assert cli.main(["train", "--epochs", "1", "--limit-batches", "1", "--quiet", "--out", ckpt]) == 0
    assert "done: device cpu" in capsys.readouterr().out
    assert os.path.isfile(ckpt)
    rc = cli.main(["train", "--device", "tpu"])
    assert _one_line_error(capsys, rc, match="tpu").startswith("tritorch train: error:")


def _write_idx(path, arr, magic=None):
    arr = np.asarray(arr)
    header = magic if magic is not None else struct.pack(">HBB", 0, 0x08, arr.ndim)
    data = header + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes()
    with (gzip.open if str(path).endswith(".gz") else open)(path, "wb") as f:
        f.write(data)


def _fake_mnist(root, n_train=48, n_test=16, side=8, gz=False):
    rng = np.random.default_rng(0)
    root.mkdir(exist_ok=True)
    ext = ".gz" if gz else ""
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n)
        images = (rng.random((n, side, side)) * 60).astype(np.uint8)
        images[np.arange(n), labels % side, :] = 255            # a learnable pattern: a bright row per class
        _write_idx(root / f"{split}-images-idx3-ubyte{ext}", images)
        _write_idx(root / f"{split}-labels-idx1-ubyte{ext}", labels.astype(np.uint8))
    return root


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip(tmp_path, gz):
    arr = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    p = tmp_path / ("a.idx" + (".gz" if gz else ""))
    _write_idx(p, arr)
    got = read_idx(str(p), ndim=3)
    assert got.dtype == np.uint8 and got.shape == (3, 4, 5) and np.array_equal(got, arr)
    images, labels = load_mnist(str(_fake_mnist(tmp_path / "m", gz=gz)), train=False)
    assert images.shape == (16, 8, 8) and labels.shape == (16,) and labels.dtype == np.int64


def test_read_idx_errors(tmp_path):
    arr = np.zeros((2, 4, 4), np.uint8)
    bad_magic = tmp_path / "bad_magic"
    _write_idx(bad_magic, arr, magic=b"\x12\x34\x08\x03")
    with pytest.raises(ValueError, match="bad magic number 0x12340803"):
        read_idx(str(bad_magic))
    truncated = tmp_path / "truncated"
    _write_idx(truncated, arr)
    truncated.write_bytes(truncated.read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"holds 27 data bytes, but its shape \(2, 4, 4\) needs 32"):
        read_idx(str(truncated))
    with pytest.raises(ValueError, match="has 3 dimensions, expected 1"):
        read_idx(str(truncated), ndim=1)
    short = tmp_path / "short"
    short.write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="too short"):
        read_idx(str(short))
    with pytest.raises(FileNotFoundError, match="not found"):
        read_idx(str(tmp_path / "missing"))
    root = _fake_mnist(tmp_path / "mismatch")
    _write_idx(root / "t10k-labels-idx1-ubyte", np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="16 images but t10k-labels-idx1-ubyte holds 3 labels"):
        load_mnist(str(root), train=False)


def test_train_on_idx_files(tmp_path, capsys):
    root = _fake_mnist(tmp_path / "mnist", gz=True)
    ckpt = str(tmp_path / "m.safetensors")
    assert train.main(["--data", str(root), "--epochs", "1", "--batch-size", "16", "--quiet", "--out", ckpt]) == 0
    out = capsys.readouterr().out
    assert "on mnist (48 train / 16 test images, 8x8)" in out
    assert tritorch.load(ckpt)["dataset"] == "mnist"
    rc = train.main(["--resume", ckpt, "--epochs", "2", "--quiet", "--out", ckpt])      # digits vs mnist
    _one_line_error(capsys, rc, match="trained on mnist, but this run uses digits")


def _bad_checkpoints(tmp_path):
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"not a checkpoint at all")
    weights_only = tmp_path / "weights.safetensors"
    tritorch.save({"w": tritorch.zeros(3)}, str(weights_only))
    wrong_model = tmp_path / "wrong.safetensors"
    tritorch.save({"model": {"w": tritorch.zeros(3)}, "optimizer": {}, "scheduler": {}, "epoch": 1},
                  str(wrong_model))
    return corrupt, weights_only, wrong_model


def test_bad_arguments_one_line_error(tmp_path, capsys):
    corrupt, weights_only, wrong_model = _bad_checkpoints(tmp_path)
    bad_idx = _fake_mnist(tmp_path / "bad_idx")
    (bad_idx / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03garbage")
    cases = [
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--data", str(tmp_path / "nowhere")], "no such folder"),
        (["--data", str(tmp_path)], "no train-images-idx3-ubyte"),
        (["--data", str(bad_idx)], "truncated"),
        (["--resume", str(tmp_path / "none.safetensors")], "no such file"),
        (["--resume", str(corrupt)], "corrupt"),
        (["--resume", str(weights_only)], "not a tritorch.train checkpoint"),
        (["--resume", str(wrong_model)], "does not fit this model"),
        (["--epochs", "0"], "--epochs must be >= 1"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
        (["--out", str(tmp_path / "no" / "dir" / "c.safetensors")], "its folder does not exist"),
        (["--lr", "-1"], "--lr must be > 0"),
        (["--epochs", "many"], "invalid int value"),
        (["--bogus"], "unrecognized arguments"),
    ]
    for argv, match in cases:
        try:
            rc = train.main(["--quiet", "--out", str(tmp_path / "out.safetensors")] + argv)
        except SystemExit as e:           # argparse's own usage errors
            rc = e.code
        _one_line_error(capsys, rc, match=match)
    assert not (tmp_path / "out.safetensors").exists()


def test_plot_without_matplotlib(tmp_path, capsys):
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        rc = train.main(["--plot", str(tmp_path / "p.png"), "--quiet"])
        _one_line_error(capsys, rc, match="--plot needs matplotlib")
    else:
        assert train.main(TINY[:2] + ["--limit-batches", "1", "--quiet", "--plot", str(tmp_path / "p.png"),
                                      "--out", str(tmp_path / "c.safetensors")]) == 0
        assert (tmp_path / "p.png").stat().st_size > 0


def test_module_entry_point_error_is_one_line():
    r = subprocess.run([sys.executable, "-m", "tritorch.train", "--device", "tpu"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip() == "python -m tritorch.train: error: unknown device 'tpu': use cpu or cuda"
