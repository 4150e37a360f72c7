"""``audit.gan_membership``: the GAN membership attacks (``attacks/generative``) at the end of a generative fit.

A GAN fit has no classifier test (the CLI tests only models with a test step), so this audit hooks
``on_fit_end`` and audits the last weights. Roles: the members (the GAN's training set), the scored holdout
(``holdout_role``, the non-members by default) and the attacker's PCA set (``pca_role``, the ``reference`` role
by default: disjoint from every sample it scores, as the PIGAN paper's Sec. 5.1.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor

from lightning_privacy.attacks.generative import fit_pca, leakage_metrics, mc_attack, reduce_scores, tvd, wb_accuracy
from lightning_privacy.callbacks.audit import AuditCallback
from lightning_privacy.errors import UserInputError
from lightning_privacy.results import AuditResult

GAN_ATTACKS = ("wb", "tvd", "mc")


@dataclass
class GanMembershipAuditConfig:
    """``audit.gan_membership`` settings.

    attacks: any of ``wb`` (Hayes et al.; with several codes or discriminators also ``wb_mean``), ``tvd``
    (Mukherjee et al.) and ``mc`` (MC-Single and MC-Set, Hilprecht et al.). mc_generated (n), mc_samples (M),
    mc_repeats, pca_components: the MC attacks' sizes (the paper: 10⁵, 100, 20, 40); mc_regenerate: fresh generated
    samples in each repeat (the paper), else one set reused by every repeat (CPU-sized runs). tvd_bins: equal bins of D's
    score over [0, 1]. bootstrap: resamples of the AUC / TPR intervals (0: none).
    """

    attacks: tuple[str, ...] = GAN_ATTACKS
    holdout_role: str = "nonmembers"
    pca_role: str = "reference"
    mc_generated: int = 100_000
    mc_samples: int = 100
    mc_repeats: int = 20
    mc_regenerate: bool = True
    pca_components: int = 40
    tvd_bins: int = 50
    bootstrap: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        self.attacks = tuple(self.attacks)
        unknown = set(self.attacks) - set(GAN_ATTACKS)
        if unknown or not self.attacks:
            raise UserInputError(f"audit.gan_membership.attacks must be a non-empty list of {list(GAN_ATTACKS)}; "
                                 f"got {list(self.attacks)}")
        for key in ("mc_generated", "mc_samples", "mc_repeats", "pca_components", "tvd_bins"):
            if getattr(self, key) < 1:
                raise UserInputError(f"audit.gan_membership.{key} must be >= 1; got {getattr(self, key)}")
        if self.bootstrap < 0:
            raise UserInputError(f"audit.gan_membership.bootstrap must be >= 0; got {self.bootstrap}")


def _images(dm, role: str) -> tuple[Tensor, Tensor]:
    xs, ys = [], []
    for x, y in dm.role_dataloader(role):
        xs.append(x)
        ys.append(y)
    return torch.cat(xs), torch.cat(ys)


def _scores(model, x: Tensor, y: Tensor, chunk: int = 1024) -> Tensor:
    """D's scores in chunks (a holdout of 63 000 images at once would need gigabytes of activations)."""
    return torch.cat([model.discriminator_scores(x[s:s + chunk], y[s:s + chunk]).cpu()
                      for s in range(0, x.shape[0], chunk)])


