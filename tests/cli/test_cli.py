import time
from dataclasses import dataclass

import mlflow
import pytest
import yaml
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from lightning_privacy.callbacks.audit import AuditCallback
from lightning_privacy.callbacks.membership import MembershipAudit
from lightning_privacy.cli import cli, main
from lightning_privacy.metrics.aop import aop
from tests.conftest import REPO, free_port

QUICKSTART = str(REPO / "conf" / "experiments" / "quickstart.yaml")
FAST = ["--trainer.max_epochs", "2"]


def _runs(uri: str):
    client = mlflow.MlflowClient(uri)
    return client, client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_fit_logs_one_full_run_to_a_real_server(in_tmp, mlflow_server):
    main(["fit", "--config", QUICKSTART, *FAST, "--tracking.uri", mlflow_server,
          "--tracking.experiment", "e2e"])
    client, runs = _runs(mlflow_server)
    runs = [r for r in runs if client.get_experiment(r.info.experiment_id).name == "e2e"]
    assert len(runs) == 1
    run = runs[0]
    m, tags, params = run.data.metrics, run.data.tags, run.data.params
    assert run.info.status == "FINISHED"
    for key in ("test/acc", "test/acc_top5", "train/loss", "val/acc", "time/epoch_s", "mia/loss/auc",
                "mia/best/auc", "mia/loss/tpr_at_fpr_0.001", "privacy/aop_lambda_2"):
        assert key in m, key
    assert m["privacy/aop_lambda_2"] == pytest.approx(aop(m["test/acc"], m["mia/best/auc"], 2), rel=1e-6)
    assert len(client.get_metric_history(run.info.run_id, "time/epoch_s")) == 2
    assert tags["dataset"] == "digits" and tags["defense"] == "ERM" and tags["mia.best_attack"] == "loss"
    assert tags["audit.weights"] == "best_val_checkpoint" and len(tags["split.hash"]) == 16
    assert "git.commit" in tags
    assert params["model.lr"] == "0.001" and params["split.hash"] == tags["split.hash"]
    assert params["trainer.max_epochs"] == "2"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "splits.npz"} <= artifacts


def test_quickstart_defaults_to_the_local_store_and_audits_a_checkpoint(in_tmp):
    main(["fit", "--config", QUICKSTART, *FAST])
    uri = f"sqlite:///{in_tmp / 'mlruns' / 'mlflow.db'}"
    client, runs = _runs(uri)
    assert len(runs) == 1
    fit_run = runs[0]
    checkpoint = fit_run.data.tags["audit.checkpoint"]
    assert checkpoint.startswith(str(in_tmp)) and checkpoint.endswith(".ckpt")
    main(["test", "--config", QUICKSTART, "--ckpt_path", checkpoint])
    _, runs = _runs(uri)
    test_run = next(r for r in runs if r.info.run_id != fit_run.info.run_id)
    assert test_run.data.tags["audit.weights"] == "checkpoint" and test_run.data.tags["audit.checkpoint"] == checkpoint
    for key in ("test/acc", "mia/loss/auc", "privacy/aop_lambda_2"):
        assert test_run.data.metrics[key] == pytest.approx(fit_run.data.metrics[key], abs=1e-6)


def test_flag_beats_config_file(in_tmp):
    c = cli(["--config", QUICKSTART, "--trainer.max_epochs", "3"], run=False)
    assert c.trainer.max_epochs == 3
    c = cli(["--config", QUICKSTART], run=False)
    assert c.trainer.max_epochs == 20


def test_tracking_uri_precedence(in_tmp, monkeypatch):
    cfg = in_tmp / "tracking.yaml"
    cfg.write_text(f"tracking:\n  uri: sqlite:///{in_tmp}/config.db\n")
    assert cli(["--config", QUICKSTART, "--config", str(cfg)], run=False).tracking_uri.endswith("/config.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{in_tmp}/env.db")
    assert cli(["--config", QUICKSTART, "--config", str(cfg)], run=False).tracking_uri.endswith("/env.db")
    flagged = cli(["--config", QUICKSTART, "--config", str(cfg), "--tracking.uri", f"sqlite:///{in_tmp}/flag.db"],
                  run=False)
    assert flagged.tracking_uri.endswith("/flag.db")


def test_audit_file_adds_to_the_experiment_and_keeps_its_callbacks(in_tmp):
    audit = in_tmp / "audit.yaml"
    audit.write_text("audit:\n  membership:\n    aop_lambdas: [1.0, 2.0, 5.0]\n")
    c = cli(["--config", QUICKSTART, "--config", str(audit)], run=False)
    assert c.config.audit.membership.attacks == ["loss", "confidence", "entropy", "m_entropy"]
    assert c.config.audit.membership.aop_lambdas == [1.0, 2.0, 5.0]
    assert any(isinstance(cb, ModelCheckpoint) and cb.monitor == "val/acc" for cb in c.trainer.callbacks)


