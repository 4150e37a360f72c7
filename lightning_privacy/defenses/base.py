"""ClassifierDefense: the shared training, validation and test steps of every classifier defense."""

from __future__ import annotations

from typing import Any, ClassVar, Optional, Sequence

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from lightning_privacy.errors import UserInputError
from lightning_privacy.models.net import build_net, net_spec
from lightning_privacy.privacy.config import DPConfig
from lightning_privacy.privacy.mixin import DPMixin


class ClassifierDefense(DPMixin, LightningModule):
    """Adam on a network (``net``: ``{class_path, init_args}``, the papers' CNN by default) with cross-entropy;
    a subclass overrides ``objective`` (and, rarely, the step).

    The network is built with this defense's ``input_shape`` and ``num_classes`` (and ``dropout`` when > 0) and
    reached only through the protocol of ``lightning_privacy/models/net.py`` (``penultimate``, ``last_layer``,
    ``named_layers``). ``hparams.net`` holds the spec as plain data, so ``type(model)(**model.hparams)`` builds
    a fresh, independent network (the shadow bank) and checkpoints reload it.

    Logs ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc``, ``test/loss``, ``test/acc``,
    ``test/acc_top5``. ``per_sample_loss`` is what audits call signals.

    ``dp`` turns on DP-SGD (``privacy/mixin.py``) for any defense whose training objective is a sum of
    per-sample terms; a defense that reaches member data outside that objective names why in ``dp_refusal``.
    """

    key_hparams: ClassVar[tuple[str, ...]] = ()
    """The defense's key hyperparameters (``__init__`` argument names): each run is tagged ``hp.<name>`` with
    its value (``tracking/run_tags.py``), a column of the MLflow run list."""

    ddp_unused_parameters: ClassVar[bool] = False
    """True when a training step's loss leaves some parameters out (a helper model stepped apart, or idle during a
    warm-up): under ``strategy: ddp`` the CLI then lets DDP find them (``ddp_find_unused_parameters_true``)."""

    def __init__(
        self,
        num_classes: int = 10,
        input_shape: Sequence[int] = (1, 28, 28),
        net: Optional[dict[str, Any]] = None,
        dropout: float = 0.0,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        dp: Optional[DPConfig] = None,
    ) -> None:
        super().__init__()
        if dp is not None and self.dp_refusal:  # before anything is built (a teacher loaded, ...)
            raise UserInputError(f"{type(self).__name__} cannot be trained with DP-SGD: {self.dp_refusal}")
        if lr <= 0:
            raise UserInputError(f"lr must be > 0; got {lr}")
        if weight_decay < 0:
            raise UserInputError(f"weight_decay must be >= 0; got {weight_decay}")
        if not 0.0 <= dropout < 1.0:
            raise UserInputError(f"dropout must be in [0, 1); got {dropout}")
        self.save_hyperparameters(logger=False)
        self.hparams["net"] = net_spec(net)  # plain data: a rebuild from hparams gets a fresh network
        self.net = build_net(self.hparams["net"], input_shape=input_shape, num_classes=num_classes, dropout=dropout)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc_top5 = MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro")
        self.configure_dp(dp)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    @property
    def last_layer(self) -> nn.Linear:
        """The network's final Linear layer (the protocol's ``last_layer``)."""
        return self.net.last_layer

    def penultimate(self, x: Tensor) -> Tensor:
        """The last layer's input (the protocol's ``penultimate``); ``forward`` is ``last_layer`` of it."""
        return self.net.penultimate(x)

    def log_train_metrics(self, loss: Tensor, logits: Tensor, y: Tensor) -> None:
        """``train/loss`` and ``train/acc`` of a training batch, per epoch; nothing when the module says it must not
        log member metrics (``logs_member_metrics`` False, e.g. under DP-SGD)."""
        if not getattr(self, "logs_member_metrics", True):
            return
        self.train_acc(logits.detach(), y)
        self.log("train/loss", loss.detach(), on_step=False, on_epoch=True, prog_bar=True, batch_size=y.numel())
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=y.numel())

    def released_probs(self, logits: Tensor) -> Tensor:
        """The score vectors a black-box client receives for these logits; a test-time defense overrides it."""
        return logits.softmax(-1)

    def per_sample_loss(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits, y, reduction="none")

    def objective(self, logits: Tensor, y: Tensor) -> Tensor:
        """The per-sample training objective (n,); ERM: cross-entropy. DP-SGD clips each sample's as a whole."""
        return self.per_sample_loss(logits, y)

    def penalty(self) -> Optional[Tensor]:
        """A data-independent term of the loss (e.g. L2 on weights); DP-SGD adds its gradient unclipped."""
        return None

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        """The batch's training objective: the mean of ``objective``, plus ``penalty``."""
        loss = self.objective(logits, y).mean()
        penalty = self.penalty()
        return loss if penalty is None else loss + penalty

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        if self.private is not None:
            return self.private_training_step(batch)
        x, y = batch
        logits = self(x)
        loss = self.loss(logits, y)
        self.log_train_metrics(loss, logits, y)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.val_acc(logits, y)
        self.log("val/loss", F.cross_entropy(logits, y), prog_bar=False)
        self.log("val/acc", self.val_acc, prog_bar=True)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.test_acc(logits, y)
        self.test_acc_top5(logits, y)
        self.log("test/loss", F.cross_entropy(logits, y))
        self.log("test/acc", self.test_acc)
        self.log("test/acc_top5", self.test_acc_top5)

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self(batch[0])

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
