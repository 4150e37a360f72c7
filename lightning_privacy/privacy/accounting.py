"""DP-SGD privacy accounting over Opacus' accountants (RDP, PRV, GDP), record- and group-level.

Record level: Abadi et al. 2016 (DP-SGD), accounted with Opacus' ``RDPAccountant`` (Mironov, Talwar & Zhang 2019),
``PRVAccountant`` (Gopi, Lee & Wutschitz 2021) or ``GaussianAccountant`` (Bu et al. 2020; can understate ε).
Group level: class-/subclass-DP of Zhang et al., "Broadening Differential Privacy for Deep Learning Against Model
Inversion Attacks" (Algorithm 2, Lemma 3, Theorem 1, Corollary 1), where neighbours differ in one whole group: the
exact replace-one account by Google's ``dp-accounting`` PLD accountant, with the σ/2 RDP bound and Theorem 1 beside
it. All group-level accounting lives in this module.

The ``check_*`` functions are the one validation of each DP quantity: ``DPConfig`` calls them too.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, Literal, Optional, get_args

from opacus.accountants import GaussianAccountant, PRVAccountant, RDPAccountant
from opacus.accountants.accountant import IAccountant
from opacus.accountants.utils import get_noise_multiplier

from lightning_privacy.errors import UserInputError

AccountantName = Literal["rdp", "prv", "gdp"]
ACCOUNTANTS: tuple[str, ...] = get_args(AccountantName)
CALIBRATION_ACCOUNTANTS: tuple[str, ...] = ("rdp", "prv")
"""Accountants safe to calibrate with: gdp (a CLT approximation) can understate ε, so it only reports."""

Level = Literal["record", "group"]
History = list[tuple[float, float, int]]
"""Opacus' accountant history: (noise multiplier σ, sample rate q, number of steps) per constant stretch."""


class PrivacyWarning(UserWarning):
    """A privacy budget that is legal but weak (e.g. δ not much smaller than 1/n)."""


# ----------------------------------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------------------------------


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_delta(delta: float, name: str = "delta") -> None:
    if not _is_real(delta) or not 0.0 < delta < 1.0:
        raise UserInputError(f"{name} must be in (0, 1); got {delta}. Use a value well below 1/n, e.g. 1e-5.")


def check_sample_rate(sample_rate: float, name: str = "sample_rate q") -> None:
    if not _is_real(sample_rate) or not 0.0 < sample_rate <= 1.0:
        raise UserInputError(f"{name} must be in (0, 1]; got {sample_rate}. It is batch_size / dataset_size "
                             "(records) or the group sampling rate.")


def check_noise(noise_multiplier: float, name: str = "noise_multiplier σ") -> None:
    if not _is_real(noise_multiplier) or not 0.0 < noise_multiplier < math.inf:
        raise UserInputError(f"{name} must be a finite number > 0; got {noise_multiplier} (0 is no privacy).")


def check_positive(name: str, value: float) -> None:
    if not _is_real(value) or not 0.0 < value < math.inf:
        raise UserInputError(f"{name} must be a finite number > 0; got {value}.")




def check_count(name: str, value: int, *, minimum: int) -> None:
    try:
        whole = not isinstance(value, bool) and int(value) == value
    except (TypeError, ValueError, OverflowError):
        whole = False
    if not whole or value < minimum:
        raise UserInputError(f"{name} must be an integer >= {minimum}; got {value!r}.")


def check_epsilon(name: str, epsilon: float) -> None:
    if not _is_real(epsilon) or not epsilon > 0.0:
        raise UserInputError(f"{name} must be > 0; got {epsilon}.")


def check_accountant(accountant: str, *, allowed: tuple[str, ...] = ACCOUNTANTS, name: str = "accountant") -> None:
    if accountant in allowed:
        return
    if accountant == "gdp":
        raise UserInputError(f"{name}: gdp can understate ε; calibrate with rdp or prv; gdp is for reporting only "
                             "(list it in report_accountants).")
    raise UserInputError(f"{name} must be one of {list(allowed)}; got {accountant!r}.")




