"""One-run empirical ε audit (Steinke, Nasr & Jagielski, NeurIPS 2023): canaries in or out of training by a fair
coin, an attack guesses for its most confident ones, the guesses' accuracy bounds ε from below."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from lightning_privacy.attacks.membership import ATTACKS
from lightning_privacy.callbacks.audit import AuditCallback
from lightning_privacy.results import AuditResult
from lightning_privacy.signals.outputs import collect_signals
from lightning_privacy.errors import UserInputError
from lightning_privacy.metrics.epsilon_audit import canary_guesses, draw_canary_inclusion, epsilon_lower_bound

SCORE_ONLY = ("loss", "confidence", "entropy", "m_entropy")
"""Attacks that score a model's outputs with nothing trained: what a one-run audit can use."""


@dataclass
class EpsilonAuditConfig:
    """``audit.epsilon`` settings.

    canaries: how many members are canaries (a count, or a fraction of the members); each is trained on with
    probability ½ (the others are held out of training). guesses: the fraction of canaries guessed, half as IN
    (highest scores) and half as OUT (lowest); attack: a score-only attack (``loss``, ``confidence``,
    ``entropy``, ``m_entropy``); delta: the δ of the tested hypothesis (null: the defense's dp.delta, 0 without
    DP); confidence: of the lower bound.
    """

    canaries: Union[int, float] = 0.5
    guesses: float = 0.2
    attack: str = "loss"
    delta: Optional[float] = None
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.canaries, float) and not 0.0 < self.canaries <= 1.0:
            raise UserInputError(f"audit.epsilon.canaries as a fraction must be in (0, 1]; got {self.canaries}")
        if isinstance(self.canaries, int) and self.canaries < 2:
            raise UserInputError(f"audit.epsilon.canaries must be >= 2; got {self.canaries}")
        if not 0.0 < self.guesses <= 1.0:
            raise UserInputError(f"audit.epsilon.guesses (fraction of canaries guessed) must be in (0, 1]; got {self.guesses}")
        if self.attack not in SCORE_ONLY:
            raise UserInputError(f"audit.epsilon.attack must be one of {list(SCORE_ONLY)} (nothing trained); "
                                 f"got {self.attack!r}")
        if self.delta is not None and not 0.0 <= self.delta < 1.0:
            raise UserInputError(f"audit.epsilon.delta must be in [0, 1); got {self.delta}")
        if not 0.0 < self.confidence < 1.0:
            raise UserInputError(f"audit.epsilon.confidence must be in (0, 1); got {self.confidence}")


class EpsilonAudit(AuditCallback):
    """At fit setup, draws the canaries among the members and holds the OUT ones back from training; after the
    test run, emits an ``AuditResult`` (``name="epsilon"``) with ``dp/epsilon_lb``, ``dp/audit_canaries``,
    ``dp/audit_guesses``, ``dp/audit_correct`` and the canaries as artifacts."""

    def __init__(self, config: Optional[EpsilonAuditConfig] = None) -> None:
        super().__init__()
        self.config = config or EpsilonAuditConfig()
        self.canaries: Optional[Tensor] = None
        self.included: Optional[Tensor] = None
        self.result: dict[str, float] = {}

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        dm, c = trainer.datamodule, self.config
        if dm is None or not hasattr(dm, "exclude_from_training"):
            raise UserInputError("the ε audit needs a PrivacyDataModule (it holds canaries out of the members)")
        members = dm.role_indices("members")
        m = c.canaries if isinstance(c.canaries, int) else int(round(c.canaries * members.numel()))
        if not 2 <= m <= members.numel():
            raise UserInputError(f"audit.epsilon.canaries resolves to {m} of {members.numel()} members: "
                                 "needs 2 to all of them")
        g = torch.Generator().manual_seed(c.seed)
        self.canaries = members[torch.randperm(members.numel(), generator=g)[:m]]
        self.included = draw_canary_inclusion(m=m, seed=c.seed)
        dm.exclude_from_training(self.canaries[~self.included])

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.canaries is None:
            rank_zero_warn("the ε audit runs in `fit` only (it decides which canaries train); skipped")
            return
        if not trainer.is_global_zero:
            return
        c, dm = self.config, trainer.datamodule
        signals = collect_signals(pl_module, dm.index_dataloader(self.canaries), index=self.canaries)
        scores = ATTACKS[c.attack]().score(signals)
        m = self.canaries.numel()
        k = max(1, int(round(c.guesses * m / 2)))
        guesses, correct = canary_guesses(scores=scores, included=self.included, k_positive=k, k_negative=k)
        dp = getattr(pl_module, "dp", None)
        delta = c.delta if c.delta is not None else (dp.delta if dp is not None else 0.0)
        bound = epsilon_lower_bound(guesses=guesses, correct=correct, canaries=m, delta=delta, confidence=c.confidence)
        self.result = {"dp/epsilon_lb": bound, "dp/audit_canaries": float(m), "dp/audit_guesses": float(guesses),
                       "dp/audit_correct": float(correct), "dp/audit_included": float(self.included.sum())}
        tags = {"dp.audit_attack": c.attack, "dp.audit_delta": f"{delta:g}", "dp.audit_confidence": f"{c.confidence:g}"}
        canaries = io.BytesIO()
        np.savez(canaries, index=self.canaries.numpy(), included=self.included.numpy(), scores=scores.numpy())
        artifacts = {"audit/canaries.npz": canaries.getvalue(),
                     "audit/epsilon_audit.json": json.dumps({**self.result, "attack": c.attack, "delta": delta},
                                                            indent=2)}
        self.emit(trainer, AuditResult(name="epsilon", metrics=dict(self.result), tags=tags, artifacts=artifacts,
                                       summary=("dp/epsilon_lb",)))
