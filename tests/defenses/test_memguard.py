import mlflow
import pytest
import torch
from lightning.pytorch import Trainer, seed_everything

from lightning_privacy.signals.gradients import collect_grad_norms
from lightning_privacy.callbacks.membership import MembershipAudit, MembershipAuditConfig
from lightning_privacy.signals.outputs import collect_signals
from lightning_privacy.data.digits import Digits
from lightning_privacy.defenses.bank import ModelBank
from lightning_privacy.defenses.erm import ERM
from lightning_privacy.defenses.memguard import MemGuard, keyed_uniform
from lightning_privacy.errors import UserInputError
from lightning_privacy.models.predict import predict_logits, stable_cross_entropy
from tests.conftest import REPO

FAST = {"surrogate_epochs": 20, "surrogate_optimizer": "adam", "surrogate_batch_size": 128, "max_iter": 60,
        "c3_rounds": 4}
C = 5


def _synthetic(seed: int = 0, **kwargs) -> tuple[MemGuard, torch.Tensor]:
    """A MemGuard whose surrogate separates confident "members" from flatter "non-members", and test logits."""
    torch.manual_seed(0)
    model = MemGuard(num_classes=C, input_shape=(1, 8, 8), seed=seed, **{**FAST, **kwargs})
    g = torch.Generator().manual_seed(1)
    members, nonmembers = torch.randn(300, C, generator=g) * 5, torch.randn(300, C, generator=g) * 1.5
    assert model.train_surrogate(members.softmax(1), nonmembers.softmax(1)) > 0.7
    logits = torch.cat([torch.randn(150, C, generator=g) * 5, torch.randn(150, C, generator=g) * 1.5])
    return model, logits


@pytest.fixture(scope="module")
def synthetic():
    model, logits = _synthetic(distortion_budget=1.0)
    return model, logits, model.guard(logits)


@pytest.fixture(scope="module")
def fitted():
    seed_everything(0)
    dm = Digits(members=200, shadow=100, reference=100)
    model = MemGuard(num_classes=10, input_shape=dm.input_shape, **FAST)
    trainer = Trainer(max_epochs=8, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False)
    trainer.fit(model, datamodule=dm)  # 8 epochs: confident enough on members for a surrogate better than chance
    return dm, model, trainer


def test_released_vectors_are_probability_vectors_with_the_predicted_label(synthetic):
    model, logits, release = synthetic
    probs = model.released_probs(logits)
    assert torch.equal(probs, release.probs)
    assert probs.dtype == torch.float64 and probs.shape == logits.shape
    assert bool((probs >= 0).all()) and torch.allclose(probs.sum(1), torch.ones(len(probs), dtype=torch.float64))
    assert torch.equal(probs.argmax(1), logits.argmax(1))
    assert bool(release.perturbed.any()) and torch.equal(release.noisy.argmax(1), logits.argmax(1))
    assert torch.equal(release.raw, logits.double().softmax(1))


def test_expected_l1_distortion_respects_the_budget(synthetic):
    model, logits, release = synthetic
    mean_p = []
    for budget in (1.0, 0.3, 0.05):
        if budget != 1.0:
            model.hparams.distortion_budget = budget
            try:
                release = model.guard(logits)
            finally:
                model.hparams.distortion_budget = 1.0
        noise = (release.noisy - release.raw).abs().sum(1)
        expected = release.p * noise
        assert bool((expected <= budget + 1e-12).all()) and bool(((release.p >= 0) & (release.p <= 1)).all())
        assert float(expected.mean()) > 0
        realized = (release.probs - release.raw).abs().sum(1)
        assert torch.equal(realized > 0, release.perturbed & (noise > 0))
        # the keyed coin is uniform enough: the realized mean distortion is the expected one up to sampling noise
        sd = float((release.p * (1 - release.p) * noise.square()).sum().sqrt()) / len(noise)
        assert abs(float(realized.mean()) - float(expected.mean())) <= 4 * sd + 1e-9
        assert float(realized.mean()) <= budget + 4 * sd
        mean_p.append(float(release.p.mean()))
    assert mean_p[0] > mean_p[1] > mean_p[2]


