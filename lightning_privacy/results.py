"""What an audit returns: a plain result object that the tracking layer publishes (``tracking.publish``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Union

Artifact = Union[str, bytes, Callable[[Path], object]]
"""An artifact's content: text, bytes, or a function that writes the file at the path it is given."""


@dataclass
class AuditResult:
    """One audit's outcome (or any record for the run, e.g. its config): ``name`` (the audit's registry name),
    ``metrics`` (name → value), ``tags`` (name → text), ``artifacts`` (a relative path such
    as ``audit/scores.parquet`` → its content) and ``summary``: the metric names the end-of-run summary shows."""

    name: str
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    summary: tuple[str, ...] = ()

    def headline(self) -> dict[str, float]:
        """The ``summary`` metrics this result holds, in order."""
        return {k: self.metrics[k] for k in self.summary if k in self.metrics}
