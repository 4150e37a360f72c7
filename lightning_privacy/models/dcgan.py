"""The conditional DCGAN of the PIGAN paper (Hassanzadeh & Tillman, App. A.1): generator and discriminator of
Table 4, their membership-code variants of Table 5, and PIGAN's code classifier Q (PrivGAN's privacy
discriminator).

Sizes follow the datamodule's ``input_shape`` (C, S, S); the layout is chosen from S:

- ``fmnist`` (Table 4a, the default for S = 28 and any S divisible by 4 but not 8): G's dense map is (S/4)²×128,
  two 5×5/2 deconvolutions 128, a 3×3 deconvolution 64, a 3×3 convolution to C channels, tanh (BatchNorm +
  LReLU 0.2 after every hidden layer); D concatenates a dense S×S label map to x, then 5×5/2 convolutions
  64-128-128 with LReLU 0.2, flatten, dense 1.
- ``cifar`` (Table 4b, S divisible by 8, e.g. 32): G's dense map is (S/8)²×256, three 4×4/2 deconvolutions
  128-128-64, a 3×3 convolution to C, tanh (no BatchNorm, as in the table); D: a 3×3 convolution 64 on x, a dense
  S×S×C label map concatenated, 3×3/2 convolutions 128-128-256, flatten, dense 1.

Other sizes are refused with the fix: resize with ``data.init_args.image_size`` (every datamodule resizes, bilinear
with antialiasing), e.g. 28 for the embedded 8×8 digits, 32 for CIFAR-like data. BatchNorm momentum 0.9 in the
paper (Keras: the weight of the old running average) is PyTorch's ``momentum=0.1``.

Codes (Table 5, ``num_codes`` N > 0): G maps the one-hot code c through a dense (S/4)²×32 map (``cifar``: (S/8)²×32)
concatenated to the zy map before BatchNorm; D maps c through a dense map of x's size concatenated to x and the
label map (``cifar``: to x̂ and the label map; Table 5b is not in the paper's text, so c enters like y). D and
Q return logits: the sigmoid / softmax of the tables is in the losses.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_privacy.errors import UserInputError

Layout = Literal["auto", "fmnist", "cifar"]
BN_MOMENTUM = 0.1  # Keras' 0.9


def resolve_layout(input_shape: Sequence[int], layout: Layout = "auto") -> str:
    """The Table 4 layout for images of ``input_shape``, or a UserInputError saying how to resize."""
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise UserInputError(f"input_shape must be (C, H, W) with positive sizes; got {tuple(input_shape)}")
    c, h, w = input_shape
    fix = ("resize the data with data.init_args.image_size (28: Table 4a, as Fashion-MNIST; 32: Table 4b, as "
           "CIFAR-10)")
    if h != w:
        raise UserInputError(f"the DCGAN needs square images; got {h}x{w}: {fix}")
    if layout == "auto":
        layout = "cifar" if h % 8 == 0 and h >= 16 else "fmnist"
    if layout == "fmnist" and (h % 4 or h < 16):
        raise UserInputError(f"the DCGAN of Table 4a cannot produce {h}x{h} images (the side must be a multiple "
                             f"of 4, at least 16): {fix}")
    if layout == "cifar" and (h % 8 or h < 16):
        raise UserInputError(f"the DCGAN of Table 4b cannot produce {h}x{h} images (the side must be a multiple "
                             f"of 8, at least 16): {fix}")
    if layout not in ("fmnist", "cifar"):
        raise UserInputError(f"layout must be auto, fmnist or cifar; got {layout!r}")
    return layout


def _lrelu() -> nn.LeakyReLU:
    return nn.LeakyReLU(0.2)


def one_hot(labels: Tensor, n: int) -> Tensor:
    return F.one_hot(labels.long(), n).float()


class ConditionalGenerator(nn.Module):
    """G(z, y) of Table 4, or G(z, c, y) of Table 5 when ``num_codes`` > 0; returns images in [-1, 1]."""

    def __init__(self, input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10, latent_dim: int = 100,
                 num_codes: int = 0, layout: Layout = "auto") -> None:
        super().__init__()
        self.layout = resolve_layout(input_shape, layout)
        self.input_shape, self.num_classes = tuple(input_shape), num_classes
        self.latent_dim, self.num_codes = latent_dim, num_codes
        c, s = input_shape[0], input_shape[1]
        fm = self.layout == "fmnist"
        self.start = s // 4 if fm else s // 8
        self.width = 128 if fm else 256
        self.zy = nn.Linear(latent_dim + num_classes, self.start ** 2 * self.width)
        code_width = 32 if num_codes else 0
        self.code = nn.Linear(num_codes, self.start ** 2 * code_width) if num_codes else None
        width = self.width + code_width
        # Keras' BatchNormalization after Dense normalizes each unit: BatchNorm1d over the flat map.
        self.dense_norm = nn.BatchNorm1d(self.start ** 2 * width, momentum=BN_MOMENTUM) if fm else nn.Identity()
        if fm:
            blocks = [nn.ConvTranspose2d(width, 128, 5, stride=2, padding=2, output_padding=1),
                      nn.BatchNorm2d(128, momentum=BN_MOMENTUM), _lrelu(),
                      nn.ConvTranspose2d(128, 128, 5, stride=2, padding=2, output_padding=1),
                      nn.BatchNorm2d(128, momentum=BN_MOMENTUM), _lrelu(),
                      nn.ConvTranspose2d(128, 64, 3, stride=1, padding=1),
                      nn.BatchNorm2d(64, momentum=BN_MOMENTUM), _lrelu()]
        else:
            blocks = [nn.ConvTranspose2d(width, 128, 4, stride=2, padding=1), _lrelu(),
                      nn.ConvTranspose2d(128, 128, 4, stride=2, padding=1), _lrelu(),
                      nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1), _lrelu()]
        self.blocks = nn.Sequential(*blocks, nn.Conv2d(64, c, 3, padding=1), nn.Tanh())

    def forward(self, z: Tensor, y: Tensor, c: Tensor | None = None) -> Tensor:
        h = self.zy(torch.cat([z, one_hot(y, self.num_classes)], dim=1))
        if self.code is not None:
            if c is None:
                raise ValueError("this generator takes a membership code c")
            h = torch.cat([h.view(-1, self.width, self.start ** 2),
                           self.code(one_hot(c, self.num_codes)).view(-1, 32, self.start ** 2)], dim=1).flatten(1)
        h = F.leaky_relu(self.dense_norm(h), 0.2)
        return self.blocks(h.view(h.shape[0], -1, self.start, self.start))


def _trunk(layout: str, in_channels: int, size: int) -> tuple[nn.Sequential, int]:
    """The discriminator's convolutions (after its input maps) and the flattened width they produce."""
    if layout == "fmnist":
        widths, k, pad = (64, 128, 128), 5, 2
    else:
        widths, k, pad = (128, 128, 256), 3, 1
    layers: list[nn.Module] = []
    for out in widths:
        layers += [nn.Conv2d(in_channels, out, k, stride=2, padding=pad), _lrelu()]
        in_channels, size = out, (size + 2 * pad - k) // 2 + 1
    return nn.Sequential(*layers, nn.Flatten()), in_channels * size * size


