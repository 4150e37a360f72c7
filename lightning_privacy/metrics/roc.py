"""Attack quality from membership scores: AUC, TPR at low FPR, advantage, held-out threshold accuracy."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import Tensor
from torchmetrics.functional.classification import binary_auroc


def _as_ranks(scores: Tensor) -> Tensor:
    """Dense ranks scaled into [0, 1]: the same ROC as the scores, without torchmetrics' sigmoid on
    out-of-range values (which would merge large scores into ties)."""
    _, inverse = torch.unique(scores.double(), sorted=True, return_inverse=True)
    return inverse.double() / max(1, int(inverse.max()))


def _check(scores: Tensor, is_member: Tensor) -> Tensor:
    if scores.ndim != 1 or scores.shape != is_member.shape:
        raise ValueError(f"scores and is_member must be 1-D and aligned; got {tuple(scores.shape)}, "
                         f"{tuple(is_member.shape)}")
    target = is_member.long()
    if not bool((target == 1).any() and (target == 0).any()):
        raise ValueError("need at least one member and one non-member to score an attack")
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("attack scores contain NaN or inf")
    return target


def tpr_at_fpr(fpr: Tensor, tpr: Tensor, target_fpr: float) -> float:
    """The highest TPR on the ROC whose FPR does not exceed ``target_fpr``."""
    return float(tpr[fpr <= target_fpr + 1e-12].max())


def realized_fpr(fpr: Tensor, tpr: Tensor, target_fpr: float) -> float:
    """The FPR actually reached where ``tpr_at_fpr`` reads its TPR (the lowest FPR with that TPR): with few
    non-members or tied scores it can lie far below ``target_fpr`` (e.g. 0)."""
    ok = fpr <= target_fpr + 1e-12
    best = tpr[ok].max()
    return float(fpr[ok & (tpr == best)].min())


def roc_curve(scores: Tensor, is_member: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The ROC of the decision ``score >= threshold``: (fpr, tpr, thresholds), float64, one point per distinct
    score from the highest down, after the point (0, 0) at threshold +inf."""
    target = _check(scores, is_member)
    order = torch.argsort(scores.double(), descending=True)
    s, t = scores.double()[order], target[order].double()
    group_end = torch.ones_like(s, dtype=torch.bool)
    group_end[:-1] = s[:-1] != s[1:]
    tps, fps = torch.cumsum(t, 0)[group_end], torch.cumsum(1 - t, 0)[group_end]
    zero = torch.zeros(1, dtype=torch.float64)
    fpr = torch.cat([zero, fps / (1 - t).sum()])
    tpr = torch.cat([zero, tps / t.sum()])
    thresholds = torch.cat([torch.full((1,), float("inf"), dtype=torch.float64), s[group_end]])
    return fpr, tpr, thresholds


