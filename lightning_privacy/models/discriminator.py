"""The DAP discriminator (DAP paper Fig. 3; layer sizes of the authors' public code): a residual MLP over
(prediction vector, one-hot label, loss)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def discriminator_features(logits: Tensor, labels: Tensor) -> Tensor:
    """D's input, (n, 2C + 1): softmax(logits), one-hot(labels), per-sample cross-entropy (differentiable)."""
    num_classes = logits.shape[1]
    probs = logits.softmax(dim=1)
    one_hot = F.one_hot(labels, num_classes).to(probs.dtype)
    loss = F.cross_entropy(logits, labels, reduction="none")
    return torch.cat([probs, one_hot, loss[:, None]], dim=1)


class ResidualBlock(nn.Module):
    """x -> body(x) + Linear(x), body = [BatchNorm-ReLU-Linear] × 3, then dropout: the residual block of the DAP
    authors' released code (``dense_residual_block``, dropout 0.2 after each block)."""

    def __init__(self, in_width: int, width: int, dropout: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(3):
            layers += [nn.BatchNorm1d(in_width if i == 0 else width), nn.ReLU(),
                       nn.Linear(in_width if i == 0 else width, width)]
        self.body = nn.Sequential(*layers)
        self.shortcut = nn.Linear(in_width, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.body(x) + self.shortcut(x))


class Discriminator(nn.Module):
    """D_MIA (DAP paper Sec. 3, Fig. 3 right): standardized input -> ``blocks`` residual blocks of ``width`` units
    -> Linear -> 1 logit ("member"). Defaults are the authors' code: 3 blocks × 128 units, BatchNorm, dropout 0.2;
    the input standardization's mean and variance are set from D's training data (``standardize_with``)."""

    def __init__(self, num_classes: int, width: int = 128, blocks: int = 3, dropout: float = 0.2) -> None:
        super().__init__()
        if num_classes < 2 or width < 1 or blocks < 1 or not 0.0 <= dropout < 1.0:
            raise ValueError(f"need num_classes >= 2, width >= 1, blocks >= 1, dropout in [0, 1); got "
                             f"{num_classes}, {width}, {blocks}, {dropout}")
        self.num_classes = num_classes
        d = 2 * num_classes + 1
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("std", torch.ones(d))
        self.blocks = nn.Sequential(*(ResidualBlock(d if i == 0 else width, width, dropout) for i in range(blocks)))
        self.head = nn.Linear(width, 1)

    @torch.no_grad()
    def standardize_with(self, features: Tensor) -> None:
        """Set the input standardization from D's training features (Keras' ``Normalization(mean, var)``)."""
        self.mean.copy_(features.mean(0))
        self.std.copy_(features.std(0, unbiased=False).clamp_min(1e-6))

    def forward(self, features: Tensor) -> Tensor:
        """Member logits, shape (n,), for features from :func:`discriminator_features`."""
        return self.head(self.blocks((features - self.mean) / self.std)).squeeze(1)

    def score(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Member logits of a classifier's outputs (gradients flow back into ``logits``)."""
        return self(discriminator_features(logits, labels))
