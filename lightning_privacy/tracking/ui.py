"""``lightning-privacy ui``: a light MLflow server (one worker, job execution off) on the local store, opened on
the runs view of the project's experiment, which is marked as a model-training experiment."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
import webbrowser
from pathlib import Path
from typing import Optional, Sequence

from lightning_privacy.errors import UserInputError

KIND_TAG, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"
"""The experiment tag MLflow's UI reads to show runs (model training) instead of its GenAI traces view."""


def mark_model_training(client: object, experiment_id: str) -> None:
    """Tag an experiment as model training (unless its owner chose another kind)."""
    experiment = client.get_experiment(experiment_id)
    if KIND_TAG not in (experiment.tags or {}):
        client.set_experiment_tag(experiment_id, KIND_TAG, MODEL_TRAINING)


def server_command(uri: str, *, host: str, port: int) -> list[str]:
    artifacts = Path(uri[len("sqlite:///"):]).parent / "artifacts" if uri.startswith("sqlite:///") else None
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", host, "--port", str(port),
           "--workers", "1", "--backend-store-uri", uri]
    return cmd + (["--default-artifact-root", str(artifacts.resolve())] if artifacts else [])


def experiment_url(uri: str, base: str, experiment: str) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return base
    mark_model_training(client, found.experiment_id)
    return f"{base}/#/experiments/{found.experiment_id}/runs"


def serve(argv: Sequence[str]) -> int:
    """Start the server, print (and open) the runs view, stop the whole process group on Ctrl-C."""
    from lightning_privacy.tracking.mlflow import default_tracking_uri
    from lightning_privacy.tracking.store import ensure_store, normalize_uri

    parser = argparse.ArgumentParser(prog="lightning-privacy ui", description=__doc__)
    parser.add_argument("--tracking.uri", dest="uri", default=None,
                        help="the local store (sqlite:///…/mlflow.db or its directory); default ./mlruns/mlflow.db")
    parser.add_argument("--tracking.experiment", dest="experiment", default="lightning-privacy",
                        help="the experiment whose runs view opens")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--no-browser", action="store_true", help="print the address only")
    args = parser.parse_args(list(argv))
    uri = normalize_uri(args.uri) if args.uri else default_tracking_uri()
    if not uri.startswith("sqlite:///"):
        raise UserInputError(f"lightning-privacy ui serves a local store; {uri} is a server already: open it")
    ensure_store(uri)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(server_command(uri, host=args.host, port=args.port), env=env, start_new_session=True)
    base = f"http://{args.host}:{args.port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None:
                raise UserInputError(f"mlflow server exited ({proc.returncode}); is port {args.port} free? "
                                     "try --port 5001")
            if time.time() > deadline:
                raise UserInputError(f"mlflow server did not answer {base}/health in 120 s")
            time.sleep(0.5)
        url = experiment_url(uri, base, args.experiment)
        print(f"MLflow UI: {url}  (Ctrl-C stops it)", flush=True)
        if not args.no_browser:
            webbrowser.open(url)
        proc.wait()
        return proc.returncode or 0
    except KeyboardInterrupt:
        return 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def main(argv: Optional[Sequence[str]] = None) -> int:
    return serve(sys.argv[1:] if argv is None else argv)
