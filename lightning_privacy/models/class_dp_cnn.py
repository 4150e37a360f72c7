"""The class-DP paper's CNN: two convolution layers followed by two fully connected layers."""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn


class ClassDPCNN(nn.Module):
    """Zhang et al., *Broadening Differential Privacy for Deep Learning Against Model Inversion Attacks*, Sec. 6:
    "A convolutional neural network (CNN) with two convolution layers followed by two fully connected layers".

    The paper gives no widths. Chosen here: conv 5×5 with 32 then 64 channels (padding 2), each followed by ReLU
    and 2×2 max-pooling, a dense layer of 128 units with ReLU, and the prediction layer: the classic MNIST CNN
    layout (TensorFlow's Deep MNIST tutorial's 32-64 5×5 convolutions) with the dense width of this project's
    other CNN. No normalization layer, so DP-SGD needs no replacement. ``dropout`` (Reg) goes after each conv
    stage and after the dense layer.
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        num_classes: int = 10,
        channels: Sequence[int] = (32, 64),
        kernel_size: int = 5,
        hidden: int = 128,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(input_shape) != 3 or min(input_shape) < 1:
            raise ValueError(f"input_shape must be (C, H, W) with positive sizes; got {tuple(input_shape)}")
        if len(channels) != 2 or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"need two conv widths and an odd kernel_size; got {list(channels)}, {kernel_size}")
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