def validate_budget(*, epsilon: Optional[float], delta: float, sample_rate: float, dataset_size: int) -> None:
    """Reject an impossible (ε, δ, q) and warn (``PrivacyWarning``) when δ ≥ 1/n, which lets a mechanism
    publish a whole record with probability δ·n ≥ 1 (Dwork & Roth 2014, Sec. 2.3: δ should be ≪ 1/n)."""
    if epsilon is not None:
        check_epsilon("epsilon", epsilon)
    check_delta(delta)
    check_sample_rate(sample_rate)
    check_count("dataset_size", dataset_size, minimum=1)
    if delta >= 1.0 / dataset_size:
        warnings.warn(
            f"delta = {delta:g} is >= 1/n = {1.0 / dataset_size:g} for n = {dataset_size}: δ should be ≪ 1/n "
            f"(e.g. {min(1e-5, 0.1 / dataset_size):.0e}), or one record may leak outright.",
            PrivacyWarning,
            stacklevel=2,
        )


# ----------------------------------------------------------------------------------------------------------------------
# Record-level accounting
# ----------------------------------------------------------------------------------------------------------------------


def _opacus_accountant(name: str) -> IAccountant:
    """A fresh Opacus accountant; GaussianAccountant's construction-time warning is documented here instead."""
    if name == "rdp":
        return RDPAccountant()
    if name == "prv":
        return PRVAccountant()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="GDP accounting is experimental", category=UserWarning)
        return GaussianAccountant()


def _history_epsilon(history: History, *, delta: float, accountant: str) -> float:
    """ε of a history as an Opacus-trained model's accountant (same history, same defaults) reports it."""
    if not history or sum(steps for _, _, steps in history) == 0:
        return 0.0
    acc = _opacus_accountant(accountant)
    acc.history = [(float(s), float(q), int(n)) for s, q, n in history if n > 0]
    return float(acc.get_epsilon(delta))


def epsilon_spent(
    *,
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    delta: float,
    accountant: AccountantName = "rdp",
) -> float:
    """ε spent by ``steps`` Poisson-sampled Gaussian steps (DP-SGD, Abadi et al. 2016, Algorithm 1) at δ.

    Equals ``PrivacyEngine.get_epsilon(delta)`` of an Opacus run with the same σ, q and steps; 0 steps → 0.0.
    ``"gdp"`` (Gaussian DP, a central-limit approximation) can understate ε: use it for reporting only.
    """
    check_noise(noise_multiplier)
    check_sample_rate(sample_rate)
    check_count("steps", steps, minimum=0)
    check_delta(delta)
    check_accountant(accountant)
    return _history_epsilon([(noise_multiplier, sample_rate, int(steps))], delta=delta, accountant=accountant)


def _tighten_noise(sigma: float, *, target_epsilon: float, epsilon_of: Any, factor: float = 1.001) -> float:
    """Grow σ geometrically until ε(σ) ≤ target: guards against an accountant's numerical wobble."""
    for _ in range(10_000):
        if epsilon_of(sigma) <= target_epsilon:
            return sigma
        sigma *= factor
    raise UserInputError(f"could not find a noise multiplier reaching ε <= {target_epsilon}; raise the target.")


def noise_for_target(
    *,
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: AccountantName = "rdp",
    epsilon_tolerance: Optional[float] = None,
) -> float:
    """The noise multiplier σ that spends at most ``target_epsilon`` (within ``epsilon_tolerance`` below it, by
    default min(0.01, 1% of the target)) in ``steps`` steps, by Opacus' ``get_noise_multiplier`` bisection, checked
    (and nudged up) so that ε(σ) ≤ target."""
    check_epsilon("target_epsilon", target_epsilon)
    check_delta(delta)
    check_sample_rate(sample_rate)
    check_count("steps", steps, minimum=1)
    check_accountant(accountant, allowed=CALIBRATION_ACCOUNTANTS)
    if epsilon_tolerance is None:
        epsilon_tolerance = min(0.01, 0.01 * target_epsilon)
    if not _is_real(epsilon_tolerance) or not 0.0 < epsilon_tolerance < target_epsilon:
        raise UserInputError(f"epsilon_tolerance must be in (0, target_epsilon); got {epsilon_tolerance}.")
    try:
        sigma = get_noise_multiplier(
            target_epsilon=target_epsilon,
            target_delta=delta,
            sample_rate=sample_rate,
            steps=int(steps),
            accountant=accountant,
            epsilon_tolerance=epsilon_tolerance,
        )
    except ValueError as err:  # Opacus: "The privacy budget is too low." (σ would exceed 1e6)
        raise UserInputError(
            f"target_epsilon = {target_epsilon} at delta = {delta} is out of reach for q = {sample_rate} and "
            f"{steps} steps (σ would exceed 1e6); raise ε or δ, or train fewer steps or with a smaller q."
        ) from err

    def epsilon_of(s: float) -> float:
        return epsilon_spent(noise_multiplier=s, sample_rate=sample_rate, steps=steps, delta=delta,
                             accountant=accountant)

    return _tighten_noise(float(sigma), target_epsilon=target_epsilon, epsilon_of=epsilon_of)


