import subprocess
import sys
import time

import mlflow
import pytest

from lightning_privacy.errors import UserInputError
from lightning_privacy.tracking.store import normalize_uri
from tests.conftest import REPO

WORKER = """
import sys, time
from pathlib import Path
from lightning_privacy.tracking.mlflow import check_reachable
import mlflow
go = Path(sys.argv[2])
Path(sys.argv[3]).touch()
while not go.exists():
    time.sleep(0.01)
check_reachable(sys.argv[1])
client = mlflow.MlflowClient(sys.argv[1])
client.create_run(client.get_experiment_by_name("Default").experiment_id)
"""


def test_a_plain_directory_is_the_sqlite_store_inside_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert normalize_uri("./mlruns") == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    assert normalize_uri("sqlite:///x.db") == "sqlite:///x.db"
    assert normalize_uri("http://127.0.0.1:5080") == "http://127.0.0.1:5080"


def test_a_file_uri_is_refused_with_what_to_write(monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(UserInputError, match=r"--tracking.uri /data/mlruns.*sqlite:////data/mlruns/mlflow.db"):
        normalize_uri("file:///data/mlruns")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    assert normalize_uri("file:///data/mlruns") == "file:///data/mlruns"


def test_concurrent_first_use_of_a_fresh_sqlite_store(tmp_path):
    """Several processes opening a fresh store at once: MLflow's table creation raced (duplicate column name)."""
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    go = tmp_path / "go"
    env_path = str(REPO)
    ready = [tmp_path / f"ready{i}" for i in range(3)]
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, uri, str(go), str(r)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})
             for r in ready]
    while not all(r.exists() for r in ready) and all(p.poll() is None for p in procs):
        time.sleep(0.05)  # every process has imported mlflow: they open the store together
    go.touch()
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 3, [err[-1500:] for _, err in results]
    client = mlflow.MlflowClient(uri)
    assert len(client.search_runs([client.get_experiment_by_name("Default").experiment_id])) == 3
