"""Dropout on the last layer's input only (RelaxLoss paper's baseline, Chen, Yu & Fritz, ICLR 2022, App. B.5)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from lightning_privacy.defenses.base import ClassifierDefense
from lightning_privacy.errors import UserInputError


class LastLayerDropout(ClassifierDefense):
    """Chen, Yu & Fritz (ICLR 2022) App. B.5 "Dropout": dropout with ``rate`` before the last fully connected layer.

    ``forward`` is ``last_layer(dropout(penultimate(x)))`` through the network protocol, so it works with any
    network and checkpoints keep the ERM key names. ``dropout`` (the base's dropout everywhere) stays 0 by default.
    """

    key_hparams = ("rate",)

    def __init__(
        self,
        rate: float = 0.5,
        **kwargs: Any,
    ) -> None:
        if not 0.0 < rate < 1.0:
            raise UserInputError(f"rate must be in (0, 1); got {rate} (the paper sweeps 0.1 to 0.9)")
        super().__init__(**kwargs)
        self.last_layer_dropout = nn.Dropout(rate)

    def forward(self, x: Tensor) -> Tensor:
        return self.last_layer(self.last_layer_dropout(self.penultimate(x)))
