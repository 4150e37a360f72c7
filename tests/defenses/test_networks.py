"""The network is a config choice (``model.init_args.net``): through the CLI, the shadow bank and checkpoints."""

import mlflow
import pytest
import torch

from lightning_privacy.cli import cli, main
from lightning_privacy.data.digits import Digits
from lightning_privacy.defenses.bank import ModelBank
from lightning_privacy.defenses.erm import ERM
from lightning_privacy.defenses.reg import Reg
from lightning_privacy.models.class_dp_cnn import ClassDPCNN
from lightning_privacy.models.cnn import PaperCNN
from lightning_privacy.models.wrn import WideResNet
from tests.conftest import REPO

QUICKSTART = str(REPO / "conf" / "experiments" / "quickstart.yaml")
SMALL_NET = {"class_path": "lightning_privacy.models.class_dp_cnn.ClassDPCNN",
             "init_args": {"channels": [4, 8], "hidden": 16}}


def test_default_is_the_papers_cnn_and_hparams_hold_plain_data():
    model = ERM(num_classes=3, input_shape=(1, 8, 8))
    assert isinstance(model.net, PaperCNN)
    assert model.hparams.net == {"class_path": "lightning_privacy.models.cnn.PaperCNN", "init_args": {}}


def test_a_rebuild_from_hparams_gets_a_fresh_independent_network():
    model = Reg(num_classes=3, input_shape=(1, 8, 8), net=SMALL_NET, dropout=0.2)
    clone = type(model)(**model.hparams)
    assert isinstance(clone.net, ClassDPCNN) and clone.net is not model.net
    assert clone.hparams == model.hparams
    assert not any(a.data_ptr() == b.data_ptr() for a, b in zip(model.parameters(), clone.parameters()))
    with torch.no_grad():
        clone.last_layer.weight.add_(1.0)
    assert not torch.equal(clone.last_layer.weight, model.last_layer.weight)


def test_load_from_checkpoint_rebuilds_the_chosen_network(tmp_path):
    from lightning.pytorch import Trainer

    dm = Digits(validation=0.1, test_fraction=0.3)
    model = ERM(num_classes=dm.num_classes, input_shape=dm.input_shape, net=SMALL_NET)
    trainer = Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = ERM.load_from_checkpoint(tmp_path / "m.ckpt")
    assert isinstance(loaded.net, ClassDPCNN)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_the_bank_trains_helpers_with_the_targets_network(tmp_path):
    dm = Digits(test_fraction=0.5, members=200, shadow=250)
    dm.setup()
    target = ERM(num_classes=dm.num_classes, input_shape=dm.input_shape, net=SMALL_NET)
    bank = ModelBank(target=target, datamodule=dm, recipe="target", epochs=1, accelerator="cpu", cache_dir=tmp_path)
    (shadow,) = bank.train("shadow", dm.role_indices("shadow"), 1)
    assert isinstance(shadow.model.net, ClassDPCNN) and shadow.model.net is not target.net


@pytest.mark.parametrize("name, cls", [("class_dp_cnn", ClassDPCNN), ("wrn16_4", WideResNet), ("paper_cnn", PaperCNN)])
def test_net_configs_stack_after_a_defense(in_tmp, name, cls):
    c = cli(["--config", QUICKSTART, "--config", str(REPO / "conf" / "defense" / "reg.yaml"),
             "--config", str(REPO / "conf" / "net" / f"{name}.yaml")], run=False)
    assert isinstance(c.model, Reg) and isinstance(c.model.net, cls) and c.model.hparams.l2 == 0.01
    assert c.model.hparams.net["class_path"].endswith(cls.__name__)


def test_a_non_default_network_trains_and_is_audited_through_the_cli(in_tmp):
    main(["fit", "--config", QUICKSTART, "--config", str(REPO / "conf" / "net" / "class_dp_cnn.yaml"),
          "--trainer.max_epochs", "2"])
    client = mlflow.MlflowClient(f"sqlite:///{in_tmp / 'mlruns' / 'mlflow.db'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert "test/acc" in run.data.metrics and "mia/best/auc" in run.data.metrics
    loaded = ERM.load_from_checkpoint(run.data.tags["audit.checkpoint"])
    assert isinstance(loaded.net, ClassDPCNN)


@pytest.mark.parametrize("net", [
    {"class_path": "lightning_privacy.models.wrn.WideResNet", "init_args": {"depth": 10, "width": 1, "groups": 4}},
    SMALL_NET,
])
def test_the_added_networks_train_with_dp_sgd(net):
    """WRN uses GroupNorm and ClassDPCNN no normalization: both take DP-SGD's per-sample clipping as they are."""
    from lightning.pytorch import Trainer

    from lightning_privacy.privacy.config import DPConfig

    dm = Digits(test_fraction=0.5, members=200)
    model = ERM(num_classes=dm.num_classes, input_shape=dm.input_shape, net=net, dp=DPConfig(noise_multiplier=1.0))
    before = [p.detach().clone() for p in model.net.parameters()]
    trainer = Trainer(max_epochs=1, limit_train_batches=2, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    assert trainer.callback_metrics["dp/epsilon"] > 0
    assert all(not torch.equal(a, b) for a, b in zip(before, model.net.parameters()))
