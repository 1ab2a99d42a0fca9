"""The bundled digits: the file's checksums, counts, the loader and the Digits dataset's fixed split."""
import hashlib

import numpy as np

import tritorch
from tritorch.data.datasets import DIGITS_PATH, Digits, load_digits
from tritorch.data.dataloader import DataLoader

FILE_SHA256 = "b2dab7b501728c22e9119ad76740b2e17c77a231e42d1e592380d90886f1a05e"
CONTENT_SHA256 = "87ff0c9e40dc7e2c0e34e7257799c2e3f3aec1a016363bb11cad869ec428a826"
COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_digits_file_checksums():
    with open(DIGITS_PATH, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == FILE_SHA256
    with np.load(DIGITS_PATH) as f:
        images, labels = f["images"], f["labels"]
    assert images.dtype == np.uint8 and images.shape == (1797, 8, 8)
    assert labels.dtype == np.uint8 and labels.shape == (1797,)
    assert hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest() == CONTENT_SHA256


def test_load_digits():
    images, labels = load_digits()
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8 and labels.dtype == np.int64
    assert images.min() == 0 and images.max() == 16 and int(images.sum(dtype=np.int64)) == 561718
    assert np.bincount(labels).tolist() == COUNTS
    assert labels[:10].tolist() == list(range(10))
    images[0, 0, 0] = 99                      # a fresh copy: the cache is untouched
    assert load_digits()[0][0, 0, 0] == 0
    ti, tl = load_digits(as_tensor=True)
    assert isinstance(ti, tritorch.Tensor) and ti.dtype is tritorch.uint8 and tl.dtype is tritorch.int64
    assert ti.shape == (1797, 8, 8) and tl.shape == (1797,)


def test_digits_dataset_split():
    train, test = Digits(train=True), Digits(train=False)
    assert len(train) == 1442 and len(test) == 355
    images, labels = load_digits()
    # the rule: the 5th, 10th, ... image of each class (file order) is a test image
    test_idx = sorted(int(i) for c in range(10) for i in np.flatnonzero(labels == c)[4::5])
    train_idx = sorted(set(range(1797)) - set(test_idx))
    np.testing.assert_array_equal(test.data.numpy(), images[test_idx])
    np.testing.assert_array_equal(test.targets.numpy(), labels[test_idx])
    np.testing.assert_array_equal(train.data.numpy(), images[train_idx])
    np.testing.assert_array_equal(train.targets.numpy(), labels[train_idx])
    assert np.bincount(test.targets.numpy()).tolist() == [c // 5 for c in COUNTS]
    image, label = test[7]
    assert image.shape == (1, 8, 8) and image.dtype is tritorch.float32 and isinstance(label, int)
    assert label == labels[test_idx[7]]
    np.testing.assert_allclose(image.numpy()[0], images[test_idx[7]] / 16.0)
    assert train.data.dtype is tritorch.uint8 and train.targets.dtype is tritorch.int64
    assert "Number of datapoints: 355" in repr(test)


def test_digits_transforms_and_loader():
    ds = Digits(train=False, transform=lambda t: t * 2, target_transform=lambda y: y + 100)
    image, label = ds[0]
    raw, _ = Digits(train=False)[0]
    assert label == Digits(train=False)[0][1] + 100
    np.testing.assert_allclose(image.numpy(), raw.numpy() * 2)
    xb, yb = next(iter(DataLoader(Digits(train=False), batch_size=32)))
    assert xb.shape == (32, 1, 8, 8) and yb.shape == (32,) and yb.dtype is tritorch.int64
