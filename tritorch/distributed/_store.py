"""A one-shot rendezvous over TCP for bootstrap bytes (NCCL's unique id) when there is no MPI world to carry them.

Rank 0 listens on MASTER_ADDR:MASTER_PORT and hands ``data`` to each other rank, which says its rank first; only the
ids travel here, never tensors (those go through NCCL). A rank that does not come by the deadline is named.
"""
import socket
import struct
import time

from ._work import DistTimeoutError


def _recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("tritorch.distributed: the rendezvous peer closed the connection")
        buf += chunk
    return buf


def share(data, rank, world_size, addr, port, timeout):
    """Rank 0 passes ``data`` (bytes); every rank returns it."""
    if addr is None or port is None:
        raise RuntimeError("tritorch.distributed: MASTER_ADDR and MASTER_PORT must be set (env://) to start the 'nccl' "
                           "backend without mpiexec; `tritorch run` sets them")
    port = int(port)
    deadline = time.monotonic() + timeout
    if rank == 0:
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("", port))
        srv.listen(world_size)
        joined = set()
        try:
            while len(joined) < world_size - 1:
                left = deadline - time.monotonic()
                if left <= 0:
                    miss = sorted(set(range(1, world_size)) - joined)
                    raise DistTimeoutError(f"tritorch.distributed: init_process_group timed out after {timeout:g} s: "
                                           f"rank(s) {miss} did not join the rendezvous at {addr}:{port}")
                srv.settimeout(min(left, 1.0))
                try:
                    c, _ = srv.accept()
                except socket.timeout:
                    continue
                with c:
                    c.settimeout(max(1.0, deadline - time.monotonic()))
                    joined.add(struct.unpack("!i", _recv_exact(c, 4))[0])
                    c.sendall(struct.pack("!i", len(data)) + data)
        finally:
            srv.close()
        return data
    while True:
        try:
            with socket.create_connection((addr, port), timeout=max(0.1, deadline - time.monotonic())) as c:
                c.sendall(struct.pack("!i", rank))
                n = struct.unpack("!i", _recv_exact(c, 4))[0]
                return _recv_exact(c, n)
        except OSError:
            if time.monotonic() > deadline:
                raise DistTimeoutError(f"tritorch.distributed: init_process_group timed out after {timeout:g} s: rank "
                                       f"0 did not open the rendezvous at {addr}:{port}") from None
            time.sleep(0.1)
