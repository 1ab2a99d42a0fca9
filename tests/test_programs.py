"""The seed programs as tests, on cpu: a CNN trained on the bundled digits to >= 95% test accuracy, a
convolutional autoencoder and a DCGAN-style generator/discriminator whose losses fall over a few steps.

The CNN takes the 8x8 digits as they are (two 2x2 max-pools leave 2x2 maps: 64 * 2 * 2 = 256 features), standardised;
batch 64, SGD(lr 0.05, momentum 0.9), the learning rate cut 5x after 3 epochs, 4 epochs: 96.9% test accuracy in
20-30 s on a loaded 2-core machine (98% after a 5th epoch)."""
import time

import numpy as np

import tritorch
from tritorch.nn.functional import pad
from tritorch.nn.conv import Conv2d, ConvTranspose2d
from tritorch.nn.linear import Flatten, Linear
from tritorch.nn.activation import ReLU, LeakyReLU, Sigmoid, Tanh
from tritorch.nn.containers import Sequential
from tritorch.nn.loss import CrossEntropyLoss, MSELoss, BCEWithLogitsLoss
from tritorch.nn.pooling import MaxPool2d
from tritorch.nn.normalization import BatchNorm2d
from tritorch.nn.upsampling import Upsample
from tritorch.nn.padding import ZeroPad2d
from tritorch.optim import SGD, Adam
from tritorch.optim.lr_scheduler import StepLR
from tritorch.data.datasets import Digits


def _digits(train):
    ds = Digits(train=train)
    x = tritorch.tensor(ds.data.numpy().astype(np.float32)[:, None] / 16.0)
    return x, ds.targets


def test_cnn_digits_reaches_95_percent():
    tritorch.manual_seed(0)
    model = Sequential(
        Conv2d(1, 32, 3, padding=1), ReLU(), MaxPool2d(2),
        Conv2d(32, 64, 3, padding=1), ReLU(), MaxPool2d(2),
        Flatten(), Linear(64 * 2 * 2, 128), Linear(128, 10))
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = StepLR(opt, step_size=3, gamma=0.2)
    loss_fn = CrossEntropyLoss()
    x, y = _digits(True)
    xt, yt = _digits(False)
    x, xt = (x - 0.3) / 0.4, (xt - 0.3) / 0.4           # roughly zero mean, unit variance
    n, batch = x.shape[0], 64
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for epoch in range(EPOCHS):
        perm = tritorch.tensor(rng.permutation(n))
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    elapsed = time.perf_counter() - start
    model.eval()
    with tritorch.no_grad():
        acc = float((model(xt).argmax(1) == yt).float().mean().item())
    assert acc >= 0.95, f"test accuracy {acc:.3f} after {EPOCHS} epochs ({elapsed:.1f} s)"
    assert elapsed < 60


EPOCHS = 4


def _steps(model, loss_of, opt, steps):
    losses = []
    for _ in range(steps):
        loss = loss_of()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
    return losses


def test_conv_autoencoder_loss_decreases():
    tritorch.manual_seed(1)
    model = Sequential(
        ZeroPad2d(4),                                                    # 8x8 -> 16x16
        Conv2d(1, 8, 3, stride=2, padding=1), ReLU(),                    # 8x8
        Conv2d(8, 16, 3, stride=2, padding=1), ReLU(),                   # 4x4
        ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1), ReLU(),   # 8x8
        Upsample(scale_factor=2, mode="bilinear"),                       # 16x16
        Conv2d(8, 1, 3, padding=1), Sigmoid())
    x, _ = _digits(False)
    x = x[:64]
    target = pad(x, (4, 4, 4, 4))
    for p in model.parameters():
        assert p.requires_grad
    opt = Adam(model.parameters(), lr=1e-2)
    mse = MSELoss()
    losses = _steps(model, lambda: mse(model(x), target), opt, 15)
    assert model(x).shape == (64, 1, 16, 16)
    assert losses[-1] < 0.7 * losses[0], losses
    assert all(p.grad is not None for p in model.parameters())


def test_dcgan_generator_discriminator_losses_decrease():
    tritorch.manual_seed(2)
    nz = 16
    gen = Sequential(
        ConvTranspose2d(nz, 32, 4, stride=1, padding=0, bias=False), BatchNorm2d(32), ReLU(),      # 4x4
        ConvTranspose2d(32, 16, 4, stride=2, padding=1, bias=False), BatchNorm2d(16), ReLU(),      # 8x8
        ConvTranspose2d(16, 1, 3, stride=1, padding=1, bias=False), Tanh())                        # 8x8
    disc = Sequential(
        Conv2d(1, 16, 4, stride=2, padding=1, bias=False), LeakyReLU(0.2),                         # 4x4
        Conv2d(16, 32, 4, stride=2, padding=1, bias=False), BatchNorm2d(32), LeakyReLU(0.2),       # 2x2
        Conv2d(32, 1, 2, stride=1, padding=0, bias=False), Flatten())                              # 1
    real, _ = _digits(True)
    real = real[:32] * 2 - 1
    noise = tritorch.randn(32, nz, 1, 1)
    bce = BCEWithLogitsLoss()
    ones, zeros = tritorch.ones(32, 1), tritorch.zeros(32, 1)
    opt_d = Adam(disc.parameters(), lr=2e-3, betas=(0.5, 0.999))
    opt_g = Adam(gen.parameters(), lr=2e-3, betas=(0.5, 0.999))
    fake = gen(noise)
    assert fake.shape == (32, 1, 8, 8)
    # the discriminator learns to tell the (fixed) fakes from the real digits
    fixed = fake.detach()
    d_losses = _steps(disc, lambda: bce(disc(real), ones) + bce(disc(fixed), zeros), opt_d, 8)
    assert d_losses[-1] < d_losses[0], d_losses
    # the generator learns to fool the (now fixed) discriminator; gradients flow through disc into gen
    for p in disc.parameters():
        p.requires_grad_(False)
    g_losses = _steps(gen, lambda: bce(disc(gen(noise)), ones), opt_g, 8)
    assert g_losses[-1] < g_losses[0], g_losses
    assert all(p.grad is not None for p in gen.parameters())
    assert gen[1].running_mean.abs().sum().item() > 0
