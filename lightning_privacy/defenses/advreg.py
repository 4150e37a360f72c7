"""Adversarial regularization (Nasr, Shokri & Houmansadr, CCS 2018, Alg. 1): a min-max game against an
inference model trained on members vs the reference pool."""

from __future__ import annotations

from typing import Any, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_privacy.defenses.base import ClassifierDefense
from lightning_privacy.errors import UserInputError


class InferenceModel(nn.Module):
    """h(f(x), y): the probability that (x, y) is a member, from the softmax output and the one-hot label."""

    def __init__(self, num_classes: int, width: int = 64) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.output_branch = nn.Sequential(nn.Linear(num_classes, width), nn.ReLU(), nn.Linear(width, width // 2))
        self.label_branch = nn.Sequential(nn.Linear(num_classes, width // 2))
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(width, width // 2), nn.ReLU(), nn.Linear(width // 2, 1))

    def forward(self, probs: Tensor, labels: Tensor) -> Tensor:
        onehot = F.one_hot(labels, self.num_classes).float()
        return self.head(torch.cat([self.output_branch(probs), self.label_branch(onehot)], dim=1)).squeeze(1)


class AdvReg(ClassifierDefense):
    """Per step: ``attack_steps`` updates of h (members vs reference samples: maximize its gain), then one
    update of the classifier on min CE + α · log h(f(x), y) over the members' batch."""

    dp_refusal = "its inference model is trained on the members without noise, and the classifier then follows it"

    def __init__(
        self,
        num_classes: int = 10,
        alpha: float = 1.0,
        attack_steps: int = 1,
        attack_lr: float = 1e-3,
        warmup_epochs: int = 0,
        **kwargs: Any,
    ) -> None:
        if alpha < 0:
            raise UserInputError(f"AdvReg's alpha (the adversarial weight) must be >= 0; got {alpha}")
        if attack_steps < 1:
            raise UserInputError(f"attack_steps must be >= 1; got {attack_steps}")
        super().__init__(num_classes=num_classes, **kwargs)
        self.automatic_optimization = False
        self.inference = InferenceModel(num_classes)
        self._reference: Optional[Iterator] = None

    def on_fit_start(self) -> None:
        dm = self.trainer.datamodule
        if dm is None or not hasattr(dm, "role_indices") or dm.role_indices("reference").numel() == 0:
            raise UserInputError("AdvReg trains its inference model on members vs the reference role, which is "
                                 "empty: set data.init_args.reference (e.g. 0.1)")

    def _reference_batch(self) -> tuple[Tensor, Tensor]:
        """An endless shuffled stream over the reference role, one members-sized batch at a time."""
        while True:
            if self._reference is None:
                dm = self.trainer.datamodule
                self._reference = iter(dm.index_dataloader(dm.role_indices("reference"), batch_size=dm.batch_size,
                                                           shuffle=True))
            try:
                x, y = next(self._reference)
                return x.to(self.device), y.to(self.device)
            except StopIteration:
                self._reference = None

    def inference_gain(self, x_in: Tensor, y_in: Tensor, x_ref: Tensor, y_ref: Tensor) -> Tensor:
        """BCE of h on members (label 1) and reference samples (label 0): h's training loss, its gain negated."""
        with torch.no_grad():
            p_in, p_ref = F.softmax(self(x_in), 1), F.softmax(self(x_ref), 1)
        scores = torch.cat([self.inference(p_in, y_in), self.inference(p_ref, y_ref)])
        target = torch.cat([torch.ones_like(y_in), torch.zeros_like(y_ref)]).float()
        return F.binary_cross_entropy_with_logits(scores, target)

    def privacy_loss(self, logits: Tensor, y: Tensor) -> Tensor:
        """log h(f(x), y) on members: the classifier lowers the attack's belief that its members are members."""
        return F.logsigmoid(self.inference(F.softmax(logits, 1), y)).mean()

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        classifier_opt, attack_opt = self.optimizers()
        x, y = batch
        adversarial = self.current_epoch >= self.hparams.warmup_epochs and self.hparams.alpha > 0
        if adversarial:
            self.inference.requires_grad_(True)
            for _ in range(self.hparams.attack_steps):  # maximize the inference gain
                x_ref, y_ref = self._reference_batch()
                attack_loss = self.inference_gain(x, y, x_ref, y_ref)
                attack_opt.zero_grad()
                self.manual_backward(attack_loss)
                attack_opt.step()
            self.inference.requires_grad_(False)  # h is fixed while the classifier moves
            self.log("advreg/attack_loss", attack_loss, on_step=False, on_epoch=True)
        logits = self(x)
        ce = self.loss(logits, y)
        loss = ce + self.hparams.alpha * self.privacy_loss(logits, y) if adversarial else ce
        classifier_opt.zero_grad()
        self.manual_backward(loss)
        classifier_opt.step()
        self.train_acc(logits, y)
        self.log("train/loss", ce, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        self.log("advreg/objective", loss, on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self) -> Any:
        classifier = torch.optim.Adam(self.net.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        attack = torch.optim.Adam(self.inference.parameters(), lr=self.hparams.attack_lr)
        return [classifier, attack]
