"""Fit a binary classifier's logits with class-balanced BCE: DAP's discriminator and MemGuard's surrogate."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def fit_binary(model: nn.Module, x: Tensor, t: Tensor, *, epochs: int, lr: float, batch_size: int,
               seed: int) -> None:
    """Adam on mini-batches of BCE with logits, positives weighted by n_negative / n_positive; ``t`` in {0, 1}.
    Leaves the model frozen in eval mode."""
    n_in = float(t.sum())
    pos_weight = torch.tensor((len(t) - n_in) / n_in if n_in else 1.0, device=x.device)
    generator = torch.Generator().manual_seed(seed)
    model.requires_grad_(True).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        for batch in torch.randperm(len(t), generator=generator).to(x.device).split(batch_size):
            loss = F.binary_cross_entropy_with_logits(model(x[batch]), t[batch], pos_weight=pos_weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.requires_grad_(False).eval()
