"""``tritorch run``: start N ranks of a script with torchrun's conventions.

    tritorch run --nproc-per-node N [--nnodes M --node-rank R --master-addr A --master-port P] script.py [args...]

Each rank gets RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR and MASTER_PORT, and, on a
node with at least N GPUs and no CUDA_VISIBLE_DEVICES set, its own GPU (CUDA_VISIBLE_DEVICES=LOCAL_RANK: tritorch
computes on device 0).

How the ranks start: on one node, when mpi4py and an ``mpiexec`` are installed (the ``mpich`` wheel brings one),
through ``mpiexec`` with one MPMD block per rank, so that the ranks form an MPI world for the ``mpi`` backend (and
NCCL's unique id travels over MPI); otherwise (several nodes, or no MPI) as plain child processes, for the ``nccl``
backend, whose ranks meet at MASTER_ADDR:MASTER_PORT. ``--launcher`` chooses.

Failures: each rank runs under a small wrapper that records an uncaught exception (type, message, traceback) in a
file; the first rank to fail stops the others (MPI_Abort, or SIGTERM then SIGKILL), and the launcher prints which
rank failed and why and exits with that rank's exit code (128 + N for a rank killed by signal N). Ctrl-C stops every
rank. Ranks die with their parent (PR_SET_PDEATHSIG), so none outlives the launcher.
"""
import argparse
import ctypes
import glob
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

__all__ = ["main", "build_parser"]

_PR_SET_PDEATHSIG = 1


