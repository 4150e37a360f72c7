"""PrivGAN: each pair reads only its own member subset; the optimizer layout and scores."""

from __future__ import annotations

import pytest
import torch

from lightning_privacy.defenses.gan.privgan import PrivGAN
from lightning_privacy.errors import UserInputError
from tests.gan.conftest import tiny_digits, tiny_trainer
from tests.gan.test_pigan import StepCounter

SHAPE = (1, 16, 16)


def test_pair_i_only_ever_sees_its_own_subset() -> None:
    torch.manual_seed(0)
    dm = tiny_digits(members=48, batch_size=12)
    model = PrivGAN(input_shape=SHAPE, num_codes=3, lam=1.0, warmup_epochs=0, q_pretrain_epochs=0)
    seen = {i: [] for i in range(3)}
    for i, d in enumerate(model.discriminators):
        d.register_forward_pre_hook(lambda mod, args, i=i: seen[i].append(args[0].detach().clone()))
    tiny_trainer(2, [StepCounter()]).fit(model, datamodule=dm)
    members = torch.stack([x for x, _ in dm.role_dataset("members")])
    members = model.to_tanh(members).flatten(1)
    for i in range(3):
        inputs = torch.cat(seen[i]).flatten(1)
        nearest = torch.cdist(inputs.double(), members.double()).min(dim=1)
        real = nearest.values < 1e-5
        assert int(real.sum()) == 2 * 16  # its 16 members, once per epoch
        assert set(model.codes[nearest.indices[real]].tolist()) == {i}


def test_optimizers_and_scores(digits) -> None:
    torch.manual_seed(0)
    model = PrivGAN(input_shape=SHAPE, num_codes=2, warmup_epochs=0, q_pretrain_epochs=1)
    counter = StepCounter()
    tiny_trainer(1, [counter], limit_train_batches=2).fit(model, datamodule=digits)
    assert len(model.configure_optimizers()) == 5  # D_0, D_1, G_0, G_1, D_p
    for _, counts in counter.per_batch:
        assert counts[4] == 1 and counts[2] == counts[3] == 1
    x, y = model.sample(6, codes=torch.tensor([0, 1, 0, 1, 0, 1]))
    assert x.shape == (6, *SHAPE)
    assert model.discriminator_scores(x, y).shape == (6, 2)
    assert bool(model.q_pretrained)


@pytest.mark.parametrize("kw", [{"num_codes": 1}, {"lam": -0.1}])
def test_bad_hyperparameters(kw) -> None:
    with pytest.raises(UserInputError):
        PrivGAN(input_shape=SHAPE, **kw)


@pytest.mark.parametrize("target,match", [("generators", "never reads member data"),
                                          ("classifier", "code classifier Q"),
                                          ("discriminators", "privacy discriminator is pre-trained")])
def test_dp_is_refused_with_the_reason_of_its_target(target, match) -> None:
    from lightning_privacy.privacy.config import DPConfig

    with pytest.raises(UserInputError, match=match):
        PrivGAN(input_shape=SHAPE, dp=DPConfig(noise_multiplier=1.0, module=target))
