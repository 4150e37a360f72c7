"""Audits by their config key: ``audit.<name>`` in a config builds ``AUDITS[name].callback(config)``. A new
audit is one callback (an ``AuditCallback`` that emits ``AuditResult``s), its config dataclass and one entry here;
the CLI declares ``--audit.<name>``, builds the callback and prints its results from this table alone. An audit
that needs no classifier test (a generative model's) hooks e.g. ``on_fit_end`` itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from lightning_privacy.callbacks.audit import AuditCallback
from lightning_privacy.callbacks.epsilon_audit import EpsilonAudit, EpsilonAuditConfig
from lightning_privacy.callbacks.inversion import InversionAudit, InversionAuditConfig
from lightning_privacy.callbacks.gan_fidelity import GanFidelity, GanFidelityConfig
from lightning_privacy.callbacks.gan_membership import GanMembershipAudit, GanMembershipAuditConfig
from lightning_privacy.callbacks.membership import MembershipAudit, MembershipAuditConfig


@dataclass(frozen=True)
class AuditEntry:
    """``config``: the dataclass of ``audit.<name>``; ``callback``: builds the callback from it; ``subcommands``:
    the CLI subcommands that run it."""

    config: type
    callback: Callable[[Any], AuditCallback]
    help: str
    subcommands: tuple[str, ...] = ("fit", "test")


AUDITS: dict[str, AuditEntry] = {
    "membership": AuditEntry(MembershipAuditConfig, MembershipAudit,
                             "Membership-inference audit run after testing (and during fit at its `epochs`)."),
    "epsilon": AuditEntry(EpsilonAuditConfig, EpsilonAudit,
                          "One-run empirical ε lower bound (Steinke et al. 2023): canaries held in or out.",
                          subcommands=("fit",)),
    "inversion": AuditEntry(InversionAuditConfig, InversionAudit,
                            "Model inversion after testing: the layer-wise decoder attack and the optimization attack "
                            "(class-DP paper, Algorithm 1) with the MIA distance."),
    "gan_membership": AuditEntry(GanMembershipAuditConfig, GanMembershipAudit,
                                 "GAN membership attacks (WB, TVD, MC-Single/MC-Set) on the last weights when fit "
                                 "ends.", subcommands=("fit",)),
    "gan_fidelity": AuditEntry(GanFidelityConfig, GanFidelity,
                               "Domain FID / Intra-FID / IS and downstream accuracy of a generative model when fit "
                               "ends.", subcommands=("fit",)),
}


def register_audit(name: str, entry: AuditEntry) -> None:
    """Add an audit kind (before the CLI is built)."""
    if name in AUDITS:
        raise ValueError(f"an audit named {name!r} is already registered")
    AUDITS[name] = entry