def epochs_within(
    *,
    target_epsilon: float,
    noise_multiplier: float,
    sample_rate: float,
    steps_per_epoch: int,
    delta: float,
    accountant: AccountantName = "rdp",
    max_epochs: int,
    level: Level = "record",
) -> int:
    """The largest whole number of epochs E ≤ ``max_epochs`` with ε(E · steps_per_epoch) ≤ ``target_epsilon``
    (``level="group"``: the exact replace-one-group account; ``accountant`` is then not used).

    Binary search: ε is non-decreasing in the number of steps (composition, Lemma 1 of Zhang et al.).
    """
    check_epsilon("target_epsilon", target_epsilon)
    check_noise(noise_multiplier)
    check_sample_rate(sample_rate)
    check_count("steps_per_epoch", steps_per_epoch, minimum=1)
    check_delta(delta)
    check_accountant(accountant, allowed=CALIBRATION_ACCOUNTANTS)
    check_count("max_epochs", max_epochs, minimum=0)

    def fits(epochs: int) -> bool:
        steps = epochs * int(steps_per_epoch)
        if level == "group":
            eps = group_epsilon(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps, delta=delta)
        else:
            eps = epsilon_spent(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps,
                                delta=delta, accountant=accountant)
        return eps <= target_epsilon

    if fits(max_epochs):
        return int(max_epochs)
    fitting, too_many = 0, int(max_epochs)  # invariant: fits(fitting) and not fits(too_many)
    while too_many - fitting > 1:
        mid = (fitting + too_many) // 2
        fitting, too_many = (mid, too_many) if fits(mid) else (fitting, mid)
    return fitting


# ----------------------------------------------------------------------------------------------------------------------
# Group-level (class / subclass) accounting, Zhang et al.
# ----------------------------------------------------------------------------------------------------------------------


GroupAccountant = Literal["exact", "rdp", "prv"]
GROUP_ACCOUNTANTS: tuple[str, ...] = get_args(GroupAccountant)


PLD_INTERVAL = 1e-3
"""dp-accounting's value discretization for the group account: 10× faster than its default 1e-4, and within 0.003
of it on the grids the tests check (a coarser grid only rounds ε up)."""


def _replace_one_epsilon(history: History, *, delta: float, interval: float = PLD_INTERVAL) -> float:
    """The exact replace-one-group ε of a history, by dp-accounting's PLD accountant (Google); ``interval`` is its
    value discretization (coarser is faster and rounds ε further up, never down)."""
    if not history or sum(steps for _, _, steps in history) == 0:
        return 0.0
    from dp_accounting import NeighboringRelation, dp_event  # imported late: ~1 s
    from dp_accounting.pld.pld_privacy_accountant import PLDAccountant

    acc = PLDAccountant(NeighboringRelation.REPLACE_ONE, value_discretization_interval=interval)
    for sigma, q, n in history:
        if n > 0:
            acc.compose(dp_event.PoissonSampledDpEvent(float(q), dp_event.GaussianDpEvent(float(sigma))), int(n))
    return float(acc.get_epsilon(delta))


def group_history_epsilon(history: History, *, delta: float, accountant: GroupAccountant = "exact") -> float:
    """Class-/subclass-level ε of a (σ, q, steps) history: ``exact`` (the replace-one account, see
    ``group_epsilon``), or ``rdp`` / ``prv``, the record-level account at σ/2 (a valid, looser bound)."""
    check_delta(delta)
    check_accountant(accountant, allowed=GROUP_ACCOUNTANTS)
    if accountant == "exact":
        return _replace_one_epsilon(history, delta=delta)
    return _history_epsilon([(s / 2.0, q, n) for s, q, n in history], delta=delta, accountant=accountant)


