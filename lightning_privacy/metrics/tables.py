"""Audit data as parquet tables: per-sample scores and ROC points, for analysis outside the framework."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from torch import Tensor

from lightning_privacy.metrics.roc import roc_curve


def scores_table(index: Tensor, labels: Tensor, is_member: Tensor, scores: Mapping[str, Tensor], path: Path) -> Path:
    """One row per audited sample: ``index`` (its pool index in the split), ``role`` (``members`` or
    ``nonmembers``), ``is_member``, ``label`` (its class) and one column per attack's score."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {"index": index.long().numpy(),
               "role": ["members" if m else "nonmembers" for m in is_member.tolist()],
               "is_member": is_member.numpy(), "label": labels.long().numpy()}
    columns.update({name: s.double().numpy() for name, s in scores.items()})
    pq.write_table(pa.table(columns), path)
    return path


def roc_table(scores: Mapping[str, Tensor], is_member: Tensor, path: Path) -> Path:
    """Every attack's ROC points (columns ``attack``, ``fpr``, ``tpr``, ``threshold``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows: dict[str, list] = {"attack": [], "fpr": [], "tpr": [], "threshold": []}
    for name, s in scores.items():
        fpr, tpr, thresholds = roc_curve(s, is_member)
        rows["attack"] += [name] * fpr.numel()
        rows["fpr"] += fpr.tolist()
        rows["tpr"] += tpr.tolist()
        rows["threshold"] += thresholds.tolist()
    pq.write_table(pa.table(rows), path)
    return path
