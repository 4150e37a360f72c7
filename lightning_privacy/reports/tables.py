"""The DAP paper's table layout (Tables 1–4): rows datasets, columns defenses, mean ± std over seeds, best bold."""

from __future__ import annotations

import csv
import io
import statistics
from dataclasses import dataclass
from typing import Sequence

from lightning_privacy.reports.collect import RunRow

# (metric, higher is better, how the paper shows it)
TABLE_METRICS: tuple[tuple[str, bool, str], ...] = (
    ("test/acc", True, "test accuracy"),
    ("mia/best_blackbox/auc", False, "best black-box attack AUC"),
    ("privacy/aop_lambda_2_blackbox", True, "AOP (λ = 2, black-box)"),
    ("time/epoch_s", False, "median seconds per epoch"),
)


@dataclass
class Cell:
    values: list[float]
    run_ids: list[str]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0


def cells(rows: Sequence[RunRow], metric: str) -> dict[tuple[str, str], Cell]:
    """(dataset, setting) → the metric's values over the runs (seeds) that logged it, with their run ids."""
    out: dict[tuple[str, str], Cell] = {}
    for row in sorted(rows, key=lambda r: r.run_id):
        if metric in row.metrics:
            cell = out.setdefault((row.dataset, row.setting), Cell([], []))
            cell.values.append(float(row.metrics[metric]))
            cell.run_ids.append(row.run_id)
    return out


def markdown(rows: Sequence[RunRow]) -> str:
    """One table per metric, rows datasets, columns settings; each cell's runs listed below the tables."""
    datasets = sorted({r.dataset for r in rows})
    settings = sorted({r.setting for r in rows})
    parts: list[str] = []
    for metric, higher, title in TABLE_METRICS:
        table = cells(rows, metric)
        if not table:
            continue
        parts += [f"### {title} (`{metric}`, mean ± std over seeds; best in bold)", "",
                  "| dataset | " + " | ".join(settings) + " |", "|---" * (len(settings) + 1) + "|"]
        for dataset in datasets:
            present = {s: table[(dataset, s)] for s in settings if (dataset, s) in table}
            best = (max if higher else min)((c.mean for c in present.values()), default=None)
            row = []
            for s in settings:
                c = present.get(s)
                if c is None:
                    row.append("–")
                    continue
                text = f"{c.mean:.4f} ± {c.std:.4f} (n={len(c.values)})"
                row.append(f"**{text}**" if c.mean == best and len(present) > 1 else text)
            parts.append(f"| {dataset} | " + " | ".join(row) + " |")
        parts.append("")
    parts += ["### Runs behind each cell", "", "| dataset | setting | run ids |", "|---|---|---|"]
    by_cell: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        by_cell.setdefault((r.dataset, r.setting), []).append(r.run_id)
    for (dataset, setting), ids in sorted(by_cell.items()):
        parts.append(f"| {dataset} | {setting} | {', '.join(sorted(ids))} |")
    return "\n".join(parts) + "\n"


def csv_text(rows: Sequence[RunRow]) -> str:
    """Long format: dataset, setting, metric, mean, std, n, run_ids (space-separated)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["dataset", "setting", "metric", "mean", "std", "n", "run_ids"])
    for metric, _, _ in TABLE_METRICS:
        for (dataset, setting), c in sorted(cells(rows, metric).items()):
            writer.writerow([dataset, setting, metric, repr(c.mean), repr(c.std), len(c.values), " ".join(c.run_ids)])
    return out.getvalue()
