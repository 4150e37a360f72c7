"""RMIA (Zarifzadeh et al. 2024) on synthetic signals with planted memorization: no model training."""

from __future__ import annotations


import pytest
import torch

from lightning_privacy.attacks.membership.rmia import RMIA
from lightning_privacy.attacks.membership.signals import AttackData, ShadowSignals, Signals
from tests.attacks.planted import null_tolerance, N_AUDIT, planted, tpr
from lightning_privacy.models.predict import stable_cross_entropy
from lightning_privacy.errors import UserInputError
from lightning_privacy.metrics.roc import roc_metrics

@pytest.mark.parametrize("kwargs", [{}, {"offline_a": 0.3}, {"gamma": 2.0}])
def test_rmia_beats_loss_attack_on_planted_memorization(problem, loss_metrics, kwargs):
    data, target, is_member = problem
    attack = RMIA(**kwargs)
    attack.fit(data)
    scores = attack.score(target)
    assert scores.dtype == torch.float64 and scores.shape == (N_AUDIT,)
    assert bool(((scores >= 0) & (scores <= 1)).all())
    m = roc_metrics(scores, is_member)
    print(f"\nrmia {kwargs}: tpr@0.1%={tpr(m):.4f} auc={m['auc']:.4f}  "
          f"loss: tpr@0.1%={tpr(loss_metrics):.4f} auc={loss_metrics['auc']:.4f}")
    assert tpr(m) >= 3 * tpr(loss_metrics) and tpr(m) >= tpr(loss_metrics) + 0.05
    assert m["auc"] > loss_metrics["auc"]


def test_score_is_fraction_of_population_dominated():
    """Tiny hand-checked case: score(x) = |{z : ratio(x)/ratio(z) ≥ γ}| / |Z|."""
    def sig(p: list[float], index: list[int]) -> Signals:
        p_t = torch.tensor(p, dtype=torch.float64)
        logits = torch.stack([torch.log(p_t), torch.log1p(-p_t)], 1)
        labels = torch.zeros(len(p), dtype=torch.long)
        return Signals(logits=logits, labels=labels, losses=stable_cross_entropy(logits, labels),
                       index=torch.tensor(index))

    ids = [0, 1, 2, 3, 4]  # 0, 1 audit; 2, 3, 4 population
    refs = [ShadowSignals(sig([0.5] * 5, ids), torch.zeros(5, dtype=torch.bool)) for _ in range(2)]
    population = sig([0.2, 0.4, 0.8], [2, 3, 4])          # ratios 0.4, 0.8, 1.6
    target = sig([0.45, 0.9], [0, 1])                       # ratios 0.9, 1.8
    def fraction(scores):  # the dominated fraction, under the tie-break (score = (count + t) / (|Z| + 1))
        return torch.floor(scores * 4) / 3

    attack = RMIA()
    attack.fit(AttackData(references=refs, population=population))
    torch.testing.assert_close(fraction(attack.score(target)), torch.tensor([2 / 3, 1.0], dtype=torch.float64))
    attack = RMIA(gamma=2.0)                                # ratio(z) ≤ ratio(x)/2 = 0.45, 0.9: {0.4}, {0.4, 0.8}
    attack.fit(AttackData(references=refs, population=population))
    torch.testing.assert_close(fraction(attack.score(target)), torch.tensor([1 / 3, 2 / 3], dtype=torch.float64))
    attack = RMIA(offline_a=0.5)                            # Pr = ½(1.5·0.5 + 0.5) = 0.625 everywhere: same order
    attack.fit(AttackData(references=refs, population=population))
    torch.testing.assert_close(fraction(attack.score(target)), torch.tensor([2 / 3, 1.0], dtype=torch.float64))


@pytest.mark.parametrize("num_models", [0, 1])
def test_fewer_than_two_references_is_a_user_error(num_models):
    data, _, _ = planted(num_references=num_models)
    with pytest.raises(UserInputError, match=f"rmia needs at least 2 reference models; got {num_models}"):
        RMIA().fit(data)


def test_missing_population_is_a_user_error(problem):
    data, _, _ = problem
    with pytest.raises(UserInputError, match="population"):
        RMIA().fit(AttackData(references=data.references))


@pytest.mark.parametrize("kwargs", [{"gamma": 0.0}, {"offline_a": 1.5}])
def test_bad_hyperparameters_are_user_errors(kwargs):
    with pytest.raises(UserInputError):
        RMIA(**kwargs)


def test_confident_wrong_predictions_stay_finite():
    logits = torch.tensor([[-800.0, 800.0], [800.0, -800.0]])
    labels = torch.zeros(2, dtype=torch.long)
    s = Signals(logits=logits, labels=labels, losses=stable_cross_entropy(logits, labels), index=torch.tensor([0, 1]))
    refs = [ShadowSignals(s, torch.tensor([True, False])), ShadowSignals(s, torch.tensor([False, True]))]
    attack = RMIA(offline_a=0.2)
    attack.fit(AttackData(references=refs, population=s))
    assert bool(torch.isfinite(attack.score(s)).all())


def test_no_signal_gives_chance_auc():
    data, target, is_member = planted(shift=0.0, seed=5)
    attack = RMIA()
    attack.fit(data)
    auc = roc_metrics(attack.score(target), is_member)["auc"]
    assert abs(auc - 0.5) < null_tolerance(is_member)


def test_ties_in_the_dominated_fraction_are_broken_by_the_likelihood_ratio():
    """Two population samples: every target sample dominates 0, 1 or 2 of them, so without a tie-break the 0.1 %
    FPR point lands at a realised FPR of 0. Within a count the order follows the ratio; across counts the count."""
    from lightning_privacy.metrics.roc import roc_metrics
    from tests.attacks.planted import signals_from_phi

    n = 400
    index = torch.arange(n + 2)
    phi = torch.linspace(-3, 3, n + 2, dtype=torch.float64)
    refs = [ShadowSignals(signals_from_phi(torch.zeros(n + 2, dtype=torch.float64), index),
                          torch.zeros(n + 2, dtype=torch.bool)) for _ in range(2)]
    population = signals_from_phi(torch.tensor([-1.0, 1.0], dtype=torch.float64), torch.tensor([n, n + 1]))
    attack = RMIA()
    attack.fit(AttackData(references=refs, population=population))
    scores = attack.score(signals_from_phi(phi[:n], index[:n]))
    assert torch.unique(scores).numel() == n  # no ties
    assert bool((scores[1:] > scores[:-1]).all())  # increasing in the ratio, across and within counts
    is_member = torch.arange(n) >= n // 2
    m = roc_metrics(scores, is_member, fprs=(0.01,))
    assert m["tpr_at_fpr_0.01"] == 1.0 and m["tpr_at_fpr_0.01_realized_fpr"] == 0.0
