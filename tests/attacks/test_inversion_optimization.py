"""The optimization inversion attack (class-DP paper, Algorithm 1), its priors and the MIA distance."""

import pytest
import torch
from sklearn.metrics import pairwise_distances
from torch import nn
from torchmetrics.functional.image import structural_similarity_index_measure

from lightning_privacy.attacks.inversion.optimization import invert
from lightning_privacy.attacks.inversion.priors import btv_prior, l1_prior, make_prior
from lightning_privacy.errors import UserInputError
from lightning_privacy.metrics.inversion import mia_distance, reconstruction_scores
from lightning_privacy.models.class_dp_cnn import ClassDPCNN


def btv_loop(img, p, alpha):
    """Eq. (5) pixel by pixel: Σ_l Σ_{m, m+l>0} α^{m+l} Σ_{i,j} |x[i,j] − x[i−m, j−l]| where x[i−m, j−l] exists."""
    _, h, w = img.shape
    total = 0.0
    for l in range(-p, p + 1):
        for m in range(0, p + 1):
            if m + l <= 0:
                continue
            for c in range(img.shape[0]):
                for i in range(h):
                    for j in range(w):
                        if 0 <= i - m < h and 0 <= j - l < w:
                            total += alpha ** (m + l) * abs(float(img[c, i, j]) - float(img[c, i - m, j - l]))
    return total


@pytest.mark.parametrize("p,alpha", [(1, 1.0), (2, 0.9), (3, 0.5)])
def test_btv_equals_a_direct_loop_of_the_papers_double_sum(p, alpha):
    x = torch.rand(3, 2, 6, 7, generator=torch.Generator().manual_seed(p), dtype=torch.float64)
    got = btv_prior(x, p=p, alpha=alpha)
    want = torch.tensor([btv_loop(img, p, alpha) for img in x], dtype=torch.float64)
    assert torch.allclose(got, want)
    assert float(btv_prior(torch.full((1, 1, 5, 5), 0.3), p=p, alpha=alpha)) == 0.0


def test_l1_prior_is_the_l1_norm_per_image():
    x = torch.randn(4, 1, 3, 3)
    assert torch.allclose(l1_prior(x), x.abs().sum((1, 2, 3)))


def tiny_cnn():
    torch.manual_seed(0)
    return ClassDPCNN(input_shape=(1, 8, 8), num_classes=4, channels=(4, 8), kernel_size=3, hidden=16)


def test_algorithm_1_lowers_one_minus_f_label_over_t():
    r = invert(tiny_cnn(), labels=range(4), shape=(1, 8, 8), steps=60, lr=0.1, lam=0.001, prior="l1")
    assert r.images.shape == (1, 4, 1, 8, 8) and r.history.shape == (60,)
    assert r.history[-10:].mean() < r.history[:10].mean()
    assert r.images.min() >= 0 and r.images.max() <= 1


def softmax_regression(classes=10, side=8):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(side * side, classes))
    nn.init.normal_(model[1].weight)  # unit-scale weights: a trained regression's margins, not the init's tiny ones
    return model


@pytest.mark.parametrize("optimizer", ["paper", "adam"])
def test_softmax_regression_without_prior_is_inverted_for_every_class(optimizer):
    r = invert(softmax_regression(), labels=range(10), shape=(1, 8, 8), steps=150, lr=0.1, lam=0.0,
               prior="none", optimizer=optimizer)
    assert (r.confidence > 0.9).all(), r.confidence


def test_paper_update_has_no_bias_correction():
    """One step from w = 0: m = 0.1 g, v = 0.001 g², so w₁ = −η · 0.1 g / √(0.001 g² + τ) ≈ −η · √10 · sign(g)
    (Adam with bias correction would move by η)."""
    model = softmax_regression(classes=3, side=2)
    r = invert(model, labels=[0], shape=(1, 2, 2), steps=1, lr=0.01, lam=0.0, prior="none",
               change_of_variable=False)
    moved = r.images.flatten()  # x = w, from 0, clipped below at 0: the coordinates that rose
    assert moved.max() == pytest.approx(0.01 * 10 ** 0.5, rel=1e-3)


def test_without_change_of_variable_the_output_is_clipped_to_the_unit_box():
    model = softmax_regression()
    r = invert(model, labels=range(10), shape=(1, 8, 8), steps=40, lr=0.5, lam=0.0, prior="none",
               change_of_variable=False)
    assert r.images.min() >= 0.0 and r.images.max() <= 1.0
    assert (r.images == 0).any() and (r.images == 1).any()  # a step of 0.5 overshoots: clipping did act


def test_restarts_form_one_batch_of_classes():
    r = invert(tiny_cnn(), labels=[0, 2], shape=(1, 8, 8), steps=3, restarts=3, seed=5)
    assert r.images.shape == (3, 2, 1, 8, 8) and r.confidence.shape == (3, 2)
    assert not torch.equal(r.images[0], r.images[1])  # seeded noise starts


@pytest.mark.parametrize("kwargs", [{"lam": -0.1}, {"steps": 0}, {"prior": "btv", "p": 0},
                                    {"prior": "btv", "alpha": 0.0}, {"prior": "btv", "alpha": 1.5},
                                    {"restarts": 0}, {"optimizer": "sgd"}, {"prior": "l2"}])
def test_bad_settings_are_one_clear_error(kwargs):
    with pytest.raises(UserInputError):
        invert(tiny_cnn(), labels=[0], shape=(1, 8, 8), **{"steps": 2, **kwargs})


def test_make_prior_checks_btv_settings():
    with pytest.raises(UserInputError, match="p must"):
        make_prior("btv", p=0)


def test_mia_distance_equals_a_brute_force_minimum():
    g = torch.Generator().manual_seed(0)
    recon = torch.rand(3, 1, 8, 8, generator=g)
    members = torch.rand(30, 1, 8, 8, generator=g)
    member_labels = torch.arange(30) % 3
    labels = torch.tensor([2, 0, 1])
    d = mia_distance(recon, labels, members, member_labels, chunk=4)
    for i, y in enumerate(labels.tolist()):
        own = members[member_labels == y]
        l2 = pairwise_distances(recon[i].flatten()[None].numpy(), own.flatten(1).numpy()).min()
        ssim = min(1 - float(structural_similarity_index_measure(recon[i:i + 1], o[None], data_range=1.0,
                                                                 kernel_size=7)) for o in own)
        assert float(d.l2[i]) == pytest.approx(l2, rel=1e-5)
        assert float(d.ssim[i]) == pytest.approx(ssim, rel=1e-5)
        assert member_labels[d.nearest[i]] == y


def test_reconstruction_scores_of_perfect_and_noisy_images():
    x = torch.rand(4, 1, 8, 8)
    perfect = reconstruction_scores(x, x)
    assert perfect["mse"] == 0 and perfect["ssim"] == pytest.approx(1.0)
    noisy = reconstruction_scores((x + 0.1).clamp(0, 1), x)
    assert 0 < noisy["mse"] and noisy["psnr"] > 10 and noisy["ssim"] < 1
