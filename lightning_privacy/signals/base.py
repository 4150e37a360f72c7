"""Per-sample signals of one model on one set of samples: all an attack ever sees."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor


@dataclass(frozen=True)
class Signals:
    """Aligned per-sample tensors: logits (n, C), labels (n,), losses (n,), optional grad norms {name: (n,)}
    (``grad_x_l1``, ``grad_x_l2``, ``grad_w_l1``, ``grad_w_l2``) and the samples' pool indices (n,), which
    identify the same sample across models."""

    logits: Tensor
    labels: Tensor
    losses: Tensor
    grad_norms: dict[str, Tensor] = field(default_factory=dict)
    index: Optional[Tensor] = None

    def __post_init__(self) -> None:
        n = self.labels.shape[0]
        if self.logits.ndim != 2 or self.logits.shape[0] != n or self.losses.shape != (n,):
            raise ValueError(f"misaligned signals: logits {tuple(self.logits.shape)}, labels {tuple(self.labels.shape)}, "
                             f"losses {tuple(self.losses.shape)}")
        for name, g in self.grad_norms.items():
            if g.shape != (n,):
                raise ValueError(f"grad norm '{name}' has shape {tuple(g.shape)}, expected ({n},)")
        if self.index is not None and self.index.shape != (n,):
            raise ValueError(f"index has shape {tuple(self.index.shape)}, expected ({n},)")

    @property
    def probs(self) -> Tensor:
        return torch.softmax(self.logits.double(), dim=1)

    @property
    def correct(self) -> Tensor:
        return self.logits.argmax(1) == self.labels

    def select(self, mask_or_idx: Tensor) -> "Signals":
        """The subset of samples at a bool mask or positions."""
        return Signals(
            logits=self.logits[mask_or_idx], labels=self.labels[mask_or_idx], losses=self.losses[mask_or_idx],
            grad_norms={k: v[mask_or_idx] for k, v in self.grad_norms.items()},
            index=None if self.index is None else self.index[mask_or_idx],
        )

    def positions_of(self, index: Tensor) -> Tensor:
        """Positions in these signals of the samples with pool indices ``index`` (all must be present)."""
        if self.index is None:
            raise ValueError("these signals carry no sample index")
        order = torch.argsort(self.index)
        pos = torch.searchsorted(self.index[order], index)
        pos = pos.clamp_max(self.index.numel() - 1)
        if not bool((self.index[order][pos] == index).all()):
            raise ValueError("some requested samples are not in these signals")
        return order[pos]

    def __len__(self) -> int:
        return self.labels.shape[0]

    @staticmethod
    def cat(parts: list["Signals"]) -> "Signals":
        names = set.intersection(*(set(p.grad_norms) for p in parts))
        indexed = all(p.index is not None for p in parts)
        return Signals(
            logits=torch.cat([p.logits for p in parts]),
            labels=torch.cat([p.labels for p in parts]),
            losses=torch.cat([p.losses for p in parts]),
            grad_norms={k: torch.cat([p.grad_norms[k] for p in parts]) for k in names},
            index=torch.cat([p.index for p in parts]) if indexed else None,
        )
