"""The logged config.yaml re-runs the run (issue 15.6)."""

import mlflow
import yaml

from lightning_privacy.cli import main
from tests.conftest import REPO

QUICKSTART = str(REPO / "conf" / "experiments" / "quickstart.yaml")


def test_the_logged_config_is_self_contained_and_reproduces_the_split(in_tmp):
    main(["fit", "--config", QUICKSTART, "--trainer.max_epochs", "1"])
    uri = f"sqlite:///{in_tmp / 'mlruns' / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    (first,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    logged = client.download_artifacts(first.info.run_id, "config.yaml", str(in_tmp))
    assert "compose" not in yaml.safe_load(open(logged))
    main(["fit", "--config", logged])
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    (second,) = [r for r in runs if r.info.run_id != first.info.run_id]
    assert second.info.status == "FINISHED"
    assert second.data.tags["split.hash"] == first.data.tags["split.hash"]
    assert second.data.params["trainer.max_epochs"] == "1"
