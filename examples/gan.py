"""A DCGAN-style GAN on the 8x8 digits: a generator (ConvTranspose2d + BatchNorm2d + ReLU) and a discriminator
(Conv2d + BatchNorm2d + LeakyReLU), trained in turns with BCEWithLogitsLoss."""
import argparse

import tritorch as torch
from tritorch import nn
from tritorch.data import Digits

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--tiny", action="store_true", help="a few steps (for tests)")
args = parser.parse_args()
steps = 3 if args.tiny else args.steps
nz, batch = 16, 32

generator = nn.Sequential(
    nn.ConvTranspose2d(nz, 32, 4, stride=1, padding=0, bias=False), nn.BatchNorm2d(32), nn.ReLU(),   # 4x4
    nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),   # 8x8
    nn.ConvTranspose2d(16, 1, 3, stride=1, padding=1, bias=False), nn.Tanh())                         # 8x8
discriminator = nn.Sequential(
    nn.Conv2d(1, 16, 4, stride=2, padding=1, bias=False), nn.LeakyReLU(0.2),                          # 4x4
    nn.Conv2d(16, 32, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.LeakyReLU(0.2),     # 2x2
    nn.Conv2d(32, 1, 2, stride=1, padding=0, bias=False), nn.Flatten())                               # 1

torch.manual_seed(0)
real_images = Digits(train=True).data.float().unsqueeze(1) / 8 - 1        # in [-1, 1]
criterion = nn.BCEWithLogitsLoss()
opt_d = torch.optim.Adam(discriminator.parameters(), lr=2e-3, betas=(0.5, 0.999))
opt_g = torch.optim.Adam(generator.parameters(), lr=2e-3, betas=(0.5, 0.999))
ones, zeros = torch.ones(batch, 1), torch.zeros(batch, 1)

for step in range(steps):
    real = real_images[torch.randint(0, real_images.shape[0], (batch,))]
    fake = generator(torch.randn(batch, nz, 1, 1))
    # discriminator: real -> 1, fake -> 0 (the fakes detached: no gradient into the generator)
    loss_d = criterion(discriminator(real), ones) + criterion(discriminator(fake.detach()), zeros)
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    # generator: make the discriminator say 1 on fakes
    loss_g = criterion(discriminator(fake), ones)
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
    if step % 50 == 0 or step == steps - 1:
        print(f"step {step:4d}  loss D {loss_d.item():.4f}  loss G {loss_g.item():.4f}")

generator.eval()
with torch.no_grad():
    samples = generator(torch.randn(4, nz, 1, 1))
print("samples", tuple(samples.shape), f"in [{samples.min().item():.2f}, {samples.max().item():.2f}]")
