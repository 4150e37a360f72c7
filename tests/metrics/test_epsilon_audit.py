"""One-run ε lower bound (Steinke, Nasr & Jagielski 2023): reference computations, monotonicity, a simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from scipy.special import expit, logit
from scipy.stats import binom

from lightning_privacy.errors import UserInputError
from lightning_privacy.metrics.epsilon_audit import (
    audit_p_value,
    canary_guesses,
    draw_canary_inclusion,
    epsilon_lower_bound,
)


def reference_pure_dp_bound(r: int, v: int, beta: float = 0.05) -> float:
    """δ = 0 by root-finding on scipy's binomial tail: P[Bin(r, p) ≥ v] = β, ε = logit(p)."""
    if binom.sf(v - 1, r, 0.5) >= beta:
        return 0.0
    if v == r:
        return float(logit(beta ** (1 / r)))
    p = brentq(lambda p: binom.sf(v - 1, r, p) - beta, 0.5, 1 - 1e-15, xtol=1e-15)
    return float(logit(p))


@pytest.mark.parametrize(("r", "v"), [(100, 70), (100, 90), (1000, 600), (1000, 990), (37, 30), (5000, 2700)])
def test_pure_dp_bound_matches_binomial_tail(r: int, v: int) -> None:
    eps = epsilon_lower_bound(guesses=r, correct=v, canaries=2 * r)
    assert eps == pytest.approx(reference_pure_dp_bound(r, v), abs=1e-7)
    beta = 1 - 0.95  # the level the bound rejects at (0.05 up to rounding)
    assert binom.sf(v - 1, r, expit(eps)) < beta <= binom.sf(v - 1, r, expit(eps + 1e-6))


@pytest.mark.parametrize(("r", "expected"), [(10, None), (100, 3.4930), (1000, 5.8091)])
def test_all_correct_guesses(r: int, expected: float | None) -> None:
    p = 0.05 ** (1 / r)
    closed_form = math.log(p / (1 - p))
    eps = epsilon_lower_bound(guesses=r, correct=r, canaries=r)
    assert eps == pytest.approx(closed_form, abs=1e-7)
    if expected is not None:
        assert eps == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize(("r", "v"), [(100, 50), (100, 55), (1000, 500), (1000, 510), (10, 3), (10, 0)])
def test_chance_level_certifies_nothing(r: int, v: int) -> None:
    assert epsilon_lower_bound(guesses=r, correct=v, canaries=r) == 0.0


def test_no_guesses_certify_nothing() -> None:
    assert epsilon_lower_bound(guesses=0, correct=0, canaries=10) == 0.0


def test_monotone_in_correct_guesses() -> None:
    bounds = [epsilon_lower_bound(guesses=200, correct=v, canaries=1000) for v in range(100, 201)]
    assert all(a <= b for a, b in zip(bounds, bounds[1:]))
    positive = [b for b in bounds if b > 0]
    assert all(a < b for a, b in zip(positive, positive[1:]))


@pytest.mark.parametrize("delta", [0.0, 1e-5])
def test_monotone_in_guesses_at_fixed_accuracy(delta: float) -> None:
    bounds = [epsilon_lower_bound(guesses=r, correct=int(0.8 * r), canaries=10_000, delta=delta)
              for r in (10, 50, 100, 500, 1000, 5000)]
    assert all(a < b for a, b in zip(bounds, bounds[1:]))


@pytest.mark.parametrize(("m", "r", "v"), [(1000, 100, 90), (1000, 100, 100), (10_000, 1000, 700), (200, 200, 160)])
@pytest.mark.parametrize("delta", [1e-6, 1e-4, 1e-2])
def test_delta_only_lowers_the_bound(m: int, r: int, v: int, delta: float) -> None:
    pure = epsilon_lower_bound(guesses=r, correct=v, canaries=m)
    approx = epsilon_lower_bound(guesses=r, correct=v, canaries=m, delta=delta)
    assert 0.0 <= approx <= pure
    if delta == 1e-6:
        assert approx > 0.9 * pure  # a tiny δ costs little


@pytest.mark.parametrize(("m", "r", "v", "eps", "delta"),
                         [(1000, 100, 90, 1.5, 1e-5), (50, 40, 35, 0.7, 1e-3), (300, 300, 200, 0.2, 1e-2)])
def test_p_value_matches_the_theorem_term_by_term(m: int, r: int, v: int, eps: float, delta: float) -> None:
    """f(v) + 2 m δ max_{1 ≤ i ≤ m} (f(v - i) - f(v)) / i with f(u) = P[Bin(r, p_ε) ≥ u], evaluated literally."""
    p = expit(eps)

    def f(u: int) -> float:
        return float(binom.sf(u - 1, r, p))

    literal = f(v) + 2 * m * delta * max((f(v - i) - f(v)) / i for i in range(1, m + 1))
    ours = audit_p_value(guesses=r, correct=v, canaries=m, epsilon=eps, delta=delta)
    assert ours == pytest.approx(min(literal, 1.0), rel=1e-9, abs=1e-15)


@pytest.mark.parametrize(("m", "r", "v", "delta"), [(1000, 100, 90, 1e-5), (10_000, 1000, 700, 1e-5),
                                                    (1000, 200, 150, 1e-3), (100, 100, 80, 1e-2)])
def test_p_value_grows_with_epsilon(m: int, r: int, v: int, delta: float) -> None:
    """The bisection's premise, checked on a grid for δ > 0."""
    values = [audit_p_value(guesses=r, correct=v, canaries=m, epsilon=e, delta=delta)
              for e in np.linspace(0.0, 8.0, 401)]
    assert all(a <= b + 1e-15 for a, b in zip(values, values[1:]))


