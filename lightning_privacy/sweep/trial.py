"""One sweep trial on a Ray worker: one ordinary ``fit`` in a subprocess (imports stay light: no torch here).

Why a subprocess: a trial is then byte for byte the command a user would type (logged, replayable), in a fresh
interpreter (no seed, thread-count, Lightning or MLflow global state leaks from one trial into the next one a
reused Ray worker runs), with its own exit status, and a stopped trial's fit dies with it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from lightning_privacy.sweep.store import (ATTEMPT_TAG, HASH_TAG, NAME_TAG, SETTING_TAG, TRIAL_TAG, finished_run,
                                           run_of_attempt)


def _die_with_parent() -> None:
    """The fit subprocess gets SIGTERM when the Ray worker running it dies (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def fit_command(spec: dict[str, Any], attempt: str) -> list[str]:
    tags = {NAME_TAG: spec["sweep"], HASH_TAG: spec["hash"], TRIAL_TAG: spec["name"], ATTEMPT_TAG: attempt,
            SETTING_TAG: spec["setting"]}
    # The run list tells trials apart: the sweep's name and the trial's axis values (tracking is not in the hash).
    return [sys.executable, "-m", "lightning_privacy.cli", "fit", *spec["args"],
            f"--tracking.run_name={spec['sweep']} {spec['label']}", f"--tracking.tags={json.dumps(tags, sort_keys=True)}"]


def run_trial(config: dict[str, Any]) -> None:
    """Ray Tune's function trainable: one ``fit`` subprocess; reports its run id; raises when the fit fails."""
    from ray import tune

    spec = config["trial"]
    os.chdir(spec["cwd"])  # Ray starts trials in their own folders; the sweep's relative paths are the caller's
    done = finished_run(spec["uri"], spec["experiment"], spec["hash"])
    if done:  # a retry, or another sweep, finished it meanwhile
        tune.report({"run_id": done, "state": "skipped"})
        return
    attempt = uuid.uuid4().hex[:12]
    log_dir = Path(spec["log_dir"])
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{spec['name']}.{attempt}.log"
    threads = str(max(1, int(spec["cpus"])))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(fit_command(spec, attempt), stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=spec["cwd"], preexec_fn=_die_with_parent)
        run_id = None
        try:
            while proc.poll() is None:
                time.sleep(1.0)
                if run_id is None:
                    run_id = run_of_attempt(spec["uri"], spec["experiment"], attempt)
                    if run_id:
                        tune.report({"run_id": run_id, "state": "running"})
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    run_id = run_id or run_of_attempt(spec["uri"], spec["experiment"], attempt)
    if proc.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        raise RuntimeError(f"fit exited with status {proc.returncode} (run {run_id}; log {log_path}):\n{tail}")
    tune.report({"run_id": run_id, "state": "finished"})
