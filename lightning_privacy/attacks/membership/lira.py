"""The Likelihood Ratio Attack (Carlini et al., "Membership Inference Attacks From First Principles", S&P 2022)."""

from __future__ import annotations

from typing import Literal, Optional, Sequence

import torch
from torch import Tensor

from lightning_privacy.attacks.membership.base import MembershipAttack
from lightning_privacy.attacks.membership.signals import AttackData, Signals
from lightning_privacy.errors import UserInputError

_MIN_STD = 1e-12
Variance = Literal["fixed", "fixed_in_out", "per_example"]
"""``fixed``: one σ for IN and OUT, pooled over all residuals (Carlini et al.'s fixed-variance test, the default);
``fixed_in_out``: two pooled σ, σ_in ≠ σ_out (the score is then quadratic in φ and need not be monotone);
``per_example``: each sample's own σ_in, σ_out (the pooled σ where a side has fewer than 2 models)."""


def _variance(variance: Variance, fixed_variance: Optional[bool]) -> Variance:
    """``fixed_variance`` (the older flag) maps True to ``fixed`` and False to ``per_example``."""
    if fixed_variance is not None:
        variance = "fixed" if fixed_variance else "per_example"
    if variance not in ("fixed", "fixed_in_out", "per_example"):
        raise UserInputError(f"LiRA variance must be 'fixed', 'fixed_in_out' or 'per_example'; got {variance!r}")
    return variance


def scaled_confidence(signals: Signals) -> Tensor:
    """Carlini et al. (logit scaling): φ = log(p_y / (1 − p_y)) = z_y − logsumexp_{j≠y} z_j, in float64.

    Computed from logits, it stays finite and exact where p_y rounds to 1."""
    z = signals.logits.double()
    if z.shape[1] < 2:
        raise ValueError("scaled confidence needs at least 2 classes")
    labels = signals.labels.long()[:, None]
    z_y = z.gather(1, labels).squeeze(1)
    others = z.scatter(1, labels, float("-inf"))
    return z_y - torch.logsumexp(others, dim=1)


def _require_models(attack: str, got: int, kind: str, setting: str) -> None:
    if got < 2:
        raise UserInputError(f"{attack} needs at least 2 {kind} models; got {got}: set {setting} ≥ 2")


def _target_index(attack: str, target: Signals) -> Tensor:
    if target.index is None:
        raise ValueError(f"{attack} matches target samples to reference models by index; the target signals carry none")
    return target.index


def _positions(attack: str, models: Sequence[Signals], index: Tensor) -> list[Tensor]:
    """Where each model's signals hold the samples ``index``."""
    out = []
    for k, s in enumerate(models):
        try:
            out.append(s.positions_of(index))
        except ValueError as e:
            raise ValueError(f"{attack}: model {k} has no signals on some target samples ({e})") from e
    return out


def _gather(models: Sequence[Signals], positions: Sequence[Tensor]) -> Tensor:
    """φ of each model at its positions: (models, samples)."""
    return torch.stack([scaled_confidence(s)[pos] for s, pos in zip(models, positions)])


class _Fit:
    """Per-sample Gaussian moments of ``phi`` (models, n) over the models where ``mask``."""

    def __init__(self, phi: Tensor, mask: Tensor) -> None:
        m = mask.double()
        self.count = m.sum(0)
        self.has = self.count > 0
        self.mean = (phi * m).sum(0) / self.count.clamp_min(1)
        self.sq = ((phi - self.mean) ** 2 * m).sum(0)

    @property
    def dof(self) -> float:
        return float((self.count - 1).clamp_min(0).sum())

    def pooled_std(self) -> Optional[Tensor]:
        """One std for all samples, from the residuals about the per-sample means; None with no residual dof."""
        return torch.sqrt(self.sq.sum() / self.dof).clamp_min(_MIN_STD) if self.dof > 0 else None


    def std(self, pooled: Tensor, fixed_variance: bool) -> Tensor:
        """``pooled`` everywhere (fixed variance), else the unbiased per-sample std (``pooled`` under 2 models)."""
        if fixed_variance:
            return pooled.expand_as(self.mean).clone()
        own = torch.sqrt(self.sq / (self.count - 1).clamp_min(1))
        return torch.where(self.count >= 2, own, pooled).clamp_min(_MIN_STD)


def _shared_std(a: _Fit, b: _Fit) -> Optional[Tensor]:
    """One std from the residuals of both fits (IN about μ_in, OUT about μ_out); None with no residual dof."""
    dof = a.dof + b.dof
    return torch.sqrt((a.sq.sum() + b.sq.sum()) / dof).clamp_min(_MIN_STD) if dof > 0 else None


def _one() -> Tensor:
    return torch.tensor(1.0, dtype=torch.float64)


