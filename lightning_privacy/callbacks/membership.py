"""Membership audit: signals of members and non-members (+ shadow/reference models) -> attacks -> ROC metrics,
intervals and AOP -> loggers."""

from __future__ import annotations

import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping
from rich.progress import Progress
from torch import Tensor

from lightning_privacy.attacks.membership import ATTACKS, AttackData, MembershipAttack, ShadowSignals, Signals
from lightning_privacy.defenses.bank import MIN_HALF, ModelBank, trainer_settings
from lightning_privacy.callbacks.logging import log_artifacts, log_metrics, log_tags
from lightning_privacy.signals.outputs import collect_signals
from lightning_privacy.errors import UserInputError
from lightning_privacy.metrics.aop import aop
from lightning_privacy.metrics.plots import loss_histogram, roc_loglog, summary_table
from lightning_privacy.metrics.roc import bootstrap_ci, roc_curve, roc_metrics
from lightning_privacy.models.predict import predict_logits

FPRS = (0.0, 0.001, 0.01)
"""TPR is reported at these FPRs for every audit; at ``LOW_FPR`` too when there are ``1 / LOW_FPR`` non-members."""
LOW_FPR = 1e-4


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
    bootstrap: resamples for 95 % intervals (0: none); attack_options: keyword arguments per attack name.
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


HELD_OUT = "held_out_half_audit_labels"


def threshold_protocol(attack: MembershipAttack) -> str:
    """Where the cut of ``acc`` comes from: ``shadow`` (fitted on shadow models), ``fixed`` (a constant of the
    attack, e.g. online LiRA's likelihood ratio 1), or ``held_out_half_audit_labels``: fitted on half of the
    audited samples' own membership labels and scored on the other half — a measure of separability, not an
    accuracy an attacker could reach."""
    return HELD_OUT if attack.threshold is None else attack.threshold_source


_DERIVED = ("_realized_fpr", "_ci95_low", "_ci95_high")


def audited_epochs(trainer: Trainer) -> int:
    """How many epochs the weights being tested trained: the tested checkpoint's epoch + 1, else (weights in
    memory) the epochs the trainer completed."""
    path = trainer.ckpt_path
    if path and Path(path).is_file():
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        return int(checkpoint.get("epoch", -1)) + 1
    return int(trainer.current_epoch)


def best_over_attacks(results: dict[str, dict[str, float]], prefix: str = "best") -> tuple[dict[str, float], dict[str, str]]:
    """``mia/<prefix>/<metric>``: for each metric separately, the best value over the attacks, with the tag
    ``mia.<prefix>_attack.<metric>`` naming the attack; a metric's realised FPR and interval come from that
    attack. ``mia.<prefix>_attack`` names the attack of the best AUC."""
    metrics: dict[str, float] = {}
    tags: dict[str, str] = {}
    keys = [k for k in next(iter(results.values())) if not k.endswith(_DERIVED)]
    for key in keys:
        attack = max((a for a in results if key in results[a]), key=lambda a: results[a][key])
        metrics[f"mia/{prefix}/{key}"] = results[attack][key]
        tags[f"mia.{prefix}_attack.{key}"] = attack
        for suffix in _DERIVED:
            if key + suffix in results[attack]:
                metrics[f"mia/{prefix}/{key}{suffix}"] = results[attack][key + suffix]
    tags[f"mia.{prefix}_attack"] = tags[f"mia.{prefix}_attack.auc"]
    return metrics, tags


def scores_table(target: Signals, is_member: Tensor, scores: dict[str, Tensor], path: Path) -> Path:
    """One row per audited sample: ``index`` (its pool index in the split), ``role`` (``members`` or
    ``nonmembers``), ``is_member``, ``label`` (its class) and one column per attack's score, as parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    assert target.index is not None
    columns = {"index": target.index.long().numpy(),
               "role": ["members" if m else "nonmembers" for m in is_member.tolist()],
               "is_member": is_member.numpy(), "label": target.labels.long().numpy()}
    columns.update({name: s.double().numpy() for name, s in scores.items()})
    pq.write_table(pa.table(columns), path)
    return path


def roc_table(scores: dict[str, Tensor], is_member: Tensor, path: Path) -> Path:
    """Every attack's ROC points (columns ``attack``, ``fpr``, ``tpr``, ``threshold``) as a parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows: dict[str, list] = {"attack": [], "fpr": [], "tpr": [], "threshold": []}
    for name, s in scores.items():
        fpr, tpr, thresholds = roc_curve(s, is_member)
        rows["attack"] += [name] * fpr.numel()
        rows["fpr"] += fpr.tolist()
        rows["tpr"] += tpr.tolist()
        rows["threshold"] += thresholds.tolist()
    pq.write_table(pa.table(rows), path)
    return path