def threshold_accuracy(scores: Tensor, is_member: Tensor, *, seed: int = 0) -> float:
    """Balanced accuracy of a threshold chosen on one half of the samples and scored on the other
    (and vice versa, averaged): the threshold never sees the labels it is scored on."""
    target = _check(scores, is_member)
    g = torch.Generator().manual_seed(seed)
    halves: list[list[Tensor]] = [[], []]
    for cls in (0, 1):
        idx = torch.nonzero(target == cls).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=g)]
        halves[0].append(idx[: idx.numel() // 2])
        halves[1].append(idx[idx.numel() // 2 :])
    accs = []
    for fit_half, eval_half in ((0, 1), (1, 0)):
        fit_idx, eval_idx = torch.cat(halves[fit_half]), torch.cat(halves[eval_half])
        if fit_idx.numel() == 0 or eval_idx.numel() == 0:
            continue
        cut = best_threshold(scores[fit_idx], target[fit_idx])
        accs.append(_balanced_accuracy(scores[eval_idx] >= cut, target[eval_idx]))
    return float(sum(accs) / len(accs)) if accs else 0.5


def _balanced_accuracy(pred: Tensor, target: Tensor) -> float:
    rates = [(pred[target == c] == bool(c)).double().mean() for c in (0, 1) if bool((target == c).any())]
    return float(sum(rates) / len(rates))


def best_threshold(scores: Tensor, target: Tensor) -> float:
    """A cut maximizing balanced accuracy (TPR - FPR) of ``score >= cut``, from one sort."""
    order = torch.argsort(scores, descending=True)
    s, t = scores[order], target[order].double()
    tpr = torch.cumsum(t, 0) / t.sum().clamp_min(1)
    fpr = torch.cumsum(1 - t, 0) / (1 - t).sum().clamp_min(1)
    group_end = torch.ones_like(s, dtype=torch.bool)
    group_end[:-1] = s[:-1] != s[1:]
    cuts = s[group_end]
    j = int(torch.argmax((tpr - fpr)[group_end]))
    # Midway to the next lower score: the widest margin on held-out samples.
    return float(cuts[j] if j + 1 == cuts.numel() else (cuts[j] + cuts[j + 1]) / 2)


def roc_metrics(scores: Tensor, is_member: Tensor, *, fprs: Sequence[float] = (0.001, 0.01),
                seed: int = 0, threshold: Optional[float] = None) -> dict[str, float]:
    """``auc``, ``acc`` (balanced; at ``threshold`` when given — it must not come from these labels — else a
    threshold fitted on a held-out half), ``tpr_at_fpr_<f>`` and ``tpr_at_fpr_<f>_realized_fpr`` (the FPR that
    TPR is read at) for each f, ``advantage`` (max TPR - FPR)."""
    target = _check(scores, is_member)
    preds = _as_ranks(scores)
    fpr, tpr, _ = roc_curve(scores, is_member)
    acc = (_balanced_accuracy(scores >= threshold, target) if threshold is not None
           else threshold_accuracy(scores, is_member, seed=seed))
    out = {"auc": float(binary_auroc(preds, target)), "acc": acc}
    for f in fprs:
        out[f"tpr_at_fpr_{f:g}"] = tpr_at_fpr(fpr, tpr, f)
        out[f"tpr_at_fpr_{f:g}_realized_fpr"] = realized_fpr(fpr, tpr, f)
    out["advantage"] = float((tpr - fpr).max())
    return out


def bootstrap_ci(scores: Tensor, is_member: Tensor, *, n: int = 200, seed: int = 0, fpr: float = 0.001,
                 level: float = 0.95, advance: Optional[Callable[[], object]] = None) -> dict[str, float]:
    """Percentile bootstrap intervals of AUC and TPR at ``fpr``, resampling members and non-members separately;
    ``advance`` (e.g. a progress bar's) is called after each resample.

    Each resample's ROC comes from counts per distinct score (no sort per resample): the members and non-members
    drawn at each score, accumulated from the highest score down, one ROC point per score drawn — the points of
    ``roc_curve`` on the resample; AUC is the trapezoidal area under them (ties count half)."""
    target = _check(scores, is_member)
    g = torch.Generator().manual_seed(seed)
    pos, neg = torch.nonzero(target == 1).flatten(), torch.nonzero(target == 0).flatten()
    _, value = torch.unique(scores.double(), sorted=True, return_inverse=True)
    top = int(value.max())
    # position of each sample's score from the highest down: counts per score then accumulate in ROC order
    rank_desc = top - value
    pos_rank, neg_rank = rank_desc[pos], rank_desc[neg]
    zero = torch.zeros(1, dtype=torch.float64)
    aucs, tprs = [], []
    for _ in range(n):
        in_pos = torch.bincount(pos_rank[torch.randint(pos.numel(), (pos.numel(),), generator=g)],
                                minlength=top + 1).double()
        in_neg = torch.bincount(neg_rank[torch.randint(neg.numel(), (neg.numel(),), generator=g)],
                                minlength=top + 1).double()
        drawn = (in_pos + in_neg) > 0
        tp = torch.cat([zero, torch.cumsum(in_pos, 0)[drawn] / pos.numel()])
        f = torch.cat([zero, torch.cumsum(in_neg, 0)[drawn] / neg.numel()])
        aucs.append(float(torch.trapezoid(tp, f)))
        tprs.append(tpr_at_fpr(f, tp, fpr))
        if advance is not None:
            advance()
    lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
    q = torch.tensor([lo, hi], dtype=torch.float64)
    a, b = torch.quantile(torch.tensor(aucs, dtype=torch.float64), q), torch.quantile(torch.tensor(tprs, dtype=torch.float64), q)
    return {"auc_ci95_low": float(a[0]), "auc_ci95_high": float(a[1]),
            f"tpr_at_fpr_{fpr:g}_ci95_low": float(b[0]), f"tpr_at_fpr_{fpr:g}_ci95_high": float(b[1])}
