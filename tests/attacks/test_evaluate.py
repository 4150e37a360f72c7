"""Measuring attacks: TPR at 1e-4 FPR only with enough non-members, and the reason when skipped."""

import torch

from lightning_privacy.attacks.membership import AttackData
from lightning_privacy.attacks.membership.evaluate import evaluate_attacks


def test_tpr_at_1e4_fpr_needs_ten_thousand_nonmembers(problem):
    _, target, is_member = problem  # 10 000 members, 10 000 non-members
    full = evaluate_attacks(["loss"], AttackData(), target, is_member)
    assert int((~is_member).sum()) == 10_000
    assert {"tpr_at_fpr_0.0001", "tpr_at_fpr_0.0001_realized_fpr", "tpr_at_fpr_0"} <= set(full.results["loss"])
    assert "mia.tpr_at_fpr_0.0001" not in full.tags
    assert full.results["loss"]["tpr_at_fpr_0.0001_realized_fpr"] <= 1e-4
    keep = torch.ones_like(is_member)
    keep[torch.nonzero(~is_member)[-1]] = False  # one non-member fewer than 10⁴
    fewer = evaluate_attacks(["loss"], AttackData(), target.select(keep), is_member[keep])
    assert "tpr_at_fpr_0.0001" not in fewer.results["loss"]
    assert fewer.tags["mia.tpr_at_fpr_0.0001"] == ("skipped: 9999 non-members audited; TPR at 0.0001 FPR needs at "
                                                   "least 10000")
