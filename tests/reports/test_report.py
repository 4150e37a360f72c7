"""The report on runs created in a temporary sqlite store: layout, mean ± std from the runs' own metrics, run ids,
plots, the report run, and bad input."""

from __future__ import annotations

import csv
import io
import statistics

import pytest

from lightning_privacy.cli import main
from lightning_privacy.errors import UserInputError
from lightning_privacy.reports.collect import collect
from lightning_privacy.reports.plots import pareto_front
from lightning_privacy.reports.report import build_report

RUNS = [  # dataset, sweep.setting (None: a plain run), seed, test/acc, best black-box auc, epoch times, dp eps, eps lb
    ("FashionMNIST", "defense=erm", 0, 0.90, 0.70, [2.0, 3.0, 10.0], None, None),
    ("FashionMNIST", "defense=erm", 1, 0.88, 0.66, [2.0, 2.0, 2.0], None, None),
    ("FashionMNIST", "defense=reg", 0, 0.86, 0.55, [3.0], None, None),
    ("FashionMNIST", "defense=reg", 1, 0.84, 0.57, [3.0], None, None),
    ("Digits", "defense=erm", 0, 0.95, 0.80, [1.0], None, None),
    ("FashionMNIST", None, 0, 0.70, 0.51, [5.0], 2.0, 0.3),
    ("FashionMNIST", None, 1, 0.75, 0.52, [5.0], 4.0, 0.9),
]


@pytest.fixture()
def store(tmp_path):
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("exp", artifact_location=(tmp_path / "artifacts").as_uri())
    ids = {}
    for i, (dataset, setting, seed, acc, auc, times, eps, lb) in enumerate(RUNS):
        tags = {"dataset": dataset, "defense": "ERM"}
        if setting:
            tags.update({"sweep.name": "s", "sweep.setting": setting})
        run = client.create_run(exp, tags=tags).info.run_id
        if eps is not None:
            client.log_param(run, "model.dp.target_epsilon", str(eps))
        metrics = [Metric("test/acc", acc, 0, 0), Metric("mia/best_blackbox/auc", auc, 0, 0),
                   Metric("privacy/aop_lambda_2_blackbox", acc / (2 * auc) ** 2, 0, 0),
                   Metric("mia/best/tpr_at_fpr_0.001", auc - 0.5, 0, 0)]
        metrics += [Metric("time/epoch_s", t, 0, step) for step, t in enumerate(times)]
        if eps is not None:
            metrics += [Metric("dp/epsilon", eps, 0, 0), Metric("dp/epsilon_lb", lb, 0, 0)]
        client.log_batch(run, metrics=metrics)
        client.set_terminated(run, "FINISHED")
        ids[i] = run
    unfinished = client.create_run(exp, tags={"dataset": "FashionMNIST", "defense": "ERM"}).info.run_id
    client.log_metric(unfinished, "test/acc", 0.0)
    return uri, ids, client, exp


def test_report_cells_are_mean_and_std_of_the_runs_with_their_ids(store, tmp_path):
    uri, ids, client, exp = store
    files, report_run = build_report(uri, "exp", tmp_path / "out")
    assert [f.name for f in files] == ["report.md", "report.csv", "privacy_utility.png", "epsilon_accuracy.png"]
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "report.csv").read_text())))
    cell = {(r["dataset"], r["setting"], r["metric"]): r for r in rows}
    erm = cell[("FashionMNIST", "defense=erm", "test/acc")]
    assert float(erm["mean"]) == pytest.approx(0.89) and float(erm["std"]) == pytest.approx(statistics.stdev([0.90, 0.88]))
    assert set(erm["run_ids"].split()) == {ids[0], ids[1]} and erm["n"] == "2"
    # the median over a run's epochs, then mean over seeds: (3 + 2) / 2
    assert float(cell[("FashionMNIST", "defense=erm", "time/epoch_s")]["mean"]) == pytest.approx(2.5)
    assert ("FashionMNIST", "ERM DP ε=2.0", "test/acc") in cell and ("FashionMNIST", "ERM DP ε=4.0", "test/acc") in cell
    assert {r["dataset"] for r in rows} == {"FashionMNIST", "Digits"}  # rows: datasets (the unfinished run is out)
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| dataset | ERM DP ε=2.0 | ERM DP ε=4.0 | defense=erm | defense=reg |" in md
    auc_table = md.split("### best black-box")[1].split("###")[0]
    assert "**0.5100 ± 0.0000 (n=1)**" in auc_table and "**" not in auc_table.replace("**0.5100", "", 1).replace(
        "(n=1)**", "", 1)  # the lowest AUC (DP at ε = 2) is the one bold cell of the FashionMNIST row
    for run_id in ids.values():
        assert run_id in md
    report = client.get_run(report_run)
    assert report.data.tags["report"] == "true" and report.info.status == "FINISHED"
    logged = {a.path for a in client.list_artifacts(report_run, "report")}
    assert {"report/report.md", "report/report.csv", "report/privacy_utility.png"} <= logged
    assert len(collect(uri, "exp")) == len(RUNS)  # the report run itself is never a row


def test_best_is_bold_per_dataset_and_direction(store, tmp_path):
    uri, *_ = store
    build_report(uri, "exp", tmp_path / "out", sweep="s")
    md = (tmp_path / "out" / "report.md").read_text()
    acc_table = md.split("### best black-box")[0]
    assert "**0.8900 ± 0.0141 (n=2)**" in acc_table  # higher accuracy wins
    assert "DP" not in acc_table.split("\n| dataset |")[1].split("\n")[0]  # --sweep keeps only the sweep's runs
    assert "Digits | **" not in md  # a dataset with one setting has nothing to beat


def test_pareto_front():
    points = [(0.5, 0.7), (0.6, 0.9), (0.55, 0.6), (0.7, 0.85), (0.8, 0.95)]
    assert pareto_front(points) == [(0.5, 0.7), (0.6, 0.9), (0.8, 0.95)]


def test_experiment_without_runs_is_one_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(SystemExit) as exit_:
        main(["report", "--experiment", "nothing", "--tracking-uri", uri])
    assert exit_.value.code == 2 and "no MLflow experiment 'nothing'" in capsys.readouterr().err
    from mlflow import MlflowClient

    MlflowClient(uri).create_experiment("empty")
    with pytest.raises(UserInputError, match="no FINISHED runs"):
        collect(uri, "empty")
