"""PIGAN (Algorithm 1): where Q's loss goes, how often each network steps, what Q's pre-training sees."""

from __future__ import annotations

import copy

import pytest
import torch
from lightning.pytorch import Callback

from lightning_privacy.defenses.gan.gan import GAN
from lightning_privacy.defenses.gan.pigan import PIGAN, Coded, equal_partition
from lightning_privacy.errors import UserInputError
from tests.gan.conftest import tiny_digits, tiny_trainer

SHAPE = (1, 16, 16)


def _pigan(**kw) -> PIGAN:
    kw = {"input_shape": SHAPE, "num_codes": 2, "lam": 5.0, "warmup_epochs": 0, "q_pretrain_epochs": 0, **kw}
    return PIGAN(**kw)


class StepCounter(Callback):
    """Counts each optimizer's steps per training batch, from the first epoch on (after Q's pre-training)."""

    def __init__(self) -> None:
        self.per_batch: list[tuple[int, list[int]]] = []
        self._counts: list[int] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self._counts:
            return
        self._counts = [0] * len(trainer.optimizers)
        for i, opt in enumerate(trainer.optimizers):
            opt.register_step_post_hook(lambda *_a, i=i: self._bump(i))

    def _bump(self, i: int) -> None:
        self._counts[i] += 1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._counts[:] = [0] * len(self._counts)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.per_batch.append((trainer.current_epoch, list(self._counts)))


def test_each_network_steps_once_per_batch_and_q_never_in_warmup() -> None:
    torch.manual_seed(0)
    dm, model, counter = tiny_digits(), _pigan(warmup_epochs=1), StepCounter()
    tiny_trainer(3, [counter], limit_train_batches=2).fit(model, datamodule=dm)
    d, g, q = 0, 1, 2  # configure_optimizers' order
    assert [e for e, _ in counter.per_batch] == [0, 0, 1, 1, 2, 2]
    for epoch, counts in counter.per_batch:
        assert counts[d] == 1 and counts[g] == 1
        assert counts[q] == (0 if epoch < 1 else 1)


def test_q_loss_reaches_g_and_never_d() -> None:
    """One step from the same state and the same random draws with λ = 0 and λ = 5: D and Q end equal (Q's loss
    never reaches D, and Q's own step does not depend on λ), G differs (Q's loss reaches G)."""
    dm = tiny_digits()
    coded = Coded(dm.role_dataset("members"), equal_partition(64, 2, 0))
    batch = next(iter(torch.utils.data.DataLoader(coded, batch_size=16)))
    torch.manual_seed(0)
    base = _pigan(lam=0.0)
    results = {}
    for lam in (0.0, 5.0):
        model = copy.deepcopy(base)
        model.hparams.lam = lam
        opts = model.configure_optimizers()
        model.optimizers = lambda opts=opts: opts  # the step outside a Trainer
        model.toggle_optimizer = model.untoggle_optimizer = lambda *_: None
        model.manual_backward = lambda loss: loss.backward()
        model.log_dict = lambda *a, **k: None
        model.__dict__["_current_epoch"] = 0
        torch.manual_seed(1)
        model.training_step(batch, 0)
        results[lam] = model
    same = lambda a, b: all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert same(results[0.0].discriminator, results[5.0].discriminator)
    assert same(results[0.0].classifier, results[5.0].classifier)
    assert not same(results[0.0].generator, results[5.0].generator)


def test_q_term_gradient_flows_to_g_only() -> None:
    torch.manual_seed(0)
    model = _pigan()
    y, c = torch.randint(0, 10, (8,)), torch.randint(0, 2, (8,))
    fake = model.generator(model.noise(8), y, c)
    for objective in ("eq9", "wrong_code"):
        model.hparams.q_objective = objective
        model.zero_grad()
        model.privacy_term(fake, c).backward(retain_graph=True)
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.generator.parameters())
        assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.discriminator.parameters())


