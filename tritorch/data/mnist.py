"""MNIST-style IDX files (``train-images-idx3-ubyte[.gz]`` and friends), read into NumPy arrays.

An IDX file is two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions, one big-endian
uint32 per dimension, then the values in row-major order. ``read_idx`` checks all of this and names the file and
the problem in its error; ``load_mnist`` reads a folder holding the four MNIST (or Fashion-MNIST) files."""
import gzip
import os
import struct

import numpy as np

__all__ = ["read_idx", "load_mnist", "MNIST_FILES"]

_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"),
          0x0E: np.dtype(">f8")}

MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path, ndim=None):
    """The array stored in the IDX file ``path`` (gzip-compressed when the name ends in ``.gz``); ``ndim``, when
    given, is the number of dimensions the file must have. Raises ValueError on a malformed file."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            buf = f.read()
    except (OSError, EOFError) as e:
        if isinstance(e, FileNotFoundError):
            raise FileNotFoundError(f"IDX file not found: {path}") from None
        raise ValueError(f"cannot read IDX file {path}: {e}") from None
    if len(buf) < 4:
        raise ValueError(f"IDX file {path} is too short ({len(buf)} bytes) to hold a header")
    zero, code, dims = struct.unpack(">HBB", buf[:4])
    if zero != 0 or code not in _TYPES:
        raise ValueError(f"IDX file {path} has a bad magic number 0x{struct.unpack('>I', buf[:4])[0]:08x} "
                         f"(expected 0x000008NN for unsigned bytes)")
    if ndim is not None and dims != ndim:
        raise ValueError(f"IDX file {path} has {dims} dimensions, expected {ndim}")
    if len(buf) < 4 + 4 * dims:
        raise ValueError(f"IDX file {path} is truncated in its header")
    shape = struct.unpack(f">{dims}I", buf[4:4 + 4 * dims])
    dtype = np.dtype(_TYPES[code])
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    have = len(buf) - 4 - 4 * dims
    if have != need:
        raise ValueError(f"IDX file {path} holds {have} data bytes, but its shape {tuple(shape)} needs {need}")
    return np.frombuffer(buf, dtype, offset=4 + 4 * dims).reshape(shape).astype(dtype.newbyteorder("="))


def _find(root, name):
    for candidate in (name, name + ".gz", name.replace("-idx", ".idx"), name.replace("-idx", ".idx") + ".gz"):
        p = os.path.join(root, candidate)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(f"no {name}[.gz] in {root}")


def load_mnist(root, train=True):
    """``(images, labels)`` of the MNIST split in folder ``root``: uint8 (n, rows, cols) and int64 (n,)."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"MNIST folder not found: {root}")
    img_name, lbl_name = MNIST_FILES["train" if train else "test"]
    images = read_idx(_find(root, img_name), ndim=3)
    labels = read_idx(_find(root, lbl_name), ndim=1)
    if len(images) != len(labels):
        raise ValueError(f"{img_name} holds {len(images)} images but {lbl_name} holds {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{lbl_name} holds labels outside 0..9")
    return images.astype(np.uint8, copy=False), labels.astype(np.int64)
