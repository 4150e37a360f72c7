import pytest
from lightning.pytorch import Trainer, seed_everything

from lightning_privacy.attacks.membership import ATTACKS
from lightning_privacy.callbacks.membership import MembershipAudit, MembershipAuditConfig
from lightning_privacy.data.digits import Digits
from lightning_privacy.defenses.erm import ERM
from lightning_privacy.errors import UserInputError


def _run(tmp_path, attacks, *, shadows=2, references=2, **data):
    seed_everything(0)
    dm = Digits(test_fraction=0.5, members=200, shadow=250, reference=250, **data)
    model = ERM(num_classes=10, input_shape=dm.input_shape)
    audit = MembershipAudit(MembershipAuditConfig(attacks=attacks, num_shadows=shadows, num_references=references,
                                                  shadow_epochs=2, bootstrap=20, cache_dir=str(tmp_path / "bank"),
                                                  artifacts=False))
    trainer = Trainer(max_epochs=3, callbacks=[audit], logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, verbose=False)
    return audit


def test_each_helper_model_is_trained_once_for_all_attacks_and_cached(tmp_path):
    attacks = ["loss", "shokri", "salem", "lira_offline", "lira_online", "rmia", "loss_classwise"]
    audit = _run(tmp_path, attacks)
    assert audit.models_trained == 4  # 2 shadows + 2 references serve all seven attacks
    for name in attacks:
        assert audit.metrics[f"mia/{name}/auc_ci95_low"] <= audit.metrics[f"mia/{name}/auc_ci95_high"]
    assert audit.metrics["mia/n_shadows"] == 2 and audit.metrics["mia/n_references"] == 2
    again = _run(tmp_path, attacks)
    assert again.models_trained == 0  # same recipe, split and k: loaded from the cache
    assert again.metrics["mia/lira_online/auc"] == pytest.approx(audit.metrics["mia/lira_online/auc"])


def test_best_and_blackbox_best(tmp_path):
    audit = _run(tmp_path, ["loss", "grad_x_l2", "lira_offline"], references=0)
    m = audit.metrics
    assert m["mia/best/auc"] == max(m["mia/loss/auc"], m["mia/grad_x_l2/auc"], m["mia/lira_offline/auc"])
    assert m["mia/best_blackbox/auc"] == max(m["mia/loss/auc"], m["mia/lira_offline/auc"])
    assert "privacy/aop_lambda_2_blackbox" in m


@pytest.mark.parametrize("config, match", [
    (MembershipAuditConfig(attacks=["lira_online"], num_references=1), "at least 2 reference"),
    (MembershipAuditConfig(attacks=["rmia"], num_references=0), "at least 2 reference"),
    (MembershipAuditConfig(attacks=["shokri"], num_shadows=0), "at least 1 shadow"),
    (MembershipAuditConfig(attacks=["lira_offline"], num_shadows=1), "at least 2 shadow"),
    (MembershipAuditConfig(num_shadows=-1), ">= 0"),
])
def test_too_few_models_is_refused_before_training(config, match):
    with pytest.raises(UserInputError, match=match):
        MembershipAudit(config)


def test_empty_shadow_role_is_refused_before_training(tmp_path):
    seed_everything(0)
    dm = Digits(test_fraction=0.5, members=200, shadow=0)
    model = ERM(num_classes=10, input_shape=dm.input_shape)
    audit = MembershipAudit(MembershipAuditConfig(attacks=["shokri"], num_shadows=2))
    trainer = Trainer(max_epochs=1, callbacks=[audit], logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(UserInputError, match="shadow role"):
        trainer.fit(model, datamodule=dm)
    assert trainer.current_epoch == 0 and trainer.global_step == 0


def test_every_registered_attack_is_in_mia_full():
    import yaml

    from tests.conftest import REPO

    full = yaml.safe_load((REPO / "conf" / "audit" / "mia_full.yaml").read_text())["audit"]["membership"]["attacks"]
    assert sorted(full) == sorted(ATTACKS)


def test_helpers_train_as_long_as_the_audited_checkpoint(tmp_path):
    """The audited weights trained 1 epoch (a checkpoint tested by a trainer whose max_epochs is 4): the helper
    models train 1 epoch too, and the run says so (mia/helper_epochs)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    seed_everything(0)
    dm = Digits(test_fraction=0.5, members=200, shadow=250)
    model = ERM(num_classes=10, input_shape=dm.input_shape)
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt")
    Trainer(max_epochs=1, callbacks=[saver], logger=False, enable_progress_bar=False,
            enable_model_summary=False).fit(model, datamodule=dm)
    audit = MembershipAudit(MembershipAuditConfig(attacks=["loss", "shokri"], num_shadows=1, bootstrap=0,
                                                  artifacts=False, cache_dir=None))
    trainer = Trainer(max_epochs=4, callbacks=[audit], logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)
    trainer.test(ERM(num_classes=10, input_shape=dm.input_shape), datamodule=dm, ckpt_path=saver.best_model_path,
                 verbose=False)
    assert audit.metrics["mia/helper_epochs"] == 1 and audit.tags["mia.helper_epochs_rule"] == "audited_weights"


def test_helpers_follow_the_target_stopping_rule(tmp_path):
    from lightning.pytorch.callbacks import EarlyStopping

    seed_everything(0)
    dm = Digits(test_fraction=0.5, members=200, shadow=250)
    config = MembershipAuditConfig(attacks=["loss", "shokri"], num_shadows=1, bootstrap=0, artifacts=False,
                                   shadow_epochs="early_stopping", cache_dir=None)
    bare = Trainer(max_epochs=30, callbacks=[MembershipAudit(config)], logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(UserInputError, match="EarlyStopping"):
        bare.fit(ERM(num_classes=10, input_shape=dm.input_shape), datamodule=dm)
    audit = MembershipAudit(config)
    trainer = Trainer(max_epochs=30, callbacks=[audit, EarlyStopping(monitor="val/acc", patience=1, mode="max")],
                      logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    model = ERM(num_classes=10, input_shape=dm.input_shape)
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, verbose=False)
    assert audit.tags["mia.helper_epochs_rule"] == "early_stopping"
    assert 1 <= audit.metrics["mia/helper_epochs"] < 30  # the helper stopped on its own validation split