def test_surrogate_scores_move_toward_one_half(synthetic):
    model, logits, release = synthetic
    raw, noisy, released = (model.surrogate_scores(v) for v in (release.raw, release.noisy, release.probs))
    assert float((released - 0.5).abs().mean()) < 0.5 * float((raw - 0.5).abs().mean())
    moved = (release.noisy - release.raw).abs().sum(1) > 0
    assert float(moved.double().mean()) > 0.5
    # Phase I stops one step after g crosses 0.5
    assert bool(((noisy[moved] - 0.5) * (raw[moved] - 0.5) <= 0).all())
    assert float((noisy[moved] - 0.5).abs().mean()) < 0.05 and float((noisy[moved] - 0.5).abs().max()) < 0.15


def test_release_is_deterministic_and_independent_of_the_batch(synthetic):
    model, logits, first = synthetic
    perm = torch.randperm(len(logits), generator=torch.Generator().manual_seed(3))
    shuffled = model.guard(logits[perm])
    assert torch.equal(shuffled.perturbed, first.perturbed[perm])
    assert torch.allclose(shuffled.probs, first.probs[perm], atol=1e-6)
    assert torch.equal(keyed_uniform(logits, 0), keyed_uniform(logits[perm], 0)[perm.argsort()])
    u, v = keyed_uniform(logits, 0), keyed_uniform(logits, 1)
    assert not torch.equal(u, v) and bool(((u >= 0) & (u < 1)).all()) and 0.4 < float(u.mean()) < 0.6


def test_zero_budget_releases_the_plain_softmax():
    model = MemGuard(num_classes=C, input_shape=(1, 8, 8), distortion_budget=0.0)
    logits = torch.randn(10, C)
    assert torch.equal(model.released_probs(logits), logits.softmax(-1))  # no surrogate needed


def test_blackbox_signals_use_released_probs_and_whitebox_norms_the_raw_model(fitted):
    dm, model, _ = fitted
    indices = dm.role_indices("members")[:64]
    audit = MembershipAudit(MembershipAuditConfig(attacks=["loss", "grad_w_l2", "grad_x_l1"], num_shadows=1))
    s = audit._signals(model, dm, indices, grads=True)
    raw, labels = predict_logits(model, dm.index_dataloader(indices))
    released = model.released_probs(raw)
    assert float((released - raw.double().softmax(1)).abs().sum(1).max()) > 1e-2
    assert torch.allclose(s.logits, released.log()) and torch.allclose(s.probs, released)
    assert torch.allclose(s.losses, -released.gather(1, labels[:, None]).squeeze(1).log(), rtol=1e-10)
    assert not torch.allclose(s.losses, stable_cross_entropy(raw, labels))
    norms = collect_grad_norms(model, dm.index_dataloader(indices, batch_size=64))
    assert set(s.grad_norms) == set(norms) and all(torch.equal(s.grad_norms[k], norms[k]) for k in norms)


def test_erm_signals_are_bit_identical_to_the_raw_ones():
    torch.manual_seed(0)
    dm = Digits(members=200)
    model = ERM(num_classes=10, input_shape=dm.input_shape)
    loader = dm.role_dataloader("members")
    s = collect_signals(model, loader)
    logits, labels = predict_logits(model, loader)
    assert torch.equal(s.logits, logits) and torch.equal(s.losses, stable_cross_entropy(logits, labels))


def test_surrogate_is_not_a_submodule_and_travels_with_checkpoints(fitted, tmp_path):
    dm, model, trainer = fitted
    assert model.surrogate_ready and model.surrogate_train_acc >= 0.5  # balanced data: it learned something
    erm_keys = set(ERM(num_classes=10, input_shape=dm.input_shape).state_dict())
    assert set(model.state_dict()) - {"_extra_state"} == erm_keys
    assert not any("surrogate" in name for name, _ in model.named_modules())
    logits, _ = predict_logits(model, dm.role_dataloader("nonmembers"))
    expected = model.released_probs(logits)
    path = tmp_path / "memguard.ckpt"
    trainer.save_checkpoint(path)
    loaded = MemGuard.load_from_checkpoint(path)
    assert loaded.surrogate_ready
    assert torch.allclose(loaded.released_probs(logits), expected, atol=1e-9)


