"""DPGAN: the account counts exactly D's private steps; the generator's gradients carry no noise."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import seed_everything

from lightning_privacy.defenses.gan.dpgan import DPGAN
from lightning_privacy.errors import UserInputError
from lightning_privacy.privacy.accounting import epsilon_spent
from lightning_privacy.privacy.config import DPConfig
from tests.gan.conftest import tiny_digits, tiny_trainer

SHAPE = (1, 16, 16)


def test_epsilon_is_the_account_of_the_d_steps_and_g_gets_no_noise(monkeypatch) -> None:
    seed_everything(0)
    checks: list[bool] = []

    def checked_step(self, optimizer, loss):
        self.toggle_optimizer(optimizer)
        optimizer.zero_grad()
        params = [p for p in self.generator.parameters()]
        expected = torch.autograd.grad(loss, params, retain_graph=True)
        self.manual_backward(loss)
        checks.append(all(torch.allclose(p.grad, e) for p, e in zip(params, expected)))
        optimizer.step()
        self.untoggle_optimizer(optimizer)

    monkeypatch.setattr(DPGAN, "_step", checked_step)  # DPGAN steps only G through _step
    dm = tiny_digits(members=96, batch_size=16)
    model = DPGAN(input_shape=SHAPE, dp=DPConfig(noise_multiplier=1.0, delta=1e-4))
    assert model.dp.module == "discriminator"
    trainer = tiny_trainer(2)
    trainer.fit(model, datamodule=dm)
    steps = int(model.dp_summary["dp/steps"])
    assert steps == 2 * trainer.num_training_batches == len(checks)  # one private D step per drawn batch
    assert model.dp_summary["dp/sample_rate"] == pytest.approx(16 / 96)
    assert model.dp_summary["dp/epsilon"] == pytest.approx(
        epsilon_spent(noise_multiplier=1.0, sample_rate=16 / 96, steps=steps, delta=1e-4))
    assert checks and all(checks)


@pytest.mark.parametrize("target,match", [("generator", "never reads member data.*post-processing"),
                                          ("classifier", "DPGAN has no code classifier Q"),
                                          ("decoder", "not one of its networks")])
def test_dp_on_the_generator_or_q_is_refused_by_name(target, match) -> None:
    with pytest.raises(UserInputError, match=f"discriminator only.*{match}"):
        DPGAN(input_shape=SHAPE, dp=DPConfig(noise_multiplier=1.0, module=target))


def test_without_dp_it_trains_as_the_gan(digits) -> None:
    seed_everything(0)
    model = DPGAN(input_shape=SHAPE)
    tiny_trainer(1, limit_train_batches=2).fit(model, datamodule=digits)
    assert model.sample(3)[0].shape == (3, *SHAPE)