def group_epsilon(
    *,
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    delta: float,
    accountant: GroupAccountant = "exact",
) -> float:
    """Class-/subclass-level ε of Algorithm 2 (Zhang et al.): groups sampled with rate q, each group's averaged
    gradient clipped to S, noise N(0, σ²S²), T steps; neighbours replace one whole group.

    ``exact`` (default): one step's pair is, in units of S, (1 - q) N(0, σ²) + q N(-1, σ²) vs
    (1 - q) N(0, σ²) + q N(1, σ²) — the replaced group is sampled with probability q and its clipped gradient
    moves from one point of the S-ball to another — composed T times by ``dp-accounting``'s
    ``PLDAccountant(NeighboringRelation.REPLACE_ONE)`` on ``PoissonSampledDpEvent(q, GaussianDpEvent(σ))``
    (a numerical account that is tight up to its discretization, which rounds ε up).

    ``rdp`` / ``prv``: the record-level account at σ/2. Replacing a group moves the sum by up to 2S (Theorem 1's
    proof): Lemma 3's pair μ0 = N(0, σ²) vs (1 - q) μ0 + q N(2, σ²), which halving maps to the sampled Gaussian
    mechanism at σ/2. It dominates the exact pair, so it is a valid bound, but not tight: at σ 1, q 0.01, T 10⁴,
    δ 1e-5 it gives 47.4 where the exact account gives 10.9 (and Theorem 1 13.6).
    """
    check_noise(noise_multiplier)
    check_sample_rate(sample_rate)
    check_count("steps", steps, minimum=0)
    return group_history_epsilon([(noise_multiplier, sample_rate, int(steps))], delta=delta, accountant=accountant)


def group_noise_for_target(*, target_epsilon: float, delta: float, sample_rate: float, steps: int,
                           epsilon_tolerance: Optional[float] = None) -> float:
    """The σ whose exact replace-one-group ε over ``steps`` steps lies within ``epsilon_tolerance`` (default
    min(0.01, 1 % of the target)) below ``target_epsilon``.

    Bisection on log σ (ε decreases in σ), bracketed above by the σ/2 RDP bound's σ (twice the record-level σ for
    the target: the bound dominates the exact account, so that σ already meets the target)."""
    check_epsilon("target_epsilon", target_epsilon)
    check_delta(delta)
    check_sample_rate(sample_rate)
    check_count("steps", steps, minimum=1)
    tol = min(0.01, 0.01 * target_epsilon) if epsilon_tolerance is None else epsilon_tolerance

    def eps(s: float) -> float:
        return _replace_one_epsilon([(s, sample_rate, int(steps))], delta=delta)

    high = 2.0 * noise_for_target(target_epsilon=target_epsilon, delta=delta, sample_rate=sample_rate, steps=steps)
    while eps(high) > target_epsilon:  # not expected (the bound dominates); guards the discretization
        high *= 1.05
    low = high * 0.6
    while eps(low) <= target_epsilon:
        high, low = low, low * 0.6
    for _ in range(60):  # invariant: eps(high) <= target < eps(low)
        mid = math.sqrt(low * high)
        value = eps(mid)
        if value <= target_epsilon:
            high = mid
            if target_epsilon - value <= tol:
                break
        else:
            low = mid
    return high


