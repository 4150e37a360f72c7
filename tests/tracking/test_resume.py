"""Crash-resume: last checkpoint by default, `--ckpt_path last` errors without one, a SIGKILLed fit continues its
own MLflow run with each (metric, step) exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from lightning_privacy.cli import main
from lightning_privacy.tracking.resume import continued_logger

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = str(REPO / "conf" / "experiments" / "quickstart.yaml")


def test_continued_logger_sends_no_pair_twice(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("e")
    run = client.create_run(exp).info.run_id
    for step in range(6):
        client.log_metric(run, "train/loss", float(step), step=step)
    logger = continued_logger(uri=uri, experiment="e", run_id=run)
    for step in range(3, 9):  # steps 3-5 were logged before the crash; the resumed fit logs them again
        logger.log_metrics({"train/loss": 100.0 + step, "epoch": 1.0}, step=step)
    history = {m.step: m.value for m in client.get_metric_history(run, "train/loss")}
    assert len(client.get_metric_history(run, "train/loss")) == 9
    assert history == {**{s: float(s) for s in range(6)}, **{s: 100.0 + s for s in range(6, 9)}}
    assert sorted(m.step for m in client.get_metric_history(run, "epoch")) == list(range(3, 9))


def test_ckpt_path_last_without_a_checkpoint_is_an_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", QUICKSTART, "--ckpt_path", "last"])
    assert exit_.value.code == 2
    assert "--ckpt_path last: no last checkpoint of this config" in capsys.readouterr().err


@pytest.mark.slow
def test_sigkilled_fit_resumes_into_the_same_run(tmp_path):
    from mlflow import MlflowClient

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    args = [sys.executable, "-m", "lightning_privacy.cli", "fit", "--config", QUICKSTART, "--seed_everything=0",
            "--trainer.max_epochs=10", "--data.init_args.batch_size=2", "--trainer.log_every_n_steps=1",
            "--audit.membership.bootstrap=10"]
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 900
    while not list((tmp_path / "outputs").glob("**/last*.ckpt")):  # epoch 0 ended and saved last.ckpt
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(1.5)  # into epoch 1 (90 steps of batch 2 per epoch)
    first.send_signal(signal.SIGKILL)
    first.wait()
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    (killed,) = client.search_runs([client.get_experiment_by_name("lightning-privacy").experiment_id])
    assert killed.info.status == "RUNNING"
    steps_before = max(m.step for m in client.get_metric_history(killed.info.run_id, "train/loss"))

    second = subprocess.run(args + ["--ckpt_path", "last"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    runs = client.search_runs([client.get_experiment_by_name("lightning-privacy").experiment_id])
    assert [r.info.run_id for r in runs] == [killed.info.run_id]  # no new run
    run = runs[0]
    assert run.info.status == "FINISHED" and "test/acc" in run.data.metrics
    for key in run.data.metrics:
        history = client.get_metric_history(run.info.run_id, key)
        values: dict[int, set[float]] = {}
        for m in history:
            values.setdefault(m.step, set()).add(m.value)
        assert all(len(v) == 1 for v in values.values()), (key, values)  # one value per (metric, step)
        if key != "epoch":  # Lightning itself sends `epoch` twice (same value) at an epoch's last step, in any fit
            steps = Counter(m.step for m in history)
            assert all(n == 1 for n in steps.values()), (key, steps)
    loss_steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/loss"))
    assert loss_steps[-1] > steps_before  # it trained on after the kill
    assert loss_steps == list(range(loss_steps[0], loss_steps[-1] + 1, loss_steps[1] - loss_steps[0]))  # none missing


def test_find_last_checkpoint_takes_the_newest_of_the_same_config(tmp_path):
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint

    from lightning_privacy.errors import UserInputError
    from lightning_privacy.tracking.resume import CHECKPOINT_KEY, enable_last_checkpoint, find_last_checkpoint

    for i, (run, h) in enumerate([("old", "h1"), ("other", "h2"), ("new", "h1")]):
        path = tmp_path / run / "checkpoints" / "last.ckpt"
        path.parent.mkdir(parents=True)
        torch.save({CHECKPOINT_KEY: {"run_id": run, "config_hash": h}}, path)
        os.utime(path, (1000 + i, 1000 + i))
    (tmp_path / "cut" / "checkpoints").mkdir(parents=True)
    (tmp_path / "cut" / "checkpoints" / "last.ckpt").write_bytes(b"truncated by the crash")
    path, record = find_last_checkpoint(tmp_path, "h1")
    assert record["run_id"] == "new" and path.parent.parent.name == "new"
    with pytest.raises(UserInputError, match="no last checkpoint of this config"):
        find_last_checkpoint(tmp_path, "h3")

    class T:
        checkpoint_callbacks = [ModelCheckpoint(monitor="val/acc"), ModelCheckpoint(save_last=False)]

    enable_last_checkpoint(T)
    assert [cb.save_last for cb in T.checkpoint_callbacks] == [True, False]


def _kill_after_first_checkpoint(args: list[str], cwd: Path, env: dict, log_name: str) -> None:
    """Start the fit, SIGKILL it once its first last.ckpt exists (mid-run: it is still training)."""
    log = open(cwd / log_name, "w")
    first = subprocess.Popen(args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 900
    while not list((cwd / "outputs").glob("**/last*.ckpt")):
        assert first.poll() is None, (cwd / log_name).read_text()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(1.0)
    assert first.poll() is None, "the fit ended before it could be killed mid-run"
    first.send_signal(signal.SIGKILL)
    first.wait()
    log.close()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["solved_noise", "stop_at_target"])
def test_sigkilled_dp_fit_resumes_its_ledger_and_split(tmp_path, mode):
    """Issue 14.3: a DP-SGD fit killed mid-run resumes into the same run; its ledger continues from the checkpoint
    (the steps behind the final weights: the checkpoint's plus the resumed process', each counted once), ε is the
    account of exactly those steps, a fixed-noise fit stops at the same epoch as an uninterrupted one would, and a
    resume on another split is refused."""
    import torch
    from mlflow import MlflowClient

    from lightning_privacy.privacy.accounting import PrivacyLedger, epochs_within

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    members, batch = 200, 2
    q, steps_per_epoch = batch / members, int(members / batch)
    args = [sys.executable, "-m", "lightning_privacy.cli", "fit", "--config", QUICKSTART, "--config",
            str(REPO / "conf" / "defense" / "with_dp.yaml"), "--seed_everything=0",
            f"--data.init_args.batch_size={batch}", "--audit.membership.bootstrap=10"]
    if mode == "solved_noise":  # target ε alone: σ solved for the planned steps of 4 epochs
        args += ["--trainer.max_epochs=4"]
        epochs = 4
    else:  # fixed σ and a target: training stops after the last epoch within it
        args += ["--trainer.max_epochs=10", "--model.init_args.dp.noise_multiplier=0.8",
                 "--model.init_args.dp.target_epsilon=3.0"]
        epochs = epochs_within(target_epsilon=3.0, noise_multiplier=0.8, sample_rate=q,
                               steps_per_epoch=steps_per_epoch, delta=1e-5, accountant="rdp", max_epochs=10)
        assert 2 <= epochs < 10
    _kill_after_first_checkpoint(args, tmp_path, env, "first.log")
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("lightning-privacy").experiment_id
    (killed,) = client.search_runs([experiment])
    assert killed.info.status == "RUNNING"
    (last,) = (tmp_path / "outputs").glob("**/last.ckpt")
    saved = torch.load(last, map_location="cpu", weights_only=False)
    saved_epochs = saved["epoch"] + 1
    saved_steps = saved["dp_record"]["private_state"]["steps"]
    assert 1 <= saved_epochs < epochs and saved_steps == saved_epochs * steps_per_epoch

    split = killed.data.tags["split.hash"]  # a resume whose data draws another split is refused
    client.set_tag(killed.info.run_id, "split.hash", "0" * len(split))
    refused = subprocess.run(args + ["--ckpt_path", "last"], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=900)
    assert refused.returncode == 2 and "resuming would mix two member sets" in refused.stderr, refused.stderr[-2000:]
    client.set_tag(killed.info.run_id, "split.hash", split)

    second = subprocess.run(args + ["--ckpt_path", "last"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "continuing with noise multiplier" not in second.stderr  # the same σ as before the kill
    (run,) = client.search_runs([experiment])
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    assert run.data.tags["split.hash"] == split

    final = torch.load(last, map_location="cpu", weights_only=False)["dp_record"]["private_state"]
    sigma = final["noise_multiplier"]
    assert final["steps"] == epochs * steps_per_epoch  # saved epochs' steps + the resumed epochs', once each
    assert final["ledger"]["history"] == [[sigma, q, epochs * steps_per_epoch]]
    history = client.get_metric_history(run.info.run_id, "dp/steps")
    assert sorted(m.value for m in history) == [float(steps_per_epoch * (e + 1)) for e in range(epochs)]
    logged_sigma = [m.value for m in client.get_metric_history(run.info.run_id, "dp/noise_multiplier")]
    assert len(logged_sigma) == epochs and all(v == pytest.approx(sigma, rel=1e-6) for v in logged_sigma)  # float32
    ledger = PrivacyLedger(accountant="rdp")
    ledger.step(noise_multiplier=sigma, sample_rate=q, steps=epochs * steps_per_epoch)
    epsilon = run.data.metrics["dp/epsilon"]
    assert epsilon == pytest.approx(ledger.epsilon(1e-5), rel=1e-6)  # logged as float32
    if mode == "solved_noise":
        assert 3.9 < epsilon <= 4.0 * (1 + 1e-6)  # σ was solved for exactly these steps
    else:
        assert epsilon <= 3.0
