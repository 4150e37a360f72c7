"""The fidelity math against references: pytorch_fid's Fréchet distance, closed-form Inception Scores."""

from __future__ import annotations

import pytest
import torch
from pytorch_fid.fid_score import calculate_frechet_distance

from lightning_privacy.metrics.fidelity import frechet_distance, inception_score, intra_fid


def _feats(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) * (1 + 0.3 * torch.rand(d, generator=g)) + shift


def test_fid_of_a_set_with_itself_is_zero() -> None:
    x = _feats(300, 8, 0)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)


def test_fid_matches_pytorch_fid() -> None:
    a, b = _feats(400, 6, 1), _feats(300, 6, 2, shift=0.5)
    ref = calculate_frechet_distance(a.mean(0).numpy(), torch.cov(a.T).numpy(), b.mean(0).numpy(),
                                     torch.cov(b.T).numpy())
    assert frechet_distance(a, b) == pytest.approx(float(ref), rel=1e-6)


def test_intra_fid_averages_per_class_fids() -> None:
    a, b = _feats(200, 4, 3), _feats(200, 4, 4, shift=1.0)
    ya, yb = torch.arange(200) % 2, torch.arange(200) % 2
    expected = (frechet_distance(a[ya == 0], b[yb == 0]) + frechet_distance(a[ya == 1], b[yb == 1])) / 2
    assert intra_fid(a, ya, b, yb) == pytest.approx(expected)
    with pytest.raises(ValueError, match="Intra-FID"):
        intra_fid(a, ya, b[:1], yb[:1])


def test_inception_score_bounds() -> None:
    assert inception_score(torch.zeros(100, 10), splits=2)[0] == pytest.approx(1.0)  # no confidence: 1
    confident = torch.full((100, 10), -1e4, dtype=torch.float64)
    confident[torch.arange(100), torch.arange(100) % 10] = 0.0
    assert inception_score(confident, splits=1)[0] == pytest.approx(10.0, rel=1e-4)  # confident and diverse: k


def test_fidelity_audit_on_a_tiny_gan(tmp_path) -> None:
    from lightning_privacy.callbacks.gan_fidelity import GanFidelity, GanFidelityConfig
    from lightning_privacy.defenses.gan.gan import GAN
    from lightning_privacy.errors import UserInputError
    from tests.gan.conftest import tiny_digits, tiny_trainer

    torch.manual_seed(0)
    dm = tiny_digits(members=64, shadow=200, validation=100)
    audit = GanFidelity(GanFidelityConfig(samples=100, classifier_epochs=10, downstream_samples=100,
                                          downstream_epochs=1, is_splits=2, cache_dir=str(tmp_path)))
    tiny_trainer(1, [audit], limit_train_batches=2).fit(GAN(input_shape=(1, 16, 16)), datamodule=dm)
    m = audit.last_result.metrics
    assert m["gan/fid_domain"] > 0 and 1.0 <= m["gan/is_domain"] <= 10.0
    assert 0.0 <= m["gan/downstream_acc"] <= 1.0
    assert m["gan/domain_classifier_acc"] > 0.5  # trained on real digits
    with pytest.raises(UserInputError, match="disjoint"):
        GanFidelityConfig(real_role="members")
