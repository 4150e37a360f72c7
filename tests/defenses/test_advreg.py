import pytest
import torch
from lightning.pytorch import Trainer, seed_everything

from lightning_privacy.data.digits import Digits
from lightning_privacy.defenses.advreg import AdvReg
from lightning_privacy.defenses.bank import ModelBank
from lightning_privacy.errors import UserInputError
from tests.conftest import REPO


SMALL_H = dict(inference_output_widths=(64, 32), inference_label_widths=(32,), inference_head_widths=(32,))
"""An inference model that learns within a few dozen steps (Nasr et al.'s sizes need many more)."""


def _fit(epochs=2, **kwargs):
    seed_everything(0)
    dm = Digits(test_fraction=0.5, members=200, reference=250)
    model = AdvReg(num_classes=10, input_shape=dm.input_shape, **{**SMALL_H, **kwargs})
    trainer = Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False)
    trainer.fit(model, datamodule=dm)
    return dm, model, trainer


def test_fits_and_trains_the_inference_model():
    dm, model, trainer = _fit(epochs=3, alpha=1.0, warmup_epochs=0)
    assert "advreg/attack_loss" in trainer.callback_metrics and "advreg/objective" in trainer.callback_metrics
    x_in, y_in = next(iter(dm.role_dataloader("members", batch_size=200)))
    x_ref, y_ref = next(iter(dm.role_dataloader("reference", batch_size=200)))
    # a trained h separates members from reference samples better than chance
    assert float(model.inference_gain(x_in, y_in, x_ref, y_ref)) < torch.log(torch.tensor(2.0)).item()


def test_classifier_step_leaves_h_alone_and_lowers_its_member_belief():
    dm, model, _ = _fit(epochs=1, alpha=1.0, warmup_epochs=0)
    x, y = next(iter(dm.role_dataloader("members", batch_size=64)))
    h_before = {k: v.clone() for k, v in model.inference.state_dict().items()}
    model.inference.requires_grad_(False)
    opt = torch.optim.SGD(model.net.parameters(), lr=0.05)
    before = float(model.privacy_loss(model(x), y))
    for _ in range(5):
        opt.zero_grad()
        model.privacy_loss(model(x), y).backward()
        opt.step()
    assert float(model.privacy_loss(model(x), y)) < before
    assert all(torch.equal(v, model.inference.state_dict()[k]) for k, v in h_before.items())


def test_alpha_zero_is_plain_erm_training():
    _, model, trainer = _fit(epochs=1, alpha=0.0)
    assert "advreg/attack_loss" not in trainer.callback_metrics


@pytest.mark.parametrize("kwargs, match", [({"alpha": -1.0}, "alpha"), ({"attack_steps": 0}, "attack_steps")])
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(UserInputError, match=match):
        AdvReg(**kwargs)


def test_empty_reference_role_is_refused_before_training():
    dm = Digits(test_fraction=0.5, members=200, reference=0)
    model = AdvReg(num_classes=10, input_shape=dm.input_shape)
    trainer = Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False)
    with pytest.raises(UserInputError, match="reference role"):
        trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 0


def test_the_bank_rebuilds_advreg_shadows_with_the_reference_role(tmp_path):
    dm, model, _ = _fit(epochs=1, alpha=1.0, warmup_epochs=0)
    bank = ModelBank(target=model, datamodule=dm, epochs=1, accelerator="cpu", cache_dir=None)
    (shadow,) = bank.train("shadow", dm.role_indices("members"), 1)
    assert isinstance(shadow.model, AdvReg) and shadow.model.hparams.alpha == 1.0


def test_cli_accepts_the_config(in_tmp):
    from lightning_privacy.cli import cli

    c = cli(["--config", str(REPO / "conf" / "experiments" / "quickstart.yaml"),
             "--config", str(REPO / "conf" / "defense" / "advreg.yaml")], run=False)
    assert isinstance(c.model, AdvReg) and c.model.hparams.alpha == 1.0


def test_each_attack_step_draws_a_fresh_member_batch(monkeypatch):
    """Nasr et al. Alg. 1 samples a new member batch for each of the k attack steps and another for the
    classifier step; none of them is the classifier step's batch."""
    seed_everything(0)
    dm = Digits(test_fraction=0.5, members=200, reference=250)
    model = AdvReg(num_classes=10, input_shape=dm.input_shape, attack_steps=3, warmup_epochs=0)
    seen = []
    original = AdvReg.inference_gain

    def spy(self, x_in, y_in, x_ref, y_ref):
        seen.append(x_in.clone())
        return original(self, x_in, y_in, x_ref, y_ref)

    monkeypatch.setattr(AdvReg, "inference_gain", spy)
    classifier_batches = []
    original_step = AdvReg.training_step

    def step(self, batch, batch_idx):
        classifier_batches.append(batch[0].clone())
        return original_step(self, batch, batch_idx)

    monkeypatch.setattr(AdvReg, "training_step", step)
    Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, limit_val_batches=0).fit(model, datamodule=dm)
    assert len(seen) == 3 and len(classifier_batches) == 1
    batches = seen + classifier_batches
    for i in range(len(batches)):
        for j in range(i + 1, len(batches)):
            assert batches[i].shape != batches[j].shape or not torch.equal(batches[i], batches[j]), (i, j)
    members = torch.stack([dm.role_dataset("members")[k][0] for k in range(200)])
    assert all(any(torch.equal(row, m) for m in members) for row in seen[0][:4])  # drawn from the members


def test_inference_model_has_nasr_et_als_sizes_and_warmup_agrees_with_the_config():
    import yaml

    h = AdvReg(num_classes=10).inference
    linear = lambda seq: [m.out_features for m in seq if isinstance(m, torch.nn.Linear)]  # noqa: E731
    assert linear(h.output_branch) == [1024, 512, 64] and linear(h.label_branch) == [128, 64]
    assert linear(h.head) == [512, 256, 128, 64, 1]
    config = yaml.safe_load((REPO / "conf" / "defense" / "advreg.yaml").read_text())["model"]["init_args"]
    assert AdvReg().hparams.warmup_epochs == config["warmup_epochs"]
