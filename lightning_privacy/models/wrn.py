"""Wide ResNet (Zagoruyko & Komodakis 2016) with GroupNorm: WRN-16-4 by default, the LiRA/RMIA CIFAR setting."""

from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(groups, channels), channels)


class WideBlock(nn.Module):
    """Pre-activation basic block: norm-ReLU-conv3×3-(dropout)-norm-ReLU-conv3×3, plus a 1×1 shortcut when the
    shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in, groups), nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.norm2, self.conv2 = _norm(c_out, groups), nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.shortcut = (nn.Conv2d(c_in, c_out, 1, stride, bias=False) if stride != 1 or c_in != c_out
                         else nn.Identity())

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.norm1(x))
        skip = x if isinstance(self.shortcut, nn.Identity) else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.norm2(self.dropout(out))))
        return out + skip


class WideResNet(nn.Module):
    """WRN-``depth``-``width`` for CIFAR-size inputs, GroupNorm in place of BatchNorm so that DP-SGD's per-sample
    gradients are defined (BatchNorm mixes samples). ``depth`` = 6n + 4: three stages of n blocks with
    16·width, 32·width, 64·width channels (strides 1, 2, 2), then norm-ReLU, global average pooling and the
    prediction layer. ``dropout`` sits inside each block (the WRN paper's placement)."""

    def __init__(
        self,
        input_shape: Sequence[int] = (3, 32, 32),
        num_classes: int = 10,
        depth: int = 16,
        width: int = 4,
        groups: int = 16,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(input_shape) != 3 or min(input_shape) < 1:
            raise ValueError(f"input_shape must be (C, H, W) with positive sizes; got {tuple(input_shape)}")
        if depth < 10 or (depth - 4) % 6 or width < 1 or groups < 1:
            raise ValueError(f"WRN needs depth = 6n + 4 >= 10, width >= 1, groups >= 1; got {depth}, {width}, {groups}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {dropout}")
        n = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.stem = nn.Conv2d(input_shape[0], widths[0], 3, 1, 1, bias=False)
        blocks: list[nn.Module] = []
        c = widths[0]
        for stage, out in enumerate(widths[1:]):
            for i in range(n):
                blocks.append(WideBlock(c, out, 2 if stage > 0 and i == 0 else 1, groups, dropout))
                c = out
        self.blocks = nn.Sequential(*blocks)
        self.norm = _norm(c, groups)
        self.prediction = nn.Linear(c, num_classes)

    @property
    def last_layer(self) -> nn.Linear:
        return self.prediction

    def penultimate(self, x: Tensor) -> Tensor:
        out = F.relu(self.norm(self.blocks(self.stem(x))))
        return out.mean(dim=(2, 3))

    def named_layers(self) -> list[tuple[str, nn.Module]]:
        return [(name, m) for name, m in self.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]

    def forward(self, x: Tensor) -> Tensor:
        return self.prediction(self.penultimate(x))
