"""A real 2 × 2 sweep through Ray Tune on the quickstart: 4 fits, a rerun skips all 4, a failing trial is
retried once and reported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TINY = {"trainer.max_epochs": 1, "trainer.limit_train_batches": 2, "trainer.limit_val_batches": 1,
        "audit.membership.bootstrap": 10}


def sweep(tmp_path: Path, path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "lightning_privacy.cli", "sweep", "--config", str(path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)


@pytest.mark.slow
@pytest.mark.timeout(3000)  # three sweeps, six fits, Ray started twice: long on a loaded 2-core machine
def test_two_by_two_sweep_runs_skips_and_reports_a_failure(tmp_path):
    from mlflow import MlflowClient

    conf = REPO / "conf"
    good = tmp_path / "demo.yaml"
    good.write_text(yaml.safe_dump({
        "name": "demo", "base": str(conf / "experiments" / "quickstart.yaml"), "experiment": "sweep-test",
        "set": TINY, "grid": {"configs": {"defense": [str(conf / "defense" / "erm.yaml"),
                                                      str(conf / "defense" / "reg.yaml")]}, "seeds": [0, 1]},
        "resources": {"cpus": 1}}))
    first = sweep(tmp_path, good)
    assert first.returncode == 0, first.stdout + first.stderr
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("sweep-test").experiment_id
    runs = client.search_runs([exp])
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    assert {r.data.tags["sweep.name"] for r in runs} == {"demo"}
    assert len({r.data.tags["sweep.config_hash"] for r in runs}) == 4
    assert {r.data.tags["defense"] for r in runs} == {"ERM", "Reg"}
    assert {r.info.run_name for r in runs} == {f"demo defense={d} seed={s}" for d in ("erm", "reg") for s in (0, 1)}
    for r in runs:  # one start/finish line per trial, with its run id
        assert f"finished {r.data.tags['sweep.trial']} run {r.info.run_id}" in first.stdout
    assert "4 finished" in first.stdout

    second = sweep(tmp_path, good)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "4 skipped" in second.stdout and "start " not in second.stdout
    assert len(client.search_runs([exp])) == 4  # nothing trained

    bad = tmp_path / "bad.yaml"  # the defense refuses a negative learning rate when the fit builds it
    bad.write_text(yaml.safe_dump({
        "name": "bad", "base": str(conf / "experiments" / "quickstart.yaml"), "experiment": "sweep-test",
        "set": TINY, "grid": {"values": {"model.init_args.lr": [-1.0]}}}))
    third = sweep(tmp_path, bad)
    assert third.returncode == 1, third.stdout + third.stderr
    assert "retry" in third.stdout and "1 failed" in third.stdout
    assert "[sweep] error    lr=-1.0: " in third.stdout and "fit exited with status 2" in third.stdout
    attempts = sorted((tmp_path / "outputs" / "sweeps" / "bad" / "logs").glob("*.log"))
    assert len(attempts) == 2  # the attempt and its one retry
    assert all("lr must be > 0" in a.read_text() for a in attempts)
    assert len(client.search_runs([exp])) == 4  # the failure trained nothing
