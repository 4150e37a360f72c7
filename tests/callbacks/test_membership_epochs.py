import pytest
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.loggers import CSVLogger

from lightning_privacy.callbacks.membership import MembershipAudit, MembershipAuditConfig
from lightning_privacy.data.digits import Digits
from lightning_privacy.defenses.erm import ERM
from lightning_privacy.errors import UserInputError
from lightning_privacy.tracking.publish import ResultPublisher
from tests.conftest import REPO


def test_audits_at_the_listed_epochs_as_steps_of_the_run(tmp_path):
    seed_everything(0)
    dm = Digits(test_fraction=0.5, members=200)
    model = ERM(num_classes=10, input_shape=dm.input_shape)
    audit = MembershipAudit(MembershipAuditConfig(attacks=["loss", "confidence"], bootstrap=0, artifacts=False,
                                                  epochs=[1, 3]))
    trainer = Trainer(max_epochs=3, callbacks=[audit, ResultPublisher()], logger=CSVLogger(tmp_path), enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=dm)
    assert sorted(audit.history) == [1, 3]
    for epoch in (1, 3):
        assert {"mia/loss/auc", "mia/best/auc", "privacy/aop_lambda_2", "test/acc"} <= set(audit.history[epoch])
    final = trainer.test(model, datamodule=dm, verbose=False)[0]
    # the epoch-3 audit saw the same weights that are tested at the end
    assert audit.history[3]["test/acc"] == pytest.approx(final["test/acc"], abs=1e-6)
    assert audit.metrics["mia/loss/auc"] == pytest.approx(audit.history[3]["mia/loss/auc"], abs=1e-9)
    rows = (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    col, step = header.index("mia/loss/auc"), header.index("step")
    steps = [int(r.split(",")[step]) for r in rows[1:] if r.split(",")[col]]
    assert len(steps) == 3 and steps == sorted(steps) and steps[0] < steps[1]  # epoch 1, epoch 3, final test


@pytest.mark.parametrize("epochs", [[], [0, 2], [3, 2], [2, 2]])
def test_bad_epoch_lists(epochs):
    with pytest.raises(UserInputError, match="epochs"):
        MembershipAudit(MembershipAuditConfig(epochs=epochs))


def test_cli_accepts_the_config(in_tmp):
    from lightning_privacy.cli import cli

    c = cli(["--config", str(REPO / "conf" / "experiments" / "quickstart.yaml"),
             "--config", str(REPO / "conf" / "audit" / "early_stopping.yaml")], run=False)
    # the RelaxLoss paper's list for MNIST-like data (App. B.5), merged into the experiment's membership audit
    assert c.config.audit.membership.epochs == [5, 10, 15, 20, 25, 30, 40, 50]
    assert c.config.audit.membership.attacks == ["loss", "confidence", "entropy", "m_entropy"]


def test_mid_training_audit_trains_shadows_for_that_many_epochs(tmp_path):
    seed_everything(0)
    dm = Digits(test_fraction=0.5, members=200, shadow=250)
    model = ERM(num_classes=10, input_shape=dm.input_shape)
    audit = MembershipAudit(MembershipAuditConfig(attacks=["loss", "lira_offline"], num_shadows=2, bootstrap=0,
                                                  artifacts=False, cache_dir=str(tmp_path / "bank"), epochs=[1]))
    trainer = Trainer(max_epochs=2, callbacks=[audit], logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=dm)
    assert "mia/lira_offline/auc" in audit.history[1]
    assert trainer.current_epoch == 2 and trainer.global_step > 0  # the outer fit went on after the nested fits
    assert len(list((tmp_path / "bank").glob("shadow-*.pt"))) == 2
