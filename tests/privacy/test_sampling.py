"""Poisson sampling (records and groups) and the subclass partition."""

import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_privacy.privacy.dp_sgd import subclass_groups
from lightning_privacy.privacy.sampling import PoissonSampler, poisson_loader, seeded_generator


def test_every_draw_is_a_step_even_when_empty():
    sampler = PoissonSampler(torch.arange(10), sample_rate=0.05, steps=200, generator=seeded_generator(0, rank=0,
                                                                                                       stream=1))
    draws = list(sampler)
    assert len(draws) == 200 and any(d == [] for d in draws)
    loader = poisson_loader(DataLoader(TensorDataset(torch.randn(10, 3), torch.zeros(10).long()), batch_size=1),
                            sample_rate=0.05, steps=50, generator=seeded_generator(0, rank=0, stream=1))
    batches = list(loader)
    assert len(batches) == 50 and any(b[0].shape == (0, 3) for b in batches)


def test_seeds_give_independent_streams_per_rank_and_fresh_ones_without_a_seed():
    def draw(seed, rank):
        return torch.rand(5, generator=seeded_generator(seed, rank=rank, stream=1))

    assert torch.equal(draw(3, 0), draw(3, 0)) and not torch.equal(draw(3, 0), draw(3, 1))
    assert not torch.equal(draw(None, 0), draw(None, 0))


def _groups(x, y, reference=None):
    return subclass_groups(DataLoader(TensorDataset(x, y)), level="subclass", per_class=3, seed=0,
                           reference=reference, num_classes=2)


def test_with_reference_centroids_a_members_subclass_depends_on_that_member_alone():
    """Issue 9.3: replacing one member leaves every other member's subclass as it was (the account covers the
    partition); k-means on the members themselves does not."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 4, generator=g), torch.arange(60) % 2
    reference = TensorDataset(torch.randn(40, 4, generator=g), torch.arange(40) % 2)
    changed = x.clone()
    changed[0] = 25.0  # one member replaced by an outlier
    before, k = _groups(x, y, reference)
    after, k_after = _groups(changed, y, reference)
    assert k == k_after == 6
    assert torch.equal(before[1:], after[1:])
    own_before, _ = _groups(x, y)
    own_after, _ = _groups(changed, y)
    assert not torch.equal(own_before[1:], own_after[1:])  # the paper's partition moves with one record
