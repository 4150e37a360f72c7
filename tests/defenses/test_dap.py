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

TINY = dict(num_shadows=2, shadow_epochs=1, disc_epochs=3)


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
    model = _dap(dm, r=0.5)
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
    assert any(not torch.equal(after[k], fresh.state_dict()[k]) for k in after)
    assert all(torch.equal(after[k], record.disc_at_start[k]) for k in after)
    assert not any(p.requires_grad for p in model.discriminator.parameters())
    assert not model.discriminator.training
    optimized = {id(p) for opt in model.configure_optimizers() for g in opt.param_groups for p in g["params"]}
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
    assert trainer.test(model, datamodule=dm, verbose=False)[0]["test/acc"] > 0.3
    assert any(k.startswith("discriminator.") for k in model.state_dict()) and "beta" in model.state_dict()


def test_adversarial_step_moves_only_the_last_layer_and_lowers_the_member_score(fitted):
    dm, model, trainer, _ = fitted
    model.trainer = trainer  # manual_backward needs the trainer's strategy
    x, y = next(iter(dm.index_dataloader(dm.role_indices("members")[:128])))
    model.net.prediction.bias.data[0] += 5.0  # force misclassified samples into the batch
    _, last_layer_opt = model.configure_optimizers()
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        logits = model(x)
        wrong = logits.argmax(1) != y
        assert wrong.any()
        score_before = torch.sigmoid(model.discriminator.score(logits[wrong], y[wrong])).mean()
        adv_before = model.adversarial_loss(logits, y)
    with torch.no_grad():
        penultimate = model.net.dense(model.net.features(x))
    adv = model.adversarial_step(penultimate, y, last_layer_opt)
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
    with pytest.raises(UserInputError, match="misclassify none of their samples.*shadow_epochs"):
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
