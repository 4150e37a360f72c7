"""What the Fashion-MNIST benchmark scripts share: one named CLI fit into the "benchmarks" experiment, and its
median epoch time."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

import mlflow

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from lightning_privacy.cli import main  # noqa: E402
from lightning_privacy.tracking.mlflow import default_tracking_uri  # noqa: E402


def fit_run(name: str, args: list[str], command: str = "fit") -> tuple[mlflow.entities.Run, float]:
    """`lightning-privacy fit <args>` (or ``command``, e.g. ``test``) as run ``name``; its MLflow run and the whole
    call's wall time.

    The CLI appends the defense to a name that does not already say it (``bench-x`` → ``bench-x ERM + DP-SGD``),
    so the run is the latest finished one named ``name`` or ``name <defense>`` that started during this call."""
    started_ms = int(time.time() * 1000) - 1000
    start = time.perf_counter()
    main([command, *args, "--tracking.experiment", "benchmarks", "--tracking.run_name", name])
    wall = time.perf_counter() - start
    return latest_run(name, started_ms), wall


def latest_run(name: str, since_ms: int = 0) -> mlflow.entities.Run:
    """The latest finished run of experiment "benchmarks" named ``name`` or ``name <defense>`` (started after
    ``since_ms``)."""
    client = mlflow.MlflowClient(default_tracking_uri())
    exp = client.get_experiment_by_name("benchmarks")
    runs = client.search_runs([exp.experiment_id] if exp else [], order_by=["attributes.start_time DESC"],
                              filter_string=f"attributes.run_name LIKE '{name}%' AND "
                              f"attributes.status = 'FINISHED' AND attributes.start_time >= {since_ms}")
    # LIKE's "_" matches any character and "pigan_l1%" also matches pigan_l10: keep the name or "name <defense>"
    runs = [r for r in runs if r.info.run_name == name or r.info.run_name.startswith(name + " ")]
    if not runs:
        raise RuntimeError(f"no finished run named {name!r}… in experiment 'benchmarks' of {default_tracking_uri()}")
    return runs[0]


def epoch_times(run: mlflow.entities.Run) -> list[float]:
    client = mlflow.MlflowClient(default_tracking_uri())
    return [m.value for m in client.get_metric_history(run.info.run_id, "time/epoch_s")]


def median_epoch_s(run: mlflow.entities.Run) -> float:
    return statistics.median(epoch_times(run))


def role_args(args: Any) -> list[str]:
    """The data options the inversion scripts share: root, batch size, and the role sizes they set
    (``members``/``nonmembers`` only when given)."""
    out = ["--data.init_args.root", args.data_root, "--data.init_args.batch_size", str(args.batch_size),
           "--data.init_args.validation", str(args.validation), "--data.init_args.reference", str(args.reference)]
    for role in ("members", "nonmembers"):
        if getattr(args, role) is not None:
            out += [f"--data.init_args.{role}", str(getattr(args, role))]
    return out
