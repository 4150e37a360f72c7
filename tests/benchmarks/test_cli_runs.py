"""benchmarks/cli_runs.py: the benchmark scripts find the run that their CLI fit created."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import mlflow

REPO = Path(__file__).resolve().parents[2]


def _cli_runs():
    spec = importlib.util.spec_from_file_location("cli_runs", REPO / "benchmarks" / "cli_runs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("cli_runs", module)
    spec.loader.exec_module(module)
    return module


def test_fit_run_finds_the_run_whose_name_the_cli_extended(in_tmp, monkeypatch):
    """The CLI appends the defense to a run name that does not say it (``bench-x-l2`` → ``bench-x-l2 Reg``);
    fit_run must return that run, and the newest one of a name that prefixes another's."""
    cli_runs = _cli_runs()
    from lightning_privacy.tracking.mlflow import default_tracking_uri

    def fake_main(argv):
        name = argv[argv.index("--tracking.run_name") + 1]
        client = mlflow.MlflowClient(default_tracking_uri())
        exp = client.get_experiment_by_name("benchmarks")
        exp_id = exp.experiment_id if exp else client.create_experiment("benchmarks")
        run = client.create_run(exp_id, run_name=f"{name} Reg")
        client.log_metric(run.info.run_id, "test/acc", len(name))
        client.set_terminated(run.info.run_id)

    monkeypatch.setattr(cli_runs, "main", fake_main)
    first, _ = cli_runs.fit_run("bench-x-l2_dropout", [])
    second, _ = cli_runs.fit_run("bench-x-l2", [])
    assert first.info.run_name == "bench-x-l2_dropout Reg"
    assert second.info.run_name == "bench-x-l2 Reg" and second.info.run_id != first.info.run_id
    # a newer run whose name only shares the prefix ("_" is LIKE's any-character) is not the one asked for
    newer, _ = cli_runs.fit_run("bench-x-l2_dropout", [])
    assert cli_runs.latest_run("bench-x-l2").info.run_id == second.info.run_id
    assert cli_runs.latest_run("bench-x-l2_dropout").info.run_id == newer.info.run_id
