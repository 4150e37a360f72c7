"""DPMixin: DP-SGD for any LightningModule through public Lightning hooks (Abadi et al. 2016, Alg. 1; class-DP
paper Alg. 2).

A module takes it first among its bases (``class Model(DPMixin, LightningModule)``) and calls
``self.configure_dp(dp)`` in ``__init__`` once ``dp.module`` exists. Then:

- the datamodule hands its members loader to ``training_loader``: Poisson sampling (records, or groups);
- automatic optimization: ``training_step`` returns ``self.private_training_step(batch)`` (the per-sample
  ``objective`` of ``self(x)`` — what a classifier has);
- manual optimization, any number of optimizers: the private loss is ``dp.module``'s per-sample loss on member
  data, computed inside ``with self.dp_recording():`` and handed to ``self.manual_backward(per_sample)`` as an
  (n,) tensor, once per drawn batch (an empty draw too: it releases noise only). Every other ``manual_backward``
  (a scalar loss: a generator's, a discriminator's loss on generated data) passes through unchanged.

The ledger belongs to the weights: checkpoints carry it and a record of any training without DP, a second
``fit`` continues the count, and a DP fit of weights trained without DP on the same members is refused.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Any, ClassVar, Iterator, Optional

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from lightning_privacy.errors import UserInputError
from lightning_privacy.privacy.config import DPConfig
from lightning_privacy.privacy.dp_sgd import PrivateTraining, prepare_for_dp, subclass_groups

SHIPPED_NETWORKS = "lightning_privacy.models"
"""Networks from this package are known to be per-sample: the first-step consistency probe skips them."""


class DPMixin:
    """DP-SGD wiring for a LightningModule: sampling, the private backward, the ledger, logs and checkpoints.

    ``dp_refusal``: why a subclass cannot be private (member data reaches the weights outside the clipped
    objective); ``dp``: the ``DPConfig`` or None. ``logs_member_metrics`` says whether the un-noised member
    statistics (``train/*``, ``dp/clipped_fraction``, the class-DP groups) may be logged.
    """

    dp_refusal: ClassVar[Optional[str]] = None

    def configure_dp(self, dp: Optional[DPConfig]) -> None:
        """Check ``dp`` against this module and prepare ``dp.module`` (BatchNorm → GroupNorm or an error)."""
        if dp is not None and self.dp_refusal:
            raise UserInputError(f"{type(self).__name__} cannot be trained with DP-SGD: {self.dp_refusal}")
        self.dp = dp
        if dp is not None:
            if not isinstance(getattr(self, dp.module, None), nn.Module):
                raise UserInputError(f"dp.module {dp.module!r} is not a module of {type(self).__name__}")
            setattr(self, dp.module, prepare_for_dp(getattr(self, dp.module), replacement=dp.norm_replacement))
        self.__dict__["private"] = None  # PrivateTraining of the running fit; not a submodule
        self.dp_summary: dict[str, float] = {}
        self.dp_tags: dict[str, str] = {}
        self._dp_pending: Any = None
        self._dp_stepped = False
        self._dp_probed = False
        # What these weights went through: the DP ledger, and the splits they were trained on without DP.
        self._dp_record: dict[str, Any] = {"private_state": None, "non_private_splits": []}
        self._dp_loaded_without_record = False
        self._dp_first_epoch = 0  # the epoch this fit's private training started at (> 0 when resumed)

    @property
    def logs_member_metrics(self) -> bool:
        """True without DP; under DP, ``dp.log_member_metrics`` (default false: they are not noised)."""
        dp = getattr(self, "dp", None)
        return dp is None or dp.log_member_metrics

    # ---- sampling: the datamodule's members loader comes through here -----------------------------------
    def training_loader(self, loader: DataLoader) -> DataLoader:
        """The members loader of a fit: unchanged without DP (the weights' record notes a non-private fit),
        else Poisson-sampled batches."""
        if self.dp is None:
            split = self._split_id()
            if split not in self._dp_record["non_private_splits"]:
                self._dp_record["non_private_splits"].append(split)
            return loader
        if self.private is None:
            self._start_private(loader)
        return self.private.training_loader(loader)

    def _split_id(self) -> str:
        splits = getattr(getattr(self.trainer, "datamodule", None), "splits", None)
        return splits.digest() if splits is not None and hasattr(splits, "digest") else "unknown"

    def _check_history(self) -> None:
        """Refuse a DP fit whose account would miss what the weights already learnt without DP."""
        c, record = self.dp, self._dp_record
        trained = record["non_private_splits"]
        split = self._split_id()
        if trained and (split in trained or "unknown" in trained or split == "unknown"):
            raise UserInputError(
                "these weights were trained without DP on these members (their checkpoint records it): DP-SGD from "
                "here would not bound what they already reveal. Start from fresh weights (or public ones with "
                "dp.pretrained: public)")
        if (trained or self._dp_loaded_without_record) and c.pretrained != "public":
            what = "on another split" if trained else "with no training record in their checkpoint"
            raise UserInputError(
                f"these weights were trained {what}: DP-SGD accounts only what it runs. Say what they saw: "
                "dp.pretrained: public (data outside the members; logged as a tag) — weights trained on the "
                "members without DP are refused")

    def _start_private(self, loader: DataLoader) -> None:
        trainer, c = self.trainer, self.dp
        if trainer.accumulate_grad_batches != 1:
            raise UserInputError("DP-SGD accounts one noisy step per batch: set trainer.accumulate_grad_batches: 1")
        if trainer.world_size > 1 and getattr(trainer._accelerator_connector, "use_distributed_sampler", False):
            raise UserInputError("DP-SGD under DDP samples each rank's shard itself (Poisson): set "
                                 "trainer.use_distributed_sampler: false (conf/trainer/ddp_dp.yaml)")
        self._check_history()
        groups = num_groups = None
        if c.level != "record":
            reference = None
            if c.level == "subclass" and c.subclass_source == "reference":
                dm = getattr(trainer, "datamodule", None)
                sizes = dm.splits.sizes() if getattr(dm, "splits", None) is not None else {}
                if not sizes.get("reference"):
                    raise UserInputError(
                        "subclass-level DP fits its k-means centroids on the reference role (records the account "
                        "does not protect): give the data a reference role (data.init_args.reference, e.g. 5000), "
                        "or set dp.subclass_source: members to reproduce the paper (ε then excludes the partition)")
                reference = dm.role_dataset("reference")
            groups, num_groups = subclass_groups(loader, level=c.level, per_class=c.subclasses_per_class,
                                                 seed=c.seed or 0, reference=reference,
                                                 num_classes=getattr(getattr(trainer, "datamodule", None),
                                                                     "num_classes", None))
        saved = self._dp_record.get("private_state")
        self.__dict__["private"] = PrivateTraining(
            c, module=getattr(self, c.module), dataset_size=len(loader.dataset), batch_size=loader.batch_size,
            max_epochs=trainer.max_epochs, world_size=trainer.world_size, rank=trainer.global_rank, groups=groups,
            num_groups=num_groups, limit_batches=trainer.limit_train_batches, max_steps=trainer.max_steps,
            min_epochs=trainer.min_epochs, ledger_state=saved)
        self._dp_probed = False
        self.dp_tags = {"dp.level": c.level, "dp.reproducible_noise": str(c.seed is not None).lower()}
        if c.pretrained is not None:
            self.dp_tags["dp.pretrained"] = c.pretrained
        if c.level == "subclass":
            self.dp_tags["dp.subclass_source"] = c.subclass_source

    # ---- the private step ----------------------------------------------------------------------------
    @contextmanager
    def dp_recording(self) -> Iterator[None]:
        """Record the forward of ``dp.module`` whose per-sample loss the next ``manual_backward`` clips."""
        if self.private is None:
            yield
            return
        with self.private.recording():
            yield

    def _probe(self, x: Tensor, y: Tensor) -> None:
        """Once per fit: the per-sample consistency probe, on by default for networks not shipped here."""
        if self._dp_probed or self.private is None or self.private.group_level or x.shape[0] < 2:
            return  # (a draw of fewer than two records cannot show mixing: the next one is probed)
        self._dp_probed = True
        check = self.dp.consistency_check
        if check is None:
            check = not type(getattr(self, self.dp.module)).__module__.startswith(SHIPPED_NETWORKS)
        if check:
            self.private.consistency_probe(self, lambda xb, yb: self.objective(self(xb), yb), x, y)

    def private_training_step(self, batch: tuple[Tensor, ...]) -> Tensor:
        """One DP-SGD step's forward: the per-sample ``objective`` (or the sampled groups) waits for ``backward``."""
        if self.private.group_level:
            x, y, groups = batch
            with torch.no_grad():
                logits = self(x)
            self._dp_pending = (x, y, groups)
            loss = self.loss(logits, y) if y.numel() else logits.sum()
        else:
            x, y = batch
            self._probe(x, y)
            with self.private.recording():
                logits = self(x)
            per_sample = self.objective(logits, y)
            self._dp_pending = per_sample
            loss = per_sample.mean() if y.numel() else per_sample.sum()
        if y.numel():
            self.log_train_metrics(loss, logits, y)  # the module's one logger of train/*, gated on logs_member_metrics
        return loss

    def _loss_scale(self) -> float:
        """The factor a gradient scaler multiplies losses by (fp16 mixed precision), 1 without one."""
        scaler = getattr(getattr(self.trainer, "precision_plugin", None), "scaler", None)
        if scaler is None or not scaler.is_enabled():
            return 1.0
        scaler.scale(torch.ones((), device=self.device))  # initializes the scale on a first manual step
        return float(scaler.get_scale())

    def _private_backward(self, pending: Any) -> None:
        if self._dp_stepped:
            raise UserInputError("DP-SGD takes one private step per Poisson-sampled batch (the account counts draws): "
                                 "call manual_backward on dp.module's per-sample loss once per training_step")
        self._dp_stepped = True
        scale = self._loss_scale()
        penalty = self.penalty() if hasattr(self, "penalty") else None  # weights only: added unclipped, free
        if self.private.group_level:
            if not isinstance(pending, tuple):
                raise UserInputError("class- and subclass-level DP-SGD run through private_training_step "
                                     "(automatic optimization)")
            x, y, groups = pending
            self.private.backward_groups(x, y, groups, lambda xb, yb: self.objective(self(xb), yb), penalty=penalty,
                                         loss_scale=scale)
        else:
            self.private.backward_records(pending, penalty=penalty, loss_scale=scale)

    def backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        """Under DP-SGD the clipped, noised gradient of ``private_training_step``'s pending objective replaces
        autograd's (under fp16 with a gradient scaler it carries the scaler's factor, as autograd's would); any
        other loss passes through unchanged."""
        pending, self._dp_pending = self._dp_pending, None
        if self.private is None or pending is None:
            return super().backward(loss, *args, **kwargs)
        self._private_backward(pending)

    def manual_backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        """Manual optimization: an (n,) per-sample loss recorded under ``dp_recording`` is the private step; a
        scalar loss (any other optimizer's) passes through to Lightning unchanged."""
        if self.private is not None and loss.ndim == 1:
            self._private_backward(loss)
            return
        super().manual_backward(loss, *args, **kwargs)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._dp_stepped = False

    # ---- per epoch and at the end --------------------------------------------------------------------
    def on_train_start(self) -> None:
        # A resumed fit starts past epoch 0 (Lightning sets current_epoch just before this hook): the saved ledger
        # holds the epochs before, so a fixed-noise fit stops at the same epoch as one never interrupted.
        self._dp_first_epoch = self.current_epoch
        if self.private is not None:
            self._log_tags(self.dp_tags)

    def on_train_epoch_end(self) -> None:
        if self.private is None:
            return
        self.dp_summary = self.private.metrics()  # the last epoch's account, kept after fit for reports
        for name, value in self.dp_summary.items():
            self.log(name, value, on_epoch=True, rank_zero_only=True)
        if self.private.should_stop(self.current_epoch + 1 - self._dp_first_epoch):  # epochs beyond the ledger's
            self.trainer.should_stop = True

    def on_train_end(self) -> None:
        if self.private is None:
            return
        self.dp_summary = self.private.metrics()
        if self.private.target_exceeded():
            warnings.warn(f"the final ε {self.private.epsilon():.4g} exceeds dp.target_epsilon "
                          f"{self.dp.target_epsilon} (the ledger continued an earlier fit, or the run was longer "
                          "than planned); tagged dp.target_exceeded=true", stacklevel=2)
            self.dp_tags["dp.target_exceeded"] = "true"
            self._log_tags({"dp.target_exceeded": "true"})

    def _log_tags(self, tags: dict[str, str]) -> None:
        from lightning.pytorch.loggers import MLFlowLogger

        if not tags or self.trainer.global_rank != 0:
            return
        for logger in self.trainer.loggers:
            if isinstance(logger, MLFlowLogger):
                for key, value in tags.items():
                    logger.experiment.set_tag(logger.run_id, key, value)

    # ---- the ledger belongs to the weights -----------------------------------------------------------
    def _record_now(self) -> dict[str, Any]:
        record = dict(self._dp_record)
        if self.private is not None:
            record["private_state"] = self.private.state_dict()
        return record

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["dp_record"] = self._record_now()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        record = checkpoint.get("dp_record")
        if record is None and "dp_state" in checkpoint:  # checkpoints of earlier versions: a DP ledger only
            record = {"private_state": checkpoint["dp_state"], "non_private_splits": []}
        self._dp_loaded_without_record = record is None
        if record is not None:
            self._dp_record = {"private_state": record.get("private_state"),
                               "non_private_splits": list(record.get("non_private_splits", []))}

    def teardown(self, stage: str) -> None:
        if self.private is not None and stage == "fit":
            self._dp_record = self._record_now()  # a second fit continues the ledger
            self.private.close()
            self.__dict__["private"] = None
