"""The generative membership attacks on planted generators and discriminators."""

from __future__ import annotations

import pytest
import torch

from lightning_privacy.attacks.generative import fit_pca, leakage_metrics, mc_attack, mc_scores, reduce_scores, tvd, wb_accuracy


def _population(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g)


def _sampler(source: torch.Tensor, seed: int):
    g = torch.Generator().manual_seed(seed)
    return lambda n: source[torch.randint(source.shape[0], (n,), generator=g)]


@pytest.fixture(scope="module")
def data():
    return {"members": _population(150, 1), "holdout": _population(150, 2), "other": _population(400, 3),
            "pca": _population(200, 4)}


def test_mc_on_a_generator_of_training_samples_finds_the_members(data) -> None:
    pca = fit_pca(data["pca"], 10)
    res = mc_attack(data["members"], data["holdout"], _sampler(data["members"], 0), pca, m=40, n_generated=1500,
                    repeats=10, seed=0)
    s = res.summary()
    assert s["mc_set/acc"] == 1.0
    assert s["mc_single/acc"] > 0.8  # chance: 0.5
    assert leakage_metrics(res.scores, res.is_member, bootstrap=0)["auc"] > 0.9


def test_mc_on_a_generator_of_holdout_samples_is_at_chance(data) -> None:
    pca = fit_pca(data["pca"], 10)
    res = mc_attack(data["members"], data["holdout"], _sampler(data["other"], 0), pca, m=40, n_generated=1500,
                    repeats=30, seed=0)
    s = res.summary()
    assert 0.4 < s["mc_single/acc"] < 0.6
    assert 0.25 < s["mc_set/acc"] < 0.75
    assert len(res.single) == 30 and s["mc_single/acc_std"] > 0


def test_mc_scores_median_heuristic() -> None:
    queries = torch.tensor([[0.0], [1.0], [10.0]])
    generated = torch.tensor([[0.0], [0.5], [3.0], [100.0]])
    f, eps = mc_scores(queries, generated)
    assert eps == 0.5  # min distances 0, 0.5, 7 -> median 0.5
    assert f.tolist() == [2 / 4, 1 / 4, 0.0]


def test_pca_top_components() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 3, generator=g) * torch.tensor([10.0, 1.0, 0.1])
    pca = fit_pca(x, 2)
    assert pca.components.shape == (3, 2)
    assert abs(abs(float(pca.components[0, 0])) - 1) < 0.01


def test_wb_with_a_perfect_discriminator_reaches_one() -> None:
    is_member = torch.zeros(1000, dtype=torch.bool)
    is_member[torch.randperm(1000)[:100]] = True
    assert wb_accuracy(is_member.double(), is_member) == 1.0
    # chance: the members' share; ties are broken at random, never in the listed order
    constant = torch.zeros(1000)
    first_members = torch.arange(1000) < 100
    assert wb_accuracy(constant, first_members) < 0.3


def test_wb_reductions_and_tvd() -> None:
    scores = torch.tensor([[0.1, 0.9], [0.4, 0.2]], dtype=torch.float64)
    assert reduce_scores(scores, "max").tolist() == [0.9, 0.4]
    assert torch.allclose(reduce_scores(scores, "mean"), torch.tensor([0.5, 0.3], dtype=torch.float64))
    assert tvd(torch.full((50,), 0.95), torch.full((70,), 0.05)) == 1.0
    assert tvd(torch.full((50,), 0.5), torch.full((70,), 0.5)) == 0.0
    # max over columns: column 2 separates, column 1 does not
    a = torch.stack([torch.full((10,), 0.5), torch.full((10,), 0.99)], 1)
    b = torch.stack([torch.full((10,), 0.5), torch.full((10,), 0.01)], 1)
    assert tvd(a, b) == 1.0


def test_leakage_metrics_report_low_fpr_only_over_1000_nonmembers() -> None:
    g = torch.Generator().manual_seed(0)
    small = leakage_metrics(torch.rand(200, generator=g), torch.arange(200) < 100, bootstrap=20)
    assert set(small) == {"auc", "auc_ci95_low", "auc_ci95_high"}
    big = leakage_metrics(torch.rand(1200, generator=g), torch.arange(1200) < 100, bootstrap=20)
    assert {"tpr_at_fpr_0.001", "tpr_at_fpr_0.01", "tpr_at_fpr_0.001_ci95_low"} <= set(big)


def test_mc_without_regeneration_generates_once(data) -> None:
    calls = []
    sample = _sampler(data["other"], 0)

    def generate(n):
        calls.append(n)
        return sample(n)

    pca = fit_pca(data["pca"], 10)
    res = mc_attack(data["members"], data["holdout"], generate, pca, m=20, n_generated=300, repeats=4, seed=0,
                    regenerate=False)
    assert sum(calls) == 300 and len(res.single) == 4
    calls.clear()
    mc_attack(data["members"], data["holdout"], generate, pca, m=20, n_generated=300, repeats=4, seed=0)
    assert sum(calls) == 4 * 300
