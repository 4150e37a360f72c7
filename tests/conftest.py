"""Shared fixtures: a real MLflow server on 127.0.0.1 (sqlite backend) and a scratch working directory."""

from __future__ import annotations

import lightning_privacy  # noqa: F401  (first: it pins typing's Union cache; see lightning_privacy/__init__.py)

import os
import shutil
import signal
import sqlite3
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory):
    """``mlflow server`` on 127.0.0.1 with a sqlite store; stopped as a whole process group."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
           "--default-artifact-root", str(root / "artifacts")]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(uri + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield uri
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="session")
def store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One embedded store with MLflow's tables made, copied into each scratch directory: its migrations cost about
    a second of CPU per store. Fresh-store creation itself is tested on ``tmp_path`` (tests/tracking/test_store.py)."""
    from lightning_privacy.tracking.store import ensure_store

    db = tmp_path_factory.mktemp("store-template") / "mlflow.db"
    ensure_store(f"sqlite:///{db}")
    return db


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_template: Path) -> Path:
    """Run in a scratch directory (the default ./mlruns and ./outputs land there, ./mlruns/mlflow.db with its
    tables made), no tracking env."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "mlruns").mkdir()
    db = tmp_path / "mlruns" / "mlflow.db"
    shutil.copyfile(store_template, db)
    with sqlite3.connect(db) as conn:  # the Default experiment's artifacts live beside this copy, not the template
        conn.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                     ((tmp_path / "mlruns" / "artifacts" / "0").resolve().as_uri(),))
    return tmp_path
