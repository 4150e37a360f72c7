"""The sweep command's bad input, the SLURM script, and concurrent writers on one embedded sqlite store."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lightning_privacy.cli import main
from lightning_privacy.sweep.store import prepare_store

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "slurm_sweep.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_address_with_no_cluster_is_an_error_within_seconds(capsys):
    start = time.monotonic()
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", "--config", str(REPO / "conf" / "sweeps" / "quickstart_demo.yaml"),
              "--address", f"127.0.0.1:{free_port()}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "no Ray cluster answers at 127.0.0.1" in err and "ray start --head" in err
    assert time.monotonic() - start < 60  # a bound on hanging, not a timing threshold (ray.init retries ~minutes)


def test_missing_sweep_file_is_one_line_error(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", "--config", str(tmp_path / "none.yaml")])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().startswith("lightning-privacy: error: sweep file")


def test_slurm_script_passes_bash_n_and_shellcheck():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    text = SCRIPT.read_text()
    assert "ray\" start --head" in text or '"$RAY" start --head' in text
    assert "--address \"$ADDRESS\"" in text and "UNTESTED" in text
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    result = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


WRITER = textwrap.dedent("""
    import sys
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param
    uri, name = sys.argv[1], sys.argv[2]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("sweep").experiment_id
    run = client.create_run(exp, tags={"sweep.trial": name}).info.run_id
    client.log_batch(run, params=[Param(f"p{i}", str(i)) for i in range(50)])
    for step in range(30):
        client.log_batch(run, metrics=[Metric(f"m{k}", float(step), 0, step) for k in range(5)])
    client.set_terminated(run, "FINISHED")
""")


def test_concurrent_trials_write_one_prepared_sqlite_store(tmp_path):
    """What trials do at once (create runs in one experiment, log params and metric batches, finish) on a fresh
    store that the sweep prepared first: no 'database is locked', no schema race, every run FINISHED."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    prepare_store(uri, "sweep")
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, uri, f"t{i}"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(4)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out
        assert "database is locked" not in out
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("sweep").experiment_id])
    assert sorted(r.data.tags["sweep.trial"] for r in runs) == ["t0", "t1", "t2", "t3"]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all(len(client.get_metric_history(r.info.run_id, "m0")) == 30 for r in runs)
