"""MLflow set-up: tracking URI precedence, a fast reachability probe, the logger."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional

from lightning.pytorch.loggers import MLFlowLogger

from lightning_privacy.errors import TrackingServerError
from lightning_privacy.tracking.store import ensure_store, normalize_uri

if TYPE_CHECKING:
    from mlflow.entities import Run

# MLflow's client otherwise retries an unreachable server for minutes; users may still override these.
CLIENT_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


@dataclass
class TrackingConfig:
    """``tracking:`` settings: where and how the run is logged in MLflow.

    Args:
        uri: MLflow tracking URI: http://host:port, sqlite:///path/mlflow.db, or a directory (the sqlite store
            mlflow.db inside it); null = MLFLOW_TRACKING_URI, else ./mlruns/mlflow.db.
        experiment: MLflow experiment the run is logged in.
        run_name: name shown for the run in MLflow (null: MLflow picks one).
        enabled: false = log nothing to MLflow (the run still trains, tests and audits).
        run_id: log into this existing run instead of a new one (e.g. ``test`` re-auditing a finished run's
            model, its checkpoint taken from the run's ``audit.checkpoint`` tag).
        tags: extra tags of a new run (e.g. a sweep's ``sweep.name``, ``sweep.config_hash``).
    """

    uri: Optional[str] = None
    experiment: str = "lightning-privacy"
    run_name: Optional[str] = None
    enabled: bool = True
    run_id: Optional[str] = None
    tags: Optional[dict[str, str]] = None


def default_tracking_uri(base: Optional[Path] = None) -> str:
    store = (base or Path.cwd()) / "mlruns"
    return f"sqlite:///{store.resolve() / 'mlflow.db'}"


def resolve_tracking_uri(*, flag: Optional[str], env: Optional[str], config: Optional[str], default: str) -> str:
    """An explicit command-line flag, then ``MLFLOW_TRACKING_URI``, then config files, then the default."""
    for uri in (flag, env, config):
        if uri:
            return normalize_uri(uri)
    return default


def check_reachable(uri: str, *, timeout: float = 5.0) -> None:
    """Fail in seconds, with what to do, when an HTTP tracking server does not answer ``/health``."""
    if uri.startswith("sqlite:///"):
        ensure_store(uri)
        return
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
            if response.status == 200:
                return
            problem = f"HTTP {response.status}"
    except (urllib.error.URLError, OSError, ValueError) as e:
        problem = str(getattr(e, "reason", e))
    raise TrackingServerError(
        f"MLflow tracking server {uri} is unreachable ({problem}). Start it (e.g. `docker compose up -d` "
        f"or `mlflow server --host 127.0.0.1 --port 5000`), or track locally: unset MLFLOW_TRACKING_URI "
        f"and drop tracking.uri, or pass --tracking.uri sqlite:///mlruns/mlflow.db"
    )


class ResumedMLFlowLogger(MLFlowLogger):
    """Logs into an existing run with steps after its last one, so that MLflow shows the new values as latest."""

    def __init__(self, *, step_offset: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.step_offset = step_offset

    def log_metrics(self, metrics: Mapping[str, float], step: Optional[int] = None) -> None:
        super().log_metrics(metrics, None if step is None else step + self.step_offset)


def existing_run(uri: str, run_id: str) -> Run:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return MlflowClient(uri).get_run(run_id)
    except MlflowException as e:
        raise TrackingServerError(f"MLflow run {run_id} not found at {uri}; check --tracking.run_id and the "
                                  f"tracking URI") from e


def default_run_name(config: TrackingConfig, tags: Mapping[str, str]) -> str:
    """The run list tells runs apart: the configured name (else the experiment's), with the defense appended when
    the name does not already say it (``quickstart`` → ``quickstart ERM``, ``quickstart Reg``)."""
    name = config.run_name or config.experiment
    defense = tags.get("defense", "")
    return f"{name} {defense}" if defense and defense.lower() not in name.lower().replace("-", "") else name


def build_logger(*, uri: str, config: TrackingConfig, tags: dict[str, str]) -> MLFlowLogger:
    for key, value in CLIENT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if config.run_id:
        return ResumedMLFlowLogger(step_offset=last_step(uri, existing_run(uri, config.run_id)) + 1,
                                   experiment_name=config.experiment, tracking_uri=uri, run_id=config.run_id)
    artifacts = None
    if uri.startswith("sqlite:///"):
        artifacts = (Path(uri[len("sqlite:///"):]).parent / "artifacts").resolve().as_uri()
    return MLFlowLogger(experiment_name=config.experiment, run_name=default_run_name(config, tags), tracking_uri=uri,
                        tags={**tags, **{str(k): str(v) for k, v in (config.tags or {}).items()}}, artifact_location=artifacts)


def last_step(uri: str, run: "Run") -> int:
    """The last step of a run: training logs ``epoch`` at every step, tests and audits ``test/acc``, ``mia/best/auc``."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    steps = [m.step for key in ("epoch", "test/acc", "mia/best/auc") if key in run.data.metrics
             for m in client.get_metric_history(run.info.run_id, key)]
    return max(steps, default=-1)
