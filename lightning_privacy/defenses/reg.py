"""Reg: dropout on intermediate layers + L2 on the prediction layer (DP-vs-regularization paper Sec. 3; DAP paper Sec. 4)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from lightning_privacy.defenses.base import ClassifierDefense
from lightning_privacy.errors import UserInputError


class Reg(ClassifierDefense):
    """Loss = CE + l2 * ||W_prediction||^2, with dropout between the weighted layers."""

    key_hparams = ("dropout", "l2")

    def __init__(
        self,
        dropout: float = 0.2,
        l2: float = 0.01,
        **kwargs: Any,
    ) -> None:
        if l2 < 0:
            raise UserInputError(f"l2 must be >= 0; got {l2}")
        super().__init__(dropout=dropout, **kwargs)

    def penalty(self) -> Tensor:
        return self.hparams.l2 * self.last_layer.weight.pow(2).sum()