def test_fit_builds_audit_callbacks_from_the_audit_key(in_tmp, monkeypatch):
    built = {}
    from lightning_privacy import cli as cli_module

    def stop_before_fit(self):
        built["callbacks"] = list(self.trainer.callbacks)
        raise SystemExit(0)

    monkeypatch.setattr(cli_module.PrivacyCLI, "before_fit", stop_before_fit, raising=False)
    trainer_file = str(REPO / "conf" / "trainer" / "early_stopping.yaml")
    with pytest.raises(SystemExit):
        cli(["fit", "--config", QUICKSTART, "--config", trainer_file])
    audits = [cb for cb in built["callbacks"] if isinstance(cb, MembershipAudit)]
    assert len(audits) == 1 and audits[0].config.attacks == ["loss", "confidence", "entropy", "m_entropy"]
    assert any(isinstance(cb, EarlyStopping) and cb.patience == 25 for cb in built["callbacks"])


def test_omegaconf_interpolation(in_tmp):
    cfg = in_tmp / "interp.yaml"
    cfg.write_text("trainer:\n  max_epochs: 4\ntracking:\n  run_name: epochs-${trainer.max_epochs}\n")
    c = cli(["--config", QUICKSTART, "--config", str(cfg)], run=False)
    assert c.config.tracking.run_name == "epochs-4"


def test_print_config(in_tmp, capsys):
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", QUICKSTART, "--print_config"])
    assert info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"] == "lightning_privacy.defenses.erm.ERM"
    assert printed["data"]["class_path"] == "lightning_privacy.data.digits.Digits"
    assert printed["audit"]["membership"]["attacks"] == ["loss", "confidence", "entropy", "m_entropy"]


def test_unreachable_server_fails_fast_before_training(in_tmp, capsys):
    start = time.perf_counter()
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", QUICKSTART, "--tracking.uri", f"http://127.0.0.1:{free_port()}"])
    assert info.value.code == 2 and time.perf_counter() - start < 15
    err = capsys.readouterr().err
    assert "unreachable" in err and err.count("\n") == 1
    assert not (in_tmp / "outputs").exists()


def test_missing_dataset_is_one_clear_error_and_keeps_earlier_runs(in_tmp, capsys):
    main(["fit", "--config", QUICKSTART, *FAST])
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", str(REPO / "conf" / "experiments" / "fmnist_baseline.yaml"),
              "--data.root", str(in_tmp / "no-data")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte" in err and "--data.root" in err
    _, runs = _runs(f"sqlite:///{in_tmp / 'mlruns' / 'mlflow.db'}")
    assert [r.info.status for r in runs if r.info.status == "FINISHED"] == ["FINISHED"]


@pytest.mark.parametrize("args", [
    ["--model", "lightning_privacy.defenses.nope.Nope"],
    ["--data.init_args.members", "-5"],
    ["--model.init_args.lr", "-1"],
])
def test_bad_values_exit_with_status_2(in_tmp, args, capsys):
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", QUICKSTART, *FAST, *args])
    assert info.value.code == 2
    assert "error" in capsys.readouterr().err.lower()


def test_validate_subcommand_logs_validation_metrics(in_tmp):
    main(["validate", "--config", QUICKSTART])
    _, runs = _runs(f"sqlite:///{in_tmp / 'mlruns' / 'mlflow.db'}")
    assert len(runs) == 1 and "val/acc" in runs[0].data.metrics
    assert not any(k.startswith("mia/") for k in runs[0].data.metrics)  # validate does not audit


def test_full_audit_logs_every_attack_metric_in_one_run(in_tmp):
    from lightning_privacy.attacks.membership import ATTACKS

    main(["fit", "--config", QUICKSTART, "--config", str(REPO / "conf" / "audit" / "mia_full.yaml"), *FAST])
    client, runs = _runs(f"sqlite:///{in_tmp / 'mlruns' / 'mlflow.db'}")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    m = runs[0].data.metrics
    for attack in ATTACKS:
        for key in ("auc", "acc", "tpr_at_fpr_0.001", "tpr_at_fpr_0.01", "advantage", "auc_ci95_low", "auc_ci95_high"):
            assert f"mia/{attack}/{key}" in m, (attack, key)
    for key in ("mia/best/auc", "mia/best/tpr_at_fpr_0.001", "mia/best_blackbox/auc", "privacy/aop_lambda_2",
                "privacy/aop_lambda_2_blackbox", "mia/n_nonmembers"):
        assert key in m
    tags = runs[0].data.tags
    assert tags["mia.best_attack"] in ATTACKS and "shadow" in tags["mia.threshold_protocol"]
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id, "audit")}
    assert artifacts == {"audit/mia_summary.md", "audit/mia_roc_loglog.png", "audit/loss_histogram.png",
                         "audit/roc_curves.parquet", "audit/scores.parquet"}


