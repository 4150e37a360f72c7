"""The optimization model-inversion attack, the class-DP paper's Algorithm 1 ("Improved MIA"): for each target
label, find the image x that the model assigns to it, minimizing c(x) = 1 − f_label(x) + λ·R(x) (eq. 4 / 6).

All target classes (and restarts) are optimised together as one batch of shape (restarts · classes, C, H, W): the
model runs in eval mode, so each image's gradient is that of its own cost."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Optional, Sequence

import torch
from torch import Tensor, nn

from lightning_privacy.attacks.inversion.priors import PriorName, make_prior
from lightning_privacy.errors import UserInputError

Optimizer = Literal["paper", "adam"]


@dataclass
class InversionResult:
    """``images``: the reconstructions x_T in [0, 1], (restarts, classes, C, H, W); ``labels``: the target classes;
    ``confidence``: f_label(x_T), (restarts, classes); ``history``: 1 − f_label(x_{t−1}) averaged over the batch at
    every step t (T,); ``cost``: c(x_{t−1}) averaged likewise (T,)."""

    images: Tensor
    labels: Tensor
    confidence: Tensor
    history: Tensor
    cost: Tensor


def check_settings(*, steps: int, lr: float, lam: float, restarts: int) -> None:
    if not isinstance(steps, int) or steps < 1:
        raise UserInputError(f"inversion steps T must be an integer >= 1 (the paper's MNIST preset: 5000); "
                             f"got {steps!r}")
    if lam < 0:
        raise UserInputError(f"inversion λ (lam) must be >= 0 (the paper: 0.05 with ℓ1, 0.001 with BTV); got {lam}")
    if lr <= 0:
        raise UserInputError(f"inversion step size η (lr) must be > 0 (the paper: 0.1); got {lr}")
    if not isinstance(restarts, int) or restarts < 1:
        raise UserInputError(f"inversion restarts R must be an integer >= 1 (1: the paper's w₀ = 0); got {restarts!r}")


def invert(
    model: nn.Module,
    *,
    labels: Sequence[int],
    shape: Sequence[int],
    steps: int = 5000,
    lr: float = 0.1,
    lam: float = 0.05,
    prior: PriorName = "l1",
    p: int = 2,
    alpha: float = 0.9,
    optimizer: Optimizer = "paper",
    change_of_variable: bool = True,
    restarts: int = 1,
    init_std: float = 0.1,
    beta1: float = 0.9,
    beta2: float = 0.999,
    tau: float = 1e-8,
    seed: int = 0,
    normalize: Optional[Callable[[Tensor], Tensor]] = None,
) -> InversionResult:
    """Algorithm 1 for every label in ``labels`` at once; images of ``shape`` (C, H, W) in [0, 1] pixel space,
    ``normalize`` maps them to the model's input (e.g. the datamodule's mean/std).

    ``optimizer="paper"``: lines 6–8 as printed — m_t = β1 m + (1 − β1) g, v_t = β2 v + (1 − β2) g², w ← w −
    η m_t / √(v_t + τ), with no bias correction; ``"adam"``: ``torch.optim.Adam(lr=η, betas=(β1, β2), eps=τ)``.
    The gradient g is taken with respect to w. ``change_of_variable``: x = (tanh(w) + 1)/2 (line 4); without it
    x = w, projected onto [0, 1] after every update (so the output is clipped to [0, 1]). ``restarts`` R: R = 1
    starts from w₀ = 0 (the paper's line 1); R > 1 starts every restart from seeded N(0, init_std²) noise."""
    check_settings(steps=steps, lr=lr, lam=lam, restarts=restarts)
    if optimizer not in ("paper", "adam"):
        raise UserInputError(f"inversion optimizer must be 'paper' (Algorithm 1) or 'adam' (torch); got {optimizer!r}")
    regularizer = make_prior(prior, p=p, alpha=alpha)
    params = list(model.parameters())
    device = params[0].device if params else torch.device("cpu")
    label = torch.as_tensor(list(labels), dtype=torch.long, device=device)
    if label.numel() == 0:
        raise UserInputError("inversion needs at least one target class")
    k = label.numel()
    target = label.repeat(restarts)
    size = (restarts * k, *shape)
    if restarts == 1:
        w = torch.zeros(size, device=device)
    else:
        g = torch.Generator().manual_seed(seed)
        w = (init_std * torch.randn(size, generator=g)).to(device)
    if not change_of_variable:
        w = w.clamp(0.0, 1.0)
    w.requires_grad_(True)
    to_image = (lambda v: (torch.tanh(v) + 1) / 2) if change_of_variable else (lambda v: v)
    prepare = normalize or (lambda v: v)
    adam = torch.optim.Adam([w], lr=lr, betas=(beta1, beta2), eps=tau) if optimizer == "adam" else None
    m = torch.zeros_like(w)
    v = torch.zeros_like(w)
    history = torch.empty(steps)
    cost_history = torch.empty(steps)
    was_training = model.training
    model.eval()
    requires = [q.requires_grad for q in params]
    for q in params:
        q.requires_grad_(False)
    try:
        for t in range(steps):
            x = to_image(w)                                                          # line 4
            f_label = model(prepare(x)).softmax(-1).gather(1, target[:, None]).squeeze(1)
            cost = 1 - f_label + lam * regularizer(x)                                # eq. (4) / (6)
            (grad,) = torch.autograd.grad(cost.sum(), w)                             # line 5, w.r.t. w
            history[t] = float((1 - f_label.detach()).mean())
            cost_history[t] = float(cost.detach().mean())
            with torch.no_grad():
                if adam is not None:
                    w.grad = grad
                    adam.step()
                else:
                    m.mul_(beta1).add_(grad, alpha=1 - beta1)                       # line 6
                    v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)             # line 7
                    w.sub_(lr * m / (v + tau).sqrt())                               # line 8
                if not change_of_variable:
                    w.clamp_(0.0, 1.0)
        with torch.no_grad():
            x = to_image(w).detach()                                                 # line 10
            confidence = model(prepare(x)).softmax(-1).gather(1, target[:, None]).squeeze(1)
    finally:
        for q, r in zip(params, requires):
            q.requires_grad_(r)
        model.train(was_training)
    return InversionResult(images=x.view(restarts, k, *shape).cpu(), labels=label.cpu(),
                           confidence=confidence.view(restarts, k).cpu(), history=history, cost=cost_history)
