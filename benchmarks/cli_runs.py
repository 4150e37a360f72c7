"""What the Fashion-MNIST benchmark scripts share: one named CLI fit into the "benchmarks" experiment, and its
median epoch time."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import mlflow

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from lightning_privacy.cli import main  # noqa: E402
from lightning_privacy.tracking.mlflow import default_tracking_uri  # noqa: E402


def fit_run(name: str, args: list[str]) -> tuple[mlflow.entities.Run, float]:
    """`lightning-privacy fit <args>` as run ``name``; its MLflow run and the whole call's wall time."""
    start = time.perf_counter()
    main(["fit", *args, "--tracking.experiment", "benchmarks", "--tracking.run_name", name])
    wall = time.perf_counter() - start
    client = mlflow.MlflowClient(default_tracking_uri())
    exp = client.get_experiment_by_name("benchmarks")
    latest = client.search_runs([exp.experiment_id], filter_string=f"attributes.run_name = '{name}'",
                                order_by=["attributes.start_time DESC"], max_results=1)[0]
    return latest, wall


def epoch_times(run: mlflow.entities.Run) -> list[float]:
    client = mlflow.MlflowClient(default_tracking_uri())
    return [m.value for m in client.get_metric_history(run.info.run_id, "time/epoch_s")]


def median_epoch_s(run: mlflow.entities.Run) -> float:
    return statistics.median(epoch_times(run))
