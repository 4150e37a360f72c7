import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from lightning_privacy.metrics.roc import roc_metrics, threshold_accuracy


def _random(n: int, seed: int, shift: float = 0.5):
    g = torch.Generator().manual_seed(seed)
    is_member = torch.rand(n, generator=g) < 0.4
    scores = torch.randn(n, generator=g) + shift * is_member
    return scores, is_member


@pytest.mark.parametrize("seed", range(5))
def test_auc_and_tpr_match_sklearn(seed):
    scores, is_member = _random(3000, seed)
    scores = torch.round(scores * 20) / 20  # ties
    m = roc_metrics(scores, is_member)
    # torchmetrics integrates the ROC in float32
    assert m["auc"] == pytest.approx(roc_auc_score(is_member.numpy(), scores.numpy()), abs=1e-6)
    fpr, tpr, _ = roc_curve(is_member.numpy(), scores.numpy(), drop_intermediate=False)
    for f in (0.001, 0.01):
        assert m[f"tpr_at_fpr_{f:g}"] == pytest.approx(tpr[fpr <= f].max(), abs=1e-6)
    assert m["advantage"] == pytest.approx(np.max(tpr - fpr), abs=1e-6)


def test_separable_scores_give_auc_one():
    is_member = torch.tensor([1] * 50 + [0] * 50).bool()
    m = roc_metrics(is_member.float() * 3 + torch.linspace(0, 1, 100), is_member)
    assert m["auc"] == 1.0 and m["tpr_at_fpr_0.001"] == 1.0 and m["acc"] == 1.0


def test_identical_distributions_give_chance():
    n = 4000
    scores, is_member = _random(n, 7, shift=0.0)
    m = roc_metrics(scores, is_member)
    n1, n0 = int(is_member.sum()), int((~is_member).sum())
    se = math.sqrt((n1 + n0 + 1) / (12 * n1 * n0))  # AUC's std under H0
    assert abs(m["auc"] - 0.5) < 4 * se
    assert abs(m["acc"] - 0.5) < 0.05


def test_extreme_scores_are_not_merged_into_ties():
    is_member = torch.tensor([1, 1, 0, 0]).bool()
    assert roc_metrics(torch.tensor([-400.0, -300.0, -500.0, -600.0]), is_member)["auc"] == 1.0
    assert roc_metrics(torch.tensor([900.0, 800.0, 700.0, 600.0]), is_member)["auc"] == 1.0


def test_threshold_accuracy_is_held_out():
    # Pure noise: a threshold fitted on the scored labels would look better than chance; held out it is not.
    scores, is_member = _random(200, 3, shift=0.0)
    accs = [threshold_accuracy(scores, is_member, seed=s) for s in range(20)]
    assert abs(sum(accs) / len(accs) - 0.5) < 0.05


def test_bad_input():
    with pytest.raises(ValueError, match="one member and one non-member"):
        roc_metrics(torch.randn(5), torch.ones(5).bool())
    with pytest.raises(ValueError, match="NaN"):
        roc_metrics(torch.tensor([0.0, float("nan")]), torch.tensor([True, False]))
    with pytest.raises(ValueError, match="aligned"):
        roc_metrics(torch.randn(4), torch.ones(3).bool())


def test_bootstrap_interval_covers_the_estimate_and_shrinks_with_data():
    from lightning_privacy.metrics.roc import bootstrap_ci

    small = bootstrap_ci(*_random(400, 1), n=100, seed=0)
    large = bootstrap_ci(*_random(8000, 1), n=100, seed=0)
    auc = roc_metrics(*_random(8000, 1))["auc"]
    assert large["auc_ci95_low"] <= auc <= large["auc_ci95_high"]
    assert (large["auc_ci95_high"] - large["auc_ci95_low"]) < (small["auc_ci95_high"] - small["auc_ci95_low"]) / 2
    assert large["tpr_at_fpr_0.001_ci95_low"] <= large["tpr_at_fpr_0.001_ci95_high"]