def randomized_response_audit(*, epsilon0: float, m: int, seed: int) -> float:
    """ε0-DP randomized response on S: each canary's score is S_i, flipped with probability 1 / (1 + e^ε0)."""
    included = draw_canary_inclusion(m=m, seed=seed)
    signs = included.double() * 2 - 1
    generator = torch.Generator().manual_seed(10_000 + seed)
    flip = torch.rand(m, generator=generator, dtype=torch.float64) < 1 / (1 + math.exp(epsilon0))
    scores = torch.where(flip, -signs, signs)
    k_positive = int((scores > 0).sum())  # guess every canary: r = m, whatever the scores
    guesses, correct = canary_guesses(scores=scores, included=included, k_positive=k_positive,
                                      k_negative=m - k_positive)
    return epsilon_lower_bound(guesses=guesses, correct=correct, canaries=m)


def test_randomized_response_bound_holds_at_95_percent() -> None:
    bounds = [randomized_response_audit(epsilon0=1.0, m=500, seed=s) for s in range(200)]
    assert np.mean([b <= 1.0 for b in bounds]) >= 0.93
    assert np.mean(bounds) > 0.5  # and it is not vacuous


@pytest.mark.parametrize("epsilon0", [0.5, 2.0])
def test_randomized_response_bound_gets_close_with_many_canaries(epsilon0: float) -> None:
    bound = randomized_response_audit(epsilon0=epsilon0, m=200_000, seed=0)
    assert 0.95 * epsilon0 < bound <= epsilon0 + 0.01


# ----------------------------------------------------------------------------------------------------------------------
# canary_guesses and draw_canary_inclusion
# ----------------------------------------------------------------------------------------------------------------------

SCORES = torch.tensor([0.9, 0.1, 0.5, 0.5, -1.0, 0.7])
INCLUDED = torch.tensor([True, False, True, False, False, True])
# Ranked high to low, ties by index: 0 (0.9, IN), 5 (0.7, IN), 2 (0.5, IN), 3 (0.5, OUT), 1 (0.1, OUT), 4 (-1, OUT).


@pytest.mark.parametrize(
    ("k_positive", "k_negative", "expected"),
    [(3, 0, (3, 3)), (3, 2, (5, 5)), (4, 0, (4, 3)), (3, 3, (6, 6)), (2, 4, (6, 5)), (0, 1, (1, 1)), (0, 0, (0, 0)),
     (6, 0, (6, 3)), (0, 6, (6, 3))],
)
def test_canary_guesses_hand_example(k_positive: int, k_negative: int, expected: tuple[int, int]) -> None:
    assert canary_guesses(scores=SCORES, included=INCLUDED, k_positive=k_positive, k_negative=k_negative) == expected


def test_canary_guesses_break_ties_by_index() -> None:
    scores = torch.zeros(4)
    included = torch.tensor([1, 0, 0, 1])  # 0/1 integers are accepted
    assert canary_guesses(scores=scores, included=included, k_positive=1) == (1, 1)  # index 0 guessed IN
    assert canary_guesses(scores=scores, included=included, k_positive=0, k_negative=1) == (1, 0)  # index 3 OUT
    assert canary_guesses(scores=scores, included=included, k_positive=2, k_negative=2) == (4, 2)


@pytest.mark.parametrize(
    "kwargs",
    [dict(k_positive=4, k_negative=3), dict(k_positive=-1), dict(k_negative=-1), dict(k_positive=1.5),
     dict(scores=torch.tensor([0.1, float("nan"), 0, 0, 0, 0])), dict(scores=torch.zeros(2, 3)),
     dict(included=torch.tensor([True, False])), dict(included=torch.tensor([0.0, 1, 0, 1, 0, 1])),
     dict(included=torch.tensor([0, 2, 0, 1, 0, 1])), dict(scores=[0.1, 0.2]), dict(scores=torch.zeros(0))],
)
def test_canary_guesses_reject(kwargs: dict) -> None:
    args = dict(scores=SCORES, included=INCLUDED, k_positive=1, k_negative=0) | kwargs
    with pytest.raises(UserInputError):
        canary_guesses(**args)


def test_draw_canary_inclusion_is_seeded_and_fair() -> None:
    first = draw_canary_inclusion(m=10_000, seed=3)
    assert first.dtype == torch.bool and first.shape == (10_000,)
    assert torch.equal(first, draw_canary_inclusion(m=10_000, seed=3))
    assert not torch.equal(first, draw_canary_inclusion(m=10_000, seed=4))
    assert abs(first.double().mean().item() - 0.5) < 4 * 0.5 / math.sqrt(10_000)


@pytest.mark.parametrize("kwargs", [dict(m=0, seed=0), dict(m=-3, seed=0), dict(m=2.5, seed=0), dict(m=5, seed="a")])
def test_draw_canary_inclusion_rejects(kwargs: dict) -> None:
    with pytest.raises(UserInputError):
        draw_canary_inclusion(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [dict(correct=11), dict(guesses=101), dict(guesses=-1, correct=0), dict(canaries=0, guesses=0, correct=0),
     dict(confidence=0.0), dict(confidence=1.0), dict(delta=-0.1), dict(delta=1.0), dict(guesses=10.0),
     dict(correct=True)],
)
def test_epsilon_lower_bound_rejects(kwargs: dict) -> None:
    args = dict(guesses=10, correct=9, canaries=100) | kwargs
    with pytest.raises(UserInputError):
        epsilon_lower_bound(**args)
