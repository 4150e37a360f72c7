"""Poisson sampling for DP-SGD: of records (each rank its own shard and generator) and of whole groups (class-DP
paper Alg. 2); the subclass partition of the class-DP paper."""

from __future__ import annotations

import os
from typing import Callable, Iterator, Optional

import numpy as np
import torch
from opacus.data_loader import dtype_safe, shape_safe, wrap_collate_with_empty
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data._utils.collate import default_collate


def derive_seed(seed: Optional[int], *, rank: int, stream: int) -> int:
    """A generator seed: from ``os.urandom`` when ``seed`` is None (nothing to log or reproduce), else derived
    from (seed, rank, stream) so that every rank and every use (noise 0, sampling 1) draws independently.
    torch's generators (Mersenne Twister, Philox) are not cryptographically secure."""
    entropy = int.from_bytes(os.urandom(16), "little") if seed is None else int(seed)
    state = np.random.SeedSequence(entropy, spawn_key=(int(rank), int(stream))).generate_state(1, np.uint64)
    return int(state[0]) >> 1


def seeded_generator(seed: Optional[int], *, rank: int, stream: int) -> torch.Generator:
    """A CPU generator of its own, seeded by ``derive_seed``."""
    return torch.Generator().manual_seed(derive_seed(seed, rank=rank, stream=stream))


class PoissonSampler(Sampler[list[int]]):
    """DP-SGD's Poisson sampling of one shard: each step draws every index of ``indices`` independently with
    rate q and yields the drawn ones, possibly none (an empty draw is still a step: DP-SGD then releases noise
    only, and under DDP every rank takes the same ``steps`` steps an epoch)."""

    def __init__(self, indices: Tensor, *, sample_rate: float, steps: int, generator: torch.Generator) -> None:
        self.indices, self.sample_rate, self.steps, self.generator = indices.long(), sample_rate, steps, generator

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.steps):
            mask = torch.rand(self.indices.numel(), generator=self.generator) < self.sample_rate
            yield self.indices[mask].tolist()


def _empty_safe_collate(dataset: Dataset, collate_fn: Optional[Callable]) -> Callable:
    first = dataset[0]
    return wrap_collate_with_empty(collate_fn=collate_fn or default_collate,
                                   sample_empty_shapes=[(0, *shape_safe(x)) for x in first],
                                   dtypes=[dtype_safe(x) for x in first])


def poisson_loader(loader: DataLoader, *, sample_rate: float, steps: int, generator: torch.Generator,
                   world_size: int = 1, rank: int = 0) -> DataLoader:
    """The same dataset, each record drawn independently with ``sample_rate`` per step, ``steps`` steps an epoch.

    Under DDP rank r samples the shard r, r + W, r + 2W, ... with its own ``generator`` at the same rate, so every
    record is drawn with probability q at each step, independently of every other record, and the global
    expected batch is q·n."""
    dataset = loader.dataset
    shard = torch.arange(rank, len(dataset), world_size)
    sampler = PoissonSampler(shard, sample_rate=sample_rate, steps=steps, generator=generator)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=loader.num_workers,
                      collate_fn=_empty_safe_collate(dataset, loader.collate_fn),
                      persistent_workers=loader.persistent_workers)


class GroupPoissonSampler(Sampler[list[int]]):
    """Each step samples every group independently with rate q and yields all the records of the sampled
    groups (possibly none); ``round(1/q)`` steps an epoch."""

    def __init__(self, groups: Tensor, *, sample_rate: float, generator: torch.Generator,
                 num_groups: Optional[int] = None, steps: Optional[int] = None) -> None:
        self.groups = groups.long()
        self.num_groups = num_groups if num_groups is not None else int(self.groups.max()) + 1 if groups.numel() else 0
        self.sample_rate = sample_rate
        self.generator = generator
        self.steps = steps or max(1, round(1.0 / sample_rate))
        order = torch.argsort(self.groups, stable=True)
        counts = torch.bincount(self.groups, minlength=self.num_groups)[:self.num_groups]
        self._members = list(torch.split(order, counts.tolist()))

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.steps):
            chosen = torch.rand(self.num_groups, generator=self.generator) < self.sample_rate
            picked = [self._members[g] for g in chosen.nonzero().flatten().tolist()]
            yield torch.cat(picked).tolist() if picked else []


