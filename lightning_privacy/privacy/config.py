"""DPConfig: the ``dp:`` block any classifier defense accepts (record-, class- or subclass-level DP-SGD)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from lightning_privacy.errors import UserInputError

Level = Literal["record", "class", "subclass"]


@dataclass
class DPConfig:
    """DP-SGD settings. Budget modes, by which of ``target_epsilon`` / ``noise_multiplier`` are set:

    - ``target_epsilon`` only: the noise multiplier is solved from (ε, δ, trainer.max_epochs, sample rate);
    - both: fixed noise, training stops after the last epoch whose ε stays within the target;
    - ``noise_multiplier`` only: fixed noise and epochs, ε is reported.

    ``level``: ``record`` (DP-SGD, Abadi et al. 2016, with Poisson sampling of records at rate batch_size / n);
    ``class`` / ``subclass`` (Zhang et al., class-DP paper Alg. 2: groups sampled at ``group_sample_rate``,
    ``subclasses_per_class`` k-means clusters per class for ``subclass``). ``accountant`` calibrates and reports
    ε (``rdp`` or ``prv``); ``report_accountants`` are logged beside it (``gdp`` only ever reports).
    ``clipping``: the per-sample clipping strategy (``mixed`` ghost clipping, or forced ``ghost`` /
    ``materialize``). ``norm_replacement``: BatchNorm layers become GroupNorm (``group_norm``) or are refused
    (``null``). ``module``: the attribute of the defense whose parameters DP-SGD trains (``net``).
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
    module: str = "net"
    seed: Optional[int] = None

    def __post_init__(self) -> None:
        if self.level not in ("record", "class", "subclass"):
            raise UserInputError(f"dp.level must be 'record', 'class' or 'subclass'; got {self.level!r}")
        if self.target_epsilon is None and self.noise_multiplier is None:
            raise UserInputError("dp needs target_epsilon (noise solved for the planned epochs), noise_multiplier "
                                 "(fixed noise), or both (fixed noise, training stops at the target ε)")
        if self.target_epsilon is not None and not self.target_epsilon > 0:
            raise UserInputError(f"dp.target_epsilon must be > 0; got {self.target_epsilon}")
        if self.noise_multiplier is not None and not self.noise_multiplier > 0:
            raise UserInputError(f"dp.noise_multiplier must be > 0; got {self.noise_multiplier} (0 is no privacy)")
        if not 0.0 < self.delta < 1.0:
            raise UserInputError(f"dp.delta must be in (0, 1); got {self.delta} (typically 1e-5, well below 1/n)")
        if not self.max_grad_norm > 0:
            raise UserInputError(f"dp.max_grad_norm must be > 0; got {self.max_grad_norm}")
        if self.accountant not in ("rdp", "prv"):
            hint = " (gdp can understate ε: it is for reporting only, list it in report_accountants)" \
                if self.accountant == "gdp" else ""
            raise UserInputError(f"dp.accountant must be 'rdp' or 'prv'; got {self.accountant!r}{hint}")
        unknown = [a for a in self.report_accountants if a not in ("rdp", "prv", "gdp")]
        if unknown:
            raise UserInputError(f"dp.report_accountants may hold rdp, prv, gdp; got {unknown}")
        if not 0.0 < self.group_sample_rate <= 1.0:
            raise UserInputError(f"dp.group_sample_rate (q) must be in (0, 1]; got {self.group_sample_rate}")
        if self.subclasses_per_class < 1:
            raise UserInputError(f"dp.subclasses_per_class must be >= 1; got {self.subclasses_per_class}")
        if self.clipping not in ("mixed", "ghost", "materialize"):
            raise UserInputError(f"dp.clipping must be mixed, ghost or materialize; got {self.clipping!r}")

    @property
    def mode(self) -> Literal["target_epsilon", "stop_at_target", "fixed_noise"]:
        if self.noise_multiplier is None:
            return "target_epsilon"
        return "stop_at_target" if self.target_epsilon is not None else "fixed_noise"
