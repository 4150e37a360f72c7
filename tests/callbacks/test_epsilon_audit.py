"""The one-run ε audit: canaries held out by a fair coin; a bound > 0 on memorization, ≤ the accountant's ε on DP."""

import pytest
import torch
from lightning.pytorch import Trainer, seed_everything

from lightning_privacy.callbacks.epsilon_audit import EpsilonAudit, EpsilonAuditConfig
from lightning_privacy.data.base import DatasetParts, PrivacyDataModule, TensorImages
from lightning_privacy.defenses.erm import ERM
from lightning_privacy.errors import UserInputError
from lightning_privacy.privacy.config import DPConfig


class NoiseImages(PrivacyDataModule):
    """Random images with random labels: nothing to generalize, so a trained canary is one memorized."""

    dataset_name = "noise"
    num_classes = 10
    channels = 1
    default_size = 8
    mean = (0.5,)
    std = (0.29,)

    def load_parts(self) -> DatasetParts:
        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (600, 1, 8, 8), generator=g, dtype=torch.uint8)
        return DatasetParts(train=TensorImages(images, torch.randint(0, 10, (600,), generator=g)))


def run(model, audit: EpsilonAudit, epochs: int) -> dict:
    """Fit then test (which runs the audit); the metrics as they stood at the end of fit."""
    dm = NoiseImages(members=200, validation=0, test_fraction=0.3, batch_size=20)
    trainer = Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu", callbacks=[audit], num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
    fitted = {k: float(v) for k, v in trainer.callback_metrics.items()}
    trainer.test(model, datamodule=dm, verbose=False)
    return fitted


def test_out_canaries_never_reach_the_training_loader():
    dm = NoiseImages(members=200, validation=0, test_fraction=0.3)
    audit = EpsilonAudit(EpsilonAuditConfig(canaries=100))
    trainer = Trainer(logger=False, max_epochs=1)
    trainer.datamodule = dm  # what fit sets before the callbacks' setup
    dm.setup("fit")
    audit.setup(trainer, ERM(num_classes=10, input_shape=(1, 8, 8)), "fit")
    trained = dm.training_indices()
    out = audit.canaries[~audit.included]
    assert not torch.isin(out, trained).any()
    assert torch.isin(audit.canaries[audit.included], trained).all()
    assert trained.numel() == 200 - out.numel()


WIDE = {"class_path": "lightning_privacy.models.cnn.PaperCNN", "init_args": {"hidden": 256}}


def test_a_model_that_memorizes_its_canaries_gets_a_clearly_positive_bound():
    seed_everything(0)
    audit = EpsilonAudit(EpsilonAuditConfig(canaries=1.0, guesses=0.2))
    run(ERM(num_classes=10, input_shape=(1, 8, 8), net=WIDE), audit, epochs=40)
    r = audit.result
    assert r["dp/audit_canaries"] == 200 and r["dp/audit_guesses"] == 40
    assert r["dp/audit_correct"] >= 36
    assert r["dp/epsilon_lb"] > 1.0


def test_the_bound_on_a_dp_run_stays_below_the_accountants_epsilon():
    seed_everything(0)
    audit = EpsilonAudit(EpsilonAuditConfig(canaries=1.0, guesses=0.2))
    model = ERM(num_classes=10, input_shape=(1, 8, 8), net=WIDE, dp=DPConfig(target_epsilon=1.0, delta=1e-5))
    eps = run(model, audit, epochs=5)["dp/epsilon"]
    assert eps <= 1.0
    assert audit.result["dp/epsilon_lb"] <= eps


@pytest.mark.parametrize("kwargs", [{"canaries": 1.5}, {"canaries": 1}, {"guesses": 0.0}, {"attack": "lira_online"},
                                    {"delta": 1.0}, {"confidence": 1.0}])
def test_bad_audit_settings(kwargs):
    with pytest.raises(UserInputError):
        EpsilonAuditConfig(**kwargs)
