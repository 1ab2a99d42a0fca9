"""An MLP classifier on the bundled 8x8 digits, with a DataLoader, Dropout and Adam."""
import argparse

import tritorch as torch
from tritorch import nn
from tritorch.utils.data import DataLoader
from tritorch.data import Digits

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--tiny", action="store_true", help="one short epoch (for tests)")
args = parser.parse_args()

torch.manual_seed(0)
train_set, test_set = Digits(train=True), Digits(train=False)
loader = DataLoader(train_set, batch_size=64, shuffle=True)
model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 10))
optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
loss_fn = nn.CrossEntropyLoss()

for epoch in range(1 if args.tiny else args.epochs):
    model.train()
    for i, (images, labels) in enumerate(loader):
        loss = loss_fn(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if args.tiny and i == 5:
            break
    model.eval()
    with torch.no_grad():
        x = test_set.data.float().unsqueeze(1) / 16
        accuracy = (model(x).argmax(1) == test_set.targets).float().mean().item()
    print(f"epoch {epoch + 1}: loss {loss.item():.4f}, test accuracy {100 * accuracy:.1f}%")
