"""Membership audit: signals of members and non-members (+ shadow/reference models) -> attacks -> ROC metrics,
intervals and AOP -> loggers."""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping
from torch import Tensor

from lightning_privacy.attacks.membership import ATTACKS, AttackData, ShadowSignals, Signals
from lightning_privacy.attacks.membership.evaluate import Evaluation, best_over_attacks, evaluate_attacks
from lightning_privacy.callbacks.audit import AuditCallback
from lightning_privacy.defenses.bank import MIN_HALF, BankModel, ModelBank, trainer_settings
from lightning_privacy.errors import UserInputError
from lightning_privacy.metrics.aop import aop
from lightning_privacy.metrics.plots import loss_histogram, roc_loglog, summary_table
from lightning_privacy.metrics.tables import roc_table, scores_table
from lightning_privacy.models.predict import predict_logits
from lightning_privacy.progress import Bar, bar, progress_disabled
from lightning_privacy.results import Artifact, AuditResult
from lightning_privacy.signals.gradients import collect_grad_norms
from lightning_privacy.signals.outputs import collect_signals

log = logging.getLogger(__name__)
GRAD_BATCH = 64


@dataclass
class MembershipAuditConfig:
    """``audit.membership`` settings.

    attacks: names from ``lightning_privacy.attacks.membership.ATTACKS``; aop_lambdas: AOP's λ values;
    num_shadows: offline shadow models on halves of the shadow role; num_references: online reference models
    on halves of members ∪ non-members ∪ reference role; shadow_recipe: ``target`` (same defense and
    hyperparameters: the adaptive attacker) or ``erm``; shadow_epochs: how long helper models train — null (default):
    as many epochs as the audited weights trained (the checkpoint's epoch), ``early_stopping``: the target
    trainer's ``EarlyStopping`` rule (monitor, patience, ``max_epochs`` as the cap) on each helper's own 10 %
    validation split, keeping its best weights, an int: that many epochs;
    bootstrap: resamples for 95 % intervals (0: none); attack_options: keyword arguments per attack name;
    epochs: also audit the weights at the end of these training epochs (1-based; the RelaxLoss paper's
    early-stopping baseline, App. B.5), each audit a step of the run with ``test/acc`` on the non-members then.
    """

    attacks: list[str] = field(default_factory=lambda: ["loss"])
    aop_lambdas: list[float] = field(default_factory=lambda: [2.0])
    max_samples_per_role: Optional[int] = None
    seed: int = 0
    num_shadows: int = 0
    num_references: int = 0
    shadow_recipe: Literal["target", "erm"] = "target"
    shadow_epochs: Optional[Union[int, Literal["early_stopping"]]] = None
    bootstrap: int = 200
    artifacts: bool = True
    attack_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    cache_dir: Optional[str] = "outputs/bank"
    epochs: Optional[list[int]] = None


def audited_epochs(trainer: Trainer) -> int:
    """How many epochs the weights being tested trained: the tested checkpoint's epoch + 1, else (weights in
    memory) the epochs the trainer completed."""
    path = trainer.ckpt_path
    if path and Path(path).is_file():
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        return int(checkpoint.get("epoch", -1)) + 1
    return int(trainer.current_epoch)


