"""Multi-task learning with nn.ModuleList: one shared trunk, one head per task (the digit's class, whether it is
even, and whether it is >= 5), the losses summed."""
import argparse

import tritorch as torch
from tritorch import nn
from tritorch.data import Digits

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--tiny", action="store_true", help="a few steps (for tests)")
args = parser.parse_args()
steps = 5 if args.tiny else args.steps


class MultiTask(nn.Module):
    def __init__(self, n_classes=(10, 2, 2)):
        super().__init__()
        self.trunk = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU())
        self.heads = nn.ModuleList([nn.Linear(64, n) for n in n_classes])

    def forward(self, x):
        h = self.trunk(x)
        return [head(h) for head in self.heads]


torch.manual_seed(0)
train, test = Digits(train=True), Digits(train=False)
x, digit = train.data.float().unsqueeze(1) / 16, train.targets
targets = [digit, digit % 2, (digit >= 5).long()]
model = MultiTask()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
loss_fn = nn.CrossEntropyLoss()
for step in range(steps):
    idx = torch.randint(0, x.shape[0], (64,))
    outputs = model(x[idx])
    loss = sum(loss_fn(out, t[idx]) for out, t in zip(outputs, targets))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 50 == 0 or step == steps - 1:
        print(f"step {step:4d}  total loss {loss.item():.4f}")

with torch.no_grad():
    xt, dt = test.data.float().unsqueeze(1) / 16, test.targets
    for name, out, t in zip(("digit", "even", ">= 5"), model(xt), (dt, dt % 2, (dt >= 5).long())):
        print(f"{name:6s} accuracy {100 * (out.argmax(1) == t).float().mean().item():.1f}%")
