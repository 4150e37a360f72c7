"""Tags say what was trained; params line up across a defense family (issue 15.4)."""

import mlflow

from lightning_privacy.cli import main
from tests.conftest import REPO

QUICKSTART = str(REPO / "conf" / "experiments" / "quickstart.yaml")
WITH_DP = str(REPO / "conf" / "defense" / "with_dp.yaml")


def test_tags_and_params_of_a_dp_and_a_non_dp_run(in_tmp):
    main(["fit", "--config", QUICKSTART, "--trainer.max_epochs", "1"])
    main(["fit", "--config", QUICKSTART, "--config", WITH_DP, "--trainer.max_epochs", "1",
          "--model.init_args.dp.target_epsilon", "8"])
    client = mlflow.MlflowClient(f"sqlite:///{in_tmp / 'mlruns' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], order_by=["start_time ASC"])
    plain, dp = runs
    assert plain.data.tags["defense"] == "ERM" and plain.data.tags["dp"] == "off"
    assert dp.data.tags["defense"] == "ERM + DP-SGD" and dp.data.tags["dp"] == "on"
    assert dp.data.tags["dp.epsilon"] == "8" and dp.data.tags["dataset"] == "digits"
    assert set(plain.data.params) == set(dp.data.params)
    assert "model.dp.target_epsilon" in plain.data.params and "model.dp" not in plain.data.params
    assert plain.data.params["trainer.callbacks.ModelCheckpoint.monitor"] == "val/acc"
    assert not any(k.startswith("trainer.callbacks/") for k in plain.data.params)
