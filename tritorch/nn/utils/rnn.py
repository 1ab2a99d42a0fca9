"""Variable-length sequences: ``pad_sequence`` stacks sequences of different lengths into one padded tensor;
``PackedSequence`` and ``pack_padded_sequence`` / ``pad_packed_sequence`` / ``pack_sequence`` /
``unpack_sequence`` hold them without padding, as the recurrent layers of ``tritorch.nn`` accept them."""
import numpy as np

import tritorch
from ..._tensor import Tensor

__all__ = ["pad_sequence", "PackedSequence", "pack_padded_sequence", "pad_packed_sequence", "pack_sequence",
           "unpack_sequence"]


def pad_sequence(sequences, batch_first=False, padding_value=0.0, padding_side="right"):
    """Stack tensors of shapes (L_i, *) into (max L, B, *) (or (B, max L, *) with ``batch_first``), filling the
    missing positions with ``padding_value`` after (``padding_side="right"``) or before (``"left"``) each one."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"Expected padding_side to be one of left or right, but got {padding_side}.")
    if isinstance(sequences, Tensor):
        sequences = sequences.unbind(0)
    sequences = list(sequences)
    if not sequences:
        raise RuntimeError("received an empty list of sequences")
    trailing = tuple(sequences[0].shape[1:])
    for s in sequences:
        if tuple(s.shape[1:]) != trailing:
            raise RuntimeError(f"The size of tensor a ({trailing}) must match the size of tensor b "
                               f"({tuple(s.shape[1:])}) at non-singleton dimensions: every sequence must have the "
                               "same trailing dimensions")
    max_len = max(s.shape[0] for s in sequences)
    rows = []
    for s in sequences:
        pad = max_len - s.shape[0]
        if pad:
            fill = tritorch.full((pad,) + trailing, padding_value, dtype=s.dtype, device=s.device)
            s = tritorch.cat([s, fill] if padding_side == "right" else [fill, s], 0)
        rows.append(s)
    return tritorch.stack(rows, 0 if batch_first else 1)


class PackedSequence(tuple):
    """Sequences of different lengths packed time-step-major: ``data`` (sum of lengths, *) holds, for each step
    t, the elements of the ``batch_sizes[t]`` sequences still running (longest first); ``sorted_indices`` /
    ``unsorted_indices`` map between the caller's batch order and that sorted order (None when already sorted)."""

    __slots__ = ()
    _fields = ("data", "batch_sizes", "sorted_indices", "unsorted_indices")

    def __new__(cls, data, batch_sizes=None, sorted_indices=None, unsorted_indices=None):
        if unsorted_indices is None and sorted_indices is not None:
            unsorted_indices = _invert(sorted_indices)
        return super().__new__(cls, (data, batch_sizes, sorted_indices, unsorted_indices))

    data = property(lambda self: self[0])
    batch_sizes = property(lambda self: self[1])
    sorted_indices = property(lambda self: self[2])
    unsorted_indices = property(lambda self: self[3])

    def to(self, *args, **kwargs):
        data = self.data.to(*args, **kwargs)
        if data is self.data:
            return self
        dev = data.device
        idx = [None if t is None else t.to(dev) for t in (self.sorted_indices, self.unsorted_indices)]
        return PackedSequence(data, self.batch_sizes, *idx)

    def __repr__(self):
        return (f"PackedSequence(data={self.data!r}, batch_sizes={self.batch_sizes!r}, "
                f"sorted_indices={self.sorted_indices!r}, unsorted_indices={self.unsorted_indices!r})")


def _invert(perm):
    inv = np.empty(len(perm), np.int64)
    p = np.asarray(perm._to_host_array()).astype(np.int64)
    inv[p] = np.arange(len(p))
    return tritorch.tensor(inv, device=perm.device)


def _lengths_np(lengths):
    if isinstance(lengths, Tensor):
        if lengths.device.type != "cpu":
            raise RuntimeError("'lengths' argument should be a 1D CPU int64 tensor, but got 1D "
                               f"{lengths.device.type} {lengths.dtype} tensor")
        return np.asarray(lengths._to_host_array()).astype(np.int64).reshape(-1)
    return np.asarray(lengths, dtype=np.int64).reshape(-1)


