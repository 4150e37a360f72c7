"""DPConfig: the ``dp:`` block any classifier defense accepts (record-, class- or subclass-level DP-SGD)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from typing import Literal, Optional

from lightning_privacy.errors import UserInputError
from lightning_privacy.privacy.accounting import (
    ACCOUNTANTS,
    CALIBRATION_ACCOUNTANTS,
    check_accountant,
    check_count,
    check_delta,
    check_epsilon,
    check_noise,
    check_positive,
    check_sample_rate,
)

Level = Literal["record", "class", "subclass"]


@dataclass
class DPConfig:
    """DP-SGD settings. Budget modes, by which of ``target_epsilon`` / ``noise_multiplier`` are set:

    - ``target_epsilon`` only: the noise multiplier is solved from (ε, δ, the steps that will run, sample rate);
    - both: fixed noise, training stops after the last epoch whose ε stays within the target;
    - ``noise_multiplier`` only: fixed noise and epochs, ε is reported.

    ``level``: ``record`` (DP-SGD, Abadi et al. 2016, with Poisson sampling of records at rate batch_size / n);
    ``class`` / ``subclass`` (Zhang et al., class-DP paper Alg. 2: groups sampled at ``group_sample_rate``,
    ``subclasses_per_class`` k-means centroids per class for ``subclass``, fitted on ``subclass_source``:
    the ``reference`` role by default, which the account does not protect, each member then joining its nearest
    centroid; ``members`` reproduces the paper, whose partition the ε then does not cover). ``accountant``
    calibrates and reports record-level ε (``rdp`` or ``prv``; class/subclass levels always use the exact
    replace-one account); ``report_accountants`` are logged beside it (``gdp`` only ever reports).
    ``clipping``: the per-sample clipping strategy (``mixed`` ghost clipping, or forced ``ghost`` /
    ``materialize``). ``norm_replacement``: BatchNorm layers become GroupNorm (``group_norm``) or are refused
    (``null``). ``module``: the attribute of the LightningModule whose parameters DP-SGD trains (``net``).
    ``seed``: null draws the noise and the Poisson masks from ``os.urandom`` at each fit (nothing to log);
    an integer makes them reproducible from the config (the guarantee then excludes anyone holding it).
    ``log_member_metrics``: log the un-noised ``train/*`` and ``dp/clipped_fraction`` statistics of the members.
    ``pretrained``: what the starting weights saw when their checkpoint carries no training record (``public``
    data, or ``members``, which is refused). ``consistency_check``: at the first step, compare the batch's
    per-sample losses and gradient norms with single-sample passes (catches batch-mixing layers); null = on
    for networks the project does not ship.
    """

    level: Level = "record"
    target_epsilon: Optional[float] = None
    noise_multiplier: Optional[float] = None
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    accountant: Literal["rdp", "prv"] = "rdp"
    report_accountants: tuple[str, ...] = ("gdp",)
    clipping: Literal["mixed", "ghost", "materialize"] = "mixed"
    norm_replacement: Optional[Literal["group_norm"]] = "group_norm"
    group_sample_rate: float = 0.2
    subclasses_per_class: int = 50
    subclass_source: Literal["reference", "members"] = "reference"
    module: str = "net"
    seed: Optional[int] = None
    log_member_metrics: bool = False
    pretrained: Optional[Literal["public", "members"]] = None
    consistency_check: Optional[bool] = None

    def __post_init__(self) -> None:
        if self.level not in ("record", "class", "subclass"):
            raise UserInputError(f"dp.level must be 'record', 'class' or 'subclass'; got {self.level!r}")
        if self.target_epsilon is None and self.noise_multiplier is None:
            raise UserInputError("dp needs target_epsilon (noise solved for the planned steps), noise_multiplier "
                                 "(fixed noise), or both (fixed noise, training stops at the target ε)")
        if self.target_epsilon is not None:
            check_epsilon("dp.target_epsilon", self.target_epsilon)
        if self.noise_multiplier is not None:
            check_noise(self.noise_multiplier, "dp.noise_multiplier")
        check_delta(self.delta, "dp.delta")
        check_positive("dp.max_grad_norm", self.max_grad_norm)
        check_accountant(self.accountant, allowed=CALIBRATION_ACCOUNTANTS, name="dp.accountant")
        for name in self.report_accountants:
            check_accountant(name, allowed=ACCOUNTANTS, name="dp.report_accountants")
        check_sample_rate(self.group_sample_rate, "dp.group_sample_rate (q)")
        check_count("dp.subclasses_per_class", self.subclasses_per_class, minimum=1)
        if self.clipping not in ("mixed", "ghost", "materialize"):
            raise UserInputError(f"dp.clipping must be mixed, ghost or materialize; got {self.clipping!r}")
        if self.subclass_source not in ("reference", "members"):
            raise UserInputError(f"dp.subclass_source must be reference or members; got {self.subclass_source!r}")
        if self.pretrained not in (None, "public", "members"):
            raise UserInputError(f"dp.pretrained must be null, public or members; got {self.pretrained!r}")
        if self.pretrained == "members":
            raise UserInputError("dp.pretrained: members — weights already trained on the members without DP "
                                 "cannot be made private by more DP-SGD: start from fresh or public weights")

    @property
    def mode(self) -> Literal["target_epsilon", "stop_at_target", "fixed_noise"]:
        if self.noise_multiplier is None:
            return "target_epsilon"
        return "stop_at_target" if self.target_epsilon is not None else "fixed_noise"


torch.serialization.add_safe_globals([DPConfig])  # checkpoints keep it in their hyperparameters
