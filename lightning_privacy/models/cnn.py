"""The papers' small CNN: three conv + max-pool stages, a dense layer, a prediction layer."""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn


class PaperCNN(nn.Module):
    """The target of the DP-vs-regularization paper (Fig. 1) and the DAP paper (Fig. 3).

    ``dropout`` follows the DP-vs-regularization paper (Sec. 3, "between every weighted layer, i.e., after each
    convolutional layer and before and after the first dense layer"): after each conv stage, the third of which
    is also the one before the dense layer, and after the dense layer (four dropouts, never two in a row).
    ``prediction`` is the last layer (its weights carry the Reg defense's L2 term).
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        num_classes: int = 10,
        channels: Sequence[int] = (32, 64, 128),
        hidden: int = 128,
        dropout: float = 0.0,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        if len(input_shape) != 3 or min(input_shape) < 1:
            raise ValueError(f"input_shape must be (C, H, W) with positive sizes; got {tuple(input_shape)}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same-size convolutions); got {kernel_size}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {dropout}")
        c, h, w = input_shape
        layers: list[nn.Module] = []
        for out in channels:
            layers += [nn.Conv2d(c, out, kernel_size, padding=kernel_size // 2), nn.ReLU(),
                       nn.MaxPool2d(2, ceil_mode=True)]
            if dropout:
                layers.append(nn.Dropout(dropout))
            c, h, w = out, -(-h // 2), -(-w // 2)
        self.features = nn.Sequential(*layers)
        dense: list[nn.Module] = [nn.Flatten(), nn.Linear(c * h * w, hidden), nn.ReLU()]
        if dropout:
            dense.append(nn.Dropout(dropout))
        self.dense = nn.Sequential(*dense)
        self.prediction = nn.Linear(hidden, num_classes)

    @property
    def last_layer(self) -> nn.Linear:
        return self.prediction

    def penultimate(self, x: Tensor) -> Tensor:
        return self.dense(self.features(x))

    def named_layers(self) -> list[tuple[str, nn.Module]]:
        return [(name, m) for name, m in self.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]

    def forward(self, x: Tensor) -> Tensor:
        return self.prediction(self.penultimate(x))
