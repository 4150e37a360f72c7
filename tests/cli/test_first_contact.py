"""What a new user meets first: one-line errors, no empty runs (issue 15)."""

import mlflow
import pytest

from lightning_privacy.cli import main
from tests.conftest import REPO

QUICKSTART = str(REPO / "conf" / "experiments" / "quickstart.yaml")


def _runs(uri: str):
    client = mlflow.MlflowClient(uri)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def _one_line_error(capsys, args: list[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lightning-privacy: error:")]
    assert len(err) == 1
    return err[0]


@pytest.mark.parametrize(("flag", "value", "listed"), [
    ("--model", "DPSGD", ["dpsgd", "erm", "relaxloss", "conf/defense/NAME.yaml"]),
    ("--data", "Nope", ["digits", "fashion_mnist", "cifar10", "conf/data/NAME.yaml"]),
])
def test_an_unknown_class_lists_the_choices_in_one_line(in_tmp, capsys, flag, value, listed):
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", QUICKSTART, flag, value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "usage:" not in err and value in err
    for name in listed:
        assert name in err


def test_a_negative_role_size_is_one_line(in_tmp, capsys):
    line = _one_line_error(capsys, ["fit", "--config", QUICKSTART, "--data.init_args.members", "-5"])
    assert "--data.init_args.members -5" in line and "v>=0" in line
    assert "usage:" not in capsys.readouterr().err


def test_a_missing_checkpoint_is_one_line(in_tmp, capsys):
    line = _one_line_error(capsys, ["test", "--config", QUICKSTART, "--ckpt_path", "outputs/nope.ckpt"])
    assert "outputs/nope.ckpt" in line and "no such checkpoint" in line


def test_a_file_uri_is_one_line_saying_what_to_write(in_tmp, capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    line = _one_line_error(capsys, ["fit", "--config", QUICKSTART, "--tracking.uri", f"file://{in_tmp}/old"])
    assert f"sqlite:///{in_tmp}/old/mlflow.db" in line


def test_a_missing_dataset_in_a_plain_directory_store_leaves_no_run(in_tmp, capsys):
    """--tracking.uri ./store is the sqlite store inside it; the data error comes before the run is created."""
    line = _one_line_error(capsys, ["fit", "--config", str(REPO / "conf" / "experiments" / "fmnist_baseline.yaml"),
                                    "--data.root", str(in_tmp / "no-data"), "--tracking.uri", "./store"])
    assert "train-images-idx3-ubyte" in line
    assert (in_tmp / "store" / "mlflow.db").is_file()
    assert _runs(f"sqlite:///{in_tmp / 'store' / 'mlflow.db'}") == []


def test_an_impossible_split_leaves_no_run(in_tmp, capsys):
    line = _one_line_error(capsys, ["fit", "--config", QUICKSTART, "--data.init_args.members", "5000"])
    assert "5000" in line or "members" in line
    assert _runs(f"sqlite:///{in_tmp / 'mlruns' / 'mlflow.db'}") == []
