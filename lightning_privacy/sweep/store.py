"""What a sweep asks the tracking store: is a trial's config already FINISHED, which run did a trial start."""

from __future__ import annotations

from typing import Optional

HASH_TAG = "sweep.config_hash"
NAME_TAG = "sweep.name"
TRIAL_TAG = "sweep.trial"
ATTEMPT_TAG = "sweep.attempt"
SETTING_TAG = "sweep.setting"  # the trial's axis values except the seed: what a report groups seeds by


def prepare_store(uri: str, experiment: str) -> str:
    """Create the store's schema and the experiment once, before trials start: two processes creating a fresh
    sqlite store (or the same experiment) at once collide (a schema migration race, a unique-name race)."""
    from mlflow import MlflowClient

    from lightning_privacy.tracking.mlflow import check_reachable

    check_reachable(uri)
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    artifacts = None
    if uri.startswith("sqlite:///"):
        from pathlib import Path

        artifacts = (Path(uri[len("sqlite:///"):]).parent / "artifacts").resolve().as_uri()
    return client.create_experiment(experiment, artifact_location=artifacts)


def _search(uri: str, experiment: str, filter_string: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return client.search_runs([found.experiment_id], filter_string=filter_string, max_results=1000,
                              order_by=["attributes.start_time DESC"])


def finished_run(uri: str, experiment: str, config_hash: str) -> Optional[str]:
    """The id of the latest FINISHED run of ``experiment`` tagged with this ``sweep.config_hash``, if any."""
    runs = _search(uri, experiment, f"tags.`{HASH_TAG}` = '{config_hash}' and attributes.status = 'FINISHED'")
    return runs[0].info.run_id if runs else None


def run_of_attempt(uri: str, experiment: str, attempt: str) -> Optional[str]:
    """The run one trial attempt created (its unique ``sweep.attempt`` tag), once it exists."""
    runs = _search(uri, experiment, f"tags.`{ATTEMPT_TAG}` = '{attempt}'")
    return runs[0].info.run_id if runs else None
