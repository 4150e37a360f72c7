"""Per-sample gradient norms for white-box membership attacks (Nasr et al. 2019; Rezaei & Liu 2020).

``grad_x_*``: norms of d loss_i / d x_i; ``grad_w_*``: norms of d loss_i / d θ over all trainable
parameters (the RelaxLoss paper's Grad-x / Grad-w attacks). One vectorized ``torch.func`` call per chunk.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap
from torch.utils.data import DataLoader

from lightning_privacy.errors import UserInputError

GRAD_NORM_KEYS = ("grad_x_l1", "grad_x_l2", "grad_w_l1", "grad_w_l2")


def _norms(g: Tensor | Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """ℓ1 and ℓ2 norms (float64) of one sample's gradient, over all elements of all tensors given."""
    parts = [g] if isinstance(g, Tensor) else list(g)
    l1 = sum(p.double().abs().sum() for p in parts)
    sq = sum(p.double().square().sum() for p in parts)
    return l1, sq.sqrt()


def per_sample_grad_norms(model: nn.Module, x: Tensor, y: Tensor, *, chunk_size: int | None = 64,
                          attacks: Sequence[str] = ()) -> dict[str, Tensor]:
    """Per-sample cross-entropy gradient norms, float64 (B,) each, under ``GRAD_NORM_KEYS``.

    The model runs in eval mode (its mode is restored afterwards); ``x``/``y`` must be on its device.
    ``chunk_size`` bounds memory (per-sample weight gradients are chunk × #params floats); None = one chunk.
    ``attacks`` only names the requesting attacks in errors.
    """
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer or None; got {chunk_size}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must hold the same number of samples; got {x.shape[0]} and {y.shape[0]}")
    if not x.is_floating_point():
        raise UserInputError(f"input gradients need floating-point inputs; got dtype {x.dtype}")
    trainable = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
    if not trainable:
        asked = ", ".join(attacks) if attacks else "grad_x_*/grad_w_*"
        raise UserInputError(f"white-box attacks ({asked}) need a model whose weights have gradients (e.g. not a "
                             "frozen or exported model); every parameter of this model has requires_grad=False")
    fixed = {k: p.detach() for k, p in model.named_parameters() if not p.requires_grad}
    fixed.update({k: b.detach() for k, b in model.named_buffers()})

    def loss(params: dict[str, Tensor], xi: Tensor, yi: Tensor) -> Tensor:
        logits = functional_call(model, {**fixed, **params}, (xi.unsqueeze(0),))
        return F.cross_entropy(logits, yi.unsqueeze(0))

    def norms(params: dict[str, Tensor], xi: Tensor, yi: Tensor) -> tuple[Tensor, ...]:
        g_w, g_x = grad(loss, argnums=(0, 1))(params, xi, yi)
        return (*_norms(g_x), *_norms(g_w.values()))

    batched = vmap(norms, in_dims=(None, 0, 0))
    n = x.shape[0]
    step = n if chunk_size is None else chunk_size
    out: list[list[Tensor]] = [[] for _ in GRAD_NORM_KEYS]
    was_training = model.training
    model.eval()
    try:
        for start in range(0, n, max(step, 1)):
            for acc, v in zip(out, batched(trainable, x[start:start + step], y[start:start + step])):
                acc.append(v.detach())
    finally:
        model.train(was_training)
    return {k: torch.cat(v) if v else torch.zeros(0, dtype=torch.float64, device=x.device)
            for k, v in zip(GRAD_NORM_KEYS, out)}


def collect_grad_norms(model: nn.Module, loader: DataLoader, *, chunk_size: int | None = 64,
                       attacks: Sequence[str] = ()) -> dict[str, Tensor]:
    """``per_sample_grad_norms`` over a loader of (x, y) batches, in order: float64 (n,) tensors on CPU."""
    params = list(model.parameters())
    device = params[0].device if params else torch.device("cpu")
    parts: list[dict[str, Tensor]] = []
    for x, y in loader:
        g = per_sample_grad_norms(model, x.to(device), y.to(device).long(), chunk_size=chunk_size, attacks=attacks)
        parts.append({k: v.cpu() for k, v in g.items()})
    return {k: torch.cat([p[k] for p in parts]) if parts else torch.zeros(0, dtype=torch.float64)
            for k in GRAD_NORM_KEYS}
