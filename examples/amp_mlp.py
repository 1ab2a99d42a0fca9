"""The MLP classifier on the bundled 8x8 digits, trained in mixed precision: the forward under autocast in float16
(matmuls in float16, the loss in float32), the loss scaled by a GradScaler so that small float16 gradients survive,
the weights and the optimizer kept in float32."""
import argparse

import tritorch as torch
from tritorch import nn
from tritorch.data import Digits
from tritorch.utils.data import DataLoader

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
parser.add_argument("--tiny", action="store_true", help="one short epoch (for tests)")
args = parser.parse_args()

torch.manual_seed(0)
device = torch.device(args.device)
train_set, test_set = Digits(train=True), Digits(train=False)
loader = DataLoader(train_set, batch_size=64, shuffle=True)
model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)).to(device)
optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
loss_fn = nn.CrossEntropyLoss()
scaler = torch.amp.GradScaler(device.type)

for epoch in range(1 if args.tiny else args.epochs):
    model.train()
    for i, (images, labels) in enumerate(loader):
        images, labels = images.to(device), labels.to(device)
        with torch.autocast(device.type, dtype=torch.float16):
            logits = model(images)                     # float16: the Linear layers run in half precision
            loss = loss_fn(logits, labels)             # float32: autocast runs the loss in full precision
        optimizer.zero_grad()
        scaler.scale(loss).backward()                  # gradients of the scaled loss, float32 on the weights
        scaler.step(optimizer)                         # unscaled in one fused launch; skipped on inf/NaN
        scaler.update()
        if args.tiny and i == 5:
            break
    model.eval()
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.float16):
        x = (test_set.data.float().unsqueeze(1) / 16).to(device)
        accuracy = (model(x).argmax(1) == test_set.targets.to(device)).float().mean().item()
    print(f"epoch {epoch + 1}: loss {loss.item():.4f} ({logits.dtype} logits), scale {scaler.get_scale():g}, "
          f"test accuracy {100 * accuracy:.1f}%")
