"""DP-SGD through the CLI: the issue's quickstart commands, the stackable dp block, and DDP's accounting."""

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from lightning_privacy.cli import cli
from lightning_privacy.defenses.relaxloss import RelaxLoss
from lightning_privacy.errors import UserInputError
from lightning_privacy.privacy.accounting import epsilon_spent
from tests.conftest import REPO

CONF = REPO / "conf"
QUICKSTART = str(CONF / "experiments" / "quickstart.yaml")


def only_run(root: Path):
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    return client, runs[0]


@pytest.mark.parametrize("defense, level, target", [
    ("dpsgd", "record", 4.0),
    # the group levels' fits are tested in tests/defenses/test_dp_sgd.py; through the CLI they are slow
    pytest.param("class_dp", "class", 50.0, marks=pytest.mark.slow),
    pytest.param("subclass_dp", "subclass", 8.0, marks=pytest.mark.slow)])
def test_quickstart_with_dp_and_the_epsilon_audit_logs_epsilon_every_epoch(in_tmp, defense, level, target):
    epochs = 3
    c = cli(["fit", "--config", QUICKSTART, "--config", str(CONF / "defense" / f"{defense}.yaml"),
         "--config", str(CONF / "audit" / "epsilon_audit.yaml"), "--trainer.max_epochs", str(epochs),
         "--trainer.accelerator", "cpu"])
    client, run = only_run(in_tmp)
    history = client.get_metric_history(run.info.run_id, "dp/epsilon")
    assert len(history) == epochs
    values = [h.value for h in sorted(history, key=lambda h: h.step)]
    assert values == sorted(values) and values[-1] <= target
    assert c.model.dp_summary["dp/epsilon"] == pytest.approx(values[-1], rel=1e-6)  # what the summary table shows
    assert values[-1] >= 0.9 * target  # the noise was solved for these epochs
    m = run.data.metrics
    assert {"dp/epsilon_lb", "dp/audit_canaries", "dp/audit_guesses", "dp/audit_correct", "test/acc",
            "mia/best/auc", "privacy/aop_lambda_2", "dp/delta"} <= set(m)
    assert m["dp/epsilon_lb"] <= values[-1]
    assert any(k.endswith("target_epsilon") and float(v) == target for k, v in run.data.params.items())
    assert not {"train/loss", "train/acc", "dp/clipped_fraction"} & set(m)  # member statistics stay unlogged
    if level != "record":
        assert {f"dp/{level}_epsilon", f"dp/{level}_epsilon_rdp", f"dp/{level}_epsilon_thm1",
                f"dp/{level}_thm1_valid"} <= set(m)
        assert m[f"dp/{level}_epsilon"] <= m[f"dp/{level}_epsilon_rdp"]
        assert "dp_groups.npz" not in {a.path for a in client.list_artifacts(run.info.run_id)}
    if level == "subclass":
        assert run.data.tags["dp.subclass_source"] == "reference"
    assert run.data.tags["dp.reproducible_noise"] == "false"


def test_the_dp_block_stacks_on_another_defense(in_tmp):
    c = cli(["--config", QUICKSTART, "--config", str(CONF / "defense" / "relaxloss.yaml"),
             "--config", str(CONF / "defense" / "with_dp.yaml")], run=False)
    assert isinstance(c.model, RelaxLoss) and c.model.dp.target_epsilon == 4.0


def test_a_defense_that_cannot_be_private_is_refused_through_the_cli(in_tmp):
    UserInputError.last = None
    with pytest.raises((UserInputError, ValueError)):
        cli(["--config", QUICKSTART, "--config", str(CONF / "defense" / "dap_t.yaml"),
             "--config", str(CONF / "defense" / "with_dp.yaml")], run=False)
    assert "cannot be trained with DP-SGD" in str(UserInputError.last)


@pytest.mark.slow  # tests/privacy/test_ddp_dp.py checks the DDP ledger against the steps every rank took
def test_ddp_reports_the_same_epsilon_as_one_process(in_tmp):
    """2 gloo processes, global expected batch = data.batch_size: the same q, steps and σ as one process."""
    exe = Path(sys.executable).parent / "lightning-privacy"
    cmd = [str(exe), "fit", "--config", QUICKSTART, "--config", str(CONF / "defense" / "dpsgd.yaml"),
           "--config", str(CONF / "trainer" / "ddp_dp.yaml"), "--trainer.accelerator", "cpu",
           "--trainer.max_epochs", "2", "--audit.membership", "null"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    result = subprocess.run(cmd, cwd=in_tmp, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    _, run = only_run(in_tmp)
    m = run.data.metrics
    q = 32 / 200
    steps = 2 * int(1 / q)
    assert m["dp/steps"] == steps
    one_process = epsilon_spent(noise_multiplier=m["dp/noise_multiplier"], sample_rate=q, steps=steps, delta=1e-5)
    assert m["dp/epsilon"] == pytest.approx(one_process, rel=1e-6)
    assert m["dp/epsilon"] <= 4.0 and "test/acc" in m