class GanMembershipAudit(AuditCallback):
    """Runs the configured generative attacks on rank 0 when fit ends and emits one ``AuditResult``
    (``name="gan_membership"``): ``gan_mia/wb/acc``, ``gan_mia/tvd``, ``gan_mia/mc_single/acc``,
    ``gan_mia/mc_set/acc`` (each MC figure with ``_std`` over the repeats), ``gan_mia/<attack>/auc`` (+ bootstrap
    interval) and, over ≥ 1000 non-member scores, ``gan_mia/<attack>/tpr_at_fpr_{0.001,0.01}``."""

    def __init__(self, config: Optional[GanMembershipAuditConfig] = None) -> None:
        super().__init__()
        self.config = config or GanMembershipAuditConfig()

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if not (callable(getattr(pl_module, "discriminator_scores", None)) and callable(getattr(pl_module, "sample", None))):
            raise UserInputError(f"audit.gan_membership audits generative models (GAN, PIGAN); "
                                 f"{type(pl_module).__name__} is not one: use audit.membership for classifiers")
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "role_dataloader"):
            raise UserInputError("audit.gan_membership needs a PrivacyDataModule (members, holdout and PCA roles)")
        dm.setup("fit")
        sizes = dm.splits.sizes()
        c = self.config
        if "mc" in c.attacks:
            if sizes.get(c.pca_role, 0) < 2:
                raise UserInputError(f"the MC attacks fit their PCA on the {c.pca_role!r} role, which has "
                                     f"{sizes.get(c.pca_role, 0)} samples: give it some, e.g. "
                                     f"--data.init_args.{c.pca_role} 0.1")
            if min(sizes["members"], sizes[c.holdout_role]) < c.mc_samples:
                raise UserInputError(f"audit.gan_membership.mc_samples (M = {c.mc_samples}) exceeds the members "
                                     f"({sizes['members']}) or the {c.holdout_role} ({sizes[c.holdout_role]}); lower it")

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero or trainer.interrupted:
            return
        self.emit(trainer, self.audit(trainer.datamodule, pl_module))

    def audit(self, dm, model: LightningModule) -> AuditResult:
        c = self.config
        x_in, y_in = _images(dm, "members")
        x_out, y_out = _images(dm, c.holdout_role)
        metrics: dict[str, float] = {"gan_mia/n_members": float(x_in.shape[0]),
                                     "gan_mia/n_holdout": float(x_out.shape[0]),
                                     # WB's chance: the members' share of the scored set (10 % in the paper)
                                     "gan_mia/wb/chance": x_in.shape[0] / (x_in.shape[0] + x_out.shape[0])}
        artifacts = {}
        if "wb" in c.attacks or "tvd" in c.attacks:
            s_in, s_out = _scores(model, x_in, y_in), _scores(model, x_out, y_out)
            is_member = torch.cat([torch.ones(len(s_in)), torch.zeros(len(s_out))]).bool()
            if "wb" in c.attacks:
                reductions = ("max", "mean") if s_in.shape[1] > 1 else ("max",)
                for how in reductions:
                    name = "wb" if how == "max" else "wb_mean"
                    scores = torch.cat([reduce_scores(s_in, how), reduce_scores(s_out, how)])
                    metrics[f"gan_mia/{name}/acc"] = wb_accuracy(scores, is_member, seed=c.seed)
                    metrics.update({f"gan_mia/{name}/{k}": v for k, v in
                                    leakage_metrics(scores, is_member, bootstrap=c.bootstrap, seed=c.seed).items()})
            if "tvd" in c.attacks:
                metrics["gan_mia/tvd"] = tvd(s_in, s_out, bins=c.tvd_bins)
            artifacts["audit/gan_discriminator_scores.png"] = _histogram_writer(
                s_in.max(dim=1).values, s_out.max(dim=1).values, several=s_in.shape[1] > 1)
        if "mc" in c.attacks:
            x_pca, _ = _images(dm, c.pca_role)
            torch.manual_seed(c.seed)
            res = mc_attack(x_in, x_out, lambda n: model.sample(n)[0], fit_pca(x_pca, c.pca_components),
                            m=c.mc_samples, n_generated=c.mc_generated, repeats=c.mc_repeats, seed=c.seed,
                            regenerate=c.mc_regenerate)
            metrics.update({f"gan_mia/{k}": v for k, v in res.summary().items()})
            metrics["gan_mia/mc/eps"] = float(torch.tensor(res.eps).mean())
            for name in ("mc_single", "mc_set"):  # both rank by the same f
                metrics.update({f"gan_mia/{name}/{k}": v for k, v in
                                leakage_metrics(res.scores, res.is_member, bootstrap=c.bootstrap, seed=c.seed).items()})
        summary = tuple(k for k in ("gan_mia/wb/acc", "gan_mia/tvd", "gan_mia/mc_set/acc", "gan_mia/mc_single/acc")
                        if k in metrics)
        tags = {"gan_mia.pca_role": c.pca_role, "gan_mia.holdout_role": c.holdout_role,
                "gan_mia.mc_regenerate": str(c.mc_regenerate).lower(),
                "gan_mia.tvd_bins": str(c.tvd_bins)}
        return AuditResult(name="gan_membership", metrics=metrics, tags=tags, artifacts=artifacts, summary=summary)


def _histogram_writer(members: Tensor, holdout: Tensor, several: bool):
    """D's scores on members and holdout (the PIGAN paper's Fig. 3); ``several``: the max over codes or
    discriminators."""

    def write(path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 4))
        for scores, label in ((members, "train"), (holdout, "holdout")):
            ax.hist(scores.numpy(), bins=50, range=(0, 1), alpha=0.55, density=True, label=label)
        xlabel = "discriminator score" + (" (max over codes / discriminators)" if several else "")
        ax.set(xlabel=xlabel, ylabel="density", title="D on train vs holdout")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)

    return write