def set_pdeathsig(sig=signal.SIGKILL):
    """Have the kernel send ``sig`` to this process when its parent dies (Linux; a no-op elsewhere)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def find_mpiexec():
    """The mpiexec beside this Python (the mpich wheel's), else one on PATH; None without mpi4py or mpiexec."""
    if importlib.util.find_spec("mpi4py") is None:
        return None
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.path.isfile(here) and os.access(here, os.X_OK):
        return here
    return shutil.which("mpiexec")


def _gpu_count():
    """NVIDIA GPUs on this node, from their device files (no CUDA initialisation in the launcher)."""
    return len(glob.glob("/dev/nvidia[0-9]*"))


def _is_openmpi(mpiexec):
    try:
        out = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "Open MPI" in out or "OpenRTE" in out


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser(prog="tritorch run"):
    p = _Parser(prog=prog, allow_abbrev=False,
                description="Start N ranks of a script (torchrun's conventions; mpiexec -n N works too).")
    p.add_argument("--nproc-per-node", "--nproc_per_node", dest="nproc", type=int, default=1, metavar="N",
                   help="ranks on this node (default 1)")
    p.add_argument("--nnodes", type=int, default=1, help="nodes (default 1)")
    p.add_argument("--node-rank", "--node_rank", dest="node_rank", type=int, default=0, help="this node (default 0)")
    p.add_argument("--master-addr", "--master_addr", dest="master_addr", default="127.0.0.1",
                   help="address of node 0 (default 127.0.0.1)")
    p.add_argument("--master-port", "--master_port", dest="master_port", type=int, default=None,
                   help="port on node 0 (default: a free port on one node, 29500 on several)")
    p.add_argument("--launcher", choices=["auto", "mpiexec", "direct"], default="auto",
                   help="auto: mpiexec on one node when MPI is installed, else direct child processes")
    p.add_argument("--grace", type=float, default=5.0, metavar="S",
                   help="seconds the other ranks get to stop after a failure before SIGKILL (default 5)")
    p.add_argument("-m", dest="module", action="store_true", help="run the script argument as a module (python -m)")
    p.add_argument("script", help="the training script (or module with -m)")
    p.add_argument("args", nargs="*", help="the script's arguments (everything after the script)")
    return p


def _rank_env(base, rank, local, world, nproc, args, err_dir, run_id):
    env = dict(base)
    env.update(RANK=str(rank), LOCAL_RANK=str(local), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(nproc),
               GROUP_RANK=str(args.node_rank), ROLE_RANK=str(rank), ROLE_WORLD_SIZE=str(world),
               MASTER_ADDR=args.master_addr, MASTER_PORT=str(args.master_port), TRITORCH_RUN_ID=run_id,
               TRITORCH_ERROR_FILE=os.path.join(err_dir, f"rank_{rank}.json"))
    return env


def _target(args):
    return ["-m", "tritorch.distributed._rank"] + (["-m"] if args.module else []) + [args.script] + list(args.args)


class _Stop(Exception):
    pass


_WITH_VALUE = {"--nproc-per-node", "--nproc_per_node", "--nnodes", "--node-rank", "--node_rank", "--master-addr",
               "--master_addr", "--master-port", "--master_port", "--launcher", "--grace"}


def _split_argv(argv):
    """(launcher options, [script, script args...]): everything from the script on belongs to the script."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            return argv[:i], argv[i + 1:]
        if not a.startswith("-") or a == "-":
            break
        i += 2 if a in _WITH_VALUE else 1
    return argv[:i], argv[i:]


def main(argv=None, prog="tritorch run"):
    argv = sys.argv[1:] if argv is None else list(argv)
    head, tail = _split_argv(argv)
    parser = build_parser(prog)
    if not tail and not {"-h", "--help"} & set(head):
        parser.error("a script to run is required (tritorch run [options] script.py [args...])")
    args = parser.parse_args(head + tail[:1])
    args.args = tail[1:]
    if args.nproc < 1 or args.nnodes < 1 or not 0 <= args.node_rank < args.nnodes:
        print(f"{prog}: error: need --nproc-per-node >= 1, --nnodes >= 1 and 0 <= --node-rank < --nnodes",
              file=sys.stderr)
        return 2
    if not args.module and not os.path.isfile(args.script):
        print(f"{prog}: error: no such script: {args.script}", file=sys.stderr)
        return 2
    if args.master_port is None:
        args.master_port = _free_port() if args.nnodes == 1 else 29500
    world = args.nproc * args.nnodes
    mpiexec = find_mpiexec() if args.launcher != "direct" else None
    if args.launcher == "mpiexec" and mpiexec is None:
        print(f"{prog}: error: --launcher mpiexec needs mpi4py and an mpiexec: pip install \"tritorch[dist]\"",
              file=sys.stderr)
        return 2
    use_mpi = mpiexec is not None and (args.launcher == "mpiexec" or args.nnodes == 1)
    err_dir = tempfile.mkdtemp(prefix="tritorch-run-")
    run_id = uuid.uuid4().hex[:12]
    base = dict(os.environ)
    if args.nproc > 1 and "OMP_NUM_THREADS" not in base:
        base["OMP_NUM_THREADS"] = "1"          # as torchrun: N ranks must not each take every core
    first = args.node_rank * args.nproc
    envs = [_rank_env(base, first + i, i, world, args.nproc, args, err_dir, run_id) for i in range(args.nproc)]
    if args.nproc > 1 and "CUDA_VISIBLE_DEVICES" not in base and _gpu_count() >= args.nproc:
        for i, env in enumerate(envs):      # tritorch computes on device 0: each rank sees its own GPU there
            env["CUDA_VISIBLE_DEVICES"] = str(i)
    try:
        if use_mpi:
            return _run_mpiexec(mpiexec, envs, args, err_dir, prog)
        return _run_direct(envs, args, err_dir, prog)
    finally:
        shutil.rmtree(err_dir, ignore_errors=True)


# ---- the two ways to start ranks ------------------------------------------------------------------------------------

def _popen(cmd, env):
    return subprocess.Popen(cmd, env=env, preexec_fn=set_pdeathsig)


def _run_direct(envs, args, err_dir, prog):
    procs = []
    stop = _install_stop()
    try:
        for env in envs:
            procs.append((int(env["RANK"]), _popen([sys.executable] + _target(args), env)))
        failed = None
        while True:
            alive = 0
            for rank, p in procs:
                rc = p.poll()
                if rc is None:
                    alive += 1
                elif rc != 0 and failed is None:
                    failed = (rank, rc)
            if failed is not None or alive == 0:
                break
            time.sleep(0.05)
        if failed is not None:
            _terminate([p for _, p in procs], args.grace)
            return _report(failed[0], failed[1], err_dir, prog, world_stopped=len(procs) > 1)
        return 0
    except _Stop as e:
        _terminate([p for _, p in procs], args.grace)
        print(f"{prog}: {e}: stopped all ranks", file=sys.stderr)
        return 130
    finally:
        _terminate([p for _, p in procs], 0)
        _restore_stop(stop)


def _run_mpiexec(mpiexec, envs, args, err_dir, prog):
    openmpi = _is_openmpi(mpiexec)
    cmd = [mpiexec]
    keys = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK", "ROLE_WORLD_SIZE",
            "MASTER_ADDR", "MASTER_PORT", "TRITORCH_RUN_ID", "TRITORCH_ERROR_FILE")
    keys += ("CUDA_VISIBLE_DEVICES",) if "CUDA_VISIBLE_DEVICES" in envs[0] and "CUDA_VISIBLE_DEVICES" not in \
        os.environ else ()
    for i, env in enumerate(envs):
        if i:
            cmd.append(":")
        cmd += ["-n", "1"]
        for k in keys:
            cmd += ["-x", f"{k}={env[k]}"] if openmpi else ["-env", k, env[k]]
        cmd += [sys.executable] + _target(args)
    base = {k: v for k, v in envs[0].items() if k not in keys}
    stop = _install_stop()
    p = None
    try:
        p = subprocess.Popen(cmd, env=base, preexec_fn=_new_group_and_pdeathsig)
        seen_error = None
        while p.poll() is None:
            if seen_error is None and glob.glob(os.path.join(err_dir, "rank_*.json")):
                seen_error = time.monotonic()           # the rank aborts the job; give MPI a moment to do it
            if seen_error is not None and time.monotonic() - seen_error > args.grace:
                _terminate_group(p, args.grace)
                break
            time.sleep(0.05)
        rc = p.wait()
        if rc == 0:
            return 0
        rank, code = _first_failure(err_dir)
        return _report(rank, code if rank is not None else rc, err_dir, prog, world_stopped=len(envs) > 1,
                       launcher_rc=rc)
    except _Stop as e:
        if p is not None:
            try:
                os.killpg(p.pid, signal.SIGINT)            # mpiexec forwards it to every rank
            except ProcessLookupError:
                pass
            _terminate_group(p, args.grace)
        print(f"{prog}: {e}: stopped all ranks", file=sys.stderr)
        return 130
    finally:
        if p is not None and p.poll() is None:
            _terminate_group(p, 0)
        _restore_stop(stop)


def _new_group_and_pdeathsig():
    os.setpgid(0, 0)
    set_pdeathsig()


# ---- stopping -------------------------------------------------------------------------------------------------------

def _install_stop():
    def handler(signum, frame):
        raise _Stop("interrupted" if signum == signal.SIGINT else f"got {signal.Signals(signum).name}")
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in old:
        signal.signal(s, handler)
    return old


def _restore_stop(old):
    for s, h in old.items():
        signal.signal(s, h)


def _terminate(procs, grace):
    live = [p for p in procs if p.poll() is None]
    for p in live:
        try:
            p.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while any(p.poll() is None for p in live) and time.monotonic() < deadline:
        time.sleep(0.05)
    for p in live:
        if p.poll() is None:
            p.kill()
            p.wait()


def _terminate_group(p, grace):
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if p.poll() is not None:
            return


# ---- reporting ------------------------------------------------------------------------------------------------------

def _read_errors(err_dir):
    out = []
    for f in glob.glob(os.path.join(err_dir, "rank_*.json")):
        try:
            with open(f) as fh:
                out.append(json.load(fh))
        except (OSError, ValueError):
            pass
    return sorted(out, key=lambda r: r.get("time", 0))


def _first_failure(err_dir):
    errs = _read_errors(err_dir)
    if not errs:
        return None, None
    e = errs[0]
    return e.get("rank"), int(e.get("exitcode", 1))


def _describe_rc(rc):
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit code {rc}"


def _report(rank, rc, err_dir, prog, world_stopped, launcher_rc=None):
    errs = {e.get("rank"): e for e in _read_errors(err_dir)}
    e = errs.get(rank)
    why = f"{e['type']}: {e['message']}" if e else _describe_rc(rc)
    code = 128 - rc if rc is not None and rc < 0 else (rc if rc else 1)
    if rank is None:
        print(f"{prog}: a rank failed ({_describe_rc(launcher_rc)} from mpiexec, whose report is above); "
              "the other ranks were stopped", file=sys.stderr)
        return launcher_rc if launcher_rc and launcher_rc > 0 else 1
    rest = "; the other ranks were stopped" if world_stopped else ""
    print(f"{prog}: rank {rank} failed first: {why} (exit code {code}){rest}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
