"""Devices and the three device modes: ``cpu`` (NumPy), ``cuda`` on a GPU, ``cuda`` in Triton's interpreter."""
import os

__all__ = ["device", "INTERPRET"]

INTERPRET = os.environ.get("TRITORCH_INTERPRET", "0") not in ("", "0")
if INTERPRET:
    # Triton decides at decoration time whether a kernel is interpreted: set it before any kernel exists.
    os.environ["TRITON_INTERPRET"] = "1"


class device:
    """``tritorch.device('cuda:0')``: a type (``cpu`` or ``cuda``) and an index."""

    __slots__ = ("type", "index")
    _cache = {}

    def __new__(cls, type, index=None):
        if isinstance(type, device):
            return type
        if isinstance(type, int):
            type, index = "cuda", type
        elif not isinstance(type, str):
            raise TypeError(f"device(): expected a device string, an index or a device, got {type!r}")
        key = (type, index)
        d = cls._cache.get(key)
        if d is not None:
            return d
        name = type
        if ":" in name:
            name, _, idx = name.partition(":")
            if index is not None or not idx.isdigit():
                raise RuntimeError(f"Invalid device string: '{type}'")
            index = int(idx)
        if name not in ("cpu", "cuda"):
            raise RuntimeError(f"Expected one of cpu, cuda device type at start of device string: {type}")
        if name == "cpu" and index not in (None, 0):
            raise RuntimeError(f"Invalid device: cpu has no index {index}")
        d = object.__new__(cls)
        d.type = name
        d.index = None if name == "cpu" else (0 if index is None else index)
        cls._cache[key] = d
        return d

    def __repr__(self):
        return f"device(type='{self.type}')" if self.index is None else \
            f"device(type='{self.type}', index={self.index})"

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __eq__(self, other):
        if isinstance(other, str):
            other = device(other)
        return isinstance(other, device) and self.type == other.type and self.index == other.index

    def __hash__(self):
        return hash((self.type, self.index))

    def __reduce__(self):
        """Pickled and deep-copied as its name: the copy is the same (cached) device object."""
        return (device, (self.type, self.index))


CPU = device("cpu")
