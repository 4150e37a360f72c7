"""What an attack learns from: per-sample signals (``lightning_privacy.signals.Signals``) of the target and of
shadow/reference models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from lightning_privacy.signals.base import Signals

__all__ = ["AttackData", "ShadowSignals", "Signals"]


@dataclass(frozen=True)
class ShadowSignals:
    """Signals of a shadow/reference model on some samples, with which of them it trained on."""

    signals: Signals
    in_mask: Tensor

    def __post_init__(self) -> None:
        if self.in_mask.shape != (len(self.signals),) or self.in_mask.dtype != torch.bool:
            raise ValueError("in_mask must be a bool tensor with one entry per sample")


@dataclass(frozen=True)
class AttackData:
    """Everything an attack may learn from, besides the target's own signals.

    ``shadows``: offline models, each trained on a random half of the shadow pool: their signals on the
    shadow pool, ``in_mask`` = trained on it. ``shadows_on_audit``: the same models' signals on the audit
    samples (members ∪ non-members), none of which they trained on (offline LiRA).
    ``references``: online models, each trained on a random half of the audit population (members ∪
    non-members ∪ reference pool): signals on the audit samples and the population samples, with in_mask.
    ``population``: the target model's signals on the population samples (the reference pool), for RMIA.
    All signals carry ``index`` (pool indices): the same sample is found across models by it.
    """

    shadows: Sequence[ShadowSignals] = ()
    shadows_on_audit: Sequence[Signals] = ()
    references: Sequence[ShadowSignals] = ()
    population: Optional[Signals] = None
