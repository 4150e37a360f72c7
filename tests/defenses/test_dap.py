import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, Trainer, seed_everything

from lightning_privacy.cli import cli, main
from lightning_privacy.data.digits import Digits
from lightning_privacy.defenses import dap as dap_module
from lightning_privacy.defenses.bank import ModelBank
from lightning_privacy.defenses.dap import DAP, discriminator_dataset
from lightning_privacy.errors import UserInputError
from lightning_privacy.models.discriminator import Discriminator, discriminator_features
from lightning_privacy.models.predict import predict_logits
from tests.conftest import REPO

TINY = dict(num_shadows=2, shadow_max_epochs=1, disc_max_epochs=3)


def _dm(**kwargs):
    dm = Digits(test_fraction=0.5, members=200, **kwargs)
    dm.setup()
    return dm


def _dap(dm, **kwargs):
    return DAP(num_classes=dm.num_classes, input_shape=dm.input_shape, **{**TINY, **kwargs})


def _trainer(max_epochs=1, callbacks=()):
    return Trainer(max_epochs=max_epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, accelerator="cpu", callbacks=list(callbacks))


@pytest.fixture(scope="module")
def fitted():
    """One DAP fit of 2 epochs, with the state the tests compare recorded along the way."""
    seed_everything(0)
    dm = _dm()
    model = _dap(dm, r=0.05)  # beta acts: at r = 0.5 the adversarial step holds 200 digits near chance for epochs
    record = Record()
    trainer = _trainer(2, [record])
    trainer.fit(model, datamodule=dm)
    return dm, model, trainer, record


class Record(Callback):
    def __init__(self):
        self.disc_at_start, self.beta_at_epoch_start, self.expected_beta = None, [], []

    def on_train_start(self, trainer, model):
        self.disc_at_start = {k: v.clone() for k, v in model.discriminator.state_dict().items()}

    def on_train_epoch_start(self, trainer, model):
        self.beta_at_epoch_start.append(float(model.beta))

    def on_train_epoch_end(self, trainer, model):  # callbacks run before the module's hook: Eq. 3 by hand
        dm = trainer.datamodule
        logits, labels = predict_logits(model, dm.index_dataloader(dm.role_indices("validation")))
        wrong = logits.argmax(1) != labels
        with torch.no_grad():
            d = model.discriminator(discriminator_features(logits[wrong], labels[wrong]))
        adv = F.softplus(d).mean()  # -log(1 - sigmoid(d))
        self.expected_beta.append(model.hparams.r * float(F.cross_entropy(logits, labels)) / float(adv))


def test_discriminator_dataset_keeps_only_misclassified_samples_with_membership_labels(tmp_path):
    dm = _dm()
    target = _dap(dm)
    bank = ModelBank(target=target, datamodule=dm, recipe="erm", epochs=1, accelerator="cpu", cache_dir=tmp_path)
    pool = dm.role_indices("nonmembers")
    shadows = bank.train("dap-nonmembers", pool, 2)
    data = discriminator_dataset(shadows, dm)
    C = dm.num_classes
    assert data.features.shape == (len(data), 2 * C + 1) and len(data) > 0
    assert torch.equal(data.features[:, :C].argmax(1) != data.features[:, C:2 * C].argmax(1),
                       torch.ones(len(data), dtype=torch.bool))
    for k, shadow in enumerate(shadows):
        logits, labels = predict_logits(shadow.model, dm.index_dataloader(pool))
        wrong = logits.argmax(1) != labels
        rows = data.shadow == k
        assert int(rows.sum()) == int(wrong.sum())
        assert torch.equal(data.index[rows], pool[wrong])
        position = {int(i): p for p, i in enumerate(pool)}
        expected = torch.stack([shadow.in_mask[position[int(i)]] for i in data.index[rows]]).float()
        assert torch.equal(data.member[rows], expected)
    assert 0 < float(data.member.mean()) < 1  # both IN and OUT samples are represented


