"""A trial's config hash and the skip logic, on a temporary sqlite store (no Ray, no fit)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lightning_privacy.canonical import canonical_hash
from lightning_privacy.errors import UserInputError
from lightning_privacy.sweep.resolve import config_hash, resolve_config, strip_outputs
from lightning_privacy.sweep.runner import plan
from lightning_privacy.sweep.spec import load_sweep
from lightning_privacy.sweep.store import HASH_TAG, finished_run, prepare_store

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = str(REPO / "conf" / "experiments" / "quickstart.yaml")


def test_hash_ignores_tracking_logger_and_output_paths_but_not_what_is_trained():
    base = resolve_config(["--config", QUICKSTART, "--seed_everything=0"])
    same = resolve_config(["--config", QUICKSTART, "--seed_everything=0", "--tracking.experiment=other",
                           "--tracking.run_name=x", "--trainer.default_root_dir=/tmp/elsewhere",
                           "--audit.membership.cache_dir=/tmp/bank"])
    assert config_hash(same) == config_hash(base)
    assert config_hash(base) == canonical_hash(strip_outputs(base))  # the model bank's serialisation
    for change in (["--seed_everything=1"], ["--trainer.max_epochs=3"], ["--model.init_args.lr=0.01"]):
        other = resolve_config(["--config", QUICKSTART, "--seed_everything=0", *change])
        assert config_hash(other) != config_hash(base), change
    assert "tracking" not in strip_outputs(base) and "default_root_dir" not in strip_outputs(base)["trainer"]


def test_unknown_dotted_key_is_a_clear_error():
    with pytest.raises(UserInputError, match="nonexistent"):
        resolve_config(["--config", QUICKSTART, "--model.init_args.nonexistent=3"])


def test_finished_run_with_the_hash_is_skipped_and_others_are_not(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump({"base": QUICKSTART, "experiment": "exp", "grid": {"seeds": [0, 1, 2]}}))
    spec = load_sweep(sweep)
    extra = [f"--tracking.uri={uri}"]
    first = plan(spec, extra)
    assert [p.finished_run for p in first] == [None, None, None]
    assert len({p.config_hash for p in first}) == 3
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("exp").experiment_id  # plan() created it before any trial
    done = client.create_run(exp, tags={HASH_TAG: first[0].config_hash})
    client.set_terminated(done.info.run_id, "FINISHED")
    failed = client.create_run(exp, tags={HASH_TAG: first[1].config_hash})
    client.set_terminated(failed.info.run_id, "FAILED")
    running = client.create_run(exp, tags={HASH_TAG: first[2].config_hash})  # noqa: F841 (RUNNING)
    second = plan(spec, extra)
    assert [p.config_hash for p in second] == [p.config_hash for p in first]
    assert [p.finished_run for p in second] == [done.info.run_id, None, None]
    assert finished_run(uri, "no-such-experiment", first[0].config_hash) is None


def test_axes_that_change_nothing_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump({"base": QUICKSTART, "grid": {"values": {"tracking.run_name": ["a", "b"]}}}))
    with pytest.raises(UserInputError, match="same config"):
        plan(load_sweep(sweep), [f"--tracking.uri=sqlite:///{tmp_path / 'db.sqlite'}"])


def test_prepare_store_creates_schema_and_experiment_once(tmp_path):
    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    first = prepare_store(uri, "e")
    assert prepare_store(uri, "e") == first


@pytest.mark.parametrize("sweep, folder", [("dap_r", "dap_r"), ("relaxloss_alpha", "relaxloss_alpha"),
                                           ("dp_epsilon_dap", "dp_epsilon_dap"), ("dp_epsilon_dpreg", "dp_epsilon_dpreg")])
def test_converted_sweeps_train_what_the_old_experiment_files_trained(sweep, folder):
    """Each old per-value experiment file has a trial of the sweep file with the same config hash."""
    spec = load_sweep(REPO / "conf" / "sweeps" / f"{sweep}.yaml")
    trials = {config_hash(resolve_config(t.args)): t.name for t in spec.trials()}
    old = sorted((REPO / "conf" / "experiments" / "sweeps" / folder).glob("*.yaml"))
    assert len(old) == len(trials)
    for path in old:
        assert config_hash(resolve_config(["--config", str(path), "--seed_everything=0"])) in trials, path.name
