import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer, seed_everything

from lightning_privacy.data.digits import Digits
from lightning_privacy.defenses.erm import ERM
from lightning_privacy.defenses.reg import Reg
from lightning_privacy.errors import UserInputError


def test_reg_loss_is_cross_entropy_plus_l2_on_the_prediction_layer():
    model = Reg(num_classes=3, input_shape=(1, 8, 8), l2=0.05, dropout=0.2)
    logits, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    expected = F.cross_entropy(logits, y) + 0.05 * model.net.prediction.weight.pow(2).sum()
    assert torch.allclose(model.loss(logits, y), expected)


def test_erm_loss_is_cross_entropy():
    model = ERM(num_classes=3, input_shape=(1, 8, 8))
    logits, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    assert torch.allclose(model.loss(logits, y), F.cross_entropy(logits, y))


def test_hparams_rebuild_the_same_defense():
    model = Reg(num_classes=4, input_shape=(1, 8, 8), l2=0.1)
    clone = type(model)(**model.hparams)
    assert clone.hparams == model.hparams


@pytest.mark.parametrize("cls, kwargs", [(ERM, {"lr": 0}), (ERM, {"dropout": 1.0}), (Reg, {"l2": -1.0}),
                                         (ERM, {"weight_decay": -1.0})])
def test_bad_hyperparameters(cls, kwargs):
    with pytest.raises(UserInputError):
        cls(**kwargs)


@pytest.mark.parametrize("cls", [ERM, Reg])
def test_fits_and_tests_on_digits(cls):
    seed_everything(0)
    dm = Digits(validation=0.1, test_fraction=0.3)
    model = cls(num_classes=dm.num_classes, input_shape=dm.input_shape)
    trainer = Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False)
    trainer.fit(model, datamodule=dm)
    result = trainer.test(model, datamodule=dm, verbose=False)[0]
    assert result["test/acc"] > 0.5
    assert {"test/acc", "test/acc_top5", "test/loss"} <= set(result)


def _one_step_metrics(model, dm):
    trainer = Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    return trainer.callback_metrics


@pytest.mark.parametrize("name", ["erm", "relaxloss", "advreg", "distillation", "dap"])
def test_every_training_step_logs_through_log_train_metrics(name, tmp_path, monkeypatch):
    """One helper writes train/loss and train/acc, and writes nothing when the module says it must not log member
    metrics (``logs_member_metrics`` False, as DP runs do)."""
    from lightning_privacy.defenses.advreg import AdvReg
    from lightning_privacy.defenses.dap import DAP
    from lightning_privacy.defenses.distillation import SelfDistillation
    from lightning_privacy.defenses.relaxloss import RelaxLoss

    dm = Digits(test_fraction=0.5, members=200, reference=250)
    shape = {"num_classes": dm.num_classes, "input_shape": dm.input_shape}
    make = {
        "erm": lambda: ERM(**shape),
        "relaxloss": lambda: RelaxLoss(**shape),
        "advreg": lambda: AdvReg(warmup_epochs=0, **shape),
        "distillation": lambda: SelfDistillation(teacher_epochs=1, teacher_cache_dir=str(tmp_path), **shape),
        "dap": lambda: DAP(num_shadows=2, shadow_max_epochs=1, disc_max_epochs=1, **shape),
    }[name]
    seed_everything(0)
    assert {"train/loss", "train/acc"} <= set(_one_step_metrics(make(), dm))
    silent = make()
    # as a DP run's default (dp.log_member_metrics false) answers, without turning DP on
    monkeypatch.setattr(type(silent), "logs_member_metrics", property(lambda self: False))
    assert not {"train/loss", "train/acc"} & set(_one_step_metrics(silent, dm))
