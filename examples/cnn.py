"""A small CNN on the bundled 8x8 digits: the main job (``python -m tritorch.train``) in 30 lines."""
import argparse

import tritorch as torch
from tritorch import nn
from tritorch.data import Digits

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--tiny", action="store_true", help="a few batches (for tests)")
args = parser.parse_args()

device = "cuda" if torch.cuda.is_available() and not torch.cuda.is_interpreted() else "cpu"
torch.manual_seed(0)
train_set, test_set = Digits(train=True), Digits(train=False)
x = ((train_set.data.float().unsqueeze(1) / 16 - 0.3) / 0.4).to(device)
y = train_set.targets.to(device)
x_test = ((test_set.data.float().unsqueeze(1) / 16 - 0.3) / 0.4).to(device)
y_test = test_set.targets.to(device)

model = nn.Sequential(
    nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(64 * 2 * 2, 128), nn.Linear(128, 10)).to(device)
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.2)
loss_fn = nn.CrossEntropyLoss()

for epoch in range(1 if args.tiny else args.epochs):
    perm = torch.randperm(x.shape[0], device=device)
    for i in range(0, 4 * 64 if args.tiny else x.shape[0], 64):
        idx = perm[i:i + 64]
        loss = loss_fn(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    scheduler.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    model.train()
    print(f"epoch {epoch + 1}: loss {loss.item():.4f}, test accuracy {100 * accuracy:.1f}%")
