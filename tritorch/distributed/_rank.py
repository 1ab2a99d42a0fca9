"""The wrapper each rank of ``tritorch run`` runs in: ``python -m tritorch.distributed._rank [-m] script args...``.

It dies with its parent (PR_SET_PDEATHSIG), runs the script as ``__main__``, and on an uncaught exception (or a
non-zero ``sys.exit``) records it for the launcher and ends the whole job: MPI_Abort when the rank is in an MPI
world of several processes, else a plain exit that the launcher sees.
"""
import os
import runpy
import signal
import sys
import traceback

from .run import set_pdeathsig
from . import write_error_file
from ._work import drain_output


def _abort_world(code):
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized() and mpi.COMM_WORLD.Get_size() > 1:
        drain_output()
        mpi.COMM_WORLD.Abort(code)


def main(argv):
    set_pdeathsig(signal.SIGKILL)
    as_module = argv[:1] == ["-m"]
    if as_module:
        argv = argv[1:]
    if not argv:
        print("usage: python -m tritorch.distributed._rank [-m] script [args...]", file=sys.stderr)
        return 2
    target = argv[0]
    sys.argv = list(argv)
    try:
        if as_module:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
            runpy.run_path(target, run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if code:
            if not isinstance(e.code, int):
                print(e.code, file=sys.stderr)
            write_error_file(SystemExit, f"sys.exit({e.code!r})", None, code)
            _abort_world(code)
        return code
    except BaseException as e:      # noqa: BLE001  (any failure of the script ends the job, with its record)
        traceback.print_exc()
        code = 130 if isinstance(e, KeyboardInterrupt) else 1
        write_error_file(type(e), e, e.__traceback__, code)
        _abort_world(code)
        return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
