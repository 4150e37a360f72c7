"""The class-DP paper's CNN: two convolution layers followed by two fully connected layers."""

from __future__ import annotations

from typing import Sequence

from lightning_privacy.models.cnn import PaperCNN


class ClassDPCNN(PaperCNN):
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
        if len(channels) != 2:
            raise ValueError(f"need two conv widths; got {list(channels)}")
        super().__init__(input_shape, num_classes, channels, hidden, dropout, kernel_size)
