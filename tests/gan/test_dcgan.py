"""Shapes of the conditional DCGAN (Tables 4 and 5) for every layout, and the sizes it refuses."""

from __future__ import annotations

import pytest
import torch

from lightning_privacy.errors import UserInputError
from lightning_privacy.models.dcgan import (
    CodeClassifier,
    ConditionalDiscriminator,
    ConditionalGenerator,
    resolve_layout,
)


@pytest.mark.parametrize("shape,layout", [((1, 28, 28), "fmnist"), ((3, 32, 32), "cifar"), ((1, 32, 32), "cifar"),
                                          ((3, 20, 20), "fmnist"), ((3, 64, 64), "cifar")])
@pytest.mark.parametrize("codes", [0, 3])
def test_shapes(shape, layout, codes) -> None:
    torch.manual_seed(0)
    assert resolve_layout(shape) == layout
    g = ConditionalGenerator(shape, num_classes=10, latent_dim=100, num_codes=codes)
    d = ConditionalDiscriminator(shape, num_classes=10, num_codes=codes)
    z, y = torch.randn(4, 100), torch.randint(0, 10, (4,))
    c = torch.randint(0, codes, (4,)) if codes else None
    with torch.no_grad():
        x = g(z, y, c)
    assert x.shape == (4, *shape)
    assert float(x.abs().max()) <= 1.0
    assert d(x, y, c).shape == (4,)
    if codes:
        assert CodeClassifier(shape, num_codes=codes)(x).shape == (4, codes)


def test_table4a_layers() -> None:
    g, d = ConditionalGenerator((1, 28, 28)), ConditionalDiscriminator((1, 28, 28))
    assert g.zy.out_features == 7 * 7 * 128
    assert [m.out_channels for m in g.blocks if isinstance(m, torch.nn.ConvTranspose2d)] == [128, 128, 64]
    assert [m.kernel_size for m in g.blocks if isinstance(m, torch.nn.ConvTranspose2d)] == [(5, 5), (5, 5), (3, 3)]
    assert all(m.momentum == 0.1 for m in g.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
    assert d.label_map.out_features == 28 * 28
    assert [m.out_channels for m in d.trunk if isinstance(m, torch.nn.Conv2d)] == [64, 128, 128]
    pig = ConditionalGenerator((1, 28, 28), num_codes=2)
    assert pig.code.out_features == 7 * 7 * 32  # Table 5: c -> dense 7x7x32
    assert ConditionalDiscriminator((1, 28, 28), num_codes=2).code_map.out_features == 28 * 28


def test_code_is_required_when_configured() -> None:
    g = ConditionalGenerator((1, 28, 28), num_codes=2)
    with pytest.raises(ValueError, match="membership code"):
        g(torch.randn(2, 100), torch.zeros(2, dtype=torch.long))


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 30, 30), (1, 28, 32)])
def test_sizes_it_cannot_produce_name_the_fix(shape) -> None:
    with pytest.raises(UserInputError, match="image_size"):
        ConditionalGenerator(shape)
