"""Poisson sampling for DP-SGD: of records (Opacus' DPDataLoader) and of whole groups (class-DP paper Alg. 2)."""

from __future__ import annotations

from typing import Iterator, Optional

import numpy as np
import torch
from opacus.data_loader import DPDataLoader, dtype_safe, shape_safe, wrap_collate_with_empty
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data._utils.collate import default_collate


def poisson_loader(loader: DataLoader, *, sample_rate: float, distributed: bool,
                   generator: Optional[torch.Generator] = None) -> DataLoader:
    """The same dataset, each record drawn independently with ``sample_rate`` per step; ``1/q`` steps an epoch.

    Under DDP every rank samples its own shard at the same rate, so the global expected batch is q·n."""
    return DPDataLoader(loader.dataset, sample_rate=sample_rate, distributed=distributed, generator=generator,
                        num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                        persistent_workers=loader.persistent_workers)


class GroupPoissonSampler(Sampler[list[int]]):
    """Each step samples every group independently with rate q and yields all the records of the sampled
    groups (possibly none); ``round(1/q)`` steps an epoch."""

    def __init__(self, groups: Tensor, *, sample_rate: float, generator: Optional[torch.Generator] = None) -> None:
        self.groups = groups.long()
        self.num_groups = int(self.groups.max()) + 1 if groups.numel() else 0
        self.sample_rate = sample_rate
        self.generator = generator
        self.steps = max(1, round(1.0 / sample_rate))
        order = torch.argsort(self.groups, stable=True)
        counts = torch.bincount(self.groups, minlength=self.num_groups)
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


def group_loader(loader: DataLoader, groups: Tensor, *, sample_rate: float,
                 generator: Optional[torch.Generator] = None) -> DataLoader:
    """A loader over ``loader``'s dataset whose batches are whole Poisson-sampled groups, as (x, y, group)."""
    dataset = WithGroups(loader.dataset, groups)
    first = dataset[0]
    collate = wrap_collate_with_empty(collate_fn=default_collate, sample_empty_shapes=[(0, *shape_safe(x)) for x in first],
                                      dtypes=[dtype_safe(x) for x in first])
    return DataLoader(dataset, batch_sampler=GroupPoissonSampler(groups, sample_rate=sample_rate, generator=generator),
                      collate_fn=collate, num_workers=loader.num_workers)


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
