"""The runs a report reads: FINISHED fits of one experiment (optionally one sweep), one row per run."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Optional

from lightning_privacy.errors import UserInputError

REPORT_TAG = "report"


@dataclass
class RunRow:
    """What a report needs of one run."""

    run_id: str
    dataset: str
    setting: str
    metrics: dict[str, float] = field(default_factory=dict)


def setting_of(tags: dict[str, str], params: dict[str, str]) -> str:
    """A run's column: a sweep trial's axes without the seed (``sweep.setting``), else its defense, with DP's
    target ε when it has one."""
    if tags.get("sweep.setting"):
        return tags["sweep.setting"]
    name = tags.get("defense", "?")
    eps = params.get("model.dp.target_epsilon")
    if eps not in (None, "", "None"):
        name += f" DP ε={eps}"
    return name


def collect(uri: str, experiment: str, sweep: Optional[str] = None) -> list[RunRow]:
    """The FINISHED non-report runs of ``experiment`` (of sweep ``sweep`` when given); ``time/epoch_s`` becomes
    the median over the run's epochs, other metrics their latest value."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise UserInputError(f"no MLflow experiment {experiment!r} at {uri}; check --experiment and the tracking URI")
    filters = ["attributes.status = 'FINISHED'"]
    if sweep:
        filters.append(f"tags.`sweep.name` = '{sweep}'")
    runs = client.search_runs([found.experiment_id], filter_string=" and ".join(filters), max_results=5000)
    rows = []
    for run in runs:
        tags, params = run.data.tags, run.data.params
        if tags.get(REPORT_TAG) == "true":
            continue
        metrics = dict(run.data.metrics)
        if "time/epoch_s" in metrics:
            history = [m.value for m in client.get_metric_history(run.info.run_id, "time/epoch_s")]
            metrics["time/epoch_s"] = statistics.median(history)
        rows.append(RunRow(run_id=run.info.run_id, dataset=tags.get("dataset", "?"), setting=setting_of(tags, params),
                           metrics=metrics))
    if not rows:
        what = f"sweep {sweep!r} of experiment {experiment!r}" if sweep else f"experiment {experiment!r}"
        raise UserInputError(f"{what} has no FINISHED runs at {uri}; run the sweep or fits first")
    return rows
