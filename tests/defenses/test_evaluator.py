"""The evaluation classifier shared by the inversion audit and the GAN fidelity audit: trained once per split, role
data, network and settings, then loaded from its cache."""

from __future__ import annotations

from pathlib import Path

import torch

from lightning_privacy.defenses import evaluator


def _counting(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = evaluator.train_classifier

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluator, "train_classifier", counted)
    return calls


def test_a_second_use_loads_from_the_cache_and_another_split_trains_anew(monkeypatch, tmp_path: Path) -> None:
    calls = _counting(monkeypatch)
    torch.manual_seed(0)
    x, y = torch.randn(40, 1, 16, 16), torch.arange(40) % 4
    kw = dict(num_classes=4, cache_dir=tmp_path, epochs=1, key={"dataset": "d", "split": "a", "role": "shadow"})
    first = evaluator.evaluation_classifier(x, y, **kw)
    second = evaluator.evaluation_classifier(x, y, **kw)
    assert len(calls) == 1 and len(list(tmp_path.glob("evaluator-*.pt"))) == 1
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
    evaluator.evaluation_classifier(x, y, **{**kw, "key": {"dataset": "d", "split": "b", "role": "shadow"}})
    evaluator.evaluation_classifier(x[:30], y[:30], **kw)  # other role images under the same key: trained anew
    evaluator.evaluation_classifier(x, y, **{**kw, "lr": 1e-4})  # other settings
    assert len(calls) == 4 and len(list(tmp_path.glob("evaluator-*.pt"))) == 4


def test_both_audits_use_the_one_helper(monkeypatch, tmp_path: Path) -> None:
    from lightning_privacy.attacks.inversion import evaluator as inversion_evaluator
    from lightning_privacy.callbacks import gan_fidelity, inversion
    from lightning_privacy.callbacks.gan_fidelity import GanFidelity, GanFidelityConfig
    from lightning_privacy.defenses.gan.gan import GAN
    from tests.gan.conftest import tiny_digits

    assert inversion.evaluation_classifier is evaluator.evaluation_classifier
    assert inversion_evaluator.evaluation_classifier is evaluator.evaluation_classifier
    assert gan_fidelity.evaluation_classifier is evaluator.evaluation_classifier
    calls = _counting(monkeypatch)
    torch.manual_seed(0)
    model = GAN(input_shape=(1, 16, 16))
    config = GanFidelityConfig(samples=20, classifier_epochs=1, downstream_samples=20, downstream_epochs=1,
                               is_splits=2, cache_dir=str(tmp_path))
    dm = tiny_digits(members=64, shadow=60, validation=20)
    first = GanFidelity(config).measure(dm, model).metrics
    second = GanFidelity(config).measure(dm, model).metrics  # the domain classifier comes from the cache
    assert len(calls) == 1
    assert first["gan/domain_classifier_acc"] == second["gan/domain_classifier_acc"]
    GanFidelity(config).measure(tiny_digits(members=64, shadow=60, validation=20, seed=1), model)  # another split
    assert len(calls) == 2