def test_given_threshold_is_used_for_accuracy():
    is_member = torch.tensor([1, 1, 0, 0]).bool()
    scores = torch.tensor([0.9, 0.6, 0.4, 0.1])
    assert roc_metrics(scores, is_member, threshold=0.5)["acc"] == 1.0
    assert roc_metrics(scores, is_member, threshold=0.95)["acc"] == 0.5


def test_realized_fpr_is_recorded_for_each_low_fpr_figure():
    """Ties put every non-member at one score with half the members: the only ROC points are FPR 0 and 1, so the
    TPR at 1 % FPR is read at a realised FPR of 0."""
    scores = torch.tensor([2.0] * 50 + [1.0] * 50 + [1.0] * 100, dtype=torch.float64)
    is_member = torch.tensor([True] * 100 + [False] * 100)
    m = roc_metrics(scores, is_member, fprs=(0.01,))
    assert m["tpr_at_fpr_0.01"] == 0.5 and m["tpr_at_fpr_0.01_realized_fpr"] == 0.0
    from lightning_privacy.metrics.roc import roc_curve as roc_points

    fpr, tpr, thresholds = roc_points(scores, is_member)
    assert fpr.tolist() == [0.0, 0.0, 1.0] and tpr.tolist() == [0.0, 0.5, 1.0]
    assert thresholds.tolist() == [float("inf"), 2.0, 1.0]


def _bootstrap_reference(scores, is_member, *, n, seed, fpr=0.001):
    """The former loop: each resample's ROC and AUC from torchmetrics, with the same draws."""
    from torchmetrics.functional.classification import binary_auroc, binary_roc

    from lightning_privacy.metrics.roc import _as_ranks, tpr_at_fpr

    target = is_member.long()
    g = torch.Generator().manual_seed(seed)
    pos, neg = torch.nonzero(target == 1).flatten(), torch.nonzero(target == 0).flatten()
    preds = _as_ranks(scores)
    aucs, tprs = [], []
    for _ in range(n):
        idx = torch.cat([pos[torch.randint(pos.numel(), (pos.numel(),), generator=g)],
                         neg[torch.randint(neg.numel(), (neg.numel(),), generator=g)]])
        f, tp, _ = binary_roc(preds[idx], target[idx])
        aucs.append(float(binary_auroc(preds[idx], target[idx])))
        tprs.append(tpr_at_fpr(f.double(), tp.double(), fpr))
    q = torch.tensor([0.025, 0.975], dtype=torch.float64)
    return (torch.quantile(torch.tensor(aucs, dtype=torch.float64), q),
            torch.quantile(torch.tensor(tprs, dtype=torch.float64), q))


@pytest.mark.parametrize("ties", [False, True])
def test_bootstrap_matches_torchmetrics_on_every_resample(ties):
    """The counting bootstrap (one bincount per resample, no sort) gives torchmetrics' intervals, ties included."""
    from lightning_privacy.metrics.roc import bootstrap_ci

    scores, is_member = _random(3000, 7)
    if ties:
        scores = (scores * 4).round()  # a handful of distinct scores shared by members and non-members
    calls = []
    ci = bootstrap_ci(scores, is_member, n=40, seed=3, fpr=0.01, advance=lambda: calls.append(1))
    auc, tpr = _bootstrap_reference(scores, is_member, n=40, seed=3, fpr=0.01)
    assert (ci["auc_ci95_low"], ci["auc_ci95_high"]) == pytest.approx((float(auc[0]), float(auc[1])), abs=1e-6)
    assert (ci["tpr_at_fpr_0.01_ci95_low"], ci["tpr_at_fpr_0.01_ci95_high"]) == pytest.approx(
        (float(tpr[0]), float(tpr[1])), abs=1e-6)
    assert len(calls) == 40