def theorem1_epsilon(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> tuple[float, bool]:
    """Theorem 1 / Corollary 1 of Zhang et al. solved for ε: σ² = 16 q² T ln(1/δ) / ε² gives
    ε = 4 q √(T ln(1/δ)) / σ; the flag says whether the theorem's condition q < √(ε / (64 √(T ln(1/δ)))) holds.

    Bounded (replace-one-group) class-DP. Substituting ε, the condition reads q < 1 / (16 σ), Lemma 3's first
    assumption; its second (κ ≤ σ² ln(1/(qσ))) is asserted by the paper and not checked here.
    The flag says the theorem's condition holds, not that the ε is an upper bound: Lemma 3 drops an O(q³/σ³) term
    and κ + 1 → κ, and eq. (7) uses e^{4/σ²} - 1 ≤ 4/σ², which is false (e^x - 1 ≥ x). At small σ the closed
    form understates ε: σ = 0.5, q = 0.0625, T = 1000, δ = 1e-5 gives 53.6 while the exact replace-one account
    (``group_epsilon``) gives ≥ 98.1; at σ = 1, q = 0.01, T = 10⁴ it does not (13.6 against the exact 10.9).
    Report ``group_epsilon``; use this only to compare with the paper.
    Remark 1's unbounded variant (remove one group) would be σ² = 4 q² T ln(1/δ) / ε² with
    q < √(ε / (32 √(T ln(1/δ)))); it is not implemented.
    """
    check_noise(noise_multiplier)
    check_sample_rate(sample_rate)
    check_count("steps", steps, minimum=0)
    check_delta(delta)
    if steps == 0:
        return 0.0, True
    root = math.sqrt(steps * math.log(1.0 / delta))
    epsilon = 4.0 * sample_rate * root / noise_multiplier
    valid = sample_rate < math.sqrt(epsilon / (64.0 * root))
    return epsilon, valid


# ----------------------------------------------------------------------------------------------------------------------
# A resumable ledger for training loops
# ----------------------------------------------------------------------------------------------------------------------


class PrivacyLedger:
    """The privacy account of one training run: call ``step`` after each noisy update, ask ``epsilon(delta)``.

    ``level="group"`` accounts Algorithm 2 of Zhang et al. (class-/subclass-DP) as ``group_epsilon`` does: by
    default exactly (replace one group); ``epsilon(delta, accountant="rdp")`` gives the σ/2 RDP bound.
    ``state_dict()`` holds plain lists, so a checkpoint can carry the account and ``load_state_dict`` resume it.
    """

    def __init__(self, *, accountant: AccountantName = "rdp", level: Level = "record") -> None:
        check_accountant(accountant)
        if level not in get_args(Level):
            raise UserInputError(f"level must be 'record' or 'group'; got {level!r}.")
        self.accountant: str = accountant
        self.level: str = level
        self._history: list[list[Any]] = []  # [[σ, q, steps], ...], consecutive equal (σ, q) merged

    def step(self, *, noise_multiplier: float, sample_rate: float, steps: int = 1) -> None:
        """Record ``steps`` updates with noise multiplier σ and sample rate q (as Opacus' accountants merge them)."""
        check_noise(noise_multiplier)
        check_sample_rate(sample_rate)
        check_count("steps", steps, minimum=1)
        sigma, q = float(noise_multiplier), float(sample_rate)
        if self._history and self._history[-1][0] == sigma and self._history[-1][1] == q:
            self._history[-1][2] += int(steps)
        else:
            self._history.append([sigma, q, int(steps)])

    @property
    def steps(self) -> int:
        """Number of noisy updates recorded so far."""
        return sum(n for _, _, n in self._history)

    @property
    def history(self) -> History:
        """A copy of the (σ, q, steps) stretches, as recorded."""
        return [(s, q, n) for s, q, n in self._history]

    def epsilon(self, delta: float, *, accountant: Optional[str] = None) -> float:
        """ε spent so far at ``delta`` by this ledger's accountant (or the one named). Group level: ``exact``
        (default) or the σ/2 bound of ``rdp`` / ``prv``."""
        check_delta(delta)
        if self.level == "group":
            return group_history_epsilon(self.history, delta=delta, accountant=accountant or "exact")
        name = accountant or self.accountant
        check_accountant(name)
        if name == "gdp" and len(self._history) > 1:
            raise UserInputError("gdp accounts a constant (σ, q) only and this run changed them; use rdp or prv.")
        return _history_epsilon(self.history, delta=delta, accountant=name)

    def epsilon_all(self, delta: float) -> dict[str, float]:
        """ε at ``delta`` by every accountant, for reporting; gdp is NaN when (σ, q) changed during the run."""
        out: dict[str, float] = {}
        for name in (GROUP_ACCOUNTANTS if self.level == "group" else ACCOUNTANTS):
            gdp_undefined = name == "gdp" and len(self._history) > 1
            out[name] = math.nan if gdp_undefined else self.epsilon(delta, accountant=name)
        return out

    def state_dict(self) -> dict[str, Any]:
        """Plain, picklable state: ``{"history": [[σ, q, steps], ...], "accountant": ..., "level": ...}``."""
        return {"history": [list(entry) for entry in self._history], "accountant": self.accountant,
                "level": self.level}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume the account saved by ``state_dict`` (replaces whatever this ledger held)."""
        if not isinstance(state, dict) or not isinstance(state.get("history"), (list, tuple)):
            raise UserInputError("a PrivacyLedger state must be a dict with a 'history' list (from state_dict()).")
        fresh = PrivacyLedger(accountant=state.get("accountant", self.accountant),
                              level=state.get("level", self.level))
        for entry in state["history"]:
            if not isinstance(entry, (list, tuple)) or len(entry) != 3:
                raise UserInputError(f"each ledger history entry must be [σ, q, steps]; got {entry!r}.")
            fresh.step(noise_multiplier=entry[0], sample_rate=entry[1], steps=entry[2])
        self.accountant, self.level, self._history = fresh.accountant, fresh.level, fresh._history

    def __repr__(self) -> str:
        return f"PrivacyLedger(accountant={self.accountant!r}, level={self.level!r}, steps={self.steps})"
