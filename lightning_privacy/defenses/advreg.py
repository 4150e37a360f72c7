"""Adversarial regularization (Nasr, Shokri & Houmansadr, CCS 2018, Alg. 1): a min-max game against an
inference model trained on members vs the reference pool."""

from __future__ import annotations

from typing import Any, Iterator, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_privacy.defenses.bank import SubsetDataModule
from lightning_privacy.defenses.base import ClassifierDefense
from lightning_privacy.errors import UserInputError


def _mlp(widths: Sequence[int], *, last_activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if last_activation or i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class InferenceModel(nn.Module):
    """h(f(x), y): the probability that (x, y) is a member, from the softmax output and the one-hot label.

    Default sizes are those of Nasr et al.'s released code: f(x) through 1024-512-64, the label through 128-64,
    their concatenation through 512-256-128-64-1."""

    def __init__(self, num_classes: int, output_widths: Sequence[int] = (1024, 512, 64),
                 label_widths: Sequence[int] = (128, 64), head_widths: Sequence[int] = (512, 256, 128, 64)) -> None:
        super().__init__()
        if not output_widths or not label_widths or min([*output_widths, *label_widths, *head_widths, 1]) < 1:
            raise UserInputError(f"inference model widths must be positive and the branches non-empty; got "
                                 f"{list(output_widths)}, {list(label_widths)}, {list(head_widths)}")
        self.num_classes = num_classes
        self.output_branch = _mlp([num_classes, *output_widths], last_activation=True)
        self.label_branch = _mlp([num_classes, *label_widths], last_activation=True)
        self.head = _mlp([output_widths[-1] + label_widths[-1], *head_widths, 1], last_activation=False)

    def forward(self, probs: Tensor, labels: Tensor) -> Tensor:
        onehot = F.one_hot(labels, self.num_classes).float()
        return self.head(torch.cat([self.output_branch(probs), self.label_branch(onehot)], dim=1)).squeeze(1)


class AdvReg(ClassifierDefense):
    """Nasr et al. Alg. 1, per training step: ``attack_steps`` updates of h, each on a freshly drawn member batch
    against a fresh reference batch (maximize its gain), then one update of the classifier on
    min CE + α · log h(f(x), y) over the step's own member batch. The first ``warmup_epochs`` train plain ERM."""

    dp_refusal = "its inference model is trained on the members without noise, and the classifier then follows it"
    key_hparams = ("alpha", "attack_steps")
    ddp_unused_parameters = True  # h is idle in the warm-up and apart from the classifier's loss

    def __init__(
        self,
        num_classes: int = 10,
        alpha: float = 1.0,
        attack_steps: int = 1,
        attack_lr: float = 1e-3,
        warmup_epochs: int = 1,
        inference_output_widths: Sequence[int] = (1024, 512, 64),
        inference_label_widths: Sequence[int] = (128, 64),
        inference_head_widths: Sequence[int] = (512, 256, 128, 64),
        **kwargs: Any,
    ) -> None:
        if alpha < 0:
            raise UserInputError(f"AdvReg's alpha (the adversarial weight) must be >= 0; got {alpha}")
        if attack_steps < 1:
            raise UserInputError(f"attack_steps must be >= 1; got {attack_steps}")
        if warmup_epochs < 0:
            raise UserInputError(f"warmup_epochs must be >= 0; got {warmup_epochs}")
        super().__init__(num_classes=num_classes, **kwargs)
        self.automatic_optimization = False
        self.inference = InferenceModel(num_classes, inference_output_widths, inference_label_widths,
                                        inference_head_widths)
        self._reference: Optional[Iterator] = None
        self._members: Optional[Iterator] = None

    def on_fit_start(self) -> None:
        dm = self.trainer.datamodule
        if dm is None or not hasattr(dm, "role_indices") or dm.role_indices("reference").numel() == 0:
            raise UserInputError("AdvReg trains its inference model on members vs the reference role, which is "
                                 "empty: set data.init_args.reference (e.g. 0.1)")

    def _stream(self, attribute: str, indices: Any) -> tuple[Tensor, Tensor]:
        """The next batch of an endless shuffled stream over these pool indices, one members-sized batch a time."""
        dm = self.trainer.datamodule
        parent = dm.parent if isinstance(dm, SubsetDataModule) else dm
        while True:
            if getattr(self, attribute) is None:
                setattr(self, attribute, iter(parent.index_dataloader(indices(), batch_size=parent.batch_size,
                                                                      shuffle=True)))
            try:
                x, y = next(getattr(self, attribute))
                return x.to(self.device), y.to(self.device)
            except StopIteration:
                setattr(self, attribute, None)

    def _reference_batch(self) -> tuple[Tensor, Tensor]:
        """A fresh batch of the reference role (the defender's non-members)."""
        return self._stream("_reference", lambda: self.trainer.datamodule.role_indices("reference"))

    def _member_batch(self) -> tuple[Tensor, Tensor]:
        """A fresh batch of the samples this model trains on (a bank helper: its own training half)."""
        dm = self.trainer.datamodule
        return self._stream("_members", lambda: dm.indices if isinstance(dm, SubsetDataModule)
                            else dm.training_indices())

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
            for _ in range(self.hparams.attack_steps):  # maximize the inference gain, fresh batches each step
                x_in, y_in = self._member_batch()
                x_ref, y_ref = self._reference_batch()
                attack_loss = self.inference_gain(x_in, y_in, x_ref, y_ref)
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
        self.log_train_metrics(ce, logits, y)
        self.log("advreg/objective", loss, on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self) -> Any:
        classifier = torch.optim.Adam(self.net.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        attack = torch.optim.Adam(self.inference.parameters(), lr=self.hparams.attack_lr)
        return [classifier, attack]
