"""Fit a binary classifier's logits with BCE: DAP's discriminator and MemGuard's surrogate."""

from __future__ import annotations

from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@torch.no_grad()
def binary_accuracy(model: nn.Module, x: Tensor, t: Tensor) -> float:
    """Accuracy at logit 0 (probability 0.5); the model's mode is restored."""
    was_training = model.training
    model.eval()
    acc = float(((model(x) > 0).float() == t).float().mean()) if len(t) else float("nan")
    model.train(was_training)
    return acc


def fit_binary(model: nn.Module, x: Tensor, t: Tensor, *, epochs: int, lr: float, batch_size: int, seed: int,
               balanced: bool = True, optimizer: Literal["adam", "sgd"] = "adam",
               validation: Optional[tuple[Tensor, Tensor]] = None, patience: Optional[int] = None) -> int:
    """Mini-batches of BCE with logits on ``t`` in {0, 1}; ``balanced`` weighs positives by n_negative / n_positive.

    ``optimizer``: Adam, or plain SGD (no momentum). With ``validation`` and ``patience``: early stopping on the
    validation accuracy (at most ``epochs``), the best epoch's weights kept. Returns the epochs trained and
    leaves the model frozen in eval mode."""
    n_in = float(t.sum())
    weight = (len(t) - n_in) / n_in if balanced and n_in else 1.0
    pos_weight = torch.tensor(weight, device=x.device)
    generator = torch.Generator().manual_seed(seed)
    model.requires_grad_(True).train()
    opt = (torch.optim.SGD(model.parameters(), lr=lr) if optimizer == "sgd"
           else torch.optim.Adam(model.parameters(), lr=lr))
    best, best_state, since_best, epoch = float("-inf"), None, 0, 0
    for epoch in range(1, epochs + 1):
        for batch in torch.randperm(len(t), generator=generator).to(x.device).split(batch_size):
            if len(batch) < 2 and len(t) > 1:
                continue  # a single-sample batch would break BatchNorm's statistics
            loss = F.binary_cross_entropy_with_logits(model(x[batch]), t[batch], pos_weight=pos_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if validation is not None and patience is not None:
            acc = binary_accuracy(model, *validation)
            if acc > best:
                best, since_best = acc, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                since_best += 1
                if since_best >= patience:
                    break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.requires_grad_(False).eval()
    return epoch
