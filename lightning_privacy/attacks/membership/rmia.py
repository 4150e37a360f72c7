"""RMIA (Zarifzadeh et al., "Low-Cost High-Power Membership Inference Attacks", ICML 2024)."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from lightning_privacy.attacks.membership.base import MembershipAttack
from lightning_privacy.attacks.membership.signals import AttackData, ShadowSignals, Signals
from lightning_privacy.errors import UserInputError

_MIN_LOG_PROB = math.log(1e-30)


def _log_true_prob(signals: Signals) -> Tensor:
    """log Pr(x|θ): log-softmax of the true label in float64, clamped at log 1e-30 (no division by zero)."""
    logp = torch.log_softmax(signals.logits.double(), dim=1)
    return logp.gather(1, signals.labels.long()[:, None]).squeeze(1).clamp_min(_MIN_LOG_PROB)


class RMIA(MembershipAttack):
    """Zarifzadeh et al.: score(x) = Pr_z[ (Pr(x|θ)/Pr(x)) / (Pr(z|θ)/Pr(z)) ≥ γ ], z over the population;
    Pr(x) = mean over reference models, or offline ½((1 + a)·mean_OUT + (1 − a)) (their offline approximation).

    The fraction takes |Z| + 1 values only, so samples that dominate as many z tie; ties are broken by x's own
    likelihood ratio: score = (count + ½ + atan(log ratio(x) − log γ)/π) / (|Z| + 1), which orders exactly as
    (count, ratio) and keeps count = ⌊score · (|Z| + 1)⌋."""

    name = "rmia"
    min_models = 2
    needs = frozenset({"references", "population"})

    def __init__(self, *, gamma: float = 1.0, offline_a: Optional[float] = None) -> None:
        if not gamma > 0:
            raise UserInputError(f"rmia: gamma must be > 0; got {gamma}")
        if offline_a is not None and not 0.0 <= offline_a <= 1.0:
            raise UserInputError(f"rmia: offline_a must be in [0, 1]; got {offline_a}")
        self.gamma = gamma
        self.offline_a = offline_a
        self._references: list[ShadowSignals] = []
        self._sorted_pop_log_ratio: Optional[Tensor] = None

    def fit(self, data: AttackData) -> None:
        got = len(data.references)
        if got < 2:
            raise UserInputError(f"{self.name} needs at least 2 reference models; got {got}: "
                                 "set audit.membership.num_references ≥ 2")
        if data.population is None or len(data.population) == 0:
            raise UserInputError(f"{self.name} needs the target model's signals on a population (reference pool) "
                                 "to compare against; the audit provided none: give the audit a reference pool")
        self._references = list(data.references)
        self._sorted_pop_log_ratio = torch.sort(self._log_ratio(data.population)).values

    def _log_pr_x(self, index: Tensor) -> Tensor:
        """log Pr(x) for the samples ``index``, averaged over the reference models (the denominator of the ratio)."""
        logp, is_in = [], []
        for k, ref in enumerate(self._references):
            try:
                pos = ref.signals.positions_of(index)
            except ValueError as e:
                raise ValueError(f"{self.name}: reference model {k} has no signals on some samples ({e})") from e
            logp.append(_log_true_prob(ref.signals)[pos])
            is_in.append(ref.in_mask[pos])
        lp, inside = torch.stack(logp), torch.stack(is_in)
        log_mean_all = torch.logsumexp(lp, 0) - math.log(lp.shape[0])
        if self.offline_a is None:
            return log_mean_all
        n_out = (~inside).sum(0)
        log_mean_out = torch.logsumexp(lp.masked_fill(inside, float("-inf")), 0) - torch.log(n_out.double())
        a = self.offline_a
        # ½((1 + a)·m + (1 − a)) in log space; a = 1 leaves the OUT mean itself.
        log_pr = log_mean_out + math.log((1 + a) / 2)
        if a < 1:
            log_pr = torch.logaddexp(log_pr, torch.tensor(math.log((1 - a) / 2), dtype=torch.float64))
        # A sample no reference left out: fall back to the plain mean over all references.
        return torch.where(n_out > 0, log_pr, log_mean_all)

    def _log_ratio(self, signals: Signals) -> Tensor:
        if signals.index is None:
            raise ValueError(f"{self.name} matches samples to reference models by index; these signals carry none")
        return _log_true_prob(signals) - self._log_pr_x(signals.index)

    def score(self, target: Signals) -> Tensor:
        if self._sorted_pop_log_ratio is None:
            raise RuntimeError(f"{self.name}: call fit() before score()")
        # ratio(x)/ratio(z) ≥ γ  ⇔  log ratio(z) ≤ log ratio(x) − log γ
        cut = self._log_ratio(target) - math.log(self.gamma)
        count = torch.searchsorted(self._sorted_pop_log_ratio, cut, right=True).double()
        tie_break = 0.5 + torch.atan(cut) / math.pi  # in (0, 1), increasing in the ratio
        return (count + tie_break) / (self._sorted_pop_log_ratio.numel() + 1)
