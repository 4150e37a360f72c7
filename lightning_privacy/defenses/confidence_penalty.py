"""Confidence penalty (RelaxLoss paper's baseline, Chen, Yu & Fritz, ICLR 2022, App. B.5 Eq. 15-16)."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor

from lightning_privacy.defenses.base import ClassifierDefense
from lightning_privacy.errors import UserInputError


def entropy(logits: Tensor) -> Tensor:
    """Eq. 16 per sample: H(p) = -sum_c p_c log p_c."""
    log_p = logits.log_softmax(-1)
    return -(log_p.exp() * log_p).sum(-1)


class ConfidencePenalty(ClassifierDefense):
    """Chen, Yu & Fritz (ICLR 2022) Eq. 15: L = CE - beta * H(p) (Pereyra et al., 2017)."""

    key_hparams = ("beta",)

    def __init__(
        self,
        beta: float = 1.0,
        **kwargs: Any,
    ) -> None:
        if beta < 0:
            raise UserInputError(f"beta must be >= 0; got {beta} (the paper sweeps 0.1 to 8)")
        super().__init__(**kwargs)

    def objective(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits, y, reduction="none") - self.hparams.beta * entropy(logits)
