"""Attacks that read a GAN's discriminator: WB (Hayes et al., PoPETs 2019) and TVD (Mukherjee et al. 2021)."""

from __future__ import annotations

from typing import Literal, Optional

import torch
from torch import Tensor


def reduce_scores(scores: Tensor, how: Literal["max", "mean"] = "max") -> Tensor:
    """(n, k) discriminator scores → (n,): the max over PIGAN's codes or PrivGAN's discriminators (the papers'
    WB), or their mean (PrivGAN's second WB); a 1-D tensor is returned as it is."""
    if scores.ndim == 1:
        return scores
    if scores.ndim != 2:
        raise ValueError(f"scores must be (n,) or (n, k); got {tuple(scores.shape)}")
    if how == "max":
        return scores.max(dim=1).values
    if how == "mean":
        return scores.mean(dim=1)
    raise ValueError(f"how must be 'max' or 'mean'; got {how!r}")


def top_m(scores: Tensor, m: int, *, seed: int = 0) -> Tensor:
    """Indices of the ``m`` highest scores, ties broken at random (a seeded shuffle before a stable sort), so that
    tied scores never favour the samples listed first."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(scores.numel(), generator=g)
    order = torch.argsort(scores.double()[perm], descending=True, stable=True)
    return perm[order[:m]]


def wb_accuracy(scores: Tensor, is_member: Tensor, *, m: Optional[int] = None, seed: int = 0) -> float:
    """WB (Hayes et al. 2019, Sec. 4.1 of the PIGAN paper): the attacker, knowing the training-set size m among its
    samples, predicts the m samples with the highest discriminator scores as members; accuracy = the fraction of
    predicted members that are members (chance: the members' share)."""
    is_member = is_member.bool()
    if scores.ndim != 1 or scores.shape != is_member.shape:
        raise ValueError(f"scores and is_member must be 1-D and aligned; got {tuple(scores.shape)}, "
                         f"{tuple(is_member.shape)}")
    m = int(is_member.sum()) if m is None else m
    if m < 1:
        raise ValueError("WB needs at least one member")
    return float(is_member[top_m(scores, m, seed=seed)].double().mean())


def tvd(member_scores: Tensor, holdout_scores: Tensor, *, bins: int = 50) -> float:
    """Total variation distance between the histograms of D's scores (probabilities in [0, 1]) on members and on
    holdout samples: ``bins`` equal bins over [0, 1] (50, as PrivGAN's released code), ½ Σ |p_b − q_b| with p, q
    the bins' shares. With (n, k) scores (a column per code or discriminator) the max over columns (Mukherjee et
    al.; PIGAN's max over c). An upper bound on the accuracy of attacks on D's scores."""
    a = member_scores if member_scores.ndim == 2 else member_scores[:, None]
    b = holdout_scores if holdout_scores.ndim == 2 else holdout_scores[:, None]
    if a.shape[1] != b.shape[1] or a.shape[0] == 0 or b.shape[0] == 0:
        raise ValueError(f"need non-empty score sets with the same columns; got {tuple(a.shape)}, {tuple(b.shape)}")
    out = []
    for j in range(a.shape[1]):
        p = torch.histc(a[:, j].double().clamp(0, 1), bins=bins, min=0.0, max=1.0) / a.shape[0]
        q = torch.histc(b[:, j].double().clamp(0, 1), bins=bins, min=0.0, max=1.0) / b.shape[0]
        out.append(0.5 * float((p - q).abs().sum()))
    return max(out)
