"""GPU benchmark runner (no pytest): tritorch against PyTorch eager on the same GPU, in the same run.

    python3 bench/gpu.py [--out results.json] [--results-dir bench/results] [--cases add,softmax] [--no-torch]
    python3 bench/gpu.py --dry-run          # tiny shapes on the cpu device, host clock: checks the runner itself

The cases, timers, table and JSON live in ``tritorch.benchmark`` (also behind ``tritorch bench``); this script runs
the standard cases (the shapes of shared/GPU.md) with PyTorch as the baseline, plus the host cost of one small op
(a 1,000-element add) on cuda and on cpu next to NumPy, and keeps one JSON file per run in bench/results/.
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tritorch.benchmark import CASES, CEILINGS, ceilings_for, default_name, errors, run_all, table, write  # noqa: E402
from tritorch._timing import EventTimer, WallTimer  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="write the JSON results here (as well as into --results-dir)")
    p.add_argument("--results-dir", default=os.path.join(ROOT, "bench", "results"),
                   help="folder that keeps one JSON file per run ('' for none)")
    p.add_argument("--cases", default="", help="comma-separated substrings of case names (default: all)")
    p.add_argument("--no-torch", action="store_true", help="do not time PyTorch")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--dry-run", action="store_true", help="tiny shapes on the cpu device with the host clock")
    p.add_argument("--table", help="also write the printed table to this file")
    args = p.parse_args(argv)

    if os.environ.get("TRITORCH_INTERPRET", "0") not in ("", "0") and not args.dry_run:
        sys.exit("bench/gpu.py: unset TRITORCH_INTERPRET (it would time Triton's interpreter)")
    import tritorch
    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            torch = None
    if args.dry_run:
        device, timer, small = "cpu", WallTimer(), True
        args.warmup, args.repeat = min(args.warmup, 1), min(args.repeat, 3)
        ceilings = CEILINGS
    else:
        if not tritorch.cuda.is_available() or tritorch.cuda.is_interpreted():
            sys.exit("bench/gpu.py: no CUDA GPU is available (use --dry-run to check the runner on the cpu)")
        device, timer, small = "cuda", EventTimer.shared(), False
        ceilings = ceilings_for(tritorch.cuda.get_device_name(0), timer)
    libs = [("tritorch", tritorch)] + ([("torch", torch)] if torch is not None else [])
    wanted = [s.strip() for s in args.cases.split(",") if s.strip()]
    cases = [c for c in CASES if not wanted or any(w in c.name for w in wanted)]

    paths = []

    def save(results):                  # after every case: a run cut short by a time limit keeps what it measured
        if not paths:
            paths.extend([args.out] if args.out else [])
            if args.results_dir:
                paths.append(os.path.join(args.results_dir, default_name(results)))
        for path in paths:
            write(results, path)

    results = run_all(libs, device, timer, cases, small, args.warmup, args.repeat, torch, ceilings=ceilings,
                      on_row=save)
    save(results)
    text = table(results)
    problems = errors(results)
    env = results["environment"]
    print(f"{env['device_name']} (cc {env['compute_capability']}), triton {env['triton']}, "
          f"tritorch {env['tritorch']}, torch {env['torch']}, {env['date']}")
    for name, c in results["ceilings"].items():
        print(f"ceiling {name}: {c['value'] / 1e12:.2f} T{c['unit']} ({c['note']})")
    if problems:
        print("\n".join(problems))
    print("results: " + ", ".join(paths))
    print(text)
    if args.table:
        with open(args.table, "w") as f:
            f.write(text + "\n")
    return results


if __name__ == "__main__":
    main()