def test_discriminator_is_trained_then_frozen(fitted):
    _, model, _, record = fitted
    fresh = Discriminator(model.hparams.num_classes)
    after = model.discriminator.state_dict()
    assert any(not torch.equal(after[k], fresh.state_dict()[k]) for k in after if k.endswith("weight"))
    assert all(torch.equal(after[k], record.disc_at_start[k]) for k in after)
    assert not any(p.requires_grad for p in model.discriminator.parameters())
    assert not model.discriminator.training
    optimized = {id(p) for g in model.configure_optimizers().param_groups for p in g["params"]}
    assert not optimized & {id(p) for p in model.discriminator.parameters()}


def test_beta_is_one_first_then_follows_eq3(fitted):
    _, model, _, record = fitted
    assert record.beta_at_epoch_start[0] == 1.0
    assert record.beta_at_epoch_start[1] == pytest.approx(record.expected_beta[0], rel=1e-5)
    assert float(model.beta) == pytest.approx(record.expected_beta[1], rel=1e-5)


def test_fits_end_to_end_and_logs(fitted):
    dm, model, trainer, _ = fitted
    metrics = trainer.callback_metrics
    for key in ("train/loss", "train/acc", "dap/beta", "dap/adv_loss", "dap/disc_train_acc", "dap/disc_samples",
                "val/acc"):
        assert key in metrics, key
    assert metrics["dap/disc_samples"] == model.disc_samples > 0
    assert trainer.test(model, datamodule=dm, verbose=False)[0]["test/acc"] > 0.2  # chance: 0.1
    assert any(k.startswith("discriminator.") for k in model.state_dict()) and "beta" in model.state_dict()


def test_adversarial_step_moves_only_the_last_layer_and_lowers_the_member_score(fitted):
    dm, model, trainer, _ = fitted
    model.trainer = trainer  # manual_backward needs the trainer's strategy
    x, y = next(iter(dm.index_dataloader(dm.role_indices("members")[:128])))
    model.net.prediction.bias.data[0] += 5.0  # force misclassified samples into the batch
    optimizer = model.configure_optimizers()
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        logits = model(x)
        wrong = logits.argmax(1) != y
        assert wrong.any()
        score_before = torch.sigmoid(model.discriminator.score(logits[wrong], y[wrong])).mean()
        adv_before = model.adversarial_loss(logits, y)
    with torch.no_grad():
        penultimate = model.penultimate(x)
    adv = model.adversarial_step(penultimate, y, optimizer)
    assert float(adv) == pytest.approx(float(adv_before), rel=1e-5)
    after = model.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed == {"net.prediction.weight", "net.prediction.bias"}
    with torch.no_grad():
        logits = model(x)
        score_after = torch.sigmoid(model.discriminator.score(logits[wrong], y[wrong])).mean()
    assert score_after < score_before


def test_negative_r():
    with pytest.raises(UserInputError, match="r .* must be >= 0"):
        DAP(r=-0.1)


def test_role_too_small_for_the_shadow_halves():
    dm = _dm(validation=15)
    with pytest.raises(UserInputError, match="shadow_role 'validation' has 15 samples: too small"):
        _trainer().fit(_dap(dm, shadow_role="validation"), datamodule=dm)


def test_no_misclassified_samples(monkeypatch):
    dm = _dm()

    def perfect(model, loader):
        labels = torch.cat([y for _, y in loader])
        return F.one_hot(labels, dm.num_classes).float() * 10, labels

    monkeypatch.setattr(dap_module, "predict_logits", perfect)
    with pytest.raises(UserInputError, match="misclassify none of their samples.*shadow_max_epochs"):
        _dap(dm).fit_discriminator(dm)


@pytest.mark.parametrize("name, role", [("dap_t", "nonmembers"), ("dap_v", "validation")])
def test_cli_accepts_the_dap_configs(in_tmp, name, role):
    c = cli(["--config", str(REPO / "conf/experiments/quickstart.yaml"),
             "--config", str(REPO / f"conf/defense/{name}.yaml")], run=False)
    assert isinstance(c.model, DAP) and c.model.hparams.shadow_role == role and c.model.hparams.num_shadows == 10
    assert c.model.hparams.input_shape == (1, 8, 8)


