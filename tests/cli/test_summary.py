"""The run summary after a fit or test, and what Ctrl-C leaves (issue 15.5)."""

import re
import shlex
from pathlib import Path

import mlflow

import pytest
from lightning.pytorch import Callback

from lightning_privacy.cli import main
from tests.conftest import REPO

QUICKSTART = str(REPO / "conf" / "experiments" / "quickstart.yaml")
MIA_FULL = str(REPO / "conf" / "audit" / "mia_full.yaml")


class InterruptAfterOneEpoch(Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise KeyboardInterrupt


def test_the_summary_names_the_best_attack_the_blackbox_numbers_and_the_checkpoint(in_tmp, capsys):
    main(["fit", "--config", QUICKSTART, "--config", MIA_FULL, "--trainer.max_epochs", "2",
          "--data.init_args.members", "150", "--audit.membership.bootstrap", "0",
          "--audit.membership.shadow_epochs", "1"])
    out = capsys.readouterr().out
    for key in ("mia.best_attack", "mia/best_blackbox/auc", "privacy/aop_lambda_2_blackbox", "checkpoint"):
        assert key in out, key
    ckpt = re.search(r"--ckpt_path (\S+\.ckpt)", out).group(1)
    command = shlex.split(re.search(r"audit again: (lightning-privacy test .*)", out).group(1))
    main(command[1:])  # the printed command as it is: the run's whole config, command-line overrides included
    out = capsys.readouterr().out
    assert f"checkpoint: {ckpt}" in out
    client = mlflow.MlflowClient(f"sqlite:///{in_tmp / 'mlruns' / 'mlflow.db'}")
    fit, test = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                   order_by=["attributes.start_time ASC"])
    assert test.data.tags["split.hash"] == fit.data.tags["split.hash"]  # --data.init_args.members 150 kept


def test_ctrl_c_prints_what_was_kept_and_how_to_audit_it(in_tmp, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--config", QUICKSTART, "--trainer.max_epochs", "3",
              "--trainer.callbacks+=tests.cli.test_summary.InterruptAfterOneEpoch"])
    out = capsys.readouterr().out
    assert "interrupted" in out and "kept: mlflow run" in out
    kept = re.findall(r"kept: checkpoint: (\S+\.ckpt)", out)
    assert kept and kept[-1].endswith("last.ckpt")  # every fit keeps last.ckpt (crash-resume); it is the newest
    config = Path(kept[-1]).parent / "config.yaml"  # the run's own config, written beside the checkpoint
    assert f"lightning-privacy test --config {config} --ckpt_path {kept[-1]}" in out
    assert "max_epochs: 3" in config.read_text()
