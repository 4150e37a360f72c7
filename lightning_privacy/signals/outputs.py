"""Collect per-sample signals of a model over a dataloader (eval mode, no gradients)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from lightning_privacy.signals.base import Signals
from lightning_privacy.models.predict import predict_logits, stable_cross_entropy


def released_signals(probs: Tensor, labels: Tensor, *, index: Optional[Tensor] = None) -> Signals:
    """Signals of released score vectors: logits log p and losses −log p_y, both float64.

    The loss is computed as log1p(Σ_{j≠y} p_j / p_y), the analogue of ``stable_cross_entropy``: exact where p_y
    rounds to 1, since the other classes' probabilities keep their own precision."""
    p = probs.double().clamp_min(torch.finfo(torch.float64).tiny)
    labels = labels.long()
    p_y = p.gather(1, labels[:, None]).squeeze(1)
    rest = p.scatter(1, labels[:, None], 0.0).sum(1)
    return Signals(logits=p.log(), labels=labels, losses=torch.log1p(rest / p_y), index=index)


def _is_plain_softmax(probs: Tensor, logits: Tensor) -> bool:
    return probs.dtype == logits.dtype and probs.shape == logits.shape and torch.equal(probs, logits.softmax(-1))


def collect_signals(model: nn.Module, loader: DataLoader, *, index: Optional[Tensor] = None) -> Signals:
    """Black-box signals: logits, labels and exact per-sample losses; ``index``: the loader's samples' pool indices,
    in order.

    They describe what a client querying the model receives: a model with ``released_probs`` (every
    ClassifierDefense) answers with it. When it releases exactly softmax(logits), the signals are the raw logits
    and ``stable_cross_entropy`` (bit for bit); otherwise (a test-time defense such as MemGuard) they are
    ``released_signals`` of its answers, for every row. White-box signals are not collected here: gradient norms
    come from the raw model (``signals/gradients.py``)."""
    logits, labels = predict_logits(model, loader)
    release = getattr(model, "released_probs", None)
    if callable(release):
        probs = release(logits)
        if not _is_plain_softmax(probs, logits):
            return released_signals(probs.cpu(), labels, index=index)
    return Signals(logits=logits, labels=labels, losses=stable_cross_entropy(logits, labels), index=index)