class ConditionalDiscriminator(nn.Module):
    """D(x, y) of Table 4, or D(x, c, y) of Table 5 when ``num_codes`` > 0; returns the logit of "real"."""

    def __init__(self, input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10, num_codes: int = 0,
                 layout: Layout = "auto") -> None:
        super().__init__()
        self.layout = resolve_layout(input_shape, layout)
        self.input_shape, self.num_classes, self.num_codes = tuple(input_shape), num_classes, num_codes
        c, s = input_shape[0], input_shape[1]
        map_channels = 1 if self.layout == "fmnist" else c
        self.stem = nn.Sequential(nn.Conv2d(c, 64, 3, padding=1), _lrelu()) if self.layout == "cifar" else None
        x_channels = 64 if self.stem is not None else c
        self.label_map = nn.Linear(num_classes, map_channels * s * s)
        self.code_map = nn.Linear(num_codes, map_channels * s * s) if num_codes else None
        in_channels = x_channels + map_channels * (2 if num_codes else 1)
        self.trunk, flat = _trunk(self.layout, in_channels, s)
        self.head = nn.Linear(flat, 1)
        self._map_shape = (map_channels, s, s)

    def forward(self, x: Tensor, y: Tensor, c: Tensor | None = None) -> Tensor:
        n = x.shape[0]
        parts = [self.stem(x) if self.stem is not None else x,
                 self.label_map(one_hot(y, self.num_classes)).view(n, *self._map_shape)]
        if self.code_map is not None:
            if c is None:
                raise ValueError("this discriminator takes a membership code c")
            parts.append(self.code_map(one_hot(c, self.num_codes)).view(n, *self._map_shape))
        return self.head(self.trunk(torch.cat(parts, dim=1))).squeeze(1)


class CodeClassifier(nn.Module):
    """Q(x) of Table 5 (PrivGAN's privacy discriminator): D's trunk without label or code inputs, N logits."""

    def __init__(self, input_shape: Sequence[int] = (1, 28, 28), num_codes: int = 2, layout: Layout = "auto") -> None:
        super().__init__()
        self.layout = resolve_layout(input_shape, layout)
        c, s = input_shape[0], input_shape[1]
        self.stem = nn.Sequential(nn.Conv2d(c, 64, 3, padding=1), _lrelu()) if self.layout == "cifar" else None
        self.trunk, flat = _trunk(self.layout, 64 if self.stem is not None else c, s)
        self.head = nn.Linear(flat, num_codes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.trunk(self.stem(x) if self.stem is not None else x))