def test_a_surrogate_for_other_weights_is_never_used_and_is_retrained_the_same(fitted):
    dm, model, _ = fitted
    logits, _ = predict_logits(model, dm.role_dataloader("nonmembers"))
    expected = model.released_probs(logits)
    clone = MemGuard(**model.hparams)
    clone.load_state_dict(model.state_dict())
    assert clone.surrogate_ready
    with torch.no_grad():
        clone.net.prediction.bias.add_(0.1)
    assert not clone.surrogate_ready
    with pytest.raises(RuntimeError, match="other weights"):
        clone.released_probs(logits)
    with torch.no_grad():
        clone.net.prediction.bias.sub_(0.1)
    clone.set_extra_state({"surrogate": None})  # e.g. a best-validation checkpoint saved before fit ended
    with pytest.raises(RuntimeError, match="never trained"):
        clone.released_probs(logits)
    clone.fit_surrogate(dm)
    assert torch.allclose(clone.released_probs(logits), expected, atol=1e-9)


def test_adaptive_shadows_are_memguard_models_with_their_own_cached_surrogates(fitted, tmp_path):
    dm, model, _ = fitted
    pool = dm.role_indices("shadow")
    bank = ModelBank(target=model, datamodule=dm, epochs=1, accelerator="cpu", cache_dir=tmp_path)
    (shadow,) = bank.train("shadow", pool, 1)
    assert isinstance(shadow.model, MemGuard) and shadow.model.surrogate_ready and not shadow.cached
    (cached,) = ModelBank(target=model, datamodule=dm, epochs=1, accelerator="cpu",
                          cache_dir=tmp_path).train("shadow", pool, 1)
    assert cached.cached and cached.model.surrogate_ready
    logits, _ = predict_logits(shadow.model, dm.index_dataloader(pool))
    assert torch.allclose(cached.model.released_probs(logits), shadow.model.released_probs(logits), atol=1e-9)


@pytest.mark.parametrize("kwargs, match", [
    ({"distortion_budget": -0.1}, "distortion_budget"), ({"distortion_budget": 2.5}, "distortion_budget"),
    ({"distortion_budget": float("nan")}, "distortion_budget"), ({"holdout_role": "nonmembers"}, "holdout_role"),
    ({"surrogate_hidden": [64, 0]}, "surrogate_hidden"), ({"surrogate_epochs": 0}, "surrogate_epochs"),
    ({"max_iter": 0}, "max_iter"), ({"c3_rounds": 0}, "c3_rounds"), ({"c3": 0.0}, "c3"), ({"c2": -1.0}, "c2"),
    ({"step_size": 0.0}, "step_size"), ({"surrogate_lr": -1.0}, "surrogate_lr"), ({"num_classes": 1}, "num_classes"),
])
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(UserInputError, match=match):
        MemGuard(**kwargs)


def test_empty_holdout_role_is_refused_before_training():
    dm = Digits(members=200, validation=0)
    model = MemGuard(num_classes=10, input_shape=dm.input_shape, **FAST)
    trainer = Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False)
    with pytest.raises(UserInputError, match="validation role"):
        trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 0


def test_cli_fit_logs_the_standard_metrics_and_test_reaudits_the_same(in_tmp):
    from lightning_privacy.cli import main

    quickstart = str(REPO / "conf" / "experiments" / "quickstart.yaml")
    memguard = str(REPO / "conf" / "defense" / "memguard.yaml")
    small = ["--trainer.max_epochs", "2", "--model.init_args.surrogate_epochs", "10",
             "--model.init_args.surrogate_optimizer", "adam",
             "--model.init_args.max_iter", "40", "--model.init_args.c3_rounds", "3"]
    main(["fit", "--config", quickstart, "--config", memguard, *small])
    client = mlflow.MlflowClient(f"sqlite:///{in_tmp / 'mlruns' / 'mlflow.db'}")
    (fit_run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    m = fit_run.data.metrics
    for key in ("test/acc", "mia/best/auc", "privacy/aop_lambda_2", "time/epoch_s", "mia/loss/auc"):
        assert key in m, key
    assert fit_run.data.tags["defense"] == "MemGuard" and fit_run.data.params["model.distortion_budget"] == "1.0"
    checkpoint = fit_run.data.tags["audit.checkpoint"]
    main(["test", "--config", quickstart, "--config", memguard, "--ckpt_path", checkpoint])
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    test_run = next(r for r in runs if r.info.run_id != fit_run.info.run_id)
    assert test_run.data.tags["defense"] == "MemGuard"
    for key in ("test/acc", "mia/loss/auc", "mia/best/auc"):
        assert test_run.data.metrics[key] == pytest.approx(m[key], abs=1e-9), key