def test_r_sweep_configs_compose(in_tmp, capsys):
    import yaml

    with pytest.raises(SystemExit):
        main(["fit", "--config", str(REPO / "conf/experiments/sweeps/dap_r/dap_t_r_0.25.yaml"), "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"] == "lightning_privacy.defenses.dap.DAP"
    assert printed["model"]["init_args"]["r"] == 0.25 and printed["tracking"]["run_name"] == "fmnist-dap-t-r0.25"


def _last_layer_after_one_step(fitted, beta: float, **hparams) -> torch.Tensor:
    """The last layer after one training step (both DAP steps) on a fixed batch from fixed weights and a fresh
    optimizer state, with beta set."""
    dm, model, trainer, _ = fitted
    clone = DAP(**{**dict(model.hparams), **hparams})
    clone.load_state_dict(model.state_dict())
    clone.beta.fill_(beta)
    clone.trainer = trainer
    optimizer = clone.configure_optimizers()
    clone.optimizers = lambda: optimizer
    clone.log = lambda *args, **kwargs: None
    clone.net.prediction.bias.data[0] += 5.0  # misclassified samples in the batch
    x, y = next(iter(dm.index_dataloader(dm.role_indices("members")[:128])))
    torch.manual_seed(0)
    clone.training_step((x, y), 0)
    return torch.cat([p.detach().flatten() for p in clone.last_layer.parameters()])


def test_beta_scales_the_adversarial_update(fitted):
    """Eq. 2's beta weighs the adversarial loss: a larger beta moves the last layer further from where the
    cross-entropy step alone (beta = 0) would leave it, on the same batch (a separate Adam for step (2) made the
    update invariant to beta: every beta > 0 moved it the same distance)."""
    without = _last_layer_after_one_step(fitted, 0.0)
    moved = [float((_last_layer_after_one_step(fitted, beta) - without).norm()) for beta in (0.01, 1.0, 100.0)]
    assert moved[0] < moved[1] < moved[2]
    assert moved[2] > 5 * moved[0]


def test_second_step_sees_the_updated_network_unless_the_approximation_is_asked(fitted, monkeypatch):
    """The paper's order: step (2) takes the predictions of the classifier *updated* by step (1); the stale-feature
    approximation takes step (1)'s features."""
    dm, model, trainer, _ = fitted
    assert DAP().hparams.stale_features_approximation is False
    x, y = next(iter(dm.index_dataloader(dm.role_indices("members")[:64])))
    for approximate in (False, True):
        clone = DAP(**{**dict(model.hparams), "stale_features_approximation": approximate})
        clone.load_state_dict(model.state_dict())
        clone.trainer = trainer
        optimizer = clone.configure_optimizers()
        clone.optimizers = lambda: optimizer
        clone.log = lambda *args, **kwargs: None
        seen = {}
        monkeypatch.setattr(clone, "adversarial_step", lambda pen, yy, opt: seen.setdefault("features", pen))
        before = clone.penultimate(x).detach()
        clone.training_step((x, y), 0)
        after = clone.penultimate(x).detach()
        assert not torch.allclose(before, after)
        assert torch.allclose(seen["features"], before if approximate else after)


def test_shadows_stop_early_on_their_own_validation_and_use_the_target_network(tmp_path):
    dm = _dm()
    net = {"class_path": "lightning_privacy.models.class_dp_cnn.ClassDPCNN",
           "init_args": {"channels": [4, 8], "hidden": 16}}
    model = _dap(dm, net=net, shadow_max_epochs=40, shadow_patience=1, shadow_cache_dir=str(tmp_path))
    model.fit_discriminator(dm)
    assert all(1 <= e < 40 for e in model.shadow_epochs), model.shadow_epochs  # stopped before the cap
    template = model.shadow_template()
    assert template.hparams.net == model.hparams.net and type(template.net).__name__ == "ClassDPCNN"


def test_discriminator_trains_with_batch_32_and_early_stopping(fitted, monkeypatch):
    dm, model, _, _ = fitted
    calls = {}
    original = dap_module.fit_binary

    def spy(*args, **kwargs):
        calls.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(dap_module, "fit_binary", spy)
    clone = DAP(**{**dict(model.hparams), "disc_max_epochs": 200, "disc_patience": 2})
    clone.fit_discriminator(dm)
    assert calls["batch_size"] == 32 and calls["patience"] == 2 and calls["validation"] is not None
    assert calls["balanced"] is False
    assert 1 <= clone.disc_epochs < 200
