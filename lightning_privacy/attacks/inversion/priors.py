"""Image priors R(x) of the optimization inversion attack (class-DP paper, Sec. III): the ℓ1 norm (eq. 4) and the
bilateral total variation (eq. 5). Each maps a batch (n, C, H, W) to one value per image (n,)."""

from __future__ import annotations

from typing import Callable, Literal

from torch import Tensor

from lightning_privacy.errors import UserInputError

PriorName = Literal["l1", "btv", "none"]


def l1_prior(x: Tensor) -> Tensor:
    """‖x‖₁ per image (eq. 4)."""
    return x.abs().flatten(1).sum(1)


def check_btv(p: int, alpha: float) -> None:
    if not isinstance(p, int) or p < 1:
        raise UserInputError(f"BTV window p must be an integer >= 1 (the paper's faces preset: 2); got {p!r}")
    if not 0.0 < alpha <= 1.0:
        raise UserInputError(f"BTV decay alpha must be in (0, 1] (the paper's faces preset: 0.9); got {alpha!r}")


def btv_prior(x: Tensor, *, p: int = 2, alpha: float = 0.9) -> Tensor:
    """Bilateral total variation per image, the class-DP paper's eq. (5) as printed:

    R_BTV = Σ_{l=−p..p} Σ_{m=0..p, m+l>0} α^{m+l} ‖x − S_x^l S_y^m x‖₁

    S_x^l shifts by l pixels along the width, S_y^m by m along the height. At the border the difference is taken
    only where the shifted pixel exists (no wrap-around, no zero fill), so a constant image has R = 0. The exponent
    is ``m + l`` as printed (Farsiu et al.'s original BTV uses |m| + |l|; with m + l > 0 both are positive)."""
    check_btv(p, alpha)
    _, _, h, w = x.shape
    total = x.new_zeros(x.shape[0])
    for l in range(-p, p + 1):
        for m in range(0, p + 1):
            if m + l <= 0 or abs(l) >= w or m >= h:
                continue
            # x[i, j] − x[i − m, j − l] over the pixels where both exist
            a = x[:, :, m:, max(l, 0):w + min(l, 0)]
            b = x[:, :, :h - m, max(-l, 0):w - max(l, 0)]
            total = total + alpha ** (m + l) * (a - b).abs().flatten(1).sum(1)
    return total


def make_prior(name: PriorName, *, p: int = 2, alpha: float = 0.9) -> Callable[[Tensor], Tensor]:
    """The prior ``name`` (``l1``, ``btv`` with window ``p`` and decay ``alpha``, or ``none``) as x → (n,)."""
    if name == "l1":
        return l1_prior
    if name == "btv":
        check_btv(p, alpha)
        return lambda x: btv_prior(x, p=p, alpha=alpha)
    if name == "none":
        return lambda x: x.new_zeros(x.shape[0])
    raise UserInputError(f"unknown inversion prior {name!r}; choose l1, btv or none")