class WithGroups(Dataset):
    """(x, y, group) for the records of a dataset, given each record's group id."""

    def __init__(self, base: Dataset, groups: Tensor) -> None:
        self.base, self.groups = base, groups.long()

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple:
        x, y = self.base[i]
        return x, y, int(self.groups[i])


def group_loader(loader: DataLoader, groups: Tensor, *, sample_rate: float, generator: torch.Generator,
                 num_groups: Optional[int] = None, steps: Optional[int] = None) -> DataLoader:
    """A loader over ``loader``'s dataset whose batches are whole Poisson-sampled groups, as (x, y, group)."""
    dataset = WithGroups(loader.dataset, groups)
    sampler = GroupPoissonSampler(groups, sample_rate=sample_rate, generator=generator, num_groups=num_groups,
                                  steps=steps)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=_empty_safe_collate(dataset, None),
                      num_workers=loader.num_workers)


def kmeans_subclasses(features: Tensor, labels: Tensor, *, per_class: int, seed: int) -> Tensor:
    """Subclass ids: k-means (``per_class`` clusters, fewer if a class is smaller) within each class on the
    flattened inputs (PCA to 50 dimensions first when they are larger), numbered class by class."""
    flat = features.reshape(features.shape[0], -1).double().numpy()
    labels_np = labels.numpy()
    out = np.zeros(labels_np.shape[0], dtype=np.int64)
    offset = 0
    for c in np.unique(labels_np):
        rows = np.flatnonzero(labels_np == c)
        k = min(per_class, rows.size)
        x = flat[rows]
        if x.shape[1] > 50 and rows.size > 50:
            x = PCA(n_components=50, random_state=seed).fit_transform(x)
        ids = KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(x) if k > 1 else np.zeros(rows.size, int)
        _, ids = np.unique(ids, return_inverse=True)  # drop empty clusters from the numbering
        out[rows] = ids + offset
        offset += int(ids.max()) + 1
    return torch.from_numpy(out)


def kmeans_centroids(features: Tensor, labels: Tensor, *, per_class: int, seed: int,
                     num_classes: int) -> list[Optional[np.ndarray]]:
    """Per class, ``per_class`` k-means centroids (fewer if the class has fewer records) of the flattened inputs;
    None for a class without records."""
    flat = features.reshape(features.shape[0], -1).double().numpy()
    labels_np = labels.numpy()
    out: list[Optional[np.ndarray]] = []
    for c in range(num_classes):
        x = flat[labels_np == c]
        if x.shape[0] == 0:
            out.append(None)
            continue
        k = min(per_class, x.shape[0])
        out.append(KMeans(n_clusters=k, n_init=3, random_state=seed).fit(x).cluster_centers_ if k > 1
                   else x.mean(0, keepdims=True))
    return out


def nearest_centroid_groups(features: Tensor, labels: Tensor, centroids: list[Optional[np.ndarray]]
                            ) -> tuple[Tensor, int]:
    """Each record's subclass: the nearest centroid of its own class (its own pixels and label alone decide it),
    numbered class by class; a class without centroids is one subclass. Returns (ids, number of subclasses)."""
    flat = features.reshape(features.shape[0], -1).double().numpy()
    labels_np = labels.numpy()
    out = np.zeros(labels_np.shape[0], dtype=np.int64)
    offset = 0
    for c in range(max(len(centroids), int(labels_np.max()) + 1 if labels_np.size else 0)):
        cents = centroids[c] if c < len(centroids) else None
        rows = np.flatnonzero(labels_np == c)
        if cents is None:
            out[rows] = offset
            offset += 1
            continue
        if rows.size:
            dist = ((flat[rows, None, :] - cents[None, :, :]) ** 2).sum(-1)
            out[rows] = offset + dist.argmin(1)
        offset += cents.shape[0]
    return torch.from_numpy(out), offset
