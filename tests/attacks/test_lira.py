"""LiRA (Carlini et al. 2022) on synthetic signals with planted memorization: no model training."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_privacy.attacks.membership.lira import LiRAOffline, LiRAOnline, scaled_confidence
from lightning_privacy.attacks.membership.signals import Signals
from tests.attacks.planted import null_tolerance, N_AUDIT, N_POP, planted, tpr
from lightning_privacy.models.predict import stable_cross_entropy
from lightning_privacy.errors import UserInputError
from lightning_privacy.metrics.roc import roc_metrics

@pytest.mark.parametrize("attack_cls", [LiRAOnline, LiRAOffline])
def test_lira_beats_loss_attack_on_planted_memorization(problem, loss_metrics, attack_cls):
    data, target, is_member = problem
    attack = attack_cls()
    attack.fit(data)
    scores = attack.score(target)
    assert scores.dtype == torch.float64 and scores.shape == (N_AUDIT,)
    m = roc_metrics(scores, is_member)
    print(f"\n{attack.name}: tpr@0.1%={tpr(m):.4f} auc={m['auc']:.4f}  "
          f"loss: tpr@0.1%={tpr(loss_metrics):.4f} auc={loss_metrics['auc']:.4f}")
    assert tpr(m) >= 3 * tpr(loss_metrics) and tpr(m) >= tpr(loss_metrics) + 0.05
    assert m["auc"] > loss_metrics["auc"]


def test_threshold_online_zero_offline_none(problem):
    data, target, is_member = problem
    online, offline = LiRAOnline(), LiRAOffline()
    online.fit(data)
    offline.fit(data)
    assert online.threshold == 0.0 and offline.threshold is None
    pred = online.score(target) > online.threshold
    balanced = 0.5 * (pred[is_member].double().mean() + (~pred[~is_member]).double().mean())
    assert balanced > 0.75


def test_scaled_confidence_matches_logit_of_probability():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(500, 5, generator=g, dtype=torch.float64) * 3
    labels = torch.randint(0, 5, (500,), generator=g)
    s = Signals(logits=logits, labels=labels, losses=stable_cross_entropy(logits, labels))
    p = torch.softmax(logits, 1).gather(1, labels[:, None]).squeeze(1)
    torch.testing.assert_close(scaled_confidence(s), torch.log(p / (1 - p)), rtol=1e-9, atol=1e-9)


def test_scaled_confidence_finite_for_confident_logits():
    logits = torch.tensor([[60.0, 0.0, 0.0], [0.0, 60.0, 0.0], [-60.0, 0.0, 0.0]])
    labels = torch.tensor([0, 1, 0])
    s = Signals(logits=logits, labels=labels, losses=stable_cross_entropy(logits, labels))
    phi = scaled_confidence(s)
    assert bool(torch.isfinite(phi).all())
    torch.testing.assert_close(phi, torch.tensor([60 - math.log(2), 60 - math.log(2), -60 - math.log(2)],
                                                 dtype=torch.float64))
    # float32 logits too: computed in float64
    assert scaled_confidence(s).dtype == torch.float64


@pytest.mark.parametrize("num_models", [0, 1])
def test_fewer_than_two_models_is_a_user_error(num_models):
    data, _, _ = planted(num_references=num_models, num_shadows=num_models)
    with pytest.raises(UserInputError, match=f"lira_online needs at least 2 reference models; got {num_models}"):
        LiRAOnline().fit(data)
    with pytest.raises(UserInputError, match=f"lira_offline needs at least 2 shadow models; got {num_models}"):
        LiRAOffline().fit(data)


@pytest.mark.parametrize("fixed_variance", [False, True])
def test_samples_without_in_or_out_models_get_finite_scores(loss_metrics, fixed_variance):
    n = N_AUDIT + N_POP
    g = torch.Generator().manual_seed(7)
    masks = [torch.rand(n, generator=g) < 0.5 for _ in range(16)]
    for k, mask in enumerate(masks):
        mask[:10] = False          # samples 0..9: never IN
        mask[10:20] = True         # samples 10..19: never OUT
        mask[20:30] = k == 0       # samples 20..29: IN exactly once
    data, target, is_member = planted(in_masks=masks, num_shadows=2, seed=3)
    attack = LiRAOnline(fixed_variance=fixed_variance)
    attack.fit(data)
    scores = attack.score(target)
    assert bool(torch.isfinite(scores).all())
    assert float((scores[:30] > 0).double().mean()) >= 0.8  # samples 0..29 are members
    m = roc_metrics(scores, is_member)
    assert m["auc"] > loss_metrics["auc"]
    assert tpr(m) >= 3 * tpr(loss_metrics) and tpr(m) >= tpr(loss_metrics) + 0.05


@pytest.mark.parametrize("fixed_variance", [False, True])
def test_two_complementary_references(loss_metrics, fixed_variance):
    """Each sample IN exactly once: no residual dof on either side, yet the attack works."""
    half = torch.rand(N_AUDIT + N_POP, generator=torch.Generator().manual_seed(8)) < 0.5
    data, target, is_member = planted(in_masks=[half, ~half], num_shadows=2, seed=4)
    attack = LiRAOnline(fixed_variance=fixed_variance)
    attack.fit(data)
    scores = attack.score(target)
    assert bool(torch.isfinite(scores).all())
    m = roc_metrics(scores, is_member)
    assert m["auc"] > loss_metrics["auc"] and tpr(m) >= tpr(loss_metrics) + 0.05


@pytest.mark.parametrize("attack_cls", [LiRAOnline, LiRAOffline])
def test_no_signal_gives_chance_auc(attack_cls):
    data, target, is_member = planted(shift=0.0, seed=5)
    attack = attack_cls()
    attack.fit(data)
    auc = roc_metrics(attack.score(target), is_member)["auc"]
    assert abs(auc - 0.5) < null_tolerance(is_member)


def test_target_without_index_is_rejected(problem):
    data, target, _ = problem
    attack = LiRAOnline()
    attack.fit(data)
    bare = Signals(logits=target.logits, labels=target.labels, losses=target.losses)
    with pytest.raises(ValueError, match="index"):
        attack.score(bare)


def _one_sided_references():
    """8 references on samples 0..199: IN models put φ near 5 with a small spread, OUT models near 0 with a
    large one, so a two-σ fit has σ_in ≪ σ_out."""
    from lightning_privacy.attacks.membership.signals import AttackData, ShadowSignals
    from tests.attacks.planted import signals_from_phi

    g = torch.Generator().manual_seed(11)
    n, index = 200, torch.arange(200)
    refs = []
    for k in range(8):
        in_mask = torch.rand(n, generator=g) < 0.5
        phi = torch.where(in_mask, 5 + 0.1 * torch.randn(n, generator=g, dtype=torch.float64),
                          3 * torch.randn(n, generator=g, dtype=torch.float64))
        refs.append(ShadowSignals(signals_from_phi(phi, index), in_mask))
    target = signals_from_phi(torch.tensor([20.0, 0.0], dtype=torch.float64), torch.tensor([0, 1]))
    return AttackData(references=refs), target


def test_fixed_variance_uses_one_sigma_and_is_monotone_in_phi():
    """Carlini et al.'s fixed-variance test: one σ for IN and OUT. A target more confident than every IN model
    (φ = 20) must score above a non-member-like one (φ = 0); two pooled σ make the score quadratic and invert it."""
    data, target = _one_sided_references()
    default = LiRAOnline()
    default.fit(data)
    high, low = default.score(target).tolist()
    assert default.variance == "fixed" and high > low
    two_sigma = LiRAOnline(variance="fixed_in_out")
    two_sigma.fit(data)
    high2, low2 = two_sigma.score(target).tolist()
    assert high2 < low2  # the named two-σ variant keeps its (non-monotone) behaviour
    assert LiRAOnline(fixed_variance=False).variance == "per_example"
    with pytest.raises(UserInputError, match="variance"):
        LiRAOnline(variance="nope")
