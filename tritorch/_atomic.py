"""Atomic file writes shared by every writer (checkpoints, the autotune cache, benchmark results).

``write(path, data)`` writes a temporary file beside the target, fsyncs it, renames it over the target with
``os.replace`` and fsyncs the folder: readers see the old file or the new one, never a part. The temporary is named
``.{name}.tmp-{pid}-{random}``; a writer killed before its rename (SIGKILL, power loss) leaves it behind, so each
write and ``remove_stale(path)`` delete the temporaries of that target whose writer process no longer runs.
"""
import contextlib
import os
import secrets

__all__ = ["write", "remove_stale", "temp_name"]


def _prefix(name):
    return f".{name}.tmp-"


def temp_name(path):
    """A fresh temporary path beside ``path`` owned by this process: ``.{name}.tmp-{pid}-{random}``."""
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(folder, f"{_prefix(name)}{os.getpid()}-{secrets.token_hex(6)}")


def _alive(pid):
    """Whether process ``pid`` runs (on this machine); unknown counts as alive, so nothing live is removed."""
    if pid == os.getpid():
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:                        # EPERM: it runs under another user; anything else: assume it runs
        return True
    return True


def remove_stale(path):
    """Delete the temporaries of ``path`` left by writers that died before their rename; returns their names."""
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    prefix = _prefix(name)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    removed = []
    for n in names:
        if not n.startswith(prefix):
            continue
        pid, sep, rand = n[len(prefix):].partition("-")
        if not (pid.isdigit() and sep and rand) or _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(folder, n))
            removed.append(n)
    return removed


def write(path, data, encoding="utf-8"):
    """Write ``data`` (bytes, or str encoded with ``encoding``) to ``path`` atomically. The file gets the usual
    ``0o666 & ~umask`` mode; on any failure the old file (if any) is intact and no temporary is left."""
    if isinstance(data, str):
        data = data.encode(encoding)
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    remove_stale(path)
    tmp = temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    try:                                   # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