class MembershipAudit(Callback):
    """Runs after each test run (``fit`` tests, then audits): members vs non-members (the test set).

    Logs ``mia/<attack>/{auc,acc,tpr_at_fpr_{0,0.001,0.01}[_realized_fpr],advantage,auc_ci95_*,…}``, ``mia/best/<metric>`` (each the best over attacks, tag ``mia.best_attack.<metric>``),
    ``mia/best_blackbox/auc``, ``privacy/aop_lambda_<λ>`` (+ ``_blackbox``), counts and times; tags
    ``mia.best_attack``, ``mia.best_blackbox_attack``, ``mia.threshold_protocol``; ROC, histogram and table artifacts.
    """

    def __init__(self, config: Optional[MembershipAuditConfig] = None) -> None:
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

    def _signals(self, model: LightningModule, dm, indices: Tensor, *, grads: bool) -> Signals:
        s = collect_signals(model, dm.index_dataloader(indices), index=indices)
        if not grads:
            return s
        from lightning_privacy.signals.gradients import collect_grad_norms

        whitebox = tuple(a for a in self.config.attacks if "grad_norms" in ATTACKS[a].needs)
        norms = collect_grad_norms(model, dm.index_dataloader(indices, batch_size=64), attacks=whitebox)
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

    def attack_data(self, trainer: Trainer, pl_module: LightningModule, audit_index: Tensor, *,
                    epochs: int) -> AttackData:
        """Train (or load) the shadow and reference models the configured attacks need, and their signals;
        helper models train as ``shadow_epochs`` says (by default as many epochs as the audited weights had)."""
        dm, c = trainer.datamodule, self.config
        grads = "grad_norms" in self.needs
        bank = self._bank(trainer, pl_module, epochs=epochs)
        shadows, shadows_on_audit, references, population = [], [], [], None
        helper_epochs: list[int] = []
        start = time.perf_counter()
        if c.num_shadows:
            pool = dm.role_indices("shadow")
            for m in bank.train("shadow", pool, c.num_shadows):
                helper_epochs.append(m.epochs_trained)
                shadows.append(ShadowSignals(self._signals(m.model, dm, pool, grads=grads), m.in_mask))
                shadows_on_audit.append(self._signals(m.model, dm, audit_index, grads=False))
        self.bank_metrics["time/shadows_s"] = time.perf_counter() - start
        start = time.perf_counter()
        if c.num_references:
            population_index = dm.role_indices("reference")
            pool = torch.cat([dm.role_indices("members"), dm.role_indices("nonmembers"), population_index])
            wanted = torch.cat([audit_index, population_index])
            for m in bank.train("reference", pool, c.num_references):
                helper_epochs.append(m.epochs_trained)
                s = self._signals(m.model, dm, wanted, grads=False)
                trained_on = torch.isin(wanted, m.pool[m.in_mask])
                references.append(ShadowSignals(s, trained_on))
            if population_index.numel():
                population = self._signals(pl_module, dm, population_index, grads=False)
        self.bank_metrics["time/references_s"] = time.perf_counter() - start
        self.bank_metrics["mia/n_shadows"] = float(len(shadows))
        self.bank_metrics["mia/n_references"] = float(len(references))
        self.models_trained = bank.trained
        self.bank_metrics["mia/helper_epochs"] = sum(helper_epochs) / len(helper_epochs)
        return AttackData(shadows=shadows, shadows_on_audit=shadows_on_audit, references=references,
                          population=population)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:  # no collectives below: rank 0 audits the full roles alone
            return
        # Lightning's test loop is still in inference mode here; shadows train and white-box signals need autograd.
        with torch.inference_mode(False), torch.enable_grad():
            acc = trainer.callback_metrics.get("test/acc")
            self._audit(trainer, pl_module, test_acc=None if acc is None else float(acc),
                        epochs=audited_epochs(trainer))

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Audits the current weights at the epochs a defense asks for (``audit_epochs``, 1-based)."""
        epoch = trainer.current_epoch + 1
        if not trainer.is_global_zero or epoch not in (getattr(pl_module, "audit_epochs", None) or ()):
            return
        dm = trainer.datamodule
        logits, labels = predict_logits(pl_module, dm.index_dataloader(self._capped(dm.role_indices("nonmembers"))))
        acc = float((logits.argmax(1) == labels).double().mean())
        with torch.inference_mode(False), torch.enable_grad():
            self._audit(trainer, pl_module, test_acc=acc, epochs=epoch)
        log_metrics(trainer, {"test/acc": acc, "audit/epoch": float(epoch)})
        self.history[epoch] = dict(self.metrics, **{"test/acc": acc})

    def _audit(self, trainer: Trainer, pl_module: LightningModule, *, test_acc: Optional[float], epochs: int) -> None:
        c, dm = self.config, trainer.datamodule
        start = time.perf_counter()
        self.bank_metrics = {}
        trained = dm.training_indices() if hasattr(dm, "training_indices") else dm.role_indices("members")
        members_index, nonmembers_index = self._capped(trained), self._capped(dm.role_indices("nonmembers"))
        audit_index = torch.cat([members_index, nonmembers_index])
        target = self._signals(pl_module, dm, audit_index, grads="grad_norms" in self.needs)
        is_member = torch.cat([torch.ones(members_index.numel()), torch.zeros(nonmembers_index.numel())]).bool()
        n_out = nonmembers_index.numel()
        fprs, self.tags = FPRS, {}
        if n_out >= round(1 / LOW_FPR):
            fprs = tuple(sorted(FPRS + (LOW_FPR,)))
        else:
            self.tags[f"mia.tpr_at_fpr_{LOW_FPR:g}"] = (f"skipped: {n_out} non-members audited; TPR at {LOW_FPR:g} "
                                                         f"FPR needs at least {round(1 / LOW_FPR)}")
        if n_out < 1 / 0.001:
            warnings.warn(f"only {n_out} non-members: TPR at 0.001 FPR needs about 1000 to be meaningful",
                          stacklevel=1)
        schedule = self.helper_schedule(trainer, epochs)
        self.bank_metrics["mia/helper_epochs"] = float(schedule["epochs"])  # what helpers train for (a cap when
        self.tags["mia.helper_epochs_rule"] = schedule["rule"]             # early-stopped: then their mean)
        data = (self.attack_data(trainer, pl_module, audit_index, epochs=epochs) if c.num_shadows or c.num_references
                else AttackData())
        self.results, self.scores, protocols = {}, {}, {}
        with Progress(transient=True) as progress:
            task = progress.add_task("membership attacks", total=len(c.attacks))
            for name in c.attacks:
                attack: MembershipAttack = ATTACKS[name](**c.attack_options.get(name, {}))
                attack.fit(data)
                scores = attack.score(target).double()
                result = roc_metrics(scores, is_member, fprs=fprs, seed=c.seed, threshold=attack.threshold)
                protocols[name] = threshold_protocol(attack)
                if c.bootstrap:
                    result.update(bootstrap_ci(scores, is_member, n=c.bootstrap, seed=c.seed))
                self.results[name], self.scores[name] = result, scores
                progress.advance(task)
        self._log(trainer, target, is_member, protocols, start, test_acc)

    def _log(self, trainer: Trainer, target: Signals, is_member: Tensor, protocols: dict[str, str],
             start: float, acc: Optional[float]) -> None:
        c = self.config
        blackbox = [a for a in self.results if ATTACKS[a].blackbox]
        metrics = {f"mia/{a}/{k}": v for a, r in self.results.items() for k, v in r.items()}
        best_metrics, best_tags = best_over_attacks(self.results)
        metrics.update(best_metrics)
        metrics.update({"mia/n_members": float(is_member.sum()), "mia/n_nonmembers": float((~is_member).sum())})
        tags = {**self.tags, **best_tags, "mia.threshold_protocol": ",".join(f"{a}:{p}" for a, p in protocols.items())}
        best_bb = max(blackbox, key=lambda a: self.results[a]["auc"]) if blackbox else None
        if best_bb is not None:
            metrics["mia/best_blackbox/auc"] = self.results[best_bb]["auc"]
            tags["mia.best_blackbox_attack"] = best_bb
        if acc is not None:
            for lam in c.aop_lambdas:
                metrics[f"privacy/aop_lambda_{lam:g}"] = aop(float(acc), metrics["mia/best/auc"], lam)
                if best_bb is not None:
                    metrics[f"privacy/aop_lambda_{lam:g}_blackbox"] = aop(float(acc), metrics["mia/best_blackbox/auc"], lam)
        else:
            warnings.warn("no test/acc from the test run: AOP is not logged", stacklevel=1)
        metrics.update(self.bank_metrics)
        metrics["time/audit_s"] = time.perf_counter() - start
        self.metrics = metrics
        log_metrics(trainer, metrics)
        self.tags = tags
        log_tags(trainer, tags)
        if c.artifacts:
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp)
                (out / "mia_summary.md").write_text(summary_table(
                    self.results, ["auc", "auc_ci95_low", "auc_ci95_high", "acc", "tpr_at_fpr_0.001",
                                   "tpr_at_fpr_0.01", "advantage"]))
                files = [out / "mia_summary.md",
                         roc_loglog({a: (s, is_member) for a, s in self.scores.items()}, out / "mia_roc_loglog.png"),
                         loss_histogram(target.losses[is_member], target.losses[~is_member], out / "loss_histogram.png"),
                         roc_table(self.scores, is_member, out / "roc_curves.parquet"),
                         scores_table(target, is_member, self.scores, out / "scores.parquet")]
                log_artifacts(trainer, files, "audit")
