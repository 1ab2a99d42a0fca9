"""The main job until the training example lands: fit a small linear regression with autograd on the best
device present (``cuda`` on a GPU or under TRITORCH_INTERPRET=1, else ``cpu``) and print what ran where.

    python -m tritorch.demo [--device cpu|cuda] [--steps N]
"""
import argparse
import sys
import time

import tritorch as torch


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tritorch.demo", description=__doc__.splitlines()[0])
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available, else cpu)")
    p.add_argument("--steps", type=int, default=200)
    args = p.parse_args(argv)
    dev = args.device or ("cuda" if torch.cuda.is_available() and not torch.cuda.is_interpreted() else "cpu")
    try:
        device = torch.device(dev)
        torch.zeros(1, device=device)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    torch.manual_seed(0)
    n, d = 256, 8
    x = torch.randn(n, d, device=device)
    true_w = torch.arange(1, d + 1, dtype=torch.float32, device=device).reshape(d, 1) / d
    y = x @ true_w + 0.5
    w = torch.zeros(d, 1, device=device, requires_grad=True)
    b = torch.zeros(1, device=device, requires_grad=True)
    lr = 0.1
    t0 = time.perf_counter()
    for step in range(args.steps):
        loss = ((x @ w + b - y) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            w -= lr * w.grad
            b -= lr * b.grad
        w.grad = None
        b.grad = None
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step:4d}  loss {loss.item():.3e}")
    dt = time.perf_counter() - t0
    err = (w - true_w).abs().max().item()
    print(f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'NumPy references'}); "
          f"{args.steps} steps in {dt:.2f} s; final loss {loss.item():.2e}; max |w - w*| {err:.2e}; "
          f"bias {b.item():.4f} (true 0.5)")
    return 0 if loss.item() < 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
