"""An LSTM sequence model: read 20 samples of a sine wave, predict the next one (nn.LSTM, batch_first, Adam)."""
import argparse
import math

import tritorch as torch
from tritorch import nn

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--tiny", action="store_true", help="a few steps (for tests)")
args = parser.parse_args()


def batch(n, length=20):
    """``n`` windows of sin(t) at random phases and frequencies: inputs (n, length, 1), next values (n, 1)."""
    phase = torch.rand(n, 1) * 2 * math.pi
    freq = 0.5 + torch.rand(n, 1) * 0.5
    t = torch.arange(length + 1).float() * 0.3
    wave = torch.sin(phase + freq * t)
    return wave[:, :length].unsqueeze(-1), wave[:, length:]


class SineModel(nn.Module):
    def __init__(self, hidden=32):
        super().__init__()
        self.lstm = nn.LSTM(input_size=1, hidden_size=hidden, num_layers=1, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        out, (h_n, c_n) = self.lstm(x)
        return self.head(out[:, -1])


torch.manual_seed(0)
model = SineModel()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
loss_fn = nn.MSELoss()
x_test, y_test = batch(256)

with torch.no_grad():
    first = loss_fn(model(x_test), y_test).item()
for step in range(10 if args.tiny else args.steps):
    x, y = batch(64)
    loss = loss_fn(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if (step + 1) % 100 == 0:
        print(f"step {step + 1}: train loss {loss.item():.5f}")
with torch.no_grad():
    last = loss_fn(model(x_test), y_test).item()
print(f"test loss (mean squared error of the next value): {first:.4f} before training, {last:.5f} after "
      f"({first / last:.0f}x lower)")