def pack_padded_sequence(input, lengths, batch_first=False, enforce_sorted=True):
    """Pack a padded batch (T, B, *) (or (B, T, *)) of sequences with the given ``lengths``."""
    lens = _lengths_np(lengths)
    if enforce_sorted:
        if np.any(np.diff(lens) > 0):
            raise RuntimeError("`lengths` array must be sorted in decreasing order when `enforce_sorted` is True. "
                               "You can pass `enforce_sorted=False` to pack_padded_sequence and/or pack_sequence to "
                               "sidestep this requirement if you do not need ONNX exportability.")
        sorted_indices = None
        order = np.arange(len(lens))
    else:
        order = np.argsort(-lens, kind="stable")
        sorted_indices = tritorch.tensor(order, device=input.device)
    if len(lens) and lens.min() <= 0:
        raise RuntimeError("Length of all samples has to be greater than 0, but found an element in 'lengths' "
                           "that is <= 0")
    x = input.transpose(0, 1) if batch_first else input
    if len(lens) != x.shape[1]:
        raise RuntimeError(f"Expected `len(lengths)` to be equal to batch_size, but got {len(lens)} (batch_size="
                           f"{x.shape[1]})")
    if lens.size and lens.max() > x.shape[0]:
        raise RuntimeError(f"Expected all lengths to be at most the sequence length {x.shape[0]}, but got "
                           f"{int(lens.max())}")
    if sorted_indices is not None:
        x = x.index_select(1, sorted_indices)
    lens = lens[order]
    batch_sizes = np.array([(lens > t).sum() for t in range(int(lens.max()) if lens.size else 0)], np.int64)
    data = tritorch.cat([x[t, :int(b)] for t, b in enumerate(batch_sizes)], 0)
    return PackedSequence(data, tritorch.tensor(batch_sizes), sorted_indices, None)


def pad_packed_sequence(sequence, batch_first=False, padding_value=0.0, total_length=None):
    """The inverse of ``pack_padded_sequence``: (padded, lengths), in the batch order the sequences were given
    in; ``total_length`` pads the time dimension to at least that length."""
    padded, lens = _unpack_sorted(sequence, padding_value, total_length)
    if sequence.unsorted_indices is not None:
        padded = padded.index_select(1, sequence.unsorted_indices)
        lens = lens[np.asarray(sequence.unsorted_indices._to_host_array()).astype(np.int64)]
    if batch_first:
        padded = padded.transpose(0, 1)
    return padded, tritorch.tensor(lens)


def _unpack_sorted(sequence, padding_value=0.0, total_length=None):
    """(padded (T, B, *) in the sorted batch order, the sorted lengths as a NumPy array)."""
    data, bs = sequence.data, np.asarray(sequence.batch_sizes._to_host_array()).astype(np.int64)
    T = len(bs)
    if total_length is not None:
        if total_length < T:
            raise ValueError(f"Expected total_length to be at least the length of the longest sequence in input, "
                             f"but got total_length={total_length} and max sequence length being {T}")
        T = total_length
    B = int(bs[0]) if len(bs) else 0
    trailing = tuple(data.shape[1:])
    steps, off = [], 0
    for t in range(T):
        b = int(bs[t]) if t < len(bs) else 0
        row = data[off:off + b]
        off += b
        if b < B:
            fill = tritorch.full((B - b,) + trailing, padding_value, dtype=data.dtype, device=data.device)
            row = tritorch.cat([row, fill], 0) if b else fill
        steps.append(row)
    lens = np.array([(bs > k).sum() for k in range(B)], np.int64)
    return tritorch.stack(steps, 0), lens


def pack_sequence(sequences, enforce_sorted=True):
    """Pack a list of (L_i, *) tensors: ``pack_padded_sequence(pad_sequence(sequences), lengths)``."""
    lengths = [s.shape[0] for s in sequences]
    return pack_padded_sequence(pad_sequence(sequences), lengths, enforce_sorted=enforce_sorted)


def unpack_sequence(packed_sequences):
    """The list of (L_i, *) tensors of a PackedSequence, in the original order."""
    padded, lengths = pad_packed_sequence(packed_sequences, batch_first=True)
    return [padded[i, :int(n)] for i, n in enumerate(lengths.tolist())]
