"""Linear regression: fit y = 3x - 2 + noise with nn.Linear, MSELoss and SGD."""
import argparse

import tritorch as torch
from tritorch import nn

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--steps", type=int, default=200)
parser.add_argument("--tiny", action="store_true", help="a few steps (for tests)")
args = parser.parse_args()
steps = 30 if args.tiny else args.steps

torch.manual_seed(0)
x = torch.linspace(-1, 1, 64).unsqueeze(1)
y = 3 * x - 2 + 0.1 * torch.randn(64, 1)

model = nn.Linear(1, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
loss_fn = nn.MSELoss()
for step in range(steps):
    loss = loss_fn(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 50 == 0 or step == steps - 1:
        print(f"step {step:4d}  loss {loss.item():.4f}")

print(f"weight {model.weight.item():.3f} (true 3), bias {model.bias.item():.3f} (true -2)")
