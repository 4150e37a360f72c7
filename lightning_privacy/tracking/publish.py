"""Publish any ``AuditResult`` to a run's loggers: metrics, tags (MLflow tags; other loggers get them as
hyperparameters) and artifacts (MLflow artifacts; other loggers with a log dir get copies there)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Optional, Sequence

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import Logger, MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only

from lightning_privacy.callbacks.audit import AuditCallback
from lightning_privacy.results import Artifact, AuditResult


def _write(content: Artifact, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        content(path)
    if not path.is_file():
        raise RuntimeError(f"artifact writer for {path.name} wrote no file")


@rank_zero_only
def publish(result: AuditResult, loggers: Sequence[Logger], *, step: Optional[int] = None) -> None:
    """Log ``result`` into every logger in ``loggers`` (metrics at ``step``)."""
    if result.metrics:
        for logger in loggers:
            logger.log_metrics(dict(result.metrics), step=step)
    if result.tags:
        for logger in loggers:
            if isinstance(logger, MLFlowLogger):
                for key, value in result.tags.items():
                    logger.experiment.set_tag(logger.run_id, key, str(value))
            else:
                logger.log_hyperparams(dict(result.tags))
    if not result.artifacts:
        return
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for name, content in result.artifacts.items():
            rel = PurePosixPath(name)
            if rel.is_absolute() or ".." in rel.parts:
                raise ValueError(f"artifact paths are relative to the run; got {name!r}")
            path = Path(tmp, *rel.parts)
            _write(content, path)
            files.append((path, str(rel.parent) if str(rel.parent) != "." else None))
        for logger in loggers:
            if isinstance(logger, MLFlowLogger):
                for path, folder in files:
                    logger.experiment.log_artifact(logger.run_id, str(path), folder)
            elif getattr(logger, "log_dir", None):
                for path, folder in files:
                    target = Path(logger.log_dir, folder or "")
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy(path, target / path.name)


class ResultPublisher(Callback):
    """Subscribes to every audit callback of the trainer and publishes each result they produce to the
    trainer's loggers, at the step it was produced."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        for callback in trainer.callbacks:
            if isinstance(callback, AuditCallback):
                callback.subscribe(self._publish)

    @staticmethod
    def _publish(trainer: Trainer, result: AuditResult) -> None:
        publish(result, trainer.loggers, step=trainer.global_step)
