"""Bundled data sets: the handwritten digits (1797 8x8 grayscale images, 10 classes; the UCI optdigits test set
as scikit-learn ships it, CC BY 4.0, see ``README.md`` beside ``digits.npz``). Offline: the file is package data."""
import functools
import os

import numpy as np

from .. import _dtype as D
from .._device import CPU
from .._tensor import Tensor
from .dataset import Dataset

__all__ = ["load_digits", "Digits", "DIGITS_PATH"]

DIGITS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "digits.npz")


@functools.lru_cache(maxsize=1)
def _digits_arrays():
    with np.load(DIGITS_PATH) as f:
        images, labels = f["images"], f["labels"]
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_digits(as_tensor=False):
    """The whole digits set: ``(images, labels)``, NumPy arrays by default: images uint8 (1797, 8, 8) with pixel
    values 0..16, labels int64 (1797,) in 0..9 (fresh writable copies). With ``as_tensor=True``: tritorch tensors on
    the cpu device with the same dtypes."""
    images, labels = _digits_arrays()
    images, labels = images.copy(), labels.astype(np.int64)
    if as_tensor:
        return Tensor._wrap_numpy(images, CPU, D.uint8), Tensor._wrap_numpy(labels, CPU, D.int64)
    return images, labels


def _is_test(labels):
    """The fixed split: image k is a test image when it is the (5j)-th image of its class in file order."""
    rank = np.empty(len(labels), np.int64)
    for c in range(10):
        where = np.flatnonzero(labels == c)
        rank[where] = np.arange(len(where))
    return rank % 5 == 4


class Digits(Dataset):
    """The digits as a map-style dataset: ``dataset[i] = (image, label)``, image a float32 tensor (1, 8, 8) with
    values in [0, 1] (pixel / 16), label an int (after ``transform`` / ``target_transform`` when given).

    Split by a fixed rule, stratified by class: the 5th, 10th, 15th, ... image of each class (in file order) is a
    test image (355 test, 1442 train images; every class 20% test). ``data`` (uint8 tensor (n, 8, 8), 0..16) and
    ``targets`` (int64 tensor (n,)) hold the whole split, for full-batch work."""

    def __init__(self, train=True, transform=None, target_transform=None):
        images, labels = _digits_arrays()
        keep = _is_test(labels) != bool(train)
        self.train = bool(train)
        self.transform = transform
        self.target_transform = target_transform
        self.data = Tensor._wrap_numpy(np.ascontiguousarray(images[keep]), CPU, D.uint8)
        self.targets = Tensor._wrap_numpy(labels[keep].astype(np.int64), CPU, D.int64)
        self._images = (images[keep].astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
        self._labels = labels[keep].astype(np.int64)
        self.classes = [str(i) for i in range(10)]

    def __len__(self):
        return len(self._labels)

    def __getitem__(self, index):
        index = int(index)
        image = Tensor._wrap_numpy(self._images[index].copy(), CPU, D.float32)
        label = int(self._labels[index])
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return image, label

    def __repr__(self):
        return f"Dataset Digits\n    Number of datapoints: {len(self)}\n    Split: {'Train' if self.train else 'Test'}"