def _gauss_logpdf(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """log N(x; mean, std²) up to the constant −½ log 2π (which cancels in a ratio)."""
    return -0.5 * ((x - mean) / std) ** 2 - torch.log(std)


class LiRAOnline(MembershipAttack):
    """Carlini et al. Alg. 1 (online): score = log N(φ; μ_in, σ_in²) − log N(φ; μ_out, σ_out²).

    ``variance="fixed"`` (default): σ_in = σ_out = one σ pooled over all residuals, so the score is linear and
    increasing in φ; ``fixed_in_out`` and ``per_example`` as in ``Variance``. The decision threshold is the
    constant 0 (likelihood ratio 1), learned from nothing."""

    name = "lira_online"
    min_models = 2
    needs = frozenset({"references"})
    threshold_source = "fixed"

    def __init__(self, *, variance: Variance = "fixed", fixed_variance: Optional[bool] = None) -> None:
        self.variance = _variance(variance, fixed_variance)
        self.fixed_variance = self.variance != "per_example"
        self.threshold: Optional[float] = 0.0
        self._models: list[Signals] = []
        self._in_masks: list[Tensor] = []

    def fit(self, data: AttackData) -> None:
        _require_models(self.name, len(data.references), "reference", "audit.membership.num_references")
        self._models = [r.signals for r in data.references]
        self._in_masks = [r.in_mask for r in data.references]

    def score(self, target: Signals) -> Tensor:
        if not self._models:
            raise RuntimeError(f"{self.name}: call fit() before score()")
        positions = _positions(self.name, self._models, _target_index(self.name, target))
        phi = _gather(self._models, positions)
        is_in = torch.stack([m[pos] for m, pos in zip(self._in_masks, positions)])
        fin, fout = _Fit(phi, is_in), _Fit(phi, ~is_in)
        both = fin.has & fout.has
        if not bool(both.any()):
            raise UserInputError(f"{self.name}: no target sample has both IN and OUT reference models; "
                                 "raise audit.membership.num_references")
        # Samples lacking IN (or OUT) models: shift the other side's mean by the average IN − OUT gap.
        shift = (fin.mean - fout.mean)[both].mean()
        mu_in = torch.where(fin.has, fin.mean, fout.mean + shift)
        mu_out = torch.where(fout.has, fout.mean, fin.mean - shift)
        # A side with no residual dof (e.g. each sample IN exactly once) borrows the other side's pooled std;
        # with neither, any common σ ranks the same.
        if self.variance == "fixed":
            shared = _shared_std(fin, fout)
            sd = (shared if shared is not None else _one()).expand_as(mu_in)
            x = scaled_confidence(target)
            return _gauss_logpdf(x, mu_in, sd) - _gauss_logpdf(x, mu_out, sd)
        p_in, p_out = fin.pooled_std(), fout.pooled_std()
        spare = p_in if p_in is not None else p_out if p_out is not None else _one()
        sd_in = fin.std(p_in if p_in is not None else spare, self.fixed_variance)
        sd_out = fout.std(p_out if p_out is not None else spare, self.fixed_variance)
        x = scaled_confidence(target)
        return _gauss_logpdf(x, mu_in, sd_in) - _gauss_logpdf(x, mu_out, sd_out)


class LiRAOffline(MembershipAttack):
    """Carlini et al. Alg. 1 (offline, one-sided): score = (φ − μ_out) / σ_out, monotone in log Φ of itself."""

    name = "lira_offline"
    min_models = 2
    needs = frozenset({"shadows"})

    def __init__(self, *, variance: Variance = "fixed", fixed_variance: Optional[bool] = None) -> None:
        self.variance = _variance(variance, fixed_variance)
        if self.variance == "fixed_in_out":
            raise UserInputError("lira_offline has OUT models only: variance 'fixed_in_out' does not apply; use "
                                 "'fixed' or 'per_example'")
        self.fixed_variance = self.variance != "per_example"
        self._models: list[Signals] = []

    def fit(self, data: AttackData) -> None:
        _require_models(self.name, len(data.shadows_on_audit), "shadow", "audit.membership.num_shadows")
        self._models = list(data.shadows_on_audit)

    def score(self, target: Signals) -> Tensor:
        if not self._models:
            raise RuntimeError(f"{self.name}: call fit() before score()")
        phi = _gather(self._models, _positions(self.name, self._models, _target_index(self.name, target)))
        fout = _Fit(phi, torch.ones_like(phi, dtype=torch.bool))
        pooled = fout.pooled_std()  # never None: ≥ 2 models, all OUT
        sd_out = fout.std(pooled if pooled is not None else _one(), self.fixed_variance)
        return (scaled_confidence(target) - fout.mean) / sd_out