def test_reaudit_a_finished_run_into_the_same_run(in_tmp):
    main(["fit", "--config", QUICKSTART, *FAST])
    uri = f"sqlite:///{in_tmp / 'mlruns' / 'mlflow.db'}"
    client, (run,) = _runs(uri)
    extra = in_tmp / "more_attacks.yaml"
    extra.write_text("audit:\n  membership:\n    attacks: [loss, confidence]\n    bootstrap: 0\n")
    main(["test", "--config", QUICKSTART, "--config", str(extra), "--tracking.run_id", run.info.run_id])
    _, runs = _runs(uri)
    assert len(runs) == 1  # logged into the original run, its checkpoint taken from its audit.checkpoint tag
    after = runs[0]
    assert after.data.params == run.data.params  # params are immutable: nothing was overwritten
    history = client.get_metric_history(run.info.run_id, "mia/loss/auc")
    assert len(history) == 2 and history[1].step > history[0].step  # the re-audit is the latest value
    assert history[1].value == pytest.approx(history[0].value, abs=1e-9)  # same weights, same split
    assert "mia/confidence/auc" in after.data.metrics
    assert any(a.path.startswith("audits/config-") for a in client.list_artifacts(run.info.run_id, "audits"))


def test_reaudit_of_an_unknown_run_is_one_clear_error(in_tmp, capsys):
    main(["fit", "--config", QUICKSTART, *FAST])
    with pytest.raises(SystemExit) as info:
        main(["test", "--config", QUICKSTART, "--tracking.run_id", "0123456789abcdef0123456789abcdef"])
    assert info.value.code == 2 and "not found" in capsys.readouterr().err


def test_the_last_checkpoint_is_recorded_when_it_holds_the_audited_weights(tmp_path):
    """No monitored ModelCheckpoint, but Lightning's default checkpointing saved the last weights: they are the
    audited weights and their path is recorded (so --tracking.run_id re-audits find them)."""
    from lightning.pytorch import Trainer

    from lightning_privacy.cli import audited_weights
    from lightning_privacy.data.digits import Digits
    from lightning_privacy.defenses.erm import ERM

    dm = Digits(test_fraction=0.5, members=100)
    trainer = Trainer(max_epochs=1, default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
                      enable_model_summary=False)
    trainer.fit(ERM(num_classes=10, input_shape=dm.input_shape), datamodule=dm)
    path, weights = audited_weights(trainer)
    assert weights == "last" and path is not None and path.endswith(".ckpt") and path.startswith(str(tmp_path))


def test_fractional_role_sizes_are_dumped_as_given(in_tmp, capsys):
    """--data.init_args.shadow 0.2 was dumped (params, config.yaml, --print_config) as 0: a rerun from the logged
    config drew another split. Fractions stay fractions and counts stay counts."""
    with pytest.raises(SystemExit):
        main(["fit", "--config", QUICKSTART, "--data.init_args.shadow", "0.2", "--data.init_args.reference", "1",
              "--print_config"])
    sizes = yaml.safe_load(capsys.readouterr().out)["data"]["init_args"]
    assert sizes["shadow"] == 0.2 and sizes["validation"] == 0.1
    assert sizes["reference"] == 1 and isinstance(sizes["reference"], int) and sizes["members"] == 200


@dataclass
class ToyConfig:
    level: int = 1


class ToyAudit(AuditCallback):
    def __init__(self, config: ToyConfig) -> None:
        super().__init__()
        self.config = config


def test_a_registered_audit_is_configured_built_published_and_summarised(in_tmp, monkeypatch, capsys):
    """A new audit kind is one registry entry: the CLI declares audit.<name>, builds its callback with a
    publisher, and the summary prints what its result holds; the CLI names no audit."""
    from lightning_privacy import cli as cli_module
    from lightning_privacy.callbacks.registry import AUDITS, AuditEntry
    from lightning_privacy.results import AuditResult
    from lightning_privacy.tracking.publish import ResultPublisher

    monkeypatch.setitem(AUDITS, "toy", AuditEntry(ToyConfig, ToyAudit, "a toy audit"))
    built = {}

    def stop_before_fit(self):
        built["cli"] = self
        raise SystemExit(0)

    monkeypatch.setattr(cli_module.PrivacyCLI, "before_fit", stop_before_fit, raising=False)
    with pytest.raises(SystemExit):
        cli(["fit", "--config", QUICKSTART, "--audit.toy.level", "3", "--tracking.enabled", "false"])
    c = built["cli"]
    (toy,) = [cb for cb in c.trainer.callbacks if isinstance(cb, ToyAudit)]
    assert toy.config.level == 3 and any(isinstance(cb, ResultPublisher) for cb in c.trainer.callbacks)
    toy.emit(c.trainer, AuditResult(name="toy", metrics={"toy/score": 0.25, "toy/other": 9.0}, summary=("toy/score",)))
    capsys.readouterr()
    c._print_summary()
    out = capsys.readouterr().out
    assert "toy/score" in out and "0.2500" in out and "toy/other" not in out


def test_shadow_epochs_accepts_a_rule_name(in_tmp):
    c = cli(["--config", QUICKSTART, "--audit.membership.shadow_epochs", "early_stopping"], run=False)
    assert c.config.audit.membership.shadow_epochs == "early_stopping"
