"""``lightning-privacy ui``: a light server on the local store, the experiment shown as model training (15.4)."""

import os
import signal
import subprocess
import sys
import urllib.request

import mlflow

from lightning_privacy.cli import main
from lightning_privacy.tracking.ui import KIND_TAG, MODEL_TRAINING
from tests.conftest import REPO, free_port

QUICKSTART = str(REPO / "conf" / "experiments" / "quickstart.yaml")


def test_ui_serves_the_store_and_the_experiment_is_model_training(in_tmp):
    main(["fit", "--config", QUICKSTART, "--trainer.max_epochs", "1"])
    client = mlflow.MlflowClient(f"sqlite:///{in_tmp / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("lightning-privacy")
    assert experiment.tags[KIND_TAG] == MODEL_TRAINING
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "lightning_privacy.cli", "ui", "--port", str(port), "--no-browser"],
                            cwd=in_tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={"PYTHONPATH": str(REPO), "PATH": os.environ["PATH"]}, start_new_session=True)
    try:
        line = ""
        while not line.startswith("MLflow UI:") and proc.poll() is None:  # printed once /health answers
            line = proc.stdout.readline()
        assert f"/#/experiments/{experiment.experiment_id}/runs" in line, line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name"
                                    "?experiment_name=lightning-privacy", timeout=10) as response:
            assert response.status == 200 and KIND_TAG in response.read().decode()
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
