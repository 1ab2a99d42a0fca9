"""``tritorch.nn.parallel``: DataParallel (one process, several devices) and DistributedDataParallel (one process
per device, through ``tritorch.distributed``)."""
from .data_parallel import DataParallel, replicate, scatter, gather, parallel_apply, data_parallel  # noqa: F401
from .distributed import DistributedDataParallel  # noqa: F401

__all__ = ["DataParallel", "DistributedDataParallel", "replicate", "scatter", "gather", "parallel_apply",
           "data_parallel"]
