"""GAN attack scores on the classifier attacks' scale: AUC and TPR at low FPR with bootstrap intervals
(``metrics/roc.py``)."""

from __future__ import annotations

from torch import Tensor

from lightning_privacy.metrics.roc import bootstrap_ci, roc_metrics
from lightning_privacy.progress import bar

MIN_NONMEMBERS_FOR_TPR = 1000
"""TPR at 0.1 % / 1 % FPR is reported only over at least this many non-member scores."""


def leakage_metrics(scores: Tensor, is_member: Tensor, *, bootstrap: int = 200, seed: int = 0) -> dict[str, float]:
    """``auc`` (+ ``auc_ci95_{low,high}`` when ``bootstrap`` > 0), and where there are at least 1000 non-member
    scores ``tpr_at_fpr_0.001``, ``tpr_at_fpr_0.01`` (with their realized FPRs and the 0.1 % interval)."""
    n_non = int((~is_member.bool()).sum())
    with_tpr = n_non >= MIN_NONMEMBERS_FOR_TPR
    full = roc_metrics(scores, is_member, fprs=(0.001, 0.01) if with_tpr else (), seed=seed)
    out = {k: v for k, v in full.items() if k == "auc" or k.startswith("tpr_at_fpr_")}
    if bootstrap > 0:
        with bar(f"bootstrap ({bootstrap} resamples)", total=bootstrap) as progress:
            ci = bootstrap_ci(scores, is_member, n=bootstrap, seed=seed, fpr=0.001, advance=progress.advance)
        out.update({k: v for k, v in ci.items() if k.startswith("auc") or with_tpr})
    return out
