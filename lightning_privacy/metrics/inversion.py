"""Reconstruction metrics of the inversion attacks: the class-DP paper's MIA distance (Sec. III, "Attack Success
Metric") and MSE / PSNR / SSIM of the decoder attack's reconstructions. Images are in [0, 1] pixel space."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure


def _ssim_kernel(shape: torch.Size) -> int:
    """torchmetrics' Gaussian window (11) or the largest odd one that fits small images (e.g. 8×8 digits)."""
    side = min(shape[-2], shape[-1])
    return min(11, side if side % 2 else side - 1)


def ssim_per_image(a: Tensor, b: Tensor) -> Tensor:
    """SSIM of each pair of images (n, C, H, W) → (n,), data range 1."""
    return structural_similarity_index_measure(a.float(), b.float(), data_range=1.0, reduction="none",
                                               kernel_size=_ssim_kernel(a.shape))


@dataclass
class MIADistance:
    """Per target class: ``l2`` min over its members of ‖x̂ − x‖₂, ``ssim`` min of 1 − SSIM(x̂, x), and the index
    (into the members given) of the nearest member by L2."""

    l2: Tensor
    ssim: Tensor
    nearest: Tensor


def mia_distance(reconstructions: Tensor, labels: Tensor, members: Tensor, member_labels: Tensor,
                 *, chunk: int = 4096) -> MIADistance:
    """The MIA distance: for each reconstruction (k, C, H, W) of target class ``labels[i]``, the minimum over the
    member images of that class of the Euclidean distance, and of 1 − SSIM (torchmetrics)."""
    l2, ssim, nearest = [], [], []
    for x, y in zip(reconstructions, labels.tolist()):
        idx = (member_labels == y).nonzero().flatten()
        if idx.numel() == 0:
            raise ValueError(f"no member image of class {y}: the MIA distance needs the target class's members")
        best_l2, best_ssim, best_i = float("inf"), float("inf"), -1
        for part in idx.split(chunk):
            imgs = members[part].float()
            d = (imgs - x.float()).flatten(1).norm(dim=1)
            j = int(d.argmin())
            if float(d[j]) < best_l2:
                best_l2, best_i = float(d[j]), int(part[j])
            s = 1 - ssim_per_image(x.float().expand_as(imgs), imgs)
            best_ssim = min(best_ssim, float(s.min()))
        l2.append(best_l2)
        ssim.append(best_ssim)
        nearest.append(best_i)
    return MIADistance(l2=torch.tensor(l2), ssim=torch.tensor(ssim), nearest=torch.tensor(nearest))


def reconstruction_scores(reconstructions: Tensor, targets: Tensor) -> dict[str, float]:
    """Mean ``mse`` (per pixel), ``psnr`` (dB, per image then averaged) and ``ssim`` of reconstructions vs. targets."""
    r, t = reconstructions.float(), targets.float()
    mse = ((r - t) ** 2).flatten(1).mean(1)
    psnr = peak_signal_noise_ratio(r, t, data_range=1.0, reduction="none", dim=(1, 2, 3))
    return {"mse": float(mse.mean()), "psnr": float(psnr.mean()), "ssim": float(ssim_per_image(r, t).mean())}
