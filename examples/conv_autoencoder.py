"""A convolutional autoencoder on the digits: strided convolutions down to 4x4, ConvTranspose2d and Upsample back."""
import argparse

import tritorch as torch
from tritorch import nn
from tritorch.data import Digits

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--steps", type=int, default=200)
parser.add_argument("--tiny", action="store_true", help="a few steps (for tests)")
args = parser.parse_args()
steps = 5 if args.tiny else args.steps


class AutoEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.ZeroPad2d(4),                                                     # 8x8 -> 16x16
            nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(),                  # 8x8
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())                 # 4x4
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),   # 8x8
            nn.Upsample(scale_factor=2, mode="bilinear"),                        # 16x16
            nn.Conv2d(8, 1, 3, padding=1), nn.Sigmoid())

    def forward(self, x):
        return self.decoder(self.encoder(x))


torch.manual_seed(0)
images = Digits(train=True).data.float().unsqueeze(1) / 16
target = nn.functional.pad(images, (4, 4, 4, 4))
model = AutoEncoder()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
for step in range(steps):
    idx = torch.randint(0, images.shape[0], (64,))
    loss = nn.functional.mse_loss(model(images[idx]), target[idx])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 20 == 0 or step == steps - 1:
        print(f"step {step:4d}  reconstruction loss {loss.item():.4f}")
