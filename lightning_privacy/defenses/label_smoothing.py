"""Label smoothing (RelaxLoss paper's baseline, Chen, Yu & Fritz, ICLR 2022, App. B.5 Eq. 14)."""

from __future__ import annotations

import math
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from lightning_privacy.defenses.base import ClassifierDefense
from lightning_privacy.errors import UserInputError


def kl_uniform_to_predictions(logits: Tensor) -> Tensor:
    """Per sample, D_KL(U || p) = sum_c (1/C) (log(1/C) - log p_c)."""
    num_classes = logits.shape[-1]
    return -math.log(num_classes) - logits.log_softmax(-1).mean(-1)


class LabelSmoothing(ClassifierDefense):
    """Chen, Yu & Fritz (ICLR 2022) Eq. 14: L = s * D_KL(U || p) + (1 - s) * CE, with s = ``smoothing``."""

    key_hparams = ("smoothing",)

    def __init__(self, smoothing: float = 0.1, **kwargs: Any) -> None:
        """``kwargs``: the architecture and optimizer arguments of ClassifierDefense."""
        if not 0.0 <= smoothing < 1.0:
            raise UserInputError(f"smoothing must be in [0, 1); got {smoothing} (1 would ignore the labels)")
        super().__init__(**kwargs)

    def objective(self, logits: Tensor, y: Tensor) -> Tensor:
        s = self.hparams.smoothing
        return s * kl_uniform_to_predictions(logits) + (1.0 - s) * F.cross_entropy(logits, y, reduction="none")
