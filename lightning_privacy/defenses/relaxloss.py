"""RelaxLoss (Chen, Yu & Fritz, ICLR 2022, Algorithm 1): relax the target loss to α > 0, then alternate
gradient ascent (even epochs) and posterior flattening (odd epochs) whenever the batch loss falls below α."""

from __future__ import annotations

from typing import Any, Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_privacy.defenses.base import ClassifierDefense
from lightning_privacy.errors import UserInputError

DESCENT, ASCENT, FLATTEN = 0, 1, 2
"""Values of the ``train/relax_branch`` metric: which branch of Algorithm 1 a batch took."""


def flattened_targets(probs: Tensor, y: Tensor, max_gt_prob: Optional[float] = None) -> Tensor:
    """Algorithm 1's soft labels: keep p_gt (capped at ``max_gt_prob``), spread 1 - p_gt evenly over the
    other C - 1 classes. Detached: the paper's stop-gradient sg[t]."""
    probs = probs.detach()
    num_classes = probs.shape[-1]
    p_gt = probs.gather(-1, y.unsqueeze(-1))
    if max_gt_prob is not None:
        p_gt = p_gt.clamp(max=max_gt_prob)
    rest = (1.0 - p_gt) / (num_classes - 1)
    return rest.expand_as(probs).scatter(-1, y.unsqueeze(-1), p_gt)


class RelaxLoss(ClassifierDefense):
    """RelaxLoss (Chen, Yu & Fritz, ICLR 2022, Algorithm 1; appendix B.3 for the options and the SGD schedule).

    ``flatten_incorrect_only`` restricts flattening to incorrectly predicted samples (the paper's choice for
    natural images); ``max_gt_prob`` caps p_gt in the soft labels (0.3 for the paper's non-image data).
    ``optimizer: sgd`` with ``lr: 0.1``, ``weight_decay: 1e-4`` and ``lr_milestones`` is the paper's schedule.
    """

    key_hparams = ("alpha",)

    def __init__(
        self,
        alpha: float = 1.0,
        flatten_incorrect_only: bool = False,
        max_gt_prob: Optional[float] = None,
        optimizer: Literal["adam", "sgd"] = "adam",
        momentum: float = 0.9,
        lr_milestones: Sequence[int] = (),
        lr_gamma: float = 0.1,
        num_classes: int = 10,
        **kwargs: Any,
    ) -> None:
        if alpha <= 0:
            raise UserInputError(f"alpha (RelaxLoss's target loss) must be > 0; got {alpha}. "
                                 "The paper uses values around 0.5-2; alpha = 0 is plain ERM, use the ERM defense.")
        if max_gt_prob is not None and not 0.0 < max_gt_prob <= 1.0:
            raise UserInputError(f"max_gt_prob must be in (0, 1] or null; got {max_gt_prob} (the paper uses 0.3)")
        if optimizer not in ("adam", "sgd"):
            raise UserInputError(f"optimizer must be 'adam' or 'sgd'; got {optimizer!r}")
        if momentum < 0:
            raise UserInputError(f"momentum must be >= 0; got {momentum}")
        if not 0.0 < lr_gamma <= 1.0:
            raise UserInputError(f"lr_gamma must be in (0, 1]; got {lr_gamma}")
        milestones = list(lr_milestones)
        if any(m <= 0 for m in milestones) or milestones != sorted(set(milestones)):
            raise UserInputError(f"lr_milestones must be increasing positive epochs; got {milestones}")
        if num_classes < 2:
            raise UserInputError(f"RelaxLoss needs num_classes >= 2 (flattening spreads mass over the others); "
                                 f"got {num_classes}")
        super().__init__(num_classes=num_classes, **kwargs)

    def flattening_loss(self, logits: Tensor, y: Tensor) -> Tensor:
        """Mean cross-entropy against the detached flattened soft labels (optionally incorrect samples only)."""
        targets = flattened_targets(logits.softmax(-1), y, self.hparams.max_gt_prob)
        per_sample = -(targets * logits.log_softmax(-1)).sum(-1)
        if self.hparams.flatten_incorrect_only:
            per_sample = per_sample * (logits.argmax(-1) != y).to(per_sample.dtype)
        return per_sample.mean()

    def relax_objective(self, logits: Tensor, y: Tensor, paper_epoch: int) -> tuple[Tensor, int]:
        """Algorithm 1's inner loop body: the objective to minimize and the branch it came from.

        ``paper_epoch`` counts from 1, as in the paper.
        """
        loss = F.cross_entropy(logits, y)
        if loss.item() >= self.hparams.alpha:
            return loss, DESCENT  # gradient descent
        if paper_epoch % 2 == 0:
            return -loss, ASCENT  # gradient ascent: θ <- θ + τ ∇L
        return self.flattening_loss(logits, y), FLATTEN  # posterior flattening

    def objective(self, logits: Tensor, y: Tensor) -> Tensor:
        """Algorithm 1 decided per sample: what DP-SGD trains on, since the batch-level branch on the un-noised
        mean loss would leak it. Descent where ℓ_i ≥ α, else ascent (even epochs) or flattening (odd)."""
        ce = F.cross_entropy(logits, y, reduction="none")
        if (self.current_epoch + 1) % 2 == 0:  # Algorithm 1 counts epochs from 1
            relaxed = -ce
        else:
            targets = flattened_targets(logits.softmax(-1), y, self.hparams.max_gt_prob)
            relaxed = -(targets * logits.log_softmax(-1)).sum(-1)
            if self.hparams.flatten_incorrect_only:
                relaxed = relaxed * (logits.argmax(-1) != y).to(relaxed.dtype)
        return torch.where(ce.detach() >= self.hparams.alpha, ce, relaxed)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        if self.private is not None:
            return self.private_training_step(batch)
        x, y = batch
        logits = self(x)
        objective, branch = self.relax_objective(logits, y, paper_epoch=self.current_epoch + 1)
        self.log_train_metrics(F.cross_entropy(logits, y), logits, y)
        self.log("train/relax_branch", float(branch), on_step=True, on_epoch=False)
        return objective

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        if hp.optimizer == "sgd":
            optimizer = torch.optim.SGD(self.parameters(), lr=hp.lr, momentum=hp.momentum,
                                        weight_decay=hp.weight_decay)
        else:
            optimizer = torch.optim.Adam(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        if not hp.lr_milestones:
            return optimizer
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(hp.lr_milestones), gamma=hp.lr_gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
