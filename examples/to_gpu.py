"""Moving a model and its data to the GPU when there is one: ``.to(device)``, ``.cuda()``, ``.cpu()``."""
import argparse

import tritorch as torch
from tritorch import nn

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--steps", type=int, default=100)
parser.add_argument("--tiny", action="store_true", help="a few steps (for tests)")
parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
args = parser.parse_args()
steps = 2 if args.tiny else args.steps

device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
print(f"using {device}" + (" (Triton interpreter)" if device.type == "cuda" and torch.cuda.is_interpreted() else ""))

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2)).to(device)   # parameters move in place
x = torch.randn(64, 8, device=device)
y = (x[:, 0] > 0).long()                                                           # computed on the same device
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)              # built after .to(device)
for step in range(steps):
    loss = nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(f"loss {loss.item():.4f}; parameters on {next(model.parameters()).device}")

model = model.cpu()                                       # back to the host, e.g. to save or inspect
print("after .cpu():", next(model.parameters()).device)