def test_eq9_and_wrong_code_terms() -> None:
    model = _pigan(num_codes=3)
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]]))

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return logits.expand(x.shape[0], -1)

    model.classifier = Fixed()
    c = torch.zeros(4, dtype=torch.long)
    assert torch.isclose(model.privacy_term(torch.zeros(4, 1), c), torch.log(torch.tensor(0.7)))
    model.hparams.q_objective = "wrong_code"
    torch.manual_seed(0)
    term = model.privacy_term(torch.zeros(4, 1), c)  # the CE of a wrong code: -log 0.2 or -log 0.1, never -log 0.7
    assert float(term) >= -float(torch.log(torch.tensor(0.2))) - 1e-6


def test_q_pretraining_sees_only_members_with_their_own_code(monkeypatch) -> None:
    torch.manual_seed(0)
    dm, model = tiny_digits(members=48), _pigan(q_pretrain_epochs=2, warmup_epochs=1)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    original = PIGAN._q_pretrain_step

    def spy(self, optimizer, x, c):
        seen.append((x.clone(), c.clone()))
        return original(self, optimizer, x, c)

    monkeypatch.setattr(PIGAN, "_q_pretrain_step", spy)
    tiny_trainer(1, limit_train_batches=1).fit(model, datamodule=dm)
    members = torch.stack([x for x, _ in dm.role_dataset("members")]).flatten(1)
    xs, cs = torch.cat([x for x, _ in seen]).flatten(1), torch.cat([c for _, c in seen])
    assert xs.shape[0] == 2 * 48  # every member, once per pre-training epoch
    for x, c in zip(xs, cs):
        match = torch.nonzero((members == x).all(dim=1)).flatten()
        assert match.numel() >= 1, "Q's pre-training saw a sample that is not a member"
        assert int(c) in {int(model.codes[j]) for j in match}
    assert bool(model.q_pretrained)
    assert torch.bincount(model.codes).tolist() == [24, 24]


def test_partition_is_equal_and_seeded() -> None:
    codes = equal_partition(101, 3, seed=4)
    assert sorted(torch.bincount(codes).tolist()) == [33, 34, 34]
    assert torch.equal(codes, equal_partition(101, 3, seed=4))
    assert not torch.equal(codes, equal_partition(101, 3, seed=5))


def test_gan_fits_and_samples(digits) -> None:
    torch.manual_seed(0)
    model = GAN(input_shape=SHAPE)
    tiny_trainer(1, limit_train_batches=2).fit(model, datamodule=digits)
    x, y = model.sample(5)
    assert x.shape == (5, *SHAPE) and y.shape == (5,)
    # normalized like the datamodule's images: [0, 1] pixels mapped by its mean and std
    lo, hi = (0 - digits.mean[0]) / digits.std[0], (1 - digits.mean[0]) / digits.std[0]
    assert float(x.min()) >= lo - 1e-5 and float(x.max()) <= hi + 1e-5
    assert model.discriminator_scores(x, y).shape == (5, 1)


@pytest.mark.parametrize("kw,match", [({"num_codes": 1}, "num_codes"), ({"lam": -1.0}, "lam"),
                                      ({"q_objective": "other"}, "q_objective")])
def test_bad_hyperparameters(kw, match) -> None:
    with pytest.raises(UserInputError, match=match):
        _pigan(**kw)


def test_too_few_members_for_n_batches() -> None:
    dm = tiny_digits(members=40, batch_size=32)
    with pytest.raises(UserInputError, match="at least N x batch size"):
        tiny_trainer(1, limit_train_batches=1).fit(_pigan(), datamodule=dm)


def test_warmup_as_long_as_training_warns(digits) -> None:
    with pytest.warns(UserWarning, match="never trained after"):
        tiny_trainer(1, limit_train_batches=1).fit(_pigan(warmup_epochs=1), datamodule=digits)


@pytest.mark.parametrize("target,match", [("generator", "never reads member data"),
                                          ("classifier", "code classifier Q reads the members"),
                                          ("q", "code classifier Q reads the members"),
                                          ("discriminator", "Q is pre-trained on the members"),
                                          ("net", "Q is pre-trained on the members")])
def test_dp_on_g_q_or_d_is_refused_with_its_reason(target, match) -> None:
    from lightning_privacy.privacy.config import DPConfig

    with pytest.raises(UserInputError, match=f"PIGAN cannot be trained with DP-SGD \\(dp.module '{target}'\\).*{match}"):
        _pigan(dp=DPConfig(noise_multiplier=1.0, module=target))
