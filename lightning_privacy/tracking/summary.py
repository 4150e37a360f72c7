"""What a run printed at its end: the table after fit/test, and what was kept when Ctrl-C stopped a fit."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Optional, Sequence

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only
from rich.console import Console
from rich.table import Table

from lightning_privacy.callbacks.audit import AuditCallback

SUMMARY_TAGS = ("mia.best_attack", "mia.best_blackbox_attack")
"""Audit tags the table shows: the attacks the headline numbers come from."""


def audit_command(config_yaml: str, ckpt_path: str) -> str:
    """The command that tests and audits ``ckpt_path`` with this run's whole config: the self-contained
    ``config_yaml`` (command-line overrides included, so the same split) is written beside the checkpoint as
    ``config.yaml``."""
    config = Path(ckpt_path).parent / "config.yaml"
    config.write_text(config_yaml)
    return f"lightning-privacy test --config {shlex.quote(str(config))} --ckpt_path {shlex.quote(ckpt_path)}"


def summary_rows(trainer: Trainer, model: Any) -> list[tuple[str, str]]:
    """Test accuracy, the model's ε, and each audit's headline: its summary metrics, the attacks they come from
    and the black-box numbers (``*blackbox*``, what the papers compare)."""
    rows: list[tuple[str, str]] = []
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k == "test/acc"}
    dp = getattr(model, "dp_summary", {}) or {}  # the model's own account, not an audit
    metrics.update({k: v for k, v in dp.items() if k == "dp/epsilon"})
    tags: dict[str, str] = {}
    for cb in trainer.callbacks:
        result = cb.last_result if isinstance(cb, AuditCallback) else None
        if result is None:
            continue
        metrics.update(result.headline())
        metrics.update({k: v for k, v in result.metrics.items() if "blackbox" in k and k not in metrics})
        tags.update({k: v for k, v in result.tags.items() if k in SUMMARY_TAGS})
    rows += [(key, f"{value:.4f}") for key, value in metrics.items()]
    rows += [(key, value) for key, value in tags.items()]
    return rows


def print_summary(rows: Sequence[tuple[str, str]], *, title: str = "lightning-privacy",
                  lines: Sequence[tuple[str, str]] = ()) -> None:
    """``rows`` as a table; ``lines`` (paths, commands) after it, one unwrapped line each, to copy whole."""
    table = Table(title=title, show_header=False)
    for key, value in rows:
        table.add_row(key, value)
    Console().print(table)
    for key, value in lines:
        print(f"{key}: {value}", flush=True)


def saved_checkpoints(trainer: Trainer) -> list[str]:
    """Every checkpoint file the trainer's checkpoint callbacks saved, newest last."""
    paths = {p for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)
             for p in (cb.best_model_path, cb.last_model_path, *getattr(cb, "best_k_models", {}))
             if p and Path(p).is_file()}
    return sorted(paths, key=lambda p: Path(p).stat().st_mtime)


class InterruptReport(Callback):
    """After Ctrl-C stops a fit: what was kept (the MLflow run, the checkpoints) and the command that audits
    the last saved weights."""

    def __init__(self, config_yaml: str, tracking_uri: Optional[str] = None) -> None:
        self.config_yaml, self.tracking_uri = config_yaml, tracking_uri

    @rank_zero_only
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, KeyboardInterrupt):
            return
        rows = [("stopped", f"epoch {trainer.current_epoch}, step {trainer.global_step}")]
        lines = []
        for logger in trainer.loggers:
            if isinstance(logger, MLFlowLogger) and logger._run_id:
                lines.append(("kept: mlflow run", f"{logger.run_id} @ {self.tracking_uri} (metrics so far, "
                                                  "config, split; no audit)"))
        checkpoints = saved_checkpoints(trainer)
        lines += [("kept: checkpoint", str(Path(path).resolve())) for path in checkpoints]
        if checkpoints:
            lines.append(("audit the last saved weights",
                          audit_command(self.config_yaml, str(Path(checkpoints[-1]).resolve()))))
        else:
            lines.append(("kept: checkpoint", "none was saved before the interrupt: nothing to audit"))
        print_summary(rows, title="lightning-privacy: interrupted", lines=lines)
