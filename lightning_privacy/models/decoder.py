"""The attacker's decoder of the layer-wise inversion attack (DP-vs-regularization paper, Sec. 4 and Fig. 3).

The paper fixes: SiLU on every hidden layer, a final convolution with the input's channels and a sigmoid, MSE loss,
Adam at 1e-3. Its Fig. 3 layout is not legible in the text, so the upsampler is designed here to start from any
layer's activation shape:

* a spatial activation (c, h, w) — a conv or pooling output — goes through a 1×1 conv to ``width`` channels;
* a flat activation (d,) — a dense layer, the prediction layer or a released score vector — goes through a Linear
  layer to ``width`` × ⌈H/4⌉ × ⌈W/4⌉ and is reshaped to that grid;
* the input is first standardized with the attacker's own activations, per channel (spatial) or per feature (flat)
  (``fit_input_stats``): fed raw,
  large deep-layer activations and logits left the decoder at the all-black image within a few epochs;
* then, while the grid is smaller than the input, stages of (×2 nearest upsampling, 3×3 conv, SiLU), halving the
  width down to no less than 16; a bilinear resize to exactly (H, W) when the doubling overshoots; one more 3×3 conv
  + SiLU at full size; the final 3×3 conv to the input's channels and a sigmoid (images in [0, 1]).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Decoder(nn.Module):
    """Maps an activation of shape ``in_shape`` ((d,) or (c, h, w)) back to an image of ``out_shape`` (C, H, W)."""

    def __init__(self, in_shape: Sequence[int], out_shape: Sequence[int], width: int = 64) -> None:
        super().__init__()
        in_shape, out_shape = tuple(int(s) for s in in_shape), tuple(int(s) for s in out_shape)
        if len(out_shape) != 3 or min(out_shape) < 1:
            raise ValueError(f"out_shape must be (C, H, W); got {out_shape}")
        if len(in_shape) not in (1, 3) or min(in_shape) < 1:
            raise ValueError(f"a decoder starts from a flat (d,) or spatial (c, h, w) activation; got {in_shape}")
        if width < 1:
            raise ValueError(f"width must be >= 1; got {width}")
        c_out, h_out, w_out = out_shape
        self.in_shape, self.out_shape = in_shape, out_shape
        # input standardization (``fit_input_stats``): activations of deep layers and logits are large and
        # unnormalized; fed raw, the decoder collapses to the all-black image within a budget of a few epochs
        self.register_buffer("in_mean", torch.zeros(in_shape))
        self.register_buffer("in_std", torch.ones(in_shape))
        if len(in_shape) == 1:
            h, w = math.ceil(h_out / 4), math.ceil(w_out / 4)
            self.stem: nn.Module = nn.Sequential(nn.Linear(in_shape[0], width * h * w), nn.SiLU(),
                                                 nn.Unflatten(1, (width, h, w)))
        else:
            h, w = in_shape[1], in_shape[2]
            self.stem = nn.Sequential(nn.Conv2d(in_shape[0], width, 1), nn.SiLU())
        stages: list[nn.Module] = []
        c = width
        while h < h_out or w < w_out:
            nxt = max(16, c // 2)
            stages += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, nxt, 3, padding=1), nn.SiLU()]
            c, h, w = nxt, h * 2, w * 2
        self.upsample = nn.Sequential(*stages)
        self.resize = (h, w) != (h_out, w_out)
        self.head = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.SiLU(), nn.Conv2d(c, c_out, 3, padding=1),
                                  nn.Sigmoid())

    @torch.no_grad()
    def fit_input_stats(self, features: Tensor) -> "Decoder":
        """Standardize the input with the mean and standard deviation of ``features`` (the attacker's own
        activations): per channel for a spatial activation (over samples and positions, so the spatial pattern is
        kept), per feature for a flat one; a deviation is floored at a tenth of the average one (dead units)."""
        dims = (0, 2, 3) if features.dim() == 4 else (0,)
        if features.shape[0] * (features[0].numel() // features.shape[1] if features.dim() == 4 else 1) > 1:
            std = features.std(dims, keepdim=True)[0]
        else:
            std = torch.ones_like(features[0])
        self.in_mean.copy_(features.mean(dims, keepdim=True)[0].expand_as(self.in_mean))
        self.in_std.copy_(std.clamp_min(0.1 * float(std.mean()) + 1e-8).expand_as(self.in_std))
        return self

    def forward(self, z: Tensor) -> Tensor:
        z = (z - self.in_mean) / self.in_std
        x = self.upsample(self.stem(z))
        if self.resize:
            x = F.interpolate(x, size=self.out_shape[1:], mode="bilinear", align_corners=False)
        return self.head(x)
