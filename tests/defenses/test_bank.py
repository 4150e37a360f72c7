import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_privacy.defenses.bank import ModelBank, balanced_halves
from lightning_privacy.data.digits import Digits
from lightning_privacy.defenses.erm import ERM
from lightning_privacy.defenses.reg import Reg
from lightning_privacy.errors import UserInputError


@settings(max_examples=30, deadline=None)
@given(k=st.integers(1, 12), n=st.integers(2, 300), seed=st.integers(0, 1000))
def test_each_sample_is_in_for_half_the_models(k, n, seed):
    masks = balanced_halves(k, n, seed=seed)
    per_sample = masks.sum(0)
    assert bool(((per_sample == k // 2) | (per_sample == (k + 1) // 2)).all())
    assert torch.equal(masks, balanced_halves(k, n, seed=seed))


def _bank(tmp_path, target, recipe="target"):
    dm = Digits(test_fraction=0.5, members=200, shadow=250, reference=250)
    dm.setup()
    return dm, ModelBank(target=target, datamodule=dm, recipe=recipe, epochs=1, accelerator="cpu", seed=0,
                         cache_dir=tmp_path)


def test_models_follow_the_target_recipe_and_are_cached(tmp_path):
    target = Reg(num_classes=10, input_shape=(1, 8, 8), l2=0.05, dropout=0.1)
    dm, bank = _bank(tmp_path, target)
    pool = dm.role_indices("shadow")
    models = bank.train("shadow", pool, 3)
    assert bank.trained == 3 and all(isinstance(m.model, Reg) and m.model.hparams.l2 == 0.05 for m in models)
    assert all(abs(int(m.in_mask.sum()) - pool.numel() / 2) <= 0.15 * pool.numel() for m in models)
    _, again = _bank(tmp_path, target)
    reloaded = again.train("shadow", pool, 3)
    assert again.trained == 0 and all(m.cached for m in reloaded)
    for a, b in zip(models, reloaded):
        assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))


def test_plain_erm_recipe(tmp_path):
    dm, bank = _bank(tmp_path, Reg(num_classes=10, input_shape=(1, 8, 8)), recipe="erm")
    (m,) = bank.train("shadow", dm.role_indices("shadow"), 1)
    assert type(m.model) is ERM


def test_pool_too_small_for_halves(tmp_path):
    dm, bank = _bank(tmp_path, ERM(num_classes=10, input_shape=(1, 8, 8)))
    with pytest.raises(UserInputError, match="too small"):
        bank.train("shadow", dm.role_indices("shadow")[:15], 2)


def test_cache_key_is_canonical_and_covers_what_changes_the_models(tmp_path):
    """(1, 8, 8) and [1, 8, 8] are one setting; batch size, trainer precision and clipping change the models."""
    dm, bank = _bank(tmp_path, Reg(num_classes=10, input_shape=(1, 8, 8)))
    pool = dm.role_indices("shadow")
    key = bank.key("shadow", pool, 0)
    _, same = _bank(tmp_path, Reg(num_classes=10, input_shape=[1, 8, 8]))
    assert same.key("shadow", pool, 0) == key
    dm2 = Digits(test_fraction=0.5, members=200, shadow=250, reference=250, batch_size=64)
    dm2.setup()
    other_batch = ModelBank(target=Reg(num_classes=10, input_shape=(1, 8, 8)), datamodule=dm2, epochs=1, seed=0)
    assert other_batch.key("shadow", pool, 0) != key
    for settings in ({"precision": "bf16-mixed"}, {"gradient_clip_val": 1.0}):
        other = ModelBank(target=Reg(num_classes=10, input_shape=(1, 8, 8)), datamodule=dm, epochs=1, seed=0,
                          trainer_settings=settings)
        assert other.key("shadow", pool, 0) != key


def test_early_stopping_holds_out_validation_and_keeps_the_best_weights(tmp_path):
    dm = Digits(test_fraction=0.5, members=200, shadow=250, reference=250)
    dm.setup()
    bank = ModelBank(target=ERM(num_classes=10, input_shape=(1, 8, 8)), datamodule=dm, epochs=40, patience=2,
                     accelerator="cpu", seed=0, cache_dir=tmp_path)
    pool = dm.role_indices("shadow")
    (m,) = bank.train("shadow", pool, 1)
    half = int(balanced_halves(1, pool.numel(), seed=0)[0].sum())
    assert int(m.in_mask.sum()) == half - round(0.1 * half)  # a seeded 10 % of the half validates, never trains
    assert 1 <= m.epochs_trained < 40  # stopped early; the kept weights are those of the best validation epoch
    (again,) = ModelBank(target=ERM(num_classes=10, input_shape=(1, 8, 8)), datamodule=dm, epochs=40, patience=2,
                         accelerator="cpu", seed=0, cache_dir=tmp_path).train("shadow", pool, 1)
    assert again.cached and again.epochs_trained == m.epochs_trained and torch.equal(again.in_mask, m.in_mask)
    (fixed,) = bank.__class__(target=ERM(num_classes=10, input_shape=(1, 8, 8)), datamodule=dm, epochs=2,
                              accelerator="cpu", seed=0).train("shadow", pool, 1)
    assert fixed.epochs_trained == 2 and int(fixed.in_mask.sum()) == half


def test_a_helper_datamodule_answers_with_its_own_training_indices():
    from lightning_privacy.defenses.bank import SubsetDataModule

    dm = Digits(test_fraction=0.5, members=200, shadow=250)
    dm.setup()
    half = dm.role_indices("shadow")[::2]
    sub = SubsetDataModule(dm, half)
    assert torch.equal(sub.training_indices(), half)  # not the parent's members
    assert not torch.equal(dm.training_indices(), half)
    assert sub.role_indices("shadow") is dm.role_indices("shadow")  # other roles are still the parent's


def test_a_helper_fit_advances_its_own_bar_through_every_epoch_and_batch():
    """Issue 15.8: a helper fit shows its progress while it trains (its trainer has no Lightning bar)."""
    from io import StringIO

    from lightning.pytorch import Trainer
    from rich.console import Console

    from lightning_privacy.defenses.bank import FitProgress
    from lightning_privacy.progress import bar

    dm = Digits(test_fraction=0.5, members=100)
    out = StringIO()
    with bar("shadow 1 fit", total=None, console=Console(file=out, force_terminal=True)) as b:
        trainer = Trainer(max_epochs=2, callbacks=[FitProgress(b, "shadow 1")], logger=False, accelerator="cpu",
                          enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                          limit_val_batches=0)
        trainer.fit(ERM(num_classes=10, input_shape=(1, 8, 8)), datamodule=dm)
        assert b.total == 2 * trainer.num_training_batches and b.completed == b.total
    assert "shadow 1: epoch 2/2" in out.getvalue()
