"""Every classifier defense under Lightning's DDP (issue 14.4): 2 CPU processes with gloo (conf/trainer/ddp.yaml's
settings), fit + test + audit into one MLflow run, and the ranks' weights equal afterwards (DDP all-reduces the
gradients; the manual-optimization defenses, DAP and AdvReg, step through Lightning's optimizers too)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch

from tests.conftest import REPO

DEFENSE = REPO / "conf" / "defense"
DDP = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
TINY = ["--trainer.max_epochs", "2", "--trainer.limit_train_batches", "3", "--audit.membership.bootstrap", "10"]
CASES = {  # the tiniest settings of each defense (its own config file, then overrides)
    "label_smoothing": [],
    "reg": [],
    "relaxloss": [],  # epoch 0 descends/ascends, epoch 1 flattens: both branches under DDP
    "confidence_penalty": [],
    "dropout": [],
    "distillation": ["--model.init_args.teacher_epochs", "1"],
    "advreg": ["--model.init_args.warmup_epochs", "1"],  # epoch 1 runs the min-max (manual optimization)
    "memguard": ["--model.init_args.surrogate_epochs", "2", "--model.init_args.max_iter", "5",
                 "--audit.membership.attacks", "[loss, confidence]"],
    "dap_t": ["--model.init_args.num_shadows", "2", "--model.init_args.shadow_max_epochs", "1",
              "--model.init_args.disc_max_epochs", "2"],
}
CHEAPEST = "label_smoothing"


def _fit(tmp: Path, defense: str, extra: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(Path(__file__).with_name("ddp_defense_worker.py")), str(tmp), "fit",
           "--config", str(REPO / "conf" / "experiments" / "quickstart.yaml"), "--config", str(DEFENSE / f"{defense}.yaml"),
           *DDP, *TINY, *extra]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("defense", [pytest.param(d, marks=() if d == CHEAPEST else pytest.mark.slow) for d in CASES])
def test_defense_under_ddp_logs_one_audited_run_with_equal_weights(tmp_path, defense):
    result = _fit(tmp_path, defense, CASES[defense])
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    m = runs[0].data.metrics
    assert {"test/acc", "mia/best/auc", "privacy/aop_lambda_2", "time/epoch_s"} <= set(m)
    assert m["mia/n_members"] == 200  # the audit ran once, on rank 0, over the whole member role
    history = client.get_metric_history(runs[0].info.run_id, "mia/best/auc")
    assert len(history) == 1
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert ranks[0].keys() == ranks[1].keys() and ranks[0]
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), f"{defense}: {key} differs between the ranks"


@pytest.mark.slow
def test_class_dp_under_ddp_is_one_clear_error(tmp_path):
    """Class-level DP-SGD runs in one process: under DDP (with ddp_dp.yaml's own sampling) it stops in one line."""
    cmd = [sys.executable, "-m", "lightning_privacy.cli", "fit", "--config",
           str(REPO / "conf" / "experiments" / "quickstart.yaml"), "--config", str(DEFENSE / "class_dp.yaml"),
           "--config", str(REPO / "conf" / "trainer" / "ddp_dp.yaml"), "--trainer.accelerator", "cpu", *TINY]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 2, result.stderr[-3000:]
    assert ("lightning-privacy: error: class- and subclass-level DP-SGD run in one process; use devices: 1"
            in result.stderr), result.stderr[-3000:]


@pytest.mark.parametrize(("defense", "find_unused"), [("advreg", True), ("dap_t", True), ("reg", False),
                                                      ("pigan", True)])
def test_defenses_that_leave_parameters_out_get_ddp_that_finds_them(in_tmp, defense, find_unused):
    from lightning_privacy.cli import cli

    experiment = "quickstart_gan.yaml" if defense == "pigan" else "quickstart.yaml"
    run = cli(["--config", str(REPO / "conf" / "experiments" / experiment),
               "--config", str(DEFENSE / f"{defense}.yaml"), *DDP], run=False)
    assert run.trainer.strategy._ddp_kwargs.get("find_unused_parameters", False) is find_unused
