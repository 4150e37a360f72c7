import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.loggers import CSVLogger

from lightning_privacy.callbacks.membership import MembershipAudit, MembershipAuditConfig
from lightning_privacy.data.digits import Digits
from lightning_privacy.defenses.erm import ERM
from lightning_privacy.errors import UserInputError
from lightning_privacy.metrics.aop import aop
from lightning_privacy.tracking.publish import ResultPublisher


def test_audit_logs_attack_best_and_aop(tmp_path):
    seed_everything(0)
    dm = Digits(test_fraction=0.5, members=60)  # few members: the model memorizes them (AUC ~0.71)
    model = ERM(num_classes=10, input_shape=dm.input_shape)
    audit = MembershipAudit(MembershipAuditConfig(aop_lambdas=[1.0, 2.0]))
    trainer = Trainer(max_epochs=30, callbacks=[audit, ResultPublisher()], logger=CSVLogger(tmp_path),
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, verbose=False)
    m = audit.metrics
    assert m["mia/n_members"] == 60 and m["mia/n_nonmembers"] == len(dm.splits.indices["nonmembers"])
    assert m["mia/best/auc"] == m["mia/loss/auc"] > 0.6  # an overfit model leaks through its loss
    acc = float(trainer.callback_metrics["test/acc"])
    assert m["privacy/aop_lambda_2"] == pytest.approx(aop(acc, m["mia/best/auc"], 2))
    assert m["privacy/aop_lambda_1"] == pytest.approx(aop(acc, m["mia/best/auc"], 1))
    logged = (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").read_text()
    assert "mia/loss/auc" in logged and "privacy/aop_lambda_2" in logged


def test_sample_cap_is_applied():
    seed_everything(0)
    dm = Digits(test_fraction=0.5)
    model = ERM(num_classes=10, input_shape=dm.input_shape)
    audit = MembershipAudit(MembershipAuditConfig(max_samples_per_role=50))
    trainer = Trainer(max_epochs=1, callbacks=[audit], logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)
    trainer.test(model, datamodule=dm, verbose=False)
    assert audit.metrics["mia/n_members"] == 50 and audit.metrics["mia/n_nonmembers"] == 50


@pytest.mark.parametrize("config, match", [
    (MembershipAuditConfig(attacks=["nope"]), "unknown membership attacks"),
    (MembershipAuditConfig(attacks=[]), "unknown membership attacks"),
    (MembershipAuditConfig(aop_lambdas=[0.5]), "lambda"),
    (MembershipAuditConfig(max_samples_per_role=0), "max_samples_per_role"),
])
def test_bad_config(config, match):
    with pytest.raises(UserInputError, match=match):
        MembershipAudit(config)


def _audit_only(tmp_path, **config):
    """The audit of untrained weights (no fit): what it logs, not how well it attacks."""
    seed_everything(0)
    dm = Digits(test_fraction=0.5, members=60)
    model = ERM(num_classes=10, input_shape=dm.input_shape)
    audit = MembershipAudit(MembershipAuditConfig(**{"attacks": ["loss", "confidence"], "bootstrap": 0, **config}))
    trainer = Trainer(max_epochs=1, callbacks=[audit, ResultPublisher()], logger=CSVLogger(tmp_path),
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.test(model, datamodule=dm, verbose=False)
    return dm, audit, tmp_path / "lightning_logs" / "version_0" / "audit"


def test_tpr_at_zero_fpr_low_fpr_skipped_with_reason_and_roc_data(tmp_path):
    import pyarrow.parquet as pq

    dm, audit, artifacts = _audit_only(tmp_path)
    n_out = len(dm.splits.indices["nonmembers"])
    for attack in ("loss", "confidence"):
        assert f"mia/{attack}/tpr_at_fpr_0" in audit.metrics
        assert f"mia/{attack}/tpr_at_fpr_0.001_realized_fpr" in audit.metrics
        assert f"mia/{attack}/tpr_at_fpr_0.0001" not in audit.metrics  # < 10⁴ non-members
    assert audit.tags["mia.tpr_at_fpr_0.0001"].startswith(f"skipped: {n_out} non-members")
    roc = pq.read_table(artifacts / "roc_curves.parquet").to_pandas()
    assert set(roc["attack"]) == {"loss", "confidence"}
    loss = roc[roc["attack"] == "loss"]
    assert loss["fpr"].iloc[0] == 0 and loss["fpr"].iloc[-1] == 1 and loss["tpr"].iloc[-1] == 1
    assert loss["fpr"].is_monotonic_increasing and loss["tpr"].is_monotonic_increasing


def test_best_is_taken_per_metric_with_the_attack_named():
    """RMIA has the best AUC, online LiRA the best TPR at 0.1 % FPR: each mia/best/<metric> is its own best."""
    from lightning_privacy.attacks.membership.evaluate import best_over_attacks

    results = {
        "rmia": {"auc": 0.80, "tpr_at_fpr_0.001": 0.05, "tpr_at_fpr_0.001_realized_fpr": 0.0009, "advantage": 0.4,
                 "auc_ci95_low": 0.78, "auc_ci95_high": 0.82},
        "lira_online": {"auc": 0.78, "tpr_at_fpr_0.001": 0.075, "tpr_at_fpr_0.001_realized_fpr": 0.0007,
                        "advantage": 0.45, "auc_ci95_low": 0.76, "auc_ci95_high": 0.80},
    }
    metrics, tags = best_over_attacks(results)
    assert metrics["mia/best/auc"] == 0.80 and tags["mia.best_attack.auc"] == "rmia"
    assert metrics["mia/best/auc_ci95_low"] == 0.78  # the interval of the attack that holds the best AUC
    assert metrics["mia/best/tpr_at_fpr_0.001"] == 0.075 and tags["mia.best_attack.tpr_at_fpr_0.001"] == "lira_online"
    assert metrics["mia/best/tpr_at_fpr_0.001_realized_fpr"] == 0.0007
    assert metrics["mia/best/advantage"] == 0.45 and tags["mia.best_attack"] == "rmia"


def test_threshold_protocol_names_where_the_cut_comes_from():
    from lightning_privacy.attacks.membership import ATTACKS
    from lightning_privacy.attacks.membership.evaluate import threshold_protocol
    from tests.attacks.planted import planted

    data, _, _ = planted(num_references=2, num_shadows=2)
    online, loss, classwise = ATTACKS["lira_online"](), ATTACKS["loss"](), ATTACKS["loss_classwise"]()
    online.fit(data)
    classwise.fit(type(data)(shadows=data.references))  # any models with in/out masks serve as shadows here
    loss.fit(type(data)())  # no shadows: the cut is set on half of the audited labels
    assert threshold_protocol(online) == "fixed"  # the constant 0 (likelihood ratio 1), not from shadows
    assert threshold_protocol(classwise) == "shadow"
    assert threshold_protocol(loss) == "held_out_half_audit_labels"


def test_per_sample_scores_are_saved(tmp_path):
    import pyarrow.parquet as pq

    dm, audit, artifacts = _audit_only(tmp_path)
    table = pq.read_table(artifacts / "scores.parquet").to_pandas()
    members, nonmembers = dm.role_indices("members"), dm.role_indices("nonmembers")
    assert len(table) == members.numel() + nonmembers.numel()
    assert list(table.columns) == ["index", "role", "is_member", "label", "loss", "confidence"]
    assert sorted(table.loc[table["is_member"], "index"]) == members.tolist()
    assert set(table.loc[~table["is_member"], "role"]) == {"nonmembers"}
    assert table["label"].tolist() == dm.pool_labels[torch.as_tensor(table["index"].to_numpy())].tolist()
    assert torch.equal(torch.as_tensor(table["loss"].to_numpy()), audit.scores["loss"])
