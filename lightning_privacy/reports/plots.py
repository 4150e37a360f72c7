"""The report's figures: privacy–utility scatter with Pareto fronts (the RelaxLoss paper's Fig. 3 style) and DP's
ε–accuracy curve."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lightning_privacy.reports.collect import RunRow  # noqa: E402
from lightning_privacy.reports.tables import cells  # noqa: E402

PRIVACY_AXES = (("mia/best_blackbox/auc", "best black-box attack AUC"),
                ("mia/best/tpr_at_fpr_0.001", "best attack TPR at 0.1 % FPR"))


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both axes (lower x = more private, higher y = more accurate), by x."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def privacy_utility(rows: Sequence[RunRow], path: Path) -> Optional[Path]:
    """Test accuracy against each privacy axis, one point per (dataset, setting) (seed means), Pareto front drawn."""
    acc = cells(rows, "test/acc")
    panels = [(m, label, cells(rows, m)) for m, label in PRIVACY_AXES]
    panels = [p for p in panels if any(k in acc for k in p[2])]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for ax, (metric, label, privacy) in zip(axes[0], panels):
        for dataset in sorted({d for d, _ in privacy}):
            keys = [k for k in privacy if k[0] == dataset and k in acc]
            pts = [(privacy[k].mean, acc[k].mean) for k in keys]
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], label=dataset)
            for k, (x, y) in zip(keys, pts):
                ax.annotate(k[1], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
            front = pareto_front(pts)
            ax.plot([p[0] for p in front], [p[1] for p in front], "--", linewidth=1)
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def epsilon_curve(rows: Sequence[RunRow], path: Path) -> Optional[Path]:
    """DP runs: test accuracy against ε, and the audited lower bound ``dp/epsilon_lb`` against ε where logged."""
    dp = [r for r in rows if "dp/epsilon" in r.metrics and "test/acc" in r.metrics]
    if not dp:
        return None
    audited = [r for r in dp if "dp/epsilon_lb" in r.metrics]
    fig, axes = plt.subplots(1, 2 if audited else 1, figsize=(12 if audited else 6, 4.5), squeeze=False)
    for dataset in sorted({r.dataset for r in dp}):
        pts = sorted((r.metrics["dp/epsilon"], r.metrics["test/acc"]) for r in dp if r.dataset == dataset)
        axes[0][0].plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=dataset)
    axes[0][0].set(xlabel="ε (dp/epsilon)", ylabel="test accuracy", xscale="log")
    axes[0][0].legend(fontsize=8)
    if audited:
        ax = axes[0][1]
        eps = [r.metrics["dp/epsilon"] for r in audited]
        ax.scatter(eps, [r.metrics["dp/epsilon_lb"] for r in audited])
        ax.plot([0, max(eps)], [0, max(eps)], ":", color="grey", label="lower bound = ε")
        ax.set(xlabel="ε (dp/epsilon)", ylabel="audited lower bound (dp/epsilon_lb)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
