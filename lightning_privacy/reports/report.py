"""``lightning-privacy report --experiment NAME [--sweep NAME]``: tables (Markdown, CSV) and plots (PNG) from the
runs in MLflow, written to a folder and logged back to MLflow as one report run."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Optional, Sequence

from lightning_privacy.reports.collect import REPORT_TAG, collect
from lightning_privacy.reports.plots import epsilon_curve, privacy_utility
from lightning_privacy.reports.tables import csv_text, markdown
from lightning_privacy.tracking.mlflow import check_reachable, default_tracking_uri, resolve_tracking_uri


def build_report(uri: str, experiment: str, out: Path, sweep: Optional[str] = None) -> tuple[list[Path], str]:
    """Write ``report.md``, ``report.csv`` and the PNGs to ``out``; return them and the report run's id."""
    from mlflow import MlflowClient

    rows = collect(uri, experiment, sweep)
    out.mkdir(parents=True, exist_ok=True)
    title = f"# Report: experiment `{experiment}`" + (f", sweep `{sweep}`" if sweep else "")
    files = []
    md = out / "report.md"
    md.write_text(f"{title}\n\n{len(rows)} FINISHED runs; tracking store {uri}.\n\n{markdown(rows)}")
    (out / "report.csv").write_text(csv_text(rows))
    files += [md, out / "report.csv"]
    for plot in (privacy_utility(rows, out / "privacy_utility.png"), epsilon_curve(rows, out / "epsilon_accuracy.png")):
        if plot is not None:
            files.append(plot)
    client = MlflowClient(uri)
    exp_id = client.get_experiment_by_name(experiment).experiment_id
    run = client.create_run(exp_id, run_name=f"report-{sweep or experiment}",
                            tags={REPORT_TAG: "true", "report.runs": str(len(rows)), **({"sweep.name": sweep} if sweep else {})})
    try:
        for f in files:
            client.log_artifact(run.info.run_id, str(f), artifact_path="report")
        client.set_terminated(run.info.run_id, "FINISHED")
    except Exception:
        client.set_terminated(run.info.run_id, "FAILED")
        raise
    return files, run.info.run_id


def report_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="lightning-privacy report",
                                     description="Tables and plots from an experiment's runs in MLflow (see README).")
    parser.add_argument("--experiment", required=True, help="the MLflow experiment (tracking.experiment)")
    parser.add_argument("--sweep", default=None, help="only the runs of this sweep (tag sweep.name)")
    parser.add_argument("--tracking-uri", default=None, help="default: MLFLOW_TRACKING_URI, else ./mlruns/mlflow.db")
    parser.add_argument("--out", type=Path, default=None, help="default: outputs/reports/<experiment>[-<sweep>]")
    args = parser.parse_args(list(argv))
    uri = resolve_tracking_uri(flag=args.tracking_uri, env=os.environ.get("MLFLOW_TRACKING_URI"), config=None,
                               default=default_tracking_uri())
    check_reachable(uri)
    out = args.out or Path("outputs") / "reports" / (args.experiment + (f"-{args.sweep}" if args.sweep else ""))
    files, run_id = build_report(uri, args.experiment, out, args.sweep)
    print(f"[report] {len(files)} files in {out}: {', '.join(f.name for f in files)}")
    print(f"[report] logged as MLflow run {run_id} (artifacts under report/)")
    return 0
