"""Saving and loading: a model's state_dict and a full training checkpoint with tritorch.save / tritorch.load
(safetensors files, no pickle), then resuming training from it."""
import argparse
import os
import tempfile

import tritorch as torch
from tritorch import nn

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--steps", type=int, default=50)
parser.add_argument("--tiny", action="store_true", help="a few steps (for tests)")
parser.add_argument("--dir", default=None, help="where to write the files (default: a temporary folder)")
args = parser.parse_args()
steps = 3 if args.tiny else args.steps


def make_model():
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))


torch.manual_seed(0)
x = torch.randn(128, 4)
y = x.sum(1, keepdim=True)
model = make_model()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
for _ in range(steps):
    loss = nn.functional.mse_loss(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

folder = args.dir or tempfile.mkdtemp()
weights = os.path.join(folder, "model.safetensors")
checkpoint = os.path.join(folder, "checkpoint.safetensors")

# 1. weights only: load into a freshly built model
torch.save(model.state_dict(), weights)
restored = make_model()
restored.load_state_dict(torch.load(weights))
with torch.no_grad():
    same = bool((model(x) == restored(x)).all().item())
print(f"weights saved to {weights}; reloaded model gives the same outputs: {same}")
assert same

# 2. a checkpoint: model, optimizer and step count, to resume training
torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": steps}, checkpoint)
state = torch.load(checkpoint, map_location="cpu")
model2 = make_model()
optimizer2 = torch.optim.Adam(model2.parameters(), lr=1e-2)
model2.load_state_dict(state["model"])
optimizer2.load_state_dict(state["optimizer"])
for _ in range(steps):
    loss = nn.functional.mse_loss(model2(x), y)
    optimizer2.zero_grad()
    loss.backward()
    optimizer2.step()
print(f"resumed at step {state['step']}, loss now {loss.item():.4f}")
