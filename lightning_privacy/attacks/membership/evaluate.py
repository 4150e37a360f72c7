"""Run membership attacks on the target's signals and measure them: per-attack ROC figures, where each
decision threshold comes from, and the best attack per metric. Tensors in, numbers out: no files, no loggers."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from torch import Tensor

from lightning_privacy.attacks.membership import ATTACKS, AttackData, MembershipAttack, Signals
from lightning_privacy.metrics.roc import bootstrap_ci, roc_metrics
from lightning_privacy.progress import bar

FPRS = (0.0, 0.001, 0.01)
"""TPR is reported at these FPRs for every audit; at ``LOW_FPR`` too when there are ``1 / LOW_FPR`` non-members."""
LOW_FPR = 1e-4
HELD_OUT = "held_out_half_audit_labels"
_DERIVED = ("_realized_fpr", "_ci95_low", "_ci95_high")


def threshold_protocol(attack: MembershipAttack) -> str:
    """Where the cut of ``acc`` comes from: ``shadow`` (fitted on shadow models), ``fixed`` (a constant of the
    attack, e.g. online LiRA's likelihood ratio 1), or ``held_out_half_audit_labels``: fitted on half of the
    audited samples' own membership labels and scored on the other half — a measure of separability, not an
    accuracy an attacker could reach."""
    return HELD_OUT if attack.threshold is None else attack.threshold_source


def best_over_attacks(results: Mapping[str, Mapping[str, float]],
                      prefix: str = "best") -> tuple[dict[str, float], dict[str, str]]:
    """``mia/<prefix>/<metric>``: for each metric separately, the best value over the attacks, with the tag
    ``mia.<prefix>_attack.<metric>`` naming the attack; a metric's realised FPR and interval come from that
    attack. ``mia.<prefix>_attack`` names the attack of the best AUC."""
    metrics: dict[str, float] = {}
    tags: dict[str, str] = {}
    keys = [k for k in next(iter(results.values())) if not k.endswith(_DERIVED)]
    for key in keys:
        attack = max((a for a in results if key in results[a]), key=lambda a: results[a][key])
        metrics[f"mia/{prefix}/{key}"] = results[attack][key]
        tags[f"mia.{prefix}_attack.{key}"] = attack
        for suffix in _DERIVED:
            if key + suffix in results[attack]:
                metrics[f"mia/{prefix}/{key}{suffix}"] = results[attack][key + suffix]
    tags[f"mia.{prefix}_attack"] = tags[f"mia.{prefix}_attack.auc"]
    return metrics, tags


@dataclass
class Evaluation:
    """Per attack: its figures (``results``), its per-sample ``scores`` and its threshold protocol; ``tags`` hold
    what was skipped and why; ``seconds``: the time of each phase (``attacks``, ``bootstrap``)."""

    results: dict[str, dict[str, float]] = field(default_factory=dict)
    scores: dict[str, Tensor] = field(default_factory=dict)
    protocols: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def evaluate_attacks(names: Sequence[str], data: AttackData, target: Signals, is_member: Tensor, *,
                     options: Mapping[str, Mapping[str, Any]] = {}, seed: int = 0,
                     bootstrap: int = 0) -> Evaluation:
    """Fit each attack on ``data``, score the target, and measure it against ``is_member``."""
    out = Evaluation()
    n_out = int((~is_member).sum())
    fprs = FPRS
    if n_out >= round(1 / LOW_FPR):
        fprs = tuple(sorted(FPRS + (LOW_FPR,)))
    else:
        out.tags[f"mia.tpr_at_fpr_{LOW_FPR:g}"] = (f"skipped: {n_out} non-members audited; TPR at {LOW_FPR:g} FPR "
                                                    f"needs at least {round(1 / LOW_FPR)}")
    start = time.perf_counter()
    with bar("membership attacks", total=len(names)) as attacks:
        for name in names:
            attack: MembershipAttack = ATTACKS[name](**options.get(name, {}))
            attack.fit(data)
            scores = attack.score(target).double()
            out.results[name] = roc_metrics(scores, is_member, fprs=fprs, seed=seed, threshold=attack.threshold)
            out.scores[name] = scores
            out.protocols[name] = threshold_protocol(attack)
            attacks.advance()
    out.seconds["attacks"] = time.perf_counter() - start
    if bootstrap:
        start = time.perf_counter()
        with bar(f"bootstrap ({bootstrap} resamples × {len(names)} attacks)", total=bootstrap * len(names)) as b:
            for name in names:
                out.results[name].update(bootstrap_ci(out.scores[name], is_member, n=bootstrap, seed=seed,
                                                      advance=b.advance))
        out.seconds["bootstrap"] = time.perf_counter() - start
    return out


__all__ = ["FPRS", "LOW_FPR", "Evaluation", "best_over_attacks", "evaluate_attacks", "threshold_protocol"]
