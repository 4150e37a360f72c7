"""The attack seam: an attack learns from AttackData and scores target signals, higher = more likely member."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Optional, Sequence

import torch
from torch import Tensor

from lightning_privacy.attacks.membership.signals import AttackData, ShadowSignals, Signals
from lightning_privacy.errors import UserInputError

NEEDS = frozenset({"shadows", "references", "population", "grad_norms"})


def pooled_in_mask(name: str, shadows: Sequence[ShadowSignals]) -> Tensor:
    """The shadows' in_masks concatenated; raises unless they hold both members and non-members."""
    in_mask = torch.cat([s.in_mask for s in shadows])
    if bool(in_mask.all()) or not bool(in_mask.any()):
        raise UserInputError(f"attack '{name}': the shadow models' in_mask is all {bool(in_mask[0])}; "
                             "fitting needs both members and non-members")
    return in_mask


class MembershipAttack(ABC):
    """``needs`` names what ``fit`` requires (a subset of NEEDS) and ``min_models`` how many shadow/reference
    models at least; the audit checks both before anything is trained.
    ``threshold``, when ``fit`` sets it, is a decision threshold on ``score`` learned without target labels."""

    name: ClassVar[str]
    blackbox: ClassVar[bool] = True
    needs: ClassVar[frozenset[str]] = frozenset()
    min_models: ClassVar[int] = 1
    threshold: Optional[float] = None
    threshold_source: ClassVar[str] = "shadow"
    """Where ``threshold`` (when set) comes from: ``shadow`` (fitted on shadow models) or ``fixed`` (a constant of
    the attack, learned from nothing)."""

    def fit(self, data: AttackData) -> None:
        """Learn from shadow/reference models; threshold-free scores need nothing."""

    @abstractmethod
    def score(self, target: Signals) -> Tensor:
        """One membership score per target sample (float64), higher = more likely a member."""