class MembershipAudit(AuditCallback):
    """Runs after each test run (``fit`` tests, then audits): members vs non-members (the test set); emits an
    ``AuditResult`` (``name="membership"``) that holds:

    ``mia/<attack>/{auc,acc,tpr_at_fpr_{0,0.001,0.01}[_realized_fpr],advantage,auc_ci95_*,…}``,
    ``mia/best/<metric>`` (each the best over attacks, tag ``mia.best_attack.<metric>``), ``mia/best_blackbox/auc``, ``privacy/aop_lambda_<λ>`` (+ ``_blackbox``), counts and times; tags
    ``mia.best_attack``, ``mia.best_blackbox_attack``, ``mia.threshold_protocol``; ROC, histogram and table artifacts.
    """

    def __init__(self, config: Optional[MembershipAuditConfig] = None) -> None:
        super().__init__()
        self.config = c = config or MembershipAuditConfig()
        unknown = [a for a in c.attacks if a not in ATTACKS]
        if unknown or not c.attacks:
            raise UserInputError(f"unknown membership attacks {unknown or '[]'}; available: {sorted(ATTACKS)}")
        for lam in c.aop_lambdas:
            aop(1.0, 0.5, lam)
        if c.max_samples_per_role is not None and c.max_samples_per_role < 1:
            raise UserInputError("audit.membership.max_samples_per_role must be >= 1 or null")
        if not (c.shadow_epochs is None or c.shadow_epochs == "early_stopping"
                or isinstance(c.shadow_epochs, int) and c.shadow_epochs >= 1):
            raise UserInputError("audit.membership.shadow_epochs must be null (the audited weights' epochs), "
                                 f"'early_stopping' (the target's stopping rule) or an int >= 1; got {c.shadow_epochs!r}")
        if c.epochs is not None and (not c.epochs or any(e < 1 for e in c.epochs)
                                     or list(c.epochs) != sorted(set(c.epochs))):
            raise UserInputError(f"audit.membership.epochs must be increasing positive epoch numbers; got {c.epochs}")
        if c.num_shadows < 0 or c.num_references < 0 or c.bootstrap < 0:
            raise UserInputError("audit.membership num_shadows, num_references and bootstrap must be >= 0")
        self.needs = set().union(*(ATTACKS[a].needs for a in c.attacks))
        for kind, count, setting in (("shadows", c.num_shadows, "num_shadows"),
                                     ("references", c.num_references, "num_references")):
            least = max([getattr(ATTACKS[a], "min_models", 1) for a in c.attacks if kind in ATTACKS[a].needs],
                        default=0)
            if count < least:
                users = [a for a in c.attacks if kind in ATTACKS[a].needs]
                raise UserInputError(f"attacks {users} need at least {least} {kind[:-1]} models; got "
                                     f"audit.membership.{setting}={count}")
        self.results: dict[str, dict[str, float]] = {}
        self.metrics: dict[str, float] = {}
        self.tags: dict[str, str] = {}
        self.scores: dict[str, Tensor] = {}
        self.bank_metrics: dict[str, float] = {}
        self.models_trained = 0
        self.history: dict[int, dict[str, float]] = {}  # epoch -> metrics of the audits during training

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Check the data roles the attacks need before anything is trained."""
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "role_indices"):
            raise UserInputError("the membership audit needs a PrivacyDataModule (its member and non-member roles)")
        sizes = dm.splits.sizes()
        if self.config.num_shadows and sizes["shadow"] < 2 * MIN_HALF:
            raise UserInputError(f"shadow models need a shadow role of at least {2 * MIN_HALF} samples; it has "
                                 f"{sizes['shadow']}: set data.init_args.shadow (e.g. 0.2)")
        if self.config.shadow_epochs == "early_stopping":
            self._stopping_rule(trainer)
        if "population" in self.needs and sizes["reference"] < 1:
            raise UserInputError("RMIA needs population samples from the reference role; it is empty: set "
                                 "data.init_args.reference (e.g. 0.1)")

    def _capped(self, indices: Tensor) -> Tensor:
        cap = self.config.max_samples_per_role
        if cap is None or indices.numel() <= cap:
            return indices
        g = torch.Generator().manual_seed(self.config.seed)
        return indices[torch.randperm(indices.numel(), generator=g)[:cap]].sort().values

    def _signals(self, model: LightningModule, dm, indices: Tensor, *, grads: bool,
                 progress: Optional[Bar] = None) -> Signals:
        """Black-box signals of ``model`` on ``indices`` (+ gradient norms when ``grads``); ``progress`` advances
        per batch."""
        loader = dm.index_dataloader(indices)
        s = collect_signals(model, progress.track(loader) if progress else loader, index=indices)
        return s if not grads else self._with_grads(model, dm, s, progress)

    def _with_grads(self, model: LightningModule, dm, s: Signals, progress: Optional[Bar] = None) -> Signals:
        assert s.index is not None
        whitebox = tuple(a for a in self.config.attacks if "grad_norms" in ATTACKS[a].needs)
        loader = dm.index_dataloader(s.index, batch_size=GRAD_BATCH)
        norms = collect_grad_norms(model, progress.track(loader) if progress else loader, attacks=whitebox)
        return Signals(logits=s.logits, labels=s.labels, losses=s.losses, grad_norms=norms, index=s.index)

    @staticmethod
    def _stopping_rule(trainer: Trainer) -> EarlyStopping:
        rules = [cb for cb in trainer.callbacks if isinstance(cb, EarlyStopping)]
        if not rules:
            raise UserInputError("audit.membership.shadow_epochs: early_stopping applies the target trainer's "
                                 "EarlyStopping rule, and the trainer has none: add one (e.g. --config "
                                 "conf/trainer/early_stopping.yaml) or set shadow_epochs to null or an int")
        if rules[0].mode != "max":
            raise UserInputError(f"audit.membership.shadow_epochs: early_stopping stops helpers on a metric to "
                                 f"maximize; the trainer's EarlyStopping minimizes {rules[0].monitor!r}")
        return rules[0]

    def helper_schedule(self, trainer: Trainer, audited_epochs: int) -> dict[str, Any]:
        """The bank's ``epochs``/``patience``/``monitor`` and the rule's name, for weights trained ``audited_epochs``."""
        c = self.config
        if c.shadow_epochs == "early_stopping":
            rule = self._stopping_rule(trainer)
            return {"epochs": max(1, trainer.max_epochs or 1), "patience": rule.patience, "monitor": rule.monitor,
                    "rule": "early_stopping"}
        if c.shadow_epochs is not None:
            return {"epochs": int(c.shadow_epochs), "patience": None, "monitor": "val/acc", "rule": "fixed"}
        return {"epochs": max(1, audited_epochs), "patience": None, "monitor": "val/acc", "rule": "audited_weights"}

    def _bank(self, trainer: Trainer, pl_module: LightningModule, *, epochs: int) -> ModelBank:
        c = self.config
        schedule = self.helper_schedule(trainer, epochs)
        return ModelBank(
            target=pl_module, datamodule=trainer.datamodule, recipe=c.shadow_recipe, epochs=schedule["epochs"],
            patience=schedule["patience"], monitor=schedule["monitor"],
            limit_train_batches=trainer.limit_train_batches or 1.0, accelerator="cpu" if pl_module.device.type == "cpu" else "auto",
            seed=c.seed, cache_dir=Path(c.cache_dir) if c.cache_dir else None,
            trainer_settings=trainer_settings(trainer),
        )

    def train_helpers(self, trainer: Trainer, pl_module: LightningModule, *,
                      epochs: int) -> tuple[list[BankModel], list[BankModel]]:
        """Train (or load) the shadow and reference models the configured attacks need; helper models train as
        ``shadow_epochs`` says (by default as many epochs as the audited weights had). Logs one line."""
        dm, c = trainer.datamodule, self.config
        if not (c.num_shadows or c.num_references):
            return [], []
        bank = self._bank(trainer, pl_module, epochs=epochs)
        start = time.perf_counter()
        shadows = bank.train("shadow", dm.role_indices("shadow"), c.num_shadows) if c.num_shadows else []
        self.bank_metrics["time/shadows_s"] = time.perf_counter() - start
        references: list[BankModel] = []
        if c.num_references:
            references = bank.train("reference", self._reference_pool(dm), c.num_references)
        self.bank_metrics["time/references_s"] = time.perf_counter() - start - self.bank_metrics["time/shadows_s"]
        helpers = shadows + references
        self.bank_metrics["mia/n_shadows"] = float(len(shadows))
        self.bank_metrics["mia/n_references"] = float(len(references))
        self.models_trained = bank.trained
        if helpers:
            self.bank_metrics["mia/helper_epochs"] = sum(m.epochs_trained for m in helpers) / len(helpers)
            log.info("audit: trained %d of %d helper models (%d shadow, %d reference) in %.1f s (cache: %d hits)",
                     bank.trained, len(helpers), len(shadows), len(references), time.perf_counter() - start,
                     sum(m.cached for m in helpers))
        return shadows, references

    @staticmethod
    def _reference_pool(dm) -> Tensor:
        return torch.cat([dm.role_indices("members"), dm.role_indices("nonmembers"), dm.role_indices("reference")])

    def collect(self, pl_module: LightningModule, dm, audit_index: Tensor, shadows: list[BankModel],
                references: list[BankModel]) -> tuple[Signals, AttackData]:
        """The target's signals on ``audit_index`` and the helpers' (shadows on their pool and the audited samples,
        references on the audited and population samples), in one phase with one progress bar over models ×
        batches; then, for white-box attacks, the per-sample gradient norms of the target and the shadows, in a
        second. Logs one line per phase."""
        population_index = dm.role_indices("reference") if references else torch.zeros(0, dtype=torch.long)
        shadow_pool = dm.role_indices("shadow") if shadows else None
        wanted = torch.cat([audit_index, population_index])
        passes: list[tuple[LightningModule, Tensor]] = [(pl_module, audit_index)]
        passes += [(m.model, ix) for m in shadows for ix in (shadow_pool, audit_index)]
        passes += [(m.model, wanted) for m in references]
        if population_index.numel():
            passes.append((pl_module, population_index))
        start = time.perf_counter()
        with bar("signals", total=sum(len(dm.index_dataloader(ix)) for _, ix in passes)) as progress:
            out = [self._signals(model, dm, ix, grads=False, progress=progress) for model, ix in passes]
        log.info("audit: collected signals of %d models on %d samples in %.1f s", 1 + len(shadows) + len(references),
                 torch.unique(torch.cat([ix for _, ix in passes])).numel(), time.perf_counter() - start)
        target, rest = out[0], out[1:]
        on_pool, on_audit = rest[0:2 * len(shadows):2], rest[1:2 * len(shadows):2]
        on_wanted = rest[2 * len(shadows):2 * len(shadows) + len(references)]
        if "grad_norms" in self.needs:
            whitebox = [target, *on_pool]
            start = time.perf_counter()
            total = sum(len(dm.index_dataloader(s.index, batch_size=GRAD_BATCH)) for s in whitebox)
            with bar("per-sample gradients", total=total) as progress:
                target, *on_pool = [self._with_grads(model, dm, s, progress)
                                    for model, s in zip([pl_module, *(m.model for m in shadows)], whitebox)]
            log.info("audit: per-sample gradients of %d models on %d samples in %.1f s", len(whitebox),
                     torch.unique(torch.cat([s.index for s in whitebox])).numel(), time.perf_counter() - start)
        data = AttackData(
            shadows=[ShadowSignals(s, m.in_mask) for s, m in zip(on_pool, shadows)], shadows_on_audit=list(on_audit),
            references=[ShadowSignals(s, torch.isin(wanted, m.pool[m.in_mask])) for s, m in zip(on_wanted, references)],
            population=rest[-1] if population_index.numel() else None)
        return target, data

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:  # no collectives below: rank 0 audits the full roles alone
            return
        # Lightning's test loop is still in inference mode here; shadows train and white-box signals need autograd.
        with torch.inference_mode(False), torch.enable_grad():
            acc = trainer.callback_metrics.get("test/acc")
            self.emit(trainer, self.audit(trainer, pl_module, test_acc=None if acc is None else float(acc),
                                          epochs=audited_epochs(trainer)))

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Audits the current weights at the end of each epoch in ``epochs`` (1-based)."""
        epoch = trainer.current_epoch + 1
        if not trainer.is_global_zero or epoch not in (self.config.epochs or ()):
            return
        dm = trainer.datamodule
        logits, labels = predict_logits(pl_module, dm.index_dataloader(self._capped(dm.role_indices("nonmembers"))))
        acc = float((logits.argmax(1) == labels).double().mean())
        with torch.inference_mode(False), torch.enable_grad():
            result = self.audit(trainer, pl_module, test_acc=acc, epochs=epoch)
        result.metrics.update({"test/acc": acc, "audit/epoch": float(epoch)})
        self.history[epoch] = dict(result.metrics)
        self.emit(trainer, result)

    def audit(self, trainer: Trainer, pl_module: LightningModule, *, test_acc: Optional[float],
              epochs: int) -> AuditResult:
        """Audit ``pl_module``'s current weights, trained ``epochs`` epochs; ``test_acc`` feeds AOP."""
        c, dm = self.config, trainer.datamodule
        start = time.perf_counter()
        self.bank_metrics = {}
        trained = dm.training_indices() if hasattr(dm, "training_indices") else dm.role_indices("members")
        members_index, nonmembers_index = self._capped(trained), self._capped(dm.role_indices("nonmembers"))
        audit_index = torch.cat([members_index, nonmembers_index])
        is_member = torch.cat([torch.ones(members_index.numel()), torch.zeros(nonmembers_index.numel())]).bool()
        if nonmembers_index.numel() < 1 / 0.001:
            warnings.warn(f"only {nonmembers_index.numel()} non-members: TPR at 0.001 FPR needs about 1000 to be "
                          "meaningful", stacklevel=1)
        schedule = self.helper_schedule(trainer, epochs)
        # what helpers train for (with early stopping the cap, replaced by the helpers' mean once they trained)
        self.bank_metrics["mia/helper_epochs"] = float(schedule["epochs"])
        # the trainer's progress-bar switch (--trainer.enable_progress_bar false) turns off the audit's bars too
        with progress_disabled(trainer.progress_bar_callback is None):
            shadows, references = self.train_helpers(trainer, pl_module, epochs=epochs)
            target, data = self.collect(pl_module, dm, audit_index, shadows, references)
            evaluation = evaluate_attacks(c.attacks, data, target, is_member, options=c.attack_options, seed=c.seed,
                                          bootstrap=c.bootstrap)
        if c.bootstrap:
            log.info("audit: bootstrap %d resamples × %d attacks in %.1f s", c.bootstrap, len(c.attacks),
                     evaluation.seconds["bootstrap"])
        evaluation.tags["mia.helper_epochs_rule"] = schedule["rule"]
        self.results, self.scores = evaluation.results, evaluation.scores
        result = self._result(evaluation, target, is_member, test_acc)
        result.metrics["time/audit_s"] = time.perf_counter() - start
        self.metrics, self.tags = result.metrics, result.tags
        return result

    def _result(self, evaluation: Evaluation, target: Signals, is_member: Tensor,
                acc: Optional[float]) -> AuditResult:
        c, results = self.config, evaluation.results
        blackbox = [a for a in results if ATTACKS[a].blackbox]
        metrics = {f"mia/{a}/{k}": v for a, r in results.items() for k, v in r.items()}
        best_metrics, best_tags = best_over_attacks(results)
        metrics.update(best_metrics)
        metrics.update({"mia/n_members": float(is_member.sum()), "mia/n_nonmembers": float((~is_member).sum())})
        tags = {**evaluation.tags, **best_tags,
                "mia.threshold_protocol": ",".join(f"{a}:{p}" for a, p in evaluation.protocols.items())}
        best_bb = max(blackbox, key=lambda a: results[a]["auc"]) if blackbox else None
        if best_bb is not None:
            metrics["mia/best_blackbox/auc"] = results[best_bb]["auc"]
            tags["mia.best_blackbox_attack"] = best_bb
        if acc is not None:
            for lam in c.aop_lambdas:
                metrics[f"privacy/aop_lambda_{lam:g}"] = aop(float(acc), metrics["mia/best/auc"], lam)
                if best_bb is not None:
                    metrics[f"privacy/aop_lambda_{lam:g}_blackbox"] = aop(float(acc), metrics["mia/best_blackbox/auc"], lam)
        else:
            warnings.warn("no test/acc from the test run: AOP is not logged", stacklevel=1)
        metrics.update(self.bank_metrics)
        artifacts: dict[str, Artifact] = {}
        if c.artifacts:
            scores = evaluation.scores
            assert target.index is not None
            artifacts = {
                "audit/mia_summary.md": summary_table(results, ["auc", "auc_ci95_low", "auc_ci95_high", "acc",
                                                                "tpr_at_fpr_0.001", "tpr_at_fpr_0.01", "advantage"]),
                "audit/mia_roc_loglog.png": lambda p: roc_loglog({a: (s, is_member) for a, s in scores.items()}, p),
                "audit/loss_histogram.png": lambda p: loss_histogram(target.losses[is_member],
                                                                     target.losses[~is_member], p),
                "audit/roc_curves.parquet": lambda p: roc_table(scores, is_member, p),
                "audit/scores.parquet": lambda p: scores_table(target.index, target.labels, is_member, scores, p),
            }
        summary = ("mia/best/auc", "mia/best/tpr_at_fpr_0.001", *(f"privacy/aop_lambda_{lam:g}" for lam in c.aop_lambdas))
        return AuditResult(name="membership", metrics=metrics, tags=tags, artifacts=artifacts, summary=summary)
