"""One-run empirical ε lower bound: Steinke, Nasr & Jagielski, "Privacy Auditing with One (1) Training Run",
NeurIPS 2023 (arXiv:2305.08846).

Setting: m canaries, each included in training independently with probability ½ (S ∈ {-1, +1}^m). After
training, an attack scores every canary; the auditor guesses IN for its k+ highest-scoring canaries, OUT for its
k- lowest-scoring ones and abstains on the rest: r = k+ + k- guesses, v of them correct.

The statement implemented (the paper's main theorem in its general (ε, δ) form; for δ = 0 it is the pure-DP
main theorem). Let p_ε = e^ε / (e^ε + 1) and f(v) = P[Binomial(r, p_ε) ≥ v]. If training is (ε, δ)-DP, then
for every v

    P[W ≥ v] ≤ f(v) + 2 m δ · max_{i = 1..m} (f(v - i) - f(v)) / i,

where W is the number of correct guesses. The right-hand side is the p-value of observing v correct guesses under
the hypothesis "the algorithm is (ε, δ)-DP"; the sum telescopes, f(v - i) - f(v) = P[v - i ≤ Binomial(r, p_ε) < v],
and terms with i > v are dominated by i = v. The reported lower bound at confidence 1 - β is the largest ε whose
hypothesis is rejected at level β (p-value < β), found by bisection over ε as in the paper's procedure for
computing the bound. Bisection assumes the p-value grows with ε: its first term does (a binomial tail in p_ε);
with δ > 0 the whole sum did on every grid the tests check.

The bound is valid for k+ and k- fixed before looking at the scores; picking them after the fact (the best of
many) spends the confidence level on each try.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
from scipy.special import expit
from scipy.stats import binom
from torch import Tensor

from lightning_privacy.errors import UserInputError

BISECTION_STEPS = 60
EPSILON_CEILING = 1_000.0
"""A guard only: beyond ε ≈ 37, p_ε rounds to 1.0 in float64 and no hypothesis can be rejected."""


def _check_count(name: str, value: int, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise UserInputError(f"{name} must be an integer >= {minimum}; got {value!r}.")
    return int(value)


def _check_probability(name: str, value: float, *, low_open: bool, high_open: bool) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    ok = ok and (value > 0.0 if low_open else value >= 0.0) and (value < 1.0 if high_open else value <= 1.0)
    if not ok:
        interval = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
        raise UserInputError(f"{name} must be in {interval}; got {value!r}.")
    return float(value)


def audit_p_value(*, guesses: int, correct: int, canaries: int, epsilon: float, delta: float = 0.0) -> float:
    """P-value of ``correct`` correct guesses out of ``guesses`` under "(ε, δ)-DP" (the module docstring's bound):
    P[Bin(r, p_ε) ≥ v] + 2 m δ · max_{1 ≤ i ≤ v} P[v - i ≤ Bin(r, p_ε) < v] / i, capped at 1."""
    r, v = guesses, correct
    p_eps = float(expit(epsilon))
    tail = float(binom.sf(v - 1, r, p_eps))  # f(v) = P[Bin(r, p_ε) ≥ v]
    if delta == 0.0 or v == 0:
        return min(tail, 1.0)
    below = binom.pmf(np.arange(v - 1, -1, -1), r, p_eps)  # P[Bin = v-1], P[Bin = v-2], ..., P[Bin = 0]
    window = np.cumsum(below) / np.arange(1, v + 1)  # (f(v - i) - f(v)) / i for i = 1..v
    return min(tail + 2.0 * canaries * delta * float(window.max()), 1.0)


def epsilon_lower_bound(
    *,
    guesses: int,
    correct: int,
    canaries: int,
    delta: float = 0.0,
    confidence: float = 0.95,
) -> float:
    """Empirical ε lower bound of Steinke, Nasr & Jagielski (2023): the largest ε for which (ε, δ)-DP is rejected
    at level 1 - ``confidence`` given ``correct`` of ``guesses`` right among ``canaries`` canaries; 0.0 when even
    ε = 0 cannot be rejected. Bisection over ε (``BISECTION_STEPS`` halvings) on ``audit_p_value``."""
    m = _check_count("canaries", canaries, minimum=1)
    r = _check_count("guesses", guesses)
    v = _check_count("correct", correct)
    if not v <= r <= m:
        raise UserInputError(f"need correct <= guesses <= canaries; got correct={v}, guesses={r}, canaries={m}.")
    delta = _check_probability("delta", delta, low_open=False, high_open=True)
    confidence = _check_probability("confidence", confidence, low_open=True, high_open=True)
    beta = 1.0 - confidence

    def rejected(eps: float) -> bool:
        return audit_p_value(guesses=r, correct=v, canaries=m, epsilon=eps, delta=delta) < beta

    if r == 0 or not rejected(0.0):
        return 0.0
    low, high = 0.0, 1.0  # invariant: rejected(low) and not rejected(high)
    while rejected(high):
        low, high = high, 2.0 * high
        if high > EPSILON_CEILING:
            return low
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if rejected(mid) else (low, mid)
    return low


def canary_guesses(*, scores: Tensor, included: Tensor, k_positive: int, k_negative: int = 0) -> tuple[int, int]:
    """(guesses, correct) of the auditor that guesses IN for the ``k_positive`` highest scores and OUT for the
    ``k_negative`` lowest, abstaining on the rest. Ties are broken by index: among equal scores, lower indices
    rank higher (guessed IN first, guessed OUT last)."""
    scores, included = _check_scores(scores, included)
    m = scores.numel()
    k_pos = _check_count("k_positive", k_positive)
    k_neg = _check_count("k_negative", k_negative)
    if k_pos + k_neg > m:
        raise UserInputError(f"k_positive + k_negative must be <= the number of canaries ({m}); "
                             f"got {k_pos} + {k_neg}.")
    order = torch.argsort(scores, descending=True, stable=True)
    guessed_in = included[order[:k_pos]]
    guessed_out = included[order[m - k_neg:]] if k_neg else included[:0]
    correct = int(guessed_in.sum()) + int((~guessed_out).sum())
    return k_pos + k_neg, correct


def _check_scores(scores: Tensor, included: Tensor) -> tuple[Tensor, Tensor]:
    if not isinstance(scores, Tensor) or scores.dim() != 1 or scores.numel() == 0:
        raise UserInputError("scores must be a non-empty 1-D tensor (one attack score per canary).")
    if not isinstance(included, Tensor) or included.shape != scores.shape:
        raise UserInputError(f"included must be a tensor shaped like scores {tuple(scores.shape)}; "
                             f"got {getattr(included, 'shape', type(included).__name__)}.")
    if included.dtype != torch.bool:
        if included.is_floating_point() or not bool(((included == 0) | (included == 1)).all()):
            raise UserInputError("included must be boolean (or 0/1 integers): True = the canary was trained on.")
        included = included.bool()
    scores = scores.detach().cpu().double()
    if bool(torch.isnan(scores).any()):
        raise UserInputError("scores contain NaN; give every canary a finite score (or ±inf).")
    return scores, included.detach().cpu()


def draw_canary_inclusion(*, m: int, seed: int) -> Tensor:
    """S of the paper as a bool tensor: each of the ``m`` canaries included (True) independently with probability
    ½, from a generator seeded with ``seed`` (same seed, same draw)."""
    m = _check_count("m", m, minimum=1)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise UserInputError(f"seed must be an integer; got {seed!r}.")
    generator = torch.Generator().manual_seed(int(seed))
    return torch.rand(m, generator=generator, dtype=torch.float64) < 0.5


__all__ = ["audit_p_value", "canary_guesses", "draw_canary_inclusion", "epsilon_lower_bound"]
