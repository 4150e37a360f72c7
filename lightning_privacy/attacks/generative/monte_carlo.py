"""The Monte-Carlo membership attacks on generated samples (Hilprecht et al., PoPETs 2019): MC-Single and MC-Set
with the distance-based f of the median heuristic, on the top principal components of the pixels."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from lightning_privacy.attacks.generative.discriminator import top_m


@dataclass(frozen=True)
class PCA:
    """A linear projection fitted on the attacker's own data (never on the samples it scores)."""

    mean: Tensor
    components: Tensor  # (d, k)

    def transform(self, x: Tensor) -> Tensor:
        return (x.flatten(1).double() - self.mean) @ self.components


def fit_pca(x: Tensor, n_components: int = 40) -> PCA:
    """The top ``n_components`` principal components of the flattened images ``x`` (fewer when x has fewer
    samples or pixels)."""
    flat = x.flatten(1).double()
    if flat.shape[0] < 2:
        raise ValueError("PCA needs at least 2 samples")
    mean = flat.mean(dim=0)
    _, _, vh = torch.linalg.svd(flat - mean, full_matrices=False)
    k = min(n_components, vh.shape[0])
    return PCA(mean=mean, components=vh[:k].T.contiguous())


def _min_distances(queries: Tensor, generated: Tensor, chunk: int) -> Tensor:
    out = torch.full((queries.shape[0],), math.inf, dtype=torch.float64)
    for start in range(0, generated.shape[0], chunk):
        out = torch.minimum(out, torch.cdist(queries, generated[start:start + chunk]).min(dim=1).values)
    return out


def mc_scores(queries: Tensor, generated: Tensor, *, chunk: int = 8192) -> tuple[Tensor, float]:
    """f(x) = (1/n) Σ_i 1{d(x, g_i) ≤ ε} for each projected query x over the n projected generated samples, with
    ε = median over the queries of min_i d(x, g_i) (the median heuristic; the PIGAN paper, Sec. 4.1). Returns f
    and ε."""
    queries, generated = queries.double(), generated.double()
    eps = float(_min_distances(queries, generated, chunk).median())
    counts = torch.zeros(queries.shape[0], dtype=torch.float64)
    for start in range(0, generated.shape[0], chunk):
        counts += (torch.cdist(queries, generated[start:start + chunk]) <= eps).sum(dim=1)
    return counts / generated.shape[0], eps


@dataclass
class MCResult:
    """Per repeat: MC-Single accuracy (the fraction of the top-M that are members), MC-Set success (1 when most of
    the top-M are members, ½ on an exact tie, else 0) and ε; ``scores``/``is_member``: every repeat's f values."""

    single: list[float] = field(default_factory=list)
    set_success: list[float] = field(default_factory=list)
    eps: list[float] = field(default_factory=list)
    scores: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.float64))
    is_member: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.bool))

    @staticmethod
    def _mean_std(values: list[float]) -> tuple[float, float]:
        t = torch.tensor(values, dtype=torch.float64)
        return float(t.mean()), float(t.std(unbiased=False))

    def summary(self) -> dict[str, float]:
        s, s_std = self._mean_std(self.single)
        t, t_std = self._mean_std(self.set_success)
        return {"mc_single/acc": s, "mc_single/acc_std": s_std, "mc_set/acc": t, "mc_set/acc_std": t_std}


def mc_attack(members: Tensor, holdout: Tensor, generate: Callable[[int], Tensor], pca: PCA, *, m: int = 100,
              n_generated: int = 100_000, repeats: int = 20, seed: int = 0, chunk: int = 8192,
              regenerate: bool = True, generate_chunk: int = 500) -> MCResult:
    """MC-Single and MC-Set (Hilprecht et al. 2019; the PIGAN paper's Sec. 4.1, 5.1.2: M = 100, n = 10⁵, 40
    components, 20 repeats). Each repeat draws M members and M holdout samples without replacement and n fresh
    samples from ``generate`` (called with at most ``generate_chunk`` at a time: a generator's activations for
    thousands of images at once take gigabytes), ranks the 2M by f and predicts the top M as members
    (ties broken at random). ``regenerate: false`` draws the n generated samples once and reuses them in every
    repeat (only the M + M queries are redrawn): 1/repeats of the generator's cost, for CPU-sized runs."""
    if m < 1 or m > members.shape[0] or m > holdout.shape[0]:
        raise ValueError(f"M = {m} must be >= 1 and at most the members ({members.shape[0]}) and holdout "
                         f"({holdout.shape[0]}) samples given")
    if n_generated < 1 or repeats < 1:
        raise ValueError(f"n_generated and repeats must be >= 1; got {n_generated}, {repeats}")
    g = torch.Generator().manual_seed(seed)
    result, scores, labels = MCResult(), [], []
    gen = None
    for r in range(repeats):
        a = members[torch.randperm(members.shape[0], generator=g)[:m]]
        b = holdout[torch.randperm(holdout.shape[0], generator=g)[:m]]
        queries = pca.transform(torch.cat([a, b]))
        if gen is None or regenerate:
            gen = torch.cat([pca.transform(generate(min(generate_chunk, n_generated - s)).cpu())
                             for s in range(0, n_generated, generate_chunk)])
        f, eps = mc_scores(queries, gen, chunk=chunk)
        hits = int((top_m(f, m, seed=seed * 1000 + r) < m).sum())  # the first m queries are the members
        result.single.append(hits / m)
        result.set_success.append(1.0 if 2 * hits > m else 0.5 if 2 * hits == m else 0.0)
        result.eps.append(eps)
        scores.append(f)
        labels.append(torch.arange(2 * m) < m)
    result.scores, result.is_member = torch.cat(scores), torch.cat(labels)
    return result
